//! Batched sending: the write half of [`super::service::send`] for the common case (a member
//! who accepted the conversation sends into it), many messages per transaction.
//!
//! Sends that passed their checks queue here; one task takes whatever is queued (up to
//! [`MAX_BATCH`]) and writes it with a handful of statements for the whole batch: seqs for
//! every conversation in one UPDATE, the messages in one INSERT, their changes in one INSERT,
//! the senders' receipt marks in one UPDATE. The batch is one transaction (on SQLite, one
//! savepoint of the group commit), so each message is durable when its sender is answered,
//! in the same order and with the same changes as one by one. If the batch fails as a whole
//! (say, a concurrent retry of the same `clientMsgId` hit the unique index), every send of it
//! is retried alone through the one-by-one path, which knows how to answer each.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::model::{MessageRow, MessageView, MESSAGE_COLUMNS};
use super::service::Outgoing;
use crate::db::{new_id, now_ms, Db, Slots, Tenant, Tx};
use crate::error::{AppError, AppResult};
use crate::sync::kinds;
use crate::sync::store::NewChange;

/// Sends written by one transaction, at most (11 parameters each stay far below either
/// engine's limit).
const MAX_BATCH: usize = 256;
/// Sends waiting for the writer, at most; more wait for room.
const QUEUE: usize = 4096;

pub(crate) struct Job {
    pub workspace_id: String,
    pub me: String,
    pub conversation_id: String,
    pub direct: bool,
    /// The sender's marks when the checks ran (sending delivers and reads everything before).
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub out: Outgoing,
    pub reply: oneshot::Sender<AppResult<(MessageView, bool)>>,
}

/// The queue into the batching task.
#[derive(Clone)]
pub struct Pipeline(mpsc::Sender<Job>);

impl Pipeline {
    /// Starts the task; it ends when the last handle to the queue is gone.
    pub(crate) fn start(db: Db) -> Pipeline {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Pipeline(tx)
    }

    /// Queues a checked send (waiting while the queue is full); the receiver gets its outcome.
    pub(crate) async fn enqueue(&self, job: Job) -> AppResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(Job { reply, ..job })
            .await
            .map_err(|_| AppError::unavailable(anyhow::anyhow!("the send queue is closed")))?;
        Ok(answer)
    }
}

/// The outcome of a queued send, once its batch is written.
pub type Answer = oneshot::Receiver<AppResult<(MessageView, bool)>>;

async fn run(db: Db, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // recv_many stops at the end of the channel's internal block: take the rest as well.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let jobs = std::mem::take(&mut batch);
        metrics::histogram!("message_batch_size").record(jobs.len() as f64);
        match write(&db, &jobs).await {
            Ok(rows) => answer(&db, jobs, rows).await,
            Err(e) => {
                if jobs.len() > 1 {
                    tracing::debug!(error = %e, sends = jobs.len(), "a send batch failed; sending one by one");
                } else {
                    tracing::debug!(error = %e, "a batched send failed; retrying it alone");
                }
                for job in jobs {
                    let t = Tenant::new(&db, &job.workspace_id);
                    let result =
                        super::service::send_one(t, &job.me, &job.conversation_id, job.out).await;
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

/// Builds the views of the new rows (one query for the batch) and answers every sender.
async fn answer(db: &Db, jobs: Vec<Job>, written: Vec<Written>) {
    let mut new_rows = Vec::new();
    let mut pending = Vec::new();
    for (job, w) in jobs.into_iter().zip(written) {
        match w {
            Written::New(row) => {
                new_rows.push(row);
                pending.push((job, None));
            }
            Written::Existing(row) => pending.push((job, Some(row))),
        }
    }
    // New messages: nobody else has them yet, so their status is "sent".
    let mut views = match super::service::build_views(db, new_rows, &HashMap::new()).await {
        Ok(views) => Some(views.into_iter()),
        Err(e) => {
            tracing::warn!(error = %e, "building views of sent messages failed");
            None
        }
    };
    for (job, existing) in pending {
        let result = match existing {
            Some(row) => super::service::original(db, row, &job.conversation_id).await,
            None => match views.as_mut().and_then(Iterator::next) {
                Some(view) => Ok((view, true)),
                // Stored, but not answerable now: a retry with the same clientMsgId gets it.
                None => Err(AppError::unavailable(anyhow::anyhow!(
                    "the message was stored; retry to get it"
                ))),
            },
        };
        let _ = job.reply.send(result);
    }
}

/// What became of one send of a batch.
enum Written {
    New(MessageRow),
    /// A retry: the message its clientMsgId already named.
    Existing(MessageRow),
}

/// Writes the batch in one transaction; the outcomes come back in job order.
async fn write(db: &Db, jobs: &[Job]) -> AppResult<Vec<Written>> {
    // Two sends of one clientMsgId in one batch: the one-by-one path answers the second.
    let mut seen = std::collections::HashSet::new();
    if !jobs
        .iter()
        .all(|j| seen.insert((j.me.as_str(), j.out.client_msg_id.as_str())))
    {
        return Err(AppError::internal(anyhow::anyhow!(
            "a clientMsgId twice in one batch"
        )));
    }
    let now = now_ms();
    let mut tx = db.begin().await?;
    // Retries: earlier sends of these clientMsgIds (committed or earlier in this batch's group).
    let mut slots = db.slots();
    let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE ");
    for i in 0..jobs.len() {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!(
            "(msg.sender_id = {} AND msg.client_msg_id = {})",
            slots.take(),
            slots.take()
        ));
    }
    let mut q = sqlx::query_as::<_, MessageRow>(&sql).persistent(false);
    for j in jobs {
        q = q.bind(&j.me).bind(&j.out.client_msg_id);
    }
    let mut existing: HashMap<(String, String), MessageRow> = q
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter_map(|m| Some(((m.sender_id.clone()?, m.client_msg_id.clone()?), m)))
        .collect();
    let fresh: Vec<&Job> = jobs
        .iter()
        .filter(|j| !existing.contains_key(&(j.me.clone(), j.out.client_msg_id.clone())))
        .collect();
    let started = std::time::Instant::now();
    let mut inserted = if fresh.is_empty() {
        Vec::new()
    } else {
        insert_new(&mut tx, db.slots(), now, &fresh).await?
    }
    .into_iter();
    metrics::histogram!("message_batch_write_seconds").record(started.elapsed().as_secs_f64());
    db.commit(tx).await?;
    Ok(jobs
        .iter()
        .map(
            |j| match existing.remove(&(j.me.clone(), j.out.client_msg_id.clone())) {
                Some(m) => Written::Existing(m),
                None => Written::New(inserted.next().expect("one row per fresh send")),
            },
        )
        .collect())
}

/// Inserts the new messages with their changes and the senders' marks; rows in job order.
async fn insert_new(
    tx: &mut Tx,
    mut slots: Slots,
    now: i64,
    jobs: &[&Job],
) -> AppResult<Vec<MessageRow>> {
    // 1. Seqs: each conversation's last_seq moves by its number of messages, in one UPDATE.
    let mut counts: Vec<(&str, i64)> = Vec::new();
    for j in jobs {
        match counts.iter_mut().find(|(c, _)| *c == j.conversation_id) {
            Some((_, n)) => *n += 1,
            None => counts.push((&j.conversation_id, 1)),
        }
    }
    slots.restart();
    let mut sql = String::from("UPDATE conversations SET last_seq = last_seq + CASE id");
    for _ in &counts {
        sql.push_str(&format!(
            " WHEN {} THEN CAST({} AS BIGINT)",
            slots.take(),
            slots.take()
        ));
    }
    sql.push_str(&format!(
        " END, last_activity_at = {}, updated_at = {} WHERE id IN (",
        slots.take(),
        slots.take()
    ));
    for i in 0..counts.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&slots.take());
    }
    sql.push_str(") RETURNING id, last_seq");
    let mut q = sqlx::query_as::<_, (String, i64)>(&sql).persistent(false);
    for (c, n) in &counts {
        q = q.bind(*c).bind(*n);
    }
    q = q.bind(now).bind(now);
    for (c, _) in &counts {
        q = q.bind(*c);
    }
    let last: HashMap<String, i64> = q.fetch_all(&mut **tx).await?.into_iter().collect();
    let mut next: HashMap<&str, i64> = HashMap::new();
    for (c, n) in &counts {
        let top = *last
            .get(*c)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("conversation vanished")))?;
        next.insert(c, top - n + 1);
    }
    let seqs: Vec<i64> = jobs
        .iter()
        .map(|j| {
            let s = next.get_mut(j.conversation_id.as_str()).expect("counted");
            *s += 1;
            *s - 1
        })
        .collect();

    // 2. The messages.
    let ids: Vec<String> = jobs.iter().map(|_| new_id()).collect();
    slots.restart();
    let mut sql = String::from(
        "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, type, text, \
         media_id, reply_to_id, forwarded, payload, created_at) VALUES ",
    );
    for i in 0..jobs.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for k in 0..12 {
            if k == 3 {
                sql.push_str("'user', ");
            }
            sql.push_str(&slots.take());
            sql.push_str(if k < 11 { ", " } else { ")" });
        }
    }
    let mut q = sqlx::query(&sql).persistent(false);
    for ((j, id), seq) in jobs.iter().zip(&ids).zip(&seqs) {
        q = q
            .bind(id)
            .bind(&j.conversation_id)
            .bind(*seq)
            .bind(&j.me)
            .bind(&j.out.client_msg_id)
            .bind(j.out.content.kind.as_str())
            .bind(j.out.content.text.as_deref())
            .bind(j.out.content.media_id.as_deref())
            .bind(j.out.reply_to_id.as_deref())
            .bind(j.out.forwarded as i64)
            .bind(j.out.content.payload.as_deref())
            .bind(now);
    }
    q.execute(&mut **tx).await?;
    // The rows as stored, without reading them back.
    let rows: Vec<MessageRow> = jobs
        .iter()
        .zip(&ids)
        .zip(&seqs)
        .map(|((j, id), seq)| MessageRow {
            external_id: None,
            external_status: None,
            external_error: None,
            id: id.clone(),
            conversation_id: j.conversation_id.clone(),
            seq: *seq,
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
        })
        .collect();

    // 3. Their changes, in job order (so per conversation in seq order): message:new, the
    //    first message of a direct conversation also tells the recipient of the conversation,
    //    and a receipt change where sending read messages the sender had not read.
    let mut marks: Vec<(&str, &str, i64, i64)> = Vec::new(); // (conversation, sender, first, last)
    for (j, seq) in jobs.iter().zip(&seqs) {
        match marks
            .iter_mut()
            .find(|(c, u, _, _)| *c == j.conversation_id && *u == j.me)
        {
            Some(m) => m.3 = *seq,
            None => marks.push((&j.conversation_id, &j.me, *seq, *seq)),
        }
    }
    let mut changes: Vec<NewChange> = Vec::new();
    for ((j, id), seq) in jobs.iter().zip(&ids).zip(&seqs) {
        changes.push(NewChange {
            conversation_id: &j.conversation_id,
            kind: kinds::MESSAGE_NEW,
            message_id: Some(id),
            seq: Some(*seq),
            ..Default::default()
        });
        if j.direct && *seq == 1 {
            changes.push(NewChange {
                conversation_id: &j.conversation_id,
                kind: kinds::CONVERSATION_UPDATED,
                ..Default::default()
            });
        }
    }
    for (c, u, first, last) in &marks {
        let read_before = jobs
            .iter()
            .find(|j| j.conversation_id == *c && j.me == *u)
            .map_or(0, |j| j.read_seq);
        if read_before < first - 1 {
            changes.push(NewChange {
                conversation_id: c,
                kind: kinds::MESSAGE_STATUS,
                seq: Some(*last),
                actor_id: Some(u),
                status: Some("read"),
                ..Default::default()
            });
        }
    }
    slots.restart();
    crate::sync::store::append_many(tx, slots.clone(), &changes).await?;

    // 4. Sending delivers and reads everything up to the sender's own message.
    slots.restart();
    let mut sql = String::from(
        "UPDATE conversation_members SET \
         delivered_seq = CASE WHEN delivered_seq < v.seq THEN v.seq ELSE delivered_seq END, \
         read_seq = CASE WHEN read_seq < v.seq THEN v.seq ELSE read_seq END \
         FROM (",
    );
    for i in 0..marks.len() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str(&format!(
            "SELECT CAST({} AS TEXT) AS c, CAST({} AS TEXT) AS u, CAST({} AS BIGINT) AS seq",
            slots.take(),
            slots.take(),
            slots.take()
        ));
    }
    sql.push_str(
        ") AS v WHERE conversation_members.conversation_id = v.c AND conversation_members.user_id = v.u",
    );
    let mut q = sqlx::query(&sql).persistent(false);
    for (c, u, _, last) in &marks {
        q = q.bind(*c).bind(*u).bind(*last);
    }
    q.execute(&mut **tx).await?;
    // Receipt history (when each member got and read each message) only changes where the
    // sender's marks pass over messages of others; moving over their own messages changes
    // no receipt anyone can ask for.
    let mut moves: Vec<(&str, &str, &'static str, i64)> = Vec::new();
    for (c, u, first, last) in &marks {
        let Some(j) = jobs.iter().find(|j| j.conversation_id == *c && j.me == *u) else {
            continue;
        };
        if j.delivered_seq < first - 1 {
            moves.push((c, u, "delivered", *last));
        }
        if j.read_seq < first - 1 {
            moves.push((c, u, "read", *last));
        }
    }
    if !moves.is_empty() {
        slots.restart();
        let mut sql = String::from(
            "INSERT INTO receipt_moves (conversation_id, user_id, kind, up_to_seq, at) VALUES ",
        );
        for i in 0..moves.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&slots.row(5));
        }
        let mut q = sqlx::query(&sql).persistent(false);
        for (c, u, kind, last) in &moves {
            q = q.bind(*c).bind(*u).bind(*kind).bind(*last).bind(now);
        }
        q.execute(&mut **tx).await?;
    }

    Ok(rows)
}
