//! What a message write puts in its transaction: the row with its seq, its change-log rows,
//! the writer's receipt marks and, to a WhatsApp customer, the send job. Side by side, so the
//! two cannot drift: the one-row write of a checked send (and system messages), and the plan of
//! a batch of checked sends, which `pipeline.rs` executes on either engine.

use std::collections::HashMap;

use super::model::*;
use super::store::{self, NewMessage};
use super::views::{one_view, original};
use crate::changes::{self, kinds, NewChange};
use crate::conversations::access::Sendable;
use crate::conversations::facts;
use crate::conversations::model::{ConversationRow, Kind, MemberRow, RequestState};
use crate::conversations::store as conversations;
use crate::db::{is_unique_violation, new_id, now_ms, Tenant, Tx};
use crate::error::{AppError, AppResult};

/// Writes a system message (group events) and its change. Like sending, it moves the marks of
/// the member whose action it records, so nobody has their own action unread.
pub async fn insert_system(
    tx: &mut Tx,
    conversation_id: &str,
    actor: &str,
    payload: &serde_json::Value,
) -> AppResult<MessageRow> {
    insert_record(
        tx,
        conversation_id,
        None,
        actor,
        MessageType::System,
        payload,
    )
    .await
}

/// Writes the `call` message that records a call when it ends, sent by the caller (the
/// callee has a missed call unread).
pub async fn insert_call(
    tx: &mut Tx,
    conversation_id: &str,
    caller: &str,
    payload: &serde_json::Value,
) -> AppResult<MessageRow> {
    insert_record(
        tx,
        conversation_id,
        Some(caller),
        caller,
        MessageType::Call,
        payload,
    )
    .await
}

/// A message the workspace's automations send (its sender is the system), in the caller's
/// transaction: checked like an agent's send into a channel conversation (an approved
/// template, or any message inside the 24-hour window; `conversation` read under its lock),
/// stored with its change, and, to a WhatsApp customer, its send job queued.
pub async fn insert_automated(
    tx: &mut Tx,
    t: Tenant<'_>,
    conversation: &ConversationRow,
    content: Content,
) -> AppResult<MessageRow> {
    let channel = conversation.kind() == Kind::Channel;
    let out = Outgoing {
        client_msg_id: String::new(),
        content,
        reply_to_id: None,
        forwarded: false,
    };
    let out = if channel {
        super::channel::check(t, conversation, out).await?
    } else if out.content.kind == MessageType::Template {
        return Err(AppError::invalid_field(
            "type",
            "templates go to WhatsApp customers: only in channel conversations",
        ));
    } else {
        out
    };
    insert_system_send(tx, conversation, &out.content, now_ms()).await
}

/// Writes a message from the system whose content is checked already (an automation's after
/// [`insert_automated`]'s checks, a campaign's template checked once for all its recipients),
/// with its change, and to a WhatsApp customer its send job, due at `send_at`.
pub async fn insert_system_send(
    tx: &mut Tx,
    conversation: &ConversationRow,
    content: &Content,
    send_at: i64,
) -> AppResult<MessageRow> {
    let channel = conversation.kind() == Kind::Channel;
    let seq = conversations::next_seq(tx, &conversation.id).await?;
    let row = store::insert(
        tx,
        NewMessage {
            conversation_id: &conversation.id,
            seq,
            sender_type: "system",
            sender_id: None,
            client_msg_id: None,
            kind: content.kind.as_str(),
            text: content.text.as_deref(),
            media_id: None,
            reply_to_id: None,
            forwarded: false,
            payload: content.payload.as_deref(),
            external_id: None,
            external_status: channel.then_some("pending"),
            created_at: None,
        },
    )
    .await?;
    changes::message_new(tx, &conversation.id, &row.id, seq).await?;
    if channel {
        super::channel::queue_send_at(tx, &row.id, send_at).await?;
    }
    if matches!(conversation.kind(), Kind::Channel | Kind::Support) {
        let writer = facts::Writer::Automated;
        facts::wrote(tx, &conversation.id, writer, row.created_at, 1).await?;
    }
    Ok(row)
}

/// A message that records an event rather than a send: sent by `sender` (a user), or by the
/// system when `None`; `actor`'s marks move to it.
async fn insert_record(
    tx: &mut Tx,
    conversation_id: &str,
    sender: Option<&str>,
    actor: &str,
    kind: MessageType,
    payload: &serde_json::Value,
) -> AppResult<MessageRow> {
    let seq = conversations::next_seq(tx, conversation_id).await?;
    let text = payload.to_string();
    let row = store::insert(
        tx,
        NewMessage {
            conversation_id,
            seq,
            sender_type: if sender.is_some() { "user" } else { "system" },
            sender_id: sender,
            client_msg_id: None,
            kind: kind.as_str(),
            text: None,
            media_id: None,
            reply_to_id: None,
            forwarded: false,
            payload: Some(&text),
            external_id: None,
            external_status: None,
            created_at: None,
        },
    )
    .await?;
    changes::message_new(tx, conversation_id, &row.id, seq).await?;
    if conversations::find_member_in_tx(tx, conversation_id, actor)
        .await?
        .is_some_and(|m| m.is_current())
    {
        store::advance_receipts(tx, conversation_id, actor, seq, true).await?;
    }
    Ok(row)
}

/// The write of one checked send.
pub async fn write_one(
    t: Tenant<'_>,
    me: &str,
    (conversation, member): (&ConversationRow, &MemberRow),
    out: Outgoing,
) -> AppResult<(MessageView, bool)> {
    let db = t.db();
    let conversation_id = conversation.id.as_str();
    let mut tx = db.begin().await?;
    let seq = conversations::next_seq(&mut tx, conversation_id).await?;
    let inserted = store::insert(
        &mut tx,
        NewMessage {
            conversation_id,
            seq,
            sender_type: "user",
            sender_id: Some(me),
            client_msg_id: Some(&out.client_msg_id),
            kind: out.content.kind.as_str(),
            text: out.content.text.as_deref(),
            media_id: out.content.media_id.as_deref(),
            reply_to_id: out.reply_to_id.as_deref(),
            forwarded: out.forwarded,
            payload: out.content.payload.as_deref(),
            external_id: None,
            external_status: (conversation.kind() == Kind::Channel).then_some("pending"),
            created_at: None,
        },
    )
    .await;
    let row = match inserted {
        Ok(row) => row,
        Err(e) if is_unique_violation(&e) => {
            // A concurrent retry of the same clientMsgId got there first: its seq is the only
            // one, ours is rolled back with this transaction. The original is answered once
            // it is durable.
            drop(tx);
            db.settle_writes().await?;
            let existing = store::find_by_client_id(db, me, &out.client_msg_id)
                .await?
                .ok_or_else(|| AppError::internal(e))?;
            return original(db, existing, conversation_id).await;
        }
        Err(e) => return Err(e.into()),
    };
    changes::message_new(&mut tx, conversation_id, &row.id, seq).await?;
    if conversation.kind() == Kind::Direct && seq == 1 {
        // The recipient learns of the conversation with its first message.
        changes::conversation_updated(&mut tx, conversation_id, None).await?;
    }
    // Sending reads everything before it; others learn of it only when that skipped messages.
    let (_, read_moved) = store::advance_receipts(&mut tx, conversation_id, me, seq, true).await?;
    if read_moved && member.read_seq < seq - 1 {
        changes::message_status(&mut tx, conversation_id, Some(me), "read", seq).await?;
    }
    if member.request_state() != RequestState::Accepted {
        // Answering a request accepts it.
        conversations::set_request_state(&mut tx, conversation_id, me, RequestState::Accepted)
            .await?;
        changes::conversation_updated(&mut tx, conversation_id, Some(me)).await?;
    }
    let channel = conversation.kind() == Kind::Channel;
    if channel {
        super::channel::queue_send(&mut tx, &row.id).await?;
    }
    let customer = conversation.is_customer(me);
    if customer {
        conversations::customer_wrote(&mut tx, &conversation.id, row.created_at, 1).await?;
    } else if matches!(conversation.kind(), Kind::Channel | Kind::Support) {
        let writer = facts::Writer::Agent(me);
        facts::wrote(&mut tx, &conversation.id, writer, row.created_at, 1).await?;
    }
    t.db().commit(tx).await?;
    if channel || customer {
        t.db().wake_jobs();
    }
    Ok((one_view(db, row).await?, true))
}

/// A checked send, waiting to be written.
#[derive(Clone)]
pub struct Job {
    pub workspace_id: String,
    pub me: String,
    pub conversation_id: String,
    pub out: Outgoing,
}

/// A send the batch writes, with what its check found.
pub(super) type Checked<'j> = (&'j Job, Sendable);

/// Each conversation of the batch with its number of new messages, in order of first use.
pub(super) fn counts<'j>(jobs: &[Checked<'j>]) -> Vec<(&'j str, i64)> {
    let mut counts: Vec<(&str, i64)> = Vec::new();
    for (j, _) in jobs {
        match counts.iter_mut().find(|(c, _)| *c == j.conversation_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((&j.conversation_id, 1)),
        }
    }
    counts
}

/// What a batch of new messages writes, the same on both engines.
pub(super) struct Plan<'j> {
    /// The messages, in job order.
    pub(super) rows: Vec<MessageRow>,
    /// The senders' new marks: (conversation, sender, first seq, last seq of theirs).
    pub(super) marks: Vec<(&'j str, &'j str, i64, i64)>,
    /// Receipt history: (conversation, user, kind, up to seq) where a sender's marks pass over
    /// messages of others.
    pub(super) moves: Vec<(&'j str, &'j str, &'static str, i64)>,
}

impl<'j> Plan<'j> {
    /// `last`: each conversation's last seq after the batch's messages were counted in.
    pub(super) fn new(
        now: i64,
        jobs: &[Checked<'j>],
        counts: &[(&str, i64)],
        last: &HashMap<String, i64>,
    ) -> AppResult<Plan<'j>> {
        let mut next: HashMap<&str, i64> = HashMap::new();
        for (c, n) in counts {
            let top = *last
                .get(*c)
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("conversation vanished")))?;
            next.insert(c, top - n + 1);
        }
        let rows: Vec<MessageRow> = jobs
            .iter()
            .map(|(j, _)| {
                let s = next.get_mut(j.conversation_id.as_str()).expect("counted");
                *s += 1;
                MessageRow {
                    external_id: None,
                    external_status: None,
                    external_error: None,
                    id: new_id(),
                    conversation_id: j.conversation_id.clone(),
                    seq: *s - 1,
                    sender_type: "user".to_owned(),
                    sender_id: Some(j.me.clone()),
                    client_msg_id: Some(j.out.client_msg_id.clone()),
                    kind: j.out.content.kind.as_str().to_owned(),
                    text: j.out.content.text.clone(),
                    media_id: j.out.content.media_id.clone(),
                    reply_to_id: j.out.reply_to_id.clone(),
                    forwarded: j.out.forwarded as i64,
                    payload: j.out.content.payload.clone(),
                    edited_at: None,
                    deleted_at: None,
                    created_at: now,
                }
            })
            .collect();

        let mut marks: Vec<(&str, &str, i64, i64)> = Vec::new();
        for ((j, _), row) in jobs.iter().zip(&rows) {
            match marks
                .iter_mut()
                .find(|(c, u, _, _)| *c == j.conversation_id && *u == j.me)
            {
                Some(m) => m.3 = row.seq,
                None => marks.push((&j.conversation_id, &j.me, row.seq, row.seq)),
            }
        }
        // Sending delivers and reads everything up to the sender's own message. Receipt history
        // (when each member got and read each message) only changes where the sender's marks
        // pass over messages of others; moving over their own messages changes no receipt
        // anyone can ask for.
        let mut moves = Vec::new();
        for (c, u, first, last) in &marks {
            let Some((_, checked)) = jobs
                .iter()
                .find(|(j, _)| j.conversation_id == *c && j.me == *u)
            else {
                continue;
            };
            if checked.delivered_seq < first - 1 {
                moves.push((*c, *u, "delivered", *last));
            }
            if checked.read_seq < first - 1 {
                moves.push((*c, *u, "read", *last));
            }
        }
        Ok(Plan { rows, marks, moves })
    }

    /// The batch's changes, in job order (so per conversation in seq order): message:new, the
    /// first message of a direct conversation also tells the recipient of the conversation,
    /// and a receipt change where sending read messages the sender had not read.
    pub(super) fn changes<'p>(&'p self, jobs: &[Checked<'p>]) -> Vec<NewChange<'p>> {
        let mut changes = Vec::new();
        for ((j, checked), row) in jobs.iter().zip(&self.rows) {
            let (conversation, seq) = (j.conversation_id.as_str(), row.seq);
            changes.push(NewChange::message(
                kinds::MESSAGE_NEW,
                conversation,
                &row.id,
                seq,
            ));
            if checked.direct && row.seq == 1 {
                changes.push(NewChange::conversation(conversation, None));
            }
        }
        for (c, u, _, last) in &self.marks {
            if self
                .moves
                .iter()
                .any(|m| m.0 == *c && m.1 == *u && m.2 == "read")
            {
                changes.push(NewChange::status(c, Some(u), "read", *last));
            }
        }
        changes
    }
}
