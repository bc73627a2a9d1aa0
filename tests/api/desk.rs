//! The support desk's face: with `showAgentNames` off, the customer never learns which agent
//! wrote, reacted, read or typed — every agent is the team, named by the workspace's id — over
//! HTTP, sync, search and the socket; agents still see one another.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};
use crate::inbox::{open_desk, set_role, team};

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn socket(app: &TestApp, user: &User) -> (palaver::client::Client, palaver::client::Events) {
    palaver::client::connect(&app.base, &json!({"token": user.token}))
        .await
        .expect("socket connects")
}

/// Asserts that none of the agents' ids is anywhere in `what`.
fn no_agent_in(what: &Value, agents: &[&User], context: &str) {
    let text = what.to_string();
    for a in agents {
        assert!(
            !text.contains(&a.id),
            "{context}: agent {} shown to the customer: {text}",
            a.id
        );
    }
}

/// A socket's events, every one kept to be looked at in the end.
struct Seen {
    events: palaver::client::Events,
    all: Vec<palaver::client::Event>,
}

impl Seen {
    async fn expect(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.next())
                .await
                .unwrap_or_else(|_| panic!("no {name} within {WAIT:?}"))
                .expect("socket open");
            self.all.push(e.clone());
            if e.name == name {
                return e.data;
            }
        }
    }
}

async fn history(app: &TestApp, user: &User, conv: &str) -> Value {
    app.get(
        &format!("/api/v1/conversations/{conv}/messages"),
        &user.token,
    )
    .await
    .assert_ok()
    .body
}

dual_test!(a_desk_that_hides_its_agents_shows_the_customer_one_team);
async fn a_desk_that_hides_its_agents_shows_the_customer_one_team(app: &TestApp) {
    let (owner, agent, patient) = team(app).await;
    let second = app.signup("p2@example.com", "Paulo Pharmacist").await;
    set_role(app, &owner, &second, "agent").await;
    let agents = [&owner, &agent, &second];
    open_desk(app, &owner, "members", false).await;
    let workspace = app
        .get("/api/v1/workspaces/default", &owner.token)
        .await
        .assert_ok()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_pa, events) = socket(app, &patient).await;
    let mut patient_events = Seen {
        events,
        all: Vec::new(),
    };
    let start = app
        .get("/api/v1/sync", &patient.token)
        .await
        .assert_ok()
        .body["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .post(
            "/api/v1/support",
            Some(&patient.token),
            json!({"workspaceId": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let conv = r.body["id"].as_str().unwrap().to_owned();
    // Two members: the patient and the team.
    let mut expected = vec![patient.id.clone(), workspace.clone()];
    expected.sort();
    let members: Vec<&str> = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap())
        .collect();
    assert_eq!(members, expected);
    assert_eq!(r.body["memberCount"], 2);
    no_agent_in(&r.body, &agents, "the new conversation");

    let question = app.say(&patient, &conv, "Can I take ibuprofen?").await;
    let (agent_socket, _agent_events) = socket(app, &agent).await;
    let (_ss, mut second_events) = socket(app, &second).await;
    // An agent answers it as a reply; two agents react with the same emoji; the owner reads.
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(&agent.token),
            json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text",
                   "text": "Better paracetamol.", "replyToId": question["id"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let answer = r.body;
    // Agents see who answered.
    assert_eq!(answer["sender"]["id"], agent.id.as_str());
    for who in [&agent, &second] {
        app.put(
            &format!(
                "/api/v1/messages/{}/reactions",
                question["id"].as_str().unwrap()
            ),
            &who.token,
            json!({"emoji": "👍"}),
        )
        .await
        .assert_ok();
    }
    app.post(
        &format!("/api/v1/conversations/{conv}/read"),
        Some(&owner.token),
        json!({"seq": question["seq"]}),
    )
    .await
    .assert_ok();
    agent_socket
        .emit("typing:start", &json!({"conversationId": conv}))
        .await
        .unwrap();

    // Live, the patient sees the team answer, react, read and type.
    let m = loop {
        let m = patient_events.expect("message:new").await;
        if m["message"]["id"] == answer["id"] {
            break m;
        }
    };
    assert_eq!(
        m["message"]["sender"],
        json!({"type": "user", "id": workspace})
    );
    assert_eq!(m["message"]["replyTo"]["sender"]["id"], patient.id.as_str());
    let status = patient_events.expect("message:status").await;
    assert_eq!(status["userId"], workspace.as_str());
    let typing = patient_events.expect("typing").await;
    assert_eq!(typing["userId"], workspace.as_str());
    // The agents hear of one another by name.
    let typing = second_events.expect("typing", WAIT).await.unwrap();
    assert_eq!(typing["userId"], agent.id.as_str());

    // The history: the team's one reaction, the team's answer.
    let h = history(app, &patient, &conv).await;
    let items = h["items"].as_array().unwrap();
    let q = items.iter().find(|m| m["id"] == question["id"]).unwrap();
    assert_eq!(
        q["reactions"],
        json!([{"emoji": "👍", "by": {"type": "user", "id": workspace}}])
    );
    assert_eq!(q["status"], "read");
    no_agent_in(&h, &agents, "the history");
    // Agents see each reaction and each sender.
    let h = history(app, &agent, &conv).await;
    let q = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == question["id"])
        .cloned()
        .unwrap();
    assert_eq!(q["reactions"].as_array().unwrap().len(), 2, "{q}");

    // Receipts: one, the team's, read when the owner read it.
    let receipts = app
        .get(
            &format!(
                "/api/v1/messages/{}/receipts",
                question["id"].as_str().unwrap()
            ),
            &patient.token,
        )
        .await
        .assert_ok()
        .body;
    let receipts = &receipts["items"];
    assert_eq!(receipts.as_array().unwrap().len(), 1, "{receipts}");
    assert_eq!(receipts[0]["userId"], workspace.as_str());
    assert!(receipts[0]["readAt"].is_string(), "{receipts}");

    // Members, the list, the conversation, search, sync: the team only.
    let page = app
        .get(
            &format!("/api/v1/conversations/{conv}/members"),
            &patient.token,
        )
        .await
        .assert_ok()
        .body;
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    let agent_page = app
        .get(
            &format!("/api/v1/conversations/{conv}/members"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(agent_page["items"].as_array().unwrap().len(), 4);
    let list = app
        .get("/api/v1/conversations", &patient.token)
        .await
        .assert_ok()
        .body;
    no_agent_in(&list, &agents, "the conversation list");
    let c = app.conversation(&patient, &conv).await;
    assert_eq!(c["lastMessage"]["sender"]["id"], workspace.as_str());
    no_agent_in(&c, &agents, "the conversation");
    let found = app
        .get("/api/v1/search/messages?q=paracetamol", &patient.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    no_agent_in(&found, &agents, "search");
    let synced = app
        .get(&format!("/api/v1/sync?cursor={start}"), &patient.token)
        .await
        .assert_ok()
        .body;
    let kinds: Vec<&str> = synced["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"message:status"), "{kinds:?}");
    no_agent_in(&synced, &agents, "sync");
    crate::helpers::assert_replayed_as_history(app, &patient, synced["events"].as_array().unwrap())
        .await;
    let snapshot = app
        .get("/api/v1/sync", &patient.token)
        .await
        .assert_ok()
        .body;
    no_agent_in(&snapshot, &agents, "the sync snapshot");
    // Nothing the patient's socket got named an agent (presence included).
    while let Some(e) = patient_events.events.try_next() {
        patient_events.all.push(e);
    }
    for e in &patient_events.all {
        no_agent_in(&e.data, &agents, &e.name);
    }

    // A desk that shows its agents: the same history names them.
    open_desk(app, &owner, "members", true).await;
    let h = history(app, &patient, &conv).await;
    let a = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == answer["id"])
        .cloned()
        .unwrap();
    assert_eq!(a["sender"]["id"], agent.id.as_str());
    assert_eq!(app.conversation(&patient, &conv).await["memberCount"], 4);
}
