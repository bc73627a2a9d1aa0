//! Messages: sending with gap-free per-conversation `seq` and `clientMsgId` idempotency,
//! history paging, edits, deletion for me or for everyone (tombstones), reactions, receipts
//! (`deliveredSeq`/`readSeq`, only forward) and the sender's derived status.
//!
//! Files by what they do: `model.rs` (types, parsing a send: `Content::parse`), `service.rs`
//! (the checks and rules), `write.rs` (what a send writes: one by one, and the plan of a
//! batch), `pipeline.rs` (the queue that writes batches), `views.rs` (rows as API shapes),
//! `store.rs` (queries), `routes.rs` (HTTP), `channel.rs` (a send to a WhatsApp customer: the
//! window and template check, the jobs that carry it out), `templates.rs` (the texts that may
//! be sent outside the window).

pub mod channel;
pub mod model;
pub mod pipeline;
pub mod routes;
pub mod service;
pub mod store;
pub mod templates;
pub mod views;
pub mod write;
