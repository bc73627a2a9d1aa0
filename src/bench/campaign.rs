//! Campaign sends: `recipients` opted-in leads (a CSV import) in a workspace of the bench's own,
//! a channel whose Graph API is a stand-in served by the bench (it answers every send at once
//! and notes when it came), `sendRate` = `rate`, one template campaign scheduled now. Reported:
//! the send rate the stand-in saw (from its first send to its last) against the channel's,
//! the time from schedule to the last send, and that each lead got one message. The server
//! must run with `PALAVER_RATE_LIMITS=off`, `PALAVER_WORKSPACES=open` and
//! `PALAVER_OUTBOUND_ALLOW=127.0.0.1`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::report::{Probe, Report};
use super::setup::Api;
use super::Common;

/// What the stand-in Graph API saw: (when, to whom).
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

async fn stand_in_graph() -> anyhow::Result<(String, Seen)> {
    let seen: Seen = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/{version}/{phone}/messages",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let s = s.clone();
            async move {
                let to = body["to"].as_str().unwrap_or_default().to_owned();
                let n = {
                    let mut seen = s.lock().expect("not poisoned");
                    seen.push((Instant::now(), to));
                    seen.len()
                };
                axum::Json(json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.bench.{n}")}]}))
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, seen))
}

pub async fn run(c: &Common, recipients: usize, rate: u64) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let (graph, seen) = stand_in_graph().await?;
    let owner = api.signup("campaign").await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let ws = api
        .call(
            reqwest::Method::POST,
            "/workspaces",
            Some(&owner.token),
            Some(json!({"name": "campaign bench", "slug": format!("campaign-{}", &tag[20..])})),
        )
        .await
        .context("creating a workspace (run the server with PALAVER_WORKSPACES=open)")?;
    let workspace = ws["id"].as_str().context("workspace id")?.to_owned();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (api, workspace, token) = (&api, workspace.clone(), owner.token.clone());
        async move {
            api.call_in(&workspace, method, &path, Some(&token), body)
                .await
        }
    };
    let phone_number_id = format!(
        "8{}",
        &tag[18..30]
            .bytes()
            .map(|b| (b % 10 + b'0') as char)
            .collect::<String>()
    );
    let channel = call(
        reqwest::Method::POST,
        "/channels".into(),
        Some(json!({"phoneNumberId": phone_number_id, "accessToken": "bench", "graphBaseUrl": graph, "sendRate": rate})),
    )
    .await?["id"]
        .as_str()
        .context("channel id")?
        .to_owned();
    let mut csv = String::from("name,phone,optIn\n");
    for i in 0..recipients {
        csv.push_str(&format!("Lead {i},+4915{i:09},opted_in\n"));
    }
    let import = api
        .post_text(&workspace, "/leads/import", &owner.token, "text/csv", csv)
        .await?;
    let import = import["id"].as_str().context("import id")?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = call(
            reqwest::Method::GET,
            format!("/leads/imports/{import}"),
            None,
        )
        .await?;
        if r["status"] == "completed" {
            break;
        }
        if r["status"] == "failed" || Instant::now() > deadline {
            bail!("the import did not complete: {r}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let template = call(
        reqwest::Method::POST,
        "/templates".into(),
        Some(
            json!({"name": "bench_sale", "language": "en_US", "category": "marketing",
                    "components": [{"type": "BODY", "text": "Hi {{1}}, the sale starts today"}]}),
        ),
    )
    .await?["id"]
        .as_str()
        .context("template id")?
        .to_owned();
    let campaign = call(
        reqwest::Method::POST,
        "/campaigns".into(),
        Some(json!({"name": "bench", "channelId": channel, "templateId": template, "parameters": ["{{lead.name}}"]})),
    )
    .await?["id"]
        .as_str()
        .context("campaign id")?
        .to_owned();

    let mut report = Report::new("campaign", json!({"recipients": recipients, "rate": rate}));
    let probe = Probe::start(c.pid);
    let started = Instant::now();
    call(
        reqwest::Method::POST,
        format!("/campaigns/{campaign}/schedule"),
        Some(json!({})),
    )
    .await?;
    let limit = Duration::from_secs_f64(recipients as f64 / rate as f64 * 3.0 + 60.0);
    while seen.lock().expect("not poisoned").len() < recipients {
        if started.elapsed() > limit {
            bail!(
                "{} of {recipients} sends after {limit:?}",
                seen.lock().expect("not poisoned").len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    report.server = probe.finish();
    report.seconds = total.as_secs_f64();
    let seen = seen.lock().expect("not poisoned").clone();
    let (first, last) = (
        seen.first().context("no sends")?.0,
        seen.last().context("no sends")?.0,
    );
    let span = last.duration_since(first).as_secs_f64();
    let measured = (seen.len() - 1) as f64 / span.max(1e-9);
    let mut per_lead: HashMap<&str, usize> = HashMap::new();
    for (_, to) in &seen {
        *per_lead.entry(to).or_default() += 1;
    }
    report.count("sends", seen.len() as u64);
    report.count("leads reached", per_lead.len() as u64);
    report.count(
        "leads reached twice",
        per_lead.values().filter(|n| **n > 1).count() as u64,
    );
    report.rate("configured send rate (messages/s)", rate as f64);
    report.rate("measured send rate (messages/s)", measured);
    report.rate("measured / configured (%)", measured / rate as f64 * 100.0);
    report.rate("schedule to last send (s)", total.as_secs_f64());
    // Pacing within each second: the largest burst the stand-in saw in any 100 ms.
    let mut burst = 0;
    let mut j = 0;
    for i in 0..seen.len() {
        while seen[i].0.duration_since(seen[j].0) > Duration::from_millis(100) {
            j += 1;
        }
        burst = burst.max(i - j + 1);
    }
    report.count("largest burst in 100 ms", burst as u64);
    let stats = call(
        reqwest::Method::GET,
        format!("/campaigns/{campaign}/stats"),
        None,
    )
    .await?;
    report
        .notes
        .push(format!("stats at the last send: {stats}"));
    Ok(report)
}
