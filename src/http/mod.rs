//! HTTP plumbing shared by every capability: the JSON extractor, validation helpers, the
//! authentication extractors ([`AuthUser`], [`Scope`]), the client address, list pagination and
//! the middleware that turns every failure into problem+json.

pub mod idempotency;
pub mod json;
pub mod middleware;
pub mod pagination;
pub mod query;
pub mod server;
pub mod validate;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::app::AppState;
use crate::db::Role;
use crate::db::Tenant;
use crate::error::{AppError, Code};
use crate::ratelimit::limits;

pub use idempotency::IdempotencyKey;
pub use json::Json;
pub use pagination::{ListQuery, Page};
pub use query::Query;

/// The header that picks the workspace a request acts in.
pub const WORKSPACE_HEADER: &str = "palaver-workspace";

/// An authenticated caller: a valid access token whose session is not revoked.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: String,
    pub session_id: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(auth) = parts.extensions.get::<AuthUser>() {
            return Ok(auth.clone());
        }
        let token = bearer_token(&parts.headers).ok_or_else(AppError::unauthorized)?;
        let auth = authenticate(state, token).await?;
        if let Err(retry) = state
            .limiter
            .check(&limits::API_PER_USER, &auth.user_id)
            .await
        {
            return Err(AppError::rate_limited(Code::RateLimited, retry));
        }
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

/// Checks an access token and its session; shared by HTTP and the socket handshake.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AppError> {
    let claims = state.keys.verify(token)?;
    state
        .sessions
        .check(&state.db, &claims.sid, &claims.sub)
        .await?;
    Ok(AuthUser {
        user_id: claims.sub,
        session_id: claims.sid,
    })
}

pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated caller acting in one workspace they belong to: the one named by the
/// `Palaver-Workspace` header (id or slug), else their default workspace.
#[derive(Debug, Clone)]
pub struct Scope {
    pub user_id: String,
    pub session_id: String,
    pub workspace_id: String,
    pub role: Role,
}

impl Scope {
    /// The data-access handle for this workspace's data.
    pub fn tenant<'a>(&'a self, db: &'a crate::db::Db) -> Tenant<'a> {
        Tenant::new(db, &self.workspace_id)
    }

    /// Owners and admins manage the workspace.
    pub fn is_admin(&self) -> bool {
        matches!(self.role, Role::Owner | Role::Admin)
    }

    /// 403 unless the caller owns or administers the workspace; `what` ends the message
    /// ("only the workspace's owners and admins {what}").
    pub fn require_admin(&self, what: &str) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "only the workspace's owners and admins {what}"
            )))
        }
    }

    /// 403 unless the caller works the workspace's inbox (owner, admin or agent).
    pub fn require_agent(&self, what: &str) -> Result<(), AppError> {
        if matches!(self.role, Role::Owner | Role::Admin | Role::Agent) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!(
                "only the workspace's owners, admins and agents {what}"
            )))
        }
    }
}

impl FromRequestParts<AppState> for Scope {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let auth = AuthUser::from_request_parts(parts, state).await?;
        let requested = match parts.headers.get(WORKSPACE_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| AppError::not_found())?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let (workspace_id, role) = match requested {
            Some(id_or_slug) => {
                crate::db::find_membership_by_ref(&state.db, &auth.user_id, &id_or_slug)
                    .await?
                    .ok_or_else(AppError::not_found)?
            }
            None => crate::db::default_membership(&state.db, &auth.user_id)
                .await?
                .ok_or_else(|| AppError::forbidden("you are not a member of any workspace"))?,
        };
        Ok(Scope {
            user_id: auth.user_id,
            session_id: auth.session_id,
            workspace_id,
            role,
        })
    }
}

/// The client's address: the peer, or with `PALAVER_TRUST_PROXY=on` the last address the
/// trusted proxy appended to `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if state.config.trust_proxy {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(peer))
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
