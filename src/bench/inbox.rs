//! The team inbox: `conversations` open WhatsApp conversations (one message from each
//! customer, by signed webhooks) in a workspace of `agents` agents, some assigned; then the
//! latency of the inbox views and the sidebar counts as agents page through them; then a CSV
//! import of `rows` leads, its rows/s, and meanwhile the latency of single lead writes (how
//! long the import holds the writer). The server must run with `PALAVER_RATE_LIMITS=off` and
//! `PALAVER_WORKSPACES=open`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::report::{histogram, record, Probe, Report};
use super::setup::{parallel, Api, User};
use super::webhooks;
use super::Common;

/// Open conversations each measured agent has assigned.
const ASSIGNED: usize = 20;

pub async fn run(
    c: &Common,
    conversations: usize,
    agents: usize,
    rows: usize,
    requests: usize,
) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let ch = webhooks::channel(&api, "inbox").await?;
    let team = team(&api, &ch, agents).await?;
    webhooks::open_conversations(c, &api, &ch, conversations).await?;
    assign(&api, &ch, &team).await?;

    let probe = Probe::start(c.pid);
    let started = Instant::now();
    let mut report = Report::new(
        "inbox",
        json!({"conversations": conversations, "agents": agents, "rows": rows, "requests": requests}),
    );
    let views = [
        (
            "view: all open, first page",
            "/conversations?kind=inbox&status=open",
        ),
        (
            "view: mine",
            "/conversations?kind=inbox&status=open&assignee=me",
        ),
        (
            "view: unassigned",
            "/conversations?kind=inbox&status=open&assignee=none",
        ),
        ("counts", "/inbox/counts"),
    ];
    for (name, path) in views {
        let mut h = histogram();
        for i in 0..requests {
            let agent = &team[i % team.len()];
            let t = Instant::now();
            let v = api
                .call_in(
                    &ch.workspace,
                    reqwest::Method::GET,
                    path,
                    Some(&agent.token),
                    None,
                )
                .await?;
            record(&mut h, t.elapsed());
            if i == 0 && name == "counts" {
                report.count(
                    "open conversations (counts.open)",
                    v["open"].as_u64().unwrap_or(0),
                );
            }
        }
        report.latency(name, &h);
    }
    import(&api, &ch, rows, &mut report).await?;
    report.seconds = started.elapsed().as_secs_f64();
    report.server = probe.finish();
    Ok(report)
}

/// The owner and `agents - 1` more, each an agent of the workspace.
pub(super) async fn team(
    api: &Api,
    ch: &webhooks::Channel,
    agents: usize,
) -> anyhow::Result<Vec<User>> {
    let others = api.users("inbox-agent", agents.saturating_sub(1)).await?;
    parallel(others.iter().map(|u| async move {
        api.call_in(
            &ch.workspace,
            reqwest::Method::POST,
            &format!("/workspaces/{}/members", ch.workspace),
            Some(&ch.owner.token),
            Some(json!({"userId": u.id, "role": "agent"})),
        )
        .await
    }))
    .await
    .context("making agents")?;
    let mut team = vec![ch.owner.clone()];
    team.extend(others);
    Ok(team)
}

/// Gives every agent `ASSIGNED` of the open conversations.
async fn assign(api: &Api, ch: &webhooks::Channel, team: &[User]) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    while ids.len() < team.len() * ASSIGNED {
        let page = api
            .call_in(
                &ch.workspace,
                reqwest::Method::GET,
                &format!("/conversations?kind=inbox&status=open&limit=100{cursor}"),
                Some(&ch.owner.token),
                None,
            )
            .await?;
        let items = page["items"].as_array().context("items")?;
        ids.extend(
            items
                .iter()
                .filter_map(|c| c["id"].as_str().map(str::to_owned)),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    parallel(ids.iter().enumerate().map(|(i, id)| {
        let agent = &team[i % team.len()];
        async move {
            api.call_in(
                &ch.workspace,
                reqwest::Method::PATCH,
                &format!("/conversations/{id}"),
                Some(&ch.owner.token),
                Some(json!({"assigneeId": agent.id})),
            )
            .await
        }
    }))
    .await
    .context("assigning")?;
    Ok(())
}

/// Imports `rows` leads from CSV; meanwhile one lead is written at a time and timed.
async fn import(
    api: &Api,
    ch: &webhooks::Channel,
    rows: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut csv = String::from("name,phone,email,tags,stage,optIn,attributes.city\n");
    for i in 0..rows {
        csv.push_str(&format!(
            "Lead {i},+4917{i:09},lead{i}@example.com,import;batch{},qualified,yes,City {}\n",
            i % 10,
            i % 100
        ));
    }
    let bytes = csv.len();
    let start = Instant::now();
    let answer = api
        .post_text(
            &ch.workspace,
            "/leads/import",
            &ch.owner.token,
            "text/csv",
            csv,
        )
        .await
        .context("posting the import")?;
    let id = answer["id"].as_str().context("import id")?.to_owned();
    let mut writes = histogram();
    let mut n = 0;
    let report_json = loop {
        let t = Instant::now();
        api.call_in(
            &ch.workspace,
            reqwest::Method::POST,
            "/leads",
            Some(&ch.owner.token),
            Some(json!({"name": format!("During import {n}")})),
        )
        .await?;
        record(&mut writes, t.elapsed());
        n += 1;
        let r = api
            .call_in(
                &ch.workspace,
                reqwest::Method::GET,
                &format!("/leads/imports/{id}"),
                Some(&ch.owner.token),
                None,
            )
            .await?;
        match r["status"].as_str() {
            Some("running") => {}
            Some("completed") => break r,
            _ => bail!("the import failed: {r}"),
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("the import did not finish in 30 minutes: {r}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = start.elapsed();
    report.count(
        "rows imported",
        report_json["imported"].as_u64().unwrap_or(0),
    );
    report.count("CSV bytes", bytes as u64);
    report.rate(
        "import rows/s (upload to completed)",
        rows as f64 / took.as_secs_f64(),
    );
    report.latency("a lead written during the import", &writes);
    Ok(())
}
