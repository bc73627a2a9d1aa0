//! The events automation rules wait for, as seen from below: each is queued as an
//! `automation.event` job in the transaction of the change that caused it, so it is as durable
//! as the change and carried out once (the job runner claims it on one node). Only a workspace
//! with an enabled rule for that kind of event gets a job: a workspace without automations pays
//! one indexed lookup per event. The rules themselves, and the job, live in `automations`.

use serde::{Deserialize, Serialize};

use crate::db::{now_ms, Tx};
use crate::error::AppResult;

/// The job kind (run by `automations::run`).
pub const JOB: &str = "automation.event";

/// How deep a chain of rules may go: a rule's action (a stage set, a tag added) may fire other
/// rules, whose actions may fire others, up to this many steps; deeper runs are recorded as
/// skipped.
pub const MAX_DEPTH: i64 = 3;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The customer wrote: the job reads the customer's messages it has not read yet.
    Message,
    /// An inbox conversation opened: new, reopened by the customer, or woken from a snooze.
    Opened,
    /// A lead moved from one stage to another.
    StageChanged { from: String, to: String },
    /// A tag was added to a lead.
    TagAdded { tag: String },
    /// A timed rule's wait is over: queued (and claimed) by the scan of waiting conversations.
    Timed { rule_id: String },
}

impl Event {
    /// The trigger types of the rules this event may fire.
    pub fn trigger_types(&self) -> &'static [&'static str] {
        match self {
            Event::Message => &[
                "message_received",
                "first_message",
                "outside_business_hours",
            ],
            Event::Opened => &["conversation_opened"],
            Event::StageChanged { .. } => &["stage_changed"],
            Event::TagAdded { .. } => &["tag_added"],
            Event::Timed { .. } => &["no_agent_reply", "no_customer_reply"],
        }
    }
}

/// A queued event: the job's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fired {
    pub workspace_id: String,
    pub conversation_id: Option<String>,
    pub lead_id: Option<String>,
    #[serde(flatten)]
    pub event: Event,
    /// 0 for what people and customers do; one more for each rule in a chain.
    pub depth: i64,
    pub at: i64,
}

/// Whether the workspace has an enabled rule waiting for one of these trigger types.
pub async fn wanted(tx: &mut Tx, workspace_id: &str, types: &[&str]) -> AppResult<bool> {
    let list = types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let found: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT 1 FROM automations WHERE workspace_id = $1 AND enabled = 1 \
         AND trigger_type IN ({list}) LIMIT 1"
    ))
    .bind(workspace_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(found.is_some())
}

/// Queues `event` for the rules of the workspace that wait for it, if there are any.
pub async fn emit(
    tx: &mut Tx,
    workspace_id: &str,
    (conversation_id, lead_id): (Option<&str>, Option<&str>),
    event: Event,
    depth: i64,
) -> AppResult<()> {
    if !wanted(tx, workspace_id, event.trigger_types()).await? {
        return Ok(());
    }
    let fired = Fired {
        workspace_id: workspace_id.to_owned(),
        conversation_id: conversation_id.map(str::to_owned),
        lead_id: lead_id.map(str::to_owned),
        event,
        depth,
        at: now_ms(),
    };
    let payload = serde_json::to_string(&fired).map_err(crate::error::AppError::internal)?;
    crate::jobs::enqueue(tx, JOB, &payload).await
}

/// Queues `event` of a conversation (by a customer or the system: depth 0) for its
/// workspace's rules.
pub async fn emit_for(tx: &mut Tx, conversation_id: &str, event: Event) -> AppResult<()> {
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT workspace_id, lead_id FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_optional(&mut **tx)
            .await?;
    match row {
        Some((workspace, lead)) => {
            let on = (Some(conversation_id), lead.as_deref());
            emit(tx, &workspace, on, event, 0).await
        }
        None => Ok(()),
    }
}
