use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;

use std::time::Duration;

use palaver::client::{self, Client, Events};
use serde_json::Value;

use crate::dual_test;
use crate::helpers::{TestApp, User};

/// base64(HMAC-SHA1(secret, text)) by OpenSSL, a counterpart that shares no code with ours.
fn openssl_hmac_sha1(secret: &str, text: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha1", "-binary", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

dual_test!(
    ice_servers_carry_turn_credentials_by_the_shared_secret,
    |s| {
        s.stun_urls = Some("stun:stun.example.com:3478".into());
        s.turn_urls =
            Some("turn:turn.example.com:3478?transport=udp, turns:turn.example.com:5349".into());
        s.turn_secret = Some("north-wind".into());
        s.turn_ttl = Some(600);
    }
);
async fn ice_servers_carry_turn_credentials_by_the_shared_secret(app: &TestApp) {
    let u = app.signup("caller@example.com", "Caller").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["ttl"], 600);
    let servers = r.body["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    assert_eq!(
        servers[0],
        json!({"urls": ["stun:stun.example.com:3478"]}),
        "STUN needs no credentials"
    );
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.com:3478?transport=udp",
            "turns:turn.example.com:5349"
        ])
    );
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, u.id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(
        turn["credential"].as_str().unwrap(),
        openssl_hmac_sha1("north-wind", username),
        "the credential a TURN server with the same secret computes"
    );
    // Signed-in callers only.
    app.call(
        reqwest::Method::GET,
        "/api/v1/calls/ice-servers",
        None,
        None,
    )
    .await
    .assert_problem(401, "unauthorized");
}

dual_test!(without_servers_configured_the_list_is_empty);
async fn without_servers_configured_the_list_is_empty(app: &TestApp) {
    let u = app.signup("lonely@example.com", "Lonely").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"iceServers": [], "ttl": 86400}));
}

/// A coturn on a free port with `use-auth-secret`; `None` (the test skips) without coturn.
struct Coturn {
    child: std::process::Child,
    port: u16,
}

impl Coturn {
    async fn start(secret: &str) -> Option<Coturn> {
        let installed = |program: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !installed("turnserver") || !installed("turnutils_uclient") {
            eprintln!("skipped: coturn (turnserver, turnutils_uclient) is not installed");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args([
                "--use-auth-secret",
                "--realm=palaver.test",
                "--no-tls",
                "--no-dtls",
            ])
            .arg(format!("--static-auth-secret={secret}"))
            .args(["--allow-loopback-peers", "--no-cli", "--log-file=stdout"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        // Ready once it accepts TCP on its port (it serves UDP on the same one).
        crate::helpers::eventually(std::time::Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(|_| ())
                .map_err(|e| format!("turnserver is not listening: {e}"))
        })
        .await;
        Some(Coturn { child, port })
    }

    /// Whether coturn's own client allocates a relay with these credentials and echoes data
    /// through it.
    fn allocates(&self, username: &str, credential: &str) -> bool {
        Command::new("timeout")
            .arg("30")
            .arg("turnutils_uclient")
            .args(["-u", username, "-w", credential])
            .args(["-p", &self.port.to_string()])
            .args([
                "-n",
                "1",
                "-m",
                "1",
                "-l",
                "100",
                "-y",
                "-e",
                "127.0.0.1",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

dual_test!(a_turn_server_accepts_the_credentials, |s| {
    s.turn_urls = Some("turn:127.0.0.1:3478".into());
    s.turn_secret = Some("south-wind".into());
});
async fn a_turn_server_accepts_the_credentials(app: &TestApp) {
    let Some(coturn) = Coturn::start("south-wind").await else {
        return;
    };
    let u = app.signup("turner@example.com", "Turner").await;
    let r = app.get("/api/v1/calls/ice-servers", &u.token).await;
    let turn = &r.body["iceServers"][0];
    let (username, credential) = (
        turn["username"].as_str().unwrap(),
        turn["credential"].as_str().unwrap(),
    );
    assert!(
        coturn.allocates(username, credential),
        "coturn refused {username}"
    );
    // The counterpart does refuse: the same credential under another user's name.
    let other = format!("{}:someone-else", username.split(':').next().unwrap());
    assert!(
        !coturn.allocates(&other, credential),
        "a credential is bound to its username"
    );
}

// Signalling, with the Rust Socket.IO client (the npm client drives a call in `e2e/`).

const WAIT: Duration = Duration::from_secs(10);
/// How long a test waits to be sure that something does *not* arrive.
const QUIET: Duration = Duration::from_millis(300);
const OFFER: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
const ANSWER: &str =
    "v=0\r\no=- 3 4 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";

async fn device(app: &TestApp, user: &User) -> (Client, Events) {
    client::connect(&app.base, &json!({"token": user.token}))
        .await
        .expect("socket connects")
}

async fn ack(socket: &Client, event: &str, data: Value) -> Value {
    socket.call(event, &data, WAIT).await.expect("ack")
}

/// Two users who have talked (so no message request stands between them) and their chat.
async fn friends(app: &TestApp, a: &str, b: &str) -> (User, User, String) {
    let a = app.signup(&format!("{a}@example.com"), a).await;
    let b = app.signup(&format!("{b}@example.com"), b).await;
    let conv = app.direct(&a, &b).await;
    app.say(&a, &conv, "hi").await;
    app.say(&b, &conv, "hello").await;
    (a, b, conv)
}

async fn invite(socket: &Client, conversation: &str) -> String {
    let r = ack(
        socket,
        "call:invite",
        json!({"conversationId": conversation, "media": "video", "sdp": OFFER}),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    r["callId"].as_str().unwrap().to_owned()
}

/// Events already received, after waiting `QUIET` for stragglers.
async fn settle(events: &mut Events) -> Vec<client::Event> {
    tokio::time::sleep(QUIET).await;
    std::iter::from_fn(|| events.try_next()).collect()
}

/// The events before the first `name` whose data `wanted` accepts, and that one's data.
async fn until(
    events: &mut Events,
    name: &str,
    wanted: impl Fn(&Value) -> bool,
) -> (Vec<client::Event>, Value) {
    let mut before = Vec::new();
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {name} came: {before:?}"))
            .expect("the socket stays open");
        if e.name == name && wanted(&e.data) {
            return (before, e.data);
        }
        before.push(e);
    }
}

fn named<'a>(events: &'a [client::Event], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e.name == name)
        .map(|e| &e.data)
        .collect()
}

/// The `call` messages of a conversation, as `user` reads them.
async fn call_messages(app: &TestApp, user: &User, conversation: &str) -> Vec<Value> {
    app.history(user, conversation)
        .await
        .into_iter()
        .filter(|m| m["type"] == "call")
        .collect()
}

dual_test!(a_call_rings_every_device_and_goes_on_with_the_one_that_answers);
async fn a_call_rings_every_device_and_goes_on_with_the_one_that_answers(app: &TestApp) {
    let (a, b, conv) = friends(app, "ada", "bo").await;
    let b_tablet = app.login("bo@example.com", "tablet").await;
    let (a1, mut a1_events) = device(app, &a).await;
    let (b1, mut b1_events) = device(app, &b).await;
    let (b2, mut b2_events) = device(app, &b_tablet).await;

    let call = invite(&a1, &conv).await;
    for events in [&mut b1_events, &mut b2_events] {
        let ring = events.expect("call:incoming", WAIT).await.unwrap();
        assert_eq!(
            ring,
            json!({"callId": call, "conversationId": conv, "from": {"id": a.id, "displayName": "ada"},
                   "media": "video", "sdp": OFFER})
        );
    }
    // Candidates before the answer reach every ringing device.
    let r = ack(&a1, "call:ice", json!({"callId": call, "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    assert_eq!(r["ok"], true, "{r}");
    for events in [&mut b1_events, &mut b2_events] {
        let ice = events.expect("call:ice", WAIT).await.unwrap();
        assert_eq!(ice["candidate"]["sdpMid"], "0");
    }

    let r = ack(&b2, "call:accept", json!({"callId": call, "sdp": ANSWER})).await;
    assert_eq!(r, json!({"ok": true, "callId": call}));
    let accepted = a1_events.expect("call:accepted", WAIT).await.unwrap();
    assert_eq!(accepted, json!({"callId": call, "sdp": ANSWER}));
    let elsewhere = b1_events.expect("call:ended", WAIT).await.unwrap();
    assert_eq!(
        elsewhere,
        json!({"callId": call, "reason": "answered_elsewhere", "durationMs": 0})
    );
    // After the answer, candidates go between the two devices in the call only.
    ack(
        &a1,
        "call:ice",
        json!({"callId": call, "candidate": {"candidate": "c-a"}}),
    )
    .await;
    assert_eq!(
        b2_events.expect("call:ice", WAIT).await.unwrap()["candidate"]["candidate"],
        "c-a"
    );
    ack(
        &b2,
        "call:ice",
        json!({"callId": call, "candidate": {"candidate": "c-b"}}),
    )
    .await;
    assert_eq!(
        a1_events.expect("call:ice", WAIT).await.unwrap()["candidate"]["candidate"],
        "c-b"
    );
    // The device that stopped ringing is out of the call: its events change nothing.
    let r = ack(&b1, "call:end", json!({"callId": call})).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert!(named(&settle(&mut b1_events).await, "call:ice").is_empty());

    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = ack(&a1, "call:end", json!({"callId": call})).await;
    assert_eq!(r["ok"], true, "{r}");
    for events in [&mut a1_events, &mut b2_events] {
        let ended = events.expect("call:ended", WAIT).await.unwrap();
        assert_eq!(ended["reason"], "ended");
        assert!(ended["durationMs"].as_i64().unwrap() >= 50, "{ended}");
    }
    // The call's message reaches every device, like any message; the device that stopped
    // ringing hears no second end on the way.
    // (The chat's greetings may come live first: they were committed just before it connected.)
    let (before, new) = until(&mut b1_events, "message:new", |m| {
        m["message"]["type"] == "call"
    })
    .await;
    assert_eq!(new["message"]["call"]["callId"], call.as_str());
    let rest = settle(&mut b1_events).await;
    assert!(named(&before, "call:ended").is_empty(), "{before:?}");
    assert!(named(&rest, "call:ended").is_empty(), "{rest:?}");
    assert!(
        named(&rest, "message:new").is_empty(),
        "one message: {rest:?}"
    );

    // The log, from both sides, and one `call` message in the chat, which syncs like any.
    let log = app.get("/api/v1/calls", &a.token).await.assert_ok().body;
    let entry = &log["items"][0];
    assert_eq!(log["items"].as_array().unwrap().len(), 1, "{log}");
    assert_eq!(entry["id"], call);
    assert_eq!(entry["direction"], "outgoing");
    assert_eq!(entry["outcome"], "answered");
    assert_eq!(entry["media"], "video");
    assert_eq!(entry["callerId"], a.id.as_str());
    assert_eq!(entry["calleeId"], b.id.as_str());
    assert!(entry["answeredAt"].is_string() && entry["endedAt"].is_string());
    let b_log = app.get("/api/v1/calls", &b.token).await.assert_ok().body;
    assert_eq!(b_log["items"][0]["direction"], "incoming");
    assert_eq!(b_log["items"][0]["durationMs"], entry["durationMs"]);
    let messages = call_messages(app, &b, &conv).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["sender"]["id"], a.id.as_str());
    assert_eq!(
        messages[0]["call"],
        json!({"callId": call, "media": "video", "outcome": "answered", "durationMs": entry["durationMs"]})
    );
}

dual_test!(only_the_two_members_of_an_accepted_direct_chat_may_call);
async fn only_the_two_members_of_an_accepted_direct_chat_may_call(app: &TestApp) {
    let (a, b, conv) = friends(app, "cy", "di").await;
    let stranger = app.signup("ed@example.com", "ed").await;
    let (a1, _a1_events) = device(app, &a).await;
    let (s1, _s1_events) = device(app, &stranger).await;
    let refused = |r: &Value, code: &str| {
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["code"], code, "{r}");
    };
    // Not a member of the conversation: as if it did not exist.
    let body = json!({"conversationId": conv, "media": "audio", "sdp": OFFER});
    refused(&ack(&s1, "call:invite", body).await, "not_found");
    // A request the callee has not accepted cannot ring.
    let pending = app.direct(&stranger, &a).await;
    app.say(&stranger, &pending, "knock knock").await;
    let body = json!({"conversationId": pending, "media": "audio", "sdp": OFFER});
    refused(&ack(&s1, "call:invite", body).await, "call_not_allowed");
    // Groups are out of scope.
    let group = app.group(&a, "Team", &[&b]).await;
    let body = json!({"conversationId": group, "media": "audio", "sdp": OFFER});
    refused(&ack(&a1, "call:invite", body).await, "call_not_allowed");
    // A block, either way.
    app.put(&format!("/api/v1/blocks/{}", a.id), &b.token, json!({}))
        .await
        .assert_ok();
    let body = json!({"conversationId": conv, "media": "audio", "sdp": OFFER});
    refused(
        &ack(&a1, "call:invite", body.clone()).await,
        "call_not_allowed",
    );
    app.delete(&format!("/api/v1/blocks/{}", a.id), &b.token)
        .await
        .assert_ok();
    // Bad payloads.
    let bad_media = json!({"conversationId": conv, "media": "smell", "sdp": OFFER});
    refused(
        &ack(&a1, "call:invite", bad_media).await,
        "validation_failed",
    );
    let no_sdp = json!({"conversationId": conv, "media": "audio", "sdp": ""});
    refused(&ack(&a1, "call:invite", no_sdp).await, "validation_failed");
    let unknown = json!({"callId": "01a1fcc9-f534-7180-b41d-68bc6714f8df", "sdp": ANSWER});
    refused(&ack(&a1, "call:accept", unknown).await, "not_found");
    // Now it rings; its caller cannot answer it, a stranger cannot touch it.
    let call = invite(&a1, &conv).await;
    let own = json!({"callId": call, "sdp": ANSWER});
    refused(
        &ack(&a1, "call:accept", own.clone()).await,
        "call_not_allowed",
    );
    refused(&ack(&s1, "call:accept", own).await, "not_found");
    let not_object = json!({"callId": call, "candidate": "text"});
    refused(&ack(&a1, "call:ice", not_object).await, "validation_failed");
    refused(
        &ack(&s1, "call:end", json!({"callId": call})).await,
        "not_found",
    );
    assert!(app
        .get("/api/v1/calls", &stranger.token)
        .await
        .assert_ok()
        .body["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

dual_test!(calls_end_rejected_missed_or_busy);
async fn calls_end_rejected_missed_or_busy(app: &TestApp) {
    let (a, b, conv) = friends(app, "fa", "gu").await;
    let c = app.signup("ho@example.com", "ho").await;
    let conv_cb = app.direct(&c, &b).await;
    app.say(&c, &conv_cb, "hi").await;
    app.say(&b, &conv_cb, "hi").await;
    let (a1, mut a1_events) = device(app, &a).await;
    let (b1, mut b1_events) = device(app, &b).await;
    let (c1, mut c1_events) = device(app, &c).await;

    // Rejected by the callee.
    let call = invite(&a1, &conv).await;
    b1_events.expect("call:incoming", WAIT).await.unwrap();
    assert_eq!(
        ack(&b1, "call:reject", json!({"callId": call})).await["ok"],
        true
    );
    for events in [&mut a1_events, &mut b1_events] {
        let ended = events.expect("call:ended", WAIT).await.unwrap();
        assert_eq!(
            ended,
            json!({"callId": call, "reason": "rejected", "durationMs": 0})
        );
    }
    // An accept after the end finds nothing to answer.
    let late = ack(&b1, "call:accept", json!({"callId": call, "sdp": ANSWER})).await;
    assert_eq!(late["error"]["code"], "not_found", "{late}");

    // Busy: while A rings B, C's call to B ends at once; B never hears it ring.
    let first = invite(&a1, &conv).await;
    b1_events.expect("call:incoming", WAIT).await.unwrap();
    let busy = invite(&c1, &conv_cb).await;
    let ended = c1_events.expect("call:ended", WAIT).await.unwrap();
    assert_eq!(
        ended,
        json!({"callId": busy, "reason": "busy", "durationMs": 0})
    );
    let heard = settle(&mut b1_events).await;
    assert!(named(&heard, "call:incoming").is_empty(), "{heard:?}");
    assert!(named(&heard, "call:ended").is_empty(), "{heard:?}");

    // The caller hangs up while it rings: missed, for both.
    assert_eq!(
        ack(&a1, "call:end", json!({"callId": first})).await["ok"],
        true
    );
    for events in [&mut a1_events, &mut b1_events] {
        let ended = events.expect("call:ended", WAIT).await.unwrap();
        assert_eq!(
            ended,
            json!({"callId": first, "reason": "missed", "durationMs": 0})
        );
    }
    // Ending it again answers like the end that won, and sends nothing more.
    assert_eq!(
        ack(&a1, "call:end", json!({"callId": first})).await["ok"],
        true
    );
    assert!(named(&settle(&mut b1_events).await, "call:ended").is_empty());

    let outcomes = |log: &Value| -> Vec<String> {
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["outcome"].as_str().unwrap().to_owned())
            .collect()
    };
    let b_log = app.get("/api/v1/calls", &b.token).await.assert_ok().body;
    // Newest first, by when they started: the busy call came while the missed one rang.
    assert_eq!(outcomes(&b_log), ["busy", "missed", "rejected"]);
    let page = app
        .get("/api/v1/calls?limit=2", &b.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(outcomes(&page), ["busy", "missed"]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let rest = app
        .get(&format!("/api/v1/calls?limit=2&cursor={cursor}"), &b.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(outcomes(&rest), ["rejected"]);
    assert!(rest["nextCursor"].is_null());
    let in_chat: Vec<Value> = call_messages(app, &b, &conv)
        .await
        .iter()
        .map(|m| m["call"]["outcome"].clone())
        .collect();
    assert_eq!(in_chat, [json!("rejected"), json!("missed")]);
    assert_eq!(
        call_messages(app, &c, &conv_cb).await[0]["call"]["outcome"],
        "busy"
    );
}

dual_test!(two_accepts_at_once_one_call);
async fn two_accepts_at_once_one_call(app: &TestApp) {
    let (a, b, conv) = friends(app, "io", "ju").await;
    let b_tablet = app.login("ju@example.com", "tablet").await;
    let (a1, mut a1_events) = device(app, &a).await;
    let (b1, mut b1_events) = device(app, &b).await;
    let (b2, mut b2_events) = device(app, &b_tablet).await;
    let call = invite(&a1, &conv).await;
    b1_events.expect("call:incoming", WAIT).await.unwrap();
    b2_events.expect("call:incoming", WAIT).await.unwrap();
    let body = json!({"callId": call, "sdp": ANSWER});
    let (r1, r2) = tokio::join!(
        ack(&b1, "call:accept", body.clone()),
        ack(&b2, "call:accept", body)
    );
    let oks = [&r1, &r2].iter().filter(|r| r["ok"] == true).count();
    assert_eq!(oks, 1, "exactly one accept wins: {r1} {r2}");
    let loser = if r1["ok"] == true {
        &mut b2_events
    } else {
        &mut b1_events
    };
    assert_eq!(
        loser.expect("call:ended", WAIT).await.unwrap()["reason"],
        "answered_elsewhere"
    );
    a1_events.expect("call:accepted", WAIT).await.unwrap();
    assert!(
        named(&settle(&mut a1_events).await, "call:accepted").is_empty(),
        "one answer"
    );
}

dual_test!(a_caller_device_that_goes_away_fails_the_call);
async fn a_caller_device_that_goes_away_fails_the_call(app: &TestApp) {
    let (a, b, conv) = friends(app, "ka", "lu").await;
    let (a1, _a1_events) = device(app, &a).await;
    let (_b1, mut b1_events) = device(app, &b).await;
    let call = invite(&a1, &conv).await;
    b1_events.expect("call:incoming", WAIT).await.unwrap();
    a1.close().await;
    let ended = b1_events.expect("call:ended", WAIT).await.unwrap();
    assert_eq!(
        ended,
        json!({"callId": call, "reason": "failed", "durationMs": 0})
    );
    let log = app.get("/api/v1/calls", &b.token).await.assert_ok().body;
    assert_eq!(log["items"][0]["outcome"], "failed");
    // The line is free again: a new call rings.
    let (a2, _a2_events) = device(app, &a).await;
    invite(&a2, &conv).await;
    b1_events.expect("call:incoming", WAIT).await.unwrap();
}

dual_test!(an_unanswered_call_rings_out_as_missed, |s| s
    .call_ring_timeout =
    Some(5));
async fn an_unanswered_call_rings_out_as_missed(app: &TestApp) {
    let (a, b, conv) = friends(app, "ma", "ni").await;
    let (a1, mut a1_events) = device(app, &a).await;
    let (_b1, mut b1_events) = device(app, &b).await;
    let call = invite(&a1, &conv).await;
    for events in [&mut a1_events, &mut b1_events] {
        let ended = events
            .expect("call:ended", Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(
            ended,
            json!({"callId": call, "reason": "missed", "durationMs": 0})
        );
    }
    let messages = call_messages(app, &b, &conv).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["call"]["outcome"], "missed");
}

dual_test!(
    a_restart_mid_ring_still_ends_the_call_as_missed_once,
    custom
);
async fn a_restart_mid_ring_still_ends_the_call_as_missed_once(backend: crate::helpers::Backend) {
    let Some(app) = crate::helpers::spawn(backend, |s| s.call_ring_timeout = Some(5)).await else {
        return;
    };
    let (a, b, conv) = friends(&app, "ol", "pi").await;
    let (a1, _a1_events) = device(&app, &a).await;
    let call = invite(&a1, &conv).await;
    let app = app.restart(|_| {}).await;
    let log = crate::helpers::eventually(Duration::from_secs(20), || {
        let (app, b) = (&app, &b);
        async move {
            let log = app.get("/api/v1/calls", &b.token).await.assert_ok().body;
            match log["items"].as_array().map(Vec::len) {
                Some(1) => Ok(log),
                _ => Err(format!("not ended yet: {log}")),
            }
        }
    })
    .await;
    assert_eq!(log["items"][0]["id"], call);
    assert_eq!(log["items"][0]["outcome"], "missed");
    app.run_pending_jobs().await;
    let messages = call_messages(&app, &b, &conv).await;
    assert_eq!(messages.len(), 1, "once: {messages:?}");
    app.stop().await;
}
