//! Messages: sending with gap-free per-conversation `seq` and `clientMsgId` idempotency,
//! history paging, edits, deletion for me or for everyone (tombstones), reactions, receipts
//! (`deliveredSeq`/`readSeq`, only forward) and the sender's derived status.

pub mod model;
pub mod pipeline;
pub mod routes;
pub mod service;
pub mod store;
pub mod views;
pub mod write;
