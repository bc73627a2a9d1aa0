//! The message rules, shared by the HTTP routes, the socket gateway and the demo: one code
//! path for checking sends, editing, deleting, reacting and receipts. What a send writes is in
//! `write.rs` (one by one) and `pipeline.rs` (batched); views are built in `views.rs`.

use super::model::*;
use super::pipeline::{Outcome, Pipeline};
use super::store::{self, Direction};
use super::views::{as_seen_by, one_view, original, views_in};
use super::write::write_one;
use crate::changes;
use crate::conversations::access::{access, Access};
use crate::conversations::desk::TeamFace;
use crate::conversations::model::{Kind, RequestState};
use crate::conversations::store as conversations;
use crate::db::{now_ms, Db, Tenant, Timestamp};
use crate::error::{AppError, AppResult, Code};

/// Checks that `message_id` is a message of the conversation within the member's window.
async fn visible_in(db: &Db, a: &Access, message_id: &str) -> AppResult<Option<MessageRow>> {
    let Some(m) = store::find(db, message_id).await? else {
        return Ok(None);
    };
    let visible = m.conversation_id == a.conversation.id
        && m.seq > a.me.joined_seq
        && m.seq <= a.me.visible_until(a.conversation.last_seq);
    Ok(visible.then_some(m))
}

/// Sends a message: durable when this returns. `false` with a retried `clientMsgId`: the
/// original message, nothing new written.
///
/// The common case (a member who accepted the conversation) is written in batches with other
/// sends (`pipeline.rs`); answering a message request goes one by one.
pub async fn send(
    t: Tenant<'_>,
    sends: &Pipeline,
    me: &str,
    conversation_id: &str,
    out: Outgoing,
) -> AppResult<(MessageView, bool)> {
    send_queued(t, sends, me, conversation_id, out)
        .await?
        .answer(t.db())
        .await
}

/// A send that passed its checks and is queued (or already done).
pub enum Queued {
    Done(Box<(MessageView, bool)>),
    Waiting(super::pipeline::Answer),
}

impl Queued {
    /// The stored message, once durable. A send whose batch failed as a whole is sent again
    /// alone, through every check, which knows how to answer it (a concurrent retry, say).
    pub async fn answer(self, db: &Db) -> AppResult<(MessageView, bool)> {
        let rx = match self {
            Queued::Done(answer) => return Ok(*answer),
            Queued::Waiting(rx) => rx,
        };
        let outcome = rx
            .await
            .map_err(|_| AppError::unavailable(anyhow::anyhow!("the send queue stopped")))?;
        match outcome {
            Outcome::Written(answer) => answer,
            // Boxed: every send in flight waits in this future, and the rare path's state
            // (every check and the one-row write) inline made each ~10 KiB larger (P1's RSS
            // rose by 35 MiB with 4,000 sends in flight).
            Outcome::RetryAlone(job) => {
                let t = Tenant::new(db, &job.workspace_id);
                Box::pin(send_alone(t, &job.me, &job.conversation_id, job.out)).await
            }
        }
    }
}

/// The first half of [`send`]: checks the send and queues it. Sends queued in some order are
/// written (and get their seqs) in that order, so a device may queue its next message before
/// the previous one is durable and still keep its order.
///
/// Every batched send is checked again by its batch, in the batch's own transaction, so that
/// nothing (a removal, a block) comes between the check and the write; the common send — no
/// media and no reply to check — is checked only there, and costs no read of its own. The
/// batch hands back what it does not write, to [`send_alone`].
pub async fn send_queued(
    t: Tenant<'_>,
    sends: &Pipeline,
    me: &str,
    conversation_id: &str,
    out: Outgoing,
) -> AppResult<Queued> {
    if out.is_plain() {
        let rx = sends.enqueue(job(t, me, conversation_id, out)).await?;
        return Ok(Queued::Waiting(rx));
    }
    // Retries are found by the batch itself, with one query for all of its sends.
    let a = match prepare(t, me, conversation_id, &out, false).await? {
        Prepared::Original(answer) => return Ok(Queued::Done(Box::new(answer))),
        Prepared::Ready(a) => a,
    };
    if a.batchable() {
        let rx = sends.enqueue(job(t, me, conversation_id, out)).await?;
        return Ok(Queued::Waiting(rx));
    }
    // A retry answers the original (even if a channel's window has closed since).
    let answer = match store::find_by_client_id(t.db(), me, &out.client_msg_id).await? {
        Some(existing) => {
            let (view, created) = original(t.db(), existing, conversation_id).await?;
            (seen_by(t.db(), &a, me, view).await?, created)
        }
        None => write_alone(t, &a, me, out).await?,
    };
    Ok(Queued::Done(Box::new(answer)))
}

fn job(t: Tenant<'_>, me: &str, conversation_id: &str, out: Outgoing) -> super::pipeline::Job {
    super::pipeline::Job {
        workspace_id: t.workspace_id().to_owned(),
        me: me.to_owned(),
        conversation_id: conversation_id.to_owned(),
        out,
    }
}

/// Sends one message in a transaction of its own, through every check: the batch's refusals
/// and the sends of a batch that failed as a whole.
async fn send_alone(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    out: Outgoing,
) -> AppResult<(MessageView, bool)> {
    match prepare(t, me, conversation_id, &out, true).await? {
        Prepared::Original(answer) => Ok(answer),
        Prepared::Ready(a) => write_alone(t, &a, me, out).await,
    }
}

/// A checked send the batch does not write. To a customer on WhatsApp: checked against the
/// window and templates, stored `pending` with its send job. Requests, and the support desk
/// (the customer's message may reopen the conversation, an agent's answers the customer's
/// wait: both keep the analytics' facts), go alone too.
async fn write_alone(
    t: Tenant<'_>,
    a: &Access,
    me: &str,
    out: Outgoing,
) -> AppResult<(MessageView, bool)> {
    let out = if a.conversation.kind() == Kind::Channel {
        super::channel::check(t, &a.conversation, out).await?
    } else {
        out
    };
    let (view, created) = write_one(t, me, (&a.conversation, &a.me), out).await?;
    Ok((seen_by(t.db(), a, me, view).await?, created))
}

enum Prepared {
    /// A retried clientMsgId: the original, as the sender sees it.
    Original((MessageView, bool)),
    /// Checked; ready to write.
    Ready(Access),
}

/// Every check of a send, before anything is written; `retry`: also look for an earlier send
/// of this clientMsgId.
async fn prepare(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    out: &Outgoing,
    retry: bool,
) -> AppResult<Prepared> {
    let db = t.db();
    let a = access(t, conversation_id, me, false).await?;
    if retry {
        if let Some(existing) = store::find_by_client_id(db, me, &out.client_msg_id).await? {
            let (view, created) = original(db, existing, conversation_id).await?;
            let view = seen_by(db, &a, me, view).await?;
            return Ok(Prepared::Original((view, created)));
        }
    }
    let channel_only = matches!(
        out.content.kind,
        MessageType::Template | MessageType::Interactive
    );
    if channel_only && a.conversation.kind() != Kind::Channel {
        return Err(AppError::invalid_field(
            "type",
            format!(
                "{} messages go to WhatsApp customers: only in channel conversations",
                out.content.kind.as_str()
            ),
        ));
    }
    if let Some(peer) = &a.peer {
        if RequestState::from_db(&peer.request_state) == RequestState::Declined {
            return Err(AppError::new(
                Code::RequestDeclined,
                "the recipient declined this conversation",
            ));
        }
        if peer.blocked {
            return Err(AppError::new(Code::Blocked, "you cannot message this user"));
        }
    }
    if let (Some(media_id), Some(kind)) = (&out.content.media_id, out.content.kind.media_kind()) {
        crate::media::usable_in_message(t, me, media_id, kind).await?;
    }
    if let Some(reply) = &out.reply_to_id {
        if visible_in(db, &a, reply).await?.is_none() {
            return Err(AppError::invalid_field(
                "replyToId",
                "no such message in this conversation",
            ));
        }
    }
    Ok(Prepared::Ready(a))
}

/// A page of history as the member may see it.
pub async fn history(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    dir: Direction,
    limit: i64,
) -> AppResult<(Vec<MessageView>, bool)> {
    let a = access(t, conversation_id, me, true).await?;
    let to = a.me.visible_until(a.conversation.last_seq);
    let mut rows = store::page(
        t.db(),
        conversation_id,
        me,
        a.me.joined_seq + 1,
        to,
        &dir,
        limit + 1,
    )
    .await?;
    let more = rows.len() as i64 > limit;
    if more {
        match dir {
            Direction::After(_) => rows.truncate(limit as usize),
            _ => {
                rows.remove(0);
            }
        }
    }
    let views = views_in(t.db(), conversation_id, rows).await?;
    Ok((as_seen_by(t.db(), &a.conversation, me, views).await?, more))
}

/// One message as the member sees it (the support desk's customer: the team as one party).
async fn seen_by(db: &Db, a: &Access, me: &str, view: MessageView) -> AppResult<MessageView> {
    let mut seen = as_seen_by(db, &a.conversation, me, vec![view]).await?;
    Ok(seen.remove(0))
}

/// The message and the caller's access to its conversation; 404 unless a current member
/// (or, with `history`, a former one within their window).
async fn message_access(
    t: Tenant<'_>,
    me: &str,
    message_id: &str,
    history: bool,
) -> AppResult<(MessageRow, Access)> {
    let m = store::find(t.db(), message_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    let a = access(t, &m.conversation_id, me, history).await?;
    if m.seq <= a.me.joined_seq || m.seq > a.me.visible_until(a.conversation.last_seq) {
        return Err(AppError::not_found());
    }
    Ok((m, a))
}

/// May the user read this message (a member now, or before they left)?
pub async fn can_see(t: Tenant<'_>, me: &str, message_id: &str) -> AppResult<bool> {
    match message_access(t, me, message_id, true).await {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Code::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn edit(
    t: Tenant<'_>,
    me: &str,
    message_id: &str,
    text: String,
) -> AppResult<MessageView> {
    let (m, a) = message_access(t, me, message_id, false).await?;
    if m.sender_id.as_deref() != Some(me) || m.sender_type != "user" {
        return Err(AppError::forbidden("only the sender may edit a message"));
    }
    if a.conversation.kind() == Kind::Channel {
        return Err(AppError::invalid_field(
            "text",
            "messages sent to WhatsApp cannot be edited",
        ));
    }
    if m.deleted_at.is_some() || m.message_type() != MessageType::Text {
        return Err(AppError::invalid_field(
            "text",
            "only text messages that are not deleted can be edited",
        ));
    }
    if now_ms() - m.created_at > EDIT_WINDOW_MS {
        return Err(AppError::new(
            Code::EditWindowClosed,
            "the 15 minutes to edit this message are over",
        ));
    }
    if m.text.as_deref() == Some(text.as_str()) {
        return seen_by(t.db(), &a, me, one_view(t.db(), m).await?).await;
    }
    let mut tx = t.db().begin().await?;
    store::edit_text(&mut tx, &m.id, m.text.as_deref().unwrap_or(""), &text).await?;
    changes::message_updated(&mut tx, &m.conversation_id, &m.id, m.seq).await?;
    let row = store::find_in_tx(&mut tx, &m.id)
        .await?
        .ok_or_else(AppError::not_found)?;
    t.db().commit(tx).await?;
    seen_by(t.db(), &a, me, one_view(t.db(), row).await?).await
}

/// Deletes for the caller only, or for everyone (the sender, or a group admin, within 48 h).
pub async fn delete(
    t: Tenant<'_>,
    me: &str,
    message_id: &str,
    for_everyone: bool,
) -> AppResult<()> {
    let (m, a) = message_access(t, me, message_id, !for_everyone).await?;
    if !for_everyone {
        return store::hide_for(t.db(), &m.id, me).await;
    }
    if m.deleted_at.is_some() {
        return Ok(());
    }
    let is_sender = m.sender_type == "user" && m.sender_id.as_deref() == Some(me);
    let is_group_admin = a.conversation.kind() == Kind::Group && a.me.role().manages();
    if !is_sender && !is_group_admin {
        return Err(AppError::forbidden(
            "only the sender or a group admin may delete this message for everyone",
        ));
    }
    if m.sender_type == "system" {
        return Err(AppError::forbidden("system messages cannot be deleted"));
    }
    if now_ms() - m.created_at > DELETE_WINDOW_MS {
        return Err(AppError::new(
            Code::DeleteWindowClosed,
            "the 48 hours to delete this message for everyone are over",
        ));
    }
    let mut tx = t.db().begin().await?;
    store::tombstone(&mut tx, &m.id).await?;
    changes::message_updated(&mut tx, &m.conversation_id, &m.id, m.seq).await?;
    t.db().commit(tx).await?;
    Ok(())
}

/// Sets (`Some`) or removes (`None`) the caller's reaction.
pub async fn react(
    t: Tenant<'_>,
    me: &str,
    message_id: &str,
    emoji: Option<String>,
) -> AppResult<MessageView> {
    let (m, a) = message_access(t, me, message_id, false).await?;
    if m.deleted_at.is_some() {
        return Err(AppError::invalid_field(
            "emoji",
            "deleted messages take no reactions",
        ));
    }
    let mut tx = t.db().begin().await?;
    let changed = match &emoji {
        Some(e) => store::set_reaction(&mut tx, &m.id, me, e).await?,
        None => store::remove_reaction(&mut tx, &m.id, me).await?,
    };
    // An agent's reaction to a customer's message goes to WhatsApp too.
    let to_customer = changed && a.conversation.kind() == Kind::Channel && m.external_id.is_some();
    if to_customer {
        super::channel::queue_reaction(&mut tx, &m.id, emoji.as_deref()).await?;
    }
    if changed {
        changes::message_updated(&mut tx, &m.conversation_id, &m.id, m.seq).await?;
    }
    t.db().commit(tx).await?;
    if to_customer {
        t.db().wake_jobs();
    }
    seen_by(t.db(), &a, me, one_view(t.db(), m).await?).await
}

/// The member's positions after a receipt.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Marks {
    pub conversation_id: String,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

/// Moves the caller's delivered (or read, which implies delivered) mark forward to `seq`.
pub async fn mark(
    t: Tenant<'_>,
    me: &str,
    conversation_id: &str,
    seq: i64,
    read: bool,
) -> AppResult<Marks> {
    let a = access(t, conversation_id, me, false).await?;
    if seq < 0 || seq > a.conversation.last_seq {
        return Err(AppError::invalid_field(
            "seq",
            "must be between 0 and the conversation's last seq",
        ));
    }
    let mut tx = t.db().begin().await?;
    let (delivered, read_moved) =
        store::advance_receipts(&mut tx, conversation_id, me, seq, read).await?;
    // While a message request is pending its reads stay private (the receipt floor ignores
    // them too); only delivery is told.
    let read_told = read_moved && a.me.request_state() != RequestState::Pending;
    if read_told || delivered {
        let status = if read_told { "read" } else { "delivered" };
        changes::message_status(&mut tx, conversation_id, Some(me), status, seq).await?;
    }
    // An agent reading a customer's conversation marks the customer's message read on WhatsApp.
    let tell_customer = read_moved && a.conversation.kind() == Kind::Channel;
    if tell_customer {
        super::channel::queue_read(&mut tx, conversation_id, seq).await?;
    }
    let after = conversations::find_member_in_tx(&mut tx, conversation_id, me)
        .await?
        .ok_or_else(AppError::not_found)?;
    t.db().commit(tx).await?;
    if tell_customer {
        t.db().wake_jobs();
    }
    Ok(Marks {
        conversation_id: conversation_id.to_owned(),
        delivered_seq: after.delivered_seq,
        read_seq: after.read_seq,
    })
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub user_id: String,
    pub delivered_at: Option<Timestamp>,
    pub read_at: Option<Timestamp>,
}

/// When each other current member got and read the message. The support desk's customer,
/// where the team is one party, sees one receipt for it: when its first agent got and read it.
pub async fn receipts(t: Tenant<'_>, me: &str, message_id: &str) -> AppResult<Vec<Receipt>> {
    let (m, a) = message_access(t, me, message_id, true).await?;
    let mut rows =
        store::receipts_for(t.db(), &m.conversation_id, m.seq, m.sender_id.as_deref()).await?;
    if let Some(face) = conversations::team_face(t.db(), &a.conversation, me).await? {
        rows = as_one_team(rows, &face, m.sender_id.as_deref());
    }
    Ok(rows
        .into_iter()
        .map(|(user_id, d, r)| Receipt {
            user_id,
            delivered_at: d.map(Timestamp),
            read_at: r.map(Timestamp),
        })
        .collect())
}

type ReceiptRow = (String, Option<i64>, Option<i64>);

/// Receipts with the team's folded into one, by the team's id, at its earliest times; none
/// for the team when the team sent the message.
fn as_one_team(rows: Vec<ReceiptRow>, face: &TeamFace, sender: Option<&str>) -> Vec<ReceiptRow> {
    let earliest = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (team, mut out): (Vec<ReceiptRow>, Vec<ReceiptRow>) =
        rows.into_iter().partition(|(u, _, _)| face.hides(u));
    let team_sent = sender.is_some_and(|s| face.hides(s));
    if !team.is_empty() && !team_sent {
        let folded = team.into_iter().fold((None, None), |(d, r), (_, d2, r2)| {
            (earliest(d, d2), earliest(r, r2))
        });
        out.push((face.team.clone(), folded.0, folded.1));
    }
    out
}

/// Forwards a message into conversations of the caller: a copy marked `forwarded`. With an
/// idempotency key, a retry returns the copies made the first time.
pub async fn forward(
    t: Tenant<'_>,
    sends: &Pipeline,
    me: &str,
    message_id: &str,
    targets: &[String],
    key: Option<&str>,
) -> AppResult<Vec<MessageView>> {
    let (m, _) = message_access(t, me, message_id, true).await?;
    if m.deleted_at.is_some() || matches!(m.message_type(), MessageType::System | MessageType::Call)
    {
        return Err(AppError::invalid_field(
            "id",
            "this message cannot be forwarded",
        ));
    }
    for target in targets {
        access(t, target, me, false).await?;
    }
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let client_msg_id = match key {
            Some(k) => format!("fwd:{k}:{target}"),
            None => format!("fwd:{}", crate::db::new_id()),
        };
        let content = Content {
            kind: m.message_type(),
            text: m.text.clone(),
            media_id: m.media_id.clone(),
            payload: m.payload.clone(),
        };
        let outgoing = Outgoing {
            client_msg_id,
            content,
            reply_to_id: None,
            forwarded: true,
        };
        out.push(send(t, sends, me, target, outgoing).await?.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_team_reads_once_at_its_first_agent() {
        let face = TeamFace {
            customer: "c".into(),
            team: "w".into(),
        };
        let rows = vec![
            ("a1".into(), Some(20), None),
            ("a2".into(), Some(10), Some(30)),
            ("a3".into(), None, None),
        ];
        assert_eq!(
            as_one_team(rows.clone(), &face, Some("c")),
            vec![("w".to_owned(), Some(10), Some(30))]
        );
        // The team's own message: the customer's receipt only.
        let mut with_customer = rows;
        with_customer.push(("c".into(), Some(5), None));
        assert_eq!(
            as_one_team(with_customer, &face, Some("a1")),
            vec![("c".to_owned(), Some(5), None)]
        );
    }
}
