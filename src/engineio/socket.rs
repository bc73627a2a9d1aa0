//! One Engine.IO session: its id, the application's data, and the bounded queue of packets
//! waiting for its transport. The queue allocates nothing until there is something to send,
//! and its contents are shared buffers: a packet serialized once goes to every recipient by
//! reference count.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The text of one Engine.IO packet, its type character included (`4…` for a message).
/// Cloning it shares the buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Str(Utf8Bytes);

impl Str {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub(super) fn utf8(&self) -> Utf8Bytes {
        self.0.clone()
    }

    pub(super) const fn from_static(s: &'static str) -> Self {
        Str(Utf8Bytes::from_static(s))
    }

    /// A message packet: `4` and `payload`.
    pub fn message(payload: &str) -> Self {
        let mut text = String::with_capacity(payload.len() + 1);
        text.push('4');
        text.push_str(payload);
        Str(text.into())
    }
}

/// Takes a packet's whole text, type included: builders of message packets write the `4`
/// themselves, so a payload is never copied to prefix it.
impl From<String> for Str {
    fn from(text: String) -> Self {
        Str(text.into())
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A session id: 16 random characters of `[A-Za-z0-9_-]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; 16]);

const SID_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Sid {
    pub fn new() -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        Sid(std::array::from_fn(|_| {
            SID_ALPHABET[rng.gen_range(0..SID_ALPHABET.len())]
        }))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from the alphabet is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// Reads a sid a client sent back; `None` if it cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes: [u8; 16] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| SID_ALPHABET.contains(b))
            .then_some(Sid(bytes))
    }
}

impl Default for Sid {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport or sent a close packet.
    TransportClose,
    /// The transport failed, or the client stopped reading (its queue was full).
    TransportError,
    /// No pong within the ping timeout.
    HeartbeatTimeout,
    /// The client sent something that is not Engine.IO.
    PacketParsingError,
    /// A second long-polling GET while one was waiting.
    MultipleHttpPolling,
    /// The server closed it.
    ClosingServer,
}

/// Why a packet was not queued; the packet comes back.
#[derive(Debug)]
pub enum SendError {
    /// The queue holds its maximum: the client is not reading.
    Full(Str),
    /// The session has ended.
    Closed(Str),
}

/// Transport states.
pub(super) const POLLING: u8 = 0;
pub(super) const UPGRADING: u8 = 1;
pub(super) const WEBSOCKET: u8 = 2;

/// One session. Its transport (a WebSocket task, or long-polling requests) takes the queued
/// packets; the application queues them with [`Socket::emit`] from anywhere.
pub struct Socket<D> {
    pub id: Sid,
    pub data: D,
    queue: Mutex<VecDeque<Str>>,
    capacity: usize,
    /// Something was queued, the session closed, or (polling) an upgrade began.
    pub(super) wake: Notify,
    closed: Notify,
    /// Why it ended; unset while open (the first reason counts).
    reason: OnceLock<DisconnectReason>,
    pub(super) transport: AtomicU8,
    /// A pong came since the last ping.
    pub(super) alive: AtomicBool,
    /// A long-polling GET is waiting.
    pub(super) polled: AtomicBool,
    /// The handler was told of the end.
    pub(super) finished: AtomicBool,
}

impl<D> Socket<D> {
    pub(super) fn new(data: D, capacity: usize, transport: u8) -> Self {
        Socket {
            id: Sid::new(),
            data,
            queue: Mutex::new(VecDeque::new()),
            capacity,
            wake: Notify::new(),
            closed: Notify::new(),
            reason: OnceLock::new(),
            transport: AtomicU8::new(transport),
            alive: AtomicBool::new(true),
            polled: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    /// Queues a packet for the client. Fails at once when the queue is full or the session
    /// has ended.
    pub fn emit(&self, packet: impl Into<Str>) -> Result<(), SendError> {
        self.emit_leaving(packet, 0)
    }

    /// Queues a packet for the client unless that would leave `room` places or fewer free
    /// (kept for other packets); fails at once then, or when the session has ended.
    pub fn emit_leaving(&self, packet: impl Into<Str>, room: usize) -> Result<(), SendError> {
        let packet = packet.into();
        if self.is_closed() {
            return Err(SendError::Closed(packet));
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() + room >= self.capacity {
            return Err(SendError::Full(packet));
        }
        queue.push_back(packet);
        drop(queue);
        self.wake.notify_one();
        Ok(())
    }

    /// A socket on no connection, for tests of what is queued on it.
    #[cfg(test)]
    pub(crate) fn detached(data: D, capacity: usize) -> Self {
        Socket::new(data, capacity, WEBSOCKET)
    }

    /// What is queued, taken as a transport writing it out takes it (tests).
    #[cfg(test)]
    pub(crate) fn written_out(&self) -> VecDeque<Str> {
        self.take_queued()
    }

    /// How many more packets the queue takes now.
    pub fn room(&self) -> usize {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.capacity.saturating_sub(queue.len())
    }

    /// Takes what is queued (the queue's memory goes with it: an idle session keeps none).
    pub(super) fn take_queued(&self) -> VecDeque<Str> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts back packets a transport could not send (a long-polling answer's size limit),
    /// ahead of the ones queued since.
    pub(super) fn put_back(&self, mut rest: VecDeque<Str>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        rest.append(&mut queue);
        *queue = rest;
    }

    /// Ends the session: the transport sends what is queued (if the client still reads) and
    /// closes. The first reason counts.
    pub fn close(&self, reason: DisconnectReason) {
        if self.reason.set(reason).is_ok() {
            self.closed.notify_waiters();
            self.wake.notify_one();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.reason.get().is_some()
    }

    pub(super) fn reason(&self) -> Option<DisconnectReason> {
        self.reason.get().copied()
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) {
        loop {
            // Made before the check, so a `close` in between is not missed.
            let notified = self.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn transport(&self) -> u8 {
        self.transport.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_and_a_closed_session_too() {
        let socket = Socket::new((), 2, WEBSOCKET);
        assert_eq!(socket.room(), 2);
        socket.emit(Str::message("a")).unwrap();
        socket.emit(Str::message("b")).unwrap();
        assert_eq!(socket.room(), 0);
        assert!(
            matches!(socket.emit(Str::message("c")), Err(SendError::Full(p)) if p.as_str() == "4c")
        );
        let taken = socket.take_queued();
        assert_eq!(taken.len(), 2);
        socket.put_back(VecDeque::from([Str::message("b")]));
        socket.emit(Str::message("d")).unwrap();
        let order: Vec<_> = socket.take_queued().into_iter().collect();
        assert_eq!(order, [Str::message("b"), Str::message("d")]);

        socket.close(DisconnectReason::HeartbeatTimeout);
        socket.close(DisconnectReason::TransportClose);
        assert_eq!(socket.reason(), Some(DisconnectReason::HeartbeatTimeout));
        assert!(matches!(
            socket.emit(Str::message("e")),
            Err(SendError::Closed(_))
        ));
    }

    #[test]
    fn sids_are_ours_or_refused() {
        let sid = Sid::new();
        assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        assert_ne!(Sid::new(), sid);
        assert_eq!(Sid::parse("short"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAA%"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAé"), None);
    }

    #[tokio::test]
    async fn closing_wakes_whoever_waits() {
        let socket = std::sync::Arc::new(Socket::new((), 4, WEBSOCKET));
        let waiter = tokio::spawn({
            let s = socket.clone();
            async move { s.closed().await }
        });
        tokio::task::yield_now().await;
        socket.close(DisconnectReason::ClosingServer);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
