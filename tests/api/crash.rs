//! `kill -9` in the middle of sending: every acknowledged message survives, exactly once, and
//! retrying the unacknowledged ones with their `clientMsgId` leaves no duplicates and no gaps
//! (quality.md, reliability). Runs the real binary on SQLite, where writes are group-committed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palaver::client;
use serde_json::{json, Value};

use crate::logs::start;

const WAIT: Duration = Duration::from_secs(10);

async fn post(base: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn history(base: &str, token: &str, conversation: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = reqwest::Client::new()
            .get(format!(
                "{base}/api/v1/conversations/{conversation}/messages?after={after}&limit=100"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["items"].as_array().unwrap().clone();
        if batch.is_empty() {
            return items;
        }
        after = batch.last().unwrap()["seq"].as_i64().unwrap();
        items.extend(batch);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PALAVER_RATE_LIMITS", "off".to_owned())];
    let mut server = start(&env, dir.path()).await;
    let base = server.base.clone();

    // Two senders, each writing into a direct conversation of their own.
    let mut senders = Vec::new();
    for (a, b) in [("k1", "k2"), ("k3", "k4")] {
        let signup = |name: &str| {
            post(
                &base,
                "/api/v1/auth/signup",
                None,
                json!({"email": format!("{name}@example.com"), "password": "correct horse battery", "displayName": name}),
            )
        };
        let a = signup(a).await;
        let b = signup(b).await;
        let token = a["accessToken"].as_str().unwrap().to_owned();
        let conv = post(
            &base,
            "/api/v1/conversations/direct",
            Some(&token),
            json!({"userId": b["user"]["id"]}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        senders.push((token, conv));
    }

    // Each sender keeps 8 sends in flight; acked ones are noted with their id and seq.
    let acked: Arc<Mutex<HashMap<String, (String, i64)>>> = Arc::default();
    let attempted: Arc<Mutex<HashSet<(usize, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (n, (token, conv)) in senders.iter().cloned().enumerate() {
        let (socket, _events) = client::connect(&base, &json!({"token": token}))
            .await
            .unwrap();
        let acked = acked.clone();
        let attempted = attempted.clone();
        tasks.push(tokio::spawn(async move {
            let _events = _events;
            let mut window = tokio::task::JoinSet::new();
            for i in 0.. {
                let id = format!("s{n}-{i}");
                attempted.lock().unwrap().insert((n, id.clone()));
                let body =
                    json!({"conversationId": conv, "clientMsgId": id, "type": "text", "text": id});
                let Ok(ack) = socket.call_later("message:send", &body).await else {
                    break;
                };
                let acked = acked.clone();
                window.spawn(async move {
                    if let Ok(Ok(ack)) = tokio::time::timeout(WAIT, ack).await {
                        if ack["ok"] == true {
                            let m = &ack["message"];
                            acked.lock().unwrap().insert(
                                id,
                                (
                                    m["id"].as_str().unwrap().to_owned(),
                                    m["seq"].as_i64().unwrap(),
                                ),
                            );
                        }
                    }
                });
                if window.len() >= 8 && window.join_next().await.is_none() {
                    break;
                }
            }
        }));
    }
    // Kill the server mid-stream once a good number of sends were acknowledged.
    crate::helpers::eventually(Duration::from_secs(30), || async {
        match acked.lock().unwrap().len() {
            n if n >= 300 => Ok(()),
            n => Err(format!("sends were not acknowledged ({n} of 300)")),
        }
    })
    .await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    // Restart on the same data: every acked message is there once, where the ack said.
    let server = start(&env, dir.path()).await;
    let base = server.base.clone();
    for (n, (token, conv)) in senders.iter().enumerate() {
        let items = history(&base, token, conv).await;
        let by_client: HashMap<&str, &Value> = items
            .iter()
            .map(|m| (m["clientMsgId"].as_str().unwrap(), m))
            .collect();
        assert_eq!(by_client.len(), items.len(), "no clientMsgId twice");
        for (id, (message_id, seq)) in acked
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("s{n}-")))
        {
            let m = by_client
                .get(id.as_str())
                .unwrap_or_else(|| panic!("acked {id} was lost"));
            assert_eq!(m["id"], message_id.as_str());
            assert_eq!(m["seq"], *seq);
        }

        // Retry everything that was attempted but not acked, with the same clientMsgId.
        let (socket, _events) = client::connect(&base, &json!({"token": token}))
            .await
            .unwrap();
        let mut retried = 0;
        for (_, id) in attempted
            .iter()
            .filter(|(m, id)| *m == n && !acked.contains_key(id))
        {
            let body =
                json!({"conversationId": conv, "clientMsgId": id, "type": "text", "text": id});
            let ack = socket.call("message:send", &body, WAIT).await.unwrap();
            assert_eq!(ack["ok"], true, "{ack}");
            retried += 1;
        }
        let items = history(&base, token, conv).await;
        let expected = attempted.iter().filter(|(m, _)| *m == n).count();
        eprintln!("sender {n}: {expected} attempted, {retried} retried after the restart");
        assert_eq!(
            items.len(),
            expected,
            "every attempt once ({retried} retried)"
        );
        let seqs: Vec<i64> = items.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert_eq!(
            seqs,
            (1..=expected as i64).collect::<Vec<_>>(),
            "no gaps in seq"
        );
    }
}

/// Polls an import until `done` says its report is what we wait for.
async fn import_report(base: &str, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/leads/imports/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `kill -9` in the middle of a CSV import: after a restart the job goes on from the chunk it
/// had claimed, and every row is imported exactly once (none skipped as a duplicate of itself,
/// none lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_resumes_and_imports_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_palaver"))
        .args(["admin", "create", "--email", "owner@example.com"])
        .args(["--password", "correct horse battery"])
        .env("PALAVER_DATA_DIR", dir.path())
        .env("PALAVER_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let env = [("PALAVER_RATE_LIMITS", "off".to_owned())];
    let mut server = start(&env, dir.path()).await;
    let login =
        json!({"email": "owner@example.com", "password": "correct horse battery", "deviceId": "t"});
    let token = post(&server.base, "/api/v1/auth/login", None, login.clone()).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    const ROWS: usize = 20_000;
    let mut csv = String::from("name,phone\n");
    for i in 0..ROWS {
        csv.push_str(&format!("Lead {i},+49170{i:07}\n"));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/leads/import", server.base))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Kill it once some chunks are in and many are not.
    let at_kill = crate::helpers::eventually(Duration::from_secs(60), || async {
        let report = import_report(&server.base, &token, &id).await;
        match report["imported"].as_u64() {
            Some(n) if n > 0 => Ok(report),
            _ => Err(report.to_string()),
        }
    })
    .await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    assert_eq!(at_kill["status"], "running", "{at_kill}");

    // The job's lease (60 s) ends, the restarted server takes it over.
    let server = start(&env, dir.path()).await;
    let token = post(&server.base, "/api/v1/auth/login", None, login).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = crate::helpers::eventually(Duration::from_secs(180), || async {
        let report = import_report(&server.base, &token, &id).await;
        if report["status"] == "completed" {
            Ok(report)
        } else {
            Err(report.to_string())
        }
    })
    .await;
    assert!(
        at_kill["imported"].as_u64().unwrap() < ROWS as u64,
        "the import was not cut: {at_kill}"
    );
    assert_eq!(
        (
            &done["imported"],
            &done["updated"],
            &done["skipped"],
            &done["rejected"]
        ),
        (&json!(ROWS), &json!(0), &json!(0), &json!(0)),
        "{done}"
    );
    let export = reqwest::Client::new()
        .get(format!("{}/api/v1/leads/export.csv", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        export.lines().count(),
        ROWS + 1,
        "one line per lead and the header"
    );
}

/// A GET as JSON.
async fn get(base: &str, path: &str, token: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `kill -9` in the middle of a campaign of 10,000 recipients: after a restart it goes on from
/// where it was, and each opted-in lead gets exactly one message (those whose send was in
/// flight at the kill, at most one per job worker, are marked failed, `unknown_outcome`, and
/// sent no second time), the 1,000 who did not opt in none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_campaign_sends_each_opted_in_lead_one_message() {
    let graph = crate::whatsapp::fake_graph().await;
    let dir = tempfile::tempdir().unwrap();
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_palaver"))
        .args(["admin", "create", "--email", "owner@example.com"])
        .args(["--password", "correct horse battery"])
        .env("PALAVER_DATA_DIR", dir.path())
        .env("PALAVER_LOG", "warn")
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let env = [
        ("PALAVER_RATE_LIMITS", "off".to_owned()),
        ("PALAVER_LOG", "info".to_owned()),
    ];
    let mut server = start(&env, dir.path()).await;
    let login =
        json!({"email": "owner@example.com", "password": "correct horse battery", "deviceId": "t"});
    let token = post(&server.base, "/api/v1/auth/login", None, login.clone()).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let channel = post(
        &server.base,
        "/api/v1/channels",
        Some(&token),
        json!({"phoneNumberId": "109876543210", "wabaId": "WABA1", "accessToken": "graph-token",
               "appSecret": "app-secret-for-tests", "graphBaseUrl": graph.base, "sendRate": 400}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    const OPTED: usize = 10_000;
    let mut csv = String::from("name,phone,optIn\n");
    for i in 0..OPTED + 1_000 {
        let opt = if i < OPTED { "opted_in" } else { "opted_out" };
        csv.push_str(&format!("Lead {i},+49170{i:07},{opt}\n"));
    }
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/leads/import", server.base))
        .bearer_auth(&token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let import = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::helpers::eventually(Duration::from_secs(120), || async {
        let report = import_report(&server.base, &token, &import).await;
        match report["status"].as_str() {
            Some("completed") => Ok(()),
            _ => Err(report.to_string()),
        }
    })
    .await;
    let template = post(
        &server.base,
        "/api/v1/templates",
        Some(&token),
        json!({"name": "sale", "language": "en_US", "category": "marketing",
               "components": [{"type": "BODY", "text": "Hi {{1}}, the sale starts today"}]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let campaign = post(
        &server.base,
        "/api/v1/campaigns",
        Some(&token),
        json!({"name": "Sale", "channelId": channel, "templateId": template, "parameters": ["{{lead.name}}"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        &server.base,
        &format!("/api/v1/campaigns/{campaign}/schedule"),
        Some(&token),
        json!({}),
    )
    .await;
    let sends = |graph: &crate::whatsapp::FakeGraph| {
        graph
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _, _)| m == "POST" && p.ends_with("/messages"))
            .map(|(_, _, _, b)| b["to"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<String>>()
    };
    crate::helpers::eventually(Duration::from_secs(60), || async {
        match sends(&graph).len() {
            n if n >= 2_000 => Ok(()),
            n => Err(format!("{n} sends so far")),
        }
    })
    .await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let at_kill = sends(&graph).len();

    let server = start(&env, dir.path()).await;
    let token = post(&server.base, "/api/v1/auth/login", None, login).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let stats_path = format!("/api/v1/campaigns/{campaign}/stats");
    let stats = crate::helpers::eventually(Duration::from_secs(180), || async {
        let c = get(
            &server.base,
            &format!("/api/v1/campaigns/{campaign}"),
            &token,
        )
        .await;
        let s = get(&server.base, &stats_path, &token).await;
        let settled = s["sent"].as_i64().unwrap_or(0) + s["failed"].as_i64().unwrap_or(0);
        if c["status"] == "completed" && settled == OPTED as i64 {
            Ok(s)
        } else {
            Err(format!("{c} {s}"))
        }
    })
    .await;
    assert!(
        at_kill < OPTED,
        "the campaign was not cut: {at_kill} sends before the kill"
    );
    eprintln!("campaign kill -9: {at_kill} sends before the kill, stats after: {stats}");
    let seen = sends(&graph);
    let mut per_number: HashMap<String, usize> = HashMap::new();
    for to in &seen {
        *per_number.entry(to.clone()).or_default() += 1;
    }
    let twice: Vec<_> = per_number.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let opted: HashSet<String> = (0..OPTED).map(|i| format!("49170{i:07}")).collect();
    let strangers: Vec<_> = per_number.keys().filter(|n| !opted.contains(*n)).collect();
    assert!(
        strangers.is_empty(),
        "sent to leads who did not opt in: {strangers:?}"
    );
    // Everyone else got theirs; the few whose send the kill cut are failed (unknown outcome:
    // they may or may not have left), never sent again.
    let failed = stats["failed"].as_i64().unwrap();
    assert!(failed <= 16, "{stats}");
    let unseen = opted
        .iter()
        .filter(|n| !per_number.contains_key(*n))
        .count() as i64;
    assert!(
        unseen <= failed,
        "{unseen} never sent, {failed} failed: {stats}"
    );
    assert_eq!(
        stats["sent"].as_i64().unwrap() + failed,
        OPTED as i64,
        "{stats}"
    );
    assert_eq!(stats["audience"], OPTED as i64);
    assert_eq!(stats["queued"], OPTED as i64);
}
