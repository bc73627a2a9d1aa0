//! The WhatsApp Business Cloud API bridge.
//!
//! - [`channels`]: the numbers a workspace connects, with sealed secrets.
//! - [`webhook`]: the handshake and the signed webhook; bodies are recorded before the 200 and
//!   applied by a job through [`ingest`] (also used by `palaver import-webhooks`).
//! - [`parse`]: the webhook body, read defensively.
//! - [`leads`]: external contacts, made from webhooks' `contacts[]`.
//! - [`media`]: inbound media fetched from the Graph API in the background.
//! - [`outbound`]: agents' messages, reactions and read marks sent by a durable queue, with the
//!   24-hour window, retries and the guard against sending twice.
//! - [`templates`]: what may be sent outside the window; synced from the WABA.
//!
//! Each (channel, lead) pair is one `channel` conversation whose members are the workspace's
//! owners, admins and agents, so history, sync and live events work as for any conversation.

/// The customer-service window: free-form replies within 24 hours of the customer's last
/// message; templates only after that.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Makes a workspace's new (or newly promoted) agent a member of its channel conversations,
/// so they see them like the agents who were there when the conversations began.
pub async fn join_channel_conversations(
    tx: &mut crate::db::Tx,
    workspace_id: &str,
    user_id: &str,
) -> crate::error::AppResult<()> {
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_seq) \
         SELECT c.id, $1, 'member', $2, 0 FROM conversations c \
         WHERE c.workspace_id = $3 AND c.kind = 'channel' \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = NULL, left_seq = NULL, \
         left_pos = NULL, joined_seq = 0, joined_at = excluded.joined_at \
         WHERE conversation_members.left_at IS NOT NULL",
    )
    .bind(user_id)
    .bind(crate::db::now_ms())
    .bind(workspace_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub mod channels;
pub mod import;
pub mod ingest;
pub mod leads;
pub mod media;
pub mod outbound;
pub mod parse;
pub mod templates;
pub mod webhook;
