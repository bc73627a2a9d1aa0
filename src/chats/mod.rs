//! Chats: what a user does with conversations and how they see them. Direct chats (race-safe
//! find-or-create), groups and their membership changes (each written with its system message
//! and change-log rows in one transaction), message requests, per-member settings, the
//! conversation list with last messages and unread counts, and message search.
//!
//! The rows, queries and access check are `conversations`', below `messages`; this folder sits
//! above both.

pub mod model;
pub mod routes;
pub mod search;
pub mod service;
