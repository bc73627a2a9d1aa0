//! Engine.IO v4, the server side: the transport under Socket.IO. WebSocket and HTTP
//! long-polling, the upgrade from one to the other, heartbeats (the server pings, the client
//! answers), the packet formats; the application gets text messages and binary data through
//! [`Handler`] and sends through [`Socket::emit`].
//!
//! Written here rather than taken from engineioxide for memory: an idle session there held
//! ~14 KiB in per-session tasks and channels (heaptrack, BENCHMARKS.md). Here a WebSocket
//! session is one task owning its connection and a [`Socket`] whose queue allocates nothing
//! while idle; a long-polling session adds a heartbeat task until it upgrades. Queued packets
//! are shared buffers, and a WebSocket task writes everything queued before it flushes, so a
//! burst of events leaves in few writes. The WebSocket framing is tungstenite's.
//!
//! Files: `socket.rs` (a session and its queue), `packet.rs` (the client's packets),
//! `websocket.rs`, `polling.rs`.

mod packet;
mod polling;
mod socket;
mod websocket;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};

pub use socket::{DisconnectReason, SendError, Sid, Socket, Str};

/// What the application does with a session's traffic.
pub trait Handler: Send + Sync + 'static {
    /// The application's part of a session.
    type Data: Default + Send + Sync + 'static;

    /// A message packet's text (after its `4`).
    fn on_message(self: &Arc<Self>, msg: &str, socket: &Arc<Socket<Self::Data>>);

    /// Binary data from the client.
    fn on_binary(self: &Arc<Self>, data: Vec<u8>, socket: &Arc<Socket<Self::Data>>);

    /// The session has ended; called once per session.
    fn on_disconnect(&self, socket: &Arc<Socket<Self::Data>>, reason: DisconnectReason);
}

/// Settings of the transport.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients connect, e.g. `/socket.io`.
    pub path: &'static str,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// The largest packet (WebSocket) or payload (long-polling) accepted, in bytes.
    pub max_payload: usize,
    /// Packets queued for one session before it counts as not reading.
    pub queue: usize,
    /// The WebSocket read buffer's first size (it grows for a larger frame).
    pub read_buffer: usize,
    /// A WebSocket session writes once this much is buffered, and when its queue is empty.
    pub write_buffer: usize,
}

/// The server: its handler, settings and the long-polling sessions (WebSocket sessions are
/// reached only through their [`Socket`]s, which the handler keeps).
pub struct Engine<H: Handler> {
    handler: Arc<H>,
    config: Config,
    polling: Mutex<HashMap<Sid, Arc<Socket<H::Data>>>>,
}

impl<H: Handler> Engine<H> {
    pub fn new(handler: Arc<H>, config: Config) -> Arc<Self> {
        Arc::new(Engine {
            handler,
            config,
            polling: Mutex::default(),
        })
    }

    /// Whether a request is for this server (its path is under [`Config::path`]).
    pub fn is_mine(&self, path: &str) -> bool {
        path.strip_prefix(self.config.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Answers an Engine.IO request.
    pub async fn serve(self: Arc<Self>, req: Request<Body>) -> Response<Body> {
        let query = Query::parse(req.uri().query().unwrap_or(""));
        if query.eio != Some("4") {
            return refusal(Refusal::UnsupportedProtocol);
        }
        let sid = match query.sid {
            None => None,
            Some(s) => match Sid::parse(s) {
                Some(sid) => Some(sid),
                None => return refusal(Refusal::UnknownSession),
            },
        };
        match (query.transport, req.method().clone(), sid) {
            (Some("polling"), Method::GET, None) => self.open_polling(),
            (Some("polling"), Method::GET, Some(sid)) => self.poll(sid).await,
            (Some("polling"), Method::POST, Some(sid)) => self.post(sid, req).await,
            (Some("polling"), _, _) => refusal(Refusal::BadMethod),
            (Some("websocket"), Method::GET, sid) => self.upgrade(sid, req),
            (Some("websocket"), _, _) => refusal(Refusal::BadMethod),
            _ => refusal(Refusal::UnknownTransport),
        }
    }

    /// The open packet: `0{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}`.
    fn open_packet(&self, sid: Sid, upgrades: bool) -> String {
        format!(
            "0{{\"sid\":\"{sid}\",\"upgrades\":[{}],\"pingInterval\":{},\"pingTimeout\":{},\"maxPayload\":{}}}",
            if upgrades { "\"websocket\"" } else { "" },
            self.config.ping_interval.as_millis(),
            self.config.ping_timeout.as_millis(),
            self.config.max_payload,
        )
    }

    fn polling_session(&self, sid: Sid) -> Option<Arc<Socket<H::Data>>> {
        self.polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sid)
            .cloned()
    }

    /// Ends a session for good: forgets it and tells the handler, once.
    fn finish(&self, socket: &Arc<Socket<H::Data>>, reason: DisconnectReason) {
        socket.close(reason);
        self.polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&socket.id);
        if !socket.finished.swap(true, Ordering::SeqCst) {
            self.handler
                .on_disconnect(socket, socket.reason().unwrap_or(reason));
        }
    }
}

/// The query of an Engine.IO request.
#[derive(Debug, Default)]
struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Self {
        let mut q = Query::default();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "EIO" => q.eio = Some(value),
                "transport" => q.transport = Some(value),
                "sid" => q.sid = Some(value),
                _ => {}
            }
        }
        q
    }
}

/// Engine.IO's error answers: 400 with `{"code", "message"}`.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownTransport = 0,
    UnknownSession = 1,
    BadMethod = 2,
    BadRequest = 3,
    UnsupportedProtocol = 5,
}

fn refusal(kind: Refusal) -> Response<Body> {
    let message = match kind {
        Refusal::UnknownTransport => "Transport unknown",
        Refusal::UnknownSession => "Session ID unknown",
        Refusal::BadMethod => "Bad handshake method",
        Refusal::BadRequest => "Bad request",
        Refusal::UnsupportedProtocol => "Unsupported protocol version",
    };
    let body = format!("{{\"code\":{},\"message\":\"{message}\"}}", kind as u8);
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = StatusCode::BAD_REQUEST;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

/// A `text/plain` answer.
fn text(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    res
}

/// A tower layer that sends Engine.IO requests to the engine and everything else on.
pub struct Layer<H: Handler> {
    engine: Arc<Engine<H>>,
}

impl<H: Handler> Layer<H> {
    pub fn new(engine: Arc<Engine<H>>) -> Self {
        Layer { engine }
    }
}

impl<H: Handler> Clone for Layer<H> {
    fn clone(&self) -> Self {
        Layer {
            engine: self.engine.clone(),
        }
    }
}

impl<H: Handler, S> tower::Layer<S> for Layer<H> {
    type Service = Service<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        Service {
            engine: self.engine.clone(),
            inner,
        }
    }
}

/// See [`Layer`].
pub struct Service<H: Handler, S> {
    engine: Arc<Engine<H>>,
    inner: S,
}

impl<H: Handler, S: Clone> Clone for Service<H, S> {
    fn clone(&self) -> Self {
        Service {
            engine: self.engine.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<H, S> tower::Service<Request<Body>> for Service<H, S>
where
    H: Handler,
    S: tower::Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
        >,
        S::Future,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if self.engine.is_mine(req.uri().path()) {
            let engine = self.engine.clone();
            futures_util::future::Either::Left(Box::pin(async move { Ok(engine.serve(req).await) }))
        } else {
            futures_util::future::Either::Right(self.inner.call(req))
        }
    }
}

#[cfg(test)]
mod tests;
