//! Automations: rules checked on the way in; customers' messages, opened conversations, stage
//! and tag changes fire them in order, once per cooldown, never on the automations' own
//! messages, with chains cut at their depth limit; timed triggers fire once, after a restart
//! too; webhooks arrive signed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{eventually, TestApp, User};
use crate::whatsapp::{connected, deliver, fake_graph, inbox, text_from, FakeGraph};

async fn rule(app: &TestApp, owner: &User, body: Value) -> String {
    let r = app
        .post("/api/v1/automations", Some(&owner.token), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn runs(app: &TestApp, owner: &User, rule: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/automations/{rule}/runs"), &owner.token)
        .await
        .assert_ok();
    r.body["items"].as_array().unwrap().clone()
}

/// Sets the workspace's hours: always closed, or always open.
async fn hours(app: &TestApp, owner: &User, open: bool) {
    let all_day = json!([{"open": "00:00", "close": "24:00"}]);
    let week = if open {
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .map(|d| (d.to_string(), all_day.clone()))
            .collect::<serde_json::Map<_, _>>()
    } else {
        serde_json::Map::new()
    };
    app.patch(
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"timezone": "Europe/Lisbon", "businessHours": week}}),
    )
    .await
    .assert_ok();
}

fn sends(graph: &FakeGraph) -> Vec<Value> {
    graph
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _, _)| m == "POST" && p.ends_with("/messages"))
        .map(|(_, _, _, body)| body.clone())
        .collect()
}

/// A customer message through the webhook, everything it sets off carried out.
async fn customer_says(app: &TestApp, wa_id: &str, wamid: &str, text: &str) {
    let now = chrono::Utc::now().timestamp();
    let (status, body) = deliver(app, &text_from(wa_id, "Rosa", wamid, text, now), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.run_pending_jobs().await;
}

dual_test!(rules_are_checked_kept_in_order_and_their_secrets_hidden);
async fn rules_are_checked_kept_in_order_and_their_secrets_hidden(app: &TestApp) {
    let (owner, agent, _) = crate::inbox::team(app).await;
    let bad = [
        json!({"name": "x", "trigger": {"type": "no_agent_reply"}, "actions": [{"type": "add_tag", "tag": "a"}]}),
        json!({"name": "x", "trigger": {"type": "first_message", "keyword": "hi"}, "actions": [{"type": "add_tag", "tag": "a"}]}),
        json!({"name": "x", "trigger": {"type": "message_received", "regex": "(unclosed"}, "actions": [{"type": "add_tag", "tag": "a"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": []}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "set_stage", "stage": "nowhere"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/x"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "webhook", "url": "http://10.0.0.1/x", "secret": "0123456789abcdef"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "assign", "assigneeId": "nobody"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "send_template", "templateId": "nope"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "fly"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "conditions": [{"field": "mood", "op": "eq", "value": "x"}], "actions": [{"type": "add_tag", "tag": "a"}]}),
        json!({"name": "x", "trigger": {"type": "message_received"}, "conditions": [{"field": "tags", "op": "eq", "value": "x"}], "actions": [{"type": "add_tag", "tag": "a"}]}),
        json!({"trigger": {"type": "message_received"}, "actions": [{"type": "add_tag", "tag": "a"}]}),
    ];
    for body in bad {
        let r = app
            .post("/api/v1/automations", Some(&owner.token), body.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
    }
    app.post(
        "/api/v1/automations",
        Some(&agent.token),
        json!({"name": "x", "trigger": {"type": "message_received"}, "actions": [{"type": "add_tag", "tag": "a"}]}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.get("/api/v1/automations", &agent.token)
        .await
        .assert_problem(403, "forbidden");

    let second = rule(app, &owner, json!({"name": "Second", "trigger": {"type": "tag_added", "tag": "vip"},
        "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-sixteen+"}]}))
    .await;
    let first = rule(app, &owner, json!({"name": "First", "position": 0, "trigger": {"type": "message_received", "keywords": ["Price", "cost"]},
        "conditions": [{"field": "attributes.plan", "op": "in", "value": ["gold", 3]}],
        "actions": [{"type": "send_text", "text": "Hi {{lead.name}}"}], "cooldownMinutes": 5}))
    .await;
    let list = app
        .get("/api/v1/automations", &owner.token)
        .await
        .assert_ok();
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["First", "Second"]);
    let one = &list.body[0];
    assert_eq!(
        one["trigger"],
        json!({"type": "message_received", "keywords": ["price", "cost"]})
    );
    assert_eq!(one["cooldownMinutes"], 5);
    assert_eq!(one["enabled"], true);
    // The webhook's secret is never shown, nor stored in the clear.
    assert!(!list.text.contains("a-secret-of-sixteen+"), "{}", list.text);
    assert_eq!(
        list.body[1]["actions"][0],
        json!({"type": "webhook", "url": "http://127.0.0.1:9/hook"})
    );
    let stored: String = sqlx::query_scalar("SELECT actions FROM automations WHERE id = $1")
        .bind(&second)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert!(!stored.contains("a-secret-of-sixteen+"));

    let r = app
        .patch(
            &format!("/api/v1/automations/{first}"),
            &owner.token,
            json!({"enabled": false, "position": 7}),
        )
        .await
        .assert_ok();
    assert_eq!(
        (r.body["enabled"].as_bool(), r.body["position"].as_i64()),
        (Some(false), Some(7))
    );
    let list = app
        .get("/api/v1/automations", &owner.token)
        .await
        .assert_ok();
    assert_eq!(list.body[0]["name"], "Second");
    app.patch(
        &format!("/api/v1/automations/{first}"),
        &owner.token,
        json!({"trigger": {"type": "no_customer_reply"}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    assert_eq!(runs(app, &owner, &first).await.len(), 0);
    let r = app
        .delete(&format!("/api/v1/automations/{first}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/automations/{first}"), &owner.token)
        .await
        .assert_problem(404, "not_found");
    let audit = app
        .get("/api/v1/audit?action=automation.created", &owner.token)
        .await
        .assert_ok();
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        audit.text
    );
}

dual_test!(customers_are_greeted_after_hours_and_answered_once_per_cooldown);
async fn customers_are_greeted_after_hours_and_answered_once_per_cooldown(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    hours(app, &owner, false).await;
    let open = app
        .get("/api/v1/inbox/hours", &owner.token)
        .await
        .assert_ok();
    assert_eq!(open.body["openNow"], false, "{}", open.text);
    assert_eq!(open.body["timezone"], "Europe/Lisbon");
    let after_hours = rule(app, &owner, json!({"name": "After hours", "trigger": {"type": "outside_business_hours"},
        "actions": [{"type": "send_text", "text": "Hello {{lead.name}}, we are closed; we answer when we open."},
                    {"type": "add_tag", "tag": "after-hours"}]}))
    .await;
    let price = rule(
        app,
        &owner,
        json!({"name": "Prices", "trigger": {"type": "message_received", "keyword": "price"},
        "actions": [{"type": "send_text", "text": "Our prices are at example.com/prices"}]}),
    )
    .await;
    let first = rule(
        app,
        &owner,
        json!({"name": "Welcome note", "trigger": {"type": "first_message"},
        "actions": [{"type": "add_note", "text": "New customer: {{lead.name}}"}]}),
    )
    .await;
    let vip_only = rule(
        app,
        &owner,
        json!({"name": "VIP", "trigger": {"type": "message_received"},
        "conditions": [{"field": "tags", "op": "contains", "value": "vip"}],
        "actions": [{"type": "add_tag", "tag": "seen-vip"}]}),
    )
    .await;

    customer_says(app, "4915100000001", "wamid.a1", "hello there").await;
    let conv = inbox(app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = sends(&graph);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["text"]["body"],
        "Hello Rosa, we are closed; we answer when we open."
    );
    let history = app.history(&owner, &conv).await;
    let automated: Vec<&Value> = history
        .iter()
        .filter(|m| m["sender"]["type"] == "system")
        .collect();
    assert_eq!(automated.len(), 1, "{history:?}");
    assert_eq!(automated[0]["type"], "text");
    let notes = app
        .get(&format!("/api/v1/conversations/{conv}/notes"), &owner.token)
        .await
        .assert_ok();
    assert!(notes.text.contains("New customer: Rosa"), "{}", notes.text);

    // The keyword fires its rule; the greeting waits for its cooldown; not a first message.
    customer_says(app, "4915100000001", "wamid.a2", "What is the PRICE?").await;
    let sent = sends(&graph);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[1]["text"]["body"],
        "Our prices are at example.com/prices"
    );
    // "priceless" is not the word; the cooldown holds the price rule anyway.
    customer_says(app, "4915100000001", "wamid.a3", "priceless").await;
    assert_eq!(sends(&graph).len(), 2);

    let r = runs(app, &owner, &after_hours).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["outcome"], "ok");
    assert_eq!(r[0]["conversationId"], conv.as_str());
    assert_eq!(r[0]["trigger"], "outside_business_hours");
    assert_eq!(
        r[0]["actions"],
        json!([{"type": "send_text", "ok": true}, {"type": "add_tag", "ok": true}])
    );
    assert_eq!(runs(app, &owner, &price).await.len(), 1);
    assert_eq!(runs(app, &owner, &first).await.len(), 1);
    assert_eq!(runs(app, &owner, &vip_only).await.len(), 0);
    let lead = app.get("/api/v1/leads", &owner.token).await.assert_ok();
    assert_eq!(lead.body["items"][0]["tags"], json!(["after-hours"]));

    // Open hours: no greeting for a new customer.
    hours(app, &owner, true).await;
    customer_says(app, "4915100000002", "wamid.b1", "hi").await;
    assert_eq!(sends(&graph).len(), 2);
    assert_eq!(runs(app, &owner, &first).await.len(), 2);
    let open = app
        .get("/api/v1/inbox/hours", &owner.token)
        .await
        .assert_ok();
    assert_eq!(open.body["openNow"], true, "{}", open.text);
}

dual_test!(a_chain_of_rules_stops_at_its_depth_limit);
async fn a_chain_of_rules_stops_at_its_depth_limit(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, _) = connected(app, &graph).await;
    let agent = app.signup("agent@example.com", "Ana Agent").await;
    crate::inbox::set_role(app, &owner, &agent, "agent").await;
    let mut chain = Vec::new();
    for (from, to) in [("a", "b"), ("b", "c"), ("c", "d"), ("d", "e")] {
        chain.push(
            rule(app, &owner, json!({"name": format!("{from} → {to}"), "trigger": {"type": "tag_added", "tag": from},
                "actions": [{"type": "add_tag", "tag": to}]}))
            .await,
        );
    }
    let template = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "bye", "language": "en_US", "category": "utility",
                   "components": [{"type": "BODY", "text": "Bye"}]}),
        )
        .await
        .assert_ok()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let qualified = rule(app, &owner, json!({"name": "Qualified", "trigger": {"type": "stage_changed", "stage": "qualified"},
        "actions": [{"type": "assign", "assigneeId": agent.id}, {"type": "notify", "userIds": [agent.id]},
                    {"type": "send_template", "templateId": template, "parameters": []}]}))
    .await;
    let r = app
        .delete(&format!("/api/v1/templates/{template}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    customer_says(app, "4915100000003", "wamid.c1", "hello").await;
    let conv = inbox(app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lead = app
        .get("/api/v1/leads", &owner.token)
        .await
        .assert_ok()
        .body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &format!("/api/v1/leads/{lead}"),
        &owner.token,
        json!({"tags": ["a"]}),
    )
    .await
    .assert_ok();
    app.run_pending_jobs().await;
    let now = app
        .get(&format!("/api/v1/leads/{lead}"), &owner.token)
        .await
        .assert_ok();
    assert_eq!(
        now.body["tags"],
        json!(["a", "b", "c", "d"]),
        "{}",
        now.text
    );
    for (i, id) in chain.iter().enumerate() {
        let r = runs(app, &owner, id).await;
        assert_eq!(r.len(), 1, "rule {i}: {r:?}");
        assert_eq!(r[0]["depth"], i as i64);
        assert_eq!(
            r[0]["outcome"],
            if i < 3 { "ok" } else { "skipped" },
            "{r:?}"
        );
    }

    // A stage change fires its rule: the assignment and the mention stay, the third action
    // fails (its template is gone) and the run says why.
    app.patch(
        &format!("/api/v1/leads/{lead}"),
        &owner.token,
        json!({"stage": "qualified"}),
    )
    .await
    .assert_ok();
    app.run_pending_jobs().await;
    let c = app.conversation(&owner, &conv).await;
    assert_eq!(c["assigneeId"], agent.id.as_str(), "{c}");
    let notes = app
        .get(&format!("/api/v1/conversations/{conv}/notes"), &agent.token)
        .await
        .assert_ok();
    let mention = notes.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mentions"] == json!([agent.id]))
        .cloned();
    assert!(mention.is_some(), "{}", notes.text);
    let r = runs(app, &owner, &qualified).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["outcome"], "failed");
    assert!(
        r[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("action 3 (send_template)"),
        "{r:?}"
    );
    assert_eq!(r[0]["actions"][0]["ok"], true);
    assert_eq!(r[0]["actions"][2]["ok"], false);
}

/// A stand-in receiver of automation webhooks: every request's headers and body.
type Hooks = Arc<Mutex<Vec<(reqwest::header::HeaderMap, String)>>>;

async fn receiver() -> (String, Hooks) {
    let seen: Hooks = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let first = s.lock().unwrap().is_empty();
                s.lock().unwrap().push((h, body));
                // The first delivery fails: it is tried again.
                if first {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("{base}/hook"), seen)
}

fn signed_right(headers: &reqwest::header::HeaderMap, body: &str, secret: &str) -> bool {
    use hmac::Mac;
    let ts = headers["x-palaver-timestamp"].to_str().unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    headers["x-palaver-signature"].to_str().unwrap() == want
}

/// Moves every time of the data back by `ms`, as if that long had passed. (The rules go back
/// an hour more: WhatsApp's timestamps are whole seconds, and a customer who wrote in the
/// second the rule was made would count as before it.)
async fn age(app: &TestApp, ms: i64) {
    let db = app.state.db.writer();
    for sql in [
        "UPDATE conversations SET last_inbound_at = last_inbound_at - $1 WHERE last_inbound_at IS NOT NULL",
        "UPDATE messages SET created_at = created_at - $1",
        "UPDATE automations SET enabled_at = enabled_at - $1 - 3600000",
    ] {
        sqlx::query(sql).bind(ms).execute(db).await.unwrap();
    }
}

dual_test!(timed_triggers_fire_once_even_across_a_restart, custom);
async fn timed_triggers_fire_once_even_across_a_restart(backend: crate::helpers::Backend) {
    let Some(app) = crate::helpers::spawn(backend, |s| s.automation_scan = Some(1)).await else {
        return;
    };
    let graph = fake_graph().await;
    let (owner, channel) = connected(&app, &graph).await;
    let (url, hooks) = receiver().await;
    let secret = "whsec-0123456789abcdef";
    let waiting = rule(&app, &owner, json!({"name": "Nobody answered", "trigger": {"type": "no_agent_reply", "minutes": 10},
        "actions": [{"type": "set_status", "status": "pending"}, {"type": "webhook", "url": url, "secret": secret}]}))
    .await;
    let template = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "follow_up", "language": "en_US", "category": "utility",
                   "components": [{"type": "BODY", "text": "Still interested, {{1}}?"}]}),
        )
        .await
        .assert_ok()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let follow_up = rule(&app, &owner, json!({"name": "Follow up", "trigger": {"type": "no_customer_reply", "hours": 24},
        "conditions": [{"field": "channel", "op": "eq", "value": channel}],
        "actions": [{"type": "send_template", "templateId": template, "parameters": ["{{lead.name}}"]}]}))
    .await;
    customer_says(&app, "4915100000004", "wamid.d1", "anyone there?").await;
    let conv = inbox(&app, &owner, "", |i| i.len() == 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The server is down while the ten minutes pass.
    let app = app.restart(|s| s.job_workers = Some(0)).await;
    age(&app, 11 * 60_000).await;
    let app = app.restart(|s| s.job_workers = None).await;
    let hook = eventually(Duration::from_secs(30), || async {
        let h = hooks.lock().unwrap();
        match h.len() {
            2 => Ok(h.clone()),
            n => Err(format!("{n} webhook requests")),
        }
    })
    .await;
    // Tried again after the 503, with the same delivery id, each attempt signed.
    assert_eq!(
        hook[0].0["x-palaver-delivery"],
        hook[1].0["x-palaver-delivery"]
    );
    for (headers, body) in &hook {
        assert!(signed_right(headers, body, secret), "{headers:?}");
        assert!(!signed_right(headers, body, "another-secret-entirely"));
    }
    let body: Value = serde_json::from_str(&hook[1].1).unwrap();
    assert_eq!(body["automation"]["id"], waiting.as_str());
    assert_eq!(body["conversation"]["id"], conv.as_str());
    assert_eq!(body["lead"]["phone"], "+4915100000004");
    app.run_pending_jobs().await;
    assert_eq!(app.conversation(&owner, &conv).await["status"], "pending");

    // The agent answers; a day passes without the customer: one follow-up, a template
    // (the window has closed), and no follow-up of the follow-up.
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &owner.token,
        json!({"status": "open"}),
    )
    .await
    .assert_ok();
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&owner.token),
            json!({"type": "text", "text": "Here now, how can I help?", "clientMsgId": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    app.run_pending_jobs().await;
    age(&app, 25 * 3_600_000).await;
    let follow = eventually(Duration::from_secs(30), || async {
        let s = sends(&graph);
        match s.iter().filter(|b| b["type"] == "template").count() {
            1 => Ok(s),
            n => Err(format!("{n} template sends: {s:?}")),
        }
    })
    .await;
    let tpl = follow.iter().find(|b| b["type"] == "template").unwrap();
    assert_eq!(tpl["template"]["name"], "follow_up");
    assert_eq!(
        tpl["template"]["components"][0]["parameters"][0]["text"],
        "Rosa"
    );
    // Three more scans (and an aged follow-up) change nothing: each wait fired once.
    age(&app, 25 * 3_600_000).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    app.run_pending_jobs().await;
    assert_eq!(
        sends(&graph)
            .iter()
            .filter(|b| b["type"] == "template")
            .count(),
        1
    );
    assert_eq!(runs(&app, &owner, &waiting).await.len(), 1);
    assert_eq!(runs(&app, &owner, &follow_up).await.len(), 1);
    assert_eq!(hooks.lock().unwrap().len(), 2);
    app.stop().await;
}
