//! Cluster mode: real `palaver` processes on loopback sharing one PostgreSQL database and one
//! Redis (realtime.md "Cluster mode", quality.md's cluster reliability requirement). Every
//! event kind from a sender on one node reaches a receiver on another; presence and rate
//! limits count across nodes; `kill -9` of a node under load loses nothing acknowledged.
//!
//! Runs when `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set; prints a skip line otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver::client::{self, Client, Events};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::{eventually, User};
use crate::logs::{start, Running};

const WAIT: Duration = Duration::from_secs(10);

/// One PostgreSQL database, one Redis key prefix and shared keys for the nodes of a test.
struct Cluster {
    admin_url: String,
    db_name: String,
    redis_url: String,
    prefix: String,
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    async fn new(test: &str, extra: &[(&'static str, &str)]) -> Option<Cluster> {
        let (Ok(admin_url), Ok(redis_url)) = (
            std::env::var("TEST_DATABASE_URL"),
            std::env::var("TEST_REDIS_URL"),
        ) else {
            eprintln!(
                "skipped cluster::{test}: TEST_DATABASE_URL and TEST_REDIS_URL must both be set"
            );
            return None;
        };
        let db_name = format!("palaver_cluster_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE \"{db_name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&db_name);
        let dir = tempfile::tempdir().unwrap();
        let [jwt, secret] = palaver::auth::keys::generate_files(&dir.path().join("keys")).unwrap();
        let prefix = format!("test-{}:", uuid::Uuid::now_v7().simple());
        let mut env = vec![
            ("DATABASE_URL", url.to_string()),
            ("REDIS_URL", redis_url.clone()),
            ("PALAVER_REDIS_PREFIX", prefix.clone()),
            ("PALAVER_JWT_PRIVATE_KEY_FILE", jwt.display().to_string()),
            ("PALAVER_SECRET_KEY_FILE", secret.display().to_string()),
            ("PALAVER_LOG", "info,palaver=debug".to_owned()),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        Some(Cluster {
            admin_url,
            db_name,
            redis_url,
            prefix,
            dir,
            env,
        })
    }

    /// Starts a node with a data dir of its own.
    async fn node(&self, name: &str) -> Running {
        let data = self.dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        start(&self.env, &data).await
    }

    /// Makes `user` an owner of the default workspace (the first account owns nothing) and
    /// returns a connection to the cluster's database.
    async fn owner_of_default(&self, user: &User) -> sqlx::PgConnection {
        let url = &self
            .env
            .iter()
            .find(|(k, _)| *k == "DATABASE_URL")
            .unwrap()
            .1;
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("UPDATE memberships SET role = 'owner' WHERE user_id = $1")
            .bind(&user.id)
            .execute(&mut db)
            .await
            .unwrap();
        db
    }

    /// A key of this cluster's Redis (for looking at presence).
    async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    async fn remove(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.db_name
        ))
        .execute(&mut admin)
        .await;
        let mut r = self.redis().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query_async(&mut r)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut r)
                .await
                .unwrap();
        }
    }
}

async fn call(
    method: Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let (status, v) = call(Method::POST, base, path, token, Some(body)).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

async fn signup(base: &str, name: &str) -> User {
    let v = post(
        base,
        "/api/v1/auth/signup",
        None,
        json!({"email": format!("{name}@example.com"), "password": "correct horse battery", "displayName": name}),
    )
    .await;
    User::from(&v)
}

/// A direct conversation both sides accepted (each said something), opened on `base`.
async fn accepted_direct(base: &str, other_base: &str, a: &User, b: &User) -> String {
    let conv = post(
        base,
        "/api/v1/conversations/direct",
        Some(&a.token),
        json!({"userId": b.id}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (node, user) in [(base, a), (other_base, b)] {
        post(
            node,
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&user.token),
            json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": "hi"}),
        )
        .await;
    }
    conv
}

async fn socket(base: &str, user: &User) -> (Client, Events) {
    client::connect(base, &json!({"token": user.token}))
        .await
        .expect("socket connects")
}

/// The next `presence` event about `user`.
async fn presence_of(events: &mut Events, user: &User, wait: Duration) -> Value {
    loop {
        let e = events
            .expect("presence", wait)
            .await
            .expect("a presence event");
        if e["userId"] == user.id.as_str() {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_crosses_nodes() {
    let Some(cluster) = Cluster::new("every_event_kind_crosses_nodes", &[]).await else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    for base in [&a, &b] {
        let (status, ready) = call(Method::GET, base, "/readyz", None, None).await;
        assert_eq!(status, StatusCode::OK, "{ready}");
        assert_eq!(ready["redis"], "ok");
    }

    let alice = signup(&a, "alice").await;
    let bob = signup(&b, "bob").await;
    let carol = signup(&a, "carol").await;
    let conv = accepted_direct(&a, &b, &alice, &bob).await;

    // Presence: Bob on node B sees Alice come online on node A.
    let (_bob_sock, mut bob_events) = socket(&b, &bob).await;
    let (alice_sock, mut alice_events) = socket(&a, &alice).await;
    let online = presence_of(&mut bob_events, &alice, WAIT).await;
    assert_eq!(online["online"], true);

    // message:new, from A to B.
    let ack = alice_sock
        .call(
            "message:send",
            &json!({"conversationId": conv, "clientMsgId": "x1", "type": "text", "text": "across"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    let id = ack["message"]["id"].as_str().unwrap().to_owned();
    let seq = ack["message"]["seq"].as_i64().unwrap();
    // (The greetings may come first: they were committed just before Bob connected.)
    let new = loop {
        let e = bob_events.expect("message:new", WAIT).await.unwrap();
        if e["message"]["clientMsgId"] == "x1" {
            break e;
        }
    };
    assert_eq!(new["message"]["id"], id.as_str());
    assert_eq!(new["message"]["text"], "across");
    assert!(new["cursor"].is_string());

    // message:status, from B to A: delivered, then read.
    let bob_sock = _bob_sock;
    for (event, status) in [("message:delivered", "delivered"), ("message:read", "read")] {
        let ack = bob_sock
            .call(event, &json!({"conversationId": conv, "seq": seq}), WAIT)
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        // (Bob's reply moved his read mark to seq 2 just before Alice connected; that
        // status may come first.)
        let s = loop {
            let e = alice_events.expect("message:status", WAIT).await.unwrap();
            if e["upToSeq"] == seq && e["status"] == status {
                break e;
            }
        };
        assert_eq!(s["userId"], bob.id.as_str());
        assert_eq!(s["upToSeq"], seq);
    }

    // message:updated: an edit on A, a reaction on B.
    let ack = alice_sock
        .call(
            "message:edit",
            &json!({"messageId": id, "text": "across, edited"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    let edited = bob_events.expect("message:updated", WAIT).await.unwrap();
    assert_eq!(edited["message"]["text"], "across, edited");
    let ack = bob_sock
        .call(
            "message:react",
            &json!({"messageId": id, "emoji": "👍"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    // (Alice hears of her own edit first.)
    let reacted = loop {
        let e = alice_events.expect("message:updated", WAIT).await.unwrap();
        if e["message"]["reactions"] != json!([]) {
            break e;
        }
    };
    assert_eq!(reacted["message"]["id"], id.as_str());
    assert!(
        reacted["message"]["reactions"].to_string().contains("👍"),
        "{reacted}"
    );

    // typing, from A to B.
    alice_sock
        .emit("typing:start", &json!({"conversationId": conv}))
        .await
        .unwrap();
    let t = bob_events.expect("typing", WAIT).await.unwrap();
    assert_eq!(
        t,
        json!({"conversationId": conv, "userId": alice.id, "typing": true})
    );

    // conversation:updated: a group made and renamed on A reaches Carol on B.
    let (_carol_sock, mut carol_events) = socket(&b, &carol).await;
    let group = post(
        &a,
        "/api/v1/conversations/groups",
        Some(&alice.token),
        json!({"title": "Nodes", "memberIds": [carol.id]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let created = carol_events
        .expect("conversation:updated", WAIT)
        .await
        .unwrap();
    assert_eq!(created["conversation"]["id"], group.as_str());
    let (status, _) = call(
        Method::PATCH,
        &a,
        &format!("/api/v1/conversations/{group}"),
        Some(&alice.token),
        Some(json!({"title": "Two nodes"})),
    )
    .await;
    assert!(status.is_success());
    loop {
        let e = carol_events
            .expect("conversation:updated", WAIT)
            .await
            .unwrap();
        if e["conversation"]["title"] == "Two nodes" {
            break;
        }
    }

    // Presence counts devices on every node: Alice's second device on B keeps her online when
    // the one on A goes; only when both are gone does Bob see her offline.
    let (alice_on_b, _alice_on_b_events) = socket(&b, &alice).await;
    let mut r = cluster.redis().await;
    let presence_key = format!("{}presence:{}", cluster.prefix, alice.id);
    let nodes_of_alice = |r: &mut redis::aio::MultiplexedConnection| {
        let key = presence_key.clone();
        let mut r = r.clone();
        async move {
            redis::cmd("HLEN")
                .arg(key)
                .query_async::<i64>(&mut r)
                .await
                .unwrap()
        }
    };
    wait_until(|| nodes_of_alice(&mut r), 2).await;
    alice_sock.close().await;
    wait_until(|| nodes_of_alice(&mut r), 1).await;
    // Something Alice does after that reaches Bob with no presence event before it.
    alice_on_b
        .emit("typing:stop", &json!({"conversationId": conv}))
        .await
        .unwrap();
    loop {
        let e = bob_events.next().await.expect("events");
        assert!(
            !(e.name == "presence" && e.data["userId"] == alice.id.as_str()),
            "Alice went offline while a device of hers was still on node B: {:?}",
            e.data
        );
        if e.name == "typing" && e.data["typing"] == false {
            break;
        }
    }
    alice_on_b.close().await;
    // (Presence is a state: a late repeat of "online" from a connect snapshot is skipped.)
    let offline = loop {
        let e = presence_of(&mut bob_events, &alice, WAIT).await;
        if e["online"] != true {
            break e;
        }
    };
    assert_eq!(offline["online"], false);
    assert!(offline["lastSeenAt"].is_string());

    // A session revoked on B closes its socket on A.
    let bob2 = User::from(
        &post(
            &b,
            "/api/v1/auth/login",
            None,
            json!({"email": "bob@example.com", "password": "correct horse battery"}),
        )
        .await,
    );
    let (_bob2_sock, mut bob2_events) = socket(&a, &bob2).await;
    let (status, _) = call(
        Method::POST,
        &b,
        "/api/v1/auth/logout",
        Some(&bob2.token),
        None,
    )
    .await;
    assert!(status.is_success());
    let ended =
        tokio::time::timeout(WAIT, async { while bob2_events.next().await.is_some() {} }).await;
    assert!(
        ended.is_ok(),
        "the revoked session's socket on the other node ends"
    );

    drop((a_node, b_node));
    cluster.remove().await;
}

/// Polls a value in Redis until it equals `want` (the state is observed, not timed).
async fn wait_until<F, Fut>(mut read: F, want: i64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    eventually(WAIT, || {
        let read = read();
        async move {
            match read.await {
                n if n == want => Ok(()),
                n => Err(format!("never reached {want} (at {n})")),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_count_across_nodes() {
    let Some(cluster) = Cluster::new("rate_limits_count_across_nodes", &[]).await else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    // 30 sign-in attempts per minute per client IP, wherever they land.
    for i in 0..30 {
        let base = if i % 2 == 0 {
            &a_node.base
        } else {
            &b_node.base
        };
        let (status, body) = call(
            Method::POST,
            base,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": format!("nobody{i}@example.com"), "password": "wrong password!"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    for base in [&a_node.base, &b_node.base] {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "nobody@example.com", "password": "wrong password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    drop((a_node, b_node));
    cluster.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_nothing_acked() {
    let Some(cluster) = Cluster::new(
        "a_killed_node_loses_nothing_acked",
        &[
            ("PALAVER_RATE_LIMITS", "off"),
            ("PALAVER_NODE_TIMEOUT", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let mut a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let sender = signup(&a, "sender").await;
    let receiver = signup(&b, "receiver").await;
    let watcher = signup(&a, "watcher").await;
    let conv = accepted_direct(&a, &b, &sender, &receiver).await;
    accepted_direct(&a, &b, &watcher, &receiver).await;

    // The receiver on B; the sender and a watcher on A.
    let (receiver_sock, mut receiver_events) = socket(&b, &receiver).await;
    let (_watcher_sock, _watcher_events) = socket(&a, &watcher).await;
    assert_eq!(
        presence_of(&mut receiver_events, &watcher, WAIT).await["online"],
        true
    );
    let (sender_sock, _sender_events) = socket(&a, &sender).await;

    // Where the receiver's change stream stands before the load.
    let start_ack = receiver_sock
        .call("sync:request", &json!({}), WAIT)
        .await
        .unwrap();
    let start_cursor = start_ack["cursor"].as_str().unwrap().to_owned();

    // The receiver notes every seq pushed live.
    let live: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (presence_tx, mut presence_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn({
        let (live, conv) = (live.clone(), conv.clone());
        async move {
            while let Some(e) = receiver_events.next().await {
                match e.name.as_str() {
                    "message:new" if e.data["message"]["conversationId"] == conv.as_str() => {
                        live.lock()
                            .unwrap()
                            .push(e.data["message"]["seq"].as_i64().unwrap());
                    }
                    "presence" => {
                        let _ = presence_tx.send(e.data);
                    }
                    _ => {}
                }
            }
        }
    });

    // The sender keeps 8 sends in flight until its node dies.
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<String>>> = Arc::default();
    let sending = tokio::spawn({
        let (acked, attempted, conv, sock) = (
            acked.clone(),
            attempted.clone(),
            conv.clone(),
            sender_sock.clone(),
        );
        async move {
            let mut window = tokio::task::JoinSet::new();
            for i in 0.. {
                let id = format!("m{i}");
                attempted.lock().unwrap().push(id.clone());
                let body =
                    json!({"conversationId": conv, "clientMsgId": id, "type": "text", "text": id});
                let Ok(ack) = sock.call_later("message:send", &body).await else {
                    break;
                };
                let acked = acked.clone();
                window.spawn(async move {
                    if let Ok(Ok(ack)) = tokio::time::timeout(WAIT, ack).await {
                        if ack["ok"] == true {
                            acked
                                .lock()
                                .unwrap()
                                .insert(id, ack["message"]["seq"].as_i64().unwrap());
                        }
                    }
                });
                if window.len() >= 8 && window.join_next().await.is_none() {
                    break;
                }
            }
        }
    });
    eventually(Duration::from_secs(30), || async {
        match acked.lock().unwrap().len() {
            n if n >= 200 => Ok(()),
            n => Err(format!("sends were not acknowledged ({n} of 200)")),
        }
    })
    .await;
    a_node.child.start_kill().unwrap();
    a_node.child.wait().await.unwrap();
    sending.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();

    // The watcher, whose only device was on the dead node, goes offline for the receiver once
    // its heartbeat lapses (3 s here). (The receiver's connect brought a snapshot saying the
    // watcher was online: skip it.)
    let gone = loop {
        let e = tokio::time::timeout(Duration::from_secs(20), presence_rx.recv())
            .await
            .expect("the dead node's users go offline")
            .unwrap();
        if e["userId"] == watcher.id.as_str() && e["online"] == false {
            break e;
        }
    };
    assert_eq!(gone["online"], false);

    // The sender reconnects to B and retries what was not acknowledged, with the same ids.
    let (retry_sock, _retry_events) = socket(&b, &sender).await;
    let mut retried = 0;
    for id in attempted.iter().filter(|id| !acked.contains_key(*id)) {
        let body = json!({"conversationId": conv, "clientMsgId": id, "type": "text", "text": id});
        let ack = retry_sock.call("message:send", &body, WAIT).await.unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        if let Some(seq) = acked.get(id) {
            assert_eq!(ack["message"]["seq"], *seq);
        }
        retried += 1;
    }

    // Every acked message once, where its ack said; every attempt once; no gap.
    let mut history = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = call(
            Method::GET,
            &b,
            &format!("/api/v1/conversations/{conv}/messages?after={after}&limit=100"),
            Some(&receiver.token),
            None,
        )
        .await;
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        after = items.last().unwrap()["seq"].as_i64().unwrap();
        history.extend(items);
    }
    let by_client: HashMap<&str, i64> = history
        .iter()
        .map(|m| {
            (
                m["clientMsgId"].as_str().unwrap(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_client.len(), history.len(), "no clientMsgId twice");
    for (id, seq) in &acked {
        assert_eq!(
            by_client.get(id.as_str()),
            Some(seq),
            "acked {id} kept its seq"
        );
    }
    // The conversation started with the two greetings.
    let expected = attempted.len() + 2;
    eprintln!(
        "{} acked before the kill, {retried} retried after it",
        acked.len()
    );
    assert_eq!(history.len(), expected, "every attempt once");
    let seqs: Vec<i64> = history.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=expected as i64).collect::<Vec<_>>(), "no gaps");

    // The receiver got each message live at most once (pushes are best effort), and sync from
    // where it stood before the load answers every message once.
    let last_seq = expected as i64;
    eventually(WAIT, || async {
        live.lock()
            .unwrap()
            .contains(&last_seq)
            .then_some(())
            .ok_or_else(|| "the retried messages are pushed too".to_owned())
    })
    .await;
    let live_seqs = live.lock().unwrap().clone();
    let unique: HashSet<i64> = live_seqs.iter().copied().collect();
    assert_eq!(unique.len(), live_seqs.len(), "no live duplicates");
    let mut synced = Vec::new();
    let mut cursor = start_cursor;
    loop {
        let ack = receiver_sock
            .call("sync:request", &json!({"cursor": cursor}), WAIT)
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        for e in ack["events"].as_array().unwrap() {
            if e["type"] == "message:new" && e["data"]["message"]["conversationId"] == conv.as_str()
            {
                synced.push(e["data"]["message"]["seq"].as_i64().unwrap());
            }
        }
        cursor = ack["cursor"].as_str().unwrap().to_owned();
        if ack["hasMore"] != true {
            break;
        }
    }
    // The starting cursor is conservative on PostgreSQL: with other transactions in flight it
    // may precede the two greetings, so sync may answer them too.
    let first = synced.first().copied().unwrap_or(0);
    assert!((1..=3).contains(&first), "{synced:?}");
    assert_eq!(
        synced,
        (first..=last_seq).collect::<Vec<_>>(),
        "sync: every message once, in order"
    );

    reader.abort();
    drop(b_node);
    cluster.remove().await;
}

/// A Redis of the test's own, so that it can be stopped and started again.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let mut redis = OwnRedis { port, child: None };
        redis.restart().await;
        redis
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        let port = self.port;
        eventually(WAIT, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|e| format!("redis-server starts: {e}"))
        })
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

async fn readyz(base: &str) -> (StatusCode, Value) {
    call(Method::GET, base, "/readyz", None, None).await
}

/// Waits until `/readyz` answers `status` (the node's own view, observed).
async fn until_ready_is(base: &str, status: StatusCode) -> Value {
    eventually(Duration::from_secs(20), || async {
        match readyz(base).await {
            (s, body) if s == status => Ok(body),
            (s, body) => Err(format!("/readyz stayed {s}: {body}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_degrades_and_recovers() {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "skipped cluster::losing_redis_degrades_and_recovers: redis-server is not installed"
        );
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = OwnRedis::start(port).await;
    let Some(mut cluster) = Cluster::new("losing_redis_degrades_and_recovers", &[]).await else {
        return;
    };
    cluster.redis_url = format!("redis://127.0.0.1:{port}");
    for (k, v) in cluster.env.iter_mut() {
        if *k == "REDIS_URL" {
            *v = cluster.redis_url.clone();
        }
    }
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let alice = signup(&a, "alice").await;
    let bob = signup(&b, "bob").await;
    let conv = accepted_direct(&a, &b, &alice, &bob).await;
    let (alice_sock, _alice_events) = socket(&a, &alice).await;
    let (_bob_sock, mut bob_events) = socket(&b, &bob).await;

    redis.stop().await;
    let body = until_ready_is(&a, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["redis"], "unreachable", "{body}");
    assert_eq!(body["database"], "ok");

    // Without Redis: requests still work (limits count per node) and messages still cross
    // nodes, through the shared change log.
    let ack = alice_sock
        .call(
            "message:send",
            &json!({"conversationId": conv, "clientMsgId": "r1", "type": "text", "text": "no redis"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    // (The greetings may come first: they were committed just before Bob connected.)
    loop {
        let new = bob_events.expect("message:new", WAIT).await.unwrap();
        if new["message"]["text"] == "no redis" {
            break;
        }
    }
    let (status, _) = call(
        Method::GET,
        &b,
        "/api/v1/conversations",
        Some(&bob.token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Redis comes back (empty): both nodes find it again by themselves, and typing (which
    // only Redis carries between nodes) crosses again.
    redis.restart().await;
    for base in [&a, &b] {
        let body = until_ready_is(base, StatusCode::OK).await;
        assert_eq!(body["redis"], "ok");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        alice_sock
            .emit("typing:start", &json!({"conversationId": conv}))
            .await
            .unwrap();
        if let Ok(t) = bob_events
            .expect("typing", Duration::from_millis(500))
            .await
        {
            assert_eq!(t["userId"], alice.id.as_str());
            break;
        }
        alice_sock
            .emit("typing:stop", &json!({"conversationId": conv}))
            .await
            .unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "typing never crossed nodes again"
        );
    }
    // And the nodes registered their devices again: both users count as online in Redis.
    let r = cluster.redis().await;
    for user in [&alice, &bob] {
        let key = format!("{}presence:{}", cluster.prefix, user.id);
        eventually(Duration::from_secs(20), || {
            let mut r = r.clone();
            let key = key.clone();
            async move {
                match redis::cmd("HLEN")
                    .arg(&key)
                    .query_async::<i64>(&mut r)
                    .await
                {
                    Ok(1) => Ok(()),
                    other => Err(format!("{key} never came back ({other:?})")),
                }
            }
        })
        .await;
    }

    drop((a_node, b_node));
    cluster.remove().await;
    redis.stop().await;
}

#[derive(clap::Parser)]
struct BenchCli {
    #[command(flatten)]
    bench: palaver::bench::BenchArgs,
}

/// P7's scenario, briefly (not timed): senders on one node, receivers on the other; every
/// message acked is delivered, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_node_bench_scenario_runs_clean() {
    use clap::Parser;
    let Some(cluster) = Cluster::new(
        "the_cross_node_bench_scenario_runs_clean",
        &[("PALAVER_RATE_LIMITS", "off")],
    )
    .await
    else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let argv = [
        "bench",
        "--url",
        &a_node.base,
        "chat",
        "--users",
        "6",
        "--window",
        "4",
        "--duration",
        "1",
        "--receivers-url",
        &b_node.base,
    ];
    let cli = BenchCli::try_parse_from(argv).expect("bench arguments");
    let report = palaver::bench::measure(&cli.bench)
        .await
        .expect("scenario runs");
    for key in ["errors", "gaps", "duplicates_or_out_of_order"] {
        assert_eq!(
            report.counts.get(key).copied().unwrap_or(0),
            0,
            "{key} in\n{report}"
        );
    }
    assert!(report.counts["delivered"] > 0, "{report}");
    assert_eq!(
        report.counts["delivered"], report.counts["acked"],
        "{report}"
    );
    drop((a_node, b_node));
    cluster.remove().await;
}

/// A graceful stop takes the node out of Redis at once: a user with a device on another node
/// stays online, one with no other device is offline, and the node is no longer listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_deregisters_itself() {
    let Some(cluster) = Cluster::new("a_stopping_node_deregisters_itself", &[]).await else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let (_, ready) = readyz(&a).await;
    let a_id = ready["node"].as_str().unwrap().to_owned();
    let alice = signup(&a, "alice").await;
    let bob = signup(&a, "bob").await;
    let _alice_on_a = socket(&a, &alice).await;
    let _alice_on_b = socket(&b, &alice).await;
    let _bob_on_a = socket(&a, &bob).await;
    let mut r = cluster.redis().await;
    let presence = |u: &User| format!("{}presence:{}", cluster.prefix, u.id);
    let (alice_key, bob_key) = (presence(&alice), presence(&bob));
    let hlen = |key: String| {
        let mut r = r.clone();
        async move {
            redis::cmd("HLEN")
                .arg(key)
                .query_async::<i64>(&mut r)
                .await
                .unwrap()
        }
    };
    wait_until(|| hlen(alice_key.clone()), 2).await;
    wait_until(|| hlen(bob_key.clone()), 1).await;

    let (status, _) = a_node.terminate().await;
    assert!(status.success());
    assert_eq!(hlen(alice_key).await, 1, "Alice is still on node B");
    assert_eq!(hlen(bob_key).await, 0, "Bob had no other device");
    let nodes: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("{}nodes", cluster.prefix))
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(!nodes.contains(&a_id), "{nodes:?}");
    drop(b_node);
    cluster.remove().await;
}

/// A call between devices on two nodes: the ring, the answer, the other device's stop and the
/// candidates cross nodes; `kill -9` of the node of the answering device ends the call as
/// failed for the caller once the node is reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_crosses_nodes_and_ends_with_a_dead_node() {
    let Some(cluster) = Cluster::new(
        "a_call_crosses_nodes_and_ends_with_a_dead_node",
        &[("PALAVER_NODE_TIMEOUT", "3")],
    )
    .await
    else {
        return;
    };
    let a_node = cluster.node("a").await;
    let mut b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let alice = signup(&a, "alice").await;
    let bob = signup(&b, "bob").await;
    let conv = accepted_direct(&a, &b, &alice, &bob).await;
    let bob_laptop = User::from(
        &post(
            &a,
            "/api/v1/auth/login",
            None,
            json!({"email": "bob@example.com", "password": "correct horse battery", "deviceId": "laptop"}),
        )
        .await,
    );
    let (alice_sock, mut alice_events) = socket(&a, &alice).await;
    let (bob_phone, mut phone_events) = socket(&b, &bob).await;
    let (_bob_laptop, mut laptop_events) = socket(&a, &bob_laptop).await;

    let invite = json!({"conversationId": conv, "media": "audio", "sdp": "v=0 offer"});
    let r = alice_sock.call("call:invite", &invite, WAIT).await.unwrap();
    let call = r["callId"].as_str().expect("a call id").to_owned();
    for events in [&mut phone_events, &mut laptop_events] {
        let ring = events.expect("call:incoming", WAIT).await.unwrap();
        assert_eq!(ring["callId"], call.as_str());
        assert_eq!(ring["sdp"], "v=0 offer");
    }
    // Bob answers on his phone, on node B.
    let answer = json!({"callId": call, "sdp": "v=0 answer"});
    let r = bob_phone.call("call:accept", &answer, WAIT).await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    let accepted = alice_events.expect("call:accepted", WAIT).await.unwrap();
    assert_eq!(accepted["sdp"], "v=0 answer");
    let stop = laptop_events.expect("call:ended", WAIT).await.unwrap();
    assert_eq!(stop["reason"], "answered_elsewhere");
    let candidate = json!({"callId": call, "candidate": {"candidate": "from-alice"}});
    alice_sock.call("call:ice", &candidate, WAIT).await.unwrap();
    let ice = phone_events.expect("call:ice", WAIT).await.unwrap();
    assert_eq!(ice["candidate"]["candidate"], "from-alice");
    let candidate = json!({"callId": call, "candidate": {"candidate": "from-bob"}});
    bob_phone.call("call:ice", &candidate, WAIT).await.unwrap();
    let ice = alice_events.expect("call:ice", WAIT).await.unwrap();
    assert_eq!(ice["candidate"]["candidate"], "from-bob");

    // Node B dies with Bob's phone: once A reaps it (3 s), the call is over for Alice.
    b_node.child.start_kill().unwrap();
    b_node.child.wait().await.unwrap();
    let ended = alice_events
        .expect("call:ended", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ended["callId"], call.as_str());
    assert_eq!(ended["reason"], "failed");
    let (status, log) = call_log(&a, &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log["items"][0]["outcome"], "answered");
    assert_eq!(log["items"].as_array().unwrap().len(), 1);
    cluster.remove().await;
}

async fn call_log(base: &str, user: &User) -> (StatusCode, Value) {
    call(Method::GET, base, "/api/v1/calls", Some(&user.token), None).await
}

/// PATCH that must succeed.
async fn patch(base: &str, path: &str, token: &str, body: Value) -> Value {
    let (status, v) = call(Method::PATCH, base, path, Some(token), Some(body)).await;
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_assignment_keeps_capacities_across_nodes() {
    let Some(cluster) = Cluster::new("auto_assignment_keeps_capacities_across_nodes", &[]).await
    else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let owner = signup(&a, "owner").await;
    let db = cluster.owner_of_default(&owner).await;
    db.close().await.ok();
    let agents = [signup(&a, "agent-a").await, signup(&b, "agent-b").await];
    for agent in &agents {
        patch(
            &a,
            &format!("/api/v1/workspaces/default/members/{}", agent.id),
            &owner.token,
            json!({"role": "agent"}),
        )
        .await;
        patch(
            &b,
            &format!("/api/v1/inbox/agents/{}", agent.id),
            &owner.token,
            json!({"capacity": 3}),
        )
        .await;
    }
    patch(
        &a,
        &format!("/api/v1/inbox/agents/{}", owner.id),
        &owner.token,
        json!({"autoAssign": false}),
    )
    .await;
    patch(
        &a,
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"support": {"enabled": true}}}),
    )
    .await;
    // Each agent connected to a node of its own; ten patients write at once through both.
    let _sa = socket(&a, &agents[0]).await;
    let _sb = socket(&b, &agents[1]).await;
    let mut patients = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        patients.push((node.clone(), signup(node, &format!("patient-{i}")).await));
    }
    futures_util::future::join_all(patients.iter().map(|(node, p)| async move {
        post(
            node,
            "/api/v1/support",
            Some(&p.token),
            json!({"workspaceId": "default"}),
        )
        .await
    }))
    .await;
    // Six of them find an agent (three each), four wait unassigned.
    let counts = eventually(WAIT, || {
        let (b, token) = (b.clone(), owner.token.clone());
        async move {
            let (_, counts) =
                call(Method::GET, &b, "/api/v1/inbox/counts", Some(&token), None).await;
            let assigned_all = counts["open"] == 10 && counts["unassigned"].as_i64() <= Some(4);
            if assigned_all {
                Ok(counts)
            } else {
                Err(counts.to_string())
            }
        }
    })
    .await;
    assert_eq!(counts["open"], 10, "{counts}");
    assert_eq!(counts["unassigned"], 4, "{counts}");
    for agent in &agents {
        let (_, mine) = call(
            Method::GET,
            &a,
            "/api/v1/conversations?kind=support&assignee=me",
            Some(&agent.token),
            None,
        )
        .await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 3, "{mine}");
    }
    drop((a_node, b_node));
    cluster.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ai_idle_trigger_runs_once_across_nodes() {
    let Some(cluster) = Cluster::new(
        "the_ai_idle_trigger_runs_once_across_nodes",
        &[("PALAVER_AI_IDLE_SCAN", "1")],
    )
    .await
    else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let owner = signup(&a, "owner").await;
    let mut db = cluster.owner_of_default(&owner).await;
    patch(
        &b,
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"support": {"enabled": true}, "ai": {"enabled": true, "idleAfterSeconds": 1}}}),
    )
    .await;
    let (_socket, mut events) = socket(&b, &owner).await;
    // Five patients write through both nodes; each conversation goes quiet once.
    let mut conversations = HashSet::new();
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        let p = signup(node, &format!("patient-{i}")).await;
        let conv = post(
            node,
            "/api/v1/support",
            Some(&p.token),
            json!({"workspaceId": "default"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        post(
            node,
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&p.token),
            json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": "Is my refill ready?"}),
        )
        .await;
        conversations.insert(conv);
    }
    let mut analysed = HashSet::new();
    while analysed.len() < conversations.len() {
        let e = events.expect("insight:new", WAIT).await.unwrap();
        assert_eq!(e["insight"]["trigger"], "idle");
        assert!(
            analysed.insert(e["conversationId"].as_str().unwrap().to_owned()),
            "a second insight for {e}"
        );
    }
    assert_eq!(analysed, conversations);
    // The node holding the lease keeps scanning, the other keeps asking for it: nothing is
    // analysed twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (runs, insights): (i64, i64) =
        sqlx::query_as("SELECT (SELECT COUNT(*) FROM ai_runs), (SELECT COUNT(*) FROM ai_insights)")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((runs, insights), (5, 5));
    db.close().await.ok();
    drop((a_node, b_node));
    cluster.remove().await;
}

/// An automation's timed trigger, with both nodes scanning for it (one holds the lease, the
/// other keeps asking), and a message trigger whose events both nodes' job runners may take:
/// each fires once per conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automations_fire_once_across_nodes() {
    let Some(cluster) = Cluster::new(
        "automations_fire_once_across_nodes",
        &[("PALAVER_AUTOMATION_SCAN", "1")],
    )
    .await
    else {
        return;
    };
    let a_node = cluster.node("a").await;
    let b_node = cluster.node("b").await;
    let (a, b) = (a_node.base.clone(), b_node.base.clone());
    let owner = signup(&a, "owner").await;
    let mut db = cluster.owner_of_default(&owner).await;
    patch(
        &b,
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"support": {"enabled": true}}}),
    )
    .await;
    for (name, trigger) in [
        ("greet", json!({"type": "first_message"})),
        ("waiting", json!({"type": "no_agent_reply", "minutes": 1})),
    ] {
        post(
            &a,
            "/api/v1/automations",
            Some(&owner.token),
            json!({"name": name, "trigger": trigger, "actions": [{"type": "add_note", "text": name}]}),
        )
        .await;
    }
    let mut conversations = HashSet::new();
    for i in 0..6 {
        let node = if i % 2 == 0 { &a } else { &b };
        let p = signup(node, &format!("patient-{i}")).await;
        let conv = post(
            node,
            "/api/v1/support",
            Some(&p.token),
            json!({"workspaceId": "default"}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        post(
            node,
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&p.token),
            json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": "Is my refill ready?"}),
        )
        .await;
        conversations.insert(conv);
    }
    let count = |name: &'static str| {
        format!("SELECT COUNT(*) FROM notes WHERE kind = 'note' AND text = '{name}'")
    };
    // Each greeting first: a message moved back in time before its rule is would count as
    // written before the rule was enabled, and be ignored.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n: i64 = sqlx::query_scalar(&count("greet"))
            .fetch_one(&mut db)
            .await
            .unwrap();
        if n == 6 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} of 6 greetings");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A minute and more passes without an answer (the rules' time first, for the same reason).
    for sql in [
        "UPDATE automations SET enabled_at = enabled_at - 3600000",
        "UPDATE conversations SET last_inbound_at = last_inbound_at - 120000 WHERE last_inbound_at IS NOT NULL",
        "UPDATE messages SET created_at = created_at - 120000",
    ] {
        sqlx::query(sql).execute(&mut db).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n: i64 = sqlx::query_scalar(&count("waiting"))
            .fetch_one(&mut db)
            .await
            .unwrap();
        if n == 6 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} of 6 timed notes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both nodes keep going for three seconds: nothing fires twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let per_conversation: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT conversation_id, SUM(CASE WHEN text = 'greet' THEN 1 ELSE 0 END)::bigint, \
         SUM(CASE WHEN text = 'waiting' THEN 1 ELSE 0 END)::bigint FROM notes WHERE kind = 'note' \
         GROUP BY conversation_id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(per_conversation.len(), 6, "{per_conversation:?}");
    for (conv, greet, waiting) in &per_conversation {
        assert!(conversations.contains(conv));
        assert_eq!((*greet, *waiting), (1, 1), "{conv}");
    }
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM automation_runs")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(runs, 12);
    db.close().await.ok();
    drop((a_node, b_node));
    cluster.remove().await;
}
