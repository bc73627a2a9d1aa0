//! HTTP long-polling: the handshake GET opens a session, a GET waits for queued packets and
//! takes them (`\x1e`-separated), a POST brings the client's. A heartbeat task pings the
//! session until it ends or moves to a WebSocket.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};

use super::packet::{self, Packet};
use super::socket::{DisconnectReason, Sid, Socket, Str, POLLING, UPGRADING, WEBSOCKET};
use super::{refusal, text, Engine, Handler, Refusal};

/// The ping packet.
pub(super) const PING: Str = Str::from_static("2");
/// What a GET gets while the session moves to a WebSocket: the client stops polling.
const NOOP: &str = "6";
/// What a GET gets once the session has ended.
const CLOSE: &str = "1";

impl<H: Handler> Engine<H> {
    /// Opens a long-polling session.
    pub(super) fn open_polling(self: Arc<Self>) -> Response<Body> {
        let socket = Arc::new(Socket::new(H::Data::default(), self.config.queue, POLLING));
        self.polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(socket.id, socket.clone());
        let open = self.open_packet(socket.id, true);
        tokio::spawn(self.heartbeat(socket));
        text(StatusCode::OK, open)
    }

    /// Pings a long-polling session every interval; ends it when a pong does not come in
    /// time. Stops, leaving the session to its WebSocket, once it has upgraded.
    async fn heartbeat(self: Arc<Self>, socket: Arc<Socket<H::Data>>) {
        let reason = loop {
            if closes_within(&socket, self.config.ping_interval).await {
                break None;
            }
            if socket.transport() == WEBSOCKET {
                return;
            }
            socket.alive.store(false, Ordering::SeqCst);
            if socket.emit(PING).is_err() && !socket.is_closed() {
                break Some(DisconnectReason::TransportError);
            }
            if closes_within(&socket, self.config.ping_timeout).await {
                break None;
            }
            if socket.transport() == WEBSOCKET {
                return;
            }
            if !socket.alive.load(Ordering::SeqCst) {
                break Some(DisconnectReason::HeartbeatTimeout);
            }
        };
        // A session that finished its upgrade in the meantime belongs to its WebSocket.
        if socket.transport() != WEBSOCKET {
            self.finish(&socket, reason.unwrap_or(DisconnectReason::TransportClose));
        }
    }

    /// A GET: answers what is queued, or waits until something is.
    pub(super) async fn poll(self: Arc<Self>, sid: Sid) -> Response<Body> {
        let Some(socket) = self.polling_session(sid) else {
            return refusal(Refusal::UnknownSession);
        };
        if socket.polled.swap(true, Ordering::SeqCst) {
            socket.close(DisconnectReason::MultipleHttpPolling);
            return refusal(Refusal::BadRequest);
        }
        // Lets the next GET in, however this one ends (its client may go away).
        struct Polled<'a, D>(&'a Socket<D>);
        impl<D> Drop for Polled<'_, D> {
            fn drop(&mut self) {
                self.0.polled.store(false, Ordering::SeqCst);
            }
        }
        let _polled = Polled(&socket);
        loop {
            let queued = socket.take_queued();
            if !queued.is_empty() {
                let (body, rest) = join(queued, self.config.max_payload);
                if !rest.is_empty() {
                    socket.put_back(rest);
                }
                return text(StatusCode::OK, body);
            }
            if socket.is_closed() {
                return text(StatusCode::OK, CLOSE);
            }
            match socket.transport() {
                UPGRADING => return text(StatusCode::OK, NOOP),
                WEBSOCKET => return refusal(Refusal::BadRequest),
                _ => {}
            }
            // `close` and an upgrade's start wake this too; a ping comes every interval.
            socket.wake.notified().await;
        }
    }

    /// A POST: the client's packets, handled in order.
    pub(super) async fn post(self: Arc<Self>, sid: Sid, req: Request<Body>) -> Response<Body> {
        let Some(socket) = self.polling_session(sid) else {
            return refusal(Refusal::UnknownSession);
        };
        if socket.transport() == WEBSOCKET {
            return refusal(Refusal::BadRequest);
        }
        let body = match axum::body::to_bytes(req.into_body(), self.config.max_payload).await {
            Ok(body) => body,
            Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, ""),
        };
        let Some(packets) = std::str::from_utf8(&body)
            .ok()
            .and_then(packet::decode_payload)
        else {
            self.finish(&socket, DisconnectReason::PacketParsingError);
            return refusal(Refusal::BadRequest);
        };
        for p in packets {
            match p {
                Packet::Message(msg) => self.handler.on_message(msg, &socket),
                Packet::Binary(data) => self.handler.on_binary(data, &socket),
                Packet::Pong(_) => socket.alive.store(true, Ordering::SeqCst),
                Packet::Close => {
                    self.finish(&socket, DisconnectReason::TransportClose);
                    break;
                }
                Packet::Ping(_) | Packet::Noop | Packet::Upgrade => {}
            }
        }
        text(StatusCode::OK, "ok")
    }
}

/// Waits `wait`; `true` if the session ended meanwhile.
async fn closes_within<D>(socket: &Socket<D>, wait: std::time::Duration) -> bool {
    tokio::time::timeout(wait, socket.closed()).await.is_ok()
}

/// Joins queued packets into one payload of at most `max` bytes (always at least one packet);
/// returns the ones that did not fit.
fn join(mut queued: VecDeque<Str>, max: usize) -> (String, VecDeque<Str>) {
    let mut body = String::new();
    while let Some(p) = queued.front() {
        let extra = p.as_str().len() + usize::from(!body.is_empty());
        if !body.is_empty() && body.len() + extra > max {
            break;
        }
        if !body.is_empty() {
            body.push(packet::SEPARATOR);
        }
        body.push_str(p.as_str());
        queued.pop_front();
    }
    (body, queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_holds_what_fits() {
        let queued = VecDeque::from([Str::message("aaaa"), Str::message("bb"), PING]);
        let (body, rest) = join(queued.clone(), 100);
        assert_eq!(body, "4aaaa\u{1e}4bb\u{1e}2");
        assert!(rest.is_empty());
        let (body, rest) = join(queued.clone(), 8);
        assert_eq!(body, "4aaaa");
        assert_eq!(rest.len(), 2);
        let (body, rest) = join(queued, 2);
        assert_eq!(body, "4aaaa", "one packet goes even when it is larger");
        assert_eq!(rest.len(), 2);
    }
}
