//! Durable background jobs.
//!
//! A job is a row of `jobs`, written in the same transaction as the data it will work on, so
//! it exists exactly when that data does. A node's [`Runner`] claims due jobs by setting a
//! lease (`locked_until`) in one conditional UPDATE, so two workers (or two nodes) never run
//! the same job at once; it renews the lease while the job runs, deletes the row when the job
//! is done and schedules a retry with exponential backoff and jitter when it failed for a
//! reason that may pass. A job whose worker died (crash, `kill -9`) is claimed again when its
//! lease runs out; at a graceful stop the leases of running jobs are given back at once.
//!
//! Jobs therefore run at least once: every job is written to be repeatable (it overwrites what
//! it produces), and one that reaches the outside world records what it did before it does the
//! next step.
//!
//! What a kind of job does lives with its capability; the top (`server.rs`) hands the
//! runner a [`Kinds`] table naming them, so this module knows none of them.

pub mod lease;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;

use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::AppResult;

/// How long a claim holds before another worker may take the job over.
const LEASE: Duration = Duration::from_secs(60);
/// How often the runner looks for due jobs when nothing woke it.
const POLL: Duration = Duration::from_secs(1);
/// Jobs due within this of each other are claimed together (one commit): a paced campaign's
/// sends leave in tenths of a second, not one burst a second, and a claim is no more than ten
/// commits a second. (At 10 ms, a campaign at 80/s cost the server a third of a core in
/// claims, against an eighth at 1 s.)
const GATHER: Duration = Duration::from_millis(100);
/// A job that failed this many times gives up.
const MAX_ATTEMPTS: i64 = 8;
/// A job still running after this long is stopped and counts as a failed attempt.
const TIME_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Why a job did not finish.
#[derive(Debug)]
pub enum JobError {
    /// May pass: try again later (after `after`, when the other side said so).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Will not pass: give up now.
    Permanent(String),
}

impl JobError {
    pub fn retry(e: impl std::fmt::Display) -> JobError {
        JobError::Retry {
            error: e.to_string(),
            after: None,
        }
    }
    pub fn permanent(e: impl std::fmt::Display) -> JobError {
        JobError::Permanent(e.to_string())
    }
}

impl From<crate::error::AppError> for JobError {
    /// The database or another dependency failed: worth another try.
    fn from(e: crate::error::AppError) -> JobError {
        JobError::retry(e)
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> JobError {
        JobError::retry(e)
    }
}

pub type JobResult = Result<(), JobError>;

/// A claimed job.
#[derive(Debug, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// Including this one.
    pub attempts: i64,
    /// Set by [`Job::finish_in`]: the job's row is gone with the handler's own transaction.
    #[sqlx(skip)]
    finished: std::sync::atomic::AtomicBool,
}

impl Job {
    /// Deletes the job's row inside the transaction that does its work, so that the work and
    /// the job's end commit together (one commit fewer than the runner's own delete). Return
    /// `Ok` after committing it.
    pub async fn finish_in(&self, tx: &mut Tx) -> AppResult<()> {
        sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(&self.id)
            .execute(&mut **tx)
            .await?;
        self.finished
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Queues a job inside the transaction that makes its data; it becomes visible (and runs)
/// when that transaction commits. Call [`Db::wake_jobs`] after the commit to start it at once.
pub async fn enqueue(tx: &mut Tx, kind: &str, payload: &str) -> AppResult<()> {
    enqueue_at(tx, kind, payload, now_ms()).await
}

/// Queues a job that runs at `run_at` (milliseconds since the epoch), within a second of it
/// (the runner looks for due jobs at least every second), or when a node next starts.
pub async fn enqueue_at(tx: &mut Tx, kind: &str, payload: &str, run_at: i64) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, kind, payload, attempts, run_at, created_at) VALUES ($1, $2, $3, 0, $4, $5)",
    )
    .bind(new_id())
    .bind(kind)
    .bind(payload)
    .bind(run_at)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Work<S> = Box<dyn Fn(S, Arc<Job>) -> Boxed<JobResult> + Send + Sync>;
type GiveUp<S> = Box<dyn Fn(S, Arc<Job>, String) -> Boxed<AppResult<()>> + Send + Sync>;

/// What the runner works on: a handle on the shared state `S` that reaches the database and
/// this node's [`Runner`].
pub trait Host: Clone + Send + Sync + 'static {
    fn db(&self) -> &Db;
    fn runner(&self) -> &Runner;
}

/// The kinds of job this process runs: what each does, and what it records when a job of it
/// gives up. Unknown kinds (from a newer version, say) give up.
pub struct Kinds<S> {
    work: HashMap<&'static str, Work<S>>,
    gave_up: HashMap<&'static str, GiveUp<S>>,
}

impl<S: Host> Default for Kinds<S> {
    fn default() -> Self {
        Kinds {
            work: HashMap::new(),
            gave_up: HashMap::new(),
        }
    }
}

impl<S: Host> Kinds<S> {
    /// Jobs of `kind` run `work`.
    pub fn add<F, Fut>(mut self, kind: &'static str, work: F) -> Self
    where
        F: Fn(S, Arc<Job>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        let known = self
            .work
            .insert(kind, Box::new(move |s, j| Box::pin(work(s, j))));
        assert!(known.is_none(), "the job kind {kind} is added twice");
        self
    }

    /// When a job of `kind` gives up, `record` writes what that means for its data.
    pub fn on_give_up<F, Fut>(mut self, kind: &'static str, record: F) -> Self
    where
        F: Fn(S, Arc<Job>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AppResult<()>> + Send + 'static,
    {
        self.gave_up
            .insert(kind, Box::new(move |s, j, e| Box::pin(record(s, j, e))));
        self
    }

    async fn run(&self, state: &S, job: &Arc<Job>) -> JobResult {
        match self.work.get(job.kind.as_str()) {
            Some(work) => work(state.clone(), job.clone()).await,
            None => Err(JobError::Permanent(format!(
                "unknown job kind {}",
                job.kind
            ))),
        }
    }

    async fn gave_up(&self, state: &S, job: &Arc<Job>, error: &str) {
        if let Some(record) = self.gave_up.get(job.kind.as_str()) {
            if let Err(e) = record(state.clone(), job.clone(), error.to_owned()).await {
                tracing::warn!(job = %job.id, kind = %job.kind, error = %e, "recording a failed job");
            }
        }
        tracing::warn!(job = %job.id, kind = %job.kind, attempts = job.attempts, %error, "job gave up");
    }
}

/// Starts and stops this node's workers ([`Db::wake_jobs`] runs newly queued jobs at once).
#[derive(Default)]
pub struct Runner {
    running: Mutex<Vec<String>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Runner {
    /// Claims and runs jobs with up to `workers` at a time until [`Runner::stop`]. With 0
    /// workers this node runs no background work (another node does).
    pub async fn work<S: Host>(state: S, kinds: Arc<Kinds<S>>, workers: usize) {
        if workers == 0 {
            return;
        }
        let permits = Arc::new(Semaphore::new(workers));
        let mut stopped = state.runner().stop.subscribe();
        loop {
            if *stopped.borrow() {
                return;
            }
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore stays open"),
                _ = stopped.changed() => return,
            };
            // As many jobs as there are free workers, with one claim (one commit).
            let room = 1 + permits.available_permits();
            let jobs = match claim(state.db(), room).await {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                drop(first);
                // Until the next job is due (a paced send, a retry's backoff, a snooze's end),
                // or a second at most, or a commit queues one.
                let wait = until_next(state.db()).await;
                tokio::select! {
                    _ = state.db().jobs_queued() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => return,
                }
                continue;
            }
            let mut first = Some(first);
            for job in jobs {
                // Only this loop takes permits, so the ones counted are still free.
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .try_acquire_owned()
                        .expect("counted as free"),
                };
                state
                    .runner()
                    .running
                    .lock()
                    .expect("lock")
                    .push(job.id.clone());
                let state = state.clone();
                let kinds = kinds.clone();
                let job = Arc::new(job);
                tokio::spawn(async move {
                    let mut stop = state.runner().stop.subscribe();
                    tokio::select! {
                        _ = execute(&state, &kinds, &job) => {}
                        // Stopping: the lease is given back by `stop`, the job runs again later.
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    state
                        .runner()
                        .running
                        .lock()
                        .expect("lock")
                        .retain(|id| id != &job.id);
                    drop(permit);
                });
            }
        }
    }

    /// Stops claiming, abandons running jobs and gives their leases back, so that the next
    /// start runs them again without waiting for the leases to run out.
    pub async fn stop(&self, db: &Db) {
        let _ = self.stop.send(true);
        let running = std::mem::take(&mut *self.running.lock().expect("lock"));
        for id in running {
            let released = db
                .write(sqlx::query("UPDATE jobs SET locked_until = NULL WHERE id = $1").bind(&id))
                .await;
            if let Err(e) = released {
                tracing::warn!(job = %id, error = %e, "giving back a job's lease");
            }
        }
    }
}

/// How long until the next unclaimed job is due: at least [`GATHER`], at most [`POLL`].
async fn until_next(db: &Db) -> Duration {
    let next: Result<Option<i64>, _> = sqlx::query_scalar(
        "SELECT MIN(run_at) FROM jobs WHERE failed_at IS NULL AND (locked_until IS NULL OR locked_until <= $1)",
    )
    .bind(now_ms())
    .fetch_one(db.reader())
    .await;
    match next {
        Ok(Some(at)) => Duration::from_millis(
            (at - now_ms()).clamp(GATHER.as_millis() as i64, POLL.as_millis() as i64) as u64,
        ),
        _ => POLL,
    }
}

/// Claims the next due job, if any: a read first (cheap, and no write when there is nothing
/// to do), then the conditional UPDATE that makes the claim exclusive.
async fn claim(db: &Db, at_most: usize) -> AppResult<Vec<Job>> {
    let now = now_ms();
    let candidates: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE failed_at IS NULL AND run_at <= $1 \
         AND (locked_until IS NULL OR locked_until <= $1) ORDER BY run_at LIMIT $2",
    )
    .bind(now)
    .bind(at_most as i64)
    .fetch_all(db.reader())
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // The condition is checked again on each row as it is updated: of two nodes claiming the
    // same job, one gets it (PostgreSQL re-checks after the row lock; SQLite has one writer).
    let mut slots = db.slots();
    let sql = format!(
        "UPDATE jobs SET locked_until = {}, attempts = attempts + 1 \
         WHERE failed_at IS NULL AND (locked_until IS NULL OR locked_until <= {}) AND id IN ({}) \
         RETURNING id, kind, payload, CAST(attempts AS BIGINT) AS attempts",
        slots.take(),
        slots.take(),
        slots.list(candidates.len())
    );
    let mut q = sqlx::query_as::<_, Job>(&sql)
        .persistent(false)
        .bind(now + LEASE.as_millis() as i64)
        .bind(now);
    for id in &candidates {
        q = q.bind(id);
    }
    let mut tx = db.begin().await?;
    let mut jobs = q.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    // Oldest first, as they were due.
    jobs.sort_by_key(|j| candidates.iter().position(|c| *c == j.id));
    Ok(jobs)
}

/// Runs a claimed job, renewing its lease, and records the outcome. Attempts are counted when
/// a job is claimed, before it runs: one that took its worker (or the whole process) down
/// every time is not run again past [`MAX_ATTEMPTS`], it is marked failed.
async fn execute<S: Host>(state: &S, kinds: &Kinds<S>, job: &Arc<Job>) {
    let started = std::time::Instant::now();
    let work = async {
        if job.attempts > MAX_ATTEMPTS {
            return Err(JobError::Permanent(format!(
                "did not finish in {MAX_ATTEMPTS} attempts (the process stopped or was killed while it ran)"
            )));
        }
        match tokio::time::timeout(TIME_LIMIT, kinds.run(state, job)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(JobError::retry(format!(
                "still running after {} s",
                TIME_LIMIT.as_secs()
            ))),
        }
    };
    // The renewals run beside the work, both polled: a renewal waits for the writer, and a job
    // inside a write transaction holds it until it is polled on to its commit. (Awaiting the
    // renewal instead of the work deadlocked a job whose transaction spanned a renewal tick.)
    let renewals = async {
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + LEASE / 3, LEASE / 3);
        loop {
            renew.tick().await;
            let renewed = state
                .db()
                .write(
                    sqlx::query("UPDATE jobs SET locked_until = $1 WHERE id = $2")
                        .bind(now_ms() + LEASE.as_millis() as i64)
                        .bind(&job.id),
                )
                .await;
            if let Err(e) = renewed {
                tracing::warn!(job = %job.id, error = %e, "renewing a job's lease");
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        never = renewals => never,
    };
    let result = match &outcome {
        Ok(()) => "done",
        Err(JobError::Retry { .. }) if job.attempts < MAX_ATTEMPTS => "retry",
        Err(_) => "failed",
    };
    metrics::counter!("jobs_total", "kind" => job.kind.clone(), "result" => result).increment(1);
    metrics::histogram!("job_seconds", "kind" => job.kind.clone())
        .record(started.elapsed().as_secs_f64());
    let recorded = match outcome {
        Ok(()) if job.finished.load(std::sync::atomic::Ordering::Relaxed) => Ok(()),
        Ok(()) => state
            .db()
            .write(sqlx::query("DELETE FROM jobs WHERE id = $1").bind(&job.id))
            .await
            .map(|_| ()),
        Err(JobError::Retry { error, after }) if job.attempts < MAX_ATTEMPTS => {
            let delay = after.unwrap_or_else(|| backoff(job.attempts));
            tracing::info!(job = %job.id, kind = %job.kind, attempts = job.attempts, %error,
                retry_in_ms = delay.as_millis() as u64, "job will be retried");
            let q = sqlx::query(
                "UPDATE jobs SET locked_until = NULL, run_at = $1, last_error = $2 WHERE id = $3",
            )
            .bind(now_ms() + delay.as_millis() as i64)
            .bind(truncate(&error))
            .bind(&job.id);
            state.db().write(q).await.map(|_| ())
        }
        Err(JobError::Retry { error, .. } | JobError::Permanent(error)) => {
            kinds.gave_up(state, job, &error).await;
            let q = sqlx::query(
                "UPDATE jobs SET locked_until = NULL, failed_at = $1, last_error = $2 WHERE id = $3",
            )
            .bind(now_ms())
            .bind(truncate(&error))
            .bind(&job.id);
            state.db().write(q).await.map(|_| ())
        }
    };
    if let Err(e) = recorded {
        // The lease runs out and the job runs again: jobs are repeatable.
        tracing::warn!(job = %job.id, error = %e, "recording a job's outcome");
    }
}

/// A failed call to an outside service (a provider): 429 and 5xx may pass and are retried,
/// anything else is final.
pub fn provider_error(
    status: reqwest::StatusCode,
    after: Option<Duration>,
    what: String,
) -> JobError {
    if status.as_u16() == 429 || status.is_server_error() {
        JobError::Retry { error: what, after }
    } else {
        JobError::Permanent(what)
    }
}

/// A request that got no answer: refused by the outbound client (a non-public address, which
/// retrying will not change) is final; anything else (a timeout, a reset) may pass.
pub fn request_error(e: reqwest::Error) -> JobError {
    if crate::outbound::is_refusal(&e) {
        JobError::permanent(e)
    } else {
        JobError::retry(e)
    }
}

impl From<crate::outbound::Refused> for JobError {
    fn from(e: crate::outbound::Refused) -> JobError {
        JobError::permanent(e)
    }
}

impl From<crate::outbound::ReadError> for JobError {
    /// An answer too large is final; one cut off may pass.
    fn from(e: crate::outbound::ReadError) -> JobError {
        match e {
            crate::outbound::ReadError::TooLarge(_) => JobError::permanent(e),
            crate::outbound::ReadError::Http(e) => request_error(e),
        }
    }
}

/// A `Retry-After` in seconds (capped at an hour).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// 2 s, 4 s, 8 s … up to 10 minutes, with up to 25% jitter so retries of many jobs spread out.
fn backoff(attempts: i64) -> Duration {
    let base = 2u64.saturating_pow(attempts.clamp(1, 20) as u32).min(600);
    let jitter = rand::thread_rng().gen_range(0..=base * 250);
    Duration::from_millis(base * 1000 + jitter)
}

fn truncate(error: &str) -> String {
    error.chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert!(backoff(1) >= Duration::from_secs(2) && backoff(1) <= Duration::from_millis(2500));
        assert!(backoff(3) >= Duration::from_secs(8));
        assert!(backoff(40) <= Duration::from_secs(750));
    }
}
