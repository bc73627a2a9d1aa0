//! Erasing an account (GDPR): the profile, sessions, address book and blocks go; messages stay
//! in others' conversations as tombstones from "Deleted user".

use crate::db::{now_ms, Db};
use crate::error::{AppError, AppResult, Code};

pub const DELETED_NAME: &str = "Deleted user";

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
        let t = crate::db::Tenant::new(db, &workspace_id);
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
        "UPDATE messages SET text = NULL, media_id = NULL, payload = NULL, reply_to_id = NULL, edited_at = NULL, deleted_at = $2 \
         WHERE sender_type = 'user' AND sender_id = $1 AND deleted_at IS NULL",
        "DELETE FROM reactions WHERE reactor_type = 'user' AND reactor_id = $1",
        "DELETE FROM address_book WHERE owner_id = $1",
        "DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1",
        "DELETE FROM password_resets WHERE user_id = $1",
        "DELETE FROM otp_challenges WHERE phone = (SELECT phone FROM users WHERE id = $1)",
        "DELETE FROM message_hidden WHERE user_id = $1",
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
    let sessions = crate::auth::store::revoke_all_sessions(&mut tx, user_id).await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    db.commit(tx).await?;
    Ok(sessions)
}
