//! Every provider call, made or refused, as a row: the workspace, key, conversation, model,
//! tokens, latency, outcome and what was sent. Usage reports and the monthly budget are sums
//! of these rows, never counters that could drift.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult};

/// One provider call, to record.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub run_id: String,
    pub conversation_id: String,
    pub key_id: Option<String>,
    pub base_url: String,
    pub model: String,
    /// `ok`, `failed` or `refused` (by the budget, before it was made).
    pub outcome: &'static str,
    pub error: Option<String>,
    pub attempts: u32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub tokens_counted: bool,
    pub latency_ms: i64,
    /// The chat messages as sent (JSON), none for a refused call.
    pub sent: Option<String>,
    pub trimmed: usize,
}

pub async fn record(tx: &mut Tx, t: Tenant<'_>, c: &CallRecord) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO ai_calls (id, workspace_id, run_id, conversation_id, key_id, base_url, model, outcome, error, \
         attempts, prompt_tokens, completion_tokens, tokens_counted, latency_ms, sent, trimmed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(new_id())
    .bind(t.workspace_id())
    .bind(&c.run_id)
    .bind(&c.conversation_id)
    .bind(&c.key_id)
    .bind(&c.base_url)
    .bind(&c.model)
    .bind(c.outcome)
    .bind(&c.error)
    .bind(c.attempts as i32)
    .bind(c.prompt_tokens)
    .bind(c.completion_tokens)
    .bind(i32::from(c.tokens_counted))
    .bind(c.latency_ms)
    .bind(&c.sent)
    .bind(c.trimmed as i32)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The current calendar month (UTC): its first instant and its name, `2026-12`.
pub fn month(now_ms: i64) -> (i64, String) {
    use chrono::Datelike;
    let now = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let first = chrono::NaiveDate::from_ymd_opt(now.year(), now.month(), 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(0, |d| d.and_utc().timestamp_millis());
    (first, format!("{:04}-{:02}", now.year(), now.month()))
}

/// Tokens the workspace's calls used since `since`.
pub async fn used_since(t: Tenant<'_>, since: i64) -> AppResult<i64> {
    let used: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT) FROM ai_calls \
         WHERE workspace_id = $1 AND created_at >= $2",
    )
    .bind(t.workspace_id())
    .bind(since)
    .fetch_one(t.db().reader())
    .await?;
    Ok(used.unwrap_or(0))
}

/// Notes that the budget of `month` ran out; `true` the first time (tell the admins then).
pub async fn first_notice(tx: &mut Tx, t: Tenant<'_>, month: &str) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO ai_budget_notices (workspace_id, month, at) VALUES ($1, $2, $3) \
         ON CONFLICT (workspace_id, month) DO NOTHING",
    )
    .bind(t.workspace_id())
    .bind(month)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// How usage is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Key,
    Conversation,
    Model,
}

impl GroupBy {
    pub fn parse(raw: &str) -> Result<GroupBy, String> {
        Ok(match raw {
            "day" => GroupBy::Day,
            "key" => GroupBy::Key,
            "conversation" => GroupBy::Conversation,
            "model" => GroupBy::Model,
            _ => return Err("must be day, key, conversation or model".into()),
        })
    }

    fn expression(self) -> &'static str {
        match self {
            GroupBy::Day => "CAST(created_at / 86400000 AS BIGINT)",
            GroupBy::Key => "COALESCE(key_id, 'server')",
            GroupBy::Conversation => "COALESCE(conversation_id, 'none')",
            GroupBy::Model => "model",
        }
    }
}

/// A group's sums (`group`: the day `YYYY-MM-DD` (UTC), the key's id (`server`: the server's
/// default provider), the conversation's id or the model).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageItem {
    pub group: String,
    #[serde(flatten)]
    pub sums: Sums,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sums {
    pub calls: i64,
    /// Calls that failed or were refused by the budget.
    pub failures: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Usage {
    pub items: Vec<UsageItem>,
    pub totals: Sums,
}

/// The workspace's usage in `[from, to)`, grouped.
pub async fn report(t: Tenant<'_>, from: i64, to: i64, by: GroupBy) -> AppResult<Usage> {
    type Row = (String, i64, i64, i64, i64);
    let g = by.expression();
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT CAST({g} AS TEXT) AS grp, COUNT(*), \
         CAST(SUM(CASE WHEN outcome = 'ok' THEN 0 ELSE 1 END) AS BIGINT), \
         CAST(SUM(prompt_tokens) AS BIGINT), CAST(SUM(completion_tokens) AS BIGINT) \
         FROM ai_calls WHERE workspace_id = $1 AND created_at >= $2 AND created_at < $3 \
         GROUP BY {g} ORDER BY grp"
    ))
    .bind(t.workspace_id())
    .bind(from)
    .bind(to)
    .fetch_all(t.db().reader())
    .await?;
    let mut totals = Sums::default();
    let items = rows
        .into_iter()
        .map(|(group, calls, failures, prompt, completion)| {
            let sums = Sums {
                calls,
                failures,
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
            };
            totals.calls += calls;
            totals.failures += failures;
            totals.prompt_tokens += prompt;
            totals.completion_tokens += completion;
            totals.total_tokens += prompt + completion;
            let group = match by {
                GroupBy::Day => day_name(&group),
                _ => group,
            };
            UsageItem { group, sums }
        })
        .collect();
    Ok(Usage { items, totals })
}

/// Day number since the epoch → `YYYY-MM-DD`.
fn day_name(days: &str) -> String {
    days.parse::<i64>()
        .ok()
        .and_then(|d| chrono::DateTime::from_timestamp(d * 86_400, 0))
        .map_or_else(|| days.to_owned(), |t| t.format("%Y-%m-%d").to_string())
}

/// A usage report as CSV.
pub fn csv(u: &Usage) -> AppResult<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "group",
        "calls",
        "failures",
        "promptTokens",
        "completionTokens",
        "totalTokens",
    ];
    w.write_record(header).map_err(AppError::internal)?;
    for i in &u.items {
        let s = &i.sums;
        w.write_record([
            i.group.clone(),
            s.calls.to_string(),
            s.failures.to_string(),
            s.prompt_tokens.to_string(),
            s.completion_tokens.to_string(),
            s.total_tokens.to_string(),
        ])
        .map_err(AppError::internal)?;
    }
    w.into_inner().map_err(AppError::internal)
}

/// A provider call as the admins read it: what was sent where, and what came of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub id: String,
    pub run_id: Option<String>,
    pub conversation_id: Option<String>,
    /// `null`: the server's default provider.
    pub key_id: Option<String>,
    pub base_url: String,
    pub model: String,
    /// `ok`, `failed` or `refused` (the monthly budget was used up; nothing was sent).
    pub outcome: String,
    pub error: Option<String>,
    pub attempts: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The provider reported no usage; the tokens were counted here (o200k_base).
    pub tokens_counted: bool,
    pub latency_ms: i64,
    /// The chat messages sent (after masking), `null` when nothing was sent.
    #[schema(value_type = Option<Object>)]
    pub sent: Option<serde_json::Value>,
    /// Older messages left out to keep within the context budget.
    pub trimmed: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, sqlx::FromRow)]
struct CallRow {
    id: String,
    run_id: Option<String>,
    conversation_id: Option<String>,
    key_id: Option<String>,
    base_url: String,
    model: String,
    outcome: String,
    error: Option<String>,
    attempts: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    tokens_counted: i64,
    latency_ms: i64,
    sent: Option<String>,
    trimmed: i64,
    created_at: i64,
}

/// A page of the workspace's calls, newest first, before `before` (createdAt, id),
/// of one conversation when given: `limit + 1` of them.
pub async fn calls(
    t: Tenant<'_>,
    conversation_id: Option<&str>,
    before: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<CallView>> {
    let (at, id) = before.unwrap_or((i64::MAX, String::new()));
    let rows: Vec<CallRow> = sqlx::query_as(
        "SELECT id, run_id, conversation_id, key_id, base_url, model, outcome, error, \
         CAST(attempts AS BIGINT) AS attempts, prompt_tokens, completion_tokens, \
         CAST(tokens_counted AS BIGINT) AS tokens_counted, latency_ms, sent, \
         CAST(trimmed AS BIGINT) AS trimmed, created_at FROM ai_calls \
         WHERE workspace_id = $1 AND ($2 = '' OR conversation_id = $2) \
         AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(t.workspace_id())
    .bind(conversation_id.unwrap_or(""))
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| CallView {
            sent: r.sent.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            tokens_counted: r.tokens_counted != 0,
            id: r.id,
            run_id: r.run_id,
            conversation_id: r.conversation_id,
            key_id: r.key_id,
            base_url: r.base_url,
            model: r.model,
            outcome: r.outcome,
            error: r.error,
            attempts: r.attempts,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            latency_ms: r.latency_ms,
            trimmed: r.trimmed,
            created_at: Timestamp(r.created_at),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days() {
        // 2026-12-02T22:00:00Z
        let (first, name) = month(1_796_248_800_000);
        assert_eq!(name, "2026-12");
        assert_eq!(first, 1_796_083_200_000);
        assert_eq!(day_name("20424"), "2025-12-02");
        assert!(GroupBy::parse("week").is_err());
    }
}
