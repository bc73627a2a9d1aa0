//! Analytics: the facts written by what happens in the inbox, and the figures computed from
//! them, checked against a fixed data set worked out by hand across Lisbon's change to summer
//! time.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::dual_test;
use crate::helpers::{TestApp, User};
use crate::whatsapp::{connected, deliver, fake_graph, inbox, text_from};

/// An instant as epoch milliseconds.
fn ms(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap()
        .timestamp_millis()
}

async fn report(app: &TestApp, user: &User, path: &str) -> Value {
    app.get(&format!("/api/v1/analytics/{path}"), &user.token)
        .await
        .assert_ok()
        .body
}

/// A WhatsApp customer's message at `ts` (seconds), carried out.
async fn customer_says(app: &TestApp, wamid: &str, text: &str, ts: i64) {
    let body = text_from("351912345678", "Rosa", wamid, text, ts);
    assert_eq!(deliver(app, &body, None).await.0, StatusCode::OK);
    app.run_pending_jobs().await;
}

fn seconds(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a duration: {v}"))
}

dual_test!(what_happens_in_the_inbox_is_counted);
async fn what_happens_in_the_inbox_is_counted(app: &TestApp) {
    let graph = fake_graph().await;
    let (owner, channel) = connected(app, &graph).await;
    let agent = app.signup("agent@example.com", "Ana Agent").await;
    crate::inbox::set_role(app, &owner, &agent, "agent").await;
    let member = app.signup("member@example.com", "Max Member").await;

    // The customer wrote ten minutes ago (WhatsApp's own timestamp), twice.
    let start = chrono::Utc::now().timestamp() - 600;
    for (wamid, text) in [("wamid.A1", "Hello?"), ("wamid.A2", "Anyone there?")] {
        customer_says(app, wamid, text, start).await;
    }
    let conv = inbox(app, &owner, "", |items| !items.is_empty()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &owner.token,
        json!({"assigneeId": agent.id}),
    )
    .await
    .assert_ok();
    app.say(&agent, &conv, "Here! How can I help?").await;
    app.say(&agent, &conv, "We are open until six.").await;
    let now = chrono::Utc::now().timestamp();
    customer_says(app, "wamid.A3", "Thanks", now).await;
    app.say(&agent, &conv, "You're welcome").await;
    app.patch(
        &format!("/api/v1/conversations/{conv}"),
        &agent.token,
        json!({"status": "closed"}),
    )
    .await
    .assert_ok();
    customer_says(app, "wamid.A4", "One more thing", now).await;

    // A support conversation: the customer writes, the agent answers.
    crate::inbox::open_desk(app, &owner, "members", true).await;
    let patient = app.signup("patient@example.com", "Pat").await;
    let r = app
        .post(
            "/api/v1/support",
            Some(&patient.token),
            json!({"workspaceId": "default"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let desk = r.body["id"].as_str().unwrap().to_owned();
    app.say(&patient, &desk, "My order?").await;
    app.say(&agent, &desk, "On its way").await;

    let o = report(app, &owner, "overview").await;
    assert_eq!(o["timezone"], "UTC");
    assert_eq!(o["days"].as_array().unwrap().len(), 30);
    assert_eq!(
        (&o["opened"], &o["reopened"], &o["closed"]),
        (&json!(2), &json!(1), &json!(1)),
        "{o}"
    );
    assert_eq!(
        (&o["messagesIn"], &o["messagesOut"]),
        (&json!(5), &json!(4)),
        "{o}"
    );
    // The first answers: the WhatsApp customer's after ten minutes, the patient's at once.
    let first = &o["firstResponse"];
    assert_eq!(first["count"], 2, "{o}");
    let p90 = seconds(&first["p90Seconds"]);
    assert!((600.0..700.0).contains(&p90), "{first}");
    assert!(seconds(&first["medianSeconds"]) < 60.0, "{first}");
    assert_eq!(
        first["businessP90Seconds"], first["p90Seconds"],
        "no hours set: always open"
    );
    // Opened ten minutes before it closed.
    let resolution = seconds(&o["resolution"]["medianSeconds"]);
    assert!((600.0..700.0).contains(&resolution), "{o}");

    let channels = report(app, &owner, "channels").await;
    let rows = channels["channels"].as_array().unwrap();
    assert_eq!(rows[0]["channelId"], Value::Null);
    assert_eq!(
        (&rows[0]["messagesIn"], &rows[0]["messagesOut"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(rows[1]["channelId"], channel.as_str());
    assert_eq!(rows[1]["name"], "Support");
    assert_eq!(
        (&rows[1]["opened"], &rows[1]["reopened"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(
        (&rows[1]["messagesIn"], &rows[1]["messagesOut"]),
        (&json!(4), &json!(3))
    );

    let agents = report(app, &owner, "agents").await;
    let ana = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["userId"] == agent.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (&ana["assigned"], &ana["replied"], &ana["closed"]),
        (&json!(1), &json!(4), &json!(1)),
        "{ana}"
    );
    assert_eq!(
        ana["response"]["count"], 3,
        "two waits on WhatsApp, one at the desk: {ana}"
    );
    assert_eq!(ana["firstResponse"]["count"], 2, "{ana}");
    // An agent reads their own row only, and nothing else; a member nothing at all.
    let own = report(app, &agent, "agents").await;
    assert_eq!(own["agents"].as_array().unwrap().len(), 1);
    assert_eq!(own["agents"][0]["userId"], agent.id.as_str());
    for path in ["overview", "channels", "campaigns", "overview.csv"] {
        app.get(&format!("/api/v1/analytics/{path}"), &agent.token)
            .await
            .assert_problem(403, "forbidden");
    }
    app.get("/api/v1/analytics/agents", &member.token)
        .await
        .assert_problem(403, "forbidden");
    let csv = app.get("/api/v1/analytics/agents.csv", &agent.token).await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 2, "{}", csv.text);
    assert!(lines[0].starts_with("userId,name,role,assigned,replied,closed,responseCount,"));
    assert!(lines[1].starts_with(&format!("{},Ana Agent,agent,1,4,1,3,", agent.id)));
}

/// An `inbox_events` row: conversation, channel, kind, agent, at, since, first.
type Fact<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    i64,
);

/// The fixed data set: facts as the inbox writes them, at chosen instants around the night of
/// 2026-03-29, when Lisbon went from 01:00 (UTC+0) to 02:00 (UTC+1). Open 09:00–17:00 daily.
async fn fixed_facts(app: &TestApp, x: &str, y: &str) {
    let ws = &app.state.db;
    let workspace = app.state.default_workspace_id.clone();
    let events: [Fact; 11] = [
        ("D", None, "opened", None, "2026-03-28T00:00:00Z", None, 0),
        ("A", None, "opened", None, "2026-03-28T23:30:00Z", None, 0),
        (
            "A",
            None,
            "assigned",
            Some(x),
            "2026-03-28T23:31:00Z",
            None,
            0,
        ),
        ("B", None, "opened", None, "2026-03-29T00:30:00Z", None, 0),
        (
            "B",
            None,
            "response",
            Some(x),
            "2026-03-29T08:30:00Z",
            Some("2026-03-29T00:30:00Z"),
            1,
        ),
        (
            "A",
            None,
            "response",
            Some(x),
            "2026-03-29T09:00:00Z",
            Some("2026-03-28T23:30:00Z"),
            1,
        ),
        (
            "B",
            None,
            "response",
            Some(x),
            "2026-03-29T10:10:00Z",
            Some("2026-03-29T10:00:00Z"),
            0,
        ),
        (
            "A",
            None,
            "closed",
            Some(x),
            "2026-03-29T17:00:00Z",
            Some("2026-03-28T23:30:00Z"),
            0,
        ),
        (
            "C",
            Some("ch-gone"),
            "opened",
            None,
            "2026-03-29T23:30:00Z",
            None,
            0,
        ),
        ("A", None, "reopened", None, "2026-03-30T07:00:00Z", None, 0),
        (
            "C",
            Some("ch-gone"),
            "response",
            Some(y),
            "2026-03-30T12:00:00Z",
            Some("2026-03-29T23:30:00Z"),
            1,
        ),
    ];
    let outside = [("E", "2026-03-30T23:00:00Z"), ("F", "2026-03-27T23:59:59Z")];
    for (conv, channel, kind, agent, at, since, first) in events {
        sqlx::query(
            "INSERT INTO inbox_events (workspace_id, conversation_id, channel_id, kind, agent_id, at, since, first) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&workspace)
        .bind(conv)
        .bind(channel)
        .bind(kind)
        .bind(agent)
        .bind(ms(at))
        .bind(since.map(ms))
        .bind(first)
        .execute(ws.writer())
        .await
        .unwrap();
    }
    for (conv, at) in outside {
        sqlx::query(
            "INSERT INTO inbox_events (workspace_id, conversation_id, kind, at) VALUES ($1, $2, 'opened', $3)",
        )
        .bind(&workspace)
        .bind(conv)
        .bind(ms(at))
        .execute(ws.writer())
        .await
        .unwrap();
    }
    let traffic = [
        ("2026-03-27T23:45:00Z", "", "in", 9),
        ("2026-03-28T23:30:00Z", "", "in", 5),
        ("2026-03-29T00:45:00Z", "", "in", 2),
        ("2026-03-29T09:00:00Z", "", "out", 4),
        ("2026-03-29T23:45:00Z", "ch-gone", "in", 3),
        ("2026-03-30T12:00:00Z", "ch-gone", "out", 1),
        ("2026-03-30T23:00:00Z", "", "in", 7),
    ];
    for (bucket, channel, direction, n) in traffic {
        sqlx::query(
            "INSERT INTO inbox_traffic (workspace_id, bucket, channel_id, direction, messages) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&workspace)
        .bind(ms(bucket))
        .bind(channel)
        .bind(direction)
        .bind(n as i64)
        .execute(ws.writer())
        .await
        .unwrap();
    }
    for (bucket, agent, n) in [
        ("2026-03-29T09:00:00Z", x, 4),
        ("2026-03-30T12:00:00Z", y, 1),
    ] {
        sqlx::query(
            "INSERT INTO inbox_replies (workspace_id, bucket, agent_id, messages) VALUES ($1, $2, $3, $4)",
        )
        .bind(&workspace)
        .bind(ms(bucket))
        .bind(agent)
        .bind(n as i64)
        .execute(ws.writer())
        .await
        .unwrap();
    }
}

/// `{count, medianSeconds, p90Seconds, businessMedianSeconds, businessP90Seconds}`.
fn times(count: i64, wall: (f64, f64), business: (f64, f64)) -> Value {
    json!({"count": count, "medianSeconds": wall.0, "p90Seconds": wall.1,
        "businessMedianSeconds": business.0, "businessP90Seconds": business.1})
}

dual_test!(figures_match_the_hand_computed_ones_across_a_clock_change);
async fn figures_match_the_hand_computed_ones_across_a_clock_change(app: &TestApp) {
    let (owner, agent, _) = crate::inbox::team(app).await;
    let every_day = json!([{"open": "09:00", "close": "17:00"}]);
    let week: serde_json::Map<String, Value> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (d.to_string(), every_day.clone()))
        .collect();
    app.patch(
        "/api/v1/workspaces/default",
        &owner.token,
        json!({"settings": {"timezone": "Europe/Lisbon", "businessHours": week}}),
    )
    .await
    .assert_ok();
    fixed_facts(app, &agent.id, &owner.id).await;

    let range = "from=2026-03-28&to=2026-03-30";
    let o = report(app, &owner, &format!("overview?{range}")).await;
    assert_eq!(o["from"], "2026-03-28T00:00:00.000Z", "{o}");
    assert_eq!(
        o["to"], "2026-03-30T23:00:00.000Z",
        "the 31st starts in summer time: {o}"
    );
    assert_eq!(o["timezone"], "Europe/Lisbon");
    assert_eq!(
        (&o["opened"], &o["reopened"], &o["closed"]),
        (&json!(4), &json!(1), &json!(1)),
        "D, A, B and C (E opens as the range ends): {o}"
    );
    assert_eq!(
        (&o["messagesIn"], &o["messagesOut"]),
        (&json!(10), &json!(5))
    );
    // First answers (wall, business): A 9.5 h, 1 h (Saturday night is closed; Sunday opens
    // at 09:00 summer time, 08:00 UTC); B 8 h, 0.5 h; C 12.5 h, 4 h.
    assert_eq!(
        o["firstResponse"],
        times(3, (34_200.0, 45_000.0), (3_600.0, 14_400.0)),
        "{o}"
    );
    // A opened Saturday 23:30 and closed Sunday 18:00 local: 17.5 h, of which 8 h open.
    assert_eq!(
        o["resolution"],
        times(1, (63_000.0, 63_000.0), (28_800.0, 28_800.0))
    );
    let days = o["days"].as_array().unwrap();
    let dates: Vec<&str> = days.iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2026-03-28", "2026-03-29", "2026-03-30"]);
    let counts = |d: &Value| {
        ["opened", "reopened", "closed", "messagesIn", "messagesOut"]
            .map(|k| d[k].as_i64().unwrap())
    };
    assert_eq!(counts(&days[0]), [2, 0, 0, 5, 0], "D and A: {}", days[0]);
    assert_eq!(counts(&days[1]), [1, 0, 1, 2, 4], "B: {}", days[1]);
    // C opened at 23:30 UTC on the 29th: 00:30 on the 30th in summer time.
    assert_eq!(counts(&days[2]), [1, 1, 0, 3, 1], "C: {}", days[2]);
    assert_eq!(
        days[1]["firstResponse"],
        times(2, (28_800.0, 34_200.0), (1_800.0, 3_600.0))
    );

    // The same days in UTC: C's opening and traffic fall on the 29th.
    let utc = report(app, &owner, &format!("overview?{range}&tz=UTC")).await;
    let days = utc["days"].as_array().unwrap();
    assert_eq!(counts(&days[1]), [2, 0, 1, 5, 4], "{}", days[1]);

    let a = report(app, &owner, &format!("agents?{range}")).await;
    let row = |id: &str| {
        a["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["userId"] == id)
            .unwrap()
            .clone()
    };
    let x = row(&agent.id);
    assert_eq!(
        (&x["assigned"], &x["replied"], &x["closed"]),
        (&json!(1), &json!(4), &json!(1))
    );
    // A 9.5 h (1 h), B 8 h (0.5 h) and B's second wait, 10 minutes within hours.
    assert_eq!(
        x["response"],
        times(3, (28_800.0, 34_200.0), (1_800.0, 3_600.0))
    );
    assert_eq!(x["firstResponse"]["count"], 2);
    let y = row(&owner.id);
    assert_eq!(
        y["response"],
        times(1, (45_000.0, 45_000.0), (14_400.0, 14_400.0))
    );
    assert_eq!(y["replied"], 1);

    let c = report(app, &owner, &format!("channels?{range}")).await;
    let rows = c["channels"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{c}");
    assert_eq!(counts(&rows[0]), [3, 1, 1, 7, 4], "the desk: {}", rows[0]);
    assert_eq!(
        (&rows[1]["channelId"], &rows[1]["name"]),
        (&json!("ch-gone"), &json!("deleted channel"))
    );
    assert_eq!(counts(&rows[1]), [1, 0, 0, 3, 1]);

    // RFC 3339 bounds: Sunday from the jump on.
    let o = report(
        app,
        &owner,
        "overview?from=2026-03-29T01:00:00Z&to=2026-03-29T12:00:00%2B01:00",
    )
    .await;
    assert_eq!(
        (&o["opened"], &o["messagesOut"]),
        (&json!(0), &json!(4)),
        "{o}"
    );
    assert_eq!(o["firstResponse"]["count"], 2);

    let csv = app
        .get(
            &format!("/api/v1/analytics/overview.csv?{range}"),
            &owner.token,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines.len(), 5, "{}", csv.text);
    assert!(lines[0].starts_with("date,opened,reopened,closed,messagesIn,messagesOut,firstResponseCount,firstResponseMedianSeconds"));
    assert_eq!(
        lines[3],
        "2026-03-30,1,1,0,3,1,1,45000,45000,14400,14400,0,,,,"
    );
    assert!(lines[4].starts_with("total,4,1,1,10,5,3,34200,45000,3600,14400,1,63000,"));

    for bad in [
        "from=2026-03-30&to=2026-03-28",
        "from=yesterday",
        "tz=Mars/Olympus",
        "from=2025-01-01&to=2026-03-01",
        "to=2026-13-01",
    ] {
        app.get(&format!("/api/v1/analytics/overview?{bad}"), &owner.token)
            .await
            .assert_problem(422, "validation_failed");
    }
}
