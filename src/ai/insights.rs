//! Runs and insights: a run is asked for (by an agent, or by a conversation going quiet),
//! carried out by a durable job, and ends with an insight or an error. Insights are for the
//! workspace's agents only: no customer route or event carries one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::offline::{self, Canned, Line, Side};
use super::prompt::Entry;
use super::usage::{self, CallRecord};
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

/// Queues a run of `c` (an inbox conversation) and its job, in one transaction; what the
/// conversation holds now counts as analysed for the idle trigger.
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
    let mut tx = t.db().begin().await?;
    sqlx::query("UPDATE conversations SET ai_through_seq = last_seq WHERE id = $1")
        .bind(&c.id)
        .execute(&mut *tx)
        .await?;
    let id = queue(&mut tx, t, &c.id, trigger, by).await?;
    t.db().commit(tx).await?;
    t.db().wake_jobs();
    Ok(id)
}

/// Queues an idle run for each of `conversation_ids` (inbox conversations) that still has
/// messages after its last analysis, has been quiet since `cutoff` and has no run queued: the
/// claims and the runs are one transaction, so a period gets one run however many scans see
/// it. Returns the runs queued.
pub async fn request_idle(
    t: Tenant<'_>,
    conversation_ids: &[String],
    cutoff: i64,
) -> AppResult<usize> {
    let mut tx = t.db().begin().await?;
    let mut queued = 0;
    for id in conversation_ids {
        let claimed = sqlx::query(
            "UPDATE conversations SET ai_through_seq = last_seq WHERE id = $1 AND workspace_id = $2 \
             AND last_seq > ai_through_seq AND last_activity_at <= $3 \
             AND NOT EXISTS (SELECT 1 FROM ai_runs r WHERE r.conversation_id = $1 AND r.status = 'queued')",
        )
        .bind(id)
        .bind(t.workspace_id())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 1 {
            queue(&mut tx, t, id, "idle", None).await?;
            queued += 1;
        }
    }
    t.db().commit(tx).await?;
    Ok(queued)
}

async fn queue(
    tx: &mut Tx,
    t: Tenant<'_>,
    conversation_id: &str,
    trigger: &str,
    by: Option<&str>,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO ai_runs (id, workspace_id, conversation_id, trigger_kind, status, requested_by, created_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $6)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(conversation_id)
    .bind(trigger)
    .bind(by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    let payload = serde_json::json!({"runId": id}).to_string();
    crate::jobs::enqueue(tx, JOB, &payload).await?;
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

/// What an analysis reads: the conversation's newest messages, oldest first, each from the
/// customer (a WhatsApp lead, the support desk's customer) or the team, with the text media
/// understanding extracted from voice notes, images and documents.
pub async fn transcript(db: &Db, c: &ConversationRow) -> AppResult<Vec<Entry>> {
    // (seq, sender type, sender id, text, arrival, type, media text source, media text)
    type Row = (
        i64,
        String,
        Option<String>,
        Option<String>,
        i64,
        String,
        Option<String>,
        Option<String>,
    );
    let mut rows: Vec<Row> = sqlx::query_as(
        "SELECT m.seq, m.sender_type, m.sender_id, m.text, m.created_at, m.type, md.text_source, md.text \
         FROM messages m LEFT JOIN media md ON md.id = m.media_id \
         WHERE m.conversation_id = $1 AND m.deleted_at IS NULL AND m.type <> 'system' \
         ORDER BY m.seq DESC LIMIT $2",
    )
    .bind(&c.id)
    .bind(MESSAGES_READ)
    .fetch_all(db.reader())
    .await?;
    rows.reverse();
    Ok(rows
        .into_iter()
        .map(
            |(seq, sender_type, sender_id, text, at, kind, source, extracted)| {
                let customer = match c.kind() {
                    Kind::Support => sender_id.as_deref() == c.created_by.as_deref(),
                    _ => sender_type == "lead",
                };
                Entry {
                    seq,
                    side: if customer { Side::Customer } else { Side::Team },
                    text: with_media_text(text, &kind, source.as_deref(), extracted),
                    at_ms: at,
                }
            },
        )
        .collect())
}

/// A message's text with what was extracted from its media, e.g.
/// `Is this right? [text in the image: Amoxicillin 500 mg]`.
fn with_media_text(
    text: Option<String>,
    kind: &str,
    source: Option<&str>,
    extracted: Option<String>,
) -> String {
    const MOST: usize = 2000;
    let text = text.unwrap_or_default();
    let extracted = extracted.filter(|e| !e.trim().is_empty());
    let note = match (source, extracted) {
        (Some(source), Some(e)) => {
            let what = match source {
                "transcription" => "voice note",
                "ocr" => "text in the image",
                _ => "document text",
            };
            let mut e: String = e.split_whitespace().collect::<Vec<_>>().join(" ");
            if e.chars().count() > MOST {
                e = e.chars().take(MOST).collect::<String>() + "…";
            }
            format!("[{what}: {e}]")
        }
        _ if !matches!(kind, "text" | "interactive" | "template") => format!("[{kind}]"),
        _ => return text,
    };
    if text.is_empty() {
        note
    } else {
        format!("{text} {note}")
    }
}

/// An analysis, to store as an insight.
#[derive(Debug)]
pub struct Made {
    pub body: InsightBody,
    pub from_seq: i64,
    pub to_seq: i64,
    /// `offline` or `openai`.
    pub provider: &'static str,
    pub model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub latency_ms: i64,
}

/// The offline analyzer's reading of `entries`; its suggested reply is the matching canned
/// response filled in for the lead.
pub fn offline_analysis(
    entries: &[Entry],
    canned: &[crate::inbox::canned::CannedView],
    cx: &crate::inbox::canned::Context,
) -> Made {
    let started = std::time::Instant::now();
    let lines: Vec<Line<'_>> = entries
        .iter()
        .map(|e| Line {
            seq: e.seq,
            side: e.side,
            text: &e.text,
            at_ms: e.at_ms,
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
    let analysis = offline::analyze(&lines, &canned, now_ms());
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
    Made {
        body,
        from_seq: entries.first().map_or(0, |e| e.seq),
        to_seq: entries.last().map_or(0, |e| e.seq),
        provider: "offline",
        model: offline::MODEL.into(),
        prompt_tokens: 0,
        completion_tokens: 0,
        latency_ms: started.elapsed().as_millis() as i64,
    }
}

/// Ends a queued run with its insight, in one transaction with the provider call that made it
/// (if any) and the conversation's analysed-through mark. A run that already ended is left
/// alone (its job ran twice): the call is still recorded, no second insight is written.
/// Returns the insight's id.
pub async fn complete(
    t: Tenant<'_>,
    run_id: &str,
    c: &ConversationRow,
    trigger: &str,
    made: &Made,
    call: Option<&CallRecord>,
) -> AppResult<Option<String>> {
    let db = t.db();
    let mut tx = db.begin().await?;
    if let Some(call) = call {
        usage::record(&mut tx, t, call).await?;
    }
    if !finish(&mut tx, run_id, "completed", None).await? {
        db.commit(tx).await?;
        return Ok(None);
    }
    let id = new_id();
    sqlx::query(&format!(
        "INSERT INTO ai_insights ({INSIGHT_COLUMNS}, run_id, workspace_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(&id)
    .bind(&c.id)
    .bind(trigger)
    .bind(serde_json::to_string(&made.body).map_err(AppError::internal)?)
    .bind(made.from_seq)
    .bind(made.to_seq)
    .bind(made.provider)
    .bind(&made.model)
    .bind(made.prompt_tokens)
    .bind(made.completion_tokens)
    .bind(made.latency_ms)
    .bind(now_ms())
    .bind(run_id)
    .bind(t.workspace_id())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE conversations SET ai_through_seq = $1 WHERE id = $2 AND ai_through_seq < $1",
    )
    .bind(made.to_seq)
    .bind(&c.id)
    .execute(&mut *tx)
    .await?;
    db.commit(tx).await?;
    Ok(Some(id))
}

/// Ends a queued run as failed, with the provider call that failed (if any).
pub async fn fail(
    t: Tenant<'_>,
    run_id: &str,
    error: &str,
    call: Option<&CallRecord>,
) -> AppResult<()> {
    let mut tx = t.db().begin().await?;
    if let Some(call) = call {
        usage::record(&mut tx, t, call).await?;
    }
    finish(&mut tx, run_id, "failed", Some(error)).await?;
    t.db().commit(tx).await?;
    Ok(())
}

/// Ends a queued run; `false` if it had ended already.
async fn finish(tx: &mut Tx, run_id: &str, status: &str, error: Option<&str>) -> AppResult<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_text_goes_with_the_message() {
        let t = |text: Option<&str>, kind, source, e: Option<&str>| {
            with_media_text(text.map(str::to_owned), kind, source, e.map(str::to_owned))
        };
        assert_eq!(t(Some("hi"), "text", None, None), "hi");
        assert_eq!(
            t(
                None,
                "audio",
                Some("transcription"),
                Some("when  does it\nopen")
            ),
            "[voice note: when does it open]"
        );
        assert_eq!(
            t(
                Some("Is this right?"),
                "image",
                Some("ocr"),
                Some("Amoxicillin")
            ),
            "Is this right? [text in the image: Amoxicillin]"
        );
        assert_eq!(t(None, "image", None, None), "[image]");
        assert!(t(None, "document", Some("pdf"), Some(&"x ".repeat(3000))).ends_with("…]"));
    }
}
