//! Working an inbox conversation: status, snooze, assignment (by an agent, or automatic
//! round-robin when a conversation opens), each written with its activity line for the agents,
//! its `conversation:updated` change and (for assignment and status) its audit entry.

use std::collections::HashSet;

use serde::Deserialize;

use super::notes;
use crate::audit::{self, actions};
use crate::changes;
use crate::conversations::model::{ConversationRow, InboxStatus};
use crate::conversations::{facts, store};
use crate::db::{now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult};

/// The job that ends a snooze: `{conversationId, until}`.
pub const WAKE_JOB: &str = "inbox.wake";

/// What an agent changes; each `None` stays.
#[derive(Debug, Default)]
pub struct InboxChange {
    pub status: Option<InboxStatus>,
    /// `Some(None)`: unassign.
    pub assignee: Option<Option<String>>,
    /// `Some(Some(t))`: snooze until `t` (the conversation is `pending` until then);
    /// `Some(None)`: wake now.
    pub snooze_until: Option<Option<i64>>,
}

impl InboxChange {
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.assignee.is_none() && self.snooze_until.is_none()
    }
}

pub async fn name_of(tx: &mut Tx, user_id: &str) -> AppResult<String> {
    let name: Option<String> = sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(name.unwrap_or_else(|| "someone".into()))
}

/// The conversation, locked for this transaction, if it is an inbox conversation of the tenant.
pub async fn lock_inbox(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<ConversationRow> {
    let c = store::lock(tx, id).await?;
    if c.workspace_id != t.workspace_id() {
        return Err(AppError::not_found());
    }
    if !c.kind().is_inbox() {
        return Err(AppError::invalid_field(
            "status",
            "only channel and support conversations have an inbox status, assignee or snooze",
        ));
    }
    Ok(c)
}

/// Applies an agent's change; returns the ids of the activity lines it wrote.
pub async fn change(
    t: Tenant<'_>,
    actor: &str,
    conversation_id: &str,
    ch: InboxChange,
) -> AppResult<Vec<String>> {
    if let Some(Some(a)) = &ch.assignee {
        super::service::require_agent_user(t, a, "assigneeId").await?;
    }
    if let Some(Some(until)) = ch.snooze_until {
        if until <= now_ms() {
            return Err(AppError::invalid_field(
                "snoozedUntil",
                "must be in the future",
            ));
        }
    }
    let mut tx = t.db().begin().await?;
    let c = lock_inbox(&mut tx, t, conversation_id).await?;
    let before_status = c.inbox_status.clone().unwrap_or_else(|| "open".into());
    let (status, snoozed) = match (ch.status, ch.snooze_until) {
        (_, Some(Some(until))) => ("pending".to_owned(), Some(until)),
        (Some(s), _) => (s.as_str().to_owned(), None),
        (None, Some(None)) => ("open".to_owned(), None),
        (None, None) => (before_status.clone(), c.snoozed_until),
    };
    let assignee = ch.assignee.clone().unwrap_or(c.assignee_id.clone());
    sqlx::query(
        "UPDATE conversations SET inbox_status = $1, snoozed_until = $2, assignee_id = $3 WHERE id = $4",
    )
    .bind(&status)
    .bind(snoozed)
    .bind(&assignee)
    .bind(conversation_id)
    .execute(&mut *tx)
    .await?;
    let now = now_ms();
    let was = c.inbox_status.as_deref().unwrap_or("open");
    facts::status_moved(&mut tx, conversation_id, Some(was), &status, now).await?;
    if let Some(a) = assignee
        .as_deref()
        .filter(|a| Some(*a) != c.assignee_id.as_deref())
    {
        facts::assigned(&mut tx, conversation_id, a, now).await?;
    }
    let actor_name = name_of(&mut tx, actor).await?;
    let mut lines = Vec::new();
    if assignee != c.assignee_id {
        let text = match &assignee {
            Some(a) if a == actor => format!("{actor_name} took this"),
            Some(a) => format!(
                "{actor_name} assigned this to {}",
                name_of(&mut tx, a).await?
            ),
            None => format!("{actor_name} unassigned this"),
        };
        let details =
            serde_json::json!({"event": "assigned", "from": c.assignee_id, "to": assignee});
        let on = (conversation_id, actor);
        let action = actions::CONVERSATION_ASSIGNED;
        lines.push(recorded(&mut tx, t, on, action, &text, details).await?);
    }
    if let Some(until) = snoozed.filter(|u| Some(*u) != c.snoozed_until) {
        let text = format!(
            "{actor_name} snoozed this until {}",
            Timestamp(until).rfc3339()
        );
        let details = serde_json::json!({"event": "snoozed", "until": Timestamp(until)});
        lines
            .push(notes::activity(&mut tx, t, conversation_id, Some(actor), &text, details).await?);
        let payload = serde_json::json!({"conversationId": conversation_id, "until": until});
        crate::jobs::enqueue_at(&mut tx, WAKE_JOB, &payload.to_string(), until).await?;
    } else if status != before_status {
        let text = format!("{actor_name} changed the status from {before_status} to {status}");
        let details = serde_json::json!({"event": "status", "from": before_status, "to": status});
        let on = (conversation_id, actor);
        let action = actions::CONVERSATION_STATUS;
        lines.push(recorded(&mut tx, t, on, action, &text, details).await?);
    }
    changes::conversation_updated(&mut tx, conversation_id, None).await?;
    t.db().commit(tx).await?;
    Ok(lines)
}

/// An agent's change as an activity line and an audit entry with the same details; the line's id.
async fn recorded(
    tx: &mut Tx,
    t: Tenant<'_>,
    (conversation_id, actor): (&str, &str),
    action: &str,
    text: &str,
    details: serde_json::Value,
) -> AppResult<String> {
    let target = ("conversation", conversation_id);
    audit::record(tx, t, Some(actor), action, target, details.clone()).await?;
    notes::activity(tx, t, conversation_id, Some(actor), text, details).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WakePayload {
    pub conversation_id: String,
    pub until: i64,
}

/// Ends a snooze whose time came (once: a snooze changed since is left alone); the
/// conversation is open again and goes through auto-assignment. Returns the activity line.
pub async fn wake(t: Tenant<'_>, p: &WakePayload) -> AppResult<Option<String>> {
    let mut tx = t.db().begin().await?;
    let woke = sqlx::query(
        "UPDATE conversations SET inbox_status = 'open', snoozed_until = NULL \
         WHERE id = $1 AND workspace_id = $2 AND snoozed_until = $3",
    )
    .bind(&p.conversation_id)
    .bind(t.workspace_id())
    .bind(p.until)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if woke == 0 {
        return Ok(None);
    }
    let details = serde_json::json!({"event": "snooze_ended"});
    let line = notes::activity(
        &mut tx,
        t,
        &p.conversation_id,
        None,
        "The snooze ended",
        details,
    )
    .await?;
    changes::conversation_updated(&mut tx, &p.conversation_id, None).await?;
    // Open again: through auto-assignment (the line above says why, so no "reopened" line).
    store::opened(&mut tx, &p.conversation_id, false).await?;
    t.db().commit(tx).await?;
    Ok(Some(line))
}

/// An agent who may get a conversation automatically.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Candidate {
    pub user_id: String,
    pub availability: String,
    pub capacity: Option<i64>,
    pub auto_assign: i64,
    pub last_assigned_at: i64,
}

/// The workspace's agents with their inbox settings (defaults where they set none).
pub async fn candidates(t: Tenant<'_>) -> AppResult<Vec<Candidate>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, COALESCE(s.availability, 'online') AS availability, s.capacity, \
         COALESCE(s.auto_assign, 1) AS auto_assign, COALESCE(s.last_assigned_at, 0) AS last_assigned_at \
         FROM memberships m LEFT JOIN agent_settings s ON s.workspace_id = m.workspace_id AND s.user_id = m.user_id \
         WHERE m.workspace_id = $1 AND m.role IN ('owner', 'admin', 'agent') ORDER BY m.user_id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

/// Gives an open, unassigned conversation to the agent who has waited longest for one, among
/// the workspace's `agents` ([`candidates`]) who are online (`online`), available, taking automatic assignments and under their capacity
/// of open conversations; nobody fits: it stays unassigned. The workspace's row is locked for
/// the choice, so two nodes (or two jobs) never assign past a capacity or assign twice.
/// Returns the activity line.
pub async fn auto_assign(
    t: Tenant<'_>,
    conversation_id: &str,
    agents: Vec<Candidate>,
    online: &HashSet<String>,
) -> AppResult<Option<String>> {
    let eligible = eligible(agents, online);
    if eligible.is_empty() {
        return Ok(None);
    }
    let mut tx = t.db().begin().await?;
    let c = lock_inbox(&mut tx, t, conversation_id).await?;
    if c.assignee_id.is_some() || c.inbox_status.as_deref() != Some("open") {
        return Ok(None);
    }
    let Some(agent) = choose_agent(&mut tx, t, &eligible).await? else {
        return Ok(None);
    };
    let agent = agent.as_str();
    sqlx::query("UPDATE conversations SET assignee_id = $1 WHERE id = $2")
        .bind(agent)
        .bind(conversation_id)
        .execute(&mut *tx)
        .await?;
    facts::assigned(&mut tx, conversation_id, agent, now_ms()).await?;
    let text = format!(
        "Assigned to {} automatically",
        name_of(&mut tx, agent).await?
    );
    let details = serde_json::json!({"event": "assigned", "from": null, "to": agent, "auto": true});
    let line = notes::activity(&mut tx, t, conversation_id, None, &text, details.clone()).await?;
    audit::record(
        &mut tx,
        t,
        None,
        actions::CONVERSATION_ASSIGNED,
        ("conversation", conversation_id),
        details,
    )
    .await?;
    changes::conversation_updated(&mut tx, conversation_id, None).await?;
    t.db().commit(tx).await?;
    Ok(Some(line))
}

/// Round-robin: among `eligible` agents, the one under their capacity of open conversations
/// who has waited longest for one, marked as just given one. The workspace's row is locked
/// for the choice, so two nodes (or two jobs) never assign past a capacity or assign twice.
pub async fn choose_agent(
    tx: &mut Tx,
    t: Tenant<'_>,
    eligible: &[Candidate],
) -> AppResult<Option<String>> {
    if eligible.is_empty() {
        return Ok(None);
    }
    sqlx::query("UPDATE workspaces SET updated_at = updated_at WHERE id = $1")
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?;
    // Read again under the lock: what other assignments committed meanwhile.
    let load: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT m.user_id, COALESCE(s.last_assigned_at, 0), \
         (SELECT COUNT(*) FROM conversations c WHERE c.workspace_id = m.workspace_id \
          AND c.assignee_id = m.user_id AND c.inbox_status = 'open') \
         FROM memberships m LEFT JOIN agent_settings s ON s.workspace_id = m.workspace_id AND s.user_id = m.user_id \
         WHERE m.workspace_id = $1",
    )
    .bind(t.workspace_id())
    .fetch_all(&mut **tx)
    .await?;
    let chosen = eligible
        .iter()
        .filter_map(|e| {
            let (_, last, open) = load.iter().find(|(u, _, _)| *u == e.user_id)?;
            e.capacity
                .is_none_or(|cap| *open < cap)
                .then_some((*last, &e.user_id))
        })
        .min();
    let Some((_, agent)) = chosen else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO agent_settings (workspace_id, user_id, last_assigned_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET last_assigned_at = excluded.last_assigned_at",
    )
    .bind(t.workspace_id())
    .bind(agent)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(Some(agent.clone()))
}

/// The agents a round-robin may choose: online (`online`), available and taking automatic
/// assignments.
pub fn eligible(agents: Vec<Candidate>, online: &HashSet<String>) -> Vec<Candidate> {
    agents
        .into_iter()
        .filter(|c| online.contains(&c.user_id) && c.availability == "online" && c.auto_assign != 0)
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenedPayload {
    pub conversation_id: String,
    pub reopened: bool,
}

/// The agents' line for a conversation the customer reopened, written with the job's end (so
/// once).
pub async fn opened_line(
    t: Tenant<'_>,
    p: &OpenedPayload,
    job: &crate::jobs::Job,
) -> AppResult<Option<String>> {
    if !p.reopened {
        return Ok(None);
    }
    let mut tx = t.db().begin().await?;
    job.finish_in(&mut tx).await?;
    let details = serde_json::json!({"event": "reopened"});
    let line = notes::activity(
        &mut tx,
        t,
        &p.conversation_id,
        None,
        "The customer wrote again: reopened",
        details,
    )
    .await?;
    t.db().commit(tx).await?;
    Ok(Some(line))
}
