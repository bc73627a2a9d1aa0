//! Calls: 1:1 audio and video calls between the members of a direct conversation. Palaver
//! relays the signalling (the SDP offer and answer, ICE candidates) over Socket.IO; the media
//! flows between the devices, or through TURN.
//!
//! - [`ice`]: the STUN and TURN servers for a call, with short-lived TURN credentials.
//! - [`service`]: the call's state machine. `ringing → active → ended`, or `ringing → ended`;
//!   each move is one guarded UPDATE, so of two racing moves (two accepts, an accept and an
//!   end) exactly one happens and the other is told the call moved on. A user is on one call
//!   at a time (`call_lines`): an invite to someone ringing or talking ends at once as `busy`.
//!   Every end writes the call's outcome and one `call` message in the conversation, in one
//!   transaction. A ringing call ends as `missed` by a durable job at the ring timeout (a
//!   restart does not lose it); a device in a call that goes away (or its node) ends it as
//!   `failed`.
//! - [`store`]: the rows; [`model`]: the shapes; [`routes`]: the call log and the ICE servers.
//!
//! The service answers with [`model::Signal`]s, the events to send to which devices;
//! `realtime::calls` takes the client events and sends the signals.

pub mod ice;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;

/// The background job that ends a call nobody answered. Payload: the call id.
pub mod kinds {
    pub const RING_TIMEOUT: &str = "call.ring_timeout";
}
