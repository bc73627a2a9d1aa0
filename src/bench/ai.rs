//! The AI idle trigger's overhead: `conversations` WhatsApp conversations (one customer message
//! each, by signed webhooks) in a workspace that opted in to AI analysis with a quiet period
//! longer than the test, so every conversation is waiting for its period to end; once the
//! server's jobs have settled, its CPU and the scan's statements per minute (from `/metrics`)
//! over `duration` seconds, then its CPU as long again with AI off (the baseline). Then the
//! quiet period drops to one second and every conversation comes due at once: the time until
//! the workspace's owner has heard `insight:new` for each (offline analyzer). The server must
//! run with `PALAVER_RATE_LIMITS=off` and `PALAVER_WORKSPACES=open`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

use super::report::{Probe, Report};
use super::setup::Api;
use super::webhooks;
use super::Common;

const COUNTERS: [&str; 4] = [
    "ai_idle_scans_total",
    "ai_idle_scan_statements_total",
    "ai_idle_scan_microseconds_total",
    "ai_idle_runs_queued_total",
];

/// The idle trigger's counters from the server's `/metrics`.
async fn counters(c: &Common) -> anyhow::Result<[f64; 4]> {
    let text = reqwest::get(format!("{}/metrics", c.url))
        .await?
        .text()
        .await?;
    let mut values = [0.0; 4];
    for line in text.lines() {
        for (i, name) in COUNTERS.iter().enumerate() {
            if let Some(rest) = line.strip_prefix(name) {
                values[i] = rest.trim().parse().unwrap_or(0.0);
            }
        }
    }
    Ok(values)
}

async fn settings(
    api: &Api,
    ch: &webhooks::Channel,
    enabled: bool,
    idle: u64,
) -> anyhow::Result<()> {
    api.call_in(
        &ch.workspace,
        reqwest::Method::PATCH,
        &format!("/workspaces/{}", ch.workspace),
        Some(&ch.owner.token),
        Some(json!({"settings": {"ai": {"enabled": enabled, "idleAfterSeconds": idle}}})),
    )
    .await
    .map(|_| ())
}

/// Waits until the server's background jobs (the webhooks' and the new conversations'
/// auto-assignment) have been quiet for three seconds, so that they are not measured.
async fn settle(c: &Common) -> anyhow::Result<()> {
    let jobs = || async {
        let text = reqwest::get(format!("{}/metrics", c.url))
            .await?
            .text()
            .await?;
        Ok::<f64, anyhow::Error>(
            text.lines()
                .filter(|l| l.starts_with("jobs_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    };
    let (mut last, mut quiet) = (jobs().await?, 0);
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = jobs().await?;
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
        if quiet == 3 {
            return Ok(());
        }
    }
    bail!("the server's jobs did not settle in five minutes")
}

pub async fn run(c: &Common, conversations: usize, duration: Duration) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let ch = webhooks::channel(&api, "ai-idle").await?;
    settings(&api, &ch, true, 604_800).await?;
    webhooks::open_conversations(c, &api, &ch, conversations).await?;
    let mut report = Report::new(
        "ai-idle",
        json!({"conversations": conversations, "duration": duration.as_secs()}),
    );

    settle(c).await?;
    // Waiting: every conversation has unanalysed messages, none is due.
    let before = counters(c).await?;
    let probe = Probe::start(c.pid);
    tokio::time::sleep(duration).await;
    let after = counters(c).await?;
    report.server = probe.finish();
    let d: Vec<f64> = (0..4).map(|i| after[i] - before[i]).collect();
    if d[0] == 0.0 {
        bail!("no idle scan ran: is /metrics open, and PALAVER_AI_IDLE_SCAN shorter than the duration?");
    }
    let minutes = duration.as_secs_f64() / 60.0;
    report.count("scans while waiting", d[0] as u64);
    report.count("runs queued while waiting", d[3] as u64);
    report.rate("scan statements per minute", d[1] / minutes);
    report.rate("mean scan time (µs)", d[2] / d[0]);
    let waiting_cpu = report.server.as_ref().map_or(0.0, |s| s.cpu_percent);
    report.rate("server CPU % of a core, waiting (AI on)", waiting_cpu);
    // The same server with AI off: what the scans add is the difference.
    settings(&api, &ch, false, 604_800).await?;
    let probe = Probe::start(c.pid);
    tokio::time::sleep(duration).await;
    let off_cpu = probe.finish().map_or(0.0, |s| s.cpu_percent);
    report.rate("server CPU % of a core, AI off", off_cpu);

    // Due: all at once.
    let (_socket, mut events) = api.connect(&ch.owner).await?;
    let started = Instant::now();
    settings(&api, &ch, true, 1).await?;
    let mut seen = HashSet::new();
    let deadline = started + Duration::from_secs(600);
    while seen.len() < conversations {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events.next())
            .await
            .context("insights still missing after 10 minutes")?
            .context("the socket closed")?;
        if e.name == "insight:new" {
            if let Some(id) = e.data["conversationId"].as_str() {
                seen.insert(id.to_owned());
            }
        }
    }
    let took = started.elapsed().as_secs_f64();
    report.count("conversations analysed once due", seen.len() as u64);
    report.rate("seconds until every insight", took);
    report.rate("insights per second", seen.len() as f64 / took);
    report.seconds = 2.0 * duration.as_secs_f64() + took;
    report.notes.push(
        "besides the scan's statements, the lease is renewed (one write) every 20 s at the default 10 s scan"
            .into(),
    );
    Ok(report)
}
