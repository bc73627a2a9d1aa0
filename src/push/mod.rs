//! Push notifications for devices that are not connected: Web Push (RFC 8030) with VAPID
//! (RFC 8292) and aes128gcm payloads (RFC 8291), and a webhook for FCM/APNs gateways.
//!
//! - [`routes`]: `GET /push/vapid-public-key`, `/push/subscriptions` (per session).
//! - [`follow`]: one node (by lease) follows the change log; a new message for a member with
//!   no connected device marks one notification pending per subscription and conversation
//!   (muted conversations and pending requests excepted) and queues its job two seconds later,
//!   so a burst is one notification. The cursor moves in the transaction that queues.
//! - [`send`]: the job. It reads what is unread when it runs (nothing left: nothing sent),
//!   and sends one notification whose `Topic` is the conversation, so a push service that
//!   still holds an earlier one replaces it. 404/410 remove the subscription; 429 and 5xx
//!   retry with backoff.

pub mod follow;
pub mod model;
pub mod routes;
pub mod send;
pub mod store;
pub mod vapid;

/// The background jobs of push.
pub mod kinds {
    /// A conversation's notification for one subscription. Payload: `{subscription} {conversation}`.
    pub const MESSAGE: &str = "push.message";
    /// An incoming call for one subscription. Payload: JSON `{subscriptionId, call}`.
    pub const CALL: &str = "push.call";
}

/// The handle on the shared state: the VAPID key and the outbound client.
pub struct Push {
    pub vapid: vapid::Vapid,
    pub http: crate::outbound::Outbound,
}
