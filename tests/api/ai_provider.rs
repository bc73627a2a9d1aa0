//! AI analysis with an OpenAI-compatible provider: a stand-in chat-completions server (real
//! HTTP) answers, asks to retry (429 with `Retry-After`), times out, answers malformed JSON or
//! no usage; keys are added, rotated with a grace period and revoked without ever being shown;
//! usage is read by day and by key; the monthly budget refuses calls; the idle trigger fires
//! once per quiet period, and after a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::IntoResponse;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{eventually, TestApp, User};
use crate::inbox::{support_conversation, team};

const WAIT: Duration = Duration::from_secs(15);
const SERVER_KEY: &str = "sk-server-default-0123456789-abcd";

/// One scripted answer of the stand-in.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this content and, when given, this usage.
    Content(String, Option<(i64, i64)>),
    Status(u16, Option<&'static str>),
    /// Answers after this long (longer than the server's timeout).
    Slow(Duration),
}

/// A request the stand-in received: its bearer key and body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    seen: Vec<Seen>,
    /// Keys refused with 401 (a key the provider does not know yet).
    refused: Vec<String>,
}

pub struct Provider {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

pub fn good_insight() -> String {
    json!({"summary": "The customer asks whether the refill is ready.",
        "openQuestions": ["Is my refill ready?"], "recommendations": ["Check the refill and answer."],
        "suggestedReply": "Hello! Your refill is ready for pick-up.", "sentiment": "neutral",
        "language": "en"})
    .to_string()
}

impl Provider {
    pub async fn start() -> Provider {
        let script = Arc::new(Mutex::new(Script::default()));
        let s = script.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(
                move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let s = s.clone();
                    async move { answer(&s, &headers, body).await }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Provider { url, script }
    }

    pub fn then(&self, reply: Reply) -> &Provider {
        self.script.lock().unwrap().replies.push_back(reply);
        self
    }

    pub fn refuse(&self, key: &str) {
        self.script.lock().unwrap().refused.push(key.to_owned());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}

async fn answer(
    script: &Mutex<Script>,
    headers: &HeaderMap,
    body: Value,
) -> axum::response::Response {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let reply = {
        let mut s = script.lock().unwrap();
        s.seen.push(Seen {
            key: key.clone(),
            body,
        });
        if key.as_ref().is_some_and(|k| s.refused.contains(k)) {
            return (
                AxumStatus::UNAUTHORIZED,
                "{\"error\":{\"message\":\"bad key\"}}",
            )
                .into_response();
        }
        s.replies
            .pop_front()
            .unwrap_or(Reply::Content(good_insight(), Some((120, 30))))
    };
    match reply {
        Reply::Content(content, usage) => {
            let mut v = json!({"id": "chatcmpl-1", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]});
            if let Some((p, c)) = usage {
                v["usage"] =
                    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
            }
            axum::Json(v).into_response()
        }
        Reply::Status(code, retry_after) => {
            let mut r = (AxumStatus::from_u16(code).unwrap(), "{\"error\":{}}").into_response();
            if let Some(after) = retry_after {
                r.headers_mut()
                    .insert("retry-after", after.parse().unwrap());
            }
            r
        }
        Reply::Slow(d) => {
            tokio::time::sleep(d).await;
            axum::Json(json!({})).into_response()
        }
    }
}

async fn enable(app: &TestApp, owner: &User, ai: Value) {
    let r = app
        .patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": {"support": {"enabled": true, "whoMayWrite": "members"}, "ai": ai}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Asks for a run: its id.
async fn ask(app: &TestApp, agent: &User, conversation: &str) -> String {
    let r = app
        .post(
            "/api/v1/ai/analyze",
            Some(&agent.token),
            json!({"conversationId": conversation}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.body["runId"].as_str().unwrap().to_owned()
}

/// Asks for a run and waits for its end: the run's view.
async fn analysed(app: &TestApp, agent: &User, conversation: &str) -> Value {
    let run = ask(app, agent, conversation).await;
    app.run_pending_jobs().await;
    eventually(WAIT, || async {
        let v = app
            .get(&format!("/api/v1/ai/runs/{run}"), &agent.token)
            .await
            .body;
        if v["status"] == "queued" {
            Err(format!("still queued: {v}"))
        } else {
            Ok(v)
        }
    })
    .await
}

async fn insight(app: &TestApp, agent: &User, id: &Value, conversation: &str) -> Value {
    let list = app
        .get(
            &format!("/api/v1/conversations/{conversation}/insights"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| &i["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("insight {id} not in {list}"))
}

fn with_provider(url: String) -> impl FnOnce(&mut palaver::config::Settings) {
    move |s| {
        s.ai_url = Some(url);
        s.ai_api_key = Some(SERVER_KEY.into());
        s.ai_timeout = Some(1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_retried_and_every_call_is_recorded_sqlite() {
    a_provider_is_retried_and_every_call_is_recorded(crate::helpers::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_is_retried_and_every_call_is_recorded_postgres() {
    if std::env::var_os("TEST_DATABASE_URL").is_none() {
        eprintln!("skipped: TEST_DATABASE_URL is not set");
        return;
    }
    a_provider_is_retried_and_every_call_is_recorded(crate::helpers::Backend::Postgres).await;
}

async fn a_provider_is_retried_and_every_call_is_recorded(backend: crate::helpers::Backend) {
    let provider = Provider::start().await;
    let app = crate::helpers::spawn(backend, with_provider(provider.url.clone()))
        .await
        .unwrap();
    let (owner, agent, patient) = team(&app).await;
    enable(&app, &owner, json!({"enabled": true, "maskContacts": true})).await;
    let conv = support_conversation(&app, &patient).await;
    app.say(
        &patient,
        &conv,
        "Call me at +1 415 555 0100 or mail bob@example.com. Is my refill ready?",
    )
    .await;
    let (_socket, mut events) = palaver::client::connect(&app.base, &json!({"token": agent.token}))
        .await
        .unwrap();

    // A 429 with Retry-After, then the answer.
    provider.then(Reply::Status(429, Some("1")));
    let run = analysed(&app, &agent, &conv).await;
    assert_eq!(run["status"], "completed", "{run}");
    let live = events.expect("insight:new", WAIT).await.unwrap();
    let i = &live["insight"];
    assert_eq!(i["id"], run["insightId"]);
    assert_eq!(
        (
            i["provider"].as_str(),
            i["offline"].as_bool(),
            i["model"].as_str()
        ),
        (Some("openai"), Some(false), Some("gpt-4o-mini"))
    );
    assert_eq!(
        i["tokens"],
        json!({"prompt": 120, "completion": 30, "total": 150})
    );
    assert_eq!(
        i["summary"],
        "The customer asks whether the refill is ready."
    );
    assert_eq!(
        i["suggestedReply"],
        "Hello! Your refill is ready for pick-up."
    );
    assert_eq!(
        (i["fromSeq"].as_i64(), i["toSeq"].as_i64()),
        (Some(1), Some(1))
    );
    let seen = provider.seen();
    assert_eq!(seen.len(), 2, "tried again after the 429");
    let body = &seen[1].body;
    assert_eq!(seen[1].key.as_deref(), Some(SERVER_KEY));
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    let transcript = body["messages"][1]["content"].as_str().unwrap();
    assert!(
        transcript.contains("[phone]") && transcript.contains("[email]"),
        "{transcript}"
    );
    assert!(
        !transcript.contains("415") && !transcript.contains("bob@"),
        "{transcript}"
    );
    assert!(transcript.contains("customer") && transcript.contains("Is my refill ready?"));

    // What was sent, for the admins; never for agents.
    let calls = app
        .get("/api/v1/admin/ai/calls", &owner.token)
        .await
        .assert_ok()
        .body;
    let call = &calls["items"][0];
    assert_eq!(
        (
            call["outcome"].as_str(),
            call["attempts"].as_i64(),
            call["keyId"].is_null()
        ),
        (Some("ok"), Some(2), true)
    );
    assert_eq!(call["sent"], body["messages"]);
    assert_eq!(call["tokensCounted"], false);
    app.get("/api/v1/admin/ai/calls", &agent.token)
        .await
        .assert_problem(403, "forbidden");
    app.get("/api/v1/admin/ai/usage", &agent.token)
        .await
        .assert_problem(403, "forbidden");

    // A malformed answer fails the run and makes no insight; so does a timeout (three tries).
    provider.then(Reply::Content(
        "Sure! The customer wants a refill.".into(),
        Some((50, 9)),
    ));
    let run = analysed(&app, &agent, &conv).await;
    assert_eq!(run["status"], "failed");
    assert!(run["insightId"].is_null());
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("not the insight object"),
        "{run}"
    );
    for _ in 0..3 {
        provider.then(Reply::Slow(Duration::from_secs(3)));
    }
    let run = analysed(&app, &agent, &conv).await;
    assert_eq!(run["status"], "failed");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1 s"),
        "{run}"
    );
    // A 400 is not tried again.
    provider.then(Reply::Status(400, None));
    let before = provider.seen().len();
    let run = analysed(&app, &agent, &conv).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(provider.seen().len(), before + 1);
    // No usage in the answer: the tokens are counted here.
    provider.then(Reply::Content(good_insight(), None));
    let run = analysed(&app, &agent, &conv).await;
    let counted = insight(&app, &agent, &run["insightId"], &conv).await;
    assert!(
        counted["tokens"]["prompt"].as_i64().unwrap() > 100,
        "{counted}"
    );
    assert!(
        counted["tokens"]["completion"].as_i64().unwrap() > 20,
        "{counted}"
    );

    // Usage: by day, by key (the server's provider), by model; CSV.
    let u = app
        .get("/api/v1/admin/ai/usage?groupBy=key", &owner.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(u["items"].as_array().unwrap().len(), 1, "{u}");
    assert_eq!(u["items"][0]["group"], "server");
    assert_eq!(
        (
            u["totals"]["calls"].as_i64(),
            u["totals"]["failures"].as_i64()
        ),
        (Some(5), Some(3))
    );
    let day = app
        .get("/api/v1/admin/ai/usage?groupBy=day", &owner.token)
        .await
        .assert_ok()
        .body;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(day["items"][0]["group"], today.as_str());
    let by_conversation = app
        .get("/api/v1/admin/ai/usage?groupBy=conversation", &owner.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(by_conversation["items"][0]["group"], conv.as_str());
    assert_eq!(by_conversation["totals"], day["totals"]);
    assert_eq!(day["totals"], u["totals"]);
    assert!(u["totals"]["promptTokens"].as_i64().unwrap() >= 170);
    let csv = app
        .get(
            &format!("/api/v1/admin/ai/usage.csv?from={today}&to={today}&groupBy=model"),
            &owner.token,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.text.starts_with(
            "group,calls,failures,promptTokens,completionTokens,totalTokens\ngpt-4o-mini,5,3,"
        ),
        "{}",
        csv.text
    );
    app.get("/api/v1/admin/ai/usage?groupBy=week", &owner.token)
        .await
        .assert_problem(422, "validation_failed");
    app.get("/api/v1/admin/ai/usage?from=2026-13-01", &owner.token)
        .await
        .assert_problem(422, "validation_failed");
    // The customer sees none of it.
    app.get(
        &format!("/api/v1/conversations/{conv}/insights"),
        &patient.token,
    )
    .await
    .assert_problem(404, "not_found");
    app.stop().await;
}

dual_test!(keys_rotate_with_a_grace_period_and_are_never_shown, |s| {
    s.ai_idle_scan = Some(1);
});
async fn keys_rotate_with_a_grace_period_and_are_never_shown(app: &TestApp) {
    let provider = Provider::start().await;
    let (owner, agent, patient) = team(app).await;
    enable(app, &owner, json!({"enabled": true})).await;
    let conv = support_conversation(app, &patient).await;
    app.say(&patient, &conv, "Is my refill ready?").await;
    let (first, second) = (
        "sk-first-key-000000000000-1111",
        "sk-second-key-00000000000-2222",
    );
    let mut answers = Vec::new();

    let body =
        json!({"name": "Pharmacy", "apiKey": first, "baseUrl": provider.url, "model": "llama3.1"});
    app.post("/api/v1/admin/ai/keys", Some(&agent.token), body.clone())
        .await
        .assert_problem(403, "forbidden");
    app.post(
        "/api/v1/admin/ai/keys",
        Some(&owner.token),
        json!({"name": "x"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post(
        "/api/v1/admin/ai/keys",
        Some(&owner.token),
        json!({"name": "x", "apiKey": "k", "baseUrl": "ftp://example.com"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = app
        .post("/api/v1/admin/ai/keys", Some(&owner.token), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    answers.push(r.text.clone());
    let old = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["masked"], "••••1111");
    assert_eq!(
        (r.body["status"].as_str(), r.body["model"].as_str()),
        (Some("active"), Some("llama3.1"))
    );

    let run = analysed(app, &agent, &conv).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(provider.seen()[0].key.as_deref(), Some(first));
    assert_eq!(provider.seen()[0].body["model"], "llama3.1");

    // Rotation: the provider does not know the new key yet; the retiring one carries the call.
    provider.refuse(second);
    let r = app
        .post(
            &format!("/api/v1/admin/ai/keys/{old}/rotate"),
            Some(&owner.token),
            json!({"apiKey": second, "graceSeconds": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    answers.push(r.text.clone());
    let new = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (r.body["status"].as_str(), r.body["masked"].as_str()),
        (Some("active"), Some("••••2222"))
    );
    app.post(
        &format!("/api/v1/admin/ai/keys/{old}/rotate"),
        Some(&owner.token),
        json!({"apiKey": second}),
    )
    .await
    .assert_problem(409, "ai_key_not_active");
    let list = app
        .get("/api/v1/admin/ai/keys", &owner.token)
        .await
        .assert_ok();
    answers.push(list.text.clone());
    assert_eq!(list.body[1]["id"], old.as_str());
    assert_eq!(list.body[1]["status"], "retiring");
    let run = analysed(app, &agent, &conv).await;
    assert_eq!(run["status"], "completed", "{run}");
    let keys: Vec<_> = provider
        .seen()
        .iter()
        .skip(1)
        .map(|s| s.key.clone().unwrap())
        .collect();
    assert_eq!(keys, [second, first]);
    let calls = app
        .get("/api/v1/admin/ai/calls", &owner.token)
        .await
        .assert_ok();
    answers.push(calls.text.clone());
    assert_eq!(calls.body["items"][0]["keyId"], old.as_str());
    assert_eq!(calls.body["items"][0]["outcome"], "ok");

    // The grace ends: the old key is revoked by the scheduler, with an audit entry.
    let retired = eventually(WAIT, || async {
        let list = app.get("/api/v1/admin/ai/keys", &owner.token).await.body;
        let audit = app
            .get("/api/v1/audit?action=ai_key.", &owner.token)
            .await
            .body;
        let actions: Vec<String> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect();
        if list[1]["status"] == "revoked" && actions.contains(&"ai_key.retired".to_owned()) {
            Ok(actions)
        } else {
            Err(format!("{list} {audit}"))
        }
    })
    .await;
    assert_eq!(
        retired,
        ["ai_key.retired", "ai_key.rotated", "ai_key.created"]
    );
    provider.refuse(first);
    let usage = app
        .get("/api/v1/admin/ai/usage?groupBy=key", &owner.token)
        .await
        .assert_ok()
        .body;
    let groups: Vec<_> = usage["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["group"].clone())
        .collect();
    assert!(groups.contains(&json!(old)), "{usage}");

    // Revoked: the workspace falls back to the offline analyzer (no server provider here).
    let r = app
        .delete(&format!("/api/v1/admin/ai/keys/{new}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let run = analysed(app, &agent, &conv).await;
    let i = insight(app, &agent, &run["insightId"], &conv).await;
    assert_eq!(i["provider"], "offline");
    let audit = app
        .get("/api/v1/audit?action=ai_key.revoked", &owner.token)
        .await
        .assert_ok();
    assert_eq!(audit.body["items"][0]["target"]["id"], new.as_str());
    answers.push(app.get("/api/v1/admin/ai/keys", &owner.token).await.text);
    answers.push(audit.text);
    for text in &answers {
        assert!(
            !text.contains(first) && !text.contains(second),
            "a key in {text}"
        );
    }
    // At rest the keys are sealed.
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret FROM ai_keys")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored
        .iter()
        .all(|s| s.starts_with("v1.") && !s.contains("key")));
}

/// Adds a workspace key pointing at `provider`.
async fn add_key(app: &TestApp, owner: &User, provider: &Provider) -> String {
    let body =
        json!({"name": "main", "apiKey": "sk-budget-key-0000000000-3333", "baseUrl": provider.url});
    let r = app
        .post("/api/v1/admin/ai/keys", Some(&owner.token), body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

dual_test!(the_budget_refuses_calls_and_tells_the_admins_once);
async fn the_budget_refuses_calls_and_tells_the_admins_once(app: &TestApp) {
    let provider = Provider::start().await;
    let (owner, agent, patient) = team(app).await;
    enable(
        app,
        &owner,
        json!({"enabled": true, "monthlyTokenBudget": 100}),
    )
    .await;
    add_key(app, &owner, &provider).await;
    let conv = support_conversation(app, &patient).await;
    app.say(&patient, &conv, "Is my refill ready?").await;
    let (_socket, mut events) = palaver::client::connect(&app.base, &json!({"token": owner.token}))
        .await
        .unwrap();

    // Under the budget: the call is made (150 tokens, past it).
    assert_eq!(analysed(app, &agent, &conv).await["status"], "completed");
    // Then refused before it is made, recorded, and the admins told once.
    for _ in 0..2 {
        let run = analysed(app, &agent, &conv).await;
        assert_eq!(run["status"], "failed");
        assert!(
            run["error"]
                .as_str()
                .unwrap()
                .contains("monthly token budget (100)"),
            "{run}"
        );
    }
    assert_eq!(provider.seen().len(), 1);
    let told = events.expect("ai:budget_exhausted", WAIT).await.unwrap();
    assert_eq!(
        (told["budget"].as_i64(), told["used"].as_i64()),
        (Some(100), Some(150))
    );
    let audit = app
        .get("/api/v1/audit?action=ai.budget_exhausted", &owner.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");
    let usage = app
        .get("/api/v1/admin/ai/usage", &owner.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(
        usage["totals"],
        json!({"calls": 3, "failures": 2, "promptTokens": 120, "completionTokens": 30, "totalTokens": 150})
    );
    let calls = app
        .get("/api/v1/admin/ai/calls", &owner.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(calls["items"][0]["outcome"], "refused");
    assert!(calls["items"][0]["sent"].is_null());
    // A larger budget lets calls through again.
    enable(
        app,
        &owner,
        json!({"enabled": true, "monthlyTokenBudget": 1000}),
    )
    .await;
    assert_eq!(analysed(app, &agent, &conv).await["status"], "completed");
}

dual_test!(the_idle_trigger_fires_once_per_quiet_period, |s| {
    s.ai_idle_scan = Some(1);
});
async fn the_idle_trigger_fires_once_per_quiet_period(app: &TestApp) {
    let (owner, agent, patient) = team(app).await;
    enable(app, &owner, json!({"enabled": true, "idleAfterSeconds": 1})).await;
    let conv = support_conversation(app, &patient).await;
    let (_a, mut agent_events) =
        palaver::client::connect(&app.base, &json!({"token": agent.token}))
            .await
            .unwrap();
    let (_p, mut patient_events) =
        palaver::client::connect(&app.base, &json!({"token": patient.token}))
            .await
            .unwrap();
    app.say(&patient, &conv, "Do you have amoxicillin in stock?")
        .await;
    let first = agent_events.expect("insight:new", WAIT).await.unwrap();
    let i = &first["insight"];
    assert_eq!(
        (i["trigger"].as_str(), i["toSeq"].as_i64()),
        (Some("idle"), Some(1))
    );
    // The same quiet period is not analysed again, however often (and by whom) it is scanned.
    let queued = palaver::ai::idle::scan(&app.state.db, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(queued, 0);
    // New messages, a new quiet period, a new insight that covers them.
    enable(app, &owner, json!({"enabled": true, "idleAfterSeconds": 2})).await;
    app.say(&agent, &conv, "We do. Do you have a prescription?")
        .await;
    app.say(&patient, &conv, "Yes, from Dr. Silva.").await;
    let second = agent_events.expect("insight:new", WAIT).await.unwrap();
    assert_eq!(second["insight"]["toSeq"], 3, "{second}");
    assert_eq!(second["insight"]["trigger"], "idle");
    let list = app
        .get(
            &format!("/api/v1/conversations/{conv}/insights"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    // The customer heard the messages, never an insight.
    while let Some(e) = patient_events.try_next() {
        assert_ne!(e.name, "insight:new");
    }
    // Opted out: nothing is analysed.
    enable(
        app,
        &owner,
        json!({"enabled": false, "idleAfterSeconds": 1}),
    )
    .await;
    app.say(&patient, &conv, "Thanks!").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let queued = palaver::ai::idle::scan(&app.state.db, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(queued, 0);
}

dual_test!(
    a_quiet_period_that_ended_while_down_is_analysed_after_the_restart,
    custom
);
async fn a_quiet_period_that_ended_while_down_is_analysed_after_the_restart(
    backend: crate::helpers::Backend,
) {
    let Some(app) = crate::helpers::spawn(backend, |s| s.ai_idle_scan = Some(60)).await else {
        return;
    };
    let (owner, _agent, patient) = team(&app).await;
    enable(
        &app,
        &owner,
        json!({"enabled": true, "idleAfterSeconds": 1}),
    )
    .await;
    let conv = support_conversation(&app, &patient).await;
    app.say(&patient, &conv, "Is the pharmacy open on Sunday?")
        .await;
    // Stopped before its quiet period ended; started after, with a scan at start.
    let app = app.restart(|s| s.ai_idle_scan = Some(1)).await;
    let (_a, mut events) = palaver::client::connect(&app.base, &json!({"token": owner.token}))
        .await
        .unwrap();
    let found = eventually(WAIT, || async {
        let list = app
            .get(
                &format!("/api/v1/conversations/{conv}/insights"),
                &owner.token,
            )
            .await
            .body;
        match list["items"].as_array().map(Vec::len) {
            Some(0) | None => Err(format!("no insight yet: {list}")),
            Some(_) => Ok(list),
        }
    })
    .await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["trigger"], "idle");
    let _ = events.try_next();
    app.stop().await;
}

// Two nodes' scans racing over the same quiet conversations queue one run each (the server's
// own scan waits a minute here).
dual_test!(racing_scans_queue_one_run_per_quiet_period, |s| {
    s.ai_idle_scan = Some(60);
});
async fn racing_scans_queue_one_run_per_quiet_period(app: &TestApp) {
    let (owner, _agent, _patient) = team(app).await;
    enable(app, &owner, json!({"enabled": true, "idleAfterSeconds": 1})).await;
    let mut conversations = Vec::new();
    for i in 0..20 {
        let customer = app.signup(&format!("customer{i}@example.com"), "C").await;
        let conv = support_conversation(app, &customer).await;
        app.say(&customer, &conv, "Hello?").await;
        conversations.push(conv);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let db = app.state.db.clone();
    let scans: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                palaver::ai::idle::scan(&db, Duration::from_secs(1))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut total = 0;
    for s in scans {
        total += s.await.unwrap();
    }
    assert_eq!(total, 20);
    let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ai_runs WHERE trigger_kind = 'idle'")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(runs, 20);
}

dual_test!(
    a_workspace_that_opts_out_before_the_job_runs_sends_nothing,
    custom
);
async fn a_workspace_that_opts_out_before_the_job_runs_sends_nothing(
    backend: crate::helpers::Backend,
) {
    let provider = Provider::start().await;
    // No job runs on this node until the restart.
    let Some(app) = crate::helpers::spawn(backend, |s| s.job_workers = Some(0)).await else {
        return;
    };
    let (owner, agent, patient) = team(&app).await;
    enable(&app, &owner, json!({"enabled": true})).await;
    add_key(&app, &owner, &provider).await;
    let conv = support_conversation(&app, &patient).await;
    app.say(&patient, &conv, "Is my refill ready?").await;
    let run = ask(&app, &agent, &conv).await;
    enable(&app, &owner, json!({"enabled": false})).await;
    let app = app.restart(|s| s.job_workers = None).await;
    app.run_pending_jobs().await;
    let v = app
        .get(&format!("/api/v1/ai/runs/{run}"), &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(
        (v["status"].as_str(), v["error"].as_str()),
        (Some("failed"), Some("AI analysis was turned off"))
    );
    assert!(provider.seen().is_empty(), "nothing was sent");
    app.stop().await;
}

dual_test!(erasing_an_account_erases_what_ai_kept_of_its_conversations);
async fn erasing_an_account_erases_what_ai_kept_of_its_conversations(app: &TestApp) {
    let provider = Provider::start().await;
    let (owner, agent, patient) = team(app).await;
    enable(app, &owner, json!({"enabled": true})).await;
    add_key(app, &owner, &provider).await;
    let conv = support_conversation(app, &patient).await;
    app.say(
        &patient,
        &conv,
        "My prescription number is 4471, is it ready?",
    )
    .await;
    assert_eq!(analysed(app, &agent, &conv).await["status"], "completed");
    let calls = app
        .get("/api/v1/admin/ai/calls", &owner.token)
        .await
        .assert_ok()
        .body;
    assert!(calls["items"][0]["sent"].to_string().contains("4471"));

    let r = app.delete("/api/v1/users/me", &patient.token).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let calls = app
        .get("/api/v1/admin/ai/calls", &owner.token)
        .await
        .assert_ok()
        .body;
    assert!(calls["items"][0]["sent"].is_null(), "{calls}");
    assert_eq!(calls["items"][0]["promptTokens"], 120, "the usage stays");
    let insights = app
        .get(
            &format!("/api/v1/conversations/{conv}/insights"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(insights["items"], json!([]));
}
