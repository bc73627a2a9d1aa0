//! The tenant scope. Store functions for data that belongs to a workspace take a [`Tenant`]
//! instead of a bare [`Db`]: the only way to get one is from an authenticated request scope
//! (`http::Scope::tenant`) after the caller's membership was checked, so a query for tenant data
//! cannot be written without the workspace it is limited to.

use super::Db;

#[derive(Clone, Copy)]
pub struct Tenant<'a> {
    db: &'a Db,
    workspace_id: &'a str,
}

impl<'a> Tenant<'a> {
    /// Only the request scope (and trusted tooling such as `palaver admin`) builds tenants.
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
