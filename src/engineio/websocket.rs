//! The WebSocket transport: one task per session reads the client's frames, writes what is
//! queued (everything queued, then one flush) and pings. A long-polling session moves here
//! through the probe: `2probe` → `3probe`, the pending GET gets a noop, then `5`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, Response, StatusCode};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::packet::{self, Packet};
use super::polling::PING;
use super::socket::{DisconnectReason, Sid, Socket, Str, POLLING, UPGRADING, WEBSOCKET};
use super::{refusal, Engine, Handler, Refusal};

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long a closing session may take to write what is left, and how long an upgrade may
/// take between its steps.
const GRACE: Duration = Duration::from_secs(2);

impl<H: Handler> Engine<H> {
    /// A WebSocket request: a new session, or (with `sid`) a long-polling one moving here.
    pub(super) fn upgrade(
        self: Arc<Self>,
        sid: Option<Sid>,
        mut req: Request<Body>,
    ) -> Response<Body> {
        let Some(key) = websocket_key(req.headers()) else {
            return refusal(Refusal::BadRequest);
        };
        let upgrading = match sid {
            None => None,
            Some(sid) => match self.polling_session(sid) {
                Some(socket) if socket.transport() == POLLING => Some(socket),
                _ => return refusal(Refusal::BadRequest),
            },
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        drop(req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(self.config.read_buffer)
                // No cap on what waits to be written beyond the queue's own bound: a packet
                // the server built (a sync page) may be larger than anything a client may send.
                .write_buffer_size(self.config.write_buffer)
                .max_message_size(Some(self.config.max_payload))
                .max_frame_size(Some(self.config.max_payload));
            let mut ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            let socket = match upgrading {
                Some(socket) => {
                    if !self.probe(&socket, &mut ws).await {
                        // The session stays on long-polling.
                        let _ = socket.transport.compare_exchange(
                            UPGRADING,
                            POLLING,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        let _ = ws.close(None).await;
                        return;
                    }
                    socket
                }
                None => {
                    let socket = Arc::new(Socket::new(
                        H::Data::default(),
                        self.config.queue,
                        WEBSOCKET,
                    ));
                    let open = self.open_packet(socket.id, false);
                    if ws.send(Message::Text(open.into())).await.is_err() {
                        return;
                    }
                    socket
                }
            };
            let reason = self.run(&socket, &mut ws).await;
            self.finish(&socket, reason);
        });
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = res.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(accept) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        res
    }

    /// The upgrade of a long-polling session: `2probe` → `3probe`, the waiting GET is let go
    /// (it answers a noop), then `5`. `false` if the client does not go through with it.
    async fn probe(&self, socket: &Socket<H::Data>, ws: &mut Ws) -> bool {
        match next_text(ws).await {
            Some(t) if t.as_str() == "2probe" => {}
            _ => return false,
        }
        if socket
            .transport
            .compare_exchange(POLLING, UPGRADING, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
            || socket.is_closed()
        {
            return false;
        }
        if ws.send(Message::Text("3probe".into())).await.is_err() {
            return false;
        }
        socket.wake.notify_one();
        match next_text(ws).await {
            Some(t) if t.as_str() == "5" => {}
            _ => return false,
        }
        if socket.is_closed()
            || socket
                .transport
                .compare_exchange(UPGRADING, WEBSOCKET, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        self.polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&socket.id);
        true
    }

    /// Runs a WebSocket session until it ends; returns why.
    async fn run(&self, socket: &Arc<Socket<H::Data>>, ws: &mut Ws) -> DisconnectReason {
        let ping = tokio::time::sleep(self.config.ping_interval);
        tokio::pin!(ping);
        let mut awaiting_pong = false;
        let reason = loop {
            tokio::select! {
                () = socket.wake.notified() => {
                    if socket.is_closed() {
                        break socket.reason().unwrap_or(DisconnectReason::ClosingServer);
                    }
                    let queued = socket.take_queued();
                    if !queued.is_empty() {
                        if let Some(reason) = write_or_close(socket, ws, queued).await {
                            break reason;
                        }
                    }
                }
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => match packet::decode(t.as_str()) {
                        Some(Packet::Message(msg)) => self.handler.on_message(msg, socket),
                        Some(Packet::Pong(_)) => {
                            awaiting_pong = false;
                            // (Also the answer to a ping the long-polling heartbeat sent
                            // while the session was moving here.)
                            socket.alive.store(true, Ordering::SeqCst);
                            ping.as_mut().reset(tokio::time::Instant::now() + self.config.ping_interval);
                        }
                        Some(Packet::Binary(data)) => self.handler.on_binary(data, socket),
                        Some(Packet::Close) => break DisconnectReason::TransportClose,
                        Some(Packet::Ping(_) | Packet::Noop | Packet::Upgrade) => {}
                        None => break DisconnectReason::PacketParsingError,
                    },
                    Some(Ok(Message::Binary(data))) => self.handler.on_binary(data.to_vec(), socket),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break DisconnectReason::TransportClose,
                    Some(Err(_)) => break DisconnectReason::TransportError,
                },
                () = &mut ping => {
                    if awaiting_pong {
                        break DisconnectReason::HeartbeatTimeout;
                    }
                    awaiting_pong = true;
                    ping.as_mut().reset(tokio::time::Instant::now() + self.config.ping_timeout);
                    if let Some(reason) = write_or_close(socket, ws, [PING]).await {
                        break reason;
                    }
                }
            }
        };
        socket.close(reason);
        // What the server queued before closing (a reason, Socket.IO's disconnect) still goes
        // to a client that reads.
        if matches!(reason, DisconnectReason::ClosingServer) {
            let _ = tokio::time::timeout(GRACE, async {
                write(ws, socket.take_queued()).await?;
                ws.close(None).await
            })
            .await;
        }
        reason
    }
}

/// The next text frame, within the upgrade's time.
async fn next_text(ws: &mut Ws) -> Option<tokio_tungstenite::tungstenite::Utf8Bytes> {
    match tokio::time::timeout(GRACE * 5, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => Some(t),
        _ => None,
    }
}

/// Writes packets, then flushes; gives up when the session is closed meanwhile (a client that
/// stopped reading must not hold the task). `Some(reason)` if the session is over.
async fn write_or_close<D>(
    socket: &Socket<D>,
    ws: &mut Ws,
    packets: impl IntoIterator<Item = Str>,
) -> Option<DisconnectReason> {
    tokio::select! {
        written = write(ws, packets) => written.err().map(|_| DisconnectReason::TransportError),
        () = socket.closed() => Some(socket.reason().unwrap_or(DisconnectReason::ClosingServer)),
    }
}

async fn write(
    ws: &mut Ws,
    packets: impl IntoIterator<Item = Str>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for p in packets {
        ws.feed(Message::Text(p.utf8())).await?;
    }
    ws.flush().await
}

/// The `Sec-WebSocket-Key` of a valid upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has(header::CONNECTION, "upgrade")
        || !has(header::UPGRADE, "websocket")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .map(|v| v.as_bytes())
            != Some(b"13")
    {
        return None;
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .to_str()
        .ok()
        .map(str::to_owned)
}
