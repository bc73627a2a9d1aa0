//! The WhatsApp Business Cloud API bridge.
//!
//! - [`channels`]: the numbers a workspace connects, with sealed secrets.
//! - [`webhook`]: the handshake and the signed webhook; bodies are recorded before the 200 and
//!   applied by a job through [`ingest`] (also used by `palaver import-webhooks`).
//! - [`parse`]: the webhook body, read defensively.
//! - [`media`]: inbound media fetched from the Graph API in the background.
//! - [`outbound`]: agents' messages, reactions and read marks sent by a durable queue, with
//!   retries and the guard against sending twice. The 24-hour window and the template are
//!   checked, and the jobs queued, by `messages::channel` as the message is stored.
//! - [`templates`]: what may be sent outside the window, over HTTP and synced from the WABA
//!   (the rows and their rendering are `messages::templates`).
//!
//! Each (channel, lead) pair is one `channel` conversation whose members are the workspace's
//! owners, admins and agents, so history, sync and live events work as for any conversation.

/// The kinds of background job the bridge runs (queued by `messages::channel`).
pub use crate::messages::channel::kinds;

pub mod channels;
pub mod import;
pub mod ingest;
pub mod media;
pub mod outbound;
pub mod parse;
pub mod templates;
pub mod webhook;
