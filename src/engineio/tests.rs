//! The engine against real clients on a real port: WebSocket and long-polling sessions, the
//! upgrade, heartbeats, closing, and the refusals. The handler echoes every message back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::*;

#[derive(Default)]
struct Echo {
    ended: Mutex<Vec<(Sid, DisconnectReason)>>,
    binary: Mutex<Vec<Vec<u8>>>,
    sockets: Mutex<Vec<Arc<Socket<()>>>>,
}

impl Handler for Echo {
    type Data = ();

    fn on_message(self: &Arc<Self>, msg: &str, socket: &Arc<Socket<()>>) {
        self.sockets.lock().unwrap().push(socket.clone());
        let _ = socket.emit(Str::message(msg));
    }

    fn on_binary(self: &Arc<Self>, data: Vec<u8>, _socket: &Arc<Socket<()>>) {
        self.binary.lock().unwrap().push(data);
    }

    fn on_disconnect(&self, socket: &Arc<Socket<()>>, reason: DisconnectReason) {
        self.ended.lock().unwrap().push((socket.id, reason));
    }
}

impl Echo {
    async fn ended(&self, sid: Sid) -> DisconnectReason {
        for _ in 0..500 {
            let ended = self.ended.lock().unwrap().clone();
            let mine: Vec<_> = ended.iter().filter(|(s, _)| *s == sid).collect();
            if let Some((_, reason)) = mine.first() {
                assert_eq!(mine.len(), 1, "told once");
                return *reason;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the session did not end");
    }
}

struct Server {
    base: String,
    echo: Arc<Echo>,
    http: reqwest::Client,
}

async fn serve(ping: Duration, queue: usize) -> Server {
    let echo = Arc::new(Echo::default());
    let engine = Engine::new(
        echo.clone(),
        Config {
            path: "/socket.io",
            ping_interval: ping,
            ping_timeout: ping,
            max_payload: 1000,
            queue,
            read_buffer: 512,
            write_buffer: 4096,
        },
    );
    let app = axum::Router::new()
        .route("/other", axum::routing::get(|| async { "other" }))
        .layer(Layer::new(engine));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base: format!("127.0.0.1:{}", addr.port()),
        echo,
        http: reqwest::Client::new(),
    }
}

impl Server {
    fn url(&self, query: &str) -> String {
        format!("http://{}/socket.io/?EIO=4&{query}", self.base)
    }

    async fn get(&self, query: &str) -> (u16, String) {
        let res = self.http.get(self.url(query)).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn post(&self, query: &str, body: &str) -> (u16, String) {
        let res = self
            .http
            .post(self.url(query))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn websocket(
        &self,
        query: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let url = format!("ws://{}/socket.io/?EIO=4&{query}", self.base);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Opens a long-polling session; its sid.
    async fn open_polling(&self) -> Sid {
        let (status, open) = self.get("transport=polling").await;
        assert_eq!(status, 200, "{open}");
        let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
        assert_eq!(v["upgrades"], serde_json::json!(["websocket"]));
        Sid::parse(v["sid"].as_str().unwrap()).unwrap()
    }
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Client) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

async fn say(ws: &mut Client, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test]
async fn a_websocket_session_echoes_pings_and_ends_when_pongs_stop() {
    let server = serve(Duration::from_millis(200), 16).await;
    let mut ws = server.websocket("transport=websocket").await;
    let open = next_text(&mut ws).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(v["upgrades"], serde_json::json!([]));
    assert_eq!(v["pingInterval"], 200);
    assert_eq!(v["maxPayload"], 1000);
    let sid = Sid::parse(v["sid"].as_str().unwrap()).unwrap();

    say(&mut ws, "4hello").await;
    assert_eq!(next_text(&mut ws).await.unwrap(), "4hello");
    // The server's packets are not bound by the client's payload limit (a sync page).
    let socket = server.echo.sockets.lock().unwrap()[0].clone();
    let big = "x".repeat(3 << 20);
    socket.emit(Str::message(&big)).unwrap();
    assert_eq!(next_text(&mut ws).await.unwrap().len(), big.len() + 1);
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    // Answered pings keep the session.
    for _ in 0..3 {
        assert_eq!(next_text(&mut ws).await.unwrap(), "2");
        say(&mut ws, "3").await;
    }
    assert_eq!(*server.echo.binary.lock().unwrap(), [vec![1u8, 2, 3]]);
    // An unanswered one ends it.
    assert_eq!(next_text(&mut ws).await.unwrap(), "2");
    assert_eq!(
        server.echo.ended(sid).await,
        DisconnectReason::HeartbeatTimeout
    );
    assert_eq!(next_text(&mut ws).await, None, "the server hung up");
}

#[tokio::test]
async fn a_polling_session_takes_posts_and_answers_gets() {
    let server = serve(Duration::from_secs(5), 16).await;
    let sid = server.open_polling().await;
    let q = format!("transport=polling&sid={sid}");
    assert_eq!(server.post(&q, "4a\u{1e}4b").await, (200, "ok".into()));
    assert_eq!(server.get(&q).await, (200, "4a\u{1e}4b".into()));

    // A GET waits until something is queued.
    let waiting = tokio::spawn({
        let (http, url) = (server.http.clone(), server.url(&q));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    server.post(&q, "4later").await;
    assert_eq!(waiting.await.unwrap(), "4later");

    // A second GET while one waits ends the session.
    let first = tokio::spawn({
        let (http, url) = (server.http.clone(), server.url(&q));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.get(&q).await.0, 400);
    assert_eq!(
        first.await.unwrap(),
        "1",
        "the waiting GET hears of the end"
    );
    assert_eq!(
        server.echo.ended(sid).await,
        DisconnectReason::MultipleHttpPolling
    );
    let (status, body) = server.get(&q).await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
}

#[tokio::test]
async fn refusals_are_engine_io_errors() {
    let server = serve(Duration::from_secs(5), 16).await;
    let (status, body) = server.get("transport=polling&sid=nope").await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"code":1,"message":"Session ID unknown"}"#)
    );
    let res = server
        .http
        .get(format!(
            "http://{}/socket.io/?EIO=3&transport=polling",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(
        res.text().await.unwrap(),
        r#"{"code":5,"message":"Unsupported protocol version"}"#
    );
    assert_eq!(server.get("transport=carrier-pigeon").await.0, 400);
    assert_eq!(
        server.get("transport=websocket").await.0,
        400,
        "no upgrade headers"
    );
    assert_eq!(
        server.post("transport=polling", "4x").await.0,
        400,
        "a POST opens nothing"
    );
    let other = reqwest::get(format!("http://{}/other", server.base))
        .await
        .unwrap();
    assert_eq!(
        other.text().await.unwrap(),
        "other",
        "other paths pass through"
    );

    // Garbage, or too much, ends or refuses a session.
    let sid = server.open_polling().await;
    let q = format!("transport=polling&sid={sid}");
    assert_eq!(server.post(&q, &"4".repeat(2000)).await.0, 413);
    assert_eq!(server.post(&q, "4ok\u{1e}9nope").await.0, 400);
    assert_eq!(
        server.echo.ended(sid).await,
        DisconnectReason::PacketParsingError
    );
    assert!(
        server.echo.sockets.lock().unwrap().is_empty(),
        "nothing of it was handled"
    );
}

#[tokio::test]
async fn a_polling_session_upgrades_to_a_websocket() {
    let server = serve(Duration::from_secs(5), 16).await;
    let sid = server.open_polling().await;
    let q = format!("transport=polling&sid={sid}");
    let waiting = tokio::spawn({
        let (http, url) = (server.http.clone(), server.url(&q));
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    });
    let mut ws = server
        .websocket(&format!("transport=websocket&sid={sid}"))
        .await;
    say(&mut ws, "2probe").await;
    assert_eq!(next_text(&mut ws).await.unwrap(), "3probe");
    assert_eq!(waiting.await.unwrap(), "6", "the waiting GET is let go");
    // Queued during the upgrade: goes over the WebSocket once it is done.
    server.post(&q, "4during").await;
    say(&mut ws, "5").await;
    assert_eq!(next_text(&mut ws).await.unwrap(), "4during");
    say(&mut ws, "4after").await;
    assert_eq!(next_text(&mut ws).await.unwrap(), "4after");
    assert_eq!(server.get(&q).await.0, 400, "no more polling");

    // The client's close packet ends it.
    say(&mut ws, "1").await;
    assert_eq!(
        server.echo.ended(sid).await,
        DisconnectReason::TransportClose
    );
}

#[tokio::test]
async fn a_server_close_sends_what_was_queued_first_and_a_full_queue_refuses() {
    let server = serve(Duration::from_secs(5), 2).await;
    let mut ws = server.websocket("transport=websocket").await;
    next_text(&mut ws).await.unwrap();
    say(&mut ws, "4hi").await;
    assert_eq!(next_text(&mut ws).await.unwrap(), "4hi");
    let socket = server.echo.sockets.lock().unwrap()[0].clone();

    // The session's task writes as soon as something is queued, so fill the queue from
    // inside one lock-free burst: two fit, the third is refused.
    // (The test's runtime has one thread: the session's task cannot drain the queue between
    // these calls.)
    let results: Vec<bool> = (0..3)
        .map(|i| socket.emit(Str::message(&format!("x{i}"))).is_ok())
        .collect();
    assert_eq!(results, [true, true, false]);
    socket.close(DisconnectReason::ClosingServer);
    let mut got = Vec::new();
    while let Some(t) = next_text(&mut ws).await {
        got.push(t);
    }
    assert!(
        got.starts_with(&["4x0".to_owned(), "4x1".to_owned()]),
        "{got:?}"
    );
    assert_eq!(
        server.echo.ended(socket.id).await,
        DisconnectReason::ClosingServer
    );
    assert!(matches!(
        socket.emit(Str::message("late")),
        Err(SendError::Closed(_))
    ));
}

#[test]
fn queries_are_read_by_name() {
    let q = Query::parse("EIO=4&transport=polling&t=abc&sid=AAAA");
    assert_eq!(
        (q.eio, q.transport, q.sid),
        (Some("4"), Some("polling"), Some("AAAA"))
    );
    let q = Query::parse("");
    assert!(q.eio.is_none() && q.transport.is_none() && q.sid.is_none());
}
