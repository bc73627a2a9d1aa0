//! Push notifications against a stand-in push service that does what a real one does with a
//! notification: checks the VAPID token's ES256 signature against the key it names, and (as
//! the browser would) decrypts the aes128gcm payload with the subscription's private key and
//! auth secret. The decryption here is written from RFC 8291 apart from the server's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use web_push_native::p256;

use crate::dual_test;
use crate::helpers::{TestApp, User};

const WAIT: Duration = Duration::from_secs(15);
/// How long a test waits to be sure no more notifications come: longer than the follower's
/// look (1 s) and the collapse wait (2 s) together.
const QUIET: Duration = Duration::from_millis(3500);

/// A request the stand-in received.
#[derive(Debug)]
struct Received {
    path: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

/// The stand-in push service: records every POST and answers with `status`.
struct PushService {
    base: String,
    rx: mpsc::UnboundedReceiver<Received>,
    status: Arc<Mutex<u16>>,
}

impl PushService {
    async fn start() -> PushService {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = Arc::new(Mutex::new(201u16));
        let answer = status.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (tx, answer) = (tx.clone(), answer.clone());
                async move {
                    let _ = tx.send(Received {
                        path: uri.path().to_owned(),
                        headers,
                        body: body.to_vec(),
                    });
                    StatusCode::from_u16(*answer.lock().unwrap()).unwrap()
                }
            },
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        PushService { base, rx, status }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a push arrives")
            .unwrap()
    }

    async fn quiet(&mut self) -> Vec<Received> {
        tokio::time::sleep(QUIET).await;
        std::iter::from_fn(|| self.rx.try_recv().ok()).collect()
    }
}

/// A browser's side of a subscription: its P-256 key pair and auth secret.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        let rng = ring::rand::SystemRandom::new();
        let mut scalar = [0u8; 32];
        let mut auth = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut scalar).unwrap();
        ring::rand::SecureRandom::fill(&rng, &mut auth).unwrap();
        Browser {
            secret: p256::SecretKey::from_slice(&scalar).unwrap(),
            auth,
        }
    }

    fn p256dh(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.public_key().to_sec1_bytes())
    }

    fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "expirationTime": null,
               "keys": {"p256dh": self.p256dh(), "auth": URL_SAFE_NO_PAD.encode(self.auth)}})
    }

    /// RFC 8291 §3.4 and RFC 8188: one record, `salt ‖ rs ‖ idlen ‖ keyid ‖ ciphertext`.
    fn decrypt(&self, body: &[u8]) -> Value {
        struct Len(usize);
        impl ring::hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
            let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt).extract(ikm);
            let mut out = vec![0u8; len];
            prk.expand(&[info], Len(len))
                .unwrap()
                .fill(&mut out)
                .unwrap();
            out
        }
        let (salt, rest) = body.split_at(16);
        let idlen = rest[4] as usize;
        assert_eq!(idlen, 65, "the key id is the server's ephemeral public key");
        let (server_public, ciphertext) = rest[5..].split_at(idlen);
        let server_key = p256::PublicKey::from_sec1_bytes(server_public).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), server_key.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.secret.public_key().to_sec1_bytes());
        info.extend_from_slice(server_public);
        let ikm = hkdf(&self.auth, shared.raw_secret_bytes(), &info, 32);
        let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16);
        let nonce = hkdf(salt, &ikm, b"Content-Encoding: nonce\0", 12);
        let key = ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &cek).unwrap(),
        );
        let mut data = ciphertext.to_vec();
        let plain = key
            .open_in_place(
                ring::aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                ring::aead::Aad::empty(),
                &mut data,
            )
            .expect("the payload decrypts with the subscription's keys");
        let end = plain.iter().rposition(|b| *b != 0).unwrap();
        assert_eq!(plain[end], 2, "the last record's delimiter");
        serde_json::from_slice(&plain[..end]).unwrap()
    }
}

/// Checks the VAPID `Authorization` header: an ES256 token for the push service's origin,
/// signed by the key it names, which is the server's published key.
fn check_vapid(received: &Received, audience: &str, server_key: &str) {
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    let header = received.headers["authorization"].to_str().unwrap();
    let (token, k) = header
        .strip_prefix("vapid t=")
        .and_then(|r| r.split_once(", k="))
        .expect("vapid t=…, k=…");
    assert_eq!(k, server_key);
    let (input, signature) = token.rsplit_once('.').unwrap();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, URL_SAFE_NO_PAD.decode(k).unwrap())
        .verify(
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("the VAPID token's signature verifies");
    let claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], audience);
    assert!(claims["sub"].as_str().unwrap().starts_with("mailto:"));
    let exp = claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(exp > now && exp <= now + 24 * 3600, "{exp}");
}

async fn vapid_key(app: &TestApp, user: &User) -> String {
    let r = app
        .get("/api/v1/push/vapid-public-key", &user.token)
        .await
        .assert_ok();
    r.body["publicKey"].as_str().unwrap().to_owned()
}

/// Two users who have talked (no message request between them) and their chat.
async fn friends(app: &TestApp, a: &str, b: &str) -> (User, User, String) {
    let a = app.signup(&format!("{a}@example.com"), a).await;
    let b = app.signup(&format!("{b}@example.com"), b).await;
    let conv = app.direct(&a, &b).await;
    app.say(&a, &conv, "hi").await;
    app.say(&b, &conv, "hello").await;
    (a, b, conv)
}

dual_test!(subscriptions_are_per_device_and_idempotent_on_the_endpoint);
async fn subscriptions_are_per_device_and_idempotent_on_the_endpoint(app: &TestApp) {
    let u = app.signup("sub@example.com", "Sub").await;
    let other = app.signup("other@example.com", "Other").await;
    let key = URL_SAFE_NO_PAD.decode(vapid_key(app, &u).await).unwrap();
    assert!(p256::PublicKey::from_sec1_bytes(&key).is_ok() && key.len() == 65);
    let browser = Browser::new();
    let body = browser.subscription("https://push.example.com/send/one");
    let first = app
        .post("/api/v1/push/subscriptions", Some(&u.token), body.clone())
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["type"], "webpush");
    assert_eq!(first.body["sessionId"], u.session.as_str());
    let again = app
        .post("/api/v1/push/subscriptions", Some(&u.token), body)
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["id"], first.body["id"]);
    for (bad, field) in [
        (
            json!({"endpoint": "https://push.example.com/x", "keys": {"p256dh": "AAAA", "auth": URL_SAFE_NO_PAD.encode([1u8; 16])}}),
            "keys.p256dh",
        ),
        (
            json!({"endpoint": "https://push.example.com/x", "keys": {"p256dh": browser.p256dh(), "auth": "AAAA"}}),
            "keys.auth",
        ),
        (
            json!({"endpoint": "ftp://push.example.com/x", "keys": {"p256dh": browser.p256dh(), "auth": URL_SAFE_NO_PAD.encode([1u8; 16])}}),
            "endpoint",
        ),
        (json!({"type": "webhook"}), "url"),
        (json!({"type": "carrier-pigeon"}), "type"),
    ] {
        let r = app
            .post("/api/v1/push/subscriptions", Some(&u.token), bad)
            .await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], field, "{}", r.text);
    }
    let hook = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&u.token),
            json!({"type": "webhook", "url": "http://127.0.0.1:9/gateway", "token": "s3cret"}),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.text);
    assert!(!hook.text.contains("s3cret"), "the token is never shown");
    let list = app
        .get("/api/v1/push/subscriptions", &u.token)
        .await
        .assert_ok();
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    assert!(!list.text.contains("s3cret"));
    let id = first.body["id"].as_str().unwrap();
    let path = format!("/api/v1/push/subscriptions/{id}");
    app.delete(&path, &other.token)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(
        app.delete(&path, &u.token).await.status,
        StatusCode::NO_CONTENT
    );
    app.delete(&path, &u.token)
        .await
        .assert_problem(404, "not_found");
    let list = app
        .get("/api/v1/push/subscriptions", &u.token)
        .await
        .assert_ok();
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

dual_test!(an_offline_member_gets_one_decryptable_notification_for_a_burst);
async fn an_offline_member_gets_one_decryptable_notification_for_a_burst(app: &TestApp) {
    let mut service = PushService::start().await;
    let (a, b, conv) = friends(app, "ana", "ben").await;
    let server_key = vapid_key(app, &b).await;
    let browser = Browser::new();
    let endpoint = format!("{}/send/ben-phone", service.base);
    app.post(
        "/api/v1/push/subscriptions",
        Some(&b.token),
        browser.subscription(&endpoint),
    )
    .await
    .assert_ok();
    for i in 1..=5 {
        app.say(&a, &conv, &format!("burst {i}")).await;
    }
    let push = service.next().await;
    assert_eq!(push.path, "/send/ben-phone");
    assert_eq!(push.headers["content-encoding"], "aes128gcm");
    assert_eq!(push.headers["urgency"], "normal");
    assert!(
        push.headers["ttl"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let topic = push.headers["topic"].to_str().unwrap();
    assert!(topic.len() <= 32, "{topic}");
    check_vapid(&push, &service.base, &server_key);
    let note = browser.decrypt(&push.body);
    assert_eq!(note["type"], "message");
    assert_eq!(note["conversationId"], conv.as_str());
    assert_eq!(note["title"], "ana");
    assert_eq!(note["body"], "burst 5");
    // "hello" was Ben's own; Ana's "hi" came before it and counts as read by his reply.
    assert_eq!(note["unreadCount"], 5);
    let more = service.quiet().await;
    assert!(more.is_empty(), "one notification for the burst: {more:?}");

    // Later messages: a new notification with the same topic (the service replaces it).
    app.say(&a, &conv, "one more").await;
    let update = service.next().await;
    assert_eq!(update.headers["topic"].to_str().unwrap(), topic);
    assert_eq!(browser.decrypt(&update.body)["unreadCount"], 6);

    // Not while a device of his is connected, nor for a muted chat, nor for his own messages.
    let (socket, _events) = palaver::client::connect(&app.base, &json!({"token": b.token}))
        .await
        .unwrap();
    app.say(&a, &conv, "you are here").await;
    app.say(&b, &conv, "I am").await;
    assert!(
        service.quiet().await.is_empty(),
        "an online user is not pushed"
    );
    socket.close().await;
    app.patch(
        &format!("/api/v1/conversations/{conv}/settings"),
        &b.token,
        json!({"mutedUntil": "2999-01-01T00:00:00Z"}),
    )
    .await
    .assert_ok();
    app.say(&a, &conv, "muted").await;
    assert!(
        service.quiet().await.is_empty(),
        "a muted chat is not pushed"
    );
}

dual_test!(a_gone_subscription_is_removed_and_a_webhook_is_signed);
async fn a_gone_subscription_is_removed_and_a_webhook_is_signed(app: &TestApp) {
    use hmac::Mac;
    let mut service = PushService::start().await;
    let (a, b, conv) = friends(app, "cat", "dan").await;
    let browser = Browser::new();
    let endpoint = format!("{}/send/gone", service.base);
    app.post(
        "/api/v1/push/subscriptions",
        Some(&b.token),
        browser.subscription(&endpoint),
    )
    .await
    .assert_ok();
    app.post(
        "/api/v1/push/subscriptions",
        Some(&b.token),
        json!({"type": "webhook", "url": format!("{}/gateway", service.base), "token": "gate-token"}),
    )
    .await
    .assert_ok();
    *service.status.lock().unwrap() = 410;
    app.say(&a, &conv, "anyone?").await;
    let mut got = [service.next().await, service.next().await];
    got.sort_by(|x, y| x.path.cmp(&y.path));
    let (gateway, gone) = (&got[0], &got[1]);
    assert_eq!(gone.path, "/send/gone");
    assert_eq!(gateway.path, "/gateway");
    assert_eq!(gateway.headers["authorization"], "Bearer gate-token");
    let signature = gateway.headers["palaver-signature"].to_str().unwrap();
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|r| r.split_once(",v1="))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"gate-token").unwrap();
    mac.update(format!("{t}.{}", String::from_utf8_lossy(&gateway.body)).as_bytes());
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    let sent: Value = serde_json::from_slice(&gateway.body).unwrap();
    assert_eq!(sent["userId"], b.id.as_str());
    assert_eq!(sent["notification"]["body"], "anyone?");
    // Both answered 410: both subscriptions are gone.
    crate::helpers::eventually(WAIT, || async {
        let list = app.get("/api/v1/push/subscriptions", &b.token).await;
        match list.body["items"].as_array().map(Vec::len) {
            Some(0) => Ok(()),
            _ => Err(format!("still there: {}", list.text)),
        }
    })
    .await;
}

dual_test!(an_incoming_call_pushes_at_once_and_rings_the_device_that_comes);
async fn an_incoming_call_pushes_at_once_and_rings_the_device_that_comes(app: &TestApp) {
    let mut service = PushService::start().await;
    let (a, b, conv) = friends(app, "eve", "fay").await;
    let browser = Browser::new();
    let endpoint = format!("{}/send/fay", service.base);
    app.post(
        "/api/v1/push/subscriptions",
        Some(&b.token),
        browser.subscription(&endpoint),
    )
    .await
    .assert_ok();
    let (caller, _caller_events) = palaver::client::connect(&app.base, &json!({"token": a.token}))
        .await
        .unwrap();
    let invite = json!({"conversationId": conv, "media": "video", "sdp": "v=0 offer"});
    let r = caller.call("call:invite", &invite, WAIT).await.unwrap();
    let call = r["callId"].as_str().unwrap().to_owned();
    let push = service.next().await;
    assert_eq!(push.headers["urgency"], "high");
    let note = browser.decrypt(&push.body);
    assert_eq!(note["type"], "call");
    assert_eq!(note["callId"], call.as_str());
    assert_eq!(note["from"]["id"], a.id.as_str());
    assert!(note.get("sdp").is_none(), "the offer comes over the socket");
    // The woken device connects and rings, with the offer, and can answer.
    let (callee, mut callee_events) =
        palaver::client::connect(&app.base, &json!({"token": b.token}))
            .await
            .unwrap();
    let ring = callee_events.expect("call:incoming", WAIT).await.unwrap();
    assert_eq!(ring["callId"], call.as_str());
    assert_eq!(ring["sdp"], "v=0 offer");
    let ok = callee
        .call(
            "call:accept",
            &json!({"callId": call, "sdp": "v=0 answer"}),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(ok["ok"], true, "{ok}");
}

dual_test!(a_blocked_sender_is_not_announced);
async fn a_blocked_sender_is_not_announced(app: &TestApp) {
    let mut service = PushService::start().await;
    let a = app.signup("gil@example.com", "gil").await;
    let b = app.signup("hal@example.com", "hal").await;
    let c = app.signup("ivy@example.com", "ivy").await;
    let browser = Browser::new();
    let endpoint = format!("{}/send/hal", service.base);
    app.post(
        "/api/v1/push/subscriptions",
        Some(&b.token),
        browser.subscription(&endpoint),
    )
    .await
    .assert_ok();
    // Being added to a group is announced (its system message).
    let group = app.group(&a, "Club", &[&b, &c]).await;
    let added = browser.decrypt(&service.next().await.body);
    assert_eq!(added["conversationId"], group.as_str());
    app.put(&format!("/api/v1/blocks/{}", a.id), &b.token, json!({}))
        .await
        .assert_ok();
    app.say(&a, &group, "from the blocked one").await;
    assert!(
        service.quiet().await.is_empty(),
        "a blocked sender is not announced"
    );
    app.say(&c, &group, "from a friend").await;
    let note = browser.decrypt(&service.next().await.body);
    assert_eq!(note["title"], "ivy in Club");
    assert_eq!(note["body"], "from a friend");
}

dual_test!(erasing_an_account_deletes_its_subscriptions);
async fn erasing_an_account_deletes_its_subscriptions(app: &TestApp) {
    let gone = app.signup("gone@example.com", "Gone").await;
    let next = app.signup("next@example.com", "Next").await;
    let body = Browser::new().subscription("https://push.example.com/send/shared-browser");
    let r = app
        .post(
            "/api/v1/push/subscriptions",
            Some(&gone.token),
            body.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        app.delete("/api/v1/users/me", &gone.token).await.status,
        StatusCode::NO_CONTENT
    );
    // The endpoint is new again: the erased account's row is gone, not moved.
    let r = app
        .post("/api/v1/push/subscriptions", Some(&next.token), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

dual_test!(an_assigned_inbox_conversation_notifies_its_assignee_only);
async fn an_assigned_inbox_conversation_notifies_its_assignee_only(app: &TestApp) {
    let mut service = PushService::start().await;
    let (admin, agent, patient) = crate::inbox::team(app).await;
    crate::inbox::open_desk(app, &admin, "members", true).await;
    for (who, name) in [(&admin, "admin"), (&agent, "agent")] {
        app.post(
            "/api/v1/push/subscriptions",
            Some(&who.token),
            json!({"type": "webhook", "url": format!("{}/{name}", service.base)}),
        )
        .await
        .assert_ok();
    }
    let conv = crate::inbox::support_conversation(app, &patient).await;
    // Unassigned (nobody was connected to take it): every agent hears of it.
    app.say(&patient, &conv, "hello?").await;
    let mut paths = vec![service.next().await.path, service.next().await.path];
    paths.sort();
    assert_eq!(paths, ["/admin", "/agent"]);
    assert!(service.quiet().await.is_empty());
    // Assigned: only the assignee.
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &admin.token,
        json!({"assigneeId": agent.id}),
    )
    .await
    .assert_ok();
    app.say(&patient, &conv, "still there?").await;
    assert_eq!(service.next().await.path, "/agent");
    assert!(service.quiet().await.is_empty());
}

dual_test!(a_support_customer_is_told_of_the_team_not_the_agent);
async fn a_support_customer_is_told_of_the_team_not_the_agent(app: &TestApp) {
    let mut service = PushService::start().await;
    let (admin, agent, patient) = crate::inbox::team(app).await;
    let browser = Browser::new();
    let endpoint = format!("{}/send/patient", service.base);
    app.post(
        "/api/v1/push/subscriptions",
        Some(&patient.token),
        browser.subscription(&endpoint),
    )
    .await
    .assert_ok();
    let workspace = app
        .get("/api/v1/workspaces/default", &admin.token)
        .await
        .assert_ok()
        .body["name"]
        .as_str()
        .unwrap()
        .to_owned();
    for (names, said, title) in [
        (false, "from the team", workspace.as_str()),
        (true, "from Ana", "Ana Agent"),
    ] {
        crate::inbox::open_desk(app, &admin, "members", names).await;
        let conv = crate::inbox::support_conversation(app, &patient).await;
        app.say(&agent, &conv, said).await;
        let note = browser.decrypt(&service.next().await.body);
        assert_eq!(note["body"], said);
        assert_eq!(note["title"], title, "showAgentNames: {names}");
    }
}
