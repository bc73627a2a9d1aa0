//! The change stream behind sync: every change a user can see (new, edited or deleted
//! message, reaction, receipt, conversation or membership change) is a row of one log, written
//! in the same transaction as the change itself. `GET /api/v1/sync` pages through the rows of
//! the caller's conversations by cursor.
//!
//! Ordering without gaps: on SQLite there is one writer, so positions are handed out in commit
//! order. On PostgreSQL a sequence is not commit order (a transaction may take position 10 and
//! commit after another took 11), so every row records its transaction id, readers only return
//! rows of transactions older than every transaction still running (`pg_snapshot_xmin`), and
//! the order is (transaction id, position). A row that commits late therefore always sorts
//! after any cursor handed out before it became visible.

pub mod envelope;
pub mod routes;
pub mod service;
pub mod store;

/// Change kinds; each is the name of the live event it replays.
pub mod kinds {
    pub use crate::events::{CONVERSATION_UPDATED, MESSAGE_NEW, MESSAGE_STATUS, MESSAGE_UPDATED};
}
