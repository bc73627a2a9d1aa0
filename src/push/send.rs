//! The push jobs: a conversation's notification, an incoming call.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::model::SubscriptionRow;
use super::{kinds, store, Push};
use crate::auth::keys::ServerSecret;
use crate::conversations::model::{ConversationRow, Kind};
use crate::db::{now_ms, Db, Tenant};
use crate::error::AppResult;
use crate::jobs::{Job, JobError, JobResult};
use web_push_native::p256;

/// A notification's lifetime at the push service while the device is unreachable.
const TTL_SECONDS: u32 = 24 * 3600;
/// Characters of a preview.
const PREVIEW_CHARS: usize = 120;

/// What a job needs besides the database.
pub struct Senders<'a> {
    pub push: &'a Push,
    pub secret: &'a ServerSecret,
}

/// `push.message`: the conversation's notification for one subscription, as it stands now.
pub async fn message(db: &Db, senders: Senders<'_>, job: Arc<Job>) -> JobResult {
    let Some((subscription_id, conversation_id)) = job.payload.split_once(' ') else {
        return Err(JobError::permanent("a malformed payload"));
    };
    let Some(sub) = store::find(db, subscription_id)
        .await
        .map_err(JobError::retry)?
    else {
        return Ok(());
    };
    store::clear_pending(db, subscription_id, conversation_id)
        .await
        .map_err(JobError::retry)?;
    let Some(body) = notification(db, &sub.user_id, conversation_id)
        .await
        .map_err(JobError::retry)?
    else {
        return Ok(()); // read meanwhile, muted, or gone
    };
    deliver(
        db,
        &senders,
        &sub,
        &body,
        "normal",
        Some(&topic(conversation_id)),
    )
    .await
}

/// `push.call`: an incoming call, at once and with high urgency.
pub async fn call(db: &Db, senders: Senders<'_>, job: Arc<Job>) -> JobResult {
    let payload: Value = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let Some(id) = payload["subscriptionId"].as_str() else {
        return Err(JobError::permanent("a malformed payload"));
    };
    let Some(sub) = store::find(db, id).await.map_err(JobError::retry)? else {
        return Ok(());
    };
    deliver(db, &senders, &sub, &payload["notification"], "high", None).await
}

/// Queues an incoming call's notification for every signed-in device of the callee.
pub async fn queue_call(db: &Db, callee_id: &str, notification: &Value) -> AppResult<()> {
    let subs = store::live_for_users(db, &[callee_id.to_owned()]).await?;
    if subs.is_empty() {
        return Ok(());
    }
    let previews = crate::users::store::find_by_id(db, callee_id)
        .await?
        .is_some_and(|u| u.push_previews != 0);
    let mut notification = notification.clone();
    if !previews {
        // Enough to answer, not who calls.
        if let Some(o) = notification.as_object_mut() {
            o.remove("from");
        }
    }
    let mut tx = db.begin().await?;
    for s in &subs {
        let payload = json!({"subscriptionId": s.id, "notification": notification});
        crate::jobs::enqueue(&mut tx, kinds::CALL, &payload.to_string()).await?;
    }
    db.commit(tx).await?;
    db.wake_jobs();
    Ok(())
}

/// The push service's `Topic`: at most 32 URL-safe base64 characters naming the conversation.
fn topic(conversation_id: &str) -> String {
    let digest = Sha256::digest(conversation_id.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)[..32].to_owned()
}

/// The notification of a conversation for `user_id`: its unread count and newest message,
/// or `None` when nothing is unread (or the user may not be told).
async fn notification(db: &Db, user_id: &str, conversation_id: &str) -> AppResult<Option<Value>> {
    let Some(workspace_id) = workspace_of(db, conversation_id).await? else {
        return Ok(None);
    };
    let t = Tenant::new(db, &workspace_id);
    let Ok(access) = crate::conversations::access::access(t, conversation_id, user_id, false).await
    else {
        return Ok(None);
    };
    let (c, me) = (&access.conversation, &access.me);
    if me.request_state != "accepted" || me.muted_until.is_some_and(|m| m > now_ms()) {
        return Ok(None);
    }
    let unread = crate::chats::service::unread_count(db, c, me).await?;
    if unread == 0 {
        return Ok(None);
    }
    // The newest message to tell of: not the user's own, and not from someone a block stands
    // between them and (in a group, their messages arrive but are not announced).
    let last: Option<(String, Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT id, sender_id, type, text FROM messages m WHERE conversation_id = $1 \
         AND (sender_id IS NULL OR sender_id <> $2) AND deleted_at IS NULL AND seq <= $3 \
         AND seq > $4 AND NOT EXISTS (SELECT 1 FROM blocks b WHERE \
         (b.blocker_id = $2 AND b.blocked_id = m.sender_id) OR (b.blocker_id = m.sender_id AND b.blocked_id = $2)) \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(me.visible_until(c.last_seq))
    .bind(me.read_seq)
    .fetch_optional(db.reader())
    .await?;
    let Some((message_id, sender_id, kind, text)) = last else {
        return Ok(None);
    };
    let previews = crate::users::store::find_by_id(db, user_id)
        .await?
        .is_some_and(|u| u.push_previews != 0);
    if !previews {
        // What the user's privacy setting allows: that something came, not who or what.
        return Ok(Some(json!({
            "type": "message",
            "conversationId": conversation_id,
            "unreadCount": unread,
            "title": "Palaver",
            "body": "New message",
        })));
    }
    // The support desk's customer is told of the team (the workspace's name, the
    // conversation's title), not of an agent, where the desk hides its agents.
    let face = crate::conversations::store::team_face(db, c, user_id).await?;
    let sender = match &sender_id {
        Some(id) if face.as_ref().is_some_and(|f| f.hides(id)) => c.title.clone(),
        Some(id) => crate::users::store::find_by_id(db, id)
            .await?
            .map(|u| u.display_name),
        None => None,
    };
    Ok(Some(json!({
        "type": "message",
        "conversationId": conversation_id,
        "messageId": message_id,
        "unreadCount": unread,
        "title": title(c, sender.as_deref()),
        "body": preview(&kind, text.as_deref()),
    })))
}

async fn workspace_of(db: &Db, conversation_id: &str) -> AppResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT workspace_id FROM conversations WHERE id = $1")
            .bind(conversation_id)
            .fetch_optional(db.reader())
            .await?,
    )
}

fn title(c: &ConversationRow, sender: Option<&str>) -> String {
    match (c.kind(), c.title.as_deref(), sender) {
        (Kind::Group, Some(group), Some(who)) => format!("{who} in {group}"),
        (Kind::Group, Some(group), None) => group.to_owned(),
        (_, _, Some(who)) => who.to_owned(),
        _ => "Palaver".to_owned(),
    }
}

fn preview(kind: &str, text: Option<&str>) -> String {
    let shown = match (kind, text) {
        ("text", Some(t)) => t.to_owned(),
        ("image", _) => "Photo".to_owned(),
        ("video", _) => "Video".to_owned(),
        ("voice" | "audio", _) => "Voice message".to_owned(),
        ("document", _) => "Document".to_owned(),
        ("sticker", _) => "Sticker".to_owned(),
        ("location", _) => "Location".to_owned(),
        ("contact", _) => "Contact".to_owned(),
        ("call", _) => "Call".to_owned(),
        (_, Some(t)) => t.to_owned(),
        _ => "New message".to_owned(),
    };
    match shown.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &shown[..cut]),
        None => shown,
    }
}

/// Sends one notification to a subscription: encrypted Web Push, or the gateway's webhook.
async fn deliver(
    db: &Db,
    senders: &Senders<'_>,
    sub: &SubscriptionRow,
    body: &Value,
    urgency: &str,
    topic: Option<&str>,
) -> JobResult {
    let bytes = serde_json::to_vec(body).map_err(JobError::permanent)?;
    let request = match sub.kind.as_str() {
        "webpush" => web_push(senders.push, sub, bytes, urgency, topic)?,
        _ => webhook(senders, sub, bytes)?,
    };
    let r = request.send().await.map_err(crate::jobs::request_error)?;
    let status = r.status();
    if status.is_success() {
        metrics::counter!("push_sent_total", "kind" => sub.kind.clone()).increment(1);
        return Ok(());
    }
    if matches!(status.as_u16(), 404 | 410) {
        tracing::info!(subscription = %sub.id, %status, "a push subscription is gone; removing it");
        store::remove_dead(db, &sub.id)
            .await
            .map_err(JobError::retry)?;
        return Ok(());
    }
    let after = crate::jobs::retry_after(r.headers());
    Err(crate::jobs::provider_error(
        status,
        after,
        format!("the push service answered {status}"),
    ))
}

fn web_push(
    push: &Push,
    sub: &SubscriptionRow,
    bytes: Vec<u8>,
    urgency: &str,
    topic: Option<&str>,
) -> Result<reqwest::RequestBuilder, JobError> {
    let key = |v: &Option<String>| {
        v.as_deref()
            .and_then(|k| URL_SAFE_NO_PAD.decode(k).ok())
            .ok_or_else(|| JobError::permanent("the subscription has no keys"))
    };
    let ua_public =
        p256::PublicKey::from_sec1_bytes(&key(&sub.p256dh)?).map_err(JobError::permanent)?;
    let auth_bytes = key(&sub.auth)?;
    if auth_bytes.len() != 16 {
        return Err(JobError::permanent(
            "the subscription's auth secret is not 16 bytes",
        ));
    }
    let auth = web_push_native::Auth::clone_from_slice(&auth_bytes);
    let payload = web_push_native::encrypt(bytes, &ua_public, &auth)
        .map_err(|e| JobError::permanent(format!("encrypting: {e:?}")))?;
    let url = url::Url::parse(&sub.endpoint).map_err(JobError::permanent)?;
    let vapid = push
        .vapid
        .authorization(&url, now_ms() / 1000)
        .map_err(JobError::permanent)?;
    let mut request = push
        .http
        .post(&sub.endpoint)?
        .header("TTL", TTL_SECONDS.to_string())
        .header("Urgency", urgency)
        .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::AUTHORIZATION, vapid)
        .body(payload);
    if let Some(t) = topic {
        request = request.header("Topic", t);
    }
    Ok(request)
}

/// A gateway's webhook: the notification as JSON, with the token as a bearer and as the key
/// of `Palaver-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
fn webhook(
    senders: &Senders<'_>,
    sub: &SubscriptionRow,
    bytes: Vec<u8>,
) -> Result<reqwest::RequestBuilder, JobError> {
    use hmac::Mac;
    let body = format!(
        r#"{{"subscriptionId":{},"userId":{},"notification":{}}}"#,
        Value::from(sub.id.as_str()),
        Value::from(sub.user_id.as_str()),
        String::from_utf8_lossy(&bytes)
    );
    let mut request = senders
        .push
        .http
        .post(&sub.endpoint)?
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(sealed) = &sub.token {
        let token = senders
            .secret
            .open(sealed)
            .ok_or_else(|| JobError::permanent("the webhook's token does not open"))?;
        let t = now_ms() / 1000;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("any key");
        mac.update(format!("{t}.{body}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        request = request
            .bearer_auth(token)
            .header("Palaver-Signature", format!("t={t},v1={signature}"));
    }
    Ok(request.body(body))
}
