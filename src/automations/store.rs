//! The rules, their runs and marks: queries only.

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Action, Condition, Trigger};
use crate::db::{new_id, now_ms, Db, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RuleRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub enabled: i64,
    pub position: i64,
    pub trigger_type: String,
    pub trigger: String,
    pub conditions: String,
    pub actions: String,
    pub cooldown_minutes: i64,
    pub enabled_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const RULE_COLUMNS: &str = "id, workspace_id, name, CAST(enabled AS BIGINT) AS enabled, position, \
    trigger_type, trigger, conditions, actions, cooldown_minutes, enabled_at, created_at, updated_at";

/// A rule, parsed: what the runner reads.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub trigger: Trigger,
    pub conditions: Vec<Condition>,
    /// Webhook secrets sealed.
    pub actions: Vec<Action>,
    pub cooldown_minutes: i64,
    pub enabled_at: i64,
}

impl RuleRow {
    pub fn parse(&self) -> AppResult<Rule> {
        let bad =
            |e: serde_json::Error| AppError::internal(anyhow::anyhow!("rule {}: {e}", self.id));
        Ok(Rule {
            id: self.id.clone(),
            name: self.name.clone(),
            trigger: serde_json::from_str(&self.trigger).map_err(bad)?,
            conditions: serde_json::from_str(&self.conditions).map_err(bad)?,
            actions: serde_json::from_str(&self.actions).map_err(bad)?,
            cooldown_minutes: self.cooldown_minutes,
            enabled_at: self.enabled_at,
        })
    }

    pub fn view(&self) -> AppResult<RuleView> {
        let rule = self.parse()?;
        let actions = rule
            .actions
            .into_iter()
            .map(|a| match a {
                Action::Webhook { url, .. } => Action::Webhook { url, secret: None },
                other => other,
            })
            .collect();
        Ok(RuleView {
            id: self.id.clone(),
            name: self.name.clone(),
            enabled: self.enabled != 0,
            position: self.position,
            trigger: rule.trigger,
            conditions: rule.conditions,
            actions,
            cooldown_minutes: self.cooldown_minutes,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

/// A rule as the API shows it (webhook secrets never).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleView {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    /// Rules fire in this order (ascending).
    pub position: i64,
    pub trigger: Trigger,
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
    /// A rule fires at most once per conversation in this many minutes (timed triggers: once per wait).
    pub cooldown_minutes: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a write sets; each `None` stays.
#[derive(Debug, Default)]
pub struct RuleFields {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub position: Option<i64>,
    pub trigger: Option<Trigger>,
    pub conditions: Option<Vec<Condition>>,
    /// Webhook secrets sealed.
    pub actions: Option<Vec<Action>>,
    pub cooldown_minutes: Option<i64>,
}

fn json<T: Serialize>(v: &T) -> AppResult<String> {
    serde_json::to_string(v).map_err(AppError::internal)
}

pub async fn list(t: Tenant<'_>) -> AppResult<Vec<RuleRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RULE_COLUMNS} FROM automations WHERE workspace_id = $1 ORDER BY position, created_at, id"
    ))
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<RuleRow> {
    sqlx::query_as(&format!(
        "SELECT {RULE_COLUMNS} FROM automations WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?
    .ok_or_else(AppError::not_found)
}

/// The workspace's enabled rules of these trigger types, in order.
pub async fn enabled_of(db: &Db, workspace_id: &str, types: &[&str]) -> AppResult<Vec<RuleRow>> {
    let list = types
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(sqlx::query_as(&format!(
        "SELECT {RULE_COLUMNS} FROM automations WHERE workspace_id = $1 AND enabled = 1 \
         AND trigger_type IN ({list}) ORDER BY position, created_at, id"
    ))
    .bind(workspace_id)
    .fetch_all(db.reader())
    .await?)
}

/// Every enabled rule with a timed trigger, of every workspace.
pub async fn timed(db: &Db) -> AppResult<Vec<RuleRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RULE_COLUMNS} FROM automations WHERE enabled = 1 \
         AND trigger_type IN ('no_agent_reply', 'no_customer_reply') ORDER BY workspace_id, position, id"
    ))
    .fetch_all(db.reader())
    .await?)
}

pub async fn insert(
    tx: &mut Tx,
    t: Tenant<'_>,
    actor: &str,
    (name, enabled, trigger): (&str, bool, &Trigger),
    (conditions, actions, cooldown): (&[Condition], &[Action], i64),
    position: Option<i64>,
) -> AppResult<String> {
    let id = new_id();
    let now = now_ms();
    let next: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(position), 0) + 1 AS BIGINT) FROM automations WHERE workspace_id = $1",
    )
    .bind(t.workspace_id())
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO automations (id, workspace_id, name, enabled, position, trigger_type, trigger, \
         conditions, actions, cooldown_minutes, enabled_at, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $11, $11)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(name)
    .bind(enabled as i64)
    .bind(position.unwrap_or(next))
    .bind(trigger.kind.as_str())
    .bind(json(trigger)?)
    .bind(json(&conditions)?)
    .bind(json(&actions)?)
    .bind(cooldown)
    .bind(now)
    .bind(actor)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

pub async fn update(tx: &mut Tx, t: Tenant<'_>, before: &RuleRow, f: &RuleFields) -> AppResult<()> {
    let now = now_ms();
    let enabling = f.enabled == Some(true) && before.enabled == 0;
    let trigger = f.trigger.as_ref().map(json).transpose()?;
    let conditions = f.conditions.as_ref().map(json).transpose()?;
    let actions = f.actions.as_ref().map(json).transpose()?;
    sqlx::query(
        "UPDATE automations SET name = COALESCE($1, name), enabled = COALESCE($2, enabled), \
         position = COALESCE($3, position), trigger_type = COALESCE($4, trigger_type), \
         trigger = COALESCE($5, trigger), conditions = COALESCE($6, conditions), \
         actions = COALESCE($7, actions), cooldown_minutes = COALESCE($8, cooldown_minutes), \
         enabled_at = CASE WHEN $9 = 1 THEN $10 ELSE enabled_at END, updated_at = $10 \
         WHERE id = $11 AND workspace_id = $12",
    )
    .bind(f.name.as_deref())
    .bind(f.enabled.map(|e| e as i64))
    .bind(f.position)
    .bind(f.trigger.as_ref().map(|t| t.kind.as_str()))
    .bind(trigger)
    .bind(conditions)
    .bind(actions)
    .bind(f.cooldown_minutes)
    .bind(enabling as i64)
    .bind(now)
    .bind(&before.id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn delete(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<()> {
    let done = sqlx::query("DELETE FROM automations WHERE id = $1 AND workspace_id = $2")
        .bind(id)
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found());
    }
    Ok(())
}

/// Claims a rule's firing in a conversation, in the transaction that carries it out: `false`
/// when it fired there less than `cooldown_ms` ago (an event trigger) or already answered
/// this wait (`wait`, a timed trigger). A concurrent claim waits for this transaction and then
/// sees its mark.
pub async fn claim(
    tx: &mut Tx,
    rule_id: &str,
    conversation_id: &str,
    wait: Option<&str>,
    cooldown_ms: i64,
) -> AppResult<bool> {
    let now = now_ms();
    let condition = match wait {
        Some(_) => {
            "automation_marks.wait_key IS NULL OR automation_marks.wait_key <> excluded.wait_key"
        }
        None => "automation_marks.fired_at <= $5",
    };
    let sql = format!(
        "INSERT INTO automation_marks (automation_id, conversation_id, wait_key, fired_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (automation_id, conversation_id) DO UPDATE \
         SET wait_key = excluded.wait_key, fired_at = excluded.fired_at WHERE {condition}"
    );
    let q = sqlx::query(&sql)
        .bind(rule_id)
        .bind(conversation_id)
        .bind(wait)
        .bind(now);
    let q = match wait {
        Some(_) => q,
        None => q.bind(now - cooldown_ms),
    };
    let done = q.execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

/// One run to record.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionOutcome {
    #[serde(rename = "type")]
    pub kind: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct NewRun<'a> {
    pub rule_id: &'a str,
    pub workspace_id: &'a str,
    pub conversation_id: Option<&'a str>,
    pub lead_id: Option<&'a str>,
    pub trigger: &'a str,
    pub message_id: Option<&'a str>,
    pub outcome: &'static str,
    pub error: Option<String>,
    pub actions: Vec<ActionOutcome>,
    pub depth: i64,
}

pub async fn record_run(tx: &mut Tx, id: String, r: NewRun<'_>) -> AppResult<String> {
    sqlx::query(
        "INSERT INTO automation_runs (id, automation_id, workspace_id, conversation_id, lead_id, \
         trigger_type, message_id, outcome, error, actions, depth, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(r.rule_id)
    .bind(r.workspace_id)
    .bind(r.conversation_id)
    .bind(r.lead_id)
    .bind(r.trigger)
    .bind(r.message_id)
    .bind(r.outcome)
    .bind(&r.error)
    .bind(json(&r.actions)?)
    .bind(r.depth)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// A delivery that failed after its retries marks its run failed.
pub async fn run_failed(db: &Db, run_id: &str, error: &str) -> AppResult<()> {
    db.write(
        sqlx::query("UPDATE automation_runs SET outcome = 'failed', error = $2 WHERE id = $1")
            .bind(run_id)
            .bind(error),
    )
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
struct RunRow {
    id: String,
    conversation_id: Option<String>,
    lead_id: Option<String>,
    trigger_type: String,
    message_id: Option<String>,
    outcome: String,
    error: Option<String>,
    actions: String,
    depth: i64,
    created_at: i64,
}

/// A run of a rule: when, where, what it did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: String,
    pub at: Timestamp,
    pub conversation_id: Option<String>,
    pub lead_id: Option<String>,
    pub trigger: String,
    /// The customer's message that fired it (message triggers).
    pub message_id: Option<String>,
    /// `ok`, `failed` (an action failed: `error` says which and why) or `skipped` (the chain
    /// was too deep).
    pub outcome: String,
    pub error: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub actions: serde_json::Value,
    /// 0: fired by a customer, an agent or the clock; n: by the n-th rule of a chain.
    pub depth: i64,
}

/// A rule's runs, newest first.
pub async fn runs(
    t: Tenant<'_>,
    rule_id: &str,
    before: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<RunView>> {
    let (at, id) = before.unwrap_or((i64::MAX, String::new()));
    let rows: Vec<RunRow> = sqlx::query_as(
        "SELECT id, conversation_id, lead_id, trigger_type, message_id, outcome, error, actions, \
         CAST(depth AS BIGINT) AS depth, created_at FROM automation_runs \
         WHERE automation_id = $1 AND workspace_id = $2 \
         AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(rule_id)
    .bind(t.workspace_id())
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RunView {
            actions: serde_json::from_str(&r.actions).unwrap_or_default(),
            id: r.id,
            at: Timestamp(r.created_at),
            conversation_id: r.conversation_id,
            lead_id: r.lead_id,
            trigger: r.trigger_type,
            message_id: r.message_id,
            outcome: r.outcome,
            error: r.error,
            depth: r.depth,
        })
        .collect())
}
