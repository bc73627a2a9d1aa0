//! Applying a webhook body: leads from `contacts[]`, customer messages into their channel
//! conversation, reactions onto their target, statuses onto the outbound message they name.
//! The same code serves the webhook's job and `palaver import-webhooks`.
//!
//! Idempotent: a message whose wamid is stored already is skipped (a unique index decides,
//! also between two workers), a status already in the history is skipped, and statuses only
//! move a message forward (`sent` < `delivered` < `read`; `failed` is final), so duplicates and
//! out-of-order arrivals end in the same state as one ordered delivery.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;

use super::channels::{self, ChannelRow};
use super::leads;
use super::parse::{self, Change, Inbound, StatusUpdate};
use crate::app::AppState;
use crate::db::{new_id, now_ms, Tx};
use crate::error::{AppError, AppResult};
use crate::messages::store::{self as messages, NewMessage};
use crate::sync::kinds;
use crate::sync::store::{append, NewChange};

/// What one body (or one import) did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub messages: u64,
    pub duplicates: u64,
    pub reactions: u64,
    pub statuses: u64,
    /// Statuses already recorded.
    pub duplicate_statuses: u64,
    /// Statuses for wamids that are not ours: recorded, applied to nothing.
    pub unknown_statuses: u64,
    /// `contacts[]` entries applied to leads.
    pub contacts: u64,
    pub channels_created: u64,
    /// Changes for phone number ids no channel has (skipped).
    pub unknown_channels: Vec<String>,
    /// Items that could not be applied, with the reason.
    pub skipped: Vec<String>,
}

impl Report {
    pub fn add(&mut self, other: Report) {
        self.messages += other.messages;
        self.duplicates += other.duplicates;
        self.reactions += other.reactions;
        self.statuses += other.statuses;
        self.duplicate_statuses += other.duplicate_statuses;
        self.unknown_statuses += other.unknown_statuses;
        self.contacts += other.contacts;
        self.channels_created += other.channels_created;
        self.unknown_channels.extend(other.unknown_channels);
        self.skipped.extend(other.skipped);
    }
}

/// Where changes for unknown phone number ids go.
#[derive(Clone, Copy)]
pub enum UnknownChannels<'a> {
    /// Skipped and reported (the webhook).
    Skip,
    /// A channel without secrets is created in this workspace (imports).
    CreateIn(&'a str),
}

/// Applies a body. A malformed body is an error and changes nothing.
pub async fn ingest(
    state: &AppState,
    body: &[u8],
    unknown: UnknownChannels<'_>,
) -> AppResult<Report> {
    let changes =
        parse::parse(body).map_err(|m| AppError::new(crate::error::Code::BadRequest, m.0))?;
    let mut report = Report::default();
    for change in changes {
        let Some(channel) = channel_for(state, &change, unknown, &mut report).await? else {
            continue;
        };
        apply_change(state, &channel, &change, &mut report).await?;
    }
    Ok(report)
}

async fn channel_for(
    state: &AppState,
    change: &Change,
    unknown: UnknownChannels<'_>,
    report: &mut Report,
) -> AppResult<Option<ChannelRow>> {
    let ids = [change.phone_number_id.clone()];
    if let Some(c) = channels::by_phone_number_ids(&state.db, &ids).await?.pop() {
        return Ok(Some(c));
    }
    let UnknownChannels::CreateIn(workspace_id) = unknown else {
        report.unknown_channels.push(change.phone_number_id.clone());
        return Ok(None);
    };
    let now = now_ms();
    let row = ChannelRow {
        id: new_id(),
        workspace_id: workspace_id.to_owned(),
        name: Some("Imported".into()),
        phone_number_id: change.phone_number_id.clone(),
        display_phone_number: change.display_phone_number.clone(),
        waba_id: None,
        access_token: None,
        app_secret: None,
        verify_token: None,
        graph_base_url: channels::DEFAULT_GRAPH_BASE_URL.into(),
        api_version: channels::DEFAULT_API_VERSION.into(),
        created_at: now,
        updated_at: now,
    };
    let mut tx = state.db.begin().await?;
    match channels::insert(&mut tx, &row).await {
        Ok(()) => {
            tx.commit().await?;
            report.channels_created += 1;
            Ok(Some(row))
        }
        // Made by a concurrent import meanwhile.
        Err(_) => {
            drop(tx);
            state.db.settle_writes().await?;
            Ok(channels::by_phone_number_ids(&state.db, &ids).await?.pop())
        }
    }
}

async fn apply_change(
    state: &AppState,
    channel: &ChannelRow,
    change: &Change,
    report: &mut Report,
) -> AppResult<()> {
    // One transaction for the whole change: its leads, messages, reactions and statuses are
    // applied together (a failure leaves nothing of it, and the job runs it again).
    let mut tx = state.db.begin().await?;
    let mut leads: HashMap<String, String> = HashMap::new();
    let names: HashMap<&str, Option<&str>> = change
        .contacts
        .iter()
        .map(|(wa, name)| (wa.as_str(), name.as_deref()))
        .collect();
    for (wa_id, name) in &change.contacts {
        let id = leads::upsert(
            &mut tx,
            &channel.workspace_id,
            &channel.id,
            wa_id,
            name.as_deref(),
        )
        .await?;
        leads.insert(wa_id.clone(), id);
        report.contacts += 1;
    }
    let mut media_queued = false;
    let business = |from: &str| {
        from == channel.phone_number_id
            || change
                .display_phone_number
                .as_deref()
                .or(channel.display_phone_number.as_deref())
                .is_some_and(|d| digits(d) == digits(from))
    };
    for m in &change.messages {
        // Sample packs list the business's own replies as messages from its number; the
        // conversation is then the customer's in `contacts[]`.
        let from_business = business(&m.from);
        let customer = if from_business {
            match change.contacts.first() {
                Some((wa, _)) => wa.as_str(),
                None => {
                    report.skipped.push(format!(
                        "{}: sent by the business to no named customer",
                        m.id
                    ));
                    continue;
                }
            }
        } else {
            m.from.as_str()
        };
        let name = names.get(customer).copied().flatten();
        let lead_id = match leads.get(customer) {
            Some(id) => id.clone(),
            None => {
                let id = leads::upsert(&mut tx, &channel.workspace_id, &channel.id, customer, name)
                    .await?;
                leads.insert(customer.to_owned(), id.clone());
                id
            }
        };
        let lead = Lead {
            id: &lead_id,
            wa_id: customer,
            name,
        };
        if let Some((target, emoji)) = &m.reaction {
            apply_reaction(&mut tx, &lead, m, target, emoji, report).await?;
        } else {
            media_queued |=
                store_message(&mut tx, channel, &lead, m, from_business, report).await?;
        }
    }
    for s in &change.statuses {
        apply_status(&mut tx, s, report).await?;
    }
    state.db.commit(tx).await?;
    if media_queued {
        state.db.wake_jobs();
    }
    Ok(())
}

/// The customer a message is about.
struct Lead<'a> {
    id: &'a str,
    wa_id: &'a str,
    name: Option<&'a str>,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// The channel conversation of (channel, lead), made on first contact; `true` if made now.
async fn conversation(
    tx: &mut Tx,
    channel: &ChannelRow,
    lead_id: &str,
    title: &str,
) -> AppResult<(String, bool)> {
    let key = format!("{}:{lead_id}", channel.id);
    let now = now_ms();
    let made = sqlx::query(
        "INSERT INTO conversations (id, workspace_id, kind, title, last_seq, last_activity_at, created_at, updated_at, \
         channel_id, lead_id, channel_key, inbox_status) VALUES ($1, $2, 'channel', $3, 0, $4, $4, $4, $5, $6, $7, 'open') \
         ON CONFLICT (channel_key) WHERE channel_key IS NOT NULL DO NOTHING",
    )
    .bind(new_id())
    .bind(&channel.workspace_id)
    .bind(title)
    .bind(now)
    .bind(&channel.id)
    .bind(lead_id)
    .bind(&key)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    let id: String = sqlx::query_scalar("SELECT id FROM conversations WHERE channel_key = $1")
        .bind(&key)
        .fetch_one(&mut **tx)
        .await?;
    if made {
        // The workspace's agents are its members (they see it, its history and its events).
        sqlx::query(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_seq) \
             SELECT $1, user_id, 'member', $2, 0 FROM memberships \
             WHERE workspace_id = $3 AND role IN ('owner', 'admin', 'agent') ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(now)
        .bind(&channel.workspace_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok((id, made))
}

/// Our message type and payload for an inbound message.
fn shape(m: &Inbound) -> (&'static str, Option<serde_json::Value>) {
    let p = &m.payload;
    match m.kind.as_str() {
        "text" => ("text", p.get("referral").map(|r| json!({ "referral": r }))),
        "image" => ("image", Some(p.clone())),
        "video" => ("video", Some(p.clone())),
        "document" => ("document", Some(p.clone())),
        "sticker" => ("sticker", Some(p.clone())),
        "audio" if m.media.as_ref().is_some_and(|x| x.voice) => ("voice", Some(p.clone())),
        "audio" => ("audio", Some(p.clone())),
        "location" => (
            "location",
            Some(json!({
                "latitude": p.get("latitude"), "longitude": p.get("longitude"),
                "name": p.get("name"), "address": p.get("address"),
            })),
        ),
        "contacts" => {
            // The first card in our contact shape, every card as received.
            let cards = p.get("value").cloned().unwrap_or_else(|| p.clone());
            let first = cards
                .as_array()
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or_default();
            let phones: Vec<serde_json::Value> = first
                .get("phones")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|ph| ph.get("phone").cloned()).collect())
                .unwrap_or_default();
            let emails: Vec<serde_json::Value> = first
                .get("emails")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|e| e.get("email").cloned()).collect())
                .unwrap_or_default();
            let name = first
                .get("name")
                .and_then(|n| n.get("formatted_name"))
                .cloned()
                .unwrap_or_default();
            (
                "contact",
                Some(json!({"name": name, "phones": phones, "emails": emails, "cards": cards})),
            )
        }
        "interactive" => ("interactive", Some(p.clone())),
        "button" => ("button", Some(p.clone())),
        "order" => ("order", Some(p.clone())),
        "system" => (
            "system",
            Some(json!({"event": "channel_system", "system": p})),
        ),
        other => {
            let mut payload = p.clone();
            payload["providerType"] = json!(other);
            ("unsupported", Some(payload))
        }
    }
}

/// Stores a message (unless its wamid is stored already); `true` when it queued a media fetch.
async fn store_message(
    tx: &mut Tx,
    channel: &ChannelRow,
    lead: &Lead<'_>,
    m: &Inbound,
    from_business: bool,
    report: &mut Report,
) -> AppResult<bool> {
    if message_by_external_id(tx, &m.id).await?.is_some() {
        report.duplicates += 1;
        return Ok(false);
    }
    let title = lead
        .name
        .map(str::to_owned)
        .unwrap_or_else(|| format!("+{}", lead.wa_id));
    let (conversation_id, made) = conversation(tx, channel, lead.id, &title).await?;
    let reply_to = match &m.reply_to {
        Some(wamid) => message_by_external_id(tx, wamid)
            .await?
            .map(|(id, _, _)| id),
        None => None,
    };
    let (kind, payload) = shape(m);
    let payload = payload.map(|p| p.to_string());
    let seq = crate::chats::store::next_seq(tx, &conversation_id).await?;
    // A unique violation here means another worker stored this wamid a moment ago: the error
    // rolls the change back and its job runs again, finding the duplicate.
    let row = messages::insert(
        tx,
        NewMessage {
            conversation_id: &conversation_id,
            seq,
            sender_type: if from_business { "user" } else { "lead" },
            sender_id: if from_business { None } else { Some(lead.id) },
            client_msg_id: None,
            kind,
            text: m.text.as_deref(),
            media_id: None,
            reply_to_id: reply_to.as_deref(),
            forwarded: m.forwarded,
            payload: payload.as_deref(),
            external_id: Some(&m.id),
            external_status: Some(if from_business { "sent" } else { "received" }),
            created_at: m.at,
        },
    )
    .await?;
    if from_business {
        sqlx::query("UPDATE conversations SET title = $1 WHERE id = $2")
            .bind(&title)
            .bind(&conversation_id)
            .execute(&mut **tx)
            .await?;
    } else {
        // A customer message opens (or reopens) the conversation and its service window.
        sqlx::query(
            "UPDATE conversations SET title = $1, inbox_status = 'open', \
             last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < $2 THEN $2 ELSE last_inbound_at END \
             WHERE id = $3",
        )
        .bind(&title)
        .bind(m.at.unwrap_or_else(now_ms))
        .bind(&conversation_id)
        .execute(&mut **tx)
        .await?;
    }
    append(
        tx,
        NewChange {
            conversation_id: &conversation_id,
            kind: kinds::MESSAGE_NEW,
            message_id: Some(&row.id),
            seq: Some(seq),
            ..Default::default()
        },
    )
    .await?;
    if made {
        append(
            tx,
            NewChange {
                conversation_id: &conversation_id,
                kind: kinds::CONVERSATION_UPDATED,
                ..Default::default()
            },
        )
        .await?;
    }
    if let Some(media) = &m.media {
        let job = json!({
            "messageId": row.id, "channelId": channel.id, "mediaId": media.id,
            "mimeType": media.mime_type, "fileName": media.file_name, "voice": media.voice,
        });
        crate::jobs::enqueue(tx, super::media::FETCH, &job.to_string()).await?;
    }
    report.messages += 1;
    Ok(m.media.is_some())
}

/// (id, conversation, seq) of the message with this wamid.
async fn message_by_external_id(
    tx: &mut Tx,
    wamid: &str,
) -> AppResult<Option<(String, String, i64)>> {
    Ok(
        sqlx::query_as("SELECT id, conversation_id, seq FROM messages WHERE external_id = $1")
            .bind(wamid)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Sets or (empty emoji) removes the customer's reaction on its target.
async fn apply_reaction(
    tx: &mut Tx,
    lead: &Lead<'_>,
    m: &Inbound,
    target: &str,
    emoji: &str,
    report: &mut Report,
) -> AppResult<()> {
    let Some((message_id, conversation_id, seq)) = message_by_external_id(tx, target).await? else {
        report
            .skipped
            .push(format!("{}: a reaction to unknown message {target}", m.id));
        return Ok(());
    };
    let lead_id = lead.id;
    let current: Option<String> = sqlx::query_scalar(
        "SELECT emoji FROM reactions WHERE message_id = $1 AND reactor_type = 'lead' AND reactor_id = $2",
    )
    .bind(&message_id)
    .bind(lead_id)
    .fetch_optional(&mut **tx)
    .await?;
    let wanted = (!emoji.is_empty()).then_some(emoji);
    if current.as_deref() == wanted {
        report.duplicates += 1;
        return Ok(());
    }
    match wanted {
        Some(e) => {
            sqlx::query(
                "INSERT INTO reactions (message_id, reactor_type, reactor_id, emoji, created_at) VALUES ($1, 'lead', $2, $3, $4) \
                 ON CONFLICT (message_id, reactor_type, reactor_id) DO UPDATE SET emoji = excluded.emoji, created_at = excluded.created_at",
            )
            .bind(&message_id)
            .bind(lead_id)
            .bind(e)
            .bind(m.at.unwrap_or_else(now_ms))
            .execute(&mut **tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND reactor_type = 'lead' AND reactor_id = $2")
                .bind(&message_id)
                .bind(lead_id)
                .execute(&mut **tx)
                .await?;
        }
    }
    append(
        tx,
        NewChange {
            conversation_id: &conversation_id,
            kind: kinds::MESSAGE_UPDATED,
            message_id: Some(&message_id),
            seq: Some(seq),
            ..Default::default()
        },
    )
    .await?;
    report.reactions += 1;
    Ok(())
}

/// `sent` < `delivered` < `read`; `failed` ends the message; anything else is history only.
fn status_rank(s: &str) -> Option<u8> {
    match s {
        "pending" => Some(0),
        "sent" => Some(1),
        "delivered" => Some(2),
        "read" => Some(3),
        "failed" => Some(4),
        _ => None,
    }
}

fn static_status(s: &str) -> Option<&'static str> {
    match s {
        "sent" => Some("sent"),
        "delivered" => Some("delivered"),
        "read" => Some("read"),
        "failed" => Some("failed"),
        _ => None,
    }
}

async fn apply_status(tx: &mut Tx, s: &StatusUpdate, report: &mut Report) -> AppResult<()> {
    let target = message_by_external_id(tx, &s.id).await?;
    let recorded = sqlx::query(
        "INSERT INTO message_statuses (id, external_id, message_id, status, at, raw, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (external_id, status, at) DO NOTHING",
    )
    .bind(new_id())
    .bind(&s.id)
    .bind(target.as_ref().map(|t| t.0.as_str()))
    .bind(&s.status)
    .bind(s.at.unwrap_or(0))
    .bind(s.raw.to_string())
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !recorded {
        report.duplicate_statuses += 1;
        return Ok(());
    }
    let Some((message_id, conversation_id, seq)) = target else {
        report.unknown_statuses += 1;
        return Ok(());
    };
    let lead_id: Option<String> =
        sqlx::query_scalar("SELECT c.lead_id FROM conversations c WHERE c.id = $1")
            .bind(&conversation_id)
            .fetch_one(&mut **tx)
            .await?;
    // Forward only, decided by the UPDATE itself: two workers applying two statuses of one
    // message at once cannot both read the old status and the later one win. (On PostgreSQL
    // the second waits for the first's row lock and re-checks the condition on its result.)
    // Statuses are about what the business sent; one naming a customer's message moves nothing.
    let moved = match status_rank(&s.status) {
        None => false,
        Some(rank) => {
            let error = s
                .raw
                .get("errors")
                .and_then(|e| e.get(0))
                .map(|e| e.to_string());
            sqlx::query(
                "UPDATE messages SET external_status = $1, external_error = COALESCE($2, external_error) \
                 WHERE id = $3 AND sender_type <> 'lead' AND COALESCE(external_status, '') <> 'failed' \
                 AND ($1 = 'failed' OR (CASE COALESCE(external_status, '') \
                      WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 0 END) < $4)",
            )
            .bind(&s.status)
            .bind(error)
            .bind(&message_id)
            .bind(i64::from(rank))
            .execute(&mut **tx)
            .await?
            .rows_affected()
                == 1
        }
    };
    if moved {
        status_changed(
            tx,
            &conversation_id,
            &message_id,
            seq,
            lead_id.as_deref(),
            static_status(&s.status),
        )
        .await?;
    }
    report.statuses += 1;
    Ok(())
}

/// A channel message's provider status moved: a `message:status` (the customer as the one who
/// received or read it) and a `message:updated` with the message as it is now.
pub async fn status_changed(
    tx: &mut Tx,
    conversation_id: &str,
    message_id: &str,
    seq: i64,
    lead_id: Option<&str>,
    status: Option<&'static str>,
) -> AppResult<()> {
    if status.is_some() {
        append(
            tx,
            NewChange {
                conversation_id,
                kind: kinds::MESSAGE_STATUS,
                seq: Some(seq),
                actor_id: lead_id,
                status,
                ..Default::default()
            },
        )
        .await?;
    }
    append(
        tx,
        NewChange {
            conversation_id,
            kind: kinds::MESSAGE_UPDATED,
            message_id: Some(message_id),
            seq: Some(seq),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
