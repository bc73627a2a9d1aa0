//! Sync: a user's change stream, from the change log (`changes`). `GET /api/v1/sync` and the
//! socket's `sync:request` page through the changes of the caller's conversations by cursor,
//! each as the event that was pushed live (`envelope`).

/// Events in a page when the client does not say.
pub const DEFAULT_LIMIT: i64 = 500;
/// The most events a page holds: 10,000 missed messages are two round trips (a catch-up is
/// bound by the work per event, and each page adds a round trip and its fixed reads).
pub const MAX_LIMIT: i64 = 5000;

pub mod envelope;
pub mod routes;
pub mod service;
pub mod store;
pub mod written;
