//! Timed triggers: a scan, on whichever node holds the `automations` lease, finds the
//! conversations whose wait is over and queues one job each, claiming the wait in the same
//! transaction (`automation_marks`). The state lives in the data (the customer's last message,
//! the agent's last message, the marks), so a wait that ended while every node was down fires
//! at the first scan after start, and once.
//!
//! - `no_agent_reply` (`minutes`): the conversation is open, the customer's latest message is
//!   older than the limit, and no agent has written since. The wait is that message.
//! - `no_customer_reply` (`hours`): the conversation is not closed, its last message is an
//!   agent's (not an automation's: a follow-up never follows itself up), older than the limit.
//!   The wait is that message.
//!
//! Only waits that began after the rule was (last) enabled count: a new rule does not fire on
//! a year of history.

use super::run::customer_clause;
use super::store::{self, RuleRow};
use crate::conversations::triggers::{Event, Fired, JOB};
use crate::db::{now_ms, Db};
use crate::error::{AppError, AppResult};

pub const LEASE: &str = "automations";
/// Conversations claimed per rule and scan; the next scan takes the rest.
const BATCH: i64 = 500;

/// One scan over every enabled timed rule; the number of jobs queued.
pub async fn scan(db: &Db) -> AppResult<usize> {
    let mut queued = 0;
    for rule in store::timed(db).await? {
        queued += scan_rule(db, &rule).await?;
    }
    if queued > 0 {
        db.wake_jobs();
    }
    Ok(queued)
}

async fn scan_rule(db: &Db, rule: &RuleRow) -> AppResult<usize> {
    let parsed = rule.parse()?;
    let now = now_ms();
    let agent = format!("NOT {}", customer_clause("m"));
    let (sql, limit_ms) = match (parsed.trigger.minutes, parsed.trigger.hours) {
        (Some(minutes), _) => (
            format!(
                "SELECT c.id, CAST(c.last_inbound_at AS TEXT) AS wait FROM conversations c \
                 WHERE c.workspace_id = $1 AND c.inbox_status = 'open' \
                 AND c.last_inbound_at <= $2 AND c.last_inbound_at >= $3 \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id \
                   AND m.created_at >= c.last_inbound_at AND m.sender_type = 'user' AND {agent}) \
                 AND NOT EXISTS (SELECT 1 FROM automation_marks k WHERE k.automation_id = $4 \
                   AND k.conversation_id = c.id AND k.wait_key = CAST(c.last_inbound_at AS TEXT)) \
                 LIMIT $5"
            ),
            minutes * 60_000,
        ),
        (None, Some(hours)) => (
            format!(
                "SELECT c.id, m.id AS wait FROM conversations c \
                 JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq \
                 WHERE c.workspace_id = $1 AND c.inbox_status IN ('open', 'pending') \
                 AND m.created_at <= $2 AND m.created_at >= $3 \
                 AND m.sender_type = 'user' AND {agent} AND m.deleted_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM automation_marks k WHERE k.automation_id = $4 \
                   AND k.conversation_id = c.id AND k.wait_key = m.id) \
                 LIMIT $5"
            ),
            hours * 3_600_000,
        ),
        _ => {
            return Err(AppError::internal(anyhow::anyhow!(
                "timed rule {} has no limit",
                rule.id
            )))
        }
    };
    let due: Vec<(String, String)> = sqlx::query_as(&sql)
        .bind(&rule.workspace_id)
        .bind(now - limit_ms)
        .bind(rule.enabled_at)
        .bind(&rule.id)
        .bind(BATCH)
        .fetch_all(db.reader())
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin().await?;
    let mut queued = 0;
    for (conversation, wait) in &due {
        // A concurrent scan (another node just after a lease change) claims nothing twice.
        if !store::claim(&mut tx, &rule.id, conversation, Some(wait), 0).await? {
            continue;
        }
        let fired = Fired {
            workspace_id: rule.workspace_id.clone(),
            conversation_id: Some(conversation.clone()),
            lead_id: None,
            event: Event::Timed {
                rule_id: rule.id.clone(),
            },
            depth: 0,
            at: now,
        };
        let payload = serde_json::to_string(&fired).map_err(AppError::internal)?;
        crate::jobs::enqueue(&mut tx, JOB, &payload).await?;
        queued += 1;
    }
    tx.commit().await?;
    Ok(queued)
}
