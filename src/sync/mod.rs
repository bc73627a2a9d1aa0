//! Sync: a user's change stream, from the change log (`changes`). `GET /api/v1/sync` and the
//! socket's `sync:request` page through the changes of the caller's conversations by cursor,
//! each as the event that was pushed live (`envelope`).

pub mod envelope;
pub mod routes;
pub mod service;
