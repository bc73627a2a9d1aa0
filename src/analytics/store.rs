//! The queries analytics reads: the facts `conversations::facts` keeps, in a range, and the
//! names they point at. Each is one indexed range scan of the workspace.

use crate::db::Tenant;
use crate::error::AppResult;

/// A row of `inbox_events`.
#[derive(Debug, sqlx::FromRow)]
pub struct Event {
    pub kind: String,
    pub channel_id: Option<String>,
    pub agent_id: Option<String>,
    pub at: i64,
    pub since: Option<i64>,
    pub first: i64,
}

pub async fn events(t: Tenant<'_>, from: i64, to: i64) -> AppResult<Vec<Event>> {
    Ok(sqlx::query_as(
        "SELECT kind, channel_id, agent_id, at, since, first FROM inbox_events \
         WHERE workspace_id = $1 AND at >= $2 AND at < $3",
    )
    .bind(t.workspace_id())
    .bind(from)
    .bind(to)
    .fetch_all(t.db().reader())
    .await?)
}

/// A row of `inbox_traffic` (`channel_id` and `agent_id` are `''` for none).
#[derive(Debug, sqlx::FromRow)]
pub struct Traffic {
    pub bucket: i64,
    pub channel_id: String,
    pub agent_id: String,
    pub direction: String,
    pub messages: i64,
}

/// The quarter hours that start in `[from, to)`.
pub async fn traffic(t: Tenant<'_>, from: i64, to: i64) -> AppResult<Vec<Traffic>> {
    Ok(sqlx::query_as(
        "SELECT bucket, channel_id, agent_id, direction, messages FROM inbox_traffic \
         WHERE workspace_id = $1 AND bucket >= $2 AND bucket < $3",
    )
    .bind(t.workspace_id())
    .bind(from)
    .bind(to)
    .fetch_all(t.db().reader())
    .await?)
}

/// The workspace's owners, admins and agents: id, name, role.
pub async fn agents(t: Tenant<'_>) -> AppResult<Vec<(String, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.workspace_id = $1 AND m.role IN ('owner', 'admin', 'agent') ORDER BY u.display_name, m.user_id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

/// The workspace's channels: id and name.
pub async fn channels(t: Tenant<'_>) -> AppResult<Vec<(String, Option<String>)>> {
    Ok(sqlx::query_as(
        "SELECT id, name FROM channels WHERE workspace_id = $1 ORDER BY created_at, id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

/// The campaigns that started in `[from, to)`, the first 200: id, name, status, start.
pub async fn campaigns(
    t: Tenant<'_>,
    from: i64,
    to: i64,
) -> AppResult<Vec<(String, String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, name, status, started_at FROM campaigns \
         WHERE workspace_id = $1 AND started_at >= $2 AND started_at < $3 ORDER BY started_at, id LIMIT 200",
    )
    .bind(t.workspace_id())
    .bind(from)
    .bind(to)
    .fetch_all(t.db().reader())
    .await?)
}
