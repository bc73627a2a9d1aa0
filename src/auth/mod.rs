//! Sign-in and sessions: password signup/login, phone OTP, rotating single-use refresh tokens
//! with family revocation, logout, password reset, the session list, signing keys and JWKS,
//! and the caller's own account ([`account`]: `/users/me`, its changes and its erasure).
//!
//! A session is one signed-in device and owns one refresh-token family. Access tokens are
//! short-lived EdDSA JWTs naming their session; every request checks the session is still open
//! through [`SessionGate`], which remembers a positive check for at most 5 seconds and forgets
//! it at once when this node revokes the session.

pub mod account;
pub mod keys;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod store;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::{AppError, AppResult};

/// How long a "session is open" answer may be reused without asking the database. Revocations
/// on this node take effect at once; on other nodes (cluster mode) within this time.
const SESSION_CHECK_TTL: Duration = Duration::from_secs(5);
const SESSION_CACHE_MAX: usize = 100_000;

#[derive(Default)]
pub struct SessionGate {
    open: Mutex<HashMap<String, (String, Instant)>>,
}

impl SessionGate {
    pub async fn check(&self, db: &Db, session_id: &str, user_id: &str) -> AppResult<()> {
        if let Some((owner, at)) = self.lock().get(session_id) {
            if owner == user_id && at.elapsed() < SESSION_CHECK_TTL {
                return Ok(());
            }
        }
        let session = store::find_session(db, session_id).await?;
        match session {
            Some(s) if s.user_id == user_id && s.revoked_at.is_none() => {
                let mut open = self.lock();
                if open.len() >= SESSION_CACHE_MAX {
                    open.clear();
                }
                open.insert(session_id.to_owned(), (user_id.to_owned(), Instant::now()));
                Ok(())
            }
            _ => Err(AppError::unauthorized()),
        }
    }

    /// Called after sessions were revoked on this node.
    pub fn forget<S: AsRef<str>>(&self, session_ids: &[S]) {
        let mut open = self.lock();
        for id in session_ids {
            open.remove(id.as_ref());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}
