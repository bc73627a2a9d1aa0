//! The tenant scope. Store functions for data that belongs to a workspace take a [`Tenant`]
//! instead of a bare [`Db`], so a query for tenant data cannot be written without the
//! workspace it is limited to. Tenants come from an authenticated scope after the caller's
//! membership was checked (`http::Scope::tenant`, a socket's session), or from trusted code
//! that read the workspace from the data it works on (background jobs, the send queue, the
//! demo, `palaver admin`).

use super::Db;

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
}
