//! The real-time gateway: Socket.IO (protocol 5) on the HTTP port, over [`crate::engineio`]
//! (WebSocket and long-polling).
//!
//! - A socket is one device of one user: the handshake's `auth.token` is an access token
//!   (checked like HTTP), `auth.workspace` picks the workspace. Refusal is a `connect_error` with
//!   `data.code = "unauthorized"`; an access token's expiry ends the socket.
//! - Client events go through the same services as HTTP; each socket's events run in order.
//!   A `message:send` is checked and queued in that order and acked once durable, without
//!   holding up the socket's next events (at most 64 sends in flight per socket).
//! - A `sync:request` answered with `hasMore` has the next pages read ahead for its device
//!   (`read_ahead.rs`: two at most, and a bound for the server), which answer the next
//!   requests if they ask for those pages.
//! - Server events come from the change log: [`dispatch`] follows it and pushes every committed
//!   change, in log order, to the connected devices of the users who may see it, serialized
//!   once per event. So nothing is pushed before it is durable, and the cursor in each event is
//!   the one `sync:request` continues from.
//! - Back-pressure: Engine.IO's per-socket queue is bounded; a device that stops reading is
//!   disconnected (it syncs when it comes back).
//!
//! Files: `gateway.rs` (the handshake and each device's worker), `handlers.rs` (client
//! events), `hub.rs` (the connected devices, sending to them; names no state),
//! `read_ahead.rs` (sync pages read ahead), `presence.rs` (who is online) and `announce.rs`
//! (telling who may know), `typing.rs`, `dispatch.rs`, `protocol.rs` (Socket.IO packets).

pub mod announce;
pub mod calls;
pub mod dispatch;
mod gateway;
mod handlers;
pub mod hub;
pub mod presence;
pub mod protocol;
mod read_ahead;
mod typing;

pub use gateway::{expire_tokens, Gateway, SEND_BUFFER};
pub use hub::{Hub, Session};

/// Where Engine.IO listens.
const SOCKET_PATH: &str = "/socket.io";
