//! Group commit for SQLite: many write transactions, one fsync.
//!
//! SQLite has one writer, and with `synchronous=FULL` every COMMIT waits for the disk, so one
//! transaction per message caps writes at the disk's flush rate (a few hundred per second).
//! Here a write transaction is a SAVEPOINT inside a shared transaction on the writer
//! connection. [`Tx::commit`] releases the savepoint and then waits until the shared
//! transaction is committed; a flusher commits it as soon as it can take the connection, and
//! every transaction released until then is made durable by that one COMMIT. Under light load
//! a batch holds one transaction (the same latency as before); under heavy load the batch grows
//! with the writers queued during the previous fsync.
//!
//! "Durable before acknowledged" holds: `commit` returns only after the COMMIT that covers it
//! returned. If that COMMIT fails, every transaction of the batch gets the error, and none of
//! their writes exists. A transaction dropped without commit is rolled back to its savepoint,
//! leaving the rest of the batch alone.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{watch, Mutex, Notify, OwnedMutexGuard};

/// The outcome of one batch, shared by its transactions.
type Outcome = Option<Result<(), Arc<str>>>;

pub(super) struct Group {
    state: Arc<Mutex<State>>,
    pool: AnyPool,
    flush: Arc<Notify>,
}

impl Drop for Group {
    fn drop(&mut self) {
        // Lets the flusher see that the group is gone.
        self.flush.notify_one();
    }
}

struct State {
    /// The writer connection while a batch is open.
    conn: Option<PoolConnection<Any>>,
    /// Tells the open batch's transactions how it ended.
    batch: watch::Sender<Outcome>,
}

impl Group {
    pub(super) fn start(pool: AnyPool) -> Arc<Group> {
        let group = Arc::new(Group {
            state: Arc::new(Mutex::new(State {
                conn: None,
                batch: watch::channel(None).0,
            })),
            pool,
            flush: Arc::new(Notify::new()),
        });
        tokio::spawn(flusher(Arc::downgrade(&group), group.flush.clone()));
        group
    }

    pub(super) async fn begin(self: &Arc<Self>) -> Result<GroupTx, sqlx::Error> {
        let mut state = self.state.clone().lock_owned().await;
        if state.conn.is_none() {
            let mut conn = self.pool.acquire().await?;
            conn.execute("BEGIN IMMEDIATE").await?;
            state.conn = Some(conn);
        }
        let conn = state.conn.as_mut().expect("opened above");
        if let Err(e) = conn.execute("SAVEPOINT w").await {
            fail_batch(&mut state, &e).await;
            return Err(e);
        }
        Ok(GroupTx {
            state: Some(state),
            group: self.clone(),
        })
    }
}

/// Commits the open batch whenever a transaction waits for it.
async fn flusher(group: std::sync::Weak<Group>, flush: Arc<Notify>) {
    loop {
        flush.notified().await;
        let Some(g) = group.upgrade() else { return };
        let mut state = g.state.lock().await;
        commit_open(&mut state).await;
    }
}

/// Commits the open batch, if any, and tells its transactions how it ended.
async fn commit_open(state: &mut State) {
    let Some(mut conn) = state.conn.take() else {
        return;
    };
    let started = std::time::Instant::now();
    let result = conn.execute("COMMIT").await;
    metrics::histogram!("db_group_commit_seconds").record(started.elapsed().as_secs_f64());
    if result.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    drop(conn);
    let batch = std::mem::replace(&mut state.batch, watch::channel(None).0);
    batch.send_replace(Some(
        result
            .map(|_| ())
            .map_err(|e| Arc::from(e.to_string().as_str())),
    ));
    metrics::counter!("db_group_commits_total").increment(1);
}

/// The writer, held with no batch open: while it lives, no other write transaction runs, so
/// a connection other than sqlx's writer can write (`lite::Writer`).
pub(super) struct Exclusive {
    _held: OwnedMutexGuard<State>,
}

impl Group {
    /// Waits for the transactions in progress, commits their batch, and holds the writer.
    pub(super) async fn exclusive(&self) -> Exclusive {
        let mut state = self.state.clone().lock_owned().await;
        commit_open(&mut state).await;
        Exclusive { _held: state }
    }
}

/// Ends the open batch with an error: its transactions (released or not) are rolled back.
async fn fail_batch(state: &mut State, e: &sqlx::Error) {
    if let Some(mut conn) = state.conn.take() {
        let _ = conn.execute("ROLLBACK").await;
    }
    let batch = std::mem::replace(&mut state.batch, watch::channel(None).0);
    batch.send_replace(Some(Err(Arc::from(e.to_string().as_str()))));
}

/// One write transaction: a savepoint in the open batch, holding the writer until it ends.
pub struct GroupTx {
    state: Option<OwnedMutexGuard<State>>,
    group: Arc<Group>,
}

impl GroupTx {
    fn conn(&mut self) -> &mut PoolConnection<Any> {
        self.state
            .as_mut()
            .and_then(|s| s.conn.as_mut())
            .expect("a live group transaction has a connection")
    }

    /// Releases the savepoint, then waits for the batch's COMMIT.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let mut state = self.state.take().expect("not yet ended");
        let conn = state
            .conn
            .as_mut()
            .expect("a live group transaction has a connection");
        if let Err(e) = conn.execute("RELEASE w").await {
            fail_batch(&mut state, &e).await;
            return Err(e);
        }
        let mut outcome = state.batch.subscribe();
        drop(state);
        self.group.flush.notify_one();
        let done = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?
            .clone();
        match done {
            Some(Ok(())) => Ok(()),
            Some(Err(message)) => Err(sqlx::Error::Protocol(format!(
                "the group commit failed: {message}"
            ))),
            None => unreachable!("waited for an outcome"),
        }
    }
}

impl Drop for GroupTx {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        // Undo this transaction only; the writer stays held until that is done. Then the
        // batch is flushed, so that an open batch never keeps the writer from others.
        let flush = self.group.flush.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left (process exit): the connection goes with it, uncommitted.
            return;
        };
        runtime.spawn(async move {
            let Some(conn) = state.conn.as_mut() else {
                return;
            };
            let undone = match conn.execute("ROLLBACK TO w").await {
                Ok(_) => conn.execute("RELEASE w").await,
                Err(e) => Err(e),
            };
            if let Err(e) = undone {
                fail_batch(&mut state, &e).await;
            }
            drop(state);
            flush.notify_one();
        });
    }
}

impl Deref for GroupTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.state
            .as_ref()
            .and_then(|s| s.conn.as_ref())
            .expect("a live group transaction has a connection")
    }
}

impl DerefMut for GroupTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn()
    }
}

#[cfg(test)]
mod tests {
    use crate::db::{Db, Tx};

    async fn insert(tx: &mut Tx, n: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO t (n) VALUES ($1)")
            .bind(n)
            .execute(&mut **tx)
            .await
            .map(|_| ())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_keeps_what_committed_and_drops_what_did_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("group.db").display());
        let db = Db::connect(&url, 4).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Many transactions at once, so that they share batches: a third roll back, a third
        // fail on a duplicate key and are dropped, the rest commit.
        let mut tasks = Vec::new();
        for n in 0..90_i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = db.begin().await.unwrap();
                insert(&mut tx, n).await.unwrap();
                match n % 3 {
                    0 => {
                        drop(tx);
                        false
                    }
                    1 => {
                        assert!(insert(&mut tx, n).await.is_err());
                        drop(tx);
                        false
                    }
                    _ => {
                        tx.commit().await.unwrap();
                        true
                    }
                }
            }));
        }
        let mut committed = Vec::new();
        for (n, task) in tasks.into_iter().enumerate() {
            if task.await.unwrap() {
                committed.push(n as i64);
            }
        }
        db.settle_writes().await.unwrap();
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(db.reader())
            .await
            .unwrap();
        assert_eq!(stored, committed);
        assert_eq!(stored.len(), 30);
        db.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_writes_take_turns_with_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("direct.db").display());
        let db = Db::connect(&url, 4).await.unwrap();
        assert!(db.writes_direct());
        db.write(sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
            .await
            .unwrap();

        // Grouped transactions and direct writes at once: each direct write inserts two rows,
        // a third of them then fails (a duplicate key) and another third panics; neither may
        // leave a row behind or stop the writer.
        let mut tasks = Vec::new();
        for n in 0..60_i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                if n % 2 == 0 {
                    let mut tx = db.begin().await.unwrap();
                    insert(&mut tx, n).await.unwrap();
                    tx.commit().await.unwrap();
                    return vec![n];
                }
                let done = db
                    .write_direct(move |tx| {
                        let mut insert = tx.prepare_cached("INSERT INTO t (n) VALUES (?1)")?;
                        insert.execute([n])?;
                        insert.execute([n + 1000])?;
                        match n % 3 {
                            0 => {
                                insert.execute([n])?;
                            }
                            1 => panic!("a direct write panics"),
                            _ => {}
                        }
                        Ok(())
                    })
                    .await;
                match n % 3 {
                    2 => {
                        done.unwrap();
                        vec![n, n + 1000]
                    }
                    _ => {
                        assert!(done.is_err());
                        vec![]
                    }
                }
            }));
        }
        let mut committed = Vec::new();
        for task in tasks {
            committed.extend(task.await.unwrap());
        }
        committed.sort();
        // A direct write is durable when it returns: no settling needed to see it.
        let stored: Vec<i64> = sqlx::query_scalar("SELECT n FROM t ORDER BY n")
            .fetch_all(db.reader())
            .await
            .unwrap();
        assert_eq!(stored, committed);
        assert_eq!(stored.len(), 30 + 2 * 10);
        db.close().await;
    }
}
