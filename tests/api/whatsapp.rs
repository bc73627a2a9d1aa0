//! The WhatsApp bridge: channels, the signed webhook and everything it carries (every message
//! type, reactions, statuses in and out of order, duplicates, inbound media from a fake Graph
//! API), leads and channel conversations, and `palaver import-webhooks` on the sample corpus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::Mac;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{drain_until, TestApp, User};
use crate::workspaces::admin;

pub const APP_SECRET: &str = "app-secret-for-tests";
pub const PHONE_NUMBER_ID: &str = "109876543210";
pub const BUSINESS_NUMBER: &str = "15550001111";

/// What the fake Graph API saw: (method, path, authorization, body).
pub type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Value)>>>;

/// Queued answers of the fake messages endpoint: (status, body, retry-after seconds).
pub type Answers = Arc<Mutex<Vec<(u16, Value, Option<u64>)>>>;

/// A fake Graph API on a random port: media lookups and downloads, and the messages endpoint
/// (its answers come from `answers`, a queue of (status, body, retry-after); empty: success).
pub struct FakeGraph {
    pub base: String,
    pub seen: Seen,
    pub answers: Answers,
}

pub fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub async fn fake_graph() -> FakeGraph {
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    let seen: Seen = Default::default();
    let answers: Answers = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    #[derive(Clone)]
    struct S {
        base: String,
        seen: Seen,
        answers: Answers,
        counter: Arc<Mutex<u64>>,
    }
    let state = S {
        base: base.clone(),
        seen: seen.clone(),
        answers: answers.clone(),
        counter: Default::default(),
    };
    fn auth(h: &HeaderMap) -> Option<String> {
        h.get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
    }
    let app = axum::Router::new()
        .route(
            "/{version}/{id}",
            axum::routing::get(|State(s): State<S>, Path((_v, id)): Path<(String, String)>, h: HeaderMap| async move {
                s.seen.lock().unwrap().push(("GET".into(), format!("/media/{id}"), auth(&h), Value::Null));
                axum::Json(json!({"url": format!("{}/download/{id}", s.base), "mime_type": "image/png", "id": id}))
            }),
        )
        .route(
            "/download/{id}",
            axum::routing::get(|State(s): State<S>, Path(id): Path<String>, h: HeaderMap| async move {
                s.seen.lock().unwrap().push(("GET".into(), format!("/download/{id}"), auth(&h), Value::Null));
                if auth(&h).as_deref() != Some("Bearer graph-token") {
                    return Response::builder().status(401).body(axum::body::Body::empty()).unwrap();
                }
                ([("content-type", "image/png")], png_bytes()).into_response()
            }),
        )
        .route(
            "/{version}/{phone}/media",
            axum::routing::post(
                |State(s): State<S>, Path((_v, phone)): Path<(String, String)>, h: HeaderMap, mut form: axum::extract::Multipart| async move {
                    let mut fields = serde_json::Map::new();
                    while let Some(f) = form.next_field().await.unwrap() {
                        let name = f.name().unwrap_or_default().to_owned();
                        let len = f.bytes().await.unwrap().len();
                        fields.insert(name, json!(len));
                    }
                    s.seen.lock().unwrap().push(("POST".into(), format!("/{phone}/media"), auth(&h), Value::Object(fields)));
                    axum::Json(json!({"id": "UPLOADED1"}))
                },
            ),
        )
        .route(
            "/{version}/{waba}/message_templates",
            axum::routing::get(|State(s): State<S>, Path((_v, waba)): Path<(String, String)>, h: HeaderMap| async move {
                s.seen.lock().unwrap().push(("GET".into(), format!("/{waba}/message_templates"), auth(&h), Value::Null));
                axum::Json(json!({"data": [
                    {"name": "order_ready", "language": "en_US", "category": "UTILITY", "status": "APPROVED", "id": "T1",
                     "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready"}]},
                    {"name": "promo", "language": "en_US", "category": "MARKETING", "status": "PENDING", "id": "T2",
                     "components": [{"type": "BODY", "text": "Sale!"}]}
                ], "paging": {"cursors": {"before": "a", "after": "b"}}}))
            }),
        )
        .route(
            "/{version}/{phone}/messages",
            axum::routing::post(
                |State(s): State<S>, Path((_v, phone)): Path<(String, String)>, h: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    s.seen.lock().unwrap().push(("POST".into(), format!("/{phone}/messages"), auth(&h), body));
                    let next = {
                        let mut a = s.answers.lock().unwrap();
                        (!a.is_empty()).then(|| a.remove(0))
                    };
                    match next {
                        Some((status, body, after)) => {
                            let mut b = Response::builder().status(status).header("content-type", "application/json");
                            if let Some(secs) = after {
                                b = b.header("retry-after", secs.to_string());
                            }
                            b.body(axum::body::Body::from(body.to_string())).unwrap()
                        }
                        None => {
                            let n = {
                                let mut c = s.counter.lock().unwrap();
                                *c += 1;
                                *c
                            };
                            axum::Json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.out{n}")}]})).into_response()
                        }
                    }
                },
            ),
        )
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeGraph {
        base,
        seen,
        answers,
    }
}

pub fn sign(body: &[u8], secret: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts a webhook body, signed with the test app secret unless `signature` says otherwise.
pub async fn deliver(app: &TestApp, body: &Value, signature: Option<&str>) -> (StatusCode, String) {
    let bytes = serde_json::to_vec(body).unwrap();
    let sig = signature
        .map(str::to_owned)
        .unwrap_or_else(|| sign(&bytes, APP_SECRET));
    let mut req = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("content-type", "application/json")
        .body(bytes);
    if !sig.is_empty() {
        req = req.header("x-hub-signature-256", sig);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A webhook body for the test channel.
pub fn envelope(contacts: Value, messages: Value, statuses: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": BUSINESS_NUMBER, "phone_number_id": PHONE_NUMBER_ID},
            "contacts": contacts, "messages": messages, "statuses": statuses,
        }}]}]
    })
}

pub fn text_from(wa_id: &str, name: &str, wamid: &str, text: &str, ts: i64) -> Value {
    envelope(
        json!([{"profile": {"name": name}, "wa_id": wa_id}]),
        json!([{"from": wa_id, "id": wamid, "timestamp": ts.to_string(), "type": "text", "text": {"body": text}}]),
        json!([]),
    )
}

/// An owner with a connected channel pointing at `graph`.
pub async fn connected(app: &TestApp, graph: &FakeGraph) -> (User, String) {
    let owner = admin(app, "owner@example.com").await;
    let r = app
        .post(
            "/api/v1/channels",
            Some(&owner.token),
            json!({"phoneNumberId": PHONE_NUMBER_ID, "displayPhoneNumber": BUSINESS_NUMBER, "wabaId": "WABA1",
                   "accessToken": "graph-token", "appSecret": APP_SECRET, "verifyToken": "verify-me",
                   "graphBaseUrl": graph.base, "name": "Support"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (owner, r.body["id"].as_str().unwrap().to_owned())
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
}

/// The owner's channel conversations, waiting until `done` holds (webhooks are applied by a job).
pub async fn inbox(
    app: &TestApp,
    user: &User,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = app
            .get(
                &format!("/api/v1/conversations?kind=channel{query}"),
                &user.token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let items = r.body["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the inbox never got there: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The history of a conversation once `done` holds.
pub async fn history_until(
    app: &TestApp,
    user: &User,
    conversation: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let h = app.history(user, conversation).await;
        if done(&h) {
            return h;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the history never got there: {h:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

dual_test!(channels_keep_their_secrets);
async fn channels_keep_their_secrets(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, id) = connected(app, &graph).await;
    let member = app.signup("member@example.com", "Member").await;
    let r = app
        .get(&format!("/api/v1/channels/{id}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        (
            r.body["accessTokenSet"].as_bool(),
            r.body["appSecretSet"].as_bool()
        ),
        (Some(true), Some(true))
    );
    for secret in ["graph-token", APP_SECRET, "verify-me"] {
        assert!(!r.text.contains(secret));
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM channels WHERE access_token LIKE $1 OR app_secret LIKE $1 OR verify_token LIKE $1",
        )
        .bind(format!("%{secret}%"))
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
        assert_eq!(stored, 0, "{secret} is stored in clear");
    }
    app.get("/api/v1/channels", &member.token)
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/channels",
        Some(&member.token),
        json!({"phoneNumberId": "1"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/channels",
        Some(&owner.token),
        json!({"phoneNumberId": PHONE_NUMBER_ID}),
    )
    .await
    .assert_problem(409, "channel_exists");
    app.post(
        "/api/v1/channels",
        Some(&owner.token),
        json!({"phoneNumberId": "x/../y", "graphBaseUrl": "ftp://h"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = app
        .patch(
            &format!("/api/v1/channels/{id}"),
            &owner.token,
            json!({"verifyToken": ""}),
        )
        .await;
    assert_eq!(r.body["verifyTokenSet"], false, "{}", r.text);
    let list = app.get("/api/v1/channels", &owner.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // The handshake: the configured verify token answers the challenge.
    let r = app
        .patch(
            &format!("/api/v1/channels/{id}"),
            &owner.token,
            json!({"verifyToken": "verify-me"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let ok = app.client.get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444")).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = app
        .client
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);
    let missing = app
        .client
        .get(app.url("/webhooks/whatsapp"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);

    let r = app
        .delete(&format!("/api/v1/channels/{id}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/channels/{id}"), &owner.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

dual_test!(only_signed_well_formed_webhooks_are_stored);
async fn only_signed_well_formed_webhooks_are_stored(app: &TestApp) {
    let graph = fake_graph().await;
    let (_owner, _) = connected(app, &graph).await;
    let body = text_from("4915112345678", "Ana", "wamid.in1", "hello", 1_700_000_000);
    assert_eq!(
        deliver(app, &body, Some("")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(app, &body, Some("sha256=00ff")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let forged = sign(&serde_json::to_vec(&body).unwrap(), "another-secret");
    assert_eq!(
        deliver(app, &body, Some(&forged)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A signature over other bytes (the same JSON re-serialized with a space) does not pass.
    let mut spaced = serde_json::to_vec(&body).unwrap();
    spaced.insert(1, b' ');
    let sig = sign(&serde_json::to_vec(&body).unwrap(), APP_SECRET);
    let r = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("x-hub-signature-256", sig)
        .body(spaced)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Malformed, signed: 400.
    let junk = br#"{"object":"whatsapp_business_account","entry":"nope"}"#;
    let r = app
        .client
        .post(app.url("/webhook"))
        .header("x-hub-signature-256", sign(junk, APP_SECRET))
        .body(junk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(count(app, "webhook_events").await, 0, "nothing stored");
    // Signed and well formed: 200, recorded, and (both paths) applied.
    let (status, text) = deliver(app, &body, None).await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "EVENT_RECEIVED"));
    assert_eq!(count(app, "webhook_events").await, 1);
}

/// Waits until every recorded webhook body has been applied.
pub async fn webhooks_applied(app: &TestApp) {
    crate::helpers::eventually(Duration::from_secs(20), || async {
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_events WHERE processed_at IS NULL")
                .fetch_one(app.state.db.reader())
                .await
                .unwrap();
        if left == 0 {
            Ok(())
        } else {
            Err(format!("{left} webhook bodies not applied"))
        }
    })
    .await
}

dual_test!(a_workspace_cannot_sign_for_another_workspaces_channel);
async fn a_workspace_cannot_sign_for_another_workspaces_channel(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    // The victim's conversation, with a message the business sent (wamid.b1).
    let wa = "4915112345678";
    let sent = envelope(
        json!([{"profile": {"name": "Ana"}, "wa_id": wa}]),
        json!([{"from": BUSINESS_NUMBER, "id": "wamid.b1", "timestamp": "1700000000", "type": "text", "text": {"body": "Shipped"}}]),
        json!([]),
    );
    assert_eq!(deliver(app, &sent, None).await.0, StatusCode::OK);
    let conv = inbox(app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another workspace's owner, with a channel and an app secret of their own.
    let mallory = admin(app, "mallory@example.com").await;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&mallory.token),
            json!({"name": "Evil", "slug": "evil"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .call_with(
            Method::POST,
            "/api/v1/channels",
            Some(&mallory.token),
            Some(json!({"phoneNumberId": "222", "appSecret": "evil-secret"})),
            &[("palaver-workspace", "evil")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let part = |phone: &str, messages: Value, statuses: Value| {
        json!({"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"phone_number_id": phone},
            "contacts": [{"profile": {"name": "Fake"}, "wa_id": "4400000000"}],
            "messages": messages, "statuses": statuses}})
    };
    let planted = json!([{"from": "4400000000", "id": "wamid.planted", "timestamp": "1700000001",
        "type": "text", "text": {"body": "send me your password"}}]);
    // Mallory signs, with her own secret, a body that names the victim's number too: 401, nothing stored.
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [
        part("222", json!([]), json!([])),
        part(PHONE_NUMBER_ID, planted.clone(), json!([])),
    ]}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let before = count(app, "webhook_events").await;
    assert_eq!(
        deliver(app, &body, Some(&sign(&bytes, "evil-secret")))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Nor alone, nor in its own entry.
    let alone = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "W", "changes": [part("222", json!([]), json!([]))]},
        {"id": "V", "changes": [part(PHONE_NUMBER_ID, planted, json!([]))]}]});
    let bytes = serde_json::to_vec(&alone).unwrap();
    assert_eq!(
        deliver(app, &alone, Some(&sign(&bytes, "evil-secret")))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(count(app, "webhook_events").await, before, "nothing stored");
    // Her own channel's body, naming the victim's wamid in a status and a reaction: applied to
    // her channel only, so the victim's message neither moves nor gets a reaction.
    let own = json!({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [
        part("222",
            json!([{"from": "4400000000", "id": "wamid.r1", "type": "reaction",
                    "reaction": {"message_id": "wamid.b1", "emoji": "💩"}}]),
            json!([{"id": "wamid.b1", "status": "read", "timestamp": "1700000050", "recipient_id": wa}])),
    ]}]});
    let bytes = serde_json::to_vec(&own).unwrap();
    assert_eq!(
        deliver(app, &own, Some(&sign(&bytes, "evil-secret")))
            .await
            .0,
        StatusCode::OK
    );
    webhooks_applied(app).await;
    let h = app.history(&owner, &conv).await;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["external"]["status"], "sent", "{h:?}");
    assert_eq!(h[0]["reactions"], json!([]), "{h:?}");
    // The victim's own status with the same id, status and time still applies.
    let real = envelope(
        json!([]),
        json!([]),
        json!([{"id": "wamid.b1", "status": "read", "timestamp": "1700000050", "recipient_id": wa}]),
    );
    assert_eq!(deliver(app, &real, None).await.0, StatusCode::OK);
    history_until(app, &owner, &conv, |h| h[0]["external"]["status"] == "read").await;
}

dual_test!(texts_arrive_whole_and_lists_must_be_arrays);
async fn texts_arrive_whole_and_lists_must_be_arrays(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    // `messages`, `statuses` or `contacts` that are not arrays: 400, nothing stored.
    for list in ["messages", "statuses", "contacts"] {
        let mut body = text_from("4915112345678", "Ana", "wamid.x", "hi", 1_700_000_000);
        body["entry"][0]["changes"][0]["value"][list] = json!({"0": "not a list"});
        assert_eq!(
            deliver(app, &body, None).await.0,
            StatusCode::BAD_REQUEST,
            "{list}"
        );
    }
    assert_eq!(count(app, "webhook_events").await, 0, "nothing stored");
    // 4096 characters of two bytes each (WhatsApp's limit counts characters) arrive whole; a
    // longer one arrives whole too, flagged.
    let at_limit = "ü".repeat(4096);
    let over = "x".repeat(5000);
    for (wamid, text, ts) in [
        ("wamid.l1", &at_limit, 1_700_000_000),
        ("wamid.l2", &over, 1_700_000_001),
    ] {
        let body = text_from("4915112345678", "Ana", wamid, text, ts);
        assert_eq!(deliver(app, &body, None).await.0, StatusCode::OK);
    }
    let item = inbox(app, &owner, "", |i| i.len() == 1).await.remove(0);
    // The conversation names its channel and its customer (api.md).
    assert_eq!(item["channel"]["id"], item["channelId"]);
    assert_eq!(item["channel"]["phoneNumberId"], PHONE_NUMBER_ID);
    assert_eq!(item["lead"]["id"], item["leadId"]);
    assert_eq!(item["lead"]["waId"], "4915112345678");
    assert_eq!(item["lead"]["name"], "Ana");
    let conv = item["id"].as_str().unwrap().to_owned();
    // (The two bodies are applied by two jobs, in either order.)
    let h = history_until(app, &owner, &conv, |h| h.len() == 2).await;
    let with = |text: &str| h.iter().find(|m| m["text"] == text).cloned();
    let whole = with(&at_limit).expect("the 4096-character text arrived whole");
    assert!(whole["payload"]["flags"].is_null(), "{whole}");
    let long = with(&over).expect("the longer text arrived whole");
    assert_eq!(
        long["payload"]["flags"],
        json!(["text_over_limit"]),
        "{}",
        long["payload"]
    );
}

dual_test!(every_inbound_message_type_reaches_the_inbox);
async fn every_inbound_message_type_reaches_the_inbox(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, channel_id) = connected(app, &graph).await;
    let agent = app.signup("agent@example.com", "Agent").await;
    let member = app.signup("member@example.com", "Member").await;
    let default_ws = app
        .get("/api/v1/workspaces/default", &owner.token)
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .patch(
            &format!("/api/v1/workspaces/{default_ws}/members/{}", agent.id),
            &owner.token,
            json!({"role": "agent"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let wa = "4915112345678";
    let ts = 1_700_000_000i64;
    let m = |id: &str, kind: &str, body: Value| {
        let mut v = json!({"from": wa, "id": id, "timestamp": ts.to_string(), "type": kind});
        v[kind] = body;
        v
    };
    let first = text_from(wa, "Ana Silva", "wamid.t1", "Hi, is the shop open?", ts);
    assert_eq!(deliver(app, &first, None).await.0, StatusCode::OK);
    let items = inbox(app, &owner, "", |i| !i.is_empty()).await;
    let conv = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(items[0]["kind"], "channel");
    assert_eq!(items[0]["title"], "Ana Silva");
    assert_eq!(items[0]["status"], "open");
    assert_eq!(items[0]["channelId"], channel_id.as_str());
    assert_eq!(items[0]["assigneeId"], Value::Null);
    assert!(
        items[0]["windowExpiresAt"].is_null(),
        "the customer wrote long ago: the window is closed"
    );
    assert_eq!(items[0]["lastMessage"]["text"], "Hi, is the shop open?");
    assert_eq!(items[0]["lastMessage"]["sender"]["type"], "lead");

    // The lead.
    let leads = app.get("/api/v1/leads", &owner.token).await;
    let lead = &leads.body["items"][0];
    assert_eq!(
        (
            lead["waId"].as_str(),
            lead["name"].as_str(),
            lead["phone"].as_str()
        ),
        (Some(wa), Some("Ana Silva"), Some("+4915112345678"))
    );
    assert_eq!(items[0]["leadId"], lead["id"]);
    assert_eq!(
        app.get(
            &format!("/api/v1/leads/{}", lead["id"].as_str().unwrap()),
            &agent.token
        )
        .await
        .status,
        StatusCode::OK
    );
    app.get("/api/v1/leads", &member.token)
        .await
        .assert_problem(403, "forbidden");
    // The agent (promoted after the conversation began) sees it; a plain member does not.
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{conv}"), &agent.token)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/api/v1/conversations/{conv}"), &member.token)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Every other type, and a reply with context, in one body.
    let mut reply = m("wamid.t2", "text", json!({"body": "about my order"}));
    reply["context"] = json!({"from": BUSINESS_NUMBER, "id": "wamid.t1", "forwarded": true});
    let mut ad = m("wamid.ad", "text", json!({"body": "saw your ad"}));
    ad["referral"] = json!({"source_url": "https://fb.me/x", "source_type": "ad", "source_id": "123", "headline": "Sale"});
    let body = envelope(
        json!([{"profile": {"name": "Ana Silva"}, "wa_id": wa}]),
        json!([
            reply,
            ad,
            m("wamid.img", "image", json!({"id": "MEDIA1", "mime_type": "image/png", "caption": "this one", "sha256": "x"})),
            m("wamid.voice", "audio", json!({"id": "MEDIA2", "mime_type": "audio/ogg; codecs=opus", "voice": true})),
            m("wamid.vid", "video", json!({"id": "MEDIA3", "mime_type": "video/mp4"})),
            m("wamid.doc", "document", json!({"id": "MEDIA4", "mime_type": "application/pdf", "filename": "invoice.pdf"})),
            m("wamid.stk", "sticker", json!({"id": "MEDIA5", "mime_type": "image/webp", "animated": false})),
            m("wamid.loc", "location", json!({"latitude": 38.72, "longitude": -9.14, "name": "Shop", "address": "Rua 1"})),
            m("wamid.card", "contacts", json!([{"name": {"formatted_name": "Rui Costa"}, "phones": [{"phone": "+351 912 345 678", "type": "CELL"}]}])),
            m("wamid.btn", "interactive", json!({"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}})),
            m("wamid.list", "interactive", json!({"type": "list_reply", "list_reply": {"id": "r2", "title": "Size M", "description": "Medium"}})),
            m("wamid.qr", "button", json!({"payload": "STOP", "text": "Stop promotions"})),
            m("wamid.order", "order", json!({"catalog_id": "c1", "text": "for Saturday", "product_items": [{"product_retailer_id": "sku1", "quantity": "2", "item_price": "10", "currency": "EUR"}]})),
            m("wamid.sys", "system", json!({"body": "Ana changed her number", "type": "user_changed_number", "new_wa_id": "4915100000000"})),
            {"from": wa, "id": "wamid.unk", "timestamp": ts.to_string(), "type": "unsupported", "errors": [{"code": 131051, "title": "Message type unknown"}]},
            {"from": wa, "id": "wamid.new", "timestamp": ts.to_string(), "type": "hologram", "hologram": {"x": 1}},
            m("wamid.react", "reaction", json!({"message_id": "wamid.t1", "emoji": "👍"})),
        ]),
        json!([]),
    );
    assert_eq!(deliver(app, &body, None).await.0, StatusCode::OK);
    // Delivered twice: nothing changes the second time.
    assert_eq!(deliver(app, &body, None).await.0, StatusCode::OK);
    let h = history_until(app, &agent, &conv, |h| {
        h.len() == 17
            && h.iter()
                .all(|m| m["type"] != "image" || m["media"]["processed"] == true)
    })
    .await;
    let by = |wamid: &str| {
        h.iter()
            .find(|m| m["external"]["id"] == wamid)
            .unwrap_or_else(|| panic!("{wamid} missing: {h:?}"))
            .clone()
    };
    let seqs: Vec<i64> = h.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=17).collect::<Vec<_>>());
    let r = by("wamid.t2");
    assert_eq!(
        (r["replyTo"]["id"].clone(), r["forwarded"].as_bool()),
        (by("wamid.t1")["id"].clone(), Some(true))
    );
    assert_eq!(by("wamid.ad")["payload"]["referral"]["headline"], "Sale");
    let img = by("wamid.img");
    assert_eq!(
        (img["type"].as_str(), img["text"].as_str()),
        (Some("image"), Some("this one"))
    );
    assert_eq!(img["media"]["contentType"], "image/png");
    assert!(img["media"]["thumbnailUrl"].is_string());
    let (status, bytes) = {
        let r = app
            .client
            .get(app.url(img["media"]["url"].as_str().unwrap()))
            .bearer_auth(&agent.token)
            .send()
            .await
            .unwrap();
        (r.status(), r.bytes().await.unwrap())
    };
    assert_eq!((status, bytes.to_vec()), (StatusCode::OK, png_bytes()));
    assert_eq!(by("wamid.voice")["type"], "voice");
    assert_eq!(by("wamid.vid")["type"], "video");
    assert_eq!(by("wamid.doc")["payload"]["filename"], "invoice.pdf");
    assert_eq!(by("wamid.stk")["type"], "sticker");
    let loc = by("wamid.loc");
    assert_eq!(
        (loc["type"].as_str(), loc["location"]["name"].as_str()),
        (Some("location"), Some("Shop"))
    );
    let card = by("wamid.card");
    assert_eq!(
        (
            card["contact"]["name"].as_str(),
            card["contact"]["phones"][0].as_str()
        ),
        (Some("Rui Costa"), Some("+351 912 345 678"))
    );
    assert_eq!(
        (
            by("wamid.btn")["type"].as_str(),
            by("wamid.btn")["text"].as_str()
        ),
        (Some("interactive"), Some("Yes please"))
    );
    assert_eq!(by("wamid.list")["payload"]["list_reply"]["id"], "r2");
    assert_eq!(
        (
            by("wamid.qr")["type"].as_str(),
            by("wamid.qr")["text"].as_str()
        ),
        (Some("button"), Some("Stop promotions"))
    );
    assert_eq!(
        by("wamid.order")["payload"]["product_items"][0]["product_retailer_id"],
        "sku1"
    );
    assert_eq!(
        by("wamid.sys")["payload"]["system"]["new_wa_id"],
        "4915100000000"
    );
    assert_eq!(by("wamid.unk")["type"], "unsupported");
    assert_eq!(by("wamid.unk")["payload"]["errors"][0]["code"], 131051);
    assert_eq!(
        (
            by("wamid.new")["type"].as_str(),
            by("wamid.new")["payload"]["providerType"].as_str()
        ),
        (Some("unsupported"), Some("hologram"))
    );
    let first_msg = by("wamid.t1");
    assert_eq!(
        first_msg["reactions"],
        json!([{"emoji": "👍", "by": {"type": "lead", "id": lead["id"]}}])
    );
    // The media came with the channel's token.
    let seen = graph.seen.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|(_, p, auth, _)| p == "/download/MEDIA1"
            && auth.as_deref() == Some("Bearer graph-token")));

    // An empty emoji takes the reaction back.
    let unreact = envelope(
        json!([]),
        json!([m(
            "wamid.react2",
            "reaction",
            json!({"message_id": "wamid.t1", "emoji": ""})
        )]),
        json!([]),
    );
    assert_eq!(deliver(app, &unreact, None).await.0, StatusCode::OK);
    history_until(app, &agent, &conv, |h| h[0]["reactions"] == json!([])).await;

    // Closing the conversation; the customer's next message reopens it.
    let r = app
        .patch(
            &format!("/api/v1/conversations/{conv}"),
            &agent.token,
            json!({"status": "closed", "assigneeId": agent.id}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("closed")),
        "{}",
        r.text
    );
    assert_eq!(r.body["assigneeId"], agent.id.as_str());
    assert_eq!(
        inbox(app, &agent, "&assignee=me", |i| i.len() == 1)
            .await
            .len(),
        1
    );
    assert_eq!(
        inbox(app, &owner, "&assignee=none", |_| true).await.len(),
        0
    );
    assert_eq!(
        inbox(app, &owner, "&status=closed", |i| i.len() == 1)
            .await
            .len(),
        1
    );
    let r = app
        .patch(
            &format!("/api/v1/conversations/{conv}"),
            &agent.token,
            json!({"assigneeId": member.id}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        deliver(
            app,
            &text_from(wa, "Ana Silva", "wamid.t3", "hello again", now),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let items = inbox(app, &owner, "&status=open", |i| i.len() == 1).await;
    assert!(
        items[0]["windowExpiresAt"].is_string(),
        "a fresh customer message opens the 24-hour window"
    );
}

dual_test!(statuses_only_move_forward);
async fn statuses_only_move_forward(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let wa = "4915112345678";
    // Two messages the business sent (the sample packs' convention: from = the business number).
    let sent = envelope(
        json!([{"profile": {"name": "Ana"}, "wa_id": wa}]),
        json!([
            {"from": BUSINESS_NUMBER, "id": "wamid.b1", "timestamp": "1700000000", "type": "text", "text": {"body": "Your order shipped"}},
            {"from": BUSINESS_NUMBER, "id": "wamid.b2", "timestamp": "1700000001", "type": "text", "text": {"body": "Rate us?"}},
        ]),
        json!([]),
    );
    assert_eq!(deliver(app, &sent, None).await.0, StatusCode::OK);
    let conv = inbox(app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = |id: &str, s: &str, ts: i64, extra: Value| {
        let mut v = json!({"id": id, "status": s, "timestamp": ts.to_string(), "recipient_id": wa,
            "conversation": {"id": "CONV1", "origin": {"type": "service"}},
            "pricing": {"billable": true, "pricing_model": "PMP", "category": "service"}});
        if let Some(o) = extra.as_object() {
            for (k, val) in o {
                v[k] = val.clone();
            }
        }
        v
    };
    // Out of order: read arrives before delivered; then sent, then a duplicate of read.
    for s in [
        status("wamid.b1", "read", 1_700_000_030, json!({})),
        status("wamid.b1", "delivered", 1_700_000_020, json!({})),
        status("wamid.b1", "sent", 1_700_000_010, json!({})),
        status("wamid.b1", "read", 1_700_000_030, json!({})),
        status("wamid.b2", "sent", 1_700_000_011, json!({})),
        status(
            "wamid.b2",
            "failed",
            1_700_000_012,
            json!({"errors": [{"code": 131047, "title": "Re-engagement message", "message": "More than 24 hours have passed"}]}),
        ),
        status("wamid.b2", "delivered", 1_700_000_013, json!({})),
        status("wamid.someone-else", "delivered", 1_700_000_014, json!({})),
    ] {
        assert_eq!(
            deliver(app, &envelope(json!([]), json!([]), json!([s])), None)
                .await
                .0,
            StatusCode::OK
        );
    }
    let h = history_until(app, &owner, &conv, |h| {
        h.len() == 2 && h[0]["status"] == "read" && h[1]["status"] == "failed"
    })
    .await;
    assert_eq!(h[0]["external"]["status"], "read");
    assert_eq!(h[0]["sender"], json!({"type": "user", "id": null}));
    assert_eq!(h[1]["external"]["error"]["code"], 131047);
    // Wait for the last status (the unknown id) to be recorded, then read the history table.
    app.run_pending_jobs().await;
    let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
        "SELECT external_id, status, message_id, raw FROM message_statuses ORDER BY created_at, id",
    )
    .fetch_all(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        7,
        "every status once, the duplicate read not twice"
    );
    let unknown = rows.iter().find(|r| r.0 == "wamid.someone-else").unwrap();
    assert!(
        unknown.2.is_none(),
        "a status for an unknown id is recorded without a message"
    );
    let read = rows
        .iter()
        .find(|r| r.0 == "wamid.b1" && r.1 == "read")
        .unwrap();
    assert!(
        read.3.contains("\"pricing\"") && read.3.contains("CONV1"),
        "pricing and conversation kept"
    );
}

dual_test!(importing_the_sample_corpus);
async fn importing_the_sample_corpus(app: &TestApp) {
    let owner = admin(app, "owner@example.com").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/whatsapp-sample-payloads");
    let first = palaver::whatsapp::import::run(&app.state, &dir, None)
        .await
        .unwrap();
    let r = serde_json::to_value(&first).unwrap();
    assert_eq!(
        (
            r["files"].as_u64(),
            r["importedFiles"].as_u64(),
            r["failedFiles"].as_u64()
        ),
        (Some(8), Some(8), Some(0)),
        "{r}"
    );
    // conversation_1_status_1.json is a copy of conversation_1_message_1.json.
    assert_eq!(
        (
            r["totals"]["messages"].as_u64(),
            r["totals"]["duplicates"].as_u64()
        ),
        (Some(4), Some(1)),
        "{r}"
    );
    assert_eq!(
        (
            r["totals"]["statuses"].as_u64(),
            r["totals"]["channelsCreated"].as_u64()
        ),
        (Some(3), Some(1)),
        "{r}"
    );
    let again = serde_json::to_value(
        palaver::whatsapp::import::run(&app.state, &dir, None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            again["totals"]["messages"].as_u64(),
            again["alreadyRecorded"].as_u64()
        ),
        (Some(0), Some(8)),
        "{again}"
    );
    assert_eq!(again["totals"]["duplicateStatuses"], 3);

    let items = inbox(app, &owner, "", |i| i.len() == 2).await;
    let titles: Vec<&str> = items.iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert!(
        titles.contains(&"Ravi Kumar") && titles.contains(&"Neha Joshi"),
        "{titles:?}"
    );
    let ravi = items.iter().find(|c| c["title"] == "Ravi Kumar").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.history(&owner, &ravi).await;
    assert_eq!(h.len(), 2);
    assert_eq!(
        (
            h[0]["sender"]["type"].as_str(),
            h[1]["sender"]["type"].as_str()
        ),
        (Some("lead"), Some("user"))
    );
    assert_eq!(
        h[1]["status"], "read",
        "conversation_1_status_2 marks the reply read"
    );
    let neha = items.iter().find(|c| c["title"] == "Neha Joshi").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let h = app.history(&owner, &neha).await;
    // The pack's "sent" status for Neha's own message is kept in the history but moves nothing.
    assert_eq!(h[0]["external"]["status"], "received");
    assert_eq!(h[1]["status"], "delivered");

    // Per channel: messages by status and by day.
    let stats = app
        .get("/api/v1/stats?from=2025-08-01&to=2025-08-31", &owner.token)
        .await;
    let channel = &stats.body["channels"][0];
    assert_eq!(
        channel["phoneNumberId"], "629305560276479",
        "{}",
        stats.text
    );
    assert_eq!(
        channel["messagesByStatus"],
        json!({"received": 2, "read": 1, "delivered": 1})
    );
    let days = channel["messagesByDay"].as_array().unwrap();
    let inbound: i64 = days.iter().map(|d| d["inbound"].as_i64().unwrap()).sum();
    let outbound: i64 = days.iter().map(|d| d["outbound"].as_i64().unwrap()).sum();
    assert_eq!((inbound, outbound), (2, 2), "{days:?}");

    // Garbage in a folder: reported per file, the rest imported.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("a.json"), "{not json").unwrap();
    std::fs::copy(
        dir.join("conversation_1_message_1.json"),
        bad.path().join("b.json"),
    )
    .unwrap();
    let mixed = serde_json::to_value(
        palaver::whatsapp::import::run(&app.state, bad.path(), None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            mixed["failedFiles"].as_u64(),
            mixed["importedFiles"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(mixed["errors"][0]["file"], "a.json");
}

dual_test!(agents_hear_of_customer_messages_live);
async fn agents_hear_of_customer_messages_live(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let cursor = app.sync_start(&owner).await;
    let (client, mut events) = palaver::client::connect(&app.base, &json!({"token": owner.token}))
        .await
        .unwrap();
    assert_eq!(
        deliver(
            app,
            &text_from(
                "4915112345678",
                "Ana",
                "wamid.live",
                "are you there?",
                1_700_000_000
            ),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let data = events
        .expect("message:new", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(data["message"]["text"], "are you there?");
    assert_eq!(data["message"]["sender"]["type"], "lead");
    let (events, _) = drain_until(app, &owner, cursor, 50, |e| {
        e.iter().any(|e| e["type"] == "conversation:updated")
    })
    .await;
    assert!(events.iter().any(|e| e["type"] == "message:new"));
    client.close().await;
}

/// The Graph API calls to the messages endpoint so far.
fn sends(graph: &FakeGraph) -> Vec<(Option<String>, Value)> {
    graph
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _, _)| m == "POST" && p.ends_with("/messages"))
        .map(|(_, _, auth, body)| (auth.clone(), body.clone()))
        .collect()
}

async fn wait_for_sends(graph: &FakeGraph, n: usize) -> Vec<(Option<String>, Value)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = sends(graph);
        if s.len() >= n {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} sends, got {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn reply(app: &TestApp, agent: &User, conv: &str, body: Value) -> crate::helpers::Resp {
    let mut b = body;
    b["clientMsgId"] = json!(uuid::Uuid::now_v7().to_string());
    app.post(
        &format!("/api/v1/conversations/{conv}/messages"),
        Some(&agent.token),
        b,
    )
    .await
}

/// A customer who wrote just now (window open) and one who wrote two days ago (closed).
async fn two_customers(app: &TestApp, owner: &User) -> (String, String) {
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        deliver(
            app,
            &text_from("4915100000001", "Fresh", "wamid.fresh", "hi", now),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        deliver(
            app,
            &text_from(
                "4915100000002",
                "Stale",
                "wamid.stale",
                "hi",
                now - 2 * 86_400
            ),
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let items = inbox(app, owner, "", |i| i.len() == 2).await;
    let id = |t: &str| {
        items.iter().find(|c| c["title"] == t).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (id("Fresh"), id("Stale"))
}

dual_test!(replies_inside_and_outside_the_window);
async fn replies_inside_and_outside_the_window(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let (fresh, stale) = two_customers(app, &owner).await;
    let customer_msg = app.history(&owner, &fresh).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Free text inside the window: pending, sent by the worker, then the provider's statuses.
    let r = reply(
        app,
        &owner,
        &fresh,
        json!({"type": "text", "text": "Hello! How can we help?", "replyToId": customer_msg}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let s = wait_for_sends(&graph, 1).await;
    assert_eq!(s[0].0.as_deref(), Some("Bearer graph-token"));
    assert_eq!(s[0].1["to"], "4915100000001");
    assert_eq!(s[0].1["type"], "text");
    assert_eq!(s[0].1["text"]["body"], "Hello! How can we help?");
    assert_eq!(s[0].1["context"]["message_id"], "wamid.fresh");
    let h = history_until(app, &owner, &fresh, |h| {
        h.last().unwrap()["status"] == "sent"
    })
    .await;
    assert_eq!(h.last().unwrap()["external"]["id"], "wamid.out1");
    let delivered = envelope(
        json!([]),
        json!([]),
        json!([{"id": "wamid.out1", "status": "delivered", "timestamp": chrono::Utc::now().timestamp().to_string(), "recipient_id": "4915100000001"}]),
    );
    assert_eq!(deliver(app, &delivered, None).await.0, StatusCode::OK);
    history_until(app, &owner, &fresh, |h| {
        h.iter()
            .any(|m| m["id"] == id.as_str() && m["status"] == "delivered")
    })
    .await;

    // Outside the window: free text is refused before anything is stored; a template goes.
    reply(
        app,
        &owner,
        &stale,
        json!({"type": "text", "text": "Still there?"}),
    )
    .await
    .assert_problem(422, "outside_customer_service_window");
    reply(app, &owner, &stale, json!({"type": "template", "template": {"name": "order_ready", "language": "en_US", "parameters": ["Ana"]}}))
        .await
        .assert_problem(422, "validation_failed");
    let t = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "order_ready", "language": "en_US", "category": "utility",
        "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready"}]}),
        )
        .await;
    assert_eq!(
        (t.status, t.body["parameterCount"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{}",
        t.text
    );
    app.post("/api/v1/templates", Some(&owner.token), json!({"name": "order_ready", "language": "en_US", "category": "utility", "components": []}))
        .await
        .assert_problem(409, "template_exists");
    reply(app, &owner, &stale, json!({"type": "template", "template": {"name": "order_ready", "language": "en_US", "parameters": ["Ana"]}}))
        .await
        .assert_problem(422, "validation_failed");
    let r = reply(app, &owner, &stale, json!({"type": "template", "template": {"name": "order_ready", "language": "en_US", "parameters": ["Ana", "#42"]}})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["text"], "Hi Ana, your order #42 is ready");
    let s = wait_for_sends(&graph, 2).await;
    assert_eq!(s[1].1["type"], "template");
    assert_eq!(s[1].1["template"]["name"], "order_ready");
    assert_eq!(s[1].1["template"]["language"]["code"], "en_US");
    assert_eq!(
        s[1].1["template"]["components"][0]["parameters"][1]["text"],
        "#42"
    );
    // Templates are for customers only.
    let colleague = app.signup("colleague@example.com", "Colleague").await;
    let direct = app.direct(&owner, &colleague).await;
    reply(app, &owner, &direct, json!({"type": "template", "template": {"name": "order_ready", "language": "en_US", "parameters": ["a", "b"]}}))
        .await
        .assert_problem(422, "validation_failed");

    // Media go through the Graph media endpoint, then by id.
    let part = reqwest::multipart::Part::bytes(png_bytes()).file_name("p.png");
    let up = app
        .client
        .post(app.url("/api/v1/media"))
        .bearer_auth(&owner.token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let media_id = up.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = reply(
        app,
        &owner,
        &fresh,
        json!({"type": "image", "mediaId": media_id, "text": "our shop"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let s = wait_for_sends(&graph, 3).await;
    assert_eq!(s[2].1["type"], "image");
    assert_eq!(
        s[2].1["image"],
        json!({"id": "UPLOADED1", "caption": "our shop"})
    );
    let uploads: Vec<Value> = graph
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _, _)| p.ends_with("/media") && p.starts_with('/'))
        .filter(|(m, _, _, _)| m == "POST")
        .map(|(_, _, _, b)| b.clone())
        .collect();
    assert_eq!(uploads[0]["file"], png_bytes().len());
    assert_eq!(uploads[0]["messaging_product"], "whatsapp".len());

    // An agent's reaction and read mark reach the customer.
    let r = app
        .put(
            &format!("/api/v1/messages/{customer_msg}/reactions"),
            &owner.token,
            json!({"emoji": "❤️"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let s = wait_for_sends(&graph, 4).await;
    assert_eq!(
        s[3].1["reaction"],
        json!({"message_id": "wamid.fresh", "emoji": "❤️"})
    );
    // The customer writes again; the agent reads it: the read mark goes to WhatsApp.
    let now = chrono::Utc::now().timestamp();
    let again = text_from("4915100000001", "Fresh", "wamid.fresh2", "thanks!", now);
    assert_eq!(deliver(app, &again, None).await.0, StatusCode::OK);
    let h = history_until(app, &owner, &fresh, |h| {
        h.iter().any(|m| m["external"]["id"] == "wamid.fresh2")
    })
    .await;
    let seq = h.last().unwrap()["seq"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/conversations/{fresh}/read"),
            Some(&owner.token),
            json!({"seq": seq}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let s = wait_for_sends(&graph, 5).await;
    assert_eq!(
        s[4].1,
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.fresh2"})
    );

    // Templates from the WABA.
    let channel = app.get("/api/v1/channels", &owner.token).await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            "/api/v1/templates/sync",
            Some(&owner.token),
            json!({"channelId": channel}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["synced"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{}",
        r.text
    );
    let list = app.get("/api/v1/templates", &owner.token).await;
    let promo = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "promo")
        .unwrap()
        .clone();
    assert_eq!(
        (promo["status"].as_str(), promo["category"].as_str()),
        (Some("pending"), Some("MARKETING"))
    );
}

dual_test!(provider_failures_retry_or_fail);
async fn provider_failures_retry_or_fail(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let (fresh, _) = two_customers(app, &owner).await;
    // A rate limit with Retry-After, then success: sent once it passes.
    graph.answers.lock().unwrap().push((
        429,
        json!({"error": {"code": 130429, "message": "Rate limit hit"}}),
        Some(1),
    ));
    let r = reply(
        app,
        &owner,
        &fresh,
        json!({"type": "text", "text": "first"}),
    )
    .await;
    let first = r.body["id"].as_str().unwrap().to_owned();
    history_until(app, &owner, &fresh, |h| {
        h.iter()
            .any(|m| m["id"] == first.as_str() && m["status"] == "sent")
    })
    .await;
    assert_eq!(sends(&graph).len(), 2, "tried, then retried once");
    // A permanent refusal: failed with the provider's code and text, tried once.
    graph.answers.lock().unwrap().push((400, json!({"error": {"code": 131026, "message": "Message undeliverable", "error_data": {"details": "not on WhatsApp"}}}), None));
    let r = reply(
        app,
        &owner,
        &fresh,
        json!({"type": "text", "text": "second"}),
    )
    .await;
    let second = r.body["id"].as_str().unwrap().to_owned();
    let h = history_until(app, &owner, &fresh, |h| {
        h.iter()
            .any(|m| m["id"] == second.as_str() && m["status"] == "failed")
    })
    .await;
    let m = h.iter().find(|m| m["id"] == second.as_str()).unwrap();
    assert_eq!(m["external"]["error"]["code"], 131026);
    assert_eq!(m["external"]["error"]["message"], "Message undeliverable");
    assert_eq!(m["external"]["error"]["details"], "not on WhatsApp");
    assert_eq!(sends(&graph).len(), 3);
}

dual_test!(outbound_requests_never_reach_inward_addresses, custom);
async fn outbound_requests_never_reach_inward_addresses(backend: crate::helpers::Backend) {
    // The operator allows nothing inward: the fake Graph API on loopback is out of reach.
    let Some(app) = crate::helpers::spawn(backend, |s| s.outbound_allow = None).await else {
        return;
    };
    nothing_inward(&app).await;
    app.stop().await;
}

async fn nothing_inward(app: &TestApp) {
    let graph = fake_graph().await;
    let owner = admin(app, "owner@example.com").await;
    let port = graph.base.rsplit(':').next().unwrap().to_owned();
    let channel = |base: String| {
        json!({"phoneNumberId": PHONE_NUMBER_ID, "displayPhoneNumber": BUSINESS_NUMBER,
               "accessToken": "graph-token", "appSecret": APP_SECRET, "graphBaseUrl": base})
    };
    // An address written in the URL is refused when the channel is saved.
    for base in [
        graph.base.clone(),
        format!("http://[::1]:{port}"),
        "http://169.254.169.254".to_string(),
        "http://0x7f000001".to_string(),
    ] {
        let r = app
            .post("/api/v1/channels", Some(&owner.token), channel(base))
            .await;
        r.assert_problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "graphBaseUrl", "{}", r.body);
    }
    // A name that resolves inward is refused when the request is made: the reply fails for
    // good, and nothing reaches the fake Graph API.
    let r = app
        .post(
            "/api/v1/channels",
            Some(&owner.token),
            channel(format!("http://localhost:{port}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let channel_id = r.body["id"].as_str().unwrap().to_owned();
    let (fresh, _) = two_customers(app, &owner).await;
    let sent = reply(
        app,
        &owner,
        &fresh,
        json!({"type": "text", "text": "hello"}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    let h = history_until(app, &owner, &fresh, |h| {
        h.iter()
            .any(|m| m["id"] == id.as_str() && m["status"] == "failed")
    })
    .await;
    let m = h.iter().find(|m| m["id"] == id.as_str()).unwrap();
    assert_eq!(m["external"]["error"]["code"], "outbound_refused", "{m}");
    assert!(
        graph.seen.lock().unwrap().is_empty(),
        "nothing reached loopback"
    );
    // Moving the channel to another host needs its token again.
    let r = app
        .patch(
            &format!("/api/v1/channels/{channel_id}"),
            &owner.token,
            json!({"graphBaseUrl": "https://graph.example.com"}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "accessToken", "{}", r.body);
    let r = app
        .patch(
            &format!("/api/v1/channels/{channel_id}"),
            &owner.token,
            json!({"graphBaseUrl": "https://graph.example.com", "accessToken": "new-token"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

dual_test!(a_job_that_never_finishes_is_not_run_forever);
async fn a_job_that_never_finishes_is_not_run_forever(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    // A recorded body whose job was claimed 8 times and never finished (the process died each
    // time it ran): the next claim gives up on it without running it.
    let body = text_from(
        "4915112345678",
        "Ana",
        "wamid.poison",
        "boom",
        1_700_000_000,
    );
    let id = palaver::whatsapp::webhook::store(
        &app.state.db,
        "webhook",
        &serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, attempts, run_at, created_at) VALUES ($1, $2, $3, 8, $4, $4)",
    )
    .bind("poisoned-job")
    .bind(palaver::whatsapp::webhook::PROCESS)
    .bind(&id)
    .bind(now)
    .execute(app.state.db.writer())
    .await
    .unwrap();
    app.state.db.wake_jobs();
    let error: String = crate::helpers::eventually(Duration::from_secs(20), || async {
        let row: Option<(Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT failed_at, last_error FROM jobs WHERE id = 'poisoned-job'")
                .fetch_optional(app.state.db.reader())
                .await
                .unwrap();
        match row {
            Some((Some(_), Some(e))) => Ok(e),
            other => Err(format!("not failed yet: {other:?}")),
        }
    })
    .await;
    assert!(error.contains("attempts"), "{error}");
    assert!(
        inbox(app, &owner, "", |_| true).await.is_empty(),
        "the body was not applied"
    );
}

dual_test!(queued_sends_survive_a_restart_and_go_once, custom);
async fn queued_sends_survive_a_restart_and_go_once(backend: crate::helpers::Backend) {
    let graph = fake_graph().await;
    let Some(app) = crate::helpers::spawn(backend, |s| s.job_workers = Some(0)).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let (owner, _) = connected(&app, &graph).await;
    // No workers: apply the customer's message the way an import does.
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&text_from(
        "4915100000001",
        "Fresh",
        "wamid.fresh",
        "hi",
        now,
    ))
    .unwrap();
    palaver::whatsapp::ingest::ingest(
        &app.state,
        &body,
        palaver::whatsapp::ingest::UnknownChannels::Skip,
    )
    .await
    .unwrap();
    let conv = inbox(&app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = reply(
            &app,
            &owner,
            &conv,
            json!({"type": "text", "text": format!("queued {i}")}),
        )
        .await;
        assert_eq!(r.body["status"], "pending", "{}", r.text);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    // One send was cut off mid-call by a crash: it must not go again.
    sqlx::query("UPDATE messages SET external_status = 'sending' WHERE id = $1")
        .bind(&ids[2])
        .execute(app.state.db.writer())
        .await
        .unwrap();
    assert!(sends(&graph).is_empty());

    let app = app.restart(|s| s.job_workers = Some(2)).await;
    let owner = app.login("owner@example.com", "after-restart").await;
    let h = history_until(&app, &owner, &conv, |h| {
        h.iter().filter(|m| m["status"] == "sent").count() == 2
            && h.iter().any(|m| m["status"] == "failed")
    })
    .await;
    let failed = h.iter().find(|m| m["id"] == ids[2].as_str()).unwrap();
    assert_eq!(failed["external"]["error"]["code"], "unknown_outcome");
    let s = sends(&graph);
    let texts: Vec<&str> = s
        .iter()
        .map(|(_, b)| b["text"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2, "each queued message sent once: {texts:?}");
    assert!(texts.contains(&"queued 0") && texts.contains(&"queued 1"));
    app.stop().await;
}

dual_test!(a_recorded_webhook_survives_a_restart, custom);
async fn a_recorded_webhook_survives_a_restart(backend: crate::helpers::Backend) {
    let graph = fake_graph().await;
    // No workers: the body is recorded and answered, not applied yet.
    let Some(app) = crate::helpers::spawn(backend, |s| s.job_workers = Some(0)).await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    };
    let (owner, _) = connected(&app, &graph).await;
    let body = text_from(
        "4915100000009",
        "Late",
        "wamid.late",
        "still there?",
        1_700_000_000,
    );
    assert_eq!(deliver(&app, &body, None).await.0, StatusCode::OK);
    let listed = app
        .get("/api/v1/conversations?kind=channel", &owner.token)
        .await;
    assert_eq!(listed.body["items"], json!([]));

    // A node that stops after the 200 loses nothing: the next start applies the body.
    let app = app.restart(|s| s.job_workers = Some(2)).await;
    let owner = app.login("owner@example.com", "after-restart").await;
    let items = inbox(&app, &owner, "", |i| i.len() == 1).await;
    assert_eq!(items[0]["lastMessage"]["text"], "still there?");
    app.stop().await;
}
