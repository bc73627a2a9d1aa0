//! Workspace and membership queries. Reads of one workspace's data take a [`Tenant`].

use sqlx::Row;

use super::{Workspace, WorkspaceMember};
use crate::db::{is_unique_violation, new_id, now_ms, Db, Role, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

/// Creates the default workspace on first start; returns its id.
pub async fn ensure_default(db: &Db) -> anyhow::Result<String> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workspaces (id, name, slug, is_default, settings, created_at, updated_at) \
         SELECT $1, 'Default', 'default', 1, '{}', $2, $2 \
         WHERE NOT EXISTS (SELECT 1 FROM workspaces WHERE is_default = 1)",
    )
    .bind(new_id())
    .bind(now)
    .execute(db.writer())
    .await?;
    let id: String = sqlx::query_scalar("SELECT id FROM workspaces WHERE is_default = 1")
        .fetch_one(db.reader())
        .await?;
    Ok(id)
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.is_default, w.settings, w.created_at, w.updated_at, m.role";

fn workspace_from_row(r: &sqlx::any::AnyRow) -> Result<Workspace, sqlx::Error> {
    let settings: String = r.try_get("settings")?;
    Ok(Workspace {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        is_default: r.try_get::<i64, _>("is_default")? != 0,
        settings: serde_json::from_str(&settings).unwrap_or_else(|_| serde_json::json!({})),
        role: Role::from_db(&r.try_get::<String, _>("role")?),
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

/// The user's workspaces, oldest first, after the id `after`.
pub async fn list_for_user(
    db: &Db,
    user_id: &str,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<Workspace>> {
    let rows = sqlx::query(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.user_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3"
    ))
    .bind(user_id)
    .bind(after.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?;
    Ok(rows
        .iter()
        .map(workspace_from_row)
        .collect::<Result<_, _>>()?)
}

/// The tenant's workspace as its member `user_id` sees it.
pub async fn get(t: Tenant<'_>, user_id: &str) -> AppResult<Workspace> {
    let row = sqlx::query(&format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces w \
         JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $2 WHERE w.id = $1"
    ))
    .bind(t.workspace_id())
    .bind(user_id)
    .fetch_optional(t.db().reader())
    .await?
    .ok_or_else(AppError::not_found)?;
    Ok(workspace_from_row(&row)?)
}

/// The workspace's settings (`{}` for a workspace that is gone).
pub async fn settings(t: Tenant<'_>) -> AppResult<serde_json::Value> {
    let raw: Option<String> = sqlx::query_scalar("SELECT settings FROM workspaces WHERE id = $1")
        .bind(t.workspace_id())
        .fetch_optional(t.db().reader())
        .await?;
    Ok(raw
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({})))
}

/// The workspace's timezone (`settings.timezone`; UTC when unset).
pub async fn timezone(t: Tenant<'_>) -> AppResult<chrono_tz::Tz> {
    let settings = settings(t).await?;
    Ok(settings
        .get("timezone")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(chrono_tz::UTC))
}

pub async fn create(tx: &mut Tx, name: &str, slug: &str, owner_id: &str) -> AppResult<String> {
    let id = new_id();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO workspaces (id, name, slug, is_default, settings, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, '{}', $4, $4)",
    )
    .bind(&id)
    .bind(name)
    .bind(slug)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::new(Code::SlugTaken, "this slug is taken")
        } else {
            e.into()
        }
    })?;
    insert_membership(tx, &id, owner_id, Role::Owner).await?;
    Ok(id)
}

pub async fn update(t: Tenant<'_>, name: Option<&str>, settings: Option<&str>) -> AppResult<()> {
    sqlx::query(
        "UPDATE workspaces SET name = COALESCE($2, name), settings = COALESCE($3, settings), \
         updated_at = $4 WHERE id = $1",
    )
    .bind(t.workspace_id())
    .bind(name)
    .bind(settings)
    .bind(now_ms())
    .execute(t.db().writer())
    .await?;
    Ok(())
}

/// Adds a membership; `AlreadyMember` if there is one.
pub async fn insert_membership(
    tx: &mut Tx,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::new(Code::AlreadyMember, "the user is already a member")
        } else {
            e.into()
        }
    })?;
    if matches!(role, Role::Owner | Role::Admin | Role::Agent) {
        crate::conversations::store::join_channel_conversations(tx, workspace_id, user_id).await?;
    }
    Ok(())
}

/// Invites a user whose address is not verified yet: the membership waits in `invitations`
/// until it is (`AlreadyMember` if either exists).
pub async fn insert_invitation(
    tx: &mut Tx,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> AppResult<()> {
    let member: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    let already = || {
        AppError::new(
            Code::AlreadyMember,
            "the user is already a member or invited",
        )
    };
    if member.is_some() {
        return Err(already());
    }
    sqlx::query(
        "INSERT INTO invitations (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(workspace_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            already()
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// Turns the user's invitations into memberships (their address was just proven); returns
/// the workspaces joined, with the role.
pub async fn accept_invitations(tx: &mut Tx, user_id: &str) -> AppResult<Vec<(String, Role)>> {
    let invited: Vec<(String, String)> =
        sqlx::query_as("DELETE FROM invitations WHERE user_id = $1 RETURNING workspace_id, role")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await?;
    let mut joined = Vec::with_capacity(invited.len());
    for (workspace_id, role) in invited {
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )
        .bind(&workspace_id)
        .bind(user_id)
        .bind(&role)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        joined.push((workspace_id, Role::from_db(&role)));
    }
    Ok(joined)
}

/// Members, and invitations waiting for a verified address (shown as `invited`).
const MEMBERS_AND_INVITED: &str = "SELECT u.id AS user_id, u.display_name, u.email, u.phone, \
    u.is_invited, m.role, m.created_at, m.workspace_id FROM memberships m JOIN users u ON u.id = m.user_id \
    UNION ALL SELECT u.id AS user_id, u.display_name, u.email, u.phone, 1 AS is_invited, i.role, \
    i.created_at, i.workspace_id FROM invitations i JOIN users u ON u.id = i.user_id";

const MEMBER_COLUMNS: &str =
    "x.user_id, x.display_name, x.email, x.phone, x.is_invited, x.role, x.created_at";

fn member_from_row(r: &sqlx::any::AnyRow) -> Result<WorkspaceMember, sqlx::Error> {
    Ok(WorkspaceMember {
        user_id: r.try_get("user_id")?,
        display_name: r.try_get("display_name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        role: Role::from_db(&r.try_get::<String, _>("role")?),
        invited: r.try_get::<i64, _>("is_invited")? != 0,
        joined_at: Timestamp(r.try_get("created_at")?),
    })
}

pub async fn list_members(
    t: Tenant<'_>,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<WorkspaceMember>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM ({MEMBERS_AND_INVITED}) x \
         WHERE x.workspace_id = $1 AND x.user_id > $2 ORDER BY x.user_id LIMIT $3"
    ))
    .bind(t.workspace_id())
    .bind(after.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// The ids of the workspace's owners and admins.
pub async fn admins(t: Tenant<'_>) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT user_id FROM memberships WHERE workspace_id = $1 AND role IN ('owner', 'admin') ORDER BY user_id",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?)
}

pub async fn find_member(t: Tenant<'_>, user_id: &str) -> AppResult<Option<WorkspaceMember>> {
    let row = sqlx::query(&format!(
        "SELECT {MEMBER_COLUMNS} FROM ({MEMBERS_AND_INVITED}) x \
         WHERE x.workspace_id = $1 AND x.user_id = $2"
    ))
    .bind(t.workspace_id())
    .bind(user_id)
    .fetch_optional(t.db().reader())
    .await?;
    Ok(row.as_ref().map(member_from_row).transpose()?)
}

/// Changes a role inside `tx`; refuses to leave the workspace without an owner. Returns the
/// role before.
pub async fn set_role(
    tx: &mut Tx,
    workspace_id: &str,
    user_id: &str,
    role: Role,
) -> AppResult<Role> {
    change_member(
        tx,
        workspace_id,
        user_id,
        "UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2",
        Some(role),
    )
    .await
}

/// Removes a membership inside `tx`; refuses to remove the last owner.
pub async fn remove_member(tx: &mut Tx, workspace_id: &str, user_id: &str) -> AppResult<()> {
    change_member(
        tx,
        workspace_id,
        user_id,
        "DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        None,
    )
    .await
    .map(|_| ())
}

async fn change_member(
    tx: &mut Tx,
    workspace_id: &str,
    user_id: &str,
    sql: &str,
    role: Option<Role>,
) -> AppResult<Role> {
    // Touching the workspace row first serializes concurrent membership changes of one
    // workspace on PostgreSQL (row lock), so two owners demoting each other cannot both pass
    // the check below. SQLite writes are serialized anyway.
    sqlx::query("UPDATE workspaces SET updated_at = $2 WHERE id = $1")
        .bind(workspace_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    let previous: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace_id)
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some(previous) = previous else {
        // An invitation waiting for a verified address changes (or goes) the same way.
        let invitation_sql = sql.replace("memberships", "invitations");
        let mut q = sqlx::query(&invitation_sql)
            .bind(workspace_id)
            .bind(user_id);
        if let Some(role) = role {
            q = q.bind(role.as_str());
        }
        if q.execute(&mut **tx).await?.rows_affected() == 0 {
            return Err(AppError::not_found());
        }
        return Ok(role.unwrap_or(Role::Member));
    };
    let mut q = sqlx::query(sql).bind(workspace_id).bind(user_id);
    if let Some(role) = role {
        q = q.bind(role.as_str());
    }
    q.execute(&mut **tx).await?;
    if previous == "owner" {
        let owners: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships WHERE workspace_id = $1 AND role = 'owner'",
        )
        .bind(workspace_id)
        .fetch_one(&mut **tx)
        .await?;
        if owners == 0 {
            return Err(AppError::new(
                Code::LastOwner,
                "a workspace must keep at least one owner",
            ));
        }
    }
    Ok(Role::from_db(&previous))
}
