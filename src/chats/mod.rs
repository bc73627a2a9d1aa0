//! Conversations: direct chats (race-safe find-or-create), groups with owner/admin/member roles,
//! message requests, per-member settings, and the conversation list. Access to a conversation
//! is decided in one place, [`service::access`]: only its members see it, and everyone else gets
//! the same 404.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;
