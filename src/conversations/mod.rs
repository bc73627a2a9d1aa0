//! Conversations as data: the rows of conversations and their members (direct chats, groups
//! with owner/admin/member roles, WhatsApp channel conversations), their queries, and the one
//! access check, [`access::access`]: only members see a conversation, and everyone else gets
//! the same 404.
//!
//! This is the floor under `messages` (a message lives in a conversation) and `chats` (the
//! rules and API shapes of conversations, which show their last message).

pub mod access;
pub mod desk;
pub mod facts;
pub mod model;
pub mod store;
pub mod triggers;
