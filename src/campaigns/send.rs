//! The campaign sender: on whichever node holds the `campaigns` lease, once a second, it starts
//! the campaigns whose time has come (their audience written as recipients) and hands the
//! next recipients of running ones to the outbound queue, paced per channel.
//!
//! Pacing: a channel sends `send_rate` messages a second. Its next free slot is a column of
//! the channel, locked while a batch is claimed, so every campaign on a channel shares it; each
//! message's send job is due at its slot (`1000 / rate` ms apart), claimed at most two seconds
//! ahead. Pausing or cancelling therefore stops the sends within two seconds.
//!
//! Once, even after `kill -9`: a batch of recipients is claimed, their messages and send jobs
//! written and the channel's slot moved in one transaction; the outbound queue then sends each
//! message once (a send whose outcome is unknown is not repeated). A crash before the commit
//! leaves the recipients waiting for the next tick; after it, their jobs are durable.

use serde_json::Value;

use super::model::Audience;
use super::store::{self, CampaignRow};
use crate::db::{now_ms, Db, Tenant, Tx};
use crate::error::{AppError, AppResult};
use crate::inbox::canned;
use crate::messages::model::{Content, MessageType, TemplateSend};
use crate::messages::templates;

pub const LEASE: &str = "campaigns";
/// How far ahead of its slot a message is handed to the queue.
const LOOKAHEAD_MS: i64 = 2000;
/// Recipients claimed per campaign and transaction at most.
const BATCH: usize = 500;

/// A lead as a campaign reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct Lead {
    pub id: String,
    pub name: Option<String>,
    pub wa_id: Option<String>,
    pub email: Option<String>,
    pub stage: String,
    pub attributes: String,
    pub opt_in_status: String,
}

/// The audience's leads as of now, by id: opted in, with a WhatsApp number, in the filter.
pub async fn audience(tx: &mut Tx, workspace_id: &str, a: &Audience) -> AppResult<Vec<Lead>> {
    let mut sql = String::from(
        "SELECT l.id, l.name, l.wa_id, l.email, l.stage, l.attributes, l.opt_in_status FROM leads l \
         WHERE l.workspace_id = $1 AND l.opt_in_status = 'opted_in' AND l.wa_id IS NOT NULL",
    );
    let mut binds: Vec<String> = vec![workspace_id.to_owned()];
    let list = |items: &[String], binds: &mut Vec<String>| {
        let start = binds.len();
        binds.extend(items.iter().cloned());
        (start + 1..=binds.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(stages) = &a.stages {
        sql += &format!(" AND l.stage IN ({})", list(stages, &mut binds));
    }
    if let Some(tags) = &a.tags {
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM lead_tags lt JOIN tags tg ON tg.id = lt.tag_id \
             WHERE lt.lead_id = l.id AND tg.name IN ({}))",
            list(tags, &mut binds)
        );
    }
    sql += " ORDER BY l.id";
    let mut q = sqlx::query_as::<_, Lead>(&sql);
    for b in &binds {
        q = q.bind(b);
    }
    let leads = q.fetch_all(&mut **tx).await?;
    Ok(leads
        .into_iter()
        .filter(|l| a.attributes_match(&l.attributes))
        .collect())
}

/// One look: start what is due, send what the channels have room for.
pub async fn tick(db: &Db) -> AppResult<()> {
    let now = now_ms();
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM campaigns WHERE status = 'scheduled' AND scheduled_at <= $1 ORDER BY scheduled_at, id",
    )
    .bind(now)
    .fetch_all(db.reader())
    .await?;
    for id in due {
        start(db, &id).await?;
    }
    let running: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM campaigns WHERE status = 'running' ORDER BY started_at, id",
    )
    .fetch_all(db.reader())
    .await?;
    let mut queued = false;
    for id in running {
        queued |= send_some(db, &id).await?;
    }
    if queued {
        db.wake_jobs();
    }
    Ok(())
}

/// A scheduled campaign starts: its audience as of now becomes its recipients.
async fn start(db: &Db, id: &str) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let started = sqlx::query(
        "UPDATE campaigns SET status = 'running', started_at = $2, updated_at = $2 WHERE id = $1 AND status = 'scheduled'",
    )
    .bind(id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    if started.rows_affected() == 0 {
        return Ok(());
    }
    let c = store::find_in_tx(&mut tx, id).await?;
    let leads = audience(&mut tx, &c.workspace_id, &c.audience()).await?;
    for chunk in leads.chunks(BATCH) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO campaign_recipients (campaign_id, lead_id) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(id);
        for l in chunk {
            q = q.bind(&l.id);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends a running campaign: completed, or cancelled with why.
async fn finish(tx: &mut Tx, id: &str, error: Option<&str>) -> AppResult<()> {
    sqlx::query(
        "UPDATE campaigns SET status = $2, error = $3, finished_at = $4, updated_at = $4 \
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(if error.is_some() {
        "cancelled"
    } else {
        "completed"
    })
    .bind(error)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims as many of a running campaign's waiting recipients as its channel has slots for in
/// the next two seconds; whether any message was queued.
async fn send_some(db: &Db, id: &str) -> AppResult<bool> {
    let mut tx = db.begin().await?;
    let c = store::find_in_tx(&mut tx, id).await?;
    if c.status != "running" {
        return Ok(false);
    }
    let Some(channel_id) = c.channel_id.clone() else {
        finish(&mut tx, id, Some("its channel was removed")).await?;
        tx.commit().await?;
        return Ok(false);
    };
    // The channel's pace, locked: campaigns on one channel share it.
    let (rate, next): (i64, i64) = sqlx::query_as(
        "UPDATE channels SET next_send_at = next_send_at WHERE id = $1 RETURNING send_rate, next_send_at",
    )
    .bind(&channel_id)
    .fetch_one(&mut *tx)
    .await?;
    let interval = 1000.0 / rate.max(1) as f64;
    let now = now_ms();
    let first = next.max(now);
    let room = (((now + LOOKAHEAD_MS - first) as f64) / interval)
        .floor()
        .max(0.0) as usize;
    if room == 0 {
        return Ok(false);
    }
    let waiting: Vec<String> = sqlx::query_scalar(
        "SELECT lead_id FROM campaign_recipients WHERE campaign_id = $1 AND state = 'waiting' \
         ORDER BY lead_id LIMIT $2",
    )
    .bind(id)
    .bind(room.min(BATCH) as i64)
    .fetch_all(&mut *tx)
    .await?;
    if waiting.is_empty() {
        finish(&mut tx, id, None).await?;
        tx.commit().await?;
        return Ok(false);
    }
    let t = Tenant::new(db, &c.workspace_id);
    let template = match checked_template(t, &c).await? {
        Ok(template) => template,
        Err(why) => {
            finish(&mut tx, id, Some(&why)).await?;
            tx.commit().await?;
            return Ok(false);
        }
    };
    let mut sent = 0usize;
    for lead_id in &waiting {
        let slot = first + (sent as f64 * interval).round() as i64;
        if claim(&mut tx, t, (&c, &channel_id), &template, lead_id, slot).await? {
            sent += 1;
        }
    }
    let next = first + (sent as f64 * interval).round() as i64;
    sqlx::query("UPDATE channels SET next_send_at = $2 WHERE id = $1")
        .bind(&channel_id)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    db.commit(tx).await?;
    Ok(sent > 0)
}

/// The campaign's template, approved, with the right number of parameters; else why not.
async fn checked_template(
    t: Tenant<'_>,
    c: &CampaignRow,
) -> AppResult<Result<templates::TemplateRow, String>> {
    let Some(template_id) = &c.template_id else {
        return Ok(Err("its template was removed".into()));
    };
    let Some(template) = templates::find(t, template_id).await? else {
        return Ok(Err("its template was removed".into()));
    };
    if template.status != "approved" {
        return Ok(Err(format!(
            "its template is {}, not approved",
            template.status
        )));
    }
    let wanted = templates::variable_count(&templates::body_text(&template));
    if wanted != c.parameters().len() {
        return Ok(Err(format!(
            "its template now expects {wanted} parameter(s)"
        )));
    }
    Ok(Ok(template))
}

/// One recipient: its message (in its conversation with the lead on the campaign's channel)
/// and send job due at `slot`; or skipped, with why, when the lead opted out or lost its
/// number since the campaign started. Whether a message was queued.
async fn claim(
    tx: &mut Tx,
    t: Tenant<'_>,
    (c, channel_id): (&CampaignRow, &str),
    template: &templates::TemplateRow,
    lead_id: &str,
    slot: i64,
) -> AppResult<bool> {
    let lead: Option<Lead> = sqlx::query_as(
        "SELECT id, name, wa_id, email, stage, attributes, opt_in_status FROM leads WHERE id = $1",
    )
    .bind(lead_id)
    .fetch_optional(&mut **tx)
    .await?;
    let refusal = match &lead {
        None => Some("the lead was deleted"),
        Some(l) if l.opt_in_status != "opted_in" => Some("the lead opted out"),
        Some(l) if l.wa_id.is_none() => Some("the lead has no WhatsApp number"),
        Some(_) => None,
    };
    let (Some(lead), None) = (lead, refusal) else {
        sqlx::query(
            "UPDATE campaign_recipients SET state = 'skipped', error = $3 WHERE campaign_id = $1 AND lead_id = $2",
        )
        .bind(&c.id)
        .bind(lead_id)
        .bind(refusal)
        .execute(&mut **tx)
        .await?;
        return Ok(false);
    };
    let title = lead
        .name
        .clone()
        .or_else(|| lead.wa_id.as_ref().map(|w| format!("+{w}")))
        .unwrap_or_default();
    let conversation = crate::conversations::store::channel_conversation(
        tx,
        (t.workspace_id(), channel_id),
        &lead.id,
        &title,
    )
    .await?;
    let cx = canned::Context {
        lead_name: lead.name.clone(),
        lead_phone: lead.wa_id.as_ref().map(|w| format!("+{w}")),
        lead_email: lead.email.clone(),
        lead_stage: Some(lead.stage.clone()),
        attributes: serde_json::from_str(&lead.attributes).unwrap_or_default(),
        agent_name: None,
        workspace_name: None,
    };
    let parameters: Vec<String> = c
        .parameters()
        .iter()
        .map(|p| canned::render(p, &cx).0)
        .collect();
    let body = templates::body_text(template);
    let send = TemplateSend {
        name: template.name.clone(),
        language: template.language.clone(),
        parameters: parameters.clone(),
    };
    let content = Content {
        kind: MessageType::Template,
        text: Some(templates::render(&body, &parameters)),
        media_id: None,
        payload: Some(serde_json::to_string(&send).map_err(AppError::internal)?),
    };
    let m = crate::messages::write::insert_system_send(tx, &conversation, &content, slot).await?;
    sqlx::query(
        "UPDATE campaign_recipients SET state = 'queued', conversation_id = $3, message_id = $4, send_at = $5 \
         WHERE campaign_id = $1 AND lead_id = $2",
    )
    .bind(&c.id)
    .bind(lead_id)
    .bind(&conversation.id)
    .bind(&m.id)
    .bind(slot)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// The sample a preview shows.
pub fn sample(leads: &[Lead]) -> Vec<Value> {
    leads
        .iter()
        .take(10)
        .map(|l| {
            serde_json::json!({"leadId": l.id, "name": l.name, "phone": l.wa_id.as_ref().map(|w| format!("+{w}"))})
        })
        .collect()
}
