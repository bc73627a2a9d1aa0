//! Batched sending: the write half of `service::send` for the common case (a member
//! who accepted the conversation sends into it), many messages per transaction.
//!
//! Sends queue here; one task takes whatever is queued (up to [`MAX_BATCH`]) and writes it in
//! one transaction, so each message is durable when its sender is answered, in the same order
//! and with the same changes as one by one. The transaction first checks every send's sender
//! (`conversations::access::SendCheck`: still a member, nothing in the way) and writes only
//! those that pass; the others are answered "retry alone", and the service sends them through
//! every check, which gives each its answer. On SQLite the batch
//! runs on the direct writer (`db::lite::Writer`): one kept statement per row, one hop to a
//! blocking thread for the whole batch. On PostgreSQL, where every statement is a round trip,
//! it is a handful of statements for the whole batch: seqs for every conversation in one
//! UPDATE, the messages in one INSERT, their changes in one INSERT, the senders' receipt marks
//! in one UPDATE. Both write the same rows, planned once (`write::Plan`, beside the one-row
//! write). If the batch fails as a whole (say, a concurrent retry of the same `clientMsgId`
//! hit the unique index), every send of it is answered "retry alone", and the service sends it
//! again through the one-by-one path, which knows how to answer each. The queue is started by
//! whoever owns the process's state (`app.rs`) and handed to the senders.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::model::{MessageRow, MessageView, MESSAGE_COLUMNS};
use super::views::{build_views, original};
pub use super::write::Job;
use super::write::{counts, Checked, Plan};
use crate::conversations::access::{SendCheck, Sendable};
use crate::db::{now_ms, Db, Slots, Tx};
use crate::error::{AppError, AppResult};

/// Sends written by one transaction, at most. Under P1's load every batch is full and the
/// writer is the limit, so each commit's fixed cost (the WAL's sync) is shared by as many sends
/// as it can be: 1,024 wrote ~17% more per second than 256, at the same p99. The widest
/// statement, the messages' (12 parameters each), stays below either engine's limit.
const MAX_BATCH: usize = 1024;
/// Sends waiting for the writer, at most; more wait for room.
const QUEUE: usize = 4096;

/// What became of a queued send. Every send is answered `Written` but those of a failed
/// batch, so that variant is not boxed (an allocation per send to shrink a rare one).
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// Written (or a retry found), or failed for a reason of its own.
    Written(AppResult<(MessageView, bool)>),
    /// Its batch failed as a whole: send it again alone.
    RetryAlone(Box<Job>),
}

type Reply = oneshot::Sender<Outcome>;

/// The queue into the batching task.
#[derive(Clone)]
pub struct Pipeline(mpsc::Sender<(Job, Reply)>);

impl Pipeline {
    /// Starts the task; it ends when the last handle to the queue is gone.
    pub fn start(db: Db) -> Pipeline {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, rx));
        Pipeline(tx)
    }

    /// Queues a checked send (waiting while the queue is full); the receiver gets its outcome.
    pub(crate) async fn enqueue(&self, job: Job) -> AppResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send((job, reply))
            .await
            .map_err(|_| AppError::unavailable(anyhow::anyhow!("the send queue is closed")))?;
        Ok(answer)
    }
}

/// The outcome of a queued send, once its batch is written.
pub type Answer = oneshot::Receiver<Outcome>;

async fn run(db: Db, mut rx: mpsc::Receiver<(Job, Reply)>) {
    let mut queued = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        // recv_many stops at the end of the channel's internal block: take the rest as well.
        while queued.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => queued.push(job),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<Job>, Vec<Reply>) = queued.drain(..).unzip();
        // A panic while handling a batch drops its replies, so its senders are answered
        // "unavailable" (nothing of a failed transaction was committed), and the task goes on
        // with the next batch instead of leaving every later send without a writer.
        let handled = std::panic::AssertUnwindSafe(batch(&db, jobs, replies))
            .catch_unwind()
            .await;
        if handled.is_err() {
            metrics::counter!("message_batch_panics_total").increment(1);
            tracing::error!("a send batch panicked; its senders were told to retry");
        }
    }
}

/// Writes one batch and answers its senders.
async fn batch(db: &Db, jobs: Vec<Job>, replies: Vec<Reply>) {
    let jobs = Arc::new(jobs);
    metrics::histogram!("message_batch_size").record(jobs.len() as f64);
    #[cfg(test)]
    if jobs.iter().any(|j| j.out.client_msg_id == PANIC_FOR_TESTS) {
        panic!("a send batch panicked (test)");
    }
    match write(db, jobs.clone()).await {
        Ok(rows) => answer(db, &jobs, replies, rows).await,
        Err(e) => {
            if jobs.len() > 1 {
                tracing::debug!(error = %e, sends = jobs.len(), "a send batch failed; sending one by one");
            } else {
                tracing::debug!(error = %e, "a batched send failed; retrying it alone");
            }
            let jobs = Arc::try_unwrap(jobs)
                .unwrap_or_else(|shared| shared.iter().map(Job::clone).collect());
            for (job, reply) in jobs.into_iter().zip(replies) {
                let _ = reply.send(Outcome::RetryAlone(Box::new(job)));
            }
        }
    }
}

/// A send with this clientMsgId makes its batch panic, in unit tests.
#[cfg(test)]
const PANIC_FOR_TESTS: &str = "panic-for-tests";

/// Builds the views of the new rows (one query for the batch) and answers every sender.
async fn answer(db: &Db, jobs: &[Job], replies: Vec<Reply>, written: Vec<Written>) {
    let mut new_rows = Vec::new();
    let mut pending = Vec::new();
    for ((reply, w), job) in replies.into_iter().zip(written).zip(jobs) {
        match w {
            Written::New(row) => {
                new_rows.push(row);
                pending.push((reply, job, None));
            }
            Written::Existing(row) => pending.push((reply, job, Some(row))),
            Written::Refused => {
                let _ = reply.send(Outcome::RetryAlone(Box::new(job.clone())));
            }
        }
    }
    // New messages: nobody else has them yet, so their status is "sent".
    let mut views = match build_views(db, new_rows, &HashMap::new()).await {
        Ok(views) => Some(views.into_iter()),
        Err(e) => {
            tracing::warn!(error = %e, "building views of sent messages failed");
            None
        }
    };
    for (reply, job, existing) in pending {
        let result = match existing {
            Some(row) => original(db, row, &job.conversation_id).await,
            None => match views.as_mut().and_then(Iterator::next) {
                Some(view) => Ok((view, true)),
                // Stored, but not answerable now: a retry with the same clientMsgId gets it.
                None => Err(AppError::unavailable(anyhow::anyhow!(
                    "the message was stored; retry to get it"
                ))),
            },
        };
        let _ = reply.send(Outcome::Written(result));
    }
}

/// What became of one send of a batch.
enum Written {
    New(MessageRow),
    /// A retry: the message its clientMsgId already named.
    Existing(MessageRow),
    /// Its check found more to it than the batch writes (a request, a block, no member…):
    /// sent again alone, through every check, which gives it its answer.
    Refused,
}

/// Earlier sends of a batch's clientMsgIds, by (sender, clientMsgId).
type Existing = HashMap<(String, String), MessageRow>;

/// Writes the batch in one transaction; the outcomes come back in job order.
async fn write(db: &Db, jobs: Arc<Vec<Job>>) -> AppResult<Vec<Written>> {
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
    if db.writes_direct() {
        let written = db
            .write_direct(move |tx| {
                let checks = direct::check(tx, &jobs)?;
                let existing = direct::existing(tx, &passed(&jobs, &checks))?;
                let fresh = fresh(&jobs, &checks, &existing);
                let started = std::time::Instant::now();
                let rows = if fresh.is_empty() {
                    Vec::new()
                } else {
                    direct::insert_new(tx, now, &fresh)?
                };
                metrics::histogram!("message_batch_write_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok(outcomes(&jobs, &checks, existing, rows))
            })
            .await?;
        db.changes_appended();
        return Ok(written);
    }
    let mut tx = db.begin().await?;
    let checks = batched::check(&mut tx, db.slots(), &jobs).await?;
    let existing = batched::existing(&mut tx, db.slots(), &passed(&jobs, &checks)).await?;
    let fresh = fresh(&jobs, &checks, &existing);
    let started = std::time::Instant::now();
    let rows = if fresh.is_empty() {
        Vec::new()
    } else {
        batched::insert_new(&mut tx, db.slots(), now, &fresh).await?
    };
    metrics::histogram!("message_batch_write_seconds").record(started.elapsed().as_secs_f64());
    db.commit(tx).await?;
    Ok(outcomes(&jobs, &checks, existing, rows))
}

/// The sends their checks let the batch write.
fn passed<'j>(jobs: &'j [Job], checks: &[Option<Sendable>]) -> Vec<&'j Job> {
    jobs.iter()
        .zip(checks)
        .filter_map(|(j, c)| c.map(|_| j))
        .collect()
}

/// The sends to write: passed, and not retries.
fn fresh<'j>(
    jobs: &'j [Job],
    checks: &[Option<Sendable>],
    existing: &Existing,
) -> Vec<Checked<'j>> {
    jobs.iter()
        .zip(checks)
        .filter_map(|(j, c)| Some((j, (*c)?)))
        .filter(|(j, _)| !existing.contains_key(&(j.me.clone(), j.out.client_msg_id.clone())))
        .collect()
}

/// Every send's outcome in job order, from its check, the earlier sends and the new rows (in
/// the order of the fresh sends).
fn outcomes(
    jobs: &[Job],
    checks: &[Option<Sendable>],
    mut existing: Existing,
    rows: Vec<MessageRow>,
) -> Vec<Written> {
    let mut inserted = rows.into_iter();
    jobs.iter()
        .zip(checks)
        .map(|(j, c)| {
            if c.is_none() {
                return Written::Refused;
            }
            match existing.remove(&(j.me.clone(), j.out.client_msg_id.clone())) {
                Some(m) => Written::Existing(m),
                None => Written::New(inserted.next().expect("one row per fresh send")),
            }
        })
        .collect()
}

/// The batch on SQLite's direct writer: kept statements, one row each.
mod direct {
    use rusqlite::{params, OptionalExtension, Transaction};

    use super::*;

    /// Each send's check, in this transaction: what the batch writes it with, or `None`.
    pub(super) fn check(tx: &Transaction<'_>, jobs: &[Job]) -> AppResult<Vec<Option<Sendable>>> {
        let mut find = tx.prepare_cached(&SendCheck::one_sql())?;
        jobs.iter()
            .map(|j| {
                let found = find
                    .query_row(
                        params![j.conversation_id, j.workspace_id, j.me],
                        SendCheck::from_lite,
                    )
                    .optional()?;
                Ok(found.and_then(|c| c.sendable()))
            })
            .collect()
    }

    pub(super) fn existing(tx: &Transaction<'_>, jobs: &[&Job]) -> AppResult<Existing> {
        let mut find = tx.prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages msg \
             WHERE msg.sender_id = ?1 AND msg.client_msg_id = ?2"
        ))?;
        let mut existing = Existing::new();
        for j in jobs {
            let mut rows = find.query(params![j.me, j.out.client_msg_id])?;
            if let Some(row) = rows.next()? {
                existing.insert(
                    (j.me.clone(), j.out.client_msg_id.clone()),
                    MessageRow::from_lite(row)?,
                );
            }
        }
        Ok(existing)
    }

    pub(super) fn insert_new(
        tx: &Transaction<'_>,
        now: i64,
        jobs: &[Checked<'_>],
    ) -> AppResult<Vec<MessageRow>> {
        let counts = counts(jobs);
        let mut seq = tx.prepare_cached(
            "UPDATE conversations SET last_seq = last_seq + ?1, last_activity_at = ?2, \
             updated_at = ?2 WHERE id = ?3 RETURNING last_seq",
        )?;
        let mut last = HashMap::new();
        for (c, n) in &counts {
            let top: Option<i64> = seq
                .query_row(params![n, now, c], |row| row.get(0))
                .optional()?;
            if let Some(top) = top {
                last.insert(c.to_string(), top);
            }
        }
        let plan = Plan::new(now, jobs, &counts, &last)?;

        // The messages go in with one statement per power of two of rows (at most nine shapes
        // of statement to keep): full-text search keeps what each statement indexes in memory
        // and writes it out when the next statement begins, so a statement per row would
        // write (and later merge) one index segment per message.
        let mut rest = plan.rows.as_slice();
        while !rest.is_empty() {
            let n = 1 << rest.len().ilog2();
            let (chunk, tail) = rest.split_at(n);
            let mut insert = tx.prepare_cached(&insert_messages_sql(n))?;
            for (i, m) in chunk.iter().enumerate() {
                let at = i * 12;
                let values: [&dyn rusqlite::ToSql; 12] = [
                    &m.id,
                    &m.conversation_id,
                    &m.seq,
                    &m.sender_id,
                    &m.client_msg_id,
                    &m.kind,
                    &m.text,
                    &m.media_id,
                    &m.reply_to_id,
                    &m.forwarded,
                    &m.payload,
                    &m.created_at,
                ];
                for (k, v) in values.into_iter().enumerate() {
                    insert.raw_bind_parameter(at + k + 1, v)?;
                }
            }
            insert.raw_execute()?;
            rest = tail;
        }
        crate::changes::append_many_direct(tx, &plan.changes(jobs))?;
        let mut mark = tx.prepare_cached(
            "UPDATE conversation_members SET delivered_seq = MAX(delivered_seq, ?3), \
             read_seq = MAX(read_seq, ?3) WHERE conversation_id = ?1 AND user_id = ?2",
        )?;
        for (c, u, _, last) in &plan.marks {
            mark.execute(params![c, u, last])?;
        }
        let mut moved = tx.prepare_cached(
            "INSERT INTO receipt_moves (conversation_id, user_id, kind, up_to_seq, at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (c, u, kind, last) in &plan.moves {
            moved.execute(params![c, u, kind, last, now])?;
        }
        Ok(plan.rows)
    }
}

/// `INSERT INTO messages … VALUES (…), …` for `rows` rows, twelve `?` each (`'user'` sends).
fn insert_messages_sql(rows: usize) -> String {
    let row = "(?, ?, ?, 'user', ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut sql = String::from(
        "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, \
         type, text, media_id, reply_to_id, forwarded, payload, created_at) VALUES ",
    );
    sql.push_str(&vec![row; rows].join(", "));
    sql
}

/// The batch on PostgreSQL (and in-memory SQLite): a handful of statements for all of it.
mod batched {
    use sqlx::Row;

    use super::*;

    /// Each send's check, in this transaction: what the batch writes it with, or `None`. The
    /// batch's conversations are locked first, in one order: a removal (which takes its
    /// conversation's row for its system message's seq) then comes wholly before the batch,
    /// and the check's statement sees it, or wholly after it.
    pub(super) async fn check(
        tx: &mut Tx,
        mut slots: Slots,
        jobs: &[Job],
    ) -> AppResult<Vec<Option<Sendable>>> {
        let mut conversations: Vec<&str> =
            jobs.iter().map(|j| j.conversation_id.as_str()).collect();
        conversations.sort_unstable();
        conversations.dedup();
        let sql = format!(
            "SELECT id FROM conversations WHERE id IN ({}) ORDER BY id FOR UPDATE",
            slots.list(conversations.len())
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for c in &conversations {
            q = q.bind(*c);
        }
        q.execute(&mut **tx).await?;

        let mut senders: Vec<(&str, &str, &str)> = jobs
            .iter()
            .map(|j| {
                (
                    j.conversation_id.as_str(),
                    j.workspace_id.as_str(),
                    j.me.as_str(),
                )
            })
            .collect();
        senders.sort_unstable();
        senders.dedup();
        slots.restart();
        let sql = SendCheck::many_sql(senders.len(), &mut slots);
        let mut q = sqlx::query(&sql).persistent(false);
        for (c, w, u) in &senders {
            q = q.bind(*c).bind(*w).bind(*u);
        }
        let mut found = HashMap::new();
        for row in q.fetch_all(&mut **tx).await? {
            let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            found.insert(key, SendCheck::from_any_at(&row, 2)?);
        }
        Ok(jobs
            .iter()
            .map(|j| {
                found
                    .get(&(j.conversation_id.clone(), j.me.clone()))
                    .and_then(SendCheck::sendable)
            })
            .collect())
    }

    pub(super) async fn existing(
        tx: &mut Tx,
        mut slots: Slots,
        jobs: &[&Job],
    ) -> AppResult<Existing> {
        if jobs.is_empty() {
            return Ok(Existing::new());
        }
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
        Ok(q.fetch_all(&mut **tx)
            .await?
            .into_iter()
            .filter_map(|m| Some(((m.sender_id.clone()?, m.client_msg_id.clone()?), m)))
            .collect())
    }

    pub(super) async fn insert_new(
        tx: &mut Tx,
        mut slots: Slots,
        now: i64,
        jobs: &[Checked<'_>],
    ) -> AppResult<Vec<MessageRow>> {
        // 1. Seqs: each conversation's last_seq moves by its number of messages, in one UPDATE.
        let counts = counts(jobs);
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
        sql.push_str(&slots.list(counts.len()));
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
        let plan = Plan::new(now, jobs, &counts, &last)?;

        // 2. The messages.
        slots.restart();
        let mut sql = String::from(
            "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, type, text, \
             media_id, reply_to_id, forwarded, payload, created_at) VALUES ",
        );
        for i in 0..plan.rows.len() {
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
        for m in &plan.rows {
            q = q
                .bind(&m.id)
                .bind(&m.conversation_id)
                .bind(m.seq)
                .bind(&m.sender_id)
                .bind(&m.client_msg_id)
                .bind(&m.kind)
                .bind(&m.text)
                .bind(&m.media_id)
                .bind(&m.reply_to_id)
                .bind(m.forwarded)
                .bind(&m.payload)
                .bind(m.created_at);
        }
        q.execute(&mut **tx).await?;

        // 3. Their changes.
        slots.restart();
        crate::changes::append_many(tx, slots.clone(), &plan.changes(jobs)).await?;

        // 4. The senders' marks.
        slots.restart();
        let mut sql = String::from(
            "UPDATE conversation_members SET \
             delivered_seq = CASE WHEN delivered_seq < v.seq THEN v.seq ELSE delivered_seq END, \
             read_seq = CASE WHEN read_seq < v.seq THEN v.seq ELSE read_seq END \
             FROM (",
        );
        for i in 0..plan.marks.len() {
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
        for (c, u, _, last) in &plan.marks {
            q = q.bind(*c).bind(*u).bind(*last);
        }
        q.execute(&mut **tx).await?;
        if !plan.moves.is_empty() {
            slots.restart();
            let mut sql = String::from(
                "INSERT INTO receipt_moves (conversation_id, user_id, kind, up_to_seq, at) VALUES ",
            );
            for i in 0..plan.moves.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&slots.row(5));
            }
            let mut q = sqlx::query(&sql).persistent(false);
            for (c, u, kind, last) in &plan.moves {
                q = q.bind(*c).bind(*u).bind(*kind).bind(*last).bind(now);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(plan.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::model::{Content, MessageType, Outgoing};

    fn job(client_msg_id: &str) -> Job {
        Job {
            workspace_id: "w".into(),
            me: "u".into(),
            conversation_id: "no-such-conversation".into(),
            out: Outgoing {
                client_msg_id: client_msg_id.into(),
                content: Content {
                    kind: MessageType::Text,
                    text: Some("hi".into()),
                    media_id: None,
                    payload: None,
                },
                reply_to_id: None,
                forwarded: false,
            },
        }
    }

    /// A batch that panics fails its own sends, and the next sends still find a writer.
    #[tokio::test]
    async fn a_panicking_batch_fails_its_sends_and_the_pipeline_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let pipeline = Pipeline::start(db.clone());
        let doomed = pipeline.enqueue(job(PANIC_FOR_TESTS)).await.unwrap();
        assert!(
            doomed.await.is_err(),
            "the panicking batch's sender is told"
        );
        let next = pipeline.enqueue(job("after-the-panic")).await.unwrap();
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), next)
            .await
            .expect("the pipeline still answers")
            .expect("with an answer, not a dropped reply");
        assert!(
            !matches!(answered, Outcome::Written(Ok(_))),
            "no such conversation: not written, but an answer"
        );
        db.close().await;
    }
}
