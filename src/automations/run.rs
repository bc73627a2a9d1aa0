//! Carrying an event out: the `automation.event` job. The workspace's rules for the event, in
//! order: the trigger's own test (words, first message, business hours), the conditions, the
//! claim (once per conversation per cooldown; timed triggers were claimed by the scan), then
//! the actions. Everything a job does — marks, runs, messages, their send jobs, webhook
//! deliveries, the job's own end — commits in one transaction, so a crash at any point leaves
//! either nothing (the job runs again) or all of it (the job is gone): no rule fires twice for
//! one event, and nothing outside sees a half.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone, Utc};

use super::actions::{self, Context, Effects};
use super::model::{Facts, TriggerType};
use super::store::{self, ActionOutcome, NewRun, Rule};
use crate::app::AppState;
use crate::conversations::model::ConversationRow;
use crate::conversations::triggers::{Event, Fired, MAX_DEPTH};
use crate::db::{Tenant, Tx};
use crate::error::{AppError, AppResult};
use crate::jobs::{Job, JobError, JobResult};
use crate::workspaces::hours::BusinessHours;

pub use crate::conversations::triggers::JOB;

pub async fn event(state: AppState, job: Arc<Job>) -> JobResult {
    let fired: Fired = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    carry_out(&state, &job, &fired)
        .await
        .map_err(JobError::retry)
}

/// A customer's message the message triggers read.
#[derive(Debug, sqlx::FromRow)]
struct Inbound {
    id: String,
    text: Option<String>,
    created_at: i64,
    earlier: i64,
}

async fn rules_for(state: &AppState, fired: &Fired) -> AppResult<Vec<Rule>> {
    let rows = match &fired.event {
        Event::Timed { rule_id } => {
            let t = Tenant::new(&state.db, &fired.workspace_id);
            match store::find(t, rule_id).await {
                Ok(r) if r.enabled != 0 => vec![r],
                Ok(_) => Vec::new(),
                Err(e) if e.status().as_u16() == 404 => Vec::new(),
                Err(e) => return Err(e),
            }
        }
        e => store::enabled_of(&state.db, &fired.workspace_id, e.trigger_types()).await?,
    };
    rows.iter().map(|r| r.parse()).collect()
}

async fn carry_out(state: &AppState, job: &Job, fired: &Fired) -> AppResult<()> {
    let rules = rules_for(state, fired).await?;
    if rules.is_empty() {
        return Ok(());
    }
    let t = Tenant::new(&state.db, &fired.workspace_id);
    let settings = crate::workspaces::store::settings(t).await?;
    let round_robin = rules
        .iter()
        .any(|r| r.actions.iter().any(actions::is_round_robin));
    let eligible = if round_robin {
        let agents = crate::inbox::conversations::candidates(t).await?;
        let ids = agents.iter().map(|a| a.user_id.clone()).collect();
        let online: HashSet<String> = state.online_among(ids).await.into_iter().collect();
        crate::inbox::conversations::eligible(agents, &online)
    } else {
        Vec::new()
    };
    let cx = Context {
        state,
        t,
        fired,
        hours: BusinessHours::of_settings(&settings).ok().flatten(),
        eligible,
    };
    let mut tx = state.db.begin().await?;
    let mut effects = Effects::default();
    if let Some(conversation) = subject(&mut tx, t, fired).await? {
        match &fired.event {
            Event::Message => {
                for m in unread(&mut tx, &conversation).await? {
                    for rule in &rules {
                        if message_fires(&cx, rule, &m) {
                            let on = (&conversation.id, Some(m.id.as_str()));
                            fire(&mut tx, &cx, rule, on, m.created_at, &mut effects).await?;
                        }
                    }
                }
            }
            event => {
                for rule in rules.iter().filter(|r| event_fires(r, event)) {
                    let on = (&conversation.id, None);
                    fire(&mut tx, &cx, rule, on, fired.at, &mut effects).await?;
                }
            }
        }
    }
    job.finish_in(&mut tx).await?;
    state.db.commit(tx).await?;
    // Done and durable: telling the agents live is best effort (they read the notes anyway).
    if let Err(e) = effects.announce(state, t).await {
        tracing::warn!(error = %e, "telling agents of an automation's notes failed");
    }
    Ok(())
}

/// The conversation an event concerns: its own, or for a lead's event the lead's latest inbox
/// conversation (a lead without one fires nothing). Locked for the job's transaction.
async fn subject(tx: &mut Tx, t: Tenant<'_>, fired: &Fired) -> AppResult<Option<ConversationRow>> {
    let id = match (&fired.conversation_id, &fired.lead_id) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(lead)) => {
            sqlx::query_scalar(
                "SELECT id FROM conversations WHERE workspace_id = $1 AND lead_id = $2 \
             AND inbox_status IS NOT NULL ORDER BY inbox_at DESC, id DESC LIMIT 1",
            )
            .bind(t.workspace_id())
            .bind(lead)
            .fetch_optional(&mut **tx)
            .await?
        }
        (None, None) => None,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    match crate::inbox::conversations::lock_inbox(tx, t, &id).await {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.status().is_client_error() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The customer's messages the message triggers have not read yet, oldest first (at most 100
/// per event; a burst beyond that is read as one), and the mark moved past them. The
/// conversation is locked: every message up to its last seq is committed.
async fn unread(tx: &mut Tx, c: &ConversationRow) -> AppResult<Vec<Inbound>> {
    let from: i64 = sqlx::query_scalar("SELECT automation_seq FROM conversations WHERE id = $1")
        .bind(&c.id)
        .fetch_one(&mut **tx)
        .await?;
    let customer = customer_clause("m");
    let earlier = customer_clause("e");
    let rows: Vec<Inbound> = sqlx::query_as(&format!(
        "SELECT m.id, m.text, m.created_at, \
         (SELECT COUNT(*) FROM messages e WHERE e.conversation_id = m.conversation_id AND e.seq < m.seq AND {earlier}) AS earlier \
         FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.conversation_id = $1 AND m.seq > $2 AND m.deleted_at IS NULL AND {customer} \
         ORDER BY m.seq DESC LIMIT 100"
    ))
    .bind(&c.id)
    .bind(from)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("UPDATE conversations SET automation_seq = last_seq WHERE id = $1")
        .bind(&c.id)
        .execute(&mut **tx)
        .await?;
    Ok(rows.into_iter().rev().collect())
}

/// "Message `m` was written by the customer" (in a query where `c` is its conversation).
pub fn customer_clause(m: &str) -> String {
    format!(
        "({m}.sender_type = 'lead' OR (c.kind = 'support' AND {m}.sender_type = 'user' AND {m}.sender_id = c.created_by))"
    )
}

/// A message counts for a rule written (or enabled) this long after it: WhatsApp's timestamps
/// are whole seconds and arrive a little late.
const ENABLED_SLACK_MS: i64 = 60_000;

/// Whether a customer's message fires a message rule (before its conditions). Messages from
/// before the rule was (last) enabled never do: a rule turned on again does not answer what
/// the customer wrote while it was off.
fn message_fires(cx: &Context, rule: &Rule, m: &Inbound) -> bool {
    if m.created_at + ENABLED_SLACK_MS < rule.enabled_at {
        return false;
    }
    match rule.trigger.kind {
        TriggerType::MessageReceived => {
            let regex = rule
                .trigger
                .regex
                .as_deref()
                .and_then(|r| super::model::compile_regex(r).ok());
            rule.trigger
                .matches_text(m.text.as_deref().unwrap_or(""), regex.as_ref())
        }
        TriggerType::FirstMessage => m.earlier == 0,
        TriggerType::OutsideBusinessHours => !is_open(cx, m.created_at),
        _ => false,
    }
}

/// Whether another event fires a rule (before its conditions).
fn event_fires(rule: &Rule, event: &Event) -> bool {
    match (&rule.trigger.kind, event) {
        (TriggerType::ConversationOpened, Event::Opened) => true,
        (TriggerType::StageChanged, Event::StageChanged { to, .. }) => {
            rule.trigger.stage.as_ref().is_none_or(|s| s == to)
        }
        (TriggerType::TagAdded, Event::TagAdded { tag }) => {
            rule.trigger.tag.as_ref().is_none_or(|t| t == tag)
        }
        (k, Event::Timed { rule_id }) => k.is_timed() && *rule_id == rule.id,
        _ => false,
    }
}

fn is_open(cx: &Context, at: i64) -> bool {
    let Some(hours) = &cx.hours else {
        return true;
    };
    match Utc.timestamp_millis_opt(at).single() {
        Some(at) => hours.is_open(at),
        None => true,
    }
}

/// What the conditions test, read in the transaction (so a rule sees what earlier rules did).
async fn facts(tx: &mut Tx, cx: &Context<'_>, conversation_id: &str, at: i64) -> AppResult<Facts> {
    let (kind, channel_id, status, assignee_id, lead_id): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = sqlx::query_as(
        "SELECT kind, channel_id, inbox_status, assignee_id, lead_id FROM conversations WHERE id = $1",
    )
    .bind(conversation_id)
    .fetch_one(&mut **tx)
    .await?;
    let mut facts = Facts {
        kind: Some(kind),
        channel_id,
        status,
        assignee_id,
        open: is_open(cx, at),
        ..Default::default()
    };
    if let Some(lead) = lead_id {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT stage, opt_in_status, attributes FROM leads WHERE id = $1")
                .bind(&lead)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some((stage, opt_in, attributes)) = row {
            facts.stage = Some(stage);
            facts.opt_in = Some(opt_in);
            facts.attributes = serde_json::from_str(&attributes).unwrap_or_default();
            facts.tags = crate::inbox::leads::tag_names_in_tx(tx, &lead).await?;
        }
    }
    Ok(facts)
}

/// One rule in one conversation: the depth limit, the conditions, the claim, the actions, the
/// run's record.
async fn fire(
    tx: &mut Tx,
    cx: &Context<'_>,
    rule: &Rule,
    (conversation_id, message_id): (&String, Option<&str>),
    at: i64,
    effects: &mut Effects,
) -> AppResult<()> {
    let depth = cx.fired.depth;
    let mut run = NewRun {
        rule_id: &rule.id,
        workspace_id: cx.t.workspace_id(),
        conversation_id: Some(conversation_id),
        lead_id: None,
        trigger: rule.trigger.kind.as_str(),
        message_id,
        outcome: "ok",
        error: None,
        actions: Vec::new(),
        depth,
    };
    if depth >= MAX_DEPTH {
        run.outcome = "skipped";
        run.error = Some(format!(
            "a chain of rules stops after {MAX_DEPTH} steps: this event came from one"
        ));
        store::record_run(tx, crate::db::new_id(), run).await?;
        return Ok(());
    }
    let facts = facts(tx, cx, conversation_id, at).await?;
    if !rule.conditions.iter().all(|c| c.holds(&facts)) {
        return Ok(());
    }
    if !rule.trigger.kind.is_timed() {
        let cooldown = rule.cooldown_minutes * 60_000;
        if !store::claim(tx, &rule.id, conversation_id, None, cooldown).await? {
            return Ok(());
        }
    }
    let run_id = crate::db::new_id();
    let c = crate::inbox::conversations::lock_inbox(tx, cx.t, conversation_id).await?;
    for (i, action) in rule.actions.iter().enumerate() {
        let done = actions::apply(tx, cx, (rule, &run_id), &c, action, effects).await;
        let kind = action.kind().to_owned();
        match done {
            Ok(()) => run.actions.push(ActionOutcome {
                kind,
                ok: true,
                error: None,
            }),
            Err(e) if e.status().is_client_error() => {
                let why = refusal(&e);
                run.outcome = "failed";
                run.error = Some(format!("action {} ({kind}): {why}", i + 1));
                run.actions.push(ActionOutcome {
                    kind,
                    ok: false,
                    error: Some(why),
                });
                break;
            }
            Err(e) => return Err(e),
        }
    }
    run.lead_id = c.lead_id.as_deref();
    store::record_run(tx, run_id, run).await?;
    Ok(())
}

/// An action's refusal in words: the problem's detail, with its field's message.
fn refusal(e: &AppError) -> String {
    match e.field_errors().first() {
        Some(f) if f.message != e.detail() => format!("{}: {}", f.field, f.message),
        _ => e.detail().to_owned(),
    }
}
