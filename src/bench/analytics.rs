//! Analytics on a big inbox: a workspace of the bench's own with a channel, `agents` agents and
//! business hours; `conversations` WhatsApp conversations holding `messages` messages over the
//! last `days` days, written straight into the server's database (the API would take an hour
//! to write a million) together with the facts the inbox writes for them, through the same
//! functions (`conversations::facts`): customers write a few messages, the assigned agent
//! answers minutes to hours later, some conversations close and reopen. Then `requests` of
//! each report, one at a time, and their latency. The server must run with
//! `PALAVER_WORKSPACES=open`; the bench reads the database from `DATABASE_URL` or
//! `PALAVER_DATA_DIR` (as `bench/run.sh` passes them).

use std::time::Instant;

use anyhow::Context;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::report::{histogram, record, Probe, Report};
use super::setup::{Api, User};
use super::{inbox, webhooks, Common};
use crate::conversations::facts::{self, Writer};
use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::AppResult;

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;
/// Conversations written per transaction.
const BATCH: usize = 50;

pub struct Size {
    pub messages: usize,
    pub conversations: usize,
    pub agents: usize,
    pub days: i64,
    pub requests: usize,
    /// The server's database (default: `DATABASE_URL`, else `PALAVER_DATA_DIR`'s SQLite file).
    pub database_url: Option<String>,
}

fn database_url(given: Option<&str>) -> anyhow::Result<String> {
    if let Some(url) = given {
        return Ok(url.to_owned());
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    let dir = std::env::var("PALAVER_DATA_DIR")
        .context("set DATABASE_URL or PALAVER_DATA_DIR to the server's (bench/run.sh does)")?;
    Ok(format!("sqlite://{dir}/palaver.db"))
}

pub async fn run(c: &Common, size: Size) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let started = Instant::now();
    let ch = webhooks::channel(&api, "analytics").await?;
    let team = inbox::team(&api, &ch, size.agents).await?;
    let hours = json!({"mon": [{"open": "09:00", "close": "18:00"}], "tue": [{"open": "09:00", "close": "18:00"}],
        "wed": [{"open": "09:00", "close": "18:00"}], "thu": [{"open": "09:00", "close": "18:00"}],
        "fri": [{"open": "09:00", "close": "18:00"}]});
    api.call_in(
        &ch.workspace,
        reqwest::Method::PATCH,
        &format!("/workspaces/{}", ch.workspace),
        Some(&ch.owner.token),
        Some(json!({"settings": {"timezone": "Europe/Lisbon", "businessHours": hours}})),
    )
    .await?;
    let channel_id = api
        .call_in(
            &ch.workspace,
            reqwest::Method::GET,
            "/channels",
            Some(&ch.owner.token),
            None,
        )
        .await?["items"][0]["id"]
        .as_str()
        .context("the channel's id")?
        .to_owned();
    let db = Db::connect(&database_url(size.database_url.as_deref())?, 2).await?;
    let seeding = Instant::now();
    let written = seed(&db, (&ch.workspace, &channel_id), &team, &size).await?;
    let seeded = seeding.elapsed().as_secs_f64();
    let mut report = Report::new(
        "analytics",
        json!({"messages": size.messages, "conversations": size.conversations, "agents": size.agents,
            "days": size.days, "requests": size.requests}),
    );
    report.count("messages written", written.messages);
    report.count("first responses written", written.first_responses);
    report.rate(
        "messages seeded per second",
        written.messages as f64 / seeded,
    );

    // Everything seeded: from a day before the first conversation to now.
    let to = chrono::Utc::now();
    let from = to - chrono::Duration::days(size.days + 1);
    let all = format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let reports = [
        (
            "overview, last 30 days".to_owned(),
            "/analytics/overview".to_owned(),
        ),
        (
            format!("overview, {} days", size.days),
            format!("/analytics/overview?{all}"),
        ),
        (
            "agents, last 30 days".to_owned(),
            "/analytics/agents".to_owned(),
        ),
        (
            "channels, last 30 days".to_owned(),
            "/analytics/channels".to_owned(),
        ),
        (
            format!("overview.csv, {} days", size.days),
            format!("/analytics/overview.csv?{all}"),
        ),
    ];
    let probe = Probe::start(c.pid);
    for (name, path) in reports {
        let mut h = histogram();
        for i in 0..size.requests {
            let t = Instant::now();
            // (A CSV answer reads as `null`.)
            let v = api
                .call_in(
                    &ch.workspace,
                    reqwest::Method::GET,
                    &path,
                    Some(&ch.owner.token),
                    None,
                )
                .await?;
            record(&mut h, t.elapsed());
            if i == 0 && path.starts_with("/analytics/overview?") {
                report.count(
                    "overview: messages in",
                    v["messagesIn"].as_u64().unwrap_or(0),
                );
                report.count(
                    "overview: messages out",
                    v["messagesOut"].as_u64().unwrap_or(0),
                );
                report.count(
                    "overview: first responses",
                    v["firstResponse"]["count"].as_u64().unwrap_or(0),
                );
            }
        }
        report.latency(&name, &h);
    }
    report.server = probe.finish();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[derive(Default)]
struct Written {
    messages: u64,
    first_responses: u64,
}

/// Writes the conversations, their messages and their facts.
async fn seed(
    db: &Db,
    (workspace, channel): (&str, &str),
    team: &[User],
    size: &Size,
) -> anyhow::Result<Written> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let per = (size.messages / size.conversations.max(1)).max(2);
    let now = now_ms();
    let mut written = Written::default();
    let mut tx = db.begin().await?;
    for i in 0..size.conversations {
        let agent = team[i % team.len()].id.as_str();
        let start = now - rng.gen_range(0..size.days * DAY_MS);
        let (n, firsts) = conversation(&mut tx, (workspace, channel, agent), start, per, &mut rng)
            .await
            .map_err(|e| anyhow::anyhow!("seeding: {e:?}"))?;
        written.messages += n;
        written.first_responses += firsts;
        if (i + 1) % BATCH == 0 {
            db.commit(tx).await?;
            tx = db.begin().await?;
        }
    }
    db.commit(tx).await?;
    Ok(written)
}

/// One conversation from `start` until `per` messages are written or it reaches now: bursts
/// of the customer's messages, each answered by the agent minutes to hours later; one time in
/// six the agent closes it and the customer reopens it a while later. Returns the messages
/// and first answers written.
async fn conversation(
    tx: &mut Tx,
    (workspace, channel, agent): (&str, &str, &str),
    start: i64,
    per: usize,
    rng: &mut rand::rngs::StdRng,
) -> AppResult<(u64, u64)> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO conversations (id, workspace_id, kind, title, last_seq, last_activity_at, created_at, \
         updated_at, channel_id, channel_key, inbox_status, inbox_at, assignee_id) \
         VALUES ($1, $2, 'channel', 'Bench customer', 0, $3, $3, $3, $4, $5, 'open', $3, $6)",
    )
    .bind(&id)
    .bind(workspace)
    .bind(start)
    .bind(channel)
    .bind(format!("{channel}:{id}"))
    .bind(agent)
    .execute(&mut **tx)
    .await?;
    facts::status_moved(tx, &id, None, "open", start).await?;
    facts::assigned(tx, &id, agent, start + MINUTE_MS).await?;
    let now = now_ms();
    let (mut t, mut rows, mut firsts) = (start, Vec::new(), 0);
    let mut open = true;
    while rows.len() < per && t + 2 * MINUTE_MS < now {
        if !open {
            facts::status_moved(tx, &id, Some("closed"), "open", t).await?;
            open = true;
        }
        let k = rng.gen_range(1..=3);
        facts::wrote(tx, &id, Writer::Customer, t, k).await?;
        rows.extend((0..k).map(|j| ("lead", None, t + j * 20_000)));
        // Answers: mostly within minutes, some after hours.
        t += if rng.gen_bool(0.7) {
            rng.gen_range(MINUTE_MS..30 * MINUTE_MS)
        } else {
            rng.gen_range(MINUTE_MS..20 * 60 * MINUTE_MS)
        };
        if t + MINUTE_MS >= now {
            // Not answered yet.
            break;
        }
        let m = rng.gen_range(1..=2);
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT CASE WHEN waiting_since IS NOT NULL AND answered = 0 THEN 1 ELSE 0 END FROM conversations WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut **tx)
        .await?;
        firsts += first.unwrap_or(0) as u64;
        facts::wrote(tx, &id, Writer::Agent(agent), t, m).await?;
        rows.extend((0..m).map(|j| ("user", Some(agent), t + j * 30_000)));
        t += rng.gen_range(MINUTE_MS..6 * 60 * MINUTE_MS);
        if rng.gen_ratio(1, 6) {
            facts::status_moved(tx, &id, Some("open"), "closed", t).await?;
            open = false;
            t += rng.gen_range(60 * MINUTE_MS..2 * DAY_MS);
        }
    }
    insert_messages(tx, &id, &rows).await?;
    let status = if open { "open" } else { "closed" };
    sqlx::query("UPDATE conversations SET last_seq = $1, inbox_status = $2 WHERE id = $3")
        .bind(rows.len() as i64)
        .bind(status)
        .bind(&id)
        .execute(&mut **tx)
        .await?;
    Ok((rows.len() as u64, firsts))
}

/// The conversation's messages in one statement: (sender type, sender, at).
async fn insert_messages(
    tx: &mut Tx,
    id: &str,
    rows: &[(&str, Option<&str>, i64)],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, type, text, created_at) VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 6;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, 'text', 'A message of the analytics bench', ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6
        ));
    }
    let mut q = sqlx::query(&sql);
    for (seq, (kind, sender, at)) in rows.iter().enumerate() {
        q = q
            .bind(new_id())
            .bind(id)
            .bind(seq as i64 + 1)
            .bind(*kind)
            .bind(*sender)
            .bind(*at);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}
