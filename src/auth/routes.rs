//! `/api/v1/auth/*`, `/api/v1/sessions` and `/.well-known/jwks.json`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::service::{
    self, parse_device_id, parse_device_name, parse_otp_code, parse_password, Device, Issued,
    SignupInput,
};
use super::store;
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::{AppError, AppResult, Code, Problem};
use crate::http::validate::{field, optional, Validate};
use crate::http::{AuthUser, ClientIp, Json, Page};
use crate::ratelimit::{limits, Limit};
use crate::users::model::{parse_display_name, Email, Me, Phone, UserRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(request_otp))
        .routes(routes!(verify_otp))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(forgot_password))
        .routes(routes!(reset_password))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

async fn limit(state: &AppState, limit: &Limit, key: &str) -> AppResult<()> {
    state
        .limiter
        .check(limit, key)
        .await
        .map_err(|retry| AppError::rate_limited(Code::RateLimited, retry))
}

/// A signed-in device, as listed to its user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    /// True for the session of the token that made this request.
    pub current: bool,
}

impl SessionView {
    fn new(s: &store::SessionRow, current_id: &str) -> Self {
        SessionView {
            id: s.id.clone(),
            device_id: s.device_id.clone(),
            device_name: s.device_name.clone(),
            created_at: Timestamp(s.created_at),
            last_used_at: Timestamp(s.last_used_at),
            current: s.id == current_id,
        }
    }
}

/// A new session: tokens, the user and the session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    /// EdDSA JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single use: `POST /auth/refresh` returns a new one.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: Me,
    pub session: SessionView,
}

impl SignedIn {
    fn new(user: &UserRow, issued: Issued) -> Self {
        let session = SessionView::new(&issued.session, &issued.session.id);
        SignedIn {
            access_token: issued.access_token,
            refresh_token: issued.refresh_token,
            expires_in: issued.expires_in,
            user: Me::from(user),
            session,
        }
    }
}

fn device(id: Option<String>, name: Option<String>) -> Result<Device, crate::error::FieldError> {
    let id = optional("deviceId", id, |d| parse_device_id(&d))?;
    let name = optional("deviceName", name, |n| parse_device_name(&n))?;
    Ok(Device {
        id: id.unwrap_or_else(crate::db::new_id),
        name,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupBody {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: String,
    /// A stable id of the device; signing in again on the same device replaces its session.
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: Option<String>,
    pub device_name: Option<String>,
}

/// POST /api/v1/auth/signup — creates an account with email and password and signs it in.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, body = SignedIn), (status = 403, description = "signup_closed", body = Problem),
        (status = 409, description = "email_taken", body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<SignupBody>,
) -> AppResult<(StatusCode, Json<SignedIn>)> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let (email, password, display_name, device) = (
        field("email", Email::parse(&b.email)),
        field("password", parse_password(b.password)),
        field("displayName", parse_display_name(&b.display_name)),
        device(b.device_id, b.device_name),
    )
        .validate()?;
    limit(&state, &limits::AUTH_PER_ACCOUNT, email.as_str()).await?;
    let input = SignupInput {
        email: email.as_str().to_owned(),
        password,
        display_name,
        device,
    };
    let (user, issued) = service::signup(&state, input).await?;
    tracing::info!(user_id = user.id, "account created");
    Ok((StatusCode::CREATED, Json(SignedIn::new(&user, issued))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    pub password: String,
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: Option<String>,
    pub device_name: Option<String>,
}

/// POST /api/v1/auth/login — signs in with email and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = SignedIn), (status = 401, description = "invalid_credentials (unknown email or wrong password alike)", body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<LoginBody>,
) -> AppResult<Json<SignedIn>> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let (email, device) = (
        field("email", Email::parse(&b.email)),
        device(b.device_id, b.device_name),
    )
        .validate()?;
    limit(&state, &limits::AUTH_PER_ACCOUNT, email.as_str()).await?;
    let (user, issued) = service::login(&state, email.as_str(), b.password, device).await?;
    Ok(Json(SignedIn::new(&user, issued)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OtpRequestBody {
    /// E.164, e.g. `+14155550123`.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtpRequested {
    /// Seconds the code stays valid.
    pub expires_in: u64,
    /// Seconds before another code may be requested.
    pub retry_after: u64,
}

/// POST /api/v1/auth/otp/request — sends a 6-digit code to the phone by SMS.
#[utoipa::path(post, path = "/auth/otp/request", tag = "auth", request_body = OtpRequestBody,
    responses((status = 202, body = OtpRequested), (status = 403, description = "signup_closed", body = Problem),
        (status = 422, body = Problem), (status = 429, description = "otp_cooldown or rate_limited, with Retry-After", body = Problem),
        (status = 503, description = "sms_delivery_failed", body = Problem)))]
async fn request_otp(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<OtpRequestBody>,
) -> AppResult<(StatusCode, Json<OtpRequested>)> {
    let phone = field("phone", Phone::parse(&b.phone)).validate()?;
    limit(&state, &limits::OTP_PER_IP, &crate::ratelimit::ip_key(ip.0)).await?;
    let (expires_in, retry_after) = service::request_otp(&state, phone.as_str()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(OtpRequested {
            expires_in,
            retry_after,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtpVerifyBody {
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$")]
    pub phone: String,
    #[schema(pattern = r"^[0-9]{6}$")]
    pub code: String,
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: String,
    pub device_name: Option<String>,
    /// The name of an account created by this sign-in (default "New user").
    pub display_name: Option<String>,
}

/// POST /api/v1/auth/otp/verify — checks the code and signs in; creates the account on a phone's first sign-in.
#[utoipa::path(post, path = "/auth/otp/verify", tag = "auth", request_body = OtpVerifyBody,
    responses((status = 200, body = SignedIn), (status = 401, description = "invalid_code", body = Problem),
        (status = 403, description = "signup_closed", body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn verify_otp(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<OtpVerifyBody>,
) -> AppResult<Json<SignedIn>> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let (phone, code, device, display_name) = (
        field("phone", Phone::parse(&b.phone)),
        field("code", parse_otp_code(&b.code)),
        device(Some(b.device_id), b.device_name),
        optional("displayName", b.display_name, |n| parse_display_name(&n)),
    )
        .validate()?;
    let (user, issued) =
        service::verify_otp(&state, phone.as_str(), &code, display_name, device).await?;
    Ok(Json(SignedIn::new(&user, issued)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refreshed {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// POST /api/v1/auth/refresh — exchanges a refresh token for a new pair; reuse of a token revokes its session.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = Refreshed), (status = 401, description = "invalid_refresh_token", body = Problem), (status = 429, body = Problem)))]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<RefreshBody>,
) -> AppResult<Json<Refreshed>> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let issued = service::refresh(&state, b.refresh_token.trim()).await?;
    Ok(Json(Refreshed {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        expires_in: issued.expires_in,
    }))
}

/// POST /api/v1/auth/logout — revokes the current session.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout(State(state): State<AppState>, auth: AuthUser) -> AppResult<StatusCode> {
    store::revoke_session(&state.db, &auth.user_id, &auth.session_id).await?;
    state.sessions_revoked(&[&auth.session_id]);
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/v1/auth/logout-all — revokes every session of the user.
#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
async fn logout_all(State(state): State<AppState>, auth: AuthUser) -> AppResult<StatusCode> {
    service::logout_all(&state, &auth.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotBody {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// POST /api/v1/auth/password/forgot — mails a reset link if the account exists; always 202.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotBody,
    responses((status = 202, description = "accepted, whether or not the account exists"), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn forgot_password(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<ForgotBody>,
) -> AppResult<StatusCode> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let email = field("email", Email::parse(&b.email)).validate()?;
    limit(&state, &limits::FORGOT_PER_ADDRESS, email.as_str()).await?;
    tokio::spawn(service::send_password_reset(
        state.clone(),
        email.as_str().to_owned(),
    ));
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetBody {
    /// The token from the reset link.
    pub token: String,
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

/// POST /api/v1/auth/password/reset — sets a new password and revokes every session.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetBody,
    responses((status = 204), (status = 401, description = "invalid_reset_token", body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn reset_password(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<ResetBody>,
) -> AppResult<StatusCode> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    let password = field("password", parse_password(b.password)).validate()?;
    service::reset_password(&state, b.token.trim(), password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyEmailBody {
    /// The token from the verification link.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
}

/// POST /api/v1/auth/email/verify — marks the address the link was mailed to verified (and
/// turns invitations waiting for it into memberships).
#[utoipa::path(post, path = "/auth/email/verify", tag = "auth", request_body = VerifyEmailBody,
    responses((status = 204), (status = 401, description = "invalid_verification_token", body = Problem), (status = 429, body = Problem)))]
async fn verify_email(
    State(state): State<AppState>,
    ip: ClientIp,
    Json(b): Json<VerifyEmailBody>,
) -> AppResult<StatusCode> {
    limit(
        &state,
        &limits::AUTH_PER_IP,
        &crate::ratelimit::ip_key(ip.0),
    )
    .await?;
    service::verify_email(&state, b.token.trim()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/v1/auth/email/verify/resend — mails a new verification link to the caller's
/// address, if it is not verified yet; 202 either way.
#[utoipa::path(post, path = "/auth/email/verify/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn resend_verification(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<StatusCode> {
    service::resend_verification(&state, &auth.user_id).await?;
    Ok(StatusCode::ACCEPTED)
}

/// GET /api/v1/sessions — the user's signed-in devices.
#[utoipa::path(get, path = "/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Page<SessionView>), (status = 401, body = Problem)))]
async fn list_sessions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<Json<Page<SessionView>>> {
    let rows = store::list_sessions(&state.db, &auth.user_id).await?;
    let items = rows
        .iter()
        .map(|s| SessionView::new(s, &auth.session_id))
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// DELETE /api/v1/sessions/{id} — signs that device out.
#[utoipa::path(delete, path = "/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "session id")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_session(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if !store::revoke_session(&state.db, &auth.user_id, &id).await? {
        return Err(AppError::not_found());
    }
    state.sessions_revoked(&[&id]);
    Ok(StatusCode::NO_CONTENT)
}
