//! Outbound: agents' messages in channel conversations go to the customer through the Graph
//! API, from a durable queue (jobs), with retries for what may pass and a guard against sending
//! twice.
//!
//! A message is stored `pending` with its send job in one transaction. The job marks it
//! `sending` (committed) before the request, and records the wamid and `sent` after it. A job
//! that starts and finds `sending` cannot know whether the provider got the request (the node
//! died mid-call, or the call timed out after the bytes left), and the Cloud API has no
//! idempotency key, so it does not send again: the message is marked `failed` with
//! `unknown_outcome`. That is the residual window: a crash between the provider's answer and
//! the record of it fails a message the customer may have received. Failures known to have
//! sent nothing (connection refused, 429, 5xx, the rate-limit codes) put it back to `pending`
//! and retry with backoff, honouring `Retry-After`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::channels;
use crate::app::AppState;
use crate::error::AppResult;
use crate::jobs::{Job, JobError, JobResult};
use crate::messages::model::{MessageRow, MessageType, TemplateSend};

pub use super::kinds::{MARK_READ, REACT, SEND};

/// Where a channel message goes: the channel, its token, the customer.
struct Route {
    channel: channels::ChannelRow,
    token: String,
    to: String,
    lead_id: Option<String>,
}

async fn route(state: &AppState, conversation_id: &str) -> Result<Route, JobError> {
    let (channel_id, lead_id, wa_id): (Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT c.channel_id, c.lead_id, l.wa_id FROM conversations c LEFT JOIN leads l ON l.id = c.lead_id WHERE c.id = $1",
    )
    .bind(conversation_id)
    .fetch_one(state.db.reader())
    .await?;
    let channel = match channel_id {
        Some(id) => channels::find_any(&state.db, &id).await?,
        None => None,
    }
    .ok_or_else(|| JobError::permanent("the conversation's channel is gone"))?;
    let token = channel
        .access_token(&state.secret)
        .ok_or_else(|| JobError::permanent("the channel has no access token"))?;
    let to = wa_id.ok_or_else(|| JobError::permanent("the conversation has no customer"))?;
    Ok(Route {
        channel,
        token,
        to,
        lead_id,
    })
}

/// The provider's error object, and whether it may pass.
#[derive(Debug, Deserialize)]
struct ProviderError {
    code: Option<i64>,
    message: Option<String>,
    error_subcode: Option<i64>,
    error_data: Option<Value>,
}

/// Rate limits and temporary trouble (the Cloud API's codes), worth another try.
fn transient(status: u16, code: Option<i64>) -> bool {
    status == 429
        || status >= 500
        || matches!(
            code,
            Some(1 | 2 | 4 | 17 | 341 | 80007 | 130429 | 131000 | 131016 | 131056 | 133004)
        )
}

enum Outcome {
    Sent(String),
    /// Nothing went out; may pass.
    Retry(String, Option<std::time::Duration>),
    /// Refused for good: the provider's error.
    Failed(Value),
    /// The request may or may not have reached the provider.
    Unknown(String),
}

/// A send refused by the outbound client (the channel's Graph URL is not a public address).
fn refused(e: impl std::fmt::Display) -> Outcome {
    Outcome::Failed(json!({"code": "outbound_refused", "message": e.to_string()}))
}

async fn post(state: &AppState, r: &Route, path: &str, body: &Value) -> Outcome {
    let request = match state
        .media
        .http
        .post(&format!("{}/{path}", r.channel.graph()))
    {
        Ok(request) => request,
        Err(e) => return refused(e),
    };
    let sent = request.bearer_auth(&r.token).json(body).send().await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) if crate::outbound::is_refusal(&e) => return refused(e),
        Err(e) if e.is_connect() => {
            return Outcome::Retry(format!("connecting to the Graph API: {e}"), None)
        }
        Err(e) => {
            return Outcome::Unknown(format!("the Graph API call ended without an answer: {e}"))
        }
    };
    let status = resp.status().as_u16();
    let after = crate::jobs::retry_after(resp.headers());
    let answer = match crate::outbound::json_capped(resp).await {
        Ok(answer) => answer,
        Err(e) => return Outcome::Unknown(format!("the Graph API's answer was not read: {e}")),
    };
    if (200..300).contains(&status) {
        return match answer.pointer("/messages/0/id").and_then(Value::as_str) {
            Some(wamid) => Outcome::Sent(wamid.to_owned()),
            None if answer.get("success").and_then(Value::as_bool) == Some(true) => {
                Outcome::Sent(String::new())
            }
            None => Outcome::Unknown(format!(
                "the Graph API answered {status} without a message id"
            )),
        };
    }
    let err: Option<ProviderError> = answer
        .get("error")
        .and_then(|e| serde_json::from_value(e.clone()).ok());
    let code = err.as_ref().and_then(|e| e.code);
    if transient(status, code) {
        return Outcome::Retry(format!("the Graph API answered {status}: {answer}"), after);
    }
    let e = err.unwrap_or(ProviderError {
        code: None,
        message: None,
        error_subcode: None,
        error_data: None,
    });
    Outcome::Failed(json!({
        "code": e.code.unwrap_or(i64::from(status)),
        "subcode": e.error_subcode,
        "message": e.message.unwrap_or_else(|| format!("HTTP {status}")),
        "details": e.error_data.as_ref().and_then(|d| d.get("details")).cloned(),
    }))
}

/// The Cloud API request body for a message.
async fn request_body(state: &AppState, r: &Route, m: &MessageRow) -> Result<Value, JobError> {
    let payload: Option<Value> = m
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok());
    let mut body =
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": r.to});
    let kind = m.message_type();
    match kind {
        MessageType::Text => {
            body["type"] = json!("text");
            body["text"] = json!({"body": m.text, "preview_url": false});
        }
        MessageType::Image
        | MessageType::Video
        | MessageType::Document
        | MessageType::Sticker
        | MessageType::Audio
        | MessageType::Voice => {
            let media_id = m
                .media_id
                .as_deref()
                .ok_or_else(|| JobError::permanent("the media is gone"))?;
            let graph_media = upload(state, r, media_id).await?;
            let t = match kind {
                MessageType::Image => "image",
                MessageType::Video => "video",
                MessageType::Document => "document",
                MessageType::Sticker => "sticker",
                _ => "audio",
            };
            let mut obj = json!({"id": graph_media});
            if matches!(
                kind,
                MessageType::Image | MessageType::Video | MessageType::Document
            ) {
                if let Some(caption) = &m.text {
                    obj["caption"] = json!(caption);
                }
            }
            if kind == MessageType::Document {
                if let Some(media) = crate::media::store::find(&state.db, media_id).await? {
                    obj["filename"] = json!(media.file_name.unwrap_or_else(|| "document".into()));
                }
            }
            body["type"] = json!(t);
            body[t] = obj;
        }
        MessageType::Location => {
            let p = payload.unwrap_or_default();
            body["type"] = json!("location");
            body["location"] = json!({"latitude": p["latitude"], "longitude": p["longitude"], "name": p["name"], "address": p["address"]});
        }
        MessageType::Contact => {
            let p = payload.unwrap_or_default();
            let phones: Vec<Value> = p["phones"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|ph| json!({"phone": ph}))
                .collect();
            let emails: Vec<Value> = p["emails"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|e| json!({"email": e}))
                .collect();
            body["type"] = json!("contacts");
            body["contacts"] = json!([{"name": {"formatted_name": p["name"], "first_name": p["name"]}, "phones": phones, "emails": emails}]);
        }
        MessageType::Template => {
            let send: TemplateSend = payload
                .and_then(|p| serde_json::from_value(p).ok())
                .ok_or_else(|| JobError::permanent("the template payload is unreadable"))?;
            let parameters: Vec<Value> = send
                .parameters
                .iter()
                .map(|p| json!({"type": "text", "text": p}))
                .collect();
            let mut template = json!({"name": send.name, "language": {"code": send.language}});
            if !parameters.is_empty() {
                template["components"] = json!([{"type": "body", "parameters": parameters}]);
            }
            body["type"] = json!("template");
            body["template"] = template;
        }
        MessageType::Interactive => {
            body["type"] = json!("interactive");
            body["interactive"] = payload.unwrap_or_default();
        }
        other => {
            return Err(JobError::permanent(format!(
                "{} messages cannot be sent to WhatsApp",
                other.as_str()
            )))
        }
    }
    if let Some(reply) = &m.reply_to_id {
        let wamid: Option<Option<String>> =
            sqlx::query_scalar("SELECT external_id FROM messages WHERE id = $1")
                .bind(reply)
                .fetch_optional(state.db.reader())
                .await?;
        if let Some(Some(wamid)) = wamid {
            body["context"] = json!({"message_id": wamid});
        }
    }
    Ok(body)
}

/// Uploads stored media to the Graph media endpoint; the provider's media id.
async fn upload(state: &AppState, r: &Route, media_id: &str) -> Result<String, JobError> {
    let media = crate::media::store::find(&state.db, media_id)
        .await?
        .ok_or_else(|| JobError::permanent("the media is gone"))?;
    let path =
        crate::media::storage::Storage::path(&media.storage_key).map_err(JobError::permanent)?;
    let bytes = state
        .media
        .storage
        .store()
        .get(&path)
        .await
        .map_err(JobError::retry)?
        .bytes()
        .await
        .map_err(JobError::retry)?;
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name(media.file_name.clone().unwrap_or_else(|| "file".into()))
        .mime_str(
            media
                .content_type
                .split(';')
                .next()
                .unwrap_or("application/octet-stream"),
        )
        .map_err(JobError::permanent)?;
    let form = reqwest::multipart::Form::new()
        .text("messaging_product", "whatsapp")
        .text("type", media.content_type.clone())
        .part("file", part);
    let resp = state
        .media
        .http
        .post(&format!(
            "{}/{}/media",
            r.channel.graph(),
            r.channel.phone_number_id
        ))?
        .bearer_auth(&r.token)
        .multipart(form)
        .send()
        .await
        .map_err(crate::jobs::request_error)?;
    let status = resp.status();
    let after = crate::jobs::retry_after(resp.headers());
    let answer = crate::outbound::json_capped(resp).await?;
    match answer.get("id").and_then(Value::as_str) {
        Some(id) if status.is_success() => Ok(id.to_owned()),
        _ => Err(crate::jobs::provider_error(
            status,
            after,
            format!("media upload answered {status}: {answer}"),
        )),
    }
}

/// Moves a message's provider status and tells its conversation.
async fn set_status(
    state: &AppState,
    m: &MessageRow,
    lead_id: Option<&str>,
    from: &str,
    to: &'static str,
    wamid: Option<&str>,
    error: Option<&Value>,
) -> AppResult<bool> {
    let mut tx = state.db.begin().await?;
    let moved = sqlx::query(
        "UPDATE messages SET external_status = $1, external_id = COALESCE($2, external_id), \
         external_error = COALESCE($3, external_error) WHERE id = $4 AND external_status = $5",
    )
    .bind(to)
    .bind(wamid)
    .bind(error.map(Value::to_string))
    .bind(&m.id)
    .bind(from)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if moved && to != "sending" {
        super::ingest::status_changed(&mut tx, &m.conversation_id, &m.id, m.seq, lead_id, Some(to))
            .await?;
    }
    state.db.commit(tx).await?;
    Ok(moved)
}

pub async fn send(state: &AppState, job: &Job) -> JobResult {
    let Some(m) = crate::messages::store::find(&state.db, &job.payload).await? else {
        return Ok(());
    };
    let r = route(state, &m.conversation_id).await?;
    match m.external_status.as_deref() {
        Some("pending") => {}
        Some("sending") => {
            let error = json!({"code": "unknown_outcome", "message": "the send was interrupted; it may or may not have reached the customer, so it is not repeated"});
            set_status(
                state,
                &m,
                r.lead_id.as_deref(),
                "sending",
                "failed",
                None,
                Some(&error),
            )
            .await?;
            return Ok(());
        }
        _ => return Ok(()), // done before
    }
    if m.deleted_at.is_some() {
        let error = json!({"code": "deleted", "message": "deleted before it was sent"});
        set_status(
            state,
            &m,
            r.lead_id.as_deref(),
            "pending",
            "failed",
            None,
            Some(&error),
        )
        .await?;
        return Ok(());
    }
    let body = request_body(state, &r, &m).await?;
    if !set_status(
        state,
        &m,
        r.lead_id.as_deref(),
        "pending",
        "sending",
        None,
        None,
    )
    .await?
    {
        return Ok(()); // another worker has it
    }
    let lead = r.lead_id.as_deref();
    match post(
        state,
        &r,
        &format!("{}/messages", r.channel.phone_number_id),
        &body,
    )
    .await
    {
        Outcome::Sent(wamid) => {
            set_status(
                state,
                &m,
                lead,
                "sending",
                "sent",
                Some(&wamid).filter(|w| !w.is_empty()).map(|w| w.as_str()),
                None,
            )
            .await?;
            metrics::counter!("whatsapp_sends_total", "result" => "sent").increment(1);
            Ok(())
        }
        Outcome::Retry(error, after) => {
            set_status(state, &m, lead, "sending", "pending", None, None).await?;
            metrics::counter!("whatsapp_sends_total", "result" => "retry").increment(1);
            Err(JobError::Retry { error, after })
        }
        Outcome::Failed(error) => {
            set_status(state, &m, lead, "sending", "failed", None, Some(&error)).await?;
            metrics::counter!("whatsapp_sends_total", "result" => "failed").increment(1);
            Ok(())
        }
        Outcome::Unknown(e) => {
            let error = json!({"code": "unknown_outcome", "message": e});
            set_status(state, &m, lead, "sending", "failed", None, Some(&error)).await?;
            metrics::counter!("whatsapp_sends_total", "result" => "unknown").increment(1);
            Ok(())
        }
    }
}

/// The send job gave up (its retries ran out): the message failed.
pub async fn send_gave_up(state: &AppState, job: &Job, error: &str) -> AppResult<()> {
    let Some(m) = crate::messages::store::find(&state.db, &job.payload).await? else {
        return Ok(());
    };
    let lead: Option<String> =
        sqlx::query_scalar("SELECT lead_id FROM conversations WHERE id = $1")
            .bind(&m.conversation_id)
            .fetch_optional(state.db.reader())
            .await?
            .flatten();
    let e = json!({"code": "gave_up", "message": error});
    for from in ["pending", "sending"] {
        set_status(state, &m, lead.as_deref(), from, "failed", None, Some(&e)).await?;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reaction {
    message_id: String,
    emoji: String,
}

/// An agent's reaction to a customer's message, sent as a reaction message.
pub async fn react(state: &AppState, job: &Job) -> JobResult {
    let p: Reaction = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let Some(m) = crate::messages::store::find(&state.db, &p.message_id).await? else {
        return Ok(());
    };
    let Some(wamid) = m.external_id.clone() else {
        return Ok(()); // never reached WhatsApp
    };
    let r = route(state, &m.conversation_id).await?;
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": r.to,
        "type": "reaction", "reaction": {"message_id": wamid, "emoji": p.emoji}});
    side_call(state, &r, body).await
}

/// The customer's message is marked read when an agent reads the conversation.
pub async fn mark_read(state: &AppState, job: &Job) -> JobResult {
    let Some(m) = crate::messages::store::find(&state.db, &job.payload).await? else {
        return Ok(());
    };
    let Some(wamid) = m.external_id.clone() else {
        return Ok(());
    };
    let r = route(state, &m.conversation_id).await?;
    let body = json!({"messaging_product": "whatsapp", "status": "read", "message_id": wamid});
    side_call(state, &r, body).await
}

/// Reactions and read marks: no state of ours to guard; a repeat is harmless to the customer.
async fn side_call(state: &AppState, r: &Route, body: Value) -> JobResult {
    match post(
        state,
        r,
        &format!("{}/messages", r.channel.phone_number_id),
        &body,
    )
    .await
    {
        Outcome::Sent(_) | Outcome::Unknown(_) => Ok(()),
        Outcome::Retry(error, after) => Err(JobError::Retry { error, after }),
        Outcome::Failed(e) => Err(JobError::Permanent(e.to_string())),
    }
}
