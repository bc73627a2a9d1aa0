//! AI analysis with the built-in offline analyzer: opt-in, a manual run, the insight for the
//! agents (HTTP and `insight:new`), never for the customer.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};
use crate::inbox::team;

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn settings(app: &TestApp, owner: &User, ai: Value) {
    let r = app
        .patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": {"support": {"enabled": true, "whoMayWrite": "members"}, "ai": ai}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

dual_test!(an_agent_asks_and_the_offline_analyzer_answers);
async fn an_agent_asks_and_the_offline_analyzer_answers(app: &TestApp) {
    let (owner, agent, patient) = team(app).await;
    settings(app, &owner, json!({"enabled": false})).await;
    let conv = crate::inbox::support_conversation(app, &patient).await;
    app.say(
        &patient,
        &conv,
        "Hello. Can I take ibuprofen with amlodipine?",
    )
    .await;
    app.post(
        "/api/v1/canned-responses",
        Some(&agent.token),
        json!({"shortCode": "ibuprofen", "text": "Hi {{lead.name}}, ibuprofen can raise blood pressure: ask us first."}),
    )
    .await
    .assert_ok();
    let analyze = json!({"conversationId": conv});
    // Not before the workspace opted in; never by the customer; bad settings are refused.
    app.post("/api/v1/ai/analyze", Some(&agent.token), analyze.clone())
        .await
        .assert_problem(409, "ai_not_enabled");
    let r = app
        .patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": {"ai": {"enabled": true, "idleAfterSeconds": 0}}}),
        )
        .await;
    r.assert_problem(422, "validation_failed");
    settings(app, &owner, json!({"enabled": true})).await;
    app.post("/api/v1/ai/analyze", Some(&patient.token), analyze.clone())
        .await
        .assert_problem(404, "not_found");

    let (_socket, mut events) = palaver::client::connect(&app.base, &json!({"token": agent.token}))
        .await
        .unwrap();
    let r = app
        .post("/api/v1/ai/analyze", Some(&agent.token), analyze.clone())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let run = r.body["runId"].as_str().unwrap().to_owned();
    app.run_pending_jobs().await;
    let live = events.expect("insight:new", WAIT).await.unwrap();
    assert_eq!(live["conversationId"], conv.as_str());
    let insight = &live["insight"];
    assert_eq!(insight["provider"], "offline");
    assert_eq!(insight["offline"], true);
    assert_eq!(insight["trigger"], "manual");
    assert_eq!(insight["language"], "en");
    assert_eq!(
        insight["openQuestions"],
        json!(["Can I take ibuprofen with amlodipine?"])
    );
    assert_eq!(
        insight["suggestedReply"],
        "Hi Max Member, ibuprofen can raise blood pressure: ask us first."
    );
    assert_eq!(
        insight["tokens"],
        json!({"prompt": 0, "completion": 0, "total": 0})
    );
    assert_eq!(
        (insight["fromSeq"].as_i64(), insight["toSeq"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(
        insight["summary"]
            .as_str()
            .unwrap()
            .starts_with("Offline analysis:"),
        "{insight}"
    );

    let done = app
        .get(&format!("/api/v1/ai/runs/{run}"), &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["insightId"], insight["id"]);
    let listed = app
        .get(
            &format!("/api/v1/conversations/{conv}/insights"),
            &owner.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(listed["items"][0]["id"], insight["id"]);
    // A second run: newest first, paged.
    app.post("/api/v1/ai/analyze", Some(&agent.token), analyze.clone())
        .await
        .assert_ok();
    app.run_pending_jobs().await;
    let second = events.expect("insight:new", WAIT).await.unwrap();
    let page = app
        .get(
            &format!("/api/v1/conversations/{conv}/insights?limit=1"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(page["items"][0]["id"], second["insight"]["id"]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let older = app
        .get(
            &format!("/api/v1/conversations/{conv}/insights?limit=1&cursor={cursor}"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(older["items"][0]["id"], insight["id"]);
    assert!(older["nextCursor"].is_null(), "{older}");
    // The customer sees none of it.
    app.get(
        &format!("/api/v1/conversations/{conv}/insights"),
        &patient.token,
    )
    .await
    .assert_problem(404, "not_found");
    app.get(&format!("/api/v1/ai/runs/{run}"), &patient.token)
        .await
        .assert_problem(403, "forbidden");
    // A direct chat is not an inbox conversation.
    let direct = app.direct(&agent, &owner).await;
    app.post(
        "/api/v1/ai/analyze",
        Some(&agent.token),
        json!({"conversationId": direct}),
    )
    .await
    .assert_problem(404, "not_found");
}
