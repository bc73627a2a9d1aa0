//! The idle trigger: a conversation with messages newer than its last analysis that has been
//! quiet (no message either way, by the server's arrival time) for the workspace's
//! `idleAfterSeconds` gets an `idle` run — once per quiet period.
//!
//! How "once" holds: the scan runs on the node holding the lease, and a run is claimed by
//! moving the conversation's `ai_through_seq` up to its `last_seq` in the transaction that
//! queues the run (one transaction per batch of 500), on the condition that it was below and that the conversation has no queued
//! run. A second scan (another node after a lease change, or the next tick) finds nothing to
//! claim; a period that ended while no server ran is found by the first scan after a start.
//! The conversations the scan reads are those of a partial index that holds only conversations
//! with unanalysed messages.

use std::time::Duration;

use crate::db::{now_ms, Db, Tenant};
use crate::error::AppResult;
use crate::workspaces::AiSettings;

/// The lease of the scan.
pub const LEASE: &str = "ai-idle";
/// Conversations read per statement of a scan.
const BATCH: i64 = 500;

/// One look: queues an idle run for every conversation gone quiet, in the workspaces that
/// opted in. Returns the runs queued.
pub async fn scan(db: &Db, default_idle: Duration) -> AppResult<usize> {
    let started = std::time::Instant::now();
    let mut queries: u64 = 1;
    let workspaces: Vec<(String, String)> =
        sqlx::query_as("SELECT id, settings FROM workspaces WHERE settings LIKE '%\"ai\"%'")
            .fetch_all(db.reader())
            .await?;
    let now = now_ms();
    let mut queued = 0;
    for (workspace, settings) in workspaces {
        let ai = AiSettings::of_workspace(&settings);
        if !ai.enabled {
            continue;
        }
        let idle_ms = ai
            .idle_after_seconds
            .map_or(default_idle.as_millis() as i64, |s| s * 1000);
        let cutoff = now - idle_ms;
        let t = Tenant::new(db, &workspace);
        // Every due conversation, in batches along the index (a claim that fails, because a
        // run is queued, is passed by, not read again).
        let mut after = (i64::MIN, String::new());
        loop {
            let due: Vec<(i64, String)> = sqlx::query_as(
                "SELECT last_activity_at, id FROM conversations WHERE workspace_id = $1 \
                 AND last_seq > ai_through_seq AND kind IN ('channel', 'support') \
                 AND last_activity_at <= $2 \
                 AND (last_activity_at > $3 OR (last_activity_at = $3 AND id > $4)) \
                 ORDER BY last_activity_at, id LIMIT $5",
            )
            .bind(&workspace)
            .bind(cutoff)
            .bind(after.0)
            .bind(&after.1)
            .bind(BATCH)
            .fetch_all(db.reader())
            .await?;
            queries += 1 + due.len() as u64;
            let ids: Vec<String> = due.iter().map(|(_, id)| id.clone()).collect();
            queued += super::insights::request_idle(t, &ids, cutoff).await?;
            match due.last() {
                Some(last) if due.len() as i64 == BATCH => after = last.clone(),
                _ => break,
            }
        }
    }
    if queued > 0 {
        db.wake_jobs();
    }
    // What the scan costs, for `palaver bench ai-idle` and operators: statements and time.
    metrics::counter!("ai_idle_scans_total").increment(1);
    metrics::counter!("ai_idle_scan_statements_total").increment(queries);
    metrics::counter!("ai_idle_scan_microseconds_total")
        .increment(started.elapsed().as_micros() as u64);
    metrics::counter!("ai_idle_runs_queued_total").increment(queued as u64);
    Ok(queued)
}
