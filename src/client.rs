//! A small Socket.IO v5 client (Engine.IO 4 over WebSocket only, JSON packets only), for the
//! load generator (`palaver bench`) and the integration tests. It speaks the protocol any
//! Socket.IO server speaks, not something private to Palaver; compatibility with the reference
//! client is what the npm end-to-end suite shows.
//!
//! One connection is two tasks: a reader that answers pings, resolves acks and forwards events,
//! and a writer fed by a bounded queue. Events come out of [`Events`] in arrival order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Outgoing frames queued for one connection before senders wait.
const OUTGOING: usize = 1024;
/// Incoming events queued before the reader stops reading (the server then sees a slow client).
const INCOMING: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Transport(String),
    /// The server answered the Socket.IO handshake with `connect_error`; its `data` is here.
    #[error("connection refused: {0}")]
    Refused(Value),
    #[error("connection closed")]
    Closed,
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("unexpected packet: {0}")]
    Protocol(String),
}

/// A server → client event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// Acks awaited, by id; `None` once the connection is gone.
type Pending = Arc<Mutex<Option<HashMap<u64, Waiter>>>>;

/// Who waits for an ack: as a parsed value, or as the ack's JSON text (its argument array),
/// for a caller that decodes only what it needs.
enum Waiter {
    Value(oneshot::Sender<Value>),
    Raw(oneshot::Sender<String>),
}

/// The sending half of a connection; cheap to clone.
#[derive(Clone)]
pub struct Client {
    out: mpsc::Sender<Message>,
    pending: Pending,
    next_ack: Arc<AtomicU64>,
    /// The Socket.IO session id the server gave.
    pub sid: Arc<str>,
}

/// The receiving half: server events, then `None` once the connection is gone.
pub struct Events(mpsc::Receiver<Event>);

impl Events {
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    /// The next event called `name`, skipping others, waiting at most `wait`.
    pub async fn expect(&mut self, name: &str, wait: Duration) -> Result<Value, ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.0.recv()).await {
                Err(_) => return Err(ClientError::Timeout(wait)),
                Ok(None) => return Err(ClientError::Closed),
                Ok(Some(event)) if event.name == name => return Ok(event.data),
                Ok(Some(_)) => continue,
            }
        }
    }

    /// An event already received and not yet taken, if any.
    pub fn try_next(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }
}

/// Connects to `base` (`http://host:port`) and performs the Socket.IO handshake with `auth`.
pub async fn connect(base: &str, auth: &Value) -> Result<(Client, Events), ClientError> {
    let ws_base = base
        .strip_prefix("http://")
        .map(|rest| format!("ws://{rest}"))
        .or_else(|| {
            base.strip_prefix("https://")
                .map(|rest| format!("wss://{rest}"))
        })
        .unwrap_or_else(|| base.to_owned());
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        ws_base.trim_end_matches('/')
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;

    // Engine.IO open packet, then the Socket.IO connect exchange.
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(ClientError::Protocol(open));
    }
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    let sid = loop {
        let text = next_text(&mut ws).await?;
        if text == "2" {
            ws.send(Message::text("3"))
                .await
                .map_err(|e| ClientError::Transport(e.to_string()))?;
            continue;
        }
        if let Some(body) = text.strip_prefix("40") {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            break v["sid"].as_str().unwrap_or_default().to_owned();
        }
        if let Some(body) = text.strip_prefix("44") {
            let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            return Err(ClientError::Refused(v));
        }
        return Err(ClientError::Protocol(text));
    };

    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTGOING);
    let (event_tx, event_rx) = mpsc::channel::<Event>(INCOMING);
    let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));

    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let reader_pending = pending.clone();
    let pong = out_tx.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Text(text) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let text = text.as_str();
            let go_on = match text.as_bytes().first() {
                Some(b'2') => pong.send(Message::text("3")).await.is_ok(),
                Some(b'1') => false,
                Some(b'4') => handle_packet(&text[1..], &reader_pending, &event_tx).await,
                _ => true,
            };
            if !go_on {
                break;
            }
        }
        // Whoever still waits for an ack learns the connection is gone, and so does any later call.
        reader_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    });

    Ok((
        Client {
            out: out_tx,
            pending,
            next_ack: Arc::new(AtomicU64::new(0)),
            sid: sid.into(),
        },
        Events(event_rx),
    ))
}

/// Handles one Socket.IO packet; `false` when the server ended the session.
async fn handle_packet(packet: &str, pending: &Pending, events: &mpsc::Sender<Event>) -> bool {
    let (kind, rest) = packet.split_at(packet.len().min(1));
    match kind {
        "2" => {
            let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(body) {
                if let Some(Value::String(name)) = items.first().cloned() {
                    let data = if items.len() > 1 {
                        items.swap_remove(1)
                    } else {
                        Value::Null
                    };
                    // A full queue means the consumer is behind: stop reading until it catches
                    // up. Nobody listening (events dropped) is fine: acks and pings go on.
                    let _ = events.send(Event { name, data }).await;
                }
            }
            true
        }
        "3" => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let id: Option<u64> = rest[..digits].parse().ok();
            let waiter = id.and_then(|id| {
                pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_mut()
                    .and_then(|p| p.remove(&id))
            });
            match waiter {
                Some(Waiter::Value(tx)) => {
                    let data = match serde_json::from_str::<Value>(&rest[digits..]) {
                        Ok(Value::Array(mut items)) if !items.is_empty() => items.swap_remove(0),
                        _ => Value::Null,
                    };
                    let _ = tx.send(data);
                }
                Some(Waiter::Raw(tx)) => {
                    let _ = tx.send(rest[digits..].to_owned());
                }
                None => {}
            }
            true
        }
        "1" => false,
        _ => true,
    }
}

async fn next_text<S>(ws: &mut S) -> Result<String, ClientError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
        }
    }
}

impl Client {
    /// Emits an event without asking for an ack.
    pub async fn emit(&self, name: &str, data: &Value) -> Result<(), ClientError> {
        let frame = format!("42{}", serde_json::json!([name, data]));
        self.out
            .send(Message::text(frame))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Emits an event and waits (at most `wait`) for its ack's first argument.
    pub async fn call(
        &self,
        name: &str,
        data: &Value,
        wait: Duration,
    ) -> Result<Value, ClientError> {
        let ack = self.call_later(name, data).await?;
        match tokio::time::timeout(wait, ack).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout(wait)),
        }
    }

    /// Emits an event and waits (at most `wait`) for its ack's first argument, decoded as `T`
    /// straight from the packet's text (fields `T` does not name are skipped, not built).
    pub async fn call_as<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        data: &Value,
        wait: Duration,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.request(name, data, Waiter::Raw(tx)).await?;
        let text = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => return Err(ClientError::Timeout(wait)),
        };
        let (first,): (T,) = serde_json::from_str(&text)
            .map_err(|e| ClientError::Protocol(format!("ack of {name}: {e}")))?;
        Ok(first)
    }

    /// Emits an event and returns the receiver of its ack, so that many can be in flight.
    pub async fn call_later(
        &self,
        name: &str,
        data: &Value,
    ) -> Result<oneshot::Receiver<Value>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.request(name, data, Waiter::Value(tx)).await?;
        Ok(rx)
    }

    /// Emits an event whose ack `waiter` awaits.
    async fn request(&self, name: &str, data: &Value, waiter: Waiter) -> Result<(), ClientError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .ok_or(ClientError::Closed)?
            .insert(id, waiter);
        let frame = format!("42{id}{}", serde_json::json!([name, data]));
        if self.out.send(Message::text(frame)).await.is_err() {
            if let Some(p) = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                p.remove(&id);
            }
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// Closes the connection (a Socket.IO disconnect, then the WebSocket close).
    pub async fn close(&self) {
        let _ = self.out.send(Message::text("41")).await;
        let _ = self.out.send(Message::Close(None)).await;
    }
}
