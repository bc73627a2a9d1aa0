//! The device registry: the connected devices of each user (one Engine.IO socket each), the
//! ack signals of sends in flight, typing state, and sending one encoded packet to a user's
//! devices. Knows nothing of the application state: the gateway registers devices, the
//! dispatcher and the other events send through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::protocol;
use crate::cluster::Devices;
use crate::engineio::{DisconnectReason, Socket, Str};
use crate::events;

/// Who a connected socket is.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub session_id: String,
    pub workspace_id: String,
}

/// A client event waiting for the device's worker.
pub(super) struct Event {
    pub(super) ack: Option<u64>,
    pub(super) name: String,
    pub(super) data: Value,
}

/// Sends of one device queued but not yet acked, at most; its next send waits for room.
const SENDS_IN_FLIGHT: usize = 64;

/// Engine.IO socket data: set once the Socket.IO handshake succeeded.
pub struct Conn {
    pub(super) session: OnceLock<Session>,
    /// When the access token of the handshake expires.
    pub(super) expires: OnceLock<tokio::time::Instant>,
    pub(super) inbox: Mutex<Inbox>,
    /// Room for sends queued but not yet acked.
    pub(super) in_flight: tokio::sync::Semaphore,
    /// The sync page after the last one sent, being read (boxed: most devices have none).
    pub(super) read_ahead: Mutex<Option<Box<super::read_ahead::ReadAhead>>>,
}

impl Default for Conn {
    fn default() -> Self {
        Conn {
            session: OnceLock::new(),
            expires: OnceLock::new(),
            inbox: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(SENDS_IN_FLIGHT),
            read_ahead: Mutex::default(),
        }
    }
}

/// A device's client events waiting for its worker (bounded by the gateway; allocated only
/// while there are some), and whether a worker runs.
#[derive(Default)]
pub(super) struct Inbox {
    pub(super) events: std::collections::VecDeque<Event>,
    pub(super) working: bool,
    /// Ack ids of events refused because the queue was full, answered `rate_limited` by the
    /// worker (which is busy with that full queue, so it gets to them soon). Bounded by
    /// [`REFUSED_MAX`].
    pub(super) refused: Vec<u64>,
}

/// A device with more refused events than this waiting for their answer does not wait for
/// answers at all; it is disconnected.
pub(super) const REFUSED_MAX: usize = 4096;

/// Tells a device why the server ends its connection (`session:ended {reason, workspaceId?}`),
/// then disconnects it (clients do not reconnect on their own after a server disconnect).
pub(super) fn end(socket: &Sock, reason: &str, workspace_id: Option<&str>) {
    let mut data = serde_json::json!({ "reason": reason });
    if let Some(w) = workspace_id {
        data["workspaceId"] = w.into();
    }
    let _ = socket.emit(protocol::event(events::SESSION_ENDED, &data));
    let _ = socket.emit(protocol::disconnect());
    socket.close(DisconnectReason::ClosingServer);
}

pub(super) type Sock = Arc<Socket<Conn>>;

/// The connected devices of each user.
#[derive(Default)]
pub struct Hub {
    users: RwLock<HashMap<String, Vec<Sock>>>,
    went_offline: Mutex<Vec<String>>,
    pub(super) typing: Typing,
    /// (sender, clientMsgId) → the socket that is sending it, so that its own device gets the
    /// ack instead of a `message:new`.
    origins: Mutex<HashMap<(String, String), Origin>>,
    /// Device workers running (one per connected device, until its socket has closed).
    workers: std::sync::atomic::AtomicUsize,
    /// Set by [`Hub::close_all`].
    stopping: std::sync::atomic::AtomicBool,
    /// The room for sync pages read ahead, for every device.
    pub(super) read_ahead_room: super::read_ahead::Room,
}

/// Counts a device worker while it runs.
pub(super) struct Working<'a>(&'a Hub);

impl<'a> Working<'a> {
    pub(super) fn new(hub: &'a Hub) -> Self {
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
    pub(super) fn add(&self, user_id: &str, socket: Sock, greeting: Str) -> bool {
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let _ = socket.emit(greeting);
        let list = users.entry(user_id.to_owned()).or_default();
        list.push(socket);
        metrics::gauge!("realtime_connected_sockets").increment(1.0);
        list.len() == 1
    }

    /// Forgets a device; `true` if it was the user's last (they went offline).
    pub(super) fn remove(&self, user_id: &str, socket: &Sock) -> bool {
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

    /// Device workers running: one per device with client events being handled, none once
    /// they are (and none for a closed socket).
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

    /// Ends the sockets whose access token expired by `now`.
    pub fn end_expired(&self, now: tokio::time::Instant) {
        let expired: Vec<Sock> = self
            .users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .flatten()
            .filter(|s| !s.is_closed() && s.data.expires.get().is_some_and(|at| *at <= now))
            .cloned()
            .collect();
        for socket in expired {
            end(&socket, "token_expired", None);
        }
    }

    /// Ends every connection (server shutdown); clients reconnect, to another node if there is
    /// one. Returns the users who were connected.
    pub fn close_all(&self) -> Vec<String> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let users = self.users.read().unwrap_or_else(|p| p.into_inner());
        for socket in users.values().flatten() {
            socket.close(DisconnectReason::ClosingServer);
        }
        users.keys().cloned().collect()
    }

    /// Whether the server is stopping (its devices are disconnected by [`Hub::close_all`],
    /// not going away by themselves).
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Whether a socket of this session (one signed-in device) is connected here.
    pub fn has_session(&self, user_id: &str, session_id: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .is_some_and(|list| {
                list.iter().any(|s| {
                    s.data
                        .session
                        .get()
                        .is_some_and(|x| x.session_id == session_id)
                })
            })
    }

    /// Sends one encoded packet to every device of the user (but `except`). A device whose
    /// buffer is full stopped reading: it is dropped from the hub at once (nothing more is
    /// queued for it) and closed; it will sync when it returns.
    ///
    /// Dropping does not wait for Engine.IO's disconnect callback, which comes once the
    /// transport has given up its write.
    pub fn send(&self, user_id: &str, packet: &Str, except: Option<crate::engineio::Sid>) -> usize {
        self.send_where(user_id, packet, |s| Some(s.id) != except)
    }

    /// Sends one encoded packet to the user's devices that `devices` names (by session).
    pub fn send_to(&self, user_id: &str, packet: &Str, devices: &Devices) -> usize {
        self.send_where(user_id, packet, |s| {
            s.data
                .session
                .get()
                .is_some_and(|session| devices.includes(&session.session_id))
        })
    }

    fn send_where(&self, user_id: &str, packet: &Str, keep: impl Fn(&Sock) -> bool) -> usize {
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
        for s in sockets.iter().filter(|s| keep(s)) {
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
    pub(super) fn note_origin(
        &self,
        sender: &str,
        client_msg_id: &str,
        sid: crate::engineio::Sid,
    ) -> bool {
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
    pub(super) fn acked(&self, sender: &str, client_msg_id: &str) {
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

/// Who is typing where: (user, conversation) → the generation of the latest start.
#[derive(Default)]
pub struct Typing {
    pub(super) active: Mutex<HashMap<(String, String), u64>>,
    pub(super) generation: std::sync::atomic::AtomicU64,
}

/// The device sending a message and the signal of its ack.
type Origin = (crate::engineio::Sid, Arc<AckSignal>);

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

#[cfg(test)]
mod tests {
    use super::*;

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
        let device = crate::engineio::Sid::new();
        assert!(hub.note_origin("u", "c-1", device), "the first send notes");
        let (sid, signal) = hub.origin("u", "c-1").expect("noted");
        assert_eq!(sid, device);

        // The retry, from the same device or another, notes nothing and keeps the original.
        assert!(!hub.note_origin("u", "c-1", device));
        assert!(!hub.note_origin("u", "c-1", crate::engineio::Sid::new()));
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
