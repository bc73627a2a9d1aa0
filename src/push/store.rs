//! Subscription and pending-notification queries.

use super::model::{SubscriptionRow, Target, SUBSCRIPTION_COLUMNS};
use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::AppResult;

/// Stores the subscription for this session; one per endpoint, so subscribing again (or from
/// another account in the same browser) moves it. `true` when it is new.
pub async fn upsert(
    db: &Db,
    user_id: &str,
    session_id: &str,
    target: &Target,
    sealed_token: Option<String>,
) -> AppResult<(SubscriptionRow, bool)> {
    let (kind, endpoint, p256dh, auth) = match target {
        Target::WebPush {
            endpoint,
            p256dh,
            auth,
        } => ("webpush", endpoint, Some(p256dh), Some(auth)),
        Target::Webhook { url, .. } => ("webhook", url, None, None),
    };
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO push_subscriptions (id, user_id, session_id, kind, endpoint, p256dh, auth, token, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT (endpoint) DO NOTHING",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(session_id)
    .bind(kind)
    .bind(endpoint)
    .bind(p256dh)
    .bind(auth)
    .bind(&sealed_token)
    .bind(now)
    .execute(db.writer())
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        sqlx::query(
            "UPDATE push_subscriptions SET user_id = $1, session_id = $2, kind = $3, p256dh = $4, \
             auth = $5, token = $6, updated_at = $7 WHERE endpoint = $8",
        )
        .bind(user_id)
        .bind(session_id)
        .bind(kind)
        .bind(p256dh)
        .bind(auth)
        .bind(&sealed_token)
        .bind(now)
        .bind(endpoint)
        .execute(db.writer())
        .await?;
    }
    if inserted {
        // While nobody had a subscription the follower did not read the log: it starts from
        // here, not from an old position.
        let lonely: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_subscriptions")
            .fetch_one(db.writer())
            .await?;
        if lonely == 1 {
            let now = crate::changes::current_position(db).await?;
            let mut tx = db.begin().await?;
            set_cursor(&mut tx, now.0, now.1).await?;
            tx.commit().await?;
        }
    }
    let row = sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE endpoint = $1"
    ))
    .bind(endpoint)
    .fetch_one(db.writer())
    .await?;
    Ok((row, inserted))
}

/// Whether anyone has a subscription at all.
pub async fn any(db: &Db) -> AppResult<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM push_subscriptions LIMIT 1")
        .fetch_optional(db.reader())
        .await?;
    Ok(found.is_some())
}

pub async fn list_for_user(db: &Db, user_id: &str) -> AppResult<Vec<SubscriptionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE user_id = $1 ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(db.reader())
    .await?)
}

/// The subscriptions of these users whose sessions are still signed in.
pub async fn live_for_users(db: &Db, user_ids: &[String]) -> AppResult<Vec<SubscriptionRow>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT p.id, p.user_id, p.session_id, p.kind, p.endpoint, p.p256dh, p.auth, p.token, p.created_at \
         FROM push_subscriptions p JOIN sessions s ON s.id = p.session_id \
         WHERE s.revoked_at IS NULL AND p.user_id IN ({}) ORDER BY p.id",
        db.slots().in_list(user_ids, &mut params)
    );
    db.rows_once(sql, params, |r| {
        Ok(SubscriptionRow {
            id: r.get(0)?,
            user_id: r.get(1)?,
            session_id: r.get(2)?,
            kind: r.get(3)?,
            endpoint: r.get(4)?,
            p256dh: r.get(5)?,
            auth: r.get(6)?,
            token: r.get(7)?,
            created_at: r.get(8)?,
        })
    })
    .await
}

pub async fn find(db: &Db, id: &str) -> AppResult<Option<SubscriptionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.reader())
    .await?)
}

/// Removes one of the user's subscriptions; `false` if they have none with this id.
pub async fn delete(db: &Db, user_id: &str, id: &str) -> AppResult<bool> {
    Ok(
        sqlx::query("DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(db.writer())
            .await?
            .rows_affected()
            == 1,
    )
}

/// A push service said the subscription is gone (404, 410).
pub async fn remove_dead(db: &Db, id: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Marks a notification of `conversation_id` as waiting for the subscription; `false` when one
/// waits already (the burst collapses into it).
pub async fn mark_pending(
    tx: &mut Tx,
    subscription_id: &str,
    conversation_id: &str,
) -> AppResult<bool> {
    Ok(sqlx::query(
        "INSERT INTO push_pending (subscription_id, conversation_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (subscription_id, conversation_id) DO NOTHING",
    )
    .bind(subscription_id)
    .bind(conversation_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}

/// The notification is going out: later messages start a new one.
pub async fn clear_pending(db: &Db, subscription_id: &str, conversation_id: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM push_pending WHERE subscription_id = $1 AND conversation_id = $2")
        .bind(subscription_id)
        .bind(conversation_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

pub async fn cursor(db: &Db) -> AppResult<Option<(i64, i64)>> {
    Ok(
        sqlx::query_as("SELECT txid, pos FROM push_cursor WHERE id = 1")
            .fetch_optional(db.reader())
            .await?,
    )
}

pub async fn set_cursor(tx: &mut Tx, txid: i64, pos: i64) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO push_cursor (id, txid, pos) VALUES (1, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET txid = excluded.txid, pos = excluded.pos",
    )
    .bind(txid)
    .bind(pos)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
