//! Runs and insights: a run is asked for (by an agent, or by a conversation going quiet),
//! carried out by a durable job, and ends with an insight or an error. Insights are for the
//! workspace's agents only: no customer route or event carries one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::offline::{self, Canned, Line, Side};
use crate::conversations::model::{ConversationRow, Kind};
use crate::db::{new_id, now_ms, Db, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};
use crate::workspaces::AiSettings;

/// The job that carries out a run; its payload is `{runId}`.
pub const JOB: &str = "ai.analyze";
/// The newest messages a run reads.
const MESSAGES_READ: i64 = 200;

/// What an analysis says (stored as the insight's body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightBody {
    pub summary: String,
    pub open_questions: Vec<String>,
    pub recommendations: Vec<String>,
    /// A canned response filled in for the lead, to send as it is or edit; null when none fits.
    pub suggested_reply: Option<String>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: String,
    /// ISO 639-1, or `und`.
    pub language: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

/// An insight as the API shows it (inbox-ai-calls.md, "AI shapes").
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsightView {
    pub id: String,
    pub conversation_id: String,
    /// `manual` or `idle`.
    pub trigger: String,
    #[serde(flatten)]
    pub body: InsightBody,
    /// The messages it covered.
    pub from_seq: i64,
    pub to_seq: i64,
    /// `offline` (the built-in analyzer) or `openai` (an OpenAI-compatible provider).
    pub provider: String,
    pub model: String,
    /// True for the built-in analyzer: a heuristic reading, not a model's.
    pub offline: bool,
    pub tokens: Tokens,
    pub latency_ms: i64,
    pub created_at: Timestamp,
}

/// A run: queued until its job ends it, `completed` with an insight or `failed` with an error.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: String,
    pub conversation_id: String,
    pub trigger: String,
    /// `queued`, `completed` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub insight_id: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, sqlx::FromRow)]
struct InsightRow {
    id: String,
    conversation_id: String,
    trigger_kind: String,
    body: String,
    from_seq: i64,
    to_seq: i64,
    provider: String,
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_ms: i64,
    created_at: i64,
}

impl InsightRow {
    fn view(self) -> InsightView {
        let body: InsightBody = serde_json::from_str(&self.body).unwrap_or(InsightBody {
            summary: String::new(),
            open_questions: Vec::new(),
            recommendations: Vec::new(),
            suggested_reply: None,
            sentiment: "neutral".into(),
            language: "und".into(),
        });
        InsightView {
            offline: self.provider == "offline",
            tokens: Tokens {
                prompt: self.prompt_tokens,
                completion: self.completion_tokens,
                total: self.prompt_tokens + self.completion_tokens,
            },
            id: self.id,
            conversation_id: self.conversation_id,
            trigger: self.trigger_kind,
            body,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            provider: self.provider,
            model: self.model,
            latency_ms: self.latency_ms,
            created_at: Timestamp(self.created_at),
        }
    }
}

const INSIGHT_COLUMNS: &str =
    "id, conversation_id, trigger_kind, body, from_seq, to_seq, provider, \
    model, prompt_tokens, completion_tokens, latency_ms, created_at";

/// The workspace's AI settings; 409 `ai_not_enabled` until it opted in.
pub async fn enabled(t: Tenant<'_>) -> AppResult<AiSettings> {
    let settings: Option<String> =
        sqlx::query_scalar("SELECT settings FROM workspaces WHERE id = $1")
            .bind(t.workspace_id())
            .fetch_optional(t.db().reader())
            .await?;
    let ai = AiSettings::of_workspace(settings.as_deref().unwrap_or("{}"));
    if !ai.enabled {
        return Err(AppError::new(
            Code::AiNotEnabled,
            "AI analysis is off for this workspace: an admin turns it on with settings.ai.enabled",
        ));
    }
    Ok(ai)
}

/// Queues a run of `c` (an inbox conversation) and its job, in one transaction.
pub async fn request(
    t: Tenant<'_>,
    c: &ConversationRow,
    trigger: &str,
    by: Option<&str>,
) -> AppResult<String> {
    if !c.kind().is_inbox() {
        return Err(AppError::invalid_field(
            "conversationId",
            "only inbox conversations (WhatsApp customers and the support desk) are analysed",
        ));
    }
    let id = new_id();
    let mut tx = t.db().begin().await?;
    sqlx::query(
        "INSERT INTO ai_runs (id, workspace_id, conversation_id, trigger_kind, status, requested_by, created_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(&c.id)
    .bind(trigger)
    .bind(by)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let payload = serde_json::json!({"runId": id}).to_string();
    crate::jobs::enqueue(&mut tx, JOB, &payload).await?;
    t.db().commit(tx).await?;
    t.db().wake_jobs();
    Ok(id)
}

/// A page of the conversation's insights, newest first, before `before` (createdAt, id):
/// `limit + 1` of them.
pub async fn list(
    t: Tenant<'_>,
    conversation_id: &str,
    before: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<InsightView>> {
    let (at, id) = before.unwrap_or((i64::MAX, String::new()));
    let rows: Vec<InsightRow> = sqlx::query_as(&format!(
        "SELECT {INSIGHT_COLUMNS} FROM ai_insights WHERE conversation_id = $1 AND workspace_id = $2 \
         AND (created_at < $3 OR (created_at = $3 AND id < $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(conversation_id)
    .bind(t.workspace_id())
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows.into_iter().map(InsightRow::view).collect())
}

pub async fn find_insight(db: &Db, id: &str) -> AppResult<Option<InsightView>> {
    let row: Option<InsightRow> = sqlx::query_as(&format!(
        "SELECT {INSIGHT_COLUMNS} FROM ai_insights WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(InsightRow::view))
}

pub async fn find_run(t: Tenant<'_>, id: &str) -> AppResult<Option<RunView>> {
    type Row = (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<i64>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT r.id, r.conversation_id, r.trigger_kind, r.status, r.error, i.id, r.created_at, r.finished_at \
         FROM ai_runs r LEFT JOIN ai_insights i ON i.run_id = r.id WHERE r.id = $1 AND r.workspace_id = $2",
    )
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?;
    Ok(row.map(
        |(id, conversation_id, trigger, status, error, insight_id, at, done)| RunView {
            id,
            conversation_id,
            trigger,
            status,
            error,
            insight_id,
            created_at: Timestamp(at),
            finished_at: done.map(Timestamp),
        },
    ))
}

/// A queued run: (workspace, conversation, trigger, requested by); `None` when it has ended.
pub async fn queued(
    db: &Db,
    run_id: &str,
) -> AppResult<Option<(String, String, String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT workspace_id, conversation_id, trigger_kind, requested_by FROM ai_runs \
         WHERE id = $1 AND status = 'queued'",
    )
    .bind(run_id)
    .fetch_optional(db.reader())
    .await?)
}

/// What the analyzer reads: the conversation's newest messages, oldest first, each from the
/// customer (a WhatsApp lead, the support desk's customer) or the team.
async fn transcript(db: &Db, c: &ConversationRow) -> AppResult<Vec<(i64, Side, String, i64)>> {
    // (seq, sender type, sender id, text, arrival)
    type Row = (i64, String, Option<String>, Option<String>, i64);
    let mut rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, sender_type, sender_id, text, created_at FROM messages \
         WHERE conversation_id = $1 AND deleted_at IS NULL AND type <> 'system' \
         ORDER BY seq DESC LIMIT $2",
    )
    .bind(&c.id)
    .bind(MESSAGES_READ)
    .fetch_all(db.reader())
    .await?;
    rows.reverse();
    Ok(rows
        .into_iter()
        .map(|(seq, sender_type, sender_id, text, at)| {
            let customer = match c.kind() {
                Kind::Support => sender_id.as_deref() == c.created_by.as_deref(),
                _ => sender_type == "lead",
            };
            let side = if customer { Side::Customer } else { Side::Team };
            (seq, side, text.unwrap_or_default(), at)
        })
        .collect())
}

/// Carries out a queued run with the offline analyzer: the insight and the run's end are
/// written in one transaction (a run that already ended is left alone, so a job that runs
/// twice writes one insight). Returns the insight's id.
pub async fn run_offline(
    t: Tenant<'_>,
    run_id: &str,
    c: &ConversationRow,
    trigger: &str,
    cx: &crate::inbox::canned::Context,
) -> AppResult<Option<String>> {
    let started = std::time::Instant::now();
    let db = t.db();
    let lines = transcript(db, c).await?;
    let canned = crate::inbox::canned::list(t, None).await?;
    let analysis = {
        let lines: Vec<Line<'_>> = lines
            .iter()
            .map(|(seq, side, text, at)| Line {
                seq: *seq,
                side: *side,
                text,
                at_ms: *at,
            })
            .collect();
        let canned: Vec<Canned<'_>> = canned
            .iter()
            .map(|c| Canned {
                id: &c.id,
                short_code: &c.short_code,
                text: &c.text,
            })
            .collect();
        offline::analyze(&lines, &canned, now_ms())
    };
    let body = InsightBody {
        suggested_reply: analysis
            .suggested
            .as_ref()
            .map(|(_, text)| crate::inbox::canned::render(text, cx).0),
        summary: analysis.summary,
        open_questions: analysis.open_questions,
        recommendations: analysis.recommendations,
        sentiment: serde_json::to_value(analysis.sentiment)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "neutral".into()),
        language: analysis.language,
    };
    let (from_seq, to_seq) = (
        lines.first().map_or(0, |l| l.0),
        lines.last().map_or(0, |l| l.0),
    );
    let latency = started.elapsed().as_millis() as i64;
    let mut tx = db.begin().await?;
    if !finish(&mut tx, run_id, "completed", None).await? {
        return Ok(None);
    }
    let id = new_id();
    sqlx::query(&format!(
        "INSERT INTO ai_insights ({INSIGHT_COLUMNS}, run_id, workspace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, 'offline', $7, 0, 0, $8, $9, $10, $11)"
    ))
    .bind(&id)
    .bind(&c.id)
    .bind(trigger)
    .bind(serde_json::to_string(&body).map_err(AppError::internal)?)
    .bind(from_seq)
    .bind(to_seq)
    .bind(offline::MODEL)
    .bind(latency)
    .bind(now_ms())
    .bind(run_id)
    .bind(t.workspace_id())
    .execute(&mut *tx)
    .await?;
    db.commit(tx).await?;
    Ok(Some(id))
}

/// Ends a queued run; `false` if it had ended already.
pub async fn finish(
    tx: &mut Tx,
    run_id: &str,
    status: &str,
    error: Option<&str>,
) -> AppResult<bool> {
    let done = sqlx::query(
        "UPDATE ai_runs SET status = $1, error = $2, finished_at = $3 WHERE id = $4 AND status = 'queued'",
    )
    .bind(status)
    .bind(error)
    .bind(now_ms())
    .bind(run_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(done == 1)
}
