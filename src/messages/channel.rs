//! A send into a channel conversation goes to a customer on WhatsApp: it is checked here
//! (an approved template, or any message inside the 24-hour customer-service window) and
//! leaves through jobs queued in the transaction that stores it. `whatsapp::outbound` runs
//! those jobs; this file is all that the message path knows of the bridge.

use serde_json::json;

use super::model::{MessageType, Outgoing, TemplateSend};
use super::templates;
use crate::conversations::model::{ConversationRow, WINDOW_MS};
use crate::db::{now_ms, Tenant, Tx};
use crate::error::{AppError, AppResult, Code};
use crate::jobs;

/// The kinds of background job that carry a channel message out (run by `whatsapp::outbound`).
pub mod kinds {
    /// An agent's message to a customer. Payload: the message id.
    pub const SEND: &str = "whatsapp.send";
    /// Payload: `{messageId, emoji}` (empty emoji removes).
    pub const REACT: &str = "whatsapp.react";
    /// Payload: the id of the customer's message to mark read.
    pub const MARK_READ: &str = "whatsapp.read";
}

/// Checks a send into a channel conversation: templates against the stored template (and
/// renders their text); anything else only inside the customer-service window.
pub async fn check(
    t: Tenant<'_>,
    conversation: &ConversationRow,
    mut out: Outgoing,
) -> AppResult<Outgoing> {
    if out.content.kind == MessageType::Template {
        let send: TemplateSend = out
            .content
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .ok_or_else(|| {
                AppError::invalid_field("template", "is required for template messages")
            })?;
        let template = templates::find_by_name(t, &send.name, &send.language)
            .await?
            .filter(|tpl| tpl.status == "approved")
            .ok_or_else(|| {
                AppError::invalid_field(
                    "template",
                    "no approved template with this name and language",
                )
            })?;
        let body = templates::body_text(&template);
        let wanted = templates::variable_count(&body);
        if send.parameters.len() != wanted {
            return Err(AppError::invalid_field(
                "template.parameters",
                format!(
                    "the template expects {wanted} parameter(s), got {}",
                    send.parameters.len()
                ),
            ));
        }
        out.content.text = Some(templates::render(&body, &send.parameters));
        return Ok(out);
    }
    let open = conversation
        .last_inbound_at
        .is_some_and(|at| now_ms() - at <= WINDOW_MS);
    if !open {
        return Err(AppError::new(
            Code::OutsideCustomerServiceWindow,
            "the customer has not written in the last 24 hours: send a template",
        )
        .at_field("type"));
    }
    Ok(out)
}

/// Queues the send of a stored channel message to its customer, in the transaction that
/// stores it.
pub async fn queue_send(tx: &mut Tx, message_id: &str) -> AppResult<()> {
    jobs::enqueue(tx, kinds::SEND, message_id).await
}

/// The same, due at `at` (a campaign's paced sends).
pub async fn queue_send_at(tx: &mut Tx, message_id: &str, at: i64) -> AppResult<()> {
    jobs::enqueue_at(tx, kinds::SEND, message_id, at).await
}

/// After an agent's reaction in a channel conversation: queue it for WhatsApp.
pub async fn queue_reaction(tx: &mut Tx, message_id: &str, emoji: Option<&str>) -> AppResult<()> {
    let payload = json!({"messageId": message_id, "emoji": emoji.unwrap_or("")});
    jobs::enqueue(tx, kinds::REACT, &payload.to_string()).await
}

/// After an agent read a channel conversation up to `seq`: mark the customer's last message
/// up to there read on WhatsApp.
pub async fn queue_read(tx: &mut Tx, conversation_id: &str, seq: i64) -> AppResult<()> {
    let last: Option<String> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND seq <= $2 AND sender_type = 'lead' \
         AND external_id IS NOT NULL ORDER BY seq DESC LIMIT 1",
    )
    .bind(conversation_id)
    .bind(seq)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = last {
        jobs::enqueue(tx, kinds::MARK_READ, &id).await?;
    }
    Ok(())
}
