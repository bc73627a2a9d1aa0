//! `/api/v1/users/*`, `/api/v1/contacts*` and `/api/v1/blocks*`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{Email, LastSeenPrivacy, Phone, PublicUser, UserRow};
use super::store::{self, SearchKey};
use crate::app::AppState;
use crate::db::{Db, Timestamp};
use crate::error::{AppError, AppResult, Problem};
use crate::http::pagination::encode_cursor;
use crate::http::Query;
use crate::http::{AuthUser, Json, ListQuery, Page, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_users))
        .routes(routes!(get_user))
        .routes(routes!(sync_contacts))
        .routes(routes!(list_contacts))
        .routes(routes!(block_user, unblock_user))
        .routes(routes!(list_blocks))
}

/// What `viewer` may see of `user`: blocks hide the profile details, privacy hides last seen,
/// and the phone shows only to those who have it in their address book.
async fn public_view(db: &Db, viewer: &str, user: UserRow) -> AppResult<PublicUser> {
    let blocked = store::blocked_either_way(db, viewer, &user.id).await?;
    let viewer_has_phone = match &user.phone {
        Some(p) => store::has_in_address_book(db, viewer, p).await?,
        None => false,
    };
    let last_seen_visible = !blocked
        && match LastSeenPrivacy::from_db(&user.privacy_last_seen) {
            LastSeenPrivacy::Everyone => true,
            LastSeenPrivacy::Nobody => false,
            LastSeenPrivacy::Contacts => {
                match store::find_by_id(db, viewer).await?.and_then(|v| v.phone) {
                    Some(viewer_phone) => {
                        store::has_in_address_book(db, &user.id, &viewer_phone).await?
                    }
                    None => false,
                }
            }
        };
    Ok(PublicUser {
        id: user.id,
        display_name: user.display_name,
        about: if blocked { String::new() } else { user.about },
        avatar_media_id: if blocked { None } else { user.avatar_media_id },
        phone: if viewer_has_phone { user.phone } else { None },
        last_seen_at: if last_seen_visible {
            user.last_seen_at.map(Timestamp)
        } else {
            None
        },
    })
}

/// GET /api/v1/users/{id} — a member of the current workspace's public profile.
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = PublicUser), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<PublicUser>> {
    let user = store::find_member(scope.tenant(&state.db), &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(public_view(&state.db, &scope.user_id, user).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// An exact E.164 phone number, an exact email, or at least 2 characters of a display name.
    #[param(min_length = 2, max_length = 254)]
    pub q: String,
    /// At most 50 (default 20).
    pub limit: Option<i64>,
}

/// GET /api/v1/users/search — finds members of the current workspace by exact phone, exact email or name.
#[utoipa::path(get, path = "/users/search", tag = "users", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Page<PublicUser>), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn search_users(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<SearchQuery>,
) -> AppResult<Json<Page<PublicUser>>> {
    let raw = q.q.trim();
    let phone = raw
        .starts_with('+')
        .then(|| Phone::parse(raw).ok())
        .flatten();
    let email = raw.contains('@').then(|| Email::parse(raw).ok()).flatten();
    let name = raw.to_lowercase();
    let key = match (&phone, &email) {
        (Some(p), _) => SearchKey::Phone(p.as_str()),
        (_, Some(e)) => SearchKey::Email(e.as_str()),
        _ if name.chars().count() >= 2 && name.chars().count() <= 64 => SearchKey::Name(&name),
        _ => {
            return Err(AppError::invalid_field(
                "q",
                "must be a phone number, an email, or 2 to 64 characters of a name",
            ))
        }
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 50);
    let rows = store::search(scope.tenant(&state.db), &scope.user_id, key, limit).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(public_view(&state.db, &scope.user_id, row).await?);
    }
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SyncContactsBody {
    /// Up to 1000 phone numbers in E.164 (spaces, dashes and parentheses are ignored; numbers
    /// that are not E.164 are skipped).
    pub phones: Vec<String>,
}

/// POST /api/v1/contacts/sync — stores phone numbers in the caller's address book and answers which are users.
#[utoipa::path(post, path = "/contacts/sync", tag = "users", security(("bearer" = [])), request_body = SyncContactsBody,
    responses((status = 200, body = Page<PublicUser>), (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
async fn sync_contacts(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<SyncContactsBody>,
) -> AppResult<Json<Page<PublicUser>>> {
    if b.phones.len() > 1000 {
        return Err(AppError::invalid_field(
            "phones",
            "at most 1000 numbers per call",
        ));
    }
    if let Err(retry) = state
        .limiter
        .check(
            &crate::ratelimit::limits::CONTACT_SYNCS_PER_USER,
            &scope.user_id,
        )
        .await
    {
        return Err(AppError::rate_limited(
            crate::error::Code::RateLimited,
            retry,
        ));
    }
    let mut phones: Vec<String> = b
        .phones
        .iter()
        .filter_map(|p| Phone::parse(p).ok())
        .map(|p| p.as_str().to_owned())
        .collect();
    phones.sort();
    phones.dedup();
    store::add_to_address_book(&state.db, &scope.user_id, &phones).await?;
    let rows = store::contacts(
        scope.tenant(&state.db),
        &scope.user_id,
        Some(&phones),
        None,
        1000,
    )
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(public_view(&state.db, &scope.user_id, row).await?);
    }
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// GET /api/v1/contacts — the caller's address-book entries that are users, by name.
#[utoipa::path(get, path = "/contacts", tag = "users", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<PublicUser>), (status = 401, body = Problem)))]
async fn list_contacts(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<PublicUser>>> {
    let limit = q.limit()?;
    let after: Option<(String, String)> = q.position()?;
    let mut rows = store::contacts(
        scope.tenant(&state.db),
        &scope.user_id,
        None,
        after,
        limit + 1,
    )
    .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|u| encode_cursor(&(u.display_name.to_lowercase(), &u.id)))
    } else {
        None
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(public_view(&state.db, &scope.user_id, row).await?);
    }
    Ok(Json(Page { items, next_cursor }))
}

/// PUT /api/v1/blocks/{userId} — blocks a user: they cannot message the caller, add them to groups or see their presence.
#[utoipa::path(put, path = "/blocks/{userId}", tag = "users", security(("bearer" = [])),
    params(("userId" = String, Path, description = "the user to block")),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn block_user(
    State(state): State<AppState>,
    scope: Scope,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    if user_id == scope.user_id {
        return Err(AppError::invalid_field(
            "userId",
            "you cannot block yourself",
        ));
    }
    store::find_member(scope.tenant(&state.db), &user_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    store::block(&state.db, &scope.user_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/v1/blocks/{userId} — unblocks a user (204 also when they were not blocked).
#[utoipa::path(delete, path = "/blocks/{userId}", tag = "users", security(("bearer" = [])),
    params(("userId" = String, Path, description = "the user to unblock")),
    responses((status = 204), (status = 401, body = Problem)))]
async fn unblock_user(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(user_id): Path<String>,
) -> AppResult<StatusCode> {
    store::unblock(&state.db, &auth.user_id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/blocks — the users the caller blocked.
#[utoipa::path(get, path = "/blocks", tag = "users", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<PublicUser>), (status = 401, body = Problem)))]
async fn list_blocks(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<PublicUser>>> {
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let rows = store::list_blocked(&state.db, &auth.user_id, after.as_deref(), limit + 1).await?;
    let page = Page::from_rows(
        rows,
        limit,
        |u| u.id.clone(),
        |u| PublicUser {
            id: u.id,
            display_name: u.display_name,
            about: String::new(),
            avatar_media_id: None,
            phone: None,
            last_seen_at: None,
        },
    );
    Ok(Json(page))
}
