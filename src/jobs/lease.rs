//! Leases for scheduled work: on one node or many, at most one node at a time runs a named
//! piece of periodic work (the unreferenced-upload sweep, the push follower, the AI idle
//! trigger, the automations' timed triggers; the campaign scheduler will use the same). The lease is a database row, so it needs nothing
//! besides the database every node already shares, and it works in both modes.

use std::future::Future;
use std::time::Duration;

use crate::db::{now_ms, Db};
use crate::error::AppResult;

/// Takes (or renews) the lease `name` for `holder` until `ttl` from now; `true` if `holder`
/// holds it. Free, expired or already held by `holder`: taken; held by another: not.
pub async fn acquire(db: &Db, name: &str, holder: &str, ttl: Duration) -> AppResult<bool> {
    let now = now_ms();
    let done = db
        .write(
            sqlx::query(
                "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
            )
            .bind(name)
            .bind(holder)
            .bind(now + ttl.as_millis() as i64)
            .bind(now),
        )
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease up (graceful stop), so another node need not wait for it to expire.
pub async fn release(db: &Db, name: &str, holder: &str) -> AppResult<()> {
    db.write(
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder),
    )
    .await?;
    Ok(())
}

/// Runs `work` every `every` on whichever node holds the lease `name`, until the task is
/// dropped. A node that cannot renew in time loses the lease to another after `every` × 3
/// (at least 30 s).
pub async fn scheduled<F, Fut>(db: Db, holder: String, name: &'static str, every: Duration, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = AppResult<()>>,
{
    let ttl = (every * 3).max(Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Held until then for sure: renewed (a write) only once half of it is gone, so frequent
    // work does not write the lease at every tick.
    let mut held_until: Option<tokio::time::Instant> = None;
    loop {
        tick.tick().await;
        let now = tokio::time::Instant::now();
        let holds = match held_until {
            Some(until) if until > now + ttl / 2 => true,
            _ => match acquire(&db, name, &holder, ttl).await {
                Ok(true) => {
                    held_until = Some(now + ttl);
                    true
                }
                Ok(false) => {
                    held_until = None;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, work = name, "taking the lease failed");
                    held_until = None;
                    false
                }
            },
        };
        if holds {
            if let Err(e) = work().await {
                tracing::warn!(error = %e, work = name, "scheduled work failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_an_expired_lease_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 4).await.unwrap();
        db.migrate().await.unwrap();
        let long = Duration::from_secs(60);
        assert!(acquire(&db, "sweep", "a", long).await.unwrap());
        assert!(
            !acquire(&db, "sweep", "b", long).await.unwrap(),
            "a holds it"
        );
        assert!(acquire(&db, "sweep", "a", long).await.unwrap(), "a renews");
        assert!(
            acquire(&db, "other", "b", long).await.unwrap(),
            "names are apart"
        );
        release(&db, "sweep", "b").await.unwrap();
        assert!(
            !acquire(&db, "sweep", "b", long).await.unwrap(),
            "only the holder releases"
        );
        release(&db, "sweep", "a").await.unwrap();
        assert!(
            acquire(&db, "sweep", "b", Duration::ZERO).await.unwrap(),
            "free after release"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            acquire(&db, "sweep", "a", long).await.unwrap(),
            "b's lease expired"
        );
    }
}
