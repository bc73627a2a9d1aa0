//! The support desk: an app user writes to a workspace's team (a patient to "the pharmacy"),
//! any of its agents answers. One `support` conversation per (workspace, customer), found or
//! made by `POST /support`; the customer is its member with a lead of their own, the
//! workspace's owners, admins and agents are the other members by their role.

use super::leads;
use crate::changes;
use crate::conversations::desk::{DeskSettings, WhoMayWrite};
use crate::conversations::model::{MemberRole, RequestState};
use crate::conversations::store;
use crate::db::{new_id, now_ms, Db, Role, Tenant, Tx};
use crate::error::{AppError, AppResult};

/// The workspace's name and desk settings; `None` when there is no such workspace.
pub async fn desk(db: &Db, workspace_id: &str) -> AppResult<Option<(String, DeskSettings)>> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, settings FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(db.reader())
            .await?;
    Ok(row.map(|(name, settings)| (name, DeskSettings::of_workspace(&settings))))
}

/// The customer's support conversation with the workspace: (id, made now). A user who may not
/// write to the desk (it is off, or only for members) gets the same 404 as for a workspace that
/// does not exist.
pub async fn open(db: &Db, workspace_id: &str, user_id: &str) -> AppResult<(String, bool)> {
    let (name, settings) = desk(db, workspace_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    let t = Tenant::new(db, workspace_id);
    let role = t.role_of(user_id).await?;
    let allowed =
        settings.enabled && (role.is_some() || settings.who_may_write == WhoMayWrite::Anyone);
    if !allowed {
        return Err(AppError::not_found());
    }
    let key = format!("support:{workspace_id}:{user_id}");
    if let Some(id) = by_key(db, &key).await? {
        return Ok((id, false));
    }
    let mut tx = db.begin().await?;
    if role.is_none() {
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )
        .bind(workspace_id)
        .bind(user_id)
        .bind(Role::Member.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    let made = make(&mut tx, t, &name, user_id, &key).await?;
    db.commit(tx).await?;
    match made {
        Some(id) => Ok((id, true)),
        // Another request of the same customer made it first.
        None => Ok((
            by_key(db, &key).await?.ok_or_else(AppError::not_found)?,
            false,
        )),
    }
}

async fn by_key(db: &Db, key: &str) -> AppResult<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM conversations WHERE channel_key = $1")
            .bind(key)
            .fetch_optional(db.reader())
            .await?,
    )
}

async fn make(
    tx: &mut Tx,
    t: Tenant<'_>,
    title: &str,
    user_id: &str,
    key: &str,
) -> AppResult<Option<String>> {
    let lead = leads::for_user(tx, t, user_id).await?;
    let id = new_id();
    let now = now_ms();
    let made = sqlx::query(
        "INSERT INTO conversations (id, workspace_id, kind, title, created_by, last_seq, last_activity_at, \
         created_at, updated_at, lead_id, channel_key, inbox_status, inbox_at) \
         VALUES ($1, $2, 'support', $3, $4, 0, $5, $5, $5, $6, $7, 'open', $5) \
         ON CONFLICT (channel_key) WHERE channel_key IS NOT NULL DO NOTHING",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(title)
    .bind(user_id)
    .bind(now)
    .bind(&lead.id)
    .bind(key)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if made == 0 {
        return Ok(None);
    }
    store::upsert_member(
        tx,
        &id,
        user_id,
        MemberRole::Member,
        0,
        RequestState::Accepted,
    )
    .await?;
    store::join_inbox(tx, &id).await?;
    changes::conversation_updated(tx, &id, None).await?;
    crate::conversations::facts::status_moved(tx, &id, None, "open", now_ms()).await?;
    store::opened(tx, &id, false).await?;
    Ok(Some(id))
}
