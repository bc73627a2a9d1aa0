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

pub use crate::chats::model::WINDOW_MS;

/// The kinds of background job the bridge queues (each run by its module).
pub mod kinds {
    /// An agent's message to a customer. Payload: the message id.
    pub const SEND: &str = "whatsapp.send";
    /// Payload: `{messageId, emoji}` (empty emoji removes).
    pub const REACT: &str = "whatsapp.react";
    /// Payload: the id of the customer's message to mark read.
    pub const MARK_READ: &str = "whatsapp.read";
}

/// Queues the send of a stored channel message to its customer, in the transaction that
/// stores it (run by `outbound::send`).
pub async fn queue_send(tx: &mut crate::db::Tx, message_id: &str) -> crate::error::AppResult<()> {
    crate::jobs::enqueue(tx, kinds::SEND, message_id).await
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
