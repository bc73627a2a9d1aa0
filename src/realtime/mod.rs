//! The real-time gateway: Socket.IO (protocol 5) on the HTTP port, over engineioxide's
//! Engine.IO (WebSocket and long-polling).
//!
//! - A socket is one device of one user: the handshake's `auth.token` is an access token
//!   (checked like HTTP), `auth.workspace` picks the workspace. Refusal is a `connect_error` with
//!   `data.code = "unauthorized"`; an access token's expiry ends the socket.
//! - Client events go through the same services as HTTP; each socket's events run in order.
//!   A `message:send` is checked and queued in that order and acked once durable, without
//!   holding up the socket's next events (at most 64 sends in flight per socket).
//! - Server events come from the change log: [`dispatch`] follows it and pushes every committed
//!   change, in log order, to the connected devices of the users who may see it, serialized
//!   once per event. So nothing is pushed before it is durable, and the cursor in each event is
//!   the one `sync:request` continues from.
//! - Back-pressure: Engine.IO's per-socket buffer is bounded; a device that stops reading is
//!   disconnected (it syncs when it comes back).

pub mod dispatch;
pub mod events;
mod handlers;
pub mod presence;
pub mod protocol;
mod typing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use engineioxide::handler::EngineIoHandler;
use engineioxide::{DisconnectReason, Socket, Str};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::app::AppState;

/// Per-device events waiting to be handled, at most this many; more are refused.
const EVENT_QUEUE: usize = 64;
/// Sends of one device queued but not yet acked, at most; its next send waits for room.
const SENDS_IN_FLIGHT: usize = 64;
/// Engine.IO packets buffered for one device before it counts as not reading.
pub const SEND_BUFFER: usize = 512;

/// Where Engine.IO listens.
const SOCKET_PATH: &str = "/socket.io";

/// Who a connected socket is.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub session_id: String,
    pub workspace_id: String,
}

/// A client event waiting for the device's worker. Boxed in the queue: a queue allocates its
/// first 32 slots up front, and every idle device has one.
struct Event {
    ack: Option<u64>,
    name: String,
    data: Value,
}

/// Engine.IO socket data: set once the Socket.IO handshake succeeded.
#[derive(Default)]
pub struct Conn {
    session: OnceLock<Session>,
    events: OnceLock<mpsc::Sender<Box<Event>>>,
    /// Ack ids of events refused because the device's queue was full, answered `rate_limited`
    /// by its worker (which is busy with that full queue, so it gets to them soon). Bounded
    /// by [`REFUSED_MAX`].
    refused: Mutex<Vec<u64>>,
}

/// A device with more refused events than this waiting for their answer does not wait for
/// answers at all; it is disconnected.
const REFUSED_MAX: usize = 4096;
/// How long an ack waits for room in a device's transport buffer before the device counts as
/// not reading.
const ACK_ROOM_WAIT: Duration = Duration::from_secs(5);

/// Sends an ack. When the device's transport buffer is full (a burst of answers at once), it
/// waits for room: engineioxide offers no event for that, so it looks again every 2 ms, for
/// at most [`ACK_ROOM_WAIT`]. A device that has not read by then is disconnected (like a slow
/// consumer of events), which its client sees at once — an ack is never dropped silently.
async fn answer(socket: &Sock, id: u64, reply: &impl serde::Serialize) {
    let mut packet = Str::from(protocol::ack(id, reply));
    let deadline = tokio::time::Instant::now() + ACK_ROOM_WAIT;
    loop {
        match socket.emit(packet) {
            Ok(()) => return,
            Err(TrySendError::Full(p)) if tokio::time::Instant::now() < deadline => {
                packet = p;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(TrySendError::Full(_)) => {
                tracing::info!(sid = %socket.id, "a device stopped reading its acks; disconnecting it");
                metrics::counter!("realtime_slow_consumers_dropped_total").increment(1);
                socket.close(DisconnectReason::TransportError);
                return;
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
}

/// Tells a device why the server ends its connection (`session:ended {reason, workspaceId?}`),
/// then disconnects it (clients do not reconnect on their own after a server disconnect).
fn end(socket: &Sock, reason: &str, workspace_id: Option<&str>) {
    let mut data = serde_json::json!({ "reason": reason });
    if let Some(w) = workspace_id {
        data["workspaceId"] = w.into();
    }
    let _ = socket.emit(protocol::event(events::SESSION_ENDED, &data));
    let _ = socket.emit(protocol::disconnect());
    socket.close(DisconnectReason::ClosingServer);
}

fn rate_limited(message: &str, retry_after: u64) -> Value {
    serde_json::json!({"ok": false, "error": {"code": "rate_limited", "message": message, "retryAfter": retry_after}})
}

type Sock = Arc<Socket<Conn>>;

/// The connected devices of each user.
#[derive(Default)]
pub struct Hub {
    users: RwLock<HashMap<String, Vec<Sock>>>,
    went_offline: Mutex<Vec<String>>,
    typing: typing::Typing,
    /// (sender, clientMsgId) → the socket that is sending it, so that its own device gets the
    /// ack instead of a `message:new`.
    origins: Mutex<HashMap<(String, String), Origin>>,
    /// Device workers running (one per connected device, until its socket has closed).
    workers: std::sync::atomic::AtomicUsize,
}

/// Counts a device worker while it runs.
struct Working<'a>(&'a Hub);

impl<'a> Working<'a> {
    fn new(hub: &'a Hub) -> Self {
        hub.workers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("realtime_device_workers").increment(1.0);
        Working(hub)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0
            .workers
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("realtime_device_workers").decrement(1.0);
    }
}

impl Hub {
    /// Registers a device; `true` if it is the user's first (they came online).
    /// Adds a device and queues `greeting` (the CONNECT answer) to it first: it is queued under
    /// the write lock, and senders take the device list under the read lock, so no event can
    /// reach the socket before its CONNECT answer.
    fn add(&self, user_id: &str, socket: Sock, greeting: String) -> bool {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let _ = socket.emit(greeting);
        let list = users.entry(user_id.to_owned()).or_default();
        list.push(socket);
        metrics::gauge!("realtime_connected_sockets").increment(1.0);
        list.len() == 1
    }

    /// Forgets a device; `true` if it was the user's last (they went offline).
    fn remove(&self, user_id: &str, socket: &Sock) -> bool {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = users.get_mut(user_id) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.id != socket.id);
        if list.len() < before {
            metrics::gauge!("realtime_connected_sockets").decrement(1.0);
        }
        if list.is_empty() {
            users.remove(user_id);
            return before > 0;
        }
        false
    }

    /// Device workers running: one per connected device, and none once its socket has closed.
    pub fn device_workers(&self) -> usize {
        self.workers.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the sockets of revoked sessions.
    pub fn close_sessions<S: AsRef<str>>(&self, session_ids: &[S]) {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        for socket in users.values().flatten() {
            let revoked = socket
                .data
                .session
                .get()
                .is_some_and(|s| session_ids.iter().any(|id| id.as_ref() == s.session_id));
            if revoked {
                end(socket, "session_revoked", None);
            }
        }
    }

    /// Ends a user's sockets that act in a workspace they no longer belong to.
    pub fn close_workspace(&self, user_id: &str, workspace_id: &str) {
        let sockets: Vec<Sock> = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned()
            .unwrap_or_default();
        for socket in sockets {
            let there = socket
                .data
                .session
                .get()
                .is_some_and(|s| s.workspace_id == workspace_id);
            if there {
                end(&socket, "removed_from_workspace", Some(workspace_id));
            }
        }
    }

    /// Ends every connection (server shutdown); clients reconnect, to another node if there is
    /// one. Returns the users who were connected.
    pub fn close_all(&self) -> Vec<String> {
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        for socket in users.values().flatten() {
            socket.close(DisconnectReason::ClosingServer);
        }
        users.keys().cloned().collect()
    }

    /// The users with a device on this node.
    pub fn users(&self) -> Vec<String> {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub fn is_online(&self, user_id: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(user_id)
    }

    /// Sends one encoded packet to every device of the user (but `except`). A device whose
    /// buffer is full stopped reading: it is dropped from the hub at once (nothing more is
    /// queued for it) and closed; it will sync when it returns.
    ///
    /// Dropping does not wait for Engine.IO's disconnect callback: engineioxide's WebSocket
    /// writer cannot be cancelled while a peer keeps its TCP window shut, so that callback may
    /// come late. Until then the stalled transport holds at most its bounded buffer.
    pub fn send(
        &self,
        user_id: &str,
        packet: &Str,
        except: Option<engineioxide::sid::Sid>,
    ) -> usize {
        let sockets: Vec<Sock> = match self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
        {
            Some(list) => list.clone(),
            None => return 0,
        };
        let mut sent = 0;
        for s in sockets.iter().filter(|s| Some(s.id) != except) {
            match s.emit(packet.clone()) {
                Ok(()) => sent += 1,
                Err(_) => {
                    tracing::info!(sid = %s.id, "a device stopped reading; disconnecting it");
                    metrics::counter!("realtime_slow_consumers_dropped_total").increment(1);
                    if self.remove(user_id, s) {
                        self.went_offline
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(user_id.to_owned());
                    }
                    s.close(DisconnectReason::TransportError);
                }
            }
        }
        sent
    }

    /// Users whose last device was dropped for not reading, for presence to announce.
    pub fn take_went_offline(&self) -> Vec<String> {
        std::mem::take(&mut *self.went_offline.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Notes the device a send comes from; `false` if an earlier send of the same clientMsgId
    /// (whose message the dispatcher may not have pushed yet) is noted already, which then
    /// stays: only the send that noted an origin may forget it, or a retry answered at once
    /// would make the dispatcher push the original back to the device that sent it.
    fn note_origin(&self, sender: &str, client_msg_id: &str, sid: engineioxide::sid::Sid) -> bool {
        let mut origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        if origins.len() > 10_000 {
            origins.clear();
        }
        match origins.entry((sender.to_owned(), client_msg_id.to_owned())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert((sid, Arc::default()));
                true
            }
        }
    }

    /// The sending device's ack went out.
    fn acked(&self, sender: &str, client_msg_id: &str) {
        let origins = self.origins.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, signal)) = origins.get(&(sender.to_owned(), client_msg_id.to_owned())) {
            signal.set();
        }
    }

    pub(crate) fn forget_origin(&self, sender: &str, client_msg_id: &str) {
        self.origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(sender.to_owned(), client_msg_id.to_owned()));
    }

    /// The sending device of a message and the signal of its ack, if it was sent over a socket.
    pub fn origin(&self, sender: &str, client_msg_id: &str) -> Option<Origin> {
        self.origins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(sender.to_owned(), client_msg_id.to_owned()))
            .cloned()
    }
}

/// The device sending a message and the signal of its ack.
type Origin = (engineioxide::sid::Sid, Arc<AckSignal>);

/// Set once the sending device's ack went out: the others' `message:new` waits for it, so the
/// sender hears of its message before (or with) everyone else.
#[derive(Default)]
pub struct AckSignal {
    done: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl AckSignal {
    fn set(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Waits for the ack, at most `limit`.
    pub async fn wait(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                // Created before the check, so a `set` in between is not missed.
                let notified = self.notify.notified();
                if self.done.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                notified.await;
            }
        })
        .await;
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

    /// The Engine.IO configuration: bounded buffers, payloads like the JSON limit.
    pub fn config() -> engineioxide::config::EngineIoConfig {
        engineioxide::config::EngineIoConfig::builder()
            .req_path(SOCKET_PATH)
            .max_buffer_size(SEND_BUFFER)
            .ws_read_buffer_size(1024)
            .max_payload(crate::app::JSON_BODY_LIMIT as u64)
            .ping_interval(Duration::from_secs(25))
            .ping_timeout(Duration::from_secs(20))
            .build()
    }

    /// Gives an Engine.IO request a head of its own. hyper parses a request's URI and header
    /// values as slices of the connection's read buffer (16 KiB), and engineioxide keeps each
    /// session's request head for as long as it lives, so every connected device pinned a
    /// read buffer it would never use again (heaptrack: one 16 KiB allocation per session;
    /// server RSS per idle socket 31 → 23 KiB without it). Copies are a few hundred bytes.
    /// Other requests pass untouched.
    pub fn own_request_head<B>(mut req: axum::http::Request<B>) -> axum::http::Request<B> {
        if !req.uri().path().starts_with(SOCKET_PATH) {
            return req;
        }
        if let Ok(uri) = req.uri().to_string().parse::<axum::http::Uri>() {
            // axum's router keeps a copy of the URI as it came in, too.
            if let Some(original) = req.extensions_mut().get_mut::<axum::extract::OriginalUri>() {
                original.0 = uri.clone();
            }
            *req.uri_mut() = uri;
        }
        let headers = std::mem::take(req.headers_mut());
        let mut owned = axum::http::HeaderMap::with_capacity(headers.len());
        let mut last = None;
        for (name, value) in headers {
            // `None` repeats the previous name (a header sent more than once).
            let name = match name {
                Some(name) => {
                    last = Some(name.clone());
                    name
                }
                None => match &last {
                    Some(name) => name.clone(),
                    None => continue,
                },
            };
            let owned_value = match axum::http::HeaderValue::from_bytes(value.as_bytes()) {
                Ok(mut copy) => {
                    copy.set_sensitive(value.is_sensitive());
                    copy
                }
                Err(_) => value,
            };
            owned.append(name, owned_value);
        }
        *req.headers_mut() = owned;
        req
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
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        if socket.data.session.set(session.clone()).is_err() || socket.data.events.set(tx).is_err()
        {
            return;
        }
        let first_here = self.state.hub.add(
            &session.user_id,
            socket.clone(),
            protocol::connect_ok(&socket.id.to_string()),
        );
        if self
            .state
            .presence
            .device_connected(&self.state.hub, &session.user_id, first_here)
            .await
        {
            tokio::spawn(presence::announce(
                self.state.clone(),
                session.user_id.clone(),
                true,
            ));
        }
        let expires = token_expiry(&self.state, token);
        tokio::spawn(self.clone().work(socket, session, rx, expires));
    }

    /// Handles one device's events in the order they came, and ends the socket when its
    /// access token expires (the client refreshes and reconnects). One task per device.
    async fn work(
        self,
        socket: Sock,
        session: Session,
        mut rx: mpsc::Receiver<Box<Event>>,
        expires: tokio::time::Instant,
    ) {
        let _working = Working::new(&self.state.hub);
        // Sends queued but not yet acked, at most this many per device.
        let in_flight = Arc::new(tokio::sync::Semaphore::new(SENDS_IN_FLIGHT));
        let expiry = tokio::time::sleep_until(expires);
        tokio::pin!(expiry);
        loop {
            let event = tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
                () = &mut expiry => {
                    end(&socket, "token_expired", None);
                    break;
                }
                // The queue's sender lives in the socket this task holds, so the queue never
                // closes on its own: a closed socket ends the task.
                () = socket.closed() => break,
            };
            let Event { ack, name, data } = *event;
            let started = std::time::Instant::now();
            self.answer_refused(&socket).await;
            if let Err(retry) = self.limit(&session, &socket).await {
                if let Some(id) = ack {
                    answer(&socket, id, &rate_limited("too many events", retry)).await;
                }
                continue;
            }
            metrics::counter!("realtime_events_in_total", "event" => event_label(&name))
                .increment(1);
            if name == events::MESSAGE_SEND {
                // Queued in order; acked when durable, while the next events are handled.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                match Box::pin(handlers::send_queued(&self.state, &session, &socket, data)).await {
                    Ok(sending) => {
                        let (state, session, socket) =
                            (self.state.clone(), session.clone(), socket.clone());
                        tokio::spawn(async move {
                            let client_msg_id = sending.client_msg_id.clone();
                            let reply = handlers::send_finish(&state, &session, sending).await;
                            if let Some(id) = ack {
                                answer(&socket, id, &reply).await;
                                metrics::histogram!("realtime_ack_seconds", "event" => events::MESSAGE_SEND)
                                    .record(started.elapsed().as_secs_f64());
                            }
                            state.hub.acked(&session.user_id, &client_msg_id);
                            drop(permit);
                        });
                    }
                    Err(reply) => {
                        if let Some(id) = ack {
                            answer(&socket, id, &reply).await;
                        }
                    }
                }
                continue;
            }
            let reply = Box::pin(handlers::handle(&self.state, &session, &name, data)).await;
            if let (Some(id), Some(reply)) = (ack, reply) {
                answer(&socket, id, &reply).await;
                metrics::histogram!("realtime_ack_seconds", "event" => event_label(&name))
                    .record(started.elapsed().as_secs_f64());
            }
            if socket.is_closed() {
                break;
            }
        }
    }

    /// Answers the events refused while the queue was full.
    async fn answer_refused(&self, socket: &Sock) {
        let refused = std::mem::take(
            &mut *socket
                .data
                .refused
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for id in refused {
            answer(socket, id, &rate_limited("too many events in flight", 1)).await;
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
            .check(&limits::SOCKET_EVENTS_PER_DEVICE, &socket.id.to_string())
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

/// When the socket's access token expires (now if it does not verify: it did a moment ago).
fn token_expiry(state: &AppState, token: &str) -> tokio::time::Instant {
    let left = state
        .keys
        .verify(token)
        .map(|claims| (claims.exp - chrono::Utc::now().timestamp()).max(0) as u64)
        .unwrap_or(0);
    tokio::time::Instant::now() + Duration::from_secs(left)
}

impl EngineIoHandler for Gateway {
    type Data = Conn;

    fn on_connect(self: Arc<Self>, _socket: Sock) {}

    fn on_disconnect(&self, socket: Sock, _reason: DisconnectReason) {
        if let Some(session) = socket.data.session.get() {
            let last_here = self.state.hub.remove(&session.user_id, &socket);
            let state = self.state.clone();
            let user_id = session.user_id.clone();
            tokio::spawn(async move {
                if state.presence.device_gone(&user_id, last_here).await {
                    presence::announce(state, user_id, false).await;
                }
            });
            typing::stop_all(&self.state, session);
        }
    }

    fn on_message(self: &Arc<Self>, msg: Str, socket: Sock) {
        match protocol::decode(msg.as_str()) {
            protocol::Incoming::Connect { namespace, auth } => {
                tokio::spawn(Gateway::clone(self).connect(socket, namespace, auth));
            }
            protocol::Incoming::Event {
                ack, name, data, ..
            } => {
                let Some(events) = socket.data.events.get() else {
                    return;
                };
                if events
                    .try_send(Box::new(Event { ack, name, data }))
                    .is_err()
                {
                    if let Some(id) = ack {
                        let mut refused = socket
                            .data
                            .refused
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        if refused.len() >= REFUSED_MAX {
                            drop(refused);
                            tracing::info!(sid = %socket.id, "a device ignores back-pressure; disconnecting it");
                            socket.close(DisconnectReason::TransportError);
                        } else {
                            refused.push(id);
                        }
                    }
                }
            }
            protocol::Incoming::Disconnect { .. } => socket.close(DisconnectReason::TransportClose),
            protocol::Incoming::Unsupported => {}
        }
    }

    fn on_binary(self: &Arc<Self>, _data: bytes::Bytes, socket: Sock) {
        // Binary attachments are not part of this API.
        socket.close(DisconnectReason::PacketParsingError);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_io_request_head_is_copied_whole() {
        use axum::extract::OriginalUri;
        use axum::http::{header, HeaderValue, Request};
        let mut secret = HeaderValue::from_static("Bearer t");
        secret.set_sensitive(true);
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header(header::COOKIE, "a=1")
            .header(header::COOKIE, "b=2")
            .header(header::AUTHORIZATION, secret)
            .header("x-custom", "v")
            .body(())
            .unwrap();
        let before_uri = req.uri().clone();
        req.extensions_mut().insert(OriginalUri(before_uri.clone()));
        let before = req.headers().clone();
        let req = Gateway::own_request_head(req);
        assert_eq!(req.uri(), &before_uri);
        assert_eq!(req.extensions().get::<OriginalUri>().unwrap().0, before_uri);
        assert_eq!(req.headers(), &before);
        let cookies: Vec<_> = req.headers().get_all(header::COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(req.headers()[header::AUTHORIZATION].is_sensitive());

        // Other requests are left as they are.
        let other = Request::builder()
            .uri("/api/v1/conversations")
            .header("x-custom", "v")
            .body(())
            .unwrap();
        let other = Gateway::own_request_head(other);
        assert_eq!(other.headers()["x-custom"], "v");
    }

    #[tokio::test]
    async fn an_ack_signal_wakes_waiters_and_never_waits_past_its_limit() {
        let early = AckSignal::default();
        early.set();
        tokio::time::timeout(
            Duration::from_millis(100),
            early.wait(Duration::from_secs(10)),
        )
        .await
        .expect("already set");

        let signal = Arc::new(AckSignal::default());
        let waiter = tokio::spawn({
            let s = signal.clone();
            async move { s.wait(Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        signal.set();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by set")
            .unwrap();

        let never = AckSignal::default();
        let started = std::time::Instant::now();
        never.wait(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    /// A retry of a clientMsgId whose original is not pushed yet must not take the original's
    /// origin away: the dispatcher would then push the message back to the device that sent it.
    #[test]
    fn only_the_send_that_noted_an_origin_owns_it() {
        let hub = Hub::default();
        let device = engineioxide::sid::Sid::new();
        assert!(hub.note_origin("u", "c-1", device), "the first send notes");
        let (sid, signal) = hub.origin("u", "c-1").expect("noted");
        assert_eq!(sid, device);

        // The retry, from the same device or another, notes nothing and keeps the original.
        assert!(!hub.note_origin("u", "c-1", device));
        assert!(!hub.note_origin("u", "c-1", engineioxide::sid::Sid::new()));
        let (sid, same) = hub.origin("u", "c-1").expect("still noted");
        assert_eq!(sid, device);
        assert!(
            Arc::ptr_eq(&signal, &same),
            "the dispatcher waits on the same ack"
        );

        // Once the dispatcher is done with it, a later send notes afresh.
        hub.forget_origin("u", "c-1");
        assert!(hub.origin("u", "c-1").is_none());
        assert!(hub.note_origin("u", "c-1", device));
        assert!(hub.origin("u", "c-2").is_none(), "per clientMsgId");
    }
}
