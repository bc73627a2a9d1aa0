//! What a message write puts in its transaction: the row with its seq, its change-log rows,
//! the writer's receipt marks and, to a WhatsApp customer, the send job. The one-row write of a
//! checked send and system messages live here; the batched write of many sends is planned in
//! `pipeline.rs` from the same rules.

use super::model::*;
use super::store::{self, NewMessage};
use super::views::{one_view, original};
use crate::changes;
use crate::chats::model::{ConversationRow, Kind, MemberRow, RequestState};
use crate::chats::store as chats;
use crate::db::{is_unique_violation, Tenant, Tx};
use crate::error::{AppError, AppResult};

/// Writes a system message (group events) and its change. Like sending, it moves the marks of
/// the member whose action it records, so nobody has their own action unread.
pub async fn insert_system(
    tx: &mut Tx,
    conversation_id: &str,
    actor: &str,
    payload: &serde_json::Value,
) -> AppResult<MessageRow> {
    let seq = chats::next_seq(tx, conversation_id).await?;
    let text = payload.to_string();
    let row = store::insert(
        tx,
        NewMessage {
            conversation_id,
            seq,
            sender_type: "system",
            sender_id: None,
            client_msg_id: None,
            kind: "system",
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
    if chats::find_member_in_tx(tx, conversation_id, actor)
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
    let seq = chats::next_seq(&mut tx, conversation_id).await?;
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
        chats::set_request_state(&mut tx, conversation_id, me, RequestState::Accepted).await?;
        changes::conversation_updated(&mut tx, conversation_id, Some(me)).await?;
    }
    let channel = conversation.kind() == Kind::Channel;
    if channel {
        crate::whatsapp::outbound::queue(&mut tx, &row.id).await?;
    }
    t.db().commit(tx).await?;
    if channel {
        t.db().wake_jobs();
    }
    Ok((one_view(db, row).await?, true))
}
