//! Campaigns: drafts checked, states moved only where they may go, the audience previewed,
//! sends paced per channel, each opted-in lead reached once, the funnel read from the
//! messages (statuses and replies), a reply landing in the inbox.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{eventually, TestApp, User};
use crate::whatsapp::{connected, deliver, envelope, fake_graph, text_from, FakeGraph};

fn template_sends(graph: &FakeGraph) -> Vec<Value> {
    graph
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, p, _, b)| m == "POST" && p.ends_with("/messages") && b["type"] == "template")
        .map(|(_, _, _, b)| b.clone())
        .collect()
}

async fn lead(app: &TestApp, owner: &User, body: Value) -> String {
    let r = app.post("/api/v1/leads", Some(&owner.token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn campaign(app: &TestApp, owner: &User, id: &str) -> Value {
    app.get(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await
        .assert_ok()
        .body
}

dual_test!(a_campaign_reaches_its_opted_in_audience_once_and_counts_the_funnel);
async fn a_campaign_reaches_its_opted_in_audience_once_and_counts_the_funnel(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, channel) = connected(app, &graph).await;
    app.patch(
        &format!("/api/v1/channels/{channel}"),
        &owner.token,
        json!({"sendRate": 0}),
    )
    .await
    .assert_problem(422, "validation_failed");
    let r = app
        .patch(
            &format!("/api/v1/channels/{channel}"),
            &owner.token,
            json!({"sendRate": 4}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["sendRate"], 4);
    let opted = json!({"status": "opted_in", "source": "form"});
    let mut vips = Vec::new();
    for (i, city) in ["Porto", "Lisboa", "Braga", "Faro"].iter().enumerate() {
        vips.push(
            lead(
                app,
                &owner,
                json!({"name": format!("Vip {i}"), "phone": format!("+35191000000{i}"),
                "tags": ["vip"], "optIn": opted, "attributes": {"city": city}}),
            )
            .await,
        );
    }
    lead(
        app,
        &owner,
        json!({"name": "Out", "phone": "+351910000009", "tags": ["vip"],
        "optIn": {"status": "opted_out", "source": "form"}}),
    )
    .await;
    lead(
        app,
        &owner,
        json!({"name": "Plain", "phone": "+351910000008", "optIn": opted}),
    )
    .await;
    lead(
        app,
        &owner,
        json!({"name": "Mail only", "email": "m@example.com", "tags": ["vip"], "optIn": opted}),
    )
    .await;
    let template = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "promo_x", "language": "en_US", "category": "marketing",
                   "components": [{"type": "BODY", "text": "Hi {{1}}, 20% off in {{2}}"}]}),
        )
        .await
        .assert_ok()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // In Lisbon 01:30 on 2026-03-29 never happens (the clocks skip it).
    app.patch(
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"timezone": "Europe/Lisbon"}}),
    )
    .await
    .assert_ok();
    for bad in [
        json!({"channelId": channel, "templateId": template}),
        json!({"name": "x", "channelId": "nope", "templateId": template}),
        json!({"name": "x", "channelId": channel, "templateId": "nope"}),
        json!({"name": "x", "channelId": channel, "templateId": template, "audience": {"tags": []}}),
        json!({"name": "x", "channelId": channel, "templateId": template, "audience": {"colour": "red"}}),
        json!({"name": "x", "channelId": channel, "templateId": template, "scheduledAt": "2026-03-29T01:30"}),
    ] {
        let r = app
            .post("/api/v1/campaigns", Some(&owner.token), bad.clone())
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
    }
    let r = app
        .post(
            "/api/v1/campaigns",
            Some(&owner.token),
            json!({"name": "Spring", "channelId": channel, "templateId": template,
                   "parameters": ["{{lead.name}}"], "audience": {"tags": ["vip"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "draft");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = |action: &str| format!("/api/v1/campaigns/{id}/{action}");
    // A template of two parameters with one: refused when it is scheduled.
    app.post(&path("schedule"), Some(&owner.token), json!({}))
        .await
        .assert_problem(422, "validation_failed");
    app.patch(
        &format!("/api/v1/campaigns/{id}"),
        &owner.token,
        json!({"parameters": ["{{lead.name}}", "{{lead.attributes.city}}"]}),
    )
    .await
    .assert_ok();
    for action in ["pause", "resume"] {
        app.post(&path(action), Some(&owner.token), json!({}))
            .await
            .assert_problem(409, "campaign_state");
    }
    let preview = app.get(&path("preview"), &owner.token).await.assert_ok();
    assert_eq!(preview.body["count"], 4, "{}", preview.text);
    assert_eq!(preview.body["sample"].as_array().unwrap().len(), 4);

    // Scheduled without a time (and without a body): now.
    let r = app
        .call(
            reqwest::Method::POST,
            &path("schedule"),
            Some(&owner.token),
            None,
        )
        .await
        .assert_ok();
    assert_eq!(r.body["status"], "scheduled", "{}", r.text);
    app.patch(
        &format!("/api/v1/campaigns/{id}"),
        &owner.token,
        json!({"name": "late"}),
    )
    .await
    .assert_problem(409, "campaign_state");
    let done = eventually(std::time::Duration::from_secs(30), || async {
        let c = campaign(app, &owner, &id).await;
        match c["status"].as_str() {
            Some("completed") => Ok(c),
            _ => Err(c.to_string()),
        }
    })
    .await;
    assert!(
        done["startedAt"].is_string() && done["finishedAt"].is_string(),
        "{done}"
    );
    app.run_pending_jobs().await;
    let sent = template_sends(&graph);
    let mut to: Vec<&str> = sent.iter().map(|b| b["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(
        to,
        [
            "351910000000",
            "351910000001",
            "351910000002",
            "351910000003"
        ]
    );
    let porto = sent.iter().find(|b| b["to"] == "351910000000").unwrap();
    assert_eq!(
        porto["template"]["components"][0]["parameters"],
        json!([{"type": "text", "text": "Vip 0"}, {"type": "text", "text": "Porto"}])
    );
    // Paced: four a second on this channel, 250 ms apart.
    let mut slots: Vec<i64> =
        sqlx::query_scalar("SELECT send_at FROM campaign_recipients WHERE campaign_id = $1")
            .bind(&id)
            .fetch_all(app.state.db.reader())
            .await
            .unwrap();
    slots.sort();
    let gaps: Vec<i64> = slots.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [250, 250, 250], "{slots:?}");

    // Statuses and a reply move the funnel; the reply opens the conversation in the inbox.
    let recipients = app.get(&path("recipients"), &owner.token).await.assert_ok();
    let items = recipients.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|r| r["status"] == "sent"), "{items:?}");
    let wamid_of = |message: &str| {
        let message = message.to_owned();
        async move {
            sqlx::query_scalar::<_, String>("SELECT external_id FROM messages WHERE id = $1")
                .bind(message)
                .fetch_one(app.state.db.reader())
                .await
                .unwrap()
        }
    };
    let first = &items[0];
    let phone = first["phone"]
        .as_str()
        .unwrap()
        .trim_start_matches('+')
        .to_owned();
    let wamid = wamid_of(first["messageId"].as_str().unwrap()).await;
    let read = envelope(
        json!([]),
        json!([]),
        json!([{"id": wamid, "status": "read", "timestamp": chrono::Utc::now().timestamp().to_string(), "recipient_id": phone}]),
    );
    assert_eq!(deliver(app, &read, None).await.0, StatusCode::OK);
    let now = chrono::Utc::now().timestamp();
    let reply = text_from(&phone, "Vip", "wamid.reply1", "Yes please!", now);
    assert_eq!(deliver(app, &reply, None).await.0, StatusCode::OK);
    app.run_pending_jobs().await;
    let stats = app.get(&path("stats"), &owner.token).await.assert_ok();
    assert_eq!(
        stats.body,
        json!({"audience": 4, "queued": 4, "sent": 4, "delivered": 1, "read": 1, "failed": 0, "replied": 1})
    );
    let replied = app
        .get(
            &format!("{}?status=replied", path("recipients")),
            &owner.token,
        )
        .await
        .assert_ok();
    assert_eq!(
        replied.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        replied.text
    );
    let conv = replied.body["items"][0]["conversationId"].as_str().unwrap();
    assert_eq!(app.conversation(&owner, conv).await["status"], "open");
    // The others' conversations were made closed: a campaign opens no work in the inbox.
    let other = items[1]["conversationId"].as_str().unwrap();
    assert_eq!(app.conversation(&owner, other).await["status"], "closed");

    app.post(&path("cancel"), Some(&owner.token), json!({}))
        .await
        .assert_problem(409, "campaign_state");
    let r = app
        .delete(&format!("/api/v1/campaigns/{id}"), &owner.token)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

dual_test!(a_schedule_is_in_the_workspace_clock_and_a_campaign_stops_when_told);
async fn a_schedule_is_in_the_workspace_clock_and_a_campaign_stops_when_told(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, channel) = connected(app, &graph).await;
    app.patch(
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"timezone": "Europe/Lisbon"}}),
    )
    .await
    .assert_ok();
    let template = app
        .post(
            "/api/v1/templates",
            Some(&owner.token),
            json!({"name": "hello", "language": "en_US", "category": "marketing",
                   "components": [{"type": "BODY", "text": "Hello"}]}),
        )
        .await
        .assert_ok()
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let opted = json!({"status": "opted_in", "source": "import"});
    for i in 0..6 {
        lead(
            app,
            &owner,
            json!({"name": format!("L{i}"), "phone": format!("+35192000000{i}"), "optIn": opted}),
        )
        .await;
    }
    let token = owner.token.clone();
    let new = |name: &str| {
        let body = json!({"name": name, "channelId": channel, "templateId": template});
        let token = token.clone();
        async move {
            app.post("/api/v1/campaigns", Some(&token), body)
                .await
                .assert_ok()
                .body["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // Local summer time in Lisbon is UTC+1.
    let later = new("later").await;
    let r = app
        .post(
            &format!("/api/v1/campaigns/{later}/schedule"),
            Some(&owner.token),
            json!({"at": "2099-07-01T09:00"}),
        )
        .await
        .assert_ok();
    assert_eq!(
        r.body["scheduledAt"], "2099-07-01T08:00:00.000Z",
        "{}",
        r.text
    );
    let r = app
        .post(
            &format!("/api/v1/campaigns/{later}/cancel"),
            Some(&owner.token),
            json!({}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["status"], "cancelled");

    // One a second: paused after it started, nothing more goes; resumed, the rest go.
    app.patch(
        &format!("/api/v1/channels/{channel}"),
        &owner.token,
        json!({"sendRate": 1}),
    )
    .await
    .assert_ok();
    let slow = new("slow").await;
    app.post(
        &format!("/api/v1/campaigns/{slow}/schedule"),
        Some(&owner.token),
        json!({}),
    )
    .await
    .assert_ok();
    // Running, and its first recipients handed to the outbound queue (the start and the
    // first claims are transactions of their own).
    eventually(std::time::Duration::from_secs(30), || async {
        let stats = app
            .get(&format!("/api/v1/campaigns/{slow}/stats"), &owner.token)
            .await
            .assert_ok()
            .body;
        match stats["queued"].as_i64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(stats.to_string()),
        }
    })
    .await;
    let r = app
        .post(
            &format!("/api/v1/campaigns/{slow}/pause"),
            Some(&owner.token),
            json!({}),
        )
        .await
        .assert_ok();
    assert_eq!(r.body["status"], "paused");
    let stats = app
        .get(&format!("/api/v1/campaigns/{slow}/stats"), &owner.token)
        .await
        .assert_ok()
        .body;
    let handed = stats["queued"].as_i64().unwrap();
    assert!((1..6).contains(&handed), "{stats}");
    app.run_pending_jobs().await;
    assert_eq!(template_sends(&graph).len() as i64, handed);
    app.post(
        &format!("/api/v1/campaigns/{slow}/resume"),
        Some(&owner.token),
        json!({}),
    )
    .await
    .assert_ok();
    app.patch(
        &format!("/api/v1/channels/{channel}"),
        &owner.token,
        json!({"sendRate": 100}),
    )
    .await
    .assert_ok();
    eventually(std::time::Duration::from_secs(30), || async {
        let c = campaign(app, &owner, &slow).await;
        match c["status"].as_str() {
            Some("completed") => Ok(()),
            _ => Err(c.to_string()),
        }
    })
    .await;
    app.run_pending_jobs().await;
    let mut to: Vec<String> = template_sends(&graph)
        .iter()
        .map(|b| b["to"].as_str().unwrap().to_owned())
        .collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 6, "each lead once: {to:?}");
    assert_eq!(template_sends(&graph).len(), 6);
}
