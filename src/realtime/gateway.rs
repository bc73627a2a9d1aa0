//! The gateway: Engine.IO's handler that speaks Socket.IO. The handshake (an access token,
//! a workspace), then a worker per device while it has events, which runs them in order, and
//! the acks. An idle device has no task of its own here: its events queue on its socket, and
//! access tokens expire by one look a second at every device ([`expire_tokens`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::hub::{Conn, Event, Session, Sock, Working, REFUSED_MAX};
use super::{announce, calls, handlers, protocol, typing, SOCKET_PATH};
use crate::app::AppState;
use crate::engineio::{DisconnectReason, SendError, Str};
use crate::events;

/// Per-device events waiting to be handled, at most this many; more are refused.
const EVENT_QUEUE: usize = 64;
/// Engine.IO packets queued for one device before it counts as not reading.
pub const SEND_BUFFER: usize = 512;

/// How long an ack waits for room in a device's transport buffer before the device counts as
/// not reading.
const ACK_ROOM_WAIT: Duration = Duration::from_secs(5);

/// Room a refusal leaves in a device's transport buffer for the server's own events.
const EVENT_ROOM: usize = 32;

/// Room any other answer leaves there for them: a device's own burst of answers never fills
/// the buffer, because a push that finds it full drops the device. (Without it, under CPU
/// load, the acks of a 3,000-send burst filled all 512 places before the device's session
/// wrote them out, and the conversation's creation, dispatched late, found none: the device
/// was dropped although it read.)
const ANSWER_ROOM: usize = 16;

/// Sends an ack. When the device's transport buffer has no more than [`ANSWER_ROOM`] places
/// left (a burst of answers at once), it waits for room, looking again every 2 ms (a full
/// queue is rare), for at most [`ACK_ROOM_WAIT`]. A device that has not read by then is
/// disconnected (like a slow consumer of events), which its client sees at once — an ack is
/// never dropped silently.
async fn answer(socket: &Sock, id: u64, reply: &impl serde::Serialize) {
    send_ack(socket, protocol::ack(id, reply), ANSWER_ROOM).await;
}

/// Answers a refused event `rate_limited`. A device bursting thousands of events gets
/// thousands of refusals: they wait while the buffer has less than [`EVENT_ROOM`] free, so
/// that they never crowd out the events pushed to it meanwhile (a push that finds the buffer
/// full drops the device at once).
async fn refuse(socket: &Sock, id: u64, message: &str, retry_after: u64) {
    let reply = serde_json::json!({"ok": false, "error": {"code": "rate_limited", "message": message, "retryAfter": retry_after}});
    send_ack(socket, protocol::ack(id, &reply), EVENT_ROOM).await;
}

async fn send_ack(socket: &Sock, mut packet: Str, leave: usize) {
    let deadline = tokio::time::Instant::now() + ACK_ROOM_WAIT;
    loop {
        match socket.emit_leaving(packet, leave) {
            Ok(()) | Err(SendError::Closed(_)) => return,
            Err(SendError::Full(p)) => packet = p,
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::info!(sid = %socket.id, "a device stopped reading its acks; disconnecting it");
            metrics::counter!("realtime_slow_consumers_dropped_total").increment(1);
            socket.close(DisconnectReason::TransportError);
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The Engine.IO handler that speaks Socket.IO.
#[derive(Clone)]
pub struct Gateway {
    state: AppState,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gateway")
    }
}

impl Gateway {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The Engine.IO configuration: bounded queues, payloads like the JSON limit, small
    /// read buffers (client frames are small; a larger frame grows the buffer).
    pub fn config() -> crate::engineio::Config {
        crate::engineio::Config {
            path: SOCKET_PATH,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: crate::app::JSON_BODY_LIMIT,
            queue: SEND_BUFFER,
            read_buffer: 512,
            write_buffer: 16 * 1024,
        }
    }

    async fn connect(self, socket: Sock, namespace: String, auth: Option<Value>) {
        if socket.data.session.get().is_some() {
            return;
        }
        if namespace != "/" {
            let _ = socket.emit(protocol::connect_error(
                &namespace,
                "Invalid namespace",
                serde_json::json!({"code": "invalid_namespace"}),
            ));
            return;
        }
        let token = auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let workspace = auth
            .as_ref()
            .and_then(|a| a.get("workspace"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let session = match handlers::authenticate(&self.state, token, workspace).await {
            Ok(s) => s,
            Err(e) => {
                let code = e.code().as_str();
                let code = if code == "token_expired" || code == "unauthorized" {
                    "unauthorized"
                } else {
                    code
                };
                let _ = socket.emit(protocol::connect_error(
                    "/",
                    "unauthorized",
                    serde_json::json!({"code": code, "reason": e.code().as_str()}),
                ));
                return;
            }
        };
        let expires = token_expiry(&self.state, token);
        if socket.data.expires.set(expires).is_err()
            || socket.data.session.set(session.clone()).is_err()
        {
            return;
        }
        let first_here = self.state.hub.add(
            &session.user_id,
            socket.clone(),
            protocol::connect_ok(socket.id.as_str()),
        );
        if self
            .state
            .presence
            .device_connected(&self.state.hub, &session.user_id, first_here)
            .await
        {
            tokio::spawn(announce::announce(
                self.state.clone(),
                session.user_id.clone(),
                true,
            ));
        }
        tokio::spawn(calls::ring_here(self.state.clone(), session.clone()));
        tokio::spawn(announce::snapshot(self.state.clone(), session.clone()));
    }

    /// Queues a client event on its device; starts the device's worker if none runs.
    fn queue(self: &Arc<Self>, socket: &Sock, event: Event) {
        if socket.data.session.get().is_none() {
            return;
        }
        let mut inbox = socket.data.inbox.lock().unwrap_or_else(|p| p.into_inner());
        if inbox.events.len() >= EVENT_QUEUE {
            // Answered `rate_limited` by the worker, which is busy with that full queue.
            if let Some(id) = event.ack {
                if inbox.refused.len() >= REFUSED_MAX {
                    drop(inbox);
                    tracing::info!(sid = %socket.id, "a device ignores back-pressure; disconnecting it");
                    socket.close(DisconnectReason::TransportError);
                } else {
                    inbox.refused.push(id);
                }
            }
            return;
        }
        inbox.events.push_back(event);
        if !inbox.working {
            inbox.working = true;
            drop(inbox);
            tokio::spawn(Gateway::clone(self).work(socket.clone()));
        }
    }

    /// Handles a device's queued events in the order they came, until none is left (or the
    /// socket has closed).
    async fn work(self, socket: Sock) {
        let Some(session) = socket.data.session.get() else {
            return;
        };
        let _working = Working::new(&self.state.hub);
        loop {
            let next = {
                let mut inbox = socket.data.inbox.lock().unwrap_or_else(|p| p.into_inner());
                if socket.is_closed() {
                    inbox.events.clear();
                }
                let next = inbox.events.pop_front();
                if next.is_none() {
                    inbox.working = false;
                    // The queue's memory goes too: an idle device keeps none.
                    inbox.events = std::collections::VecDeque::new();
                }
                next
            };
            let Some(Event { ack, name, data }) = next else {
                self.answer_refused(&socket).await;
                return;
            };
            let started = std::time::Instant::now();
            self.answer_refused(&socket).await;
            if let Err(retry) = self.limit(session, &socket).await {
                if let Some(id) = ack {
                    refuse(&socket, id, "too many events", retry).await;
                }
                continue;
            }
            metrics::counter!("realtime_events_in_total", "event" => event_label(&name))
                .increment(1);
            if name == events::MESSAGE_SEND {
                // Queued in order; acked when durable, while the next events are handled.
                let Ok(permit) = socket.data.in_flight.acquire().await else {
                    return;
                };
                // Given back by the task that acks the send.
                permit.forget();
                match Box::pin(handlers::send_queued(&self.state, session, &socket, data)).await {
                    Ok(sending) => {
                        let (state, session, socket) =
                            (self.state.clone(), session.clone(), socket.clone());
                        tokio::spawn(async move {
                            let client_msg_id = sending.client_msg_id.clone();
                            let reply = handlers::send_finish(&state, &session, sending).await;
                            if let Some(id) = ack {
                                send_ack(&socket, reply.ack(id), ANSWER_ROOM).await;
                                metrics::histogram!("realtime_ack_seconds", "event" => events::MESSAGE_SEND)
                                    .record(started.elapsed().as_secs_f64());
                            }
                            state.hub.acked(&session.user_id, &client_msg_id);
                            socket.data.in_flight.add_permits(1);
                        });
                    }
                    Err(reply) => {
                        socket.data.in_flight.add_permits(1);
                        if let Some(id) = ack {
                            answer(&socket, id, &reply).await;
                        }
                    }
                }
                continue;
            }
            if calls::is_call_event(&name) {
                let (reply, signals) =
                    Box::pin(calls::handle(&self.state, session, &name, data)).await;
                if let Some(id) = ack {
                    answer(&socket, id, &reply).await;
                }
                calls::send(&self.state, signals);
                continue;
            }
            let reply = Box::pin(handlers::handle(
                &self.state,
                session,
                &socket.data,
                &name,
                data,
            ))
            .await;
            if let (Some(id), Some(reply)) = (ack, reply) {
                send_ack(&socket, reply.ack(id), ANSWER_ROOM).await;
                metrics::histogram!("realtime_ack_seconds", "event" => event_label(&name))
                    .record(started.elapsed().as_secs_f64());
            }
        }
    }

    /// Answers the events refused while the queue was full.
    async fn answer_refused(&self, socket: &Sock) {
        let refused = std::mem::take(
            &mut socket
                .data
                .inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refused,
        );
        for id in refused {
            refuse(socket, id, "too many events in flight", 1).await;
        }
    }

    /// Counts an event against its device's and its user's limits.
    async fn limit(&self, session: &Session, socket: &Sock) -> Result<(), u64> {
        use crate::ratelimit::limits;
        let limiter = &self.state.limiter;
        if !limiter.is_on() {
            return Ok(());
        }
        limiter
            .check(&limits::SOCKET_EVENTS_PER_DEVICE, socket.id.as_str())
            .await?;
        limiter
            .check(&limits::SOCKET_EVENTS_PER_USER, &session.user_id)
            .await
    }
}

/// Known event names as metric labels (unknown ones share one label).
fn event_label(name: &str) -> &'static str {
    use events::*;
    [
        MESSAGE_SEND,
        MESSAGE_DELIVERED,
        MESSAGE_READ,
        MESSAGE_EDIT,
        MESSAGE_DELETE,
        MESSAGE_REACT,
        SYNC_REQUEST,
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("other")
}

/// Ends the sockets whose access token has expired (the client refreshes and reconnects): one
/// look a second at every device of this node, instead of a timer per device.
pub async fn expire_tokens(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.hub.end_expired(tokio::time::Instant::now());
    }
}

/// When the socket's access token expires (now if it does not verify: it did a moment ago).
fn token_expiry(state: &AppState, token: &str) -> tokio::time::Instant {
    let left = state
        .keys
        .verify(token)
        .map(|claims| (claims.exp - chrono::Utc::now().timestamp()).max(0) as u64)
        .unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(left)
}

impl crate::engineio::Handler for Gateway {
    type Data = Conn;

    fn on_disconnect(&self, socket: &Sock, _reason: DisconnectReason) {
        if let Some(session) = socket.data.session.get() {
            let last_here = self.state.hub.remove(&session.user_id, socket);
            let state = self.state.clone();
            let user_id = session.user_id.clone();
            tokio::spawn(async move {
                if state.presence.device_gone(&user_id, last_here).await {
                    announce::announce(state, user_id, false).await;
                }
            });
            typing::stop_all(&self.state, session);
            let stopping = self.state.hub.is_stopping();
            if !stopping
                && !self
                    .state
                    .hub
                    .has_session(&session.user_id, &session.session_id)
            {
                tokio::spawn(calls::device_gone(self.state.clone(), session.clone()));
            }
        }
    }

    fn on_message(self: &Arc<Self>, msg: &str, socket: &Sock) {
        match protocol::decode(msg) {
            protocol::Incoming::Connect { namespace, auth } => {
                tokio::spawn(Gateway::clone(self).connect(socket.clone(), namespace, auth));
            }
            protocol::Incoming::Event {
                ack, name, data, ..
            } => self.queue(socket, Event { ack, name, data }),
            protocol::Incoming::Disconnect { .. } => socket.close(DisconnectReason::TransportClose),
            protocol::Incoming::Unsupported => {}
        }
    }

    fn on_binary(self: &Arc<Self>, _data: Vec<u8>, socket: &Sock) {
        // Binary attachments are not part of this API.
        socket.close(DisconnectReason::PacketParsingError);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    /// A device's own answers leave the last [`ANSWER_ROOM`] places of its buffer to pushes:
    /// an answer that finds no more than that free waits, a push still goes in, and the
    /// answer follows once the device has read.
    #[tokio::test]
    async fn answers_leave_room_for_pushes() {
        let socket: Sock = Arc::new(crate::engineio::Socket::detached(
            Conn::default(),
            SEND_BUFFER,
        ));
        let ok = serde_json::json!({"ok": true});
        for id in 0..(SEND_BUFFER - ANSWER_ROOM) as u64 {
            answer(&socket, id, &ok).await;
        }
        assert_eq!(socket.room(), ANSWER_ROOM);
        let mut waiting = std::pin::pin!(answer(&socket, 9_999, &ok));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(
            waiting.as_mut().poll(&mut cx).is_pending(),
            "the answer waits for room"
        );
        assert_eq!(socket.room(), ANSWER_ROOM, "and takes none of the pushes'");
        for _ in 0..ANSWER_ROOM {
            let push = protocol::event("presence", &ok);
            assert!(socket.emit(push).is_ok(), "a push finds room");
        }
        let written = socket.written_out();
        assert_eq!(written.len(), SEND_BUFFER);
        waiting.await;
        assert_eq!(
            socket.room(),
            SEND_BUFFER - 1,
            "the answer went in once read"
        );
        assert!(!socket.is_closed());
    }
}
