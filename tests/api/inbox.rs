//! The team inbox: leads (CRUD, stages, tags, opt-in, attributes, filters), the catalog, the
//! audit log.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};

/// The workspace's owner (the first account), an agent and a plain member.
pub async fn team(app: &TestApp) -> (User, User, User) {
    let owner = crate::workspaces::admin(app, "owner@example.com").await;
    let agent = app.signup("agent@example.com", "Ana Agent").await;
    let member = app.signup("member@example.com", "Max Member").await;
    set_role(app, &owner, &agent, "agent").await;
    (owner, agent, member)
}

pub async fn set_role(app: &TestApp, owner: &User, user: &User, role: &str) {
    app.patch(
        &format!("/api/v1/workspaces/default/members/{}", user.id),
        &owner.token,
        json!({"role": role}),
    )
    .await
    .assert_ok();
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

dual_test!(leads_are_created_changed_filtered_and_deleted);
async fn leads_are_created_changed_filtered_and_deleted(app: &TestApp) {
    let (owner, agent, member) = team(app).await;
    let r = app
        .post(
            "/api/v1/leads",
            Some(&agent.token),
            json!({"name": "Rosa Díaz", "phone": "+49 151 1234-5678", "email": "Rosa@Example.com",
                   "tags": ["vip", "b2b"], "optIn": {"status": "opted_in", "source": "form"},
                   "attributes": {"city": "Porto", "orders": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let rosa = r.body.clone();
    assert_eq!(rosa["phone"], "+4915112345678");
    assert_eq!(rosa["waId"], "4915112345678");
    assert_eq!(rosa["email"], "rosa@example.com");
    assert_eq!(rosa["stage"], "new");
    assert_eq!(rosa["tags"], json!(["b2b", "vip"]));
    assert_eq!(rosa["optIn"]["status"], "opted_in");
    assert_eq!(rosa["optIn"]["source"], "form");
    assert!(rosa["optIn"]["at"].is_string());
    assert_eq!(rosa["attributes"], json!({"city": "Porto", "orders": 3}));
    let id = rosa["id"].as_str().unwrap();

    // The same phone written differently is the same lead: 409.
    app.post(
        "/api/v1/leads",
        Some(&agent.token),
        json!({"name": "Other", "phone": "0049151 12345678"}),
    )
    .await
    .assert_problem(409, "lead_exists");
    // A stage outside the pipeline, a bad phone, nothing to name the lead: 422.
    app.post(
        "/api/v1/leads",
        Some(&agent.token),
        json!({"name": "X", "stage": "won-big"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.post("/api/v1/leads", Some(&agent.token), json!({"phone": "12"}))
        .await
        .assert_problem(422, "validation_failed");
    app.post("/api/v1/leads", Some(&agent.token), json!({"tags": ["x"]}))
        .await
        .assert_problem(422, "validation_failed");
    // A plain member is no agent.
    app.post("/api/v1/leads", Some(&member.token), json!({"name": "Y"}))
        .await
        .assert_problem(403, "forbidden");

    for (name, stage, tags) in [
        ("Bruno", "qualified", json!(["vip"])),
        ("Carla", "won", json!(["b2b"])),
        ("Dora", "new", json!([])),
    ] {
        let r = app
            .post(
                "/api/v1/leads",
                Some(&owner.token),
                json!({"name": name, "stage": stage, "tags": tags}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    // Changes: stage, assignee, attributes merged (null removes), opt-out.
    let r = app
        .patch(
            &format!("/api/v1/leads/{id}"),
            &agent.token,
            json!({"stage": "qualified", "assigneeId": agent.id, "attributes": {"orders": null, "plan": "pro"},
                   "optIn": {"status": "opted_out"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["stage"], "qualified");
    assert_eq!(r.body["assigneeId"], agent.id.as_str());
    assert_eq!(
        r.body["attributes"],
        json!({"city": "Porto", "plan": "pro"})
    );
    assert_eq!(r.body["optIn"]["status"], "opted_out");
    assert_eq!(r.body["optIn"]["source"], "agent");
    // The assignee must work the inbox.
    app.patch(
        &format!("/api/v1/leads/{id}"),
        &agent.token,
        json!({"assigneeId": member.id}),
    )
    .await
    .assert_problem(422, "validation_failed");

    let list = |q: &'static str| {
        let (app, token) = (app, agent.token.clone());
        async move {
            let r = app.get(&format!("/api/v1/leads?{q}"), &token).await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            ids(&r.body)
        }
    };
    assert_eq!(
        list("stage=qualified&sort=name").await,
        ["Bruno", "Rosa Díaz"]
    );
    assert_eq!(
        list("tag=vip&tag=b2b&sort=name").await,
        ["Bruno", "Carla", "Rosa Díaz"]
    );
    assert_eq!(list("tags=vip,b2b").await, ["Rosa Díaz"]);
    assert_eq!(list("assignee=me").await, ["Rosa Díaz"]);
    assert_eq!(
        list("assignee=none&sort=-name").await,
        ["Dora", "Carla", "Bruno"]
    );
    assert_eq!(list("optIn=opted_out").await, ["Rosa Díaz"]);
    assert_eq!(list("q=porto").await, ["Rosa Díaz"]);
    assert_eq!(list("q=%2B49 151").await, ["Rosa Díaz"]);
    assert_eq!(list("q=ROSA@").await, ["Rosa Díaz"]);
    assert_eq!(
        list("createdFrom=2000-01-01T00:00:00Z&sort=createdAt")
            .await
            .len(),
        4
    );
    assert!(list("createdTo=2000-01-01T00:00:00Z").await.is_empty());
    // Paging by name, two at a time, sees every lead once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!("/api/v1/leads?sort=name&limit=2{cursor}"),
                &agent.token,
            )
            .await;
        seen.extend(ids(&r.body));
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["Bruno", "Carla", "Dora", "Rosa Díaz"]);
    // Filters that cannot be applied are refused.
    for q in [
        "stage=nope",
        "tag=unknown",
        "optIn=maybe",
        "sort=age",
        "createdFrom=yesterday",
        "channel=nope",
        "color=red",
    ] {
        let r = app.get(&format!("/api/v1/leads?{q}"), &agent.token).await;
        assert!(matches!(r.status.as_u16(), 400 | 422), "{q}: {}", r.text);
    }

    // Delete: gone, then 404; the audit log has it all, for admins only.
    assert_eq!(
        app.delete(&format!("/api/v1/leads/{id}"), &agent.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.get(&format!("/api/v1/leads/{id}"), &agent.token)
        .await
        .assert_problem(404, "not_found");
    let audit = app
        .get("/api/v1/audit?action=lead.", &owner.token)
        .await
        .assert_ok()
        .body;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions[0], "lead.deleted");
    assert_eq!(actions.iter().filter(|a| **a == "lead.created").count(), 4);
    let deleted = &audit["items"][0];
    assert_eq!(deleted["actor"]["id"], agent.id.as_str());
    assert_eq!(deleted["actor"]["name"], "Ana Agent");
    assert_eq!(deleted["target"], json!({"type": "lead", "id": id}));
    app.get("/api/v1/audit", &agent.token)
        .await
        .assert_problem(403, "forbidden");
}

dual_test!(the_pipeline_attributes_and_tags_belong_to_the_workspace);
async fn the_pipeline_attributes_and_tags_belong_to_the_workspace(app: &TestApp) {
    let (owner, agent, _member) = team(app).await;
    let stages = app
        .get("/api/v1/leads/stages", &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(stages["stages"], json!(["new", "qualified", "won", "lost"]));
    app.put(
        "/api/v1/leads/stages",
        &agent.token,
        json!({"stages": ["a"]}),
    )
    .await
    .assert_problem(403, "forbidden");
    let lead = app
        .post(
            "/api/v1/leads",
            Some(&agent.token),
            json!({"name": "Q", "stage": "qualified", "tags": ["hot"]}),
        )
        .await
        .assert_ok()
        .body;
    // A stage leads are in cannot go.
    app.put(
        "/api/v1/leads/stages",
        &owner.token,
        json!({"stages": ["lead", "demo", "won"]}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = app
        .put(
            "/api/v1/leads/stages",
            &owner.token,
            json!({"stages": ["lead", "qualified", "demo", "won", "lost"]}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["stages"][0], "lead");
    let r = app
        .post("/api/v1/leads", Some(&agent.token), json!({"name": "N"}))
        .await
        .assert_ok();
    assert_eq!(
        r.body["stage"], "lead",
        "a new lead starts in the first stage"
    );

    // Attribute definitions check values of their keys; others are free.
    app.put(
        "/api/v1/leads/attributes",
        &owner.token,
        json!({"attributes": [{"key": "plan", "label": "Plan", "type": "list", "options": ["free", "pro"]},
                              {"key": "seats", "label": "Seats", "type": "number"}]}),
    )
    .await
    .assert_ok();
    let defs = app
        .get("/api/v1/leads/attributes", &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(defs["attributes"][0]["type"], "list");
    let lead_id = lead["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/leads/{lead_id}"),
        &agent.token,
        json!({"attributes": {"plan": "gold"}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.patch(
        &format!("/api/v1/leads/{lead_id}"),
        &agent.token,
        json!({"attributes": {"seats": "many"}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    app.patch(
        &format!("/api/v1/leads/{lead_id}"),
        &agent.token,
        json!({"attributes": {"plan": "pro", "seats": 4, "note": "x"}}),
    )
    .await
    .assert_ok();

    // Tags: made by a lead, listed with counts, renamed, recoloured, deleted.
    let tags = app.get("/api/v1/tags", &agent.token).await.assert_ok().body;
    assert_eq!(tags[0]["name"], "hot");
    assert_eq!(tags[0]["leads"], 1);
    let hot = tags[0]["id"].as_str().unwrap().to_owned();
    app.post("/api/v1/tags", Some(&agent.token), json!({"name": "hot"}))
        .await
        .assert_problem(409, "tag_exists");
    app.post(
        "/api/v1/tags",
        Some(&agent.token),
        json!({"name": "cold", "color": "blue"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let cold = app
        .post(
            "/api/v1/tags",
            Some(&agent.token),
            json!({"name": "cold", "color": "#0000FF"}),
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(cold["color"], "#0000ff");
    let r = app
        .patch(
            &format!("/api/v1/tags/{hot}"),
            &agent.token,
            json!({"name": "warm"}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["name"], "warm");
    let l = app
        .get(&format!("/api/v1/leads/{lead_id}"), &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(l["tags"], json!(["warm"]));
    app.delete(&format!("/api/v1/tags/{hot}"), &agent.token)
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        app.delete(&format!("/api/v1/tags/{hot}"), &owner.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let l = app
        .get(&format!("/api/v1/leads/{lead_id}"), &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(l["tags"], json!([]));

    // Another workspace (its owner is this one's too) sees none of it.
    let other = &owner;
    let r = app
        .post(
            "/api/v1/workspaces",
            Some(&other.token),
            json!({"name": "Other Co", "slug": "other"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .call_with(
            reqwest::Method::GET,
            "/api/v1/leads",
            Some(&other.token),
            None,
            &[("Palaver-Workspace", "other")],
        )
        .await;
    assert_eq!(r.body["items"], json!([]), "{}", r.text);
    let r = app
        .call_with(
            reqwest::Method::GET,
            &format!("/api/v1/leads/{lead_id}"),
            Some(&other.token),
            None,
            &[("Palaver-Workspace", "other")],
        )
        .await;
    r.assert_problem(404, "not_found");
    let r = app
        .call_with(
            reqwest::Method::GET,
            "/api/v1/tags",
            Some(&other.token),
            None,
            &[("Palaver-Workspace", "other")],
        )
        .await;
    assert_eq!(r.body, json!([]));
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn socket(app: &TestApp, user: &User) -> (palaver::client::Client, palaver::client::Events) {
    palaver::client::connect(&app.base, &json!({"token": user.token}))
        .await
        .expect("socket connects")
}

/// The user's support conversation with the default workspace (made or found).
pub async fn support_conversation(app: &TestApp, user: &User) -> String {
    let r = app
        .post(
            "/api/v1/support",
            Some(&user.token),
            json!({"workspaceId": "default"}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

/// Turns the support desk of the default workspace on.
pub async fn open_desk(app: &TestApp, owner: &User, who: &str, names: bool) {
    let r = app
        .patch(
            "/api/v1/workspaces/default",
            &owner.token,
            json!({"settings": {"support": {"enabled": true, "whoMayWrite": who, "showAgentNames": names}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

dual_test!(a_patient_writes_to_the_pharmacy_and_any_pharmacist_answers);
async fn a_patient_writes_to_the_pharmacy_and_any_pharmacist_answers(app: &TestApp) {
    let (admin, pharmacist, patient) = team(app).await;
    let other_pharmacist = app.signup("p2@example.com", "Paulo Pharmacist").await;
    set_role(app, &admin, &other_pharmacist, "agent").await;
    // Closed desk: the same 404 as for a workspace that does not exist.
    app.post(
        "/api/v1/support",
        Some(&patient.token),
        json!({"workspaceId": "default"}),
    )
    .await
    .assert_problem(404, "not_found");
    app.patch(
        "/api/v1/workspaces/default",
        &admin.token,
        json!({"settings": {"support": {"enabled": "yes"}}}),
    )
    .await
    .assert_problem(422, "validation_failed");
    open_desk(app, &admin, "members", false).await;

    // The first pharmacist is the only agent connected: auto-assignment gives it to them.
    let (_ps, mut pharmacist_events) = socket(app, &pharmacist).await;
    let r = app
        .post(
            "/api/v1/support",
            Some(&patient.token),
            json!({"workspaceId": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let conv = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["kind"], "support");
    // The patient sees one conversation named after the workspace, and nothing internal.
    for internal in ["status", "assigneeId", "lead", "leadId", "snoozedUntil"] {
        assert!(
            r.body.get(internal).is_none(),
            "{internal} shown to the customer: {}",
            r.body
        );
    }
    let again = app
        .post(
            "/api/v1/support",
            Some(&patient.token),
            json!({"workspaceId": "default"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], conv.as_str());

    // Pharmacists see it in the support view, titled with the patient's name, with its lead.
    app.run_pending_jobs().await;
    let view = app
        .get("/api/v1/conversations?kind=support", &pharmacist.token)
        .await
        .assert_ok()
        .body;
    let item = &view["items"][0];
    assert_eq!(item["id"], conv.as_str());
    assert_eq!(item["title"], "Max Member");
    assert_eq!(item["status"], "open");
    assert_eq!(item["assigneeId"], pharmacist.id.as_str());
    assert_eq!(item["assigneeId"], pharmacist.id.as_str());
    assert_eq!(item["lead"]["userId"], patient.id.as_str());
    let lead = app
        .get(
            &format!("/api/v1/leads/{}", item["lead"]["id"].as_str().unwrap()),
            &pharmacist.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(lead["userId"], patient.id.as_str());
    assert_eq!(lead["email"], "member@example.com");

    // The patient writes; both pharmacists get it live; the other one answers.
    let (_pa, mut patient_events) = socket(app, &patient).await;
    app.say(
        &patient,
        &conv,
        "Is ibuprofen fine with my blood pressure pills?",
    )
    .await;
    let m = pharmacist_events.expect("message:new", WAIT).await.unwrap();
    assert_eq!(
        m["message"]["text"],
        "Is ibuprofen fine with my blood pressure pills?"
    );
    app.say(
        &other_pharmacist,
        &conv,
        "Better paracetamol; which pills do you take?",
    )
    .await;
    // (The patient's own message comes to their socket first.)
    loop {
        let m = patient_events.expect("message:new", WAIT).await.unwrap();
        if m["message"]["text"] == "Better paracetamol; which pills do you take?" {
            break;
        }
    }

    // A note mentioning the first pharmacist: agents only, live and listed.
    let r = app
        .post(
            &format!("/api/v1/conversations/{conv}/notes"),
            Some(&other_pharmacist.token),
            json!({"text": "Check the interaction table, @Ana", "mentions": [pharmacist.id]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["author"]["name"], "Paulo Pharmacist");
    assert_eq!(r.body["mentions"], json!([pharmacist.id]));
    let live = pharmacist_events.expect("note:new", WAIT).await.unwrap();
    assert_eq!(live["text"], "Check the interaction table, @Ana");
    app.get(
        &format!("/api/v1/conversations/{conv}/notes"),
        &patient.token,
    )
    .await
    .assert_problem(404, "not_found");
    app.post(
        &format!("/api/v1/conversations/{conv}/notes"),
        Some(&patient.token),
        json!({"text": "hi"}),
    )
    .await
    .assert_problem(404, "not_found");
    // A mention of someone who is no agent is refused.
    app.post(
        &format!("/api/v1/conversations/{conv}/notes"),
        Some(&pharmacist.token),
        json!({"text": "x", "mentions": [patient.id]}),
    )
    .await
    .assert_problem(422, "validation_failed");

    // Assignment and status: the patient is told nothing internal, ever.
    let r = app
        .patch(
            &format!("/api/v1/conversations/{conv}"),
            &pharmacist.token,
            json!({"assigneeId": other_pharmacist.id, "status": "closed"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["assigneeId"], other_pharmacist.id.as_str());
    assert_eq!(r.body["status"], "closed");
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &patient.token,
        json!({"status": "open"}),
    )
    .await
    .assert_problem(403, "forbidden");
    // The patient writes again: open again, with a line for the agents.
    app.say(&patient, &conv, "Amlodipine.").await;
    let c = crate::helpers::eventually(WAIT, || async {
        let c = app.conversation(&pharmacist, &conv).await;
        if c["status"] == "open" {
            Ok(c)
        } else {
            Err(format!("still {}", c["status"]))
        }
    })
    .await;
    assert_eq!(
        c["assigneeId"],
        other_pharmacist.id.as_str(),
        "reopening keeps the assignee"
    );
    app.run_pending_jobs().await;
    let notes = app
        .get(&format!("/api/v1/conversations/{conv}/notes"), &admin.token)
        .await
        .assert_ok()
        .body;
    let events: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            n["details"]["event"]
                .as_str()
                .unwrap_or(n["kind"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        events,
        ["assigned", "note", "assigned", "status", "reopened"],
        "{notes}"
    );

    // Nothing of the notes reaches the patient: not their sync, not their search, not a socket.
    let sync = app
        .get("/api/v1/sync", &patient.token)
        .await
        .assert_ok()
        .body;
    let all = sync.to_string();
    assert!(
        !all.contains("interaction table") && !all.contains("assigned"),
        "{all}"
    );
    let found = app
        .get("/api/v1/search/messages?q=interaction", &patient.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(found["items"], json!([]));
    let patient_view = app.conversation(&patient, &conv).await;
    for internal in ["status", "assigneeId", "lead", "leadId"] {
        assert!(
            patient_view.get(internal).is_none(),
            "{internal}: {patient_view}"
        );
    }
    while let Some(e) = patient_events.try_next() {
        assert_ne!(e.name, "note:new");
        assert!(
            !e.data.to_string().contains("assigneeId"),
            "{}: {}",
            e.name,
            e.data
        );
    }

    // The admin sees everything; the audit log has the assignment and the status.
    let audit = app
        .get("/api/v1/audit?targetType=conversation", &admin.token)
        .await
        .assert_ok()
        .body;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"conversation.assigned")
            && actions.contains(&"conversation.status_changed"),
        "{actions:?}"
    );
    // A demoted pharmacist loses the conversation; the patient keeps theirs.
    set_role(app, &admin, &other_pharmacist, "member").await;
    let audit = app
        .get("/api/v1/audit?action=member.", &admin.token)
        .await
        .assert_ok()
        .body;
    let change = &audit["items"][0];
    assert_eq!(change["action"], "member.role_changed");
    assert_eq!(change["target"]["id"], other_pharmacist.id.as_str());
    assert_eq!(change["details"], json!({"from": "agent", "to": "member"}));
    app.get(
        &format!("/api/v1/conversations/{conv}"),
        &other_pharmacist.token,
    )
    .await
    .assert_problem(404, "not_found");
    app.conversation(&patient, &conv).await;
}

dual_test!(a_desk_for_anyone_lets_outsiders_in_as_members);
async fn a_desk_for_anyone_lets_outsiders_in_as_members(app: &TestApp) {
    let (admin, _agent, _member) = team(app).await;
    app.post(
        "/api/v1/workspaces",
        Some(&admin.token),
        json!({"name": "Clinic", "slug": "clinic"}),
    )
    .await
    .assert_ok();
    let stranger = app.signup("stranger@example.com", "Sam Stranger").await;
    // The clinic's desk is off, then for members only: the stranger is not one.
    let r = app
        .post(
            "/api/v1/support",
            Some(&stranger.token),
            json!({"workspaceId": "clinic"}),
        )
        .await;
    r.assert_problem(404, "not_found");
    let patch = |settings: Value| {
        let admin = admin.token.clone();
        async move {
            app.call_with(
                reqwest::Method::PATCH,
                "/api/v1/workspaces/clinic",
                Some(&admin),
                Some(json!({ "settings": settings })),
                &[],
            )
            .await
            .assert_ok();
        }
    };
    patch(json!({"support": {"enabled": true}})).await;
    app.post(
        "/api/v1/support",
        Some(&stranger.token),
        json!({"workspaceId": "clinic"}),
    )
    .await
    .assert_problem(404, "not_found");
    patch(json!({"support": {"enabled": true, "whoMayWrite": "anyone"}})).await;
    let r = app
        .post(
            "/api/v1/support",
            Some(&stranger.token),
            json!({"workspaceId": "clinic"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["title"], "Clinic");
    let workspaces = app
        .get("/api/v1/workspaces", &stranger.token)
        .await
        .assert_ok()
        .body;
    let roles: Vec<(&str, &str)> = workspaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["slug"].as_str().unwrap(), w["role"].as_str().unwrap()))
        .collect();
    assert!(roles.contains(&("clinic", "member")), "{roles:?}");
}

/// `n` patients, each with their support conversation opened at once; their ids.
async fn patients_write(app: &TestApp, n: usize, tag: &str) -> Vec<String> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(
            app.signup(
                &format!("{tag}{i}@example.com"),
                &format!("Patient {tag}{i}"),
            )
            .await,
        );
    }
    let opened = futures_util::future::join_all(users.iter().map(|u| async move {
        let r = app
            .post(
                "/api/v1/support",
                Some(&u.token),
                json!({"workspaceId": "default"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().unwrap().to_owned()
    }))
    .await;
    app.run_pending_jobs().await;
    opened
}

async fn assignees(app: &TestApp, admin: &User, ids: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for id in ids {
        let c = app.conversation(admin, id).await;
        out.push(c["assigneeId"].as_str().map(str::to_owned));
    }
    out
}

dual_test!(round_robin_is_fair_and_keeps_to_capacity);
async fn round_robin_is_fair_and_keeps_to_capacity(app: &TestApp) {
    let (admin, a1, _member) = team(app).await;
    let a2 = app.signup("a2@example.com", "Bea Agent").await;
    let a3 = app.signup("a3@example.com", "Cid Agent").await;
    for a in [&a2, &a3] {
        set_role(app, &admin, a, "agent").await;
    }
    open_desk(app, &admin, "members", true).await;
    // The admin takes no automatic assignments; a3 is away; a2 takes at most 2.
    app.patch(
        &format!("/api/v1/inbox/agents/{}", admin.id),
        &admin.token,
        json!({"autoAssign": false}),
    )
    .await
    .assert_ok();
    app.patch(
        &format!("/api/v1/inbox/agents/{}", a3.id),
        &a3.token,
        json!({"availability": "away"}),
    )
    .await
    .assert_ok();
    app.patch(
        &format!("/api/v1/inbox/agents/{}", a2.id),
        &admin.token,
        json!({"capacity": 2}),
    )
    .await
    .assert_ok();
    // Rules: an agent sets only their own availability, only admins set capacities.
    app.patch(
        &format!("/api/v1/inbox/agents/{}", a2.id),
        &a1.token,
        json!({"availability": "busy"}),
    )
    .await
    .assert_problem(403, "forbidden");
    app.patch(
        &format!("/api/v1/inbox/agents/{}", a1.id),
        &a1.token,
        json!({"capacity": 50}),
    )
    .await
    .assert_problem(403, "forbidden");

    // Nobody is connected: nothing is assigned.
    let first = patients_write(app, 2, "off").await;
    assert_eq!(assignees(app, &admin, &first).await, [None, None]);

    // Everyone connected; eight conversations open at once.
    let mut sockets =
        futures_util::future::join_all([&admin, &a1, &a2, &a3].map(|u| socket(app, u))).await;
    let ids = patients_write(app, 8, "on").await;
    let got = assignees(app, &admin, &ids).await;
    let count = |u: &User| {
        got.iter()
            .filter(|a| a.as_deref() == Some(u.id.as_str()))
            .count()
    };
    assert_eq!(count(&admin), 0, "the admin opted out: {got:?}");
    assert_eq!(count(&a3), 0, "a3 is away: {got:?}");
    assert_eq!(count(&a2), 2, "a2 stops at its capacity: {got:?}");
    assert_eq!(count(&a1), 6, "a1 takes the rest: {got:?}");

    // Closing frees capacity; the next conversation goes to whoever waited longest and has room.
    app.patch(
        &format!(
            "/api/v1/conversations/{}",
            ids.iter()
                .zip(&got)
                .find(|(_, a)| a.as_deref() == Some(a2.id.as_str()))
                .unwrap()
                .0
        ),
        &a2.token,
        json!({"status": "closed"}),
    )
    .await
    .assert_ok();
    let next = patients_write(app, 1, "later").await;
    assert_eq!(assignees(app, &admin, &next).await, [Some(a2.id.clone())]);

    // The team view and the badges.
    let agents = app
        .get("/api/v1/inbox/agents", &a1.token)
        .await
        .assert_ok()
        .body;
    let a2_row = agents
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["userId"] == a2.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (
            a2_row["capacity"].as_i64(),
            a2_row["openAssigned"].as_i64(),
            a2_row["online"].as_bool()
        ),
        (Some(2), Some(2), Some(true))
    );
    let counts = app
        .get("/api/v1/inbox/counts", &a1.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(
        counts,
        json!({"open": 10, "mine": 6, "unassigned": 2, "pending": 0})
    );
    let mine = app
        .get(
            "/api/v1/conversations?kind=inbox&assignee=me&status=open",
            &a1.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(mine["items"].as_array().unwrap().len(), 6);
    let none = app
        .get(
            "/api/v1/conversations?kind=support&assignee=none",
            &a1.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(none["items"].as_array().unwrap().len(), 2);

    // The team hears live when an agent comes back.
    app.patch(
        &format!("/api/v1/inbox/agents/{}", a3.id),
        &a3.token,
        json!({"availability": "online"}),
    )
    .await
    .assert_ok();
    let a1_events = &mut sockets[1].1;
    let back = a1_events.expect("agent:updated", WAIT).await.unwrap();
    assert_eq!(back["userId"], a3.id.as_str());
    assert_eq!(
        (back["availability"].as_str(), back["online"].as_bool()),
        (Some("online"), Some(true))
    );
}

dual_test!(a_snooze_ends_after_a_restart, custom);
async fn a_snooze_ends_after_a_restart(backend: crate::helpers::Backend) {
    let Some(app) = crate::helpers::spawn(backend, |_| {}).await else {
        return;
    };
    let (admin, agent, patient) = team(&app).await;
    open_desk(&app, &admin, "members", true).await;
    let conv = support_conversation(&app, &patient).await;
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &agent.token,
        json!({"snoozedUntil": "2000-01-01T00:00:00Z"}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let until = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = app
        .patch(
            &format!("/api/v1/conversations/{conv}"),
            &agent.token,
            json!({"snoozedUntil": until.to_rfc3339()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "pending");
    assert!(r.body["snoozedUntil"].is_string());
    let counts = app
        .get("/api/v1/inbox/counts", &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(counts["pending"], 1);
    // The server goes down before the snooze ends and comes back after.
    let app = app.restart(|_| {}).await;
    let c = crate::helpers::eventually(std::time::Duration::from_secs(20), || {
        let (app, agent, conv) = (&app, &agent, &conv);
        async move {
            let c = app.conversation(agent, conv).await;
            if c["status"] == "open" {
                Ok(c)
            } else {
                Err(format!("still {}", c["status"]))
            }
        }
    })
    .await;
    assert!(c["snoozedUntil"].is_null(), "{c}");
    let notes = app
        .get(&format!("/api/v1/conversations/{conv}/notes"), &agent.token)
        .await
        .assert_ok()
        .body;
    let events: Vec<&str> = notes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["details"]["event"].as_str())
        .collect();
    assert_eq!(
        events.iter().filter(|e| **e == "snooze_ended").count(),
        1,
        "{events:?}"
    );
    app.stop().await;
}

dual_test!(canned_responses_fill_in_the_conversation);
async fn canned_responses_fill_in_the_conversation(app: &TestApp) {
    let (admin, agent, patient) = team(app).await;
    open_desk(app, &admin, "members", true).await;
    let conv = support_conversation(app, &patient).await;
    let r = app
        .post(
            "/api/v1/canned-responses",
            Some(&agent.token),
            json!({"shortCode": "/Welcome", "text": "Hello {{lead.name}}, {{agent.name}} from {{workspace.name}}. Order {{lead.attributes.order}}?"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["shortCode"], "welcome");
    let id = r.body["id"].as_str().unwrap().to_owned();
    app.post(
        "/api/v1/canned-responses",
        Some(&agent.token),
        json!({"shortCode": "welcome", "text": "x"}),
    )
    .await
    .assert_problem(409, "short_code_taken");
    app.post(
        "/api/v1/canned-responses",
        Some(&agent.token),
        json!({"shortCode": "wait", "text": "One moment."}),
    )
    .await
    .assert_ok();
    let found = app
        .get("/api/v1/canned-responses?q=/we", &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], id.as_str());
    let r = app
        .post(
            &format!("/api/v1/canned-responses/{id}/render"),
            Some(&agent.token),
            json!({"conversationId": conv}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["text"],
        "Hello Max Member, Ana Agent from Default. Order ?"
    );
    assert_eq!(r.body["missing"], json!(["lead.attributes.order"]));
    app.get("/api/v1/canned-responses", &patient.token)
        .await
        .assert_problem(403, "forbidden");
    app.patch(
        &format!("/api/v1/canned-responses/{id}"),
        &agent.token,
        json!({"text": "Hi {{lead.name}}"}),
    )
    .await
    .assert_ok();
    assert_eq!(
        app.delete(&format!("/api/v1/canned-responses/{id}"), &agent.token)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.delete(&format!("/api/v1/canned-responses/{id}"), &agent.token)
        .await
        .assert_problem(404, "not_found");
}

async fn import_csv(app: &TestApp, user: &User, query: &str, csv: &str) -> crate::helpers::Resp {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/leads/import{query}")))
        .bearer_auth(&user.token)
        .header("content-type", "text/csv")
        .body(csv.to_owned())
        .send()
        .await
        .unwrap();
    crate::helpers::Resp::from_response(r).await
}

dual_test!(a_csv_import_reports_bad_rows_and_never_half_imports_one);
async fn a_csv_import_reports_bad_rows_and_never_half_imports_one(app: &TestApp) {
    let (_admin, agent, member) = team(app).await;
    app.post(
        "/api/v1/leads",
        Some(&agent.token),
        json!({"name": "Old Name", "phone": "+4915100000001", "tags": ["old"]}),
    )
    .await
    .assert_ok();
    // A BOM, CRLF line ends, quoted cells with commas, quotes and a line break, tags separated
    // by `;`, a duplicate of an existing lead and one within the file, and bad rows.
    let csv = "\u{feff}Name,Phone,Email,Tags,Stage,Opt-In,attributes.city\r\n\
        \"Díaz, Rosa\",+49 151 00000001,rosa@example.com,vip;b2b,qualified,yes,Porto\r\n\
        \"Bruno \"\"B\"\" Silva\",0049 151 00000002,,,,no,\"Lisbon\r\nOld Town\"\r\n\
        Carla,12345,,,,,\r\n\
        Dora,,not-an-email,,,,\r\n\
        Eva,,,,won-big,,\r\n\
        ,,,,,,\r\n\
        Fábio,+4915100000002,,late,,,\r\n\
        Gil,,,,,maybe,\r\n\
        Hana,+4915100000003,,,,,Faro,extra\r\n";
    let r = import_csv(app, &agent, "", csv).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let report = r.body;
    assert_eq!(report["status"], "completed");
    assert_eq!(
        (
            report["imported"].as_i64(),
            report["updated"].as_i64(),
            report["skipped"].as_i64()
        ),
        (Some(1), Some(2), Some(0)),
        "{report}"
    );
    assert_eq!(report["rejected"], 5);
    let errors: Vec<(u64, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["line"].as_u64().unwrap(),
                e["reason"]
                    .as_str()
                    .unwrap()
                    .split(':')
                    .next()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let lines: Vec<u64> = errors.iter().map(|e| e.0).collect();
    // The header is line 1; Bruno's quoted city spans lines 3 and 4.
    assert_eq!(lines, [5, 6, 7, 10, 11], "{errors:?}");
    assert_eq!(errors[0].1, "phone");
    assert_eq!(errors[1].1, "email");
    assert_eq!(errors[2].1, "stage");

    let lead = |phone: &'static str| {
        let token = agent.token.clone();
        async move {
            let r = app
                .get(&format!("/api/v1/leads?q={phone}"), &token)
                .await
                .assert_ok();
            r.body["items"][0].clone()
        }
    };
    let rosa = lead("4915100000001").await;
    assert_eq!(rosa["name"], "Díaz, Rosa", "a duplicate updates the lead");
    assert_eq!(rosa["tags"], json!(["b2b", "vip"]));
    assert_eq!(rosa["stage"], "qualified");
    assert_eq!(rosa["optIn"]["status"], "opted_in");
    assert_eq!(rosa["optIn"]["source"], "import");
    assert_eq!(rosa["attributes"]["city"], "Porto");
    let bruno = lead("4915100000002").await;
    assert_eq!(
        bruno["name"], "Fábio",
        "the file's later row for the same phone updates it"
    );
    assert_eq!(bruno["tags"], json!(["late"]));
    assert_eq!(bruno["attributes"]["city"], "Lisbon\r\nOld Town");
    assert_eq!(bruno["optIn"]["status"], "opted_out");
    let all = app
        .get("/api/v1/leads?limit=100", &agent.token)
        .await
        .assert_ok()
        .body;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        2,
        "no rejected row left anything: {all}"
    );

    // Skip keeps existing leads as they are.
    let r = import_csv(
        app,
        &agent,
        "?onDuplicate=skip",
        "phone,name\n+4915100000001,Someone Else\n+4915100000009,New\n",
    )
    .await;
    assert_eq!(
        (r.body["imported"].as_i64(), r.body["skipped"].as_i64()),
        (Some(1), Some(1)),
        "{}",
        r.text
    );
    assert_eq!(lead("4915100000001").await["name"], "Díaz, Rosa");

    // The same as JSON rows.
    let r = app
        .post(
            "/api/v1/leads/import",
            Some(&agent.token),
            json!({"rows": [
                {"name": "Ivo", "phone": "+4915100000010", "tags": ["json", "b2b"], "attributes.city": "Braga", "optIn": true},
                {"name": "Joana", "phone": "nope"}
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        (r.body["imported"].as_i64(), r.body["rejected"].as_i64()),
        (Some(1), Some(1)),
        "{}",
        r.text
    );
    assert_eq!(r.body["errors"][0]["line"], 3);
    let ivo = lead("4915100000010").await;
    assert_eq!(ivo["tags"], json!(["b2b", "json"]));
    assert_eq!(ivo["optIn"]["status"], "opted_in");

    // Files that cannot be imported at all.
    import_csv(app, &agent, "", "colour,name\nred,x\n")
        .await
        .assert_problem(422, "validation_failed");
    import_csv(app, &agent, "?onDuplicate=merge", "name\nx\n")
        .await
        .assert_problem(422, "validation_failed");
    import_csv(app, &member, "", "name\nx\n")
        .await
        .assert_problem(403, "forbidden");

    // The export streams the filtered list as CSV, and the audit log records both.
    let r = app
        .client
        .get(app.url("/api/v1/leads/export.csv?tag=vip"))
        .bearer_auth(&agent.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&header[..4], ["id", "name", "phone", "email"]);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][1], "Díaz, Rosa");
    assert_eq!(&rows[0][5], "b2b;vip");
    assert!(rows[0][12].contains("Porto"), "{text}");
}

dual_test!(a_large_import_runs_as_a_job_with_progress);
async fn a_large_import_runs_as_a_job_with_progress(app: &TestApp) {
    let (_admin, agent, _member) = team(app).await;
    let mut csv = String::from("name,phone,tags\n");
    for i in 0..1100 {
        csv.push_str(&format!("Lead {i},+49160{i:07},bulk\n"));
    }
    csv.push_str("Broken,+1,\n");
    let r = import_csv(app, &agent, "", &csv).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let report = crate::helpers::eventually(std::time::Duration::from_secs(60), || {
        let (app, token, id) = (app, agent.token.clone(), id.clone());
        async move {
            let r = app
                .get(&format!("/api/v1/leads/imports/{id}"), &token)
                .await
                .assert_ok();
            if r.body["status"] == "completed" {
                Ok(r.body)
            } else {
                Err(r.text)
            }
        }
    })
    .await;
    assert_eq!(report["imported"], 1100);
    assert_eq!(
        report["errors"],
        json!([{"line": 1102, "reason": report["errors"][0]["reason"]}])
    );
    let tags = app.get("/api/v1/tags", &agent.token).await.assert_ok().body;
    assert_eq!(tags[0]["leads"], 1100);
}

dual_test!(inbox_views_filter_by_the_lead_and_sort_by_the_customer);
async fn inbox_views_filter_by_the_lead_and_sort_by_the_customer(app: &TestApp) {
    let (admin, agent, _member) = team(app).await;
    open_desk(app, &admin, "members", true).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let u = app
            .signup(&format!("view{i}@example.com"), &format!("Viewer {i}"))
            .await;
        let r = app
            .post(
                "/api/v1/support",
                Some(&u.token),
                json!({"workspaceId": "default"}),
            )
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let view = |q: &'static str| {
        let token = agent.token.clone();
        async move {
            let r = app
                .get(&format!("/api/v1/conversations?kind=inbox{q}"), &token)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text);
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // Newest opening first; then the first patient writes and goes to the top.
    assert_eq!(
        view("").await,
        [ids[2].clone(), ids[1].clone(), ids[0].clone()]
    );
    let first = app.conversation(&agent, &ids[0]).await;
    let patient0 = first["lead"]["userId"].as_str().unwrap().to_owned();
    let login = app.login("view0@example.com", "phone").await;
    assert_eq!(login.id, patient0);
    app.say(&login, &ids[0], "Hello?").await;
    assert_eq!(view("").await[0], ids[0]);
    assert_eq!(view("&unread=true").await, [ids[0].clone()]);
    // The lead's tag and stage.
    let lead = first["lead"]["id"].as_str().unwrap();
    app.patch(
        &format!("/api/v1/leads/{lead}"),
        &agent.token,
        json!({"tags": ["vip"], "stage": "won"}),
    )
    .await
    .assert_ok();
    assert_eq!(view("&tag=vip").await, [ids[0].clone()]);
    assert_eq!(view("&stage=won").await, [ids[0].clone()]);
    assert!(view("&stage=lost").await.is_empty());
    // The lead's conversations (the inbox panel's "other conversations").
    let of_lead = app
        .get(
            &format!("/api/v1/conversations?kind=inbox&lead={lead}"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(of_lead["items"].as_array().unwrap().len(), 1);
    assert_eq!(of_lead["items"][0]["id"], ids[0].as_str());
    app.get(&format!("/api/v1/conversations?lead={lead}"), &agent.token)
        .await
        .assert_problem(422, "validation_failed");
    // Paging walks the same order.
    let r = app
        .get("/api/v1/conversations?kind=support&limit=2", &agent.token)
        .await
        .assert_ok()
        .body;
    let cursor = r["nextCursor"].as_str().unwrap();
    let rest = app
        .get(
            &format!("/api/v1/conversations?kind=support&limit=2&cursor={cursor}"),
            &agent.token,
        )
        .await
        .assert_ok()
        .body;
    assert_eq!(rest["items"][0]["id"], ids[1].as_str());
    assert!(rest["nextCursor"].is_null());
}

dual_test!(a_customers_message_is_read_when_any_agent_read_it);
async fn a_customers_message_is_read_when_any_agent_read_it(app: &TestApp) {
    let (admin, agent, patient) = team(app).await;
    open_desk(app, &admin, "members", true).await;
    let conv = support_conversation(app, &patient).await;
    let sent = app.say(&patient, &conv, "Is my order ready?").await;
    let seq = sent["seq"].as_i64().unwrap();
    assert_eq!(sent["status"], "sent");
    // One agent of two reads it: the patient sees it read (the team is one side).
    app.post(
        &format!("/api/v1/conversations/{conv}/read"),
        Some(&agent.token),
        json!({"seq": seq}),
    )
    .await
    .assert_ok();
    let history = app.history(&patient, &conv).await;
    assert_eq!(history.last().unwrap()["status"], "read", "{history:?}");
    // An agent's answer is read when the patient read it, whatever the other agents did.
    let answer = app.say(&agent, &conv, "Yes, come by.").await;
    assert_eq!(answer["status"], "sent");
    app.post(
        &format!("/api/v1/conversations/{conv}/read"),
        Some(&patient.token),
        json!({"seq": answer["seq"]}),
    )
    .await
    .assert_ok();
    let history = app.history(&agent, &conv).await;
    assert_eq!(history.last().unwrap()["status"], "read", "{history:?}");
}
