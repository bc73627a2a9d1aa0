//! Call queries. Every move of a call's state is one UPDATE guarded by the state it leaves, so
//! of two racing moves exactly one takes effect.

use super::model::{CallRow, Outcome, CALL_COLUMNS, STATE_ACTIVE, STATE_ENDED, STATE_RINGING};
use crate::db::{Db, Tenant, Tx};
use crate::error::AppResult;

pub struct NewCall<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub conversation_id: &'a str,
    pub caller_id: &'a str,
    pub callee_id: &'a str,
    pub media: &'a str,
    pub offer: &'a str,
    pub caller_session: &'a str,
    pub caller_node: &'a str,
    pub started_at: i64,
}

pub async fn insert(tx: &mut Tx, c: &NewCall<'_>) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO calls (id, workspace_id, conversation_id, caller_id, callee_id, media, state, \
         caller_session, caller_node, started_at, offer) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(c.id)
    .bind(c.workspace_id)
    .bind(c.conversation_id)
    .bind(c.caller_id)
    .bind(c.callee_id)
    .bind(c.media)
    .bind(STATE_RINGING)
    .bind(c.caller_session)
    .bind(c.caller_node)
    .bind(c.started_at)
    .bind(c.offer)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Puts the user on the call; `false` when they are on another one already.
pub async fn take_line(tx: &mut Tx, user_id: &str, call_id: &str) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO call_lines (user_id, call_id) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(call_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find(db: &Db, id: &str) -> AppResult<Option<CallRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.reader())
            .await?,
    )
}

/// The call a user is on (ringing or talking), if any.
pub async fn on_line(db: &Db, user_id: &str) -> AppResult<Option<CallRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE id = (SELECT call_id FROM call_lines WHERE user_id = $1)"
    ))
    .bind(user_id)
    .fetch_optional(db.reader())
    .await?)
}

/// The call ringing for `user_id` as its callee, with the caller's offer.
pub async fn ringing_for(db: &Db, user_id: &str) -> AppResult<Option<(CallRow, String)>> {
    let Some(call) = on_line(db, user_id).await? else {
        return Ok(None);
    };
    if call.callee_id != user_id || call.state != STATE_RINGING {
        return Ok(None);
    }
    let offer: Option<String> = sqlx::query_scalar("SELECT offer FROM calls WHERE id = $1")
        .bind(&call.id)
        .fetch_optional(db.reader())
        .await?;
    Ok(offer.map(|o| (call, o)))
}

/// Answered calls with a device on `node`.
pub async fn active_on_node(db: &Db, node: &str) -> AppResult<Vec<CallRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE state = '{STATE_ACTIVE}' \
         AND (caller_node = $1 OR callee_node = $1)"
    ))
    .bind(node)
    .fetch_all(db.reader())
    .await?)
}

/// Answered calls with a device on a node other than `node`.
pub async fn active_elsewhere(db: &Db, node: &str) -> AppResult<Vec<CallRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE state = '{STATE_ACTIVE}' \
         AND (caller_node <> $1 OR callee_node <> $1)"
    ))
    .bind(node)
    .fetch_all(db.reader())
    .await?)
}

/// ringing → active, by the callee's device; `false` when it no longer rang.
pub async fn answer(
    db: &Db,
    id: &str,
    callee_id: &str,
    session: &str,
    node: &str,
    at: i64,
) -> AppResult<bool> {
    let done = sqlx::query(&format!(
        "UPDATE calls SET state = '{STATE_ACTIVE}', answered_at = $1, callee_session = $2, \
         callee_node = $3 WHERE id = $4 AND callee_id = $5 AND state = '{STATE_RINGING}'"
    ))
    .bind(at)
    .bind(session)
    .bind(node)
    .bind(id)
    .bind(callee_id)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// ringing or active → ended, freeing both lines; the row as it ended, or `None` when the call
/// had ended already (or had moved from `from`).
pub async fn finish(
    tx: &mut Tx,
    id: &str,
    from: &str,
    outcome: Outcome,
    at: i64,
) -> AppResult<Option<CallRow>> {
    let done = sqlx::query(&format!(
        "UPDATE calls SET state = '{STATE_ENDED}', outcome = $1, ended_at = $2 \
         WHERE id = $3 AND state = $4"
    ))
    .bind(outcome.as_str())
    .bind(at)
    .bind(id)
    .bind(from)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("DELETE FROM call_lines WHERE call_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(Some(
        sqlx::query_as(&format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1"))
            .bind(id)
            .fetch_one(&mut **tx)
            .await?,
    ))
}

/// The ended calls of `user_id` in the workspace, newest first, before the id `before`.
pub async fn log(
    t: Tenant<'_>,
    user_id: &str,
    before: Option<&str>,
    limit: i64,
) -> AppResult<Vec<CallRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CALL_COLUMNS} FROM calls WHERE workspace_id = $1 AND state = '{STATE_ENDED}' \
         AND (caller_id = $2 OR callee_id = $2) AND ($3 IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(t.workspace_id())
    .bind(user_id)
    .bind(before)
    .bind(limit)
    .fetch_all(t.db().reader())
    .await?)
}
