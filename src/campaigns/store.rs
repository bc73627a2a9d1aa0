//! Campaigns and their recipients: queries only.

use serde::Serialize;
use utoipa::ToSchema;

use super::model::{Audience, Move, Status};
use crate::db::{new_id, now_ms, Db, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CampaignRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub channel_id: Option<String>,
    pub template_id: Option<String>,
    pub parameters: String,
    pub audience: String,
    pub status: String,
    pub scheduled_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, workspace_id, name, channel_id, template_id, parameters, audience, status, \
    scheduled_at, started_at, finished_at, error, created_at, updated_at";

impl CampaignRow {
    pub fn audience(&self) -> Audience {
        serde_json::from_str(&self.audience).unwrap_or_default()
    }

    pub fn parameters(&self) -> Vec<String> {
        serde_json::from_str(&self.parameters).unwrap_or_default()
    }

    pub fn view(&self) -> CampaignView {
        CampaignView {
            id: self.id.clone(),
            name: self.name.clone(),
            channel_id: self.channel_id.clone(),
            template_id: self.template_id.clone(),
            parameters: self.parameters(),
            audience: self.audience(),
            status: self.status.clone(),
            scheduled_at: self.scheduled_at.map(Timestamp),
            started_at: self.started_at.map(Timestamp),
            finished_at: self.finished_at.map(Timestamp),
            error: self.error.clone(),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub channel_id: Option<String>,
    pub template_id: Option<String>,
    pub parameters: Vec<String>,
    pub audience: Audience,
    /// `draft`, `scheduled`, `running`, `paused`, `completed` or `cancelled`.
    pub status: String,
    pub scheduled_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    /// When it completed or was cancelled.
    pub finished_at: Option<Timestamp>,
    /// Why it stopped early (its channel or template is gone).
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a draft's write sets; each `None` stays.
#[derive(Debug, Default)]
pub struct Fields {
    pub name: Option<String>,
    pub channel_id: Option<String>,
    pub template_id: Option<String>,
    pub parameters: Option<Vec<String>>,
    pub audience: Option<Audience>,
    pub scheduled_at: Option<i64>,
}

fn json<T: Serialize>(v: &T) -> AppResult<String> {
    serde_json::to_string(v).map_err(AppError::internal)
}

pub async fn insert(tx: &mut Tx, t: Tenant<'_>, actor: &str, f: &Fields) -> AppResult<String> {
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO campaigns (id, workspace_id, name, channel_id, template_id, parameters, audience, \
         status, scheduled_at, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'draft', $8, $9, $10, $10)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(f.name.as_deref().unwrap_or_default())
    .bind(&f.channel_id)
    .bind(&f.template_id)
    .bind(json(&f.parameters.clone().unwrap_or_default())?)
    .bind(json(&f.audience.clone().unwrap_or_default())?)
    .bind(f.scheduled_at)
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<CampaignRow> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM campaigns WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?
    .ok_or_else(AppError::not_found)
}

pub async fn find_in_tx(tx: &mut Tx, id: &str) -> AppResult<CampaignRow> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM campaigns WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(AppError::not_found)
}

/// The workspace's campaigns, newest first.
pub async fn list(
    t: Tenant<'_>,
    before: Option<(i64, String)>,
    limit: i64,
) -> AppResult<Vec<CampaignRow>> {
    let (at, id) = before.unwrap_or((i64::MAX, String::new()));
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM campaigns WHERE workspace_id = $1 \
         AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(t.workspace_id())
    .bind(at)
    .bind(id)
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?)
}

/// Changes a draft; 409 `campaign_state` once it is no longer one.
pub async fn update_draft(tx: &mut Tx, t: Tenant<'_>, id: &str, f: &Fields) -> AppResult<()> {
    let done = sqlx::query(
        "UPDATE campaigns SET name = COALESCE($1, name), channel_id = COALESCE($2, channel_id), \
         template_id = COALESCE($3, template_id), parameters = COALESCE($4, parameters), \
         audience = COALESCE($5, audience), scheduled_at = COALESCE($6, scheduled_at), updated_at = $7 \
         WHERE id = $8 AND workspace_id = $9 AND status = 'draft'",
    )
    .bind(&f.name)
    .bind(&f.channel_id)
    .bind(&f.template_id)
    .bind(f.parameters.as_ref().map(json).transpose()?)
    .bind(f.audience.as_ref().map(json).transpose()?)
    .bind(f.scheduled_at)
    .bind(now_ms())
    .bind(id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::new(
            Code::CampaignState,
            "only a draft can be changed",
        ));
    }
    Ok(())
}

/// Deletes a campaign that is not under way (a draft, or one that ended).
pub async fn delete(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<()> {
    let done = sqlx::query(
        "DELETE FROM campaigns WHERE id = $1 AND workspace_id = $2 \
         AND status IN ('draft', 'completed', 'cancelled')",
    )
    .bind(id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::new(
            Code::CampaignState,
            "a scheduled, running or paused campaign is cancelled before it is deleted",
        ));
    }
    Ok(())
}

/// Moves a campaign, if its state allows: one conditional write, so two requests (or a request
/// and the sender) cannot both move it. `at`: a schedule's start.
pub async fn transition(
    tx: &mut Tx,
    t: Tenant<'_>,
    id: &str,
    m: Move,
    at: Option<i64>,
) -> AppResult<()> {
    let from: Vec<String> = m
        .from()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let now = now_ms();
    let ends = m.to() == Status::Cancelled;
    let done = sqlx::query(&format!(
        "UPDATE campaigns SET status = $1, updated_at = $2, \
         scheduled_at = CASE WHEN $3 = 1 THEN $4 ELSE scheduled_at END, \
         finished_at = CASE WHEN $5 = 1 THEN $2 ELSE finished_at END \
         WHERE id = $6 AND workspace_id = $7 AND status IN ({})",
        from.join(", ")
    ))
    .bind(m.to().as_str())
    .bind(now)
    .bind((m == Move::Schedule) as i64)
    .bind(at.unwrap_or(now))
    .bind(ends as i64)
    .bind(id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        let ok: Vec<&str> = m.from().iter().map(|s| s.as_str()).collect();
        return Err(AppError::new(
            Code::CampaignState,
            format!(
                "only a campaign that is {} can {}",
                ok.join(" or "),
                m.name()
            ),
        ));
    }
    Ok(())
}

/// The funnel: counts of recipients that got at least this far.
#[derive(Debug, Default, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Recipients: the opted-in leads the audience held when the campaign started.
    pub audience: i64,
    /// Whose message is written and waits for (or went through) its send.
    pub queued: i64,
    /// Accepted by WhatsApp (and maybe further).
    pub sent: i64,
    /// Delivered to the phone (and maybe read).
    pub delivered: i64,
    pub read: i64,
    /// Refused before sending (opted out meanwhile) or by WhatsApp.
    pub failed: i64,
    /// Wrote back after the campaign's message.
    pub replied: i64,
}

/// "The lead wrote after the campaign's message" for recipient `r` with message `m`.
const REPLIED: &str =
    "EXISTS (SELECT 1 FROM messages x WHERE x.conversation_id = r.conversation_id \
    AND x.sender_type = 'lead' AND x.seq > m.seq)";

/// A recipient's status as shown: queued until WhatsApp takes the message, then its status,
/// `replied` once the lead wrote after it, `failed` with the reason.
fn status_sql() -> String {
    format!(
        "CASE WHEN r.state = 'skipped' THEN 'failed' WHEN r.state = 'waiting' OR m.id IS NULL THEN 'queued' \
         WHEN {REPLIED} THEN 'replied' WHEN m.external_status IN ('sent', 'delivered', 'read', 'failed') \
         THEN m.external_status ELSE 'queued' END"
    )
}

pub async fn stats(db: &Db, campaign_id: &str) -> AppResult<Stats> {
    let status = status_sql();
    let count = |cond: &str| {
        format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)")
    };
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS audience, {} AS queued, {} AS sent, {} AS delivered, {} AS read, \
         {} AS failed, {} AS replied FROM (SELECT r.state, m.external_status, {status} AS status \
         FROM campaign_recipients r LEFT JOIN messages m ON m.id = r.message_id WHERE r.campaign_id = $1) s",
        count("s.state = 'queued'"),
        count("s.external_status IN ('sent', 'delivered', 'read')"),
        count("s.external_status IN ('delivered', 'read')"),
        count("s.external_status = 'read'"),
        count("s.status = 'failed'"),
        count("s.status = 'replied'"),
    );
    Ok(sqlx::query_as(&sql)
        .bind(campaign_id)
        .fetch_one(db.reader())
        .await?)
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct RecipientView {
    pub lead_id: String,
    pub name: Option<String>,
    /// E.164.
    pub phone: Option<String>,
    /// `queued`, `sent`, `delivered`, `read`, `failed` or `replied`.
    pub status: String,
    /// Why it failed: WhatsApp's error, or why it was not sent.
    pub error: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
}

/// A page of a campaign's recipients by lead id, optionally of one status.
pub async fn recipients(
    db: &Db,
    campaign_id: &str,
    status: Option<&str>,
    after: &str,
    limit: i64,
) -> AppResult<Vec<RecipientView>> {
    let sql = format!(
        "SELECT * FROM (SELECT r.lead_id, l.name, CASE WHEN l.wa_id IS NULL THEN NULL ELSE '+' || l.wa_id END AS phone, \
         {} AS status, COALESCE(r.error, m.external_error) AS error, r.conversation_id, r.message_id \
         FROM campaign_recipients r JOIN leads l ON l.id = r.lead_id LEFT JOIN messages m ON m.id = r.message_id \
         WHERE r.campaign_id = $1 AND r.lead_id > $2) s WHERE ($3 = '' OR s.status = $3) ORDER BY s.lead_id LIMIT $4",
        status_sql()
    );
    Ok(sqlx::query_as(&sql)
        .bind(campaign_id)
        .bind(after)
        .bind(status.unwrap_or(""))
        .bind(limit + 1)
        .fetch_all(db.reader())
        .await?)
}
