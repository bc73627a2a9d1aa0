//! `Idempotency-Key` for creates: a retried request with the same key answers what the first
//! one created instead of creating again.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::db::{now_ms, Db, Tx};
use crate::error::{AppError, AppResult, Code};

/// The request's `Idempotency-Key` header, if any (1 to 100 visible ASCII characters).
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdempotencyKey(None)),
            Some(v) => v
                .to_str()
                .ok()
                .filter(|k| {
                    !k.is_empty() && k.len() <= 100 && k.bytes().all(|b| b.is_ascii_graphic())
                })
                .map(|k| IdempotencyKey(Some(k.to_owned())))
                .ok_or_else(|| {
                    AppError::new(
                        Code::BadRequest,
                        "Idempotency-Key must be 1 to 100 visible ASCII characters",
                    )
                }),
        }
    }
}

/// What an earlier request with this key created.
pub async fn find(db: &Db, user_id: &str, scope: &str, key: &str) -> AppResult<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT resource_id FROM idempotency_keys WHERE user_id = $1 AND scope = $2 AND key = $3",
    )
    .bind(user_id)
    .bind(scope)
    .bind(key)
    .fetch_optional(db.reader())
    .await?)
}

/// Records the key in the creating transaction; `false` if a concurrent request recorded it
/// first (the caller then rolls back and answers that request's resource).
pub async fn record(
    tx: &mut Tx,
    user_id: &str,
    scope: &str,
    key: &str,
    resource_id: &str,
) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, scope, key, resource_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, scope, key) DO NOTHING",
    )
    .bind(user_id)
    .bind(scope)
    .bind(key)
    .bind(resource_id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
