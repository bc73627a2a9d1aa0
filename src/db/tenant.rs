//! The tenant scope. Store functions for data that belongs to a workspace take a [`Tenant`]
//! instead of a bare [`Db`], so a query for tenant data cannot be written without the
//! workspace it is limited to. Tenants come from an authenticated scope after the caller's
//! membership was checked (`http::Scope::tenant`, a socket's session), or from trusted code
//! that read the workspace from the data it works on (background jobs, the send queue, the
//! demo, `palaver admin`).
//!
//! The caller's [`Role`] in a workspace is read here too, with the two lookups every
//! transport uses to pick the workspace a request acts in: authorization sits beside the
//! scope it guards, below every capability.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::Db;
use crate::error::AppResult;

#[derive(Clone, Copy)]
pub struct Tenant<'a> {
    db: &'a Db,
    workspace_id: &'a str,
}

impl<'a> Tenant<'a> {
    /// Only this crate builds tenants: from a checked scope or a row's own workspace.
    pub(crate) fn new(db: &'a Db, workspace_id: &'a str) -> Self {
        Self { db, workspace_id }
    }

    pub fn db(&self) -> &'a Db {
        self.db
    }

    pub fn workspace_id(&self) -> &'a str {
        self.workspace_id
    }

    /// This user's role in the workspace, if they belong to it.
    pub async fn role_of(&self, user_id: &str) -> AppResult<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2",
        )
        .bind(self.workspace_id)
        .bind(user_id)
        .fetch_optional(self.db.reader())
        .await?;
        Ok(role.as_deref().map(Role::from_db))
    }
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Agent,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Member => "member",
        }
    }

    pub fn from_db(s: &str) -> Role {
        match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "agent" => Role::Agent,
            _ => Role::Member,
        }
    }

    /// Owners, admins and agents work the workspace's inbox.
    pub fn works_inbox(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Agent)
    }
}

fn role_of(row: &sqlx::any::AnyRow) -> Result<(String, Role), sqlx::Error> {
    Ok((
        row.try_get("id")?,
        Role::from_db(&row.try_get::<String, _>("role")?),
    ))
}

/// The caller's membership in the workspace with this id or slug: its id and their role.
pub async fn find_membership_by_ref(
    db: &Db,
    user_id: &str,
    id_or_slug: &str,
) -> AppResult<Option<(String, Role)>> {
    let row = sqlx::query(
        "SELECT w.id, m.role FROM workspaces w \
         JOIN memberships m ON m.workspace_id = w.id AND m.user_id = $1 \
         WHERE w.id = $2 OR w.slug = $2",
    )
    .bind(user_id)
    .bind(id_or_slug)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|r| role_of(&r)).transpose()?)
}

/// The workspace a request acts in without a `Palaver-Workspace` header: the default workspace
/// when the user belongs to it, else their oldest membership.
pub async fn default_membership(db: &Db, user_id: &str) -> AppResult<Option<(String, Role)>> {
    let row = sqlx::query(
        "SELECT w.id, m.role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id \
         WHERE m.user_id = $1 ORDER BY w.is_default DESC, m.created_at, w.id LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|r| role_of(&r)).transpose()?)
}
