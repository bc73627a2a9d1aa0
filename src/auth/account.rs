//! The signed-in user's own account, `/api/v1/users/me`: reading it, changing it (a new email
//! needs the password and is verified by mail) and erasing it (GDPR): the profile, sessions,
//! address book and blocks go; messages stay in others' conversations as tombstones from
//! "Deleted user". These live with sign-in because they need its rules: the password check,
//! the verification mail, revoking every session.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::db::{now_ms, Db, Tenant};
use crate::error::{AppError, AppResult, Code, FieldError, Problem};
use crate::http::validate::{optional, Validate};
use crate::http::{AuthUser, Json};
use crate::users::model::{parse_about, parse_display_name, Email, LastSeenPrivacy, Me};
use crate::users::store::{self, ProfileChange};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, update_me, erase_me))
}

/// GET /api/v1/users/me — the caller's profile.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
async fn get_me(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<Me>> {
    let user = store::find_by_id(&state.db, &auth.user_id)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    Ok(Json(Me::from(&user)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivacyChange {
    pub last_seen: Option<LastSeenPrivacy>,
    /// Whether push notifications show the sender and a preview.
    pub push_previews: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMeBody {
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: Option<String>,
    /// Up to 140 characters.
    #[schema(max_length = 140)]
    pub about: Option<String>,
    /// The id of an uploaded image; `null` removes the avatar.
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub avatar_media_id: Option<Option<String>>,
    /// A new address is unverified until the link mailed to it is opened.
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    /// Required with a new `email` when the account has a password.
    #[schema(max_length = 128)]
    pub current_password: Option<String>,
    pub privacy: Option<PrivacyChange>,
}

/// PATCH /api/v1/users/me — changes the caller's profile; absent fields stay as they are.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateMeBody,
    responses((status = 200, body = Me), (status = 401, body = Problem), (status = 409, description = "email_taken", body = Problem), (status = 422, body = Problem)))]
async fn update_me(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(b): Json<UpdateMeBody>,
) -> AppResult<Json<Me>> {
    let (display_name, about, email, avatar) = (
        optional("displayName", b.display_name, |n| parse_display_name(&n)),
        optional("about", b.about, |a| parse_about(&a)),
        optional("email", b.email, |e| {
            Email::parse(&e).map(|e| e.as_str().to_owned())
        }),
        Ok::<_, FieldError>(b.avatar_media_id),
    )
        .validate()?;
    if b.current_password
        .as_ref()
        .is_some_and(|p| p.chars().count() > 128)
    {
        return Err(AppError::invalid_field(
            "currentPassword",
            "must be at most 128 characters",
        ));
    }
    if let Some(Some(id)) = &avatar {
        crate::media::usable_as_avatar(&state.db, &auth.user_id, id).await?;
    }
    let current = store::find_by_id(&state.db, &auth.user_id)
        .await?
        .ok_or_else(AppError::unauthorized)?;
    let new_email = email
        .clone()
        .filter(|e| current.email.as_deref() != Some(e.as_str()));
    if new_email.is_some() && current.password_hash.is_some() {
        let given = b.current_password.ok_or_else(|| {
            AppError::invalid_field("currentPassword", "is required to change the email")
        })?;
        if !super::secrets::verify_password(given, current.password_hash.clone()).await? {
            return Err(AppError::invalid_field(
                "currentPassword",
                "is not the password",
            ));
        }
    }
    let change = ProfileChange {
        display_name,
        about,
        email,
        privacy_last_seen: b
            .privacy
            .as_ref()
            .and_then(|p| p.last_seen)
            .map(LastSeenPrivacy::as_str),
        push_previews: b.privacy.as_ref().and_then(|p| p.push_previews),
        avatar,
    };
    let user = store::update_profile(&state.db, &auth.user_id, &change).await?;
    if let Some(email) = new_email {
        tokio::spawn(super::service::send_verification(
            state.clone(),
            user.id.clone(),
            email,
        ));
    }
    Ok(Json(Me::from(&user)))
}

/// DELETE /api/v1/users/me — erases the caller's account: profile, sessions, contacts and blocks go; their messages stay in others' conversations as tombstones.
#[utoipa::path(delete, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 409, description = "last_owner: hand over owned workspaces first", body = Problem)))]
async fn erase_me(State(state): State<AppState>, auth: AuthUser) -> AppResult<StatusCode> {
    let sessions = erase(&state.db, &auth.user_id).await?;
    state.db.wake_jobs();
    state.sessions_revoked(&sessions);
    tracing::info!(user_id = auth.user_id, "account erased");
    Ok(StatusCode::NO_CONTENT)
}

/// Erases the user. Refused while they are the last owner of a workspace with other members.
pub async fn erase(db: &Db, user_id: &str) -> AppResult<Vec<String>> {
    let sole_owner: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships m WHERE m.user_id = $1 AND m.role = 'owner' \
         AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.workspace_id = m.workspace_id AND o.role = 'owner' AND o.user_id <> $1) \
         AND EXISTS (SELECT 1 FROM memberships x WHERE x.workspace_id = m.workspace_id AND x.user_id <> $1)",
    )
    .bind(user_id)
    .fetch_one(db.reader())
    .await?;
    if sole_owner > 0 {
        return Err(AppError::new(
            Code::LastOwner,
            "hand your workspaces to another owner before deleting your account",
        ));
    }
    // Groups first, through the normal path: system message, owner hand-over, change rows.
    let groups: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.id, c.workspace_id FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = $1 AND m.left_at IS NULL AND c.kind = 'group'",
    )
    .bind(user_id)
    .fetch_all(db.reader())
    .await?;
    for (conversation_id, workspace_id) in groups {
        let t = Tenant::new(db, &workspace_id);
        crate::chats::service::remove_member(t, user_id, &conversation_id, user_id).await?;
    }
    let now = now_ms();
    let mut tx = db.begin().await?;
    // Their messages become tombstones, and every reader's sync learns of it.
    sqlx::query(
        "INSERT INTO changes (conversation_id, kind, message_id, seq, created_at) \
         SELECT conversation_id, 'message:updated', id, seq, $2 FROM messages \
         WHERE sender_type = 'user' AND sender_id = $1 AND deleted_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for sql in [
        "DELETE FROM reactions WHERE message_id IN (SELECT id FROM messages WHERE sender_type = 'user' AND sender_id = $1)",
        "DELETE FROM message_edits WHERE message_id IN (SELECT id FROM messages WHERE sender_type = 'user' AND sender_id = $1)",
        // What AI analysis kept of the conversations they wrote in: the text sent to a provider
        // (the call's usage stays) and the insights, which may quote them.
        "UPDATE ai_calls SET sent = NULL WHERE conversation_id IN \
         (SELECT DISTINCT conversation_id FROM messages WHERE sender_type = 'user' AND sender_id = $1)",
        "DELETE FROM ai_insights WHERE conversation_id IN \
         (SELECT DISTINCT conversation_id FROM messages WHERE sender_type = 'user' AND sender_id = $1)",
        "UPDATE messages SET text = NULL, media_id = NULL, payload = NULL, reply_to_id = NULL, edited_at = NULL, deleted_at = $2 \
         WHERE sender_type = 'user' AND sender_id = $1 AND deleted_at IS NULL",
        "DELETE FROM reactions WHERE reactor_type = 'user' AND reactor_id = $1",
        "DELETE FROM address_book WHERE owner_id = $1",
        "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
        "DELETE FROM password_resets WHERE user_id = $1",
        "DELETE FROM otp_challenges WHERE phone = (SELECT phone FROM users WHERE id = $1)",
        "DELETE FROM message_hidden WHERE user_id = $1",
        "DELETE FROM push_subscriptions WHERE user_id = $1",
        "DELETE FROM memberships WHERE user_id = $1",
        "UPDATE conversation_members SET left_at = $2, left_seq = (SELECT last_seq FROM conversations c WHERE c.id = conversation_id) \
         WHERE user_id = $1 AND left_at IS NULL",
        "UPDATE users SET display_name = 'Deleted user', about = '', avatar_media_id = NULL, phone = NULL, email = NULL, \
         password_hash = NULL, privacy_last_seen = 'nobody', is_platform_admin = 0, is_invited = 0, last_seen_at = NULL, updated_at = $2 \
         WHERE id = $1",
    ] {
        sqlx::query(sql).bind(user_id).bind(now).execute(&mut *tx).await?;
    }
    // Their uploads go, rows now and bytes by a job (storage is not transactional).
    let keys = crate::media::store::delete_owned_by(&mut tx, user_id).await?;
    crate::media::delete_objects_later(&mut tx, keys).await?;
    let sessions = super::store::revoke_all_sessions(&mut tx, user_id).await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    db.commit(tx).await?;
    Ok(sessions)
}
