//! Applying a webhook body: leads from `contacts[]`, customer messages into their channel
//! conversation, reactions onto their target, statuses onto the outbound message they name.
//! The same code serves the webhook's job and `palaver import-webhooks`.
//!
//! Idempotent: a message whose wamid is stored already is skipped (a unique index decides,
//! also between two workers), a status already in the history is skipped, and statuses only
//! move a message forward (`sent` < `delivered` < `read`; `failed` is final), so duplicates and
//! out-of-order arrivals end in the same state as one ordered delivery.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::json;

use super::channels::{self, ChannelRow};
use super::parse::{self, Change, Inbound, StatusUpdate};
use crate::app::AppState;
use crate::changes;
use crate::changes::kinds;
use crate::db::{new_id, now_ms, Tx};
use crate::error::{AppError, AppResult};
use crate::inbox::leads;

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

/// Applies a body in a transaction of its own. A malformed body is an error and changes
/// nothing.
pub async fn ingest(
    state: &AppState,
    body: &[u8],
    unknown: UnknownChannels<'_>,
) -> AppResult<Report> {
    let mut tx = state.db.begin().await?;
    let (report, media_queued) = ingest_in(state, &mut tx, body, unknown).await?;
    state.db.commit(tx).await?;
    if media_queued {
        state.db.wake_jobs();
    }
    Ok(report)
}

/// Applies a body inside `tx` (all of it or, if anything fails, nothing); `true` when a media
/// fetch was queued (wake the jobs after the commit).
pub async fn ingest_in(
    state: &AppState,
    tx: &mut Tx,
    body: &[u8],
    unknown: UnknownChannels<'_>,
) -> AppResult<(Report, bool)> {
    let changes =
        parse::parse(body).map_err(|m| AppError::new(crate::error::Code::BadRequest, m.0))?;
    let mut report = Report::default();
    let mut media_queued = false;
    for change in changes {
        let Some(channel) = channel_for(state, tx, &change, unknown, &mut report).await? else {
            continue;
        };
        media_queued |= apply_change(state, tx, &channel, &change, &mut report).await?;
    }
    Ok((report, media_queued))
}

async fn channel_for(
    state: &AppState,
    tx: &mut Tx,
    change: &Change,
    unknown: UnknownChannels<'_>,
    report: &mut Report,
) -> AppResult<Option<ChannelRow>> {
    let ids = [change.phone_number_id.clone()];
    if let Some(c) = channels::by_phone_number_ids(&state.db, &ids).await?.pop() {
        if let UnknownChannels::CreateIn(workspace_id) = unknown {
            if c.workspace_id != workspace_id {
                report.skipped.push(format!(
                    "phone_number_id {} belongs to another workspace's channel",
                    change.phone_number_id
                ));
                return Ok(None);
            }
        }
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
        send_rate: channels::DEFAULT_SEND_RATE,
        created_at: now,
        updated_at: now,
    };
    // (A concurrent import that made it first fails this one, which can simply be run again.)
    channels::insert(tx, &row).await?;
    report.channels_created += 1;
    Ok(Some(row))
}

/// Applies one change in `tx`; `true` when a media fetch was queued.
async fn apply_change(
    state: &AppState,
    tx: &mut Tx,
    channel: &ChannelRow,
    change: &Change,
    report: &mut Report,
) -> AppResult<bool> {
    let business = |from: &str| {
        from == channel.phone_number_id
            || change
                .display_phone_number
                .as_deref()
                .or(channel.display_phone_number.as_deref())
                .is_some_and(|d| digits(d) == digits(from))
    };
    // Whose conversation each message belongs to. Sample packs list the business's own
    // replies as messages from its number; the conversation is then the customer's in
    // `contacts[]`.
    let mut routed: Vec<(&Inbound, &str, bool)> = Vec::new();
    for m in &change.messages {
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
        routed.push((m, customer, from_business));
    }
    // Every customer of the change once (the last name given wins), in one statement: those
    // of `contacts[]` and those who wrote without being listed there.
    let mut customers: Vec<(&str, Option<&str>)> = Vec::new();
    for (wa_id, name) in &change.contacts {
        report.contacts += 1;
        match customers.iter_mut().find(|(w, _)| *w == wa_id.as_str()) {
            Some(c) => c.1 = name.as_deref().or(c.1),
            None => customers.push((wa_id, name.as_deref())),
        }
    }
    for (_, customer, _) in &routed {
        if !customers.iter().any(|(w, _)| w == customer) {
            customers.push((customer, None));
        }
    }
    let leads: HashMap<String, String> = leads::upsert_many(
        tx,
        state.db.slots(),
        &channel.workspace_id,
        &channel.id,
        &customers,
    )
    .await?
    .into_iter()
    .collect();
    let mut batch: Vec<Item> = Vec::new();
    let mut reactions: Vec<(String, &Inbound, &str, &str)> = Vec::new();
    for (m, customer, from_business) in routed {
        let lead_id = leads
            .get(customer)
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("lead {customer} not upserted")))?;
        let name = customers
            .iter()
            .find(|(w, _)| *w == customer)
            .and_then(|(_, n)| *n);
        match &m.reaction {
            Some((target, emoji)) => reactions.push((lead_id, m, target.as_str(), emoji.as_str())),
            None => batch.push(Item {
                lead_id,
                wa_id: customer,
                name,
                m,
                from_business,
            }),
        }
    }
    // The messages first, together, so that a reaction finds its target even in the same body.
    let media_queued = store_messages(tx, state.db.slots(), channel, &batch, report).await?;
    for (lead_id, m, target, emoji) in reactions {
        apply_reaction(tx, &channel.id, &lead_id, m, target, emoji, report).await?;
    }
    for s in &change.statuses {
        apply_status(tx, &channel.id, s, report).await?;
    }
    Ok(media_queued)
}

/// A customer's message (or the business's, in sample packs) to store.
struct Item<'a> {
    lead_id: String,
    wa_id: &'a str,
    name: Option<&'a str>,
    m: &'a Inbound,
    from_business: bool,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Our message type and payload for an inbound message.
fn shape(m: &Inbound) -> (&'static str, Option<serde_json::Value>) {
    let p = &m.payload;
    match m.kind.as_str() {
        // A flagged text (over-long, or not a string) keeps everything that arrived.
        "text" if p.get("flags").is_some() => ("text", Some(p.clone())),
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

/// Stores the messages of a change with a handful of statements whatever their number (each
/// statement is a round trip to the database's writer): the wamids already stored are skipped,
/// the customers' conversations are made where missing (the workspace's agents their members),
/// their seqs, titles, status and service window move in one UPDATE, then one INSERT each for
/// the messages and their changes. `true` when a media fetch was queued.
async fn store_messages(
    tx: &mut Tx,
    mut slots: crate::db::Slots,
    channel: &ChannelRow,
    items: &[Item<'_>],
    report: &mut Report,
) -> AppResult<bool> {
    let items = fresh(tx, &mut slots, channel, items, report).await?;
    if items.is_empty() {
        return Ok(false);
    }
    let now = now_ms();
    let convs = conversations_of(tx, &mut slots, channel, &items, now).await?;
    open_in_inbox(tx, &convs).await?;
    let next = advance(tx, &mut slots, &convs, now).await?;
    let replies = reply_targets(tx, &mut slots, channel, &items).await?;
    let rows = plan(channel, &items, &convs, next, replies);
    insert_messages(tx, &mut slots, &items, &rows, &convs, now).await?;
    let queued = queue_media(tx, channel, &items, &rows).await?;
    report.messages += rows.len() as u64;
    Ok(queued)
}

/// One conversation per customer (lead) of a change, in order of first appearance.
struct Conv {
    key: String,
    title: String,
    count: i64,
    /// Of `count`, the customer's (the others are the business's own, sent from its phone).
    inbound: i64,
    inbound_at: Option<i64>,
    id: String,
    made: bool,
}

/// A message of the change as it will be stored.
struct Row {
    id: String,
    conversation_id: String,
    seq: i64,
    kind: &'static str,
    payload: Option<String>,
    reply_to: Option<String>,
}

/// Step 1: the items not stored before in this channel, nor twice in this change.
async fn fresh<'i, 'a>(
    tx: &mut Tx,
    slots: &mut crate::db::Slots,
    channel: &ChannelRow,
    items: &'i [Item<'a>],
    report: &mut Report,
) -> AppResult<Vec<&'i Item<'a>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    slots.restart();
    let sql = format!(
        "SELECT m.external_id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
         WHERE c.channel_id = {} AND m.external_id IN ({})",
        slots.take(),
        slots.list(items.len())
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql)
        .persistent(false)
        .bind(&channel.id);
    for it in items {
        q = q.bind(&it.m.id);
    }
    let mut seen: HashSet<String> = q.fetch_all(&mut **tx).await?.into_iter().collect();
    Ok(items
        .iter()
        .filter(|it| {
            let new = seen.insert(it.m.id.clone());
            if !new {
                report.duplicates += 1;
            }
            new
        })
        .collect())
}

/// Step 2: the customers' conversations, made where missing (with the workspace's agents as
/// their members).
async fn conversations_of(
    tx: &mut Tx,
    slots: &mut crate::db::Slots,
    channel: &ChannelRow,
    items: &[&Item<'_>],
    now: i64,
) -> AppResult<Vec<Conv>> {
    let mut convs: Vec<Conv> = Vec::new();
    for it in items {
        let key = format!("{}:{}", channel.id, it.lead_id);
        let title = it
            .name
            .map(str::to_owned)
            .unwrap_or_else(|| format!("+{}", it.wa_id));
        let at = (!it.from_business).then(|| it.m.at.unwrap_or(now));
        match convs.iter_mut().find(|c| c.key == key) {
            Some(c) => {
                c.count += 1;
                c.inbound += i64::from(at.is_some());
                c.title = title;
                c.inbound_at = c.inbound_at.max(at);
            }
            None => convs.push(Conv {
                key,
                title,
                count: 1,
                inbound: i64::from(at.is_some()),
                inbound_at: at,
                id: new_id(),
                made: false,
            }),
        }
    }
    slots.restart();
    let mut sql = String::from(
        "INSERT INTO conversations (id, workspace_id, kind, title, last_seq, last_activity_at, created_at, \
         updated_at, channel_id, lead_id, channel_key, inbox_status, inbox_at) VALUES ",
    );
    for (i, _) in convs.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({}, {}, 'channel', {}, 0, {}, {}, {}, {}, {}, {}, 'open', {})",
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take(),
            slots.take()
        ));
    }
    sql.push_str(
        " ON CONFLICT (channel_key) WHERE channel_key IS NOT NULL DO NOTHING RETURNING id",
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql).persistent(false);
    for c in &convs {
        let lead_id = c.key.split_once(':').map(|(_, l)| l).unwrap_or_default();
        q = q
            .bind(&c.id)
            .bind(&channel.workspace_id)
            .bind(&c.title)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(&channel.id)
            .bind(lead_id)
            .bind(&c.key)
            .bind(now);
    }
    let made: HashSet<String> = q.fetch_all(&mut **tx).await?.into_iter().collect();
    slots.restart();
    let sql = format!(
        "SELECT channel_key, id FROM conversations WHERE channel_key IN ({})",
        slots.list(convs.len())
    );
    let mut q = sqlx::query_as::<_, (String, String)>(&sql).persistent(false);
    for c in &convs {
        q = q.bind(&c.key);
    }
    let ids: HashMap<String, String> = q.fetch_all(&mut **tx).await?.into_iter().collect();
    for c in &mut convs {
        c.made = made.contains(&c.id);
        c.id = ids
            .get(&c.key)
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("conversation vanished")))?;
    }
    // The workspace's agents are the members of a new channel conversation.
    for id in &made {
        crate::conversations::store::join_inbox(tx, id).await?;
    }
    Ok(convs)
}

/// Step 2b: a new conversation opens in the inbox; one the customer wrote to again reopens if
/// it was closed, pending or snoozed (each queues its auto-assignment).
async fn open_in_inbox(tx: &mut Tx, convs: &[Conv]) -> AppResult<()> {
    use crate::conversations::{facts, store};
    for c in convs {
        if c.made {
            let at = c.inbound_at.unwrap_or_else(now_ms);
            facts::status_moved(tx, &c.id, None, "open", at).await?;
        }
        if let Some(at) = c.inbound_at {
            // (A new conversation is open already: this only moves its times.)
            store::customer_wrote(tx, &c.id, at, c.inbound).await?;
        }
        if c.count > c.inbound {
            let from_phone = facts::Writer::Automated;
            facts::wrote(tx, &c.id, from_phone, now_ms(), c.count - c.inbound).await?;
        }
        if c.made {
            store::opened(tx, &c.id, false).await?;
        }
    }
    Ok(())
}

/// Step 3: seqs, titles, and for customer messages the open status and the service window, in
/// one UPDATE; the first seq of each conversation's new messages, by conversation key.
async fn advance(
    tx: &mut Tx,
    slots: &mut crate::db::Slots,
    convs: &[Conv],
    now: i64,
) -> AppResult<HashMap<String, i64>> {
    slots.restart();
    // Placeholders are taken (and bound) in the order they appear in the statement: SQLite's
    // `?` are numbered by position.
    let inbound: Vec<&Conv> = convs.iter().filter(|c| c.inbound_at.is_some()).collect();
    let mut seq_case = String::from("CASE id");
    for _ in convs {
        seq_case.push_str(&format!(
            " WHEN {} THEN CAST({} AS BIGINT)",
            slots.take(),
            slots.take()
        ));
    }
    let mut title_case = String::from("CASE id");
    for _ in convs {
        title_case.push_str(&format!(" WHEN {} THEN {}", slots.take(), slots.take()));
    }
    let mut window_case = String::from("CASE id");
    for _ in &inbound {
        let (a, b, d) = (slots.take(), slots.take(), slots.take());
        window_case.push_str(&format!(
            " WHEN {a} THEN CASE WHEN last_inbound_at IS NULL OR last_inbound_at < CAST({b} AS BIGINT) \
             THEN CAST({d} AS BIGINT) ELSE last_inbound_at END"
        ));
    }
    let window_expr = if inbound.is_empty() {
        "last_inbound_at".to_owned()
    } else {
        format!("{window_case} ELSE last_inbound_at END")
    };
    let open_list = if inbound.is_empty() {
        "NULL".to_owned()
    } else {
        slots.list(inbound.len())
    };
    let (activity, updated) = (slots.take(), slots.take());
    let sql = format!(
        "UPDATE conversations SET last_seq = last_seq + {seq_case} END, title = {title_case} END, \
         last_inbound_at = {window_expr}, \
         inbox_status = CASE WHEN id IN ({open_list}) THEN 'open' ELSE inbox_status END, \
         last_activity_at = {activity}, updated_at = {updated} WHERE id IN ({}) RETURNING id, last_seq",
        slots.list(convs.len())
    );
    let mut q = sqlx::query_as::<_, (String, i64)>(&sql).persistent(false);
    for c in convs {
        q = q.bind(&c.id).bind(c.count);
    }
    for c in convs {
        q = q.bind(&c.id).bind(&c.title);
    }
    for c in &inbound {
        let at = c.inbound_at.unwrap_or(now);
        q = q.bind(&c.id).bind(at).bind(at);
    }
    for c in &inbound {
        q = q.bind(&c.id);
    }
    q = q.bind(now).bind(now);
    for c in convs {
        q = q.bind(&c.id);
    }
    let last: HashMap<String, i64> = q.fetch_all(&mut **tx).await?.into_iter().collect();
    let mut next: HashMap<String, i64> = HashMap::new();
    for c in convs {
        let top = *last
            .get(&c.id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("conversation vanished")))?;
        next.insert(c.key.clone(), top - c.count + 1);
    }
    Ok(next)
}

/// Step 4: what the replies answer, this channel's stored messages (by wamid).
async fn reply_targets(
    tx: &mut Tx,
    slots: &mut crate::db::Slots,
    channel: &ChannelRow,
    items: &[&Item<'_>],
) -> AppResult<HashMap<String, String>> {
    let mut ids_by_wamid: HashMap<String, String> = HashMap::new();
    let wanted: Vec<&str> = items
        .iter()
        .filter_map(|it| it.m.reply_to.as_deref())
        .collect();
    if !wanted.is_empty() {
        slots.restart();
        let sql = format!(
            "SELECT m.external_id, m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE c.channel_id = {} AND m.external_id IN ({})",
            slots.take(),
            slots.list(wanted.len())
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql)
            .persistent(false)
            .bind(&channel.id);
        for w in &wanted {
            q = q.bind(*w);
        }
        ids_by_wamid.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(ids_by_wamid)
}

/// Step 5a: the rows, in order: seqs from `next`, replies to stored messages or to ones
/// earlier in this change.
fn plan(
    channel: &ChannelRow,
    items: &[&Item<'_>],
    convs: &[Conv],
    mut next: HashMap<String, i64>,
    mut ids_by_wamid: HashMap<String, String>,
) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::with_capacity(items.len());
    for it in items {
        let key = format!("{}:{}", channel.id, it.lead_id);
        let seq = next.get_mut(&key).expect("counted");
        let conv = convs.iter().find(|c| c.key == key).expect("made above");
        let (kind, payload) = shape(it.m);
        let id = new_id();
        let reply_to =
            it.m.reply_to
                .as_ref()
                .and_then(|w| ids_by_wamid.get(w).cloned());
        ids_by_wamid.insert(it.m.id.clone(), id.clone());
        rows.push(Row {
            id,
            conversation_id: conv.id.clone(),
            seq: *seq,
            kind,
            payload: payload.map(|p| p.to_string()),
            reply_to,
        });
        *seq += 1;
    }
    rows
}

/// Step 5b: the messages in one INSERT, their changes in another.
async fn insert_messages(
    tx: &mut Tx,
    slots: &mut crate::db::Slots,
    items: &[&Item<'_>],
    rows: &[Row],
    convs: &[Conv],
    now: i64,
) -> AppResult<()> {
    slots.restart();
    let mut sql = String::from(
        "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, type, text, \
         media_id, reply_to_id, forwarded, payload, created_at, external_id, external_status) VALUES ",
    );
    for i in 0..rows.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&slots.row(15));
    }
    // A unique violation here means another worker stored one of these wamids a moment ago:
    // the error rolls the change back and its job runs again, finding the duplicates.
    let mut q = sqlx::query(&sql).persistent(false);
    for (it, r) in items.iter().zip(rows) {
        q = q
            .bind(&r.id)
            .bind(&r.conversation_id)
            .bind(r.seq)
            .bind(if it.from_business { "user" } else { "lead" })
            .bind((!it.from_business).then_some(it.lead_id.as_str()))
            .bind(None::<String>)
            .bind(r.kind)
            .bind(it.m.text.as_deref())
            .bind(None::<String>)
            .bind(r.reply_to.as_deref())
            .bind(it.m.forwarded as i64)
            .bind(r.payload.as_deref())
            .bind(it.m.at.unwrap_or(now))
            .bind(&it.m.id)
            .bind(if it.from_business { "sent" } else { "received" });
    }
    q.execute(&mut **tx).await?;
    let mut appended: Vec<changes::NewChange> = rows
        .iter()
        .map(|r| changes::NewChange::message(kinds::MESSAGE_NEW, &r.conversation_id, &r.id, r.seq))
        .collect();
    // Agents learn of a new conversation with its first message.
    appended.extend(
        convs
            .iter()
            .filter(|c| c.made)
            .map(|c| changes::NewChange::conversation(&c.id, None)),
    );
    slots.restart();
    changes::append_many(tx, slots.clone(), &appended).await?;
    Ok(())
}

/// Step 6: media are fetched in the background; `true` if a fetch was queued.
async fn queue_media(
    tx: &mut Tx,
    channel: &ChannelRow,
    items: &[&Item<'_>],
    rows: &[Row],
) -> AppResult<bool> {
    let mut queued = false;
    for (it, r) in items.iter().zip(rows) {
        if let Some(media) = &it.m.media {
            let job = json!({
                "messageId": r.id, "channelId": channel.id, "mediaId": media.id,
                "mimeType": media.mime_type, "fileName": media.file_name, "voice": media.voice,
            });
            crate::jobs::enqueue(tx, super::media::FETCH, &job.to_string()).await?;
            queued = true;
        }
    }
    Ok(queued)
}

/// (id, conversation, seq) of the message with this wamid among the channel's conversations:
/// a wamid never reaches another channel's (another workspace's) messages.
async fn message_by_external_id(
    tx: &mut Tx,
    channel_id: &str,
    wamid: &str,
) -> AppResult<Option<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.conversation_id, m.seq FROM messages m \
         JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.external_id = $1 AND c.channel_id = $2",
    )
    .bind(wamid)
    .bind(channel_id)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Sets or (empty emoji) removes the customer's reaction on its target.
async fn apply_reaction(
    tx: &mut Tx,
    channel_id: &str,
    lead_id: &str,
    m: &Inbound,
    target: &str,
    emoji: &str,
    report: &mut Report,
) -> AppResult<()> {
    let Some((message_id, conversation_id, seq)) =
        message_by_external_id(tx, channel_id, target).await?
    else {
        report
            .skipped
            .push(format!("{}: a reaction to unknown message {target}", m.id));
        return Ok(());
    };
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
    changes::message_updated(tx, &conversation_id, &message_id, seq).await?;
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

async fn apply_status(
    tx: &mut Tx,
    channel_id: &str,
    s: &StatusUpdate,
    report: &mut Report,
) -> AppResult<()> {
    let target = message_by_external_id(tx, channel_id, &s.id).await?;
    let recorded = sqlx::query(
        "INSERT INTO message_statuses (id, channel_id, external_id, message_id, status, at, raw, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (channel_id, external_id, status, at) DO NOTHING",
    )
    .bind(new_id())
    .bind(channel_id)
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
    if let Some(status) = status {
        changes::message_status(tx, conversation_id, lead_id, status, seq).await?;
    }
    changes::message_updated(tx, conversation_id, message_id, seq).await?;
    Ok(())
}
