//! Sessions, refresh tokens, OTP challenges and password resets.

use sqlx::FromRow;

use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::AppResult;

#[derive(Debug, Clone, FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    pub device_name: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked_at: Option<i64>,
}

const SESSION_COLUMNS: &str =
    "id, user_id, device_id, device_name, created_at, last_used_at, revoked_at";

/// Opens a session for a device. A device holds one session: an earlier, still open session of
/// the same user and device id is revoked (its ids are returned so caches can forget them).
pub async fn insert_session(
    tx: &mut Tx,
    user_id: &str,
    device_id: &str,
    device_name: Option<&str>,
) -> AppResult<(SessionRow, Vec<String>)> {
    let now = now_ms();
    let replaced: Vec<String> = sqlx::query_scalar(
        "UPDATE sessions SET revoked_at = $3 WHERE user_id = $1 AND device_id = $2 AND revoked_at IS NULL RETURNING id",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    let row = sqlx::query_as(&format!(
        "INSERT INTO sessions (id, user_id, device_id, device_name, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {SESSION_COLUMNS}"
    ))
    .bind(new_id())
    .bind(user_id)
    .bind(device_id)
    .bind(device_name)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    Ok((row, replaced))
}

pub async fn find_session(db: &Db, id: &str) -> AppResult<Option<SessionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.reader())
    .await?)
}

/// The user's open sessions, newest first.
pub async fn list_sessions(db: &Db, user_id: &str) -> AppResult<Vec<SessionRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
         ORDER BY created_at DESC, id DESC LIMIT 500"
    ))
    .bind(user_id)
    .fetch_all(db.reader())
    .await?)
}

/// Revokes one of the user's sessions; false if there was no such open session.
pub async fn revoke_session(db: &Db, user_id: &str, session_id: &str) -> AppResult<bool> {
    let done = sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every open session of the user; returns their ids.
pub async fn revoke_all_sessions(tx: &mut Tx, user_id: &str) -> AppResult<Vec<String>> {
    Ok(sqlx::query_scalar("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL RETURNING id")
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&mut **tx)
        .await?)
}

pub async fn insert_refresh_token(
    tx: &mut Tx,
    hash: &str,
    session_id: &str,
    expires_at: i64,
) -> AppResult<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash)
        .bind(session_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What presenting a refresh token found.
pub enum RefreshUse {
    /// The token was fresh and is now used; the session may get a new pair.
    Fresh { session_id: String, user_id: String },
    /// The token was used before: its whole family (session) is now revoked.
    Reused { session_id: String },
    /// Unknown, expired, or its session is revoked.
    Invalid,
}

#[derive(FromRow)]
struct RefreshLookup {
    session_id: String,
    used_at: Option<i64>,
    expires_at: i64,
    user_id: String,
    revoked_at: Option<i64>,
}

/// Marks a refresh token used, atomically: of two concurrent presentations of one token,
/// exactly one is `Fresh`.
pub async fn use_refresh_token(tx: &mut Tx, hash: &str) -> AppResult<RefreshUse> {
    let now = now_ms();
    let row: Option<RefreshLookup> = sqlx::query_as(
        "SELECT t.session_id, t.used_at, t.expires_at, s.user_id, s.revoked_at \
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = $1",
    )
    .bind(hash)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(RefreshLookup {
        session_id,
        used_at,
        expires_at,
        user_id,
        revoked_at,
    }) = row
    else {
        return Ok(RefreshUse::Invalid);
    };
    if revoked_at.is_some() {
        return Ok(RefreshUse::Invalid);
    }
    if used_at.is_some() {
        revoke_family(tx, &session_id, now).await?;
        return Ok(RefreshUse::Reused { session_id });
    }
    if expires_at <= now {
        return Ok(RefreshUse::Invalid);
    }
    let marked = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
    )
    .bind(hash)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if marked.rows_affected() == 0 {
        // Another request used it between our read and our write: that is reuse too.
        revoke_family(tx, &session_id, now).await?;
        return Ok(RefreshUse::Reused { session_id });
    }
    sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE id = $1")
        .bind(&session_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(RefreshUse::Fresh {
        session_id,
        user_id,
    })
}

async fn revoke_family(tx: &mut Tx, session_id: &str, now: i64) -> AppResult<()> {
    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(session_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, FromRow)]
pub struct OtpRow {
    pub id: String,
    pub code_hash: String,
    pub attempts: i64,
    pub expires_at: i64,
    pub resend_after: i64,
    pub consumed_at: Option<i64>,
}

/// The phone's challenge.
pub async fn find_otp(db: &Db, phone: &str) -> AppResult<Option<OtpRow>> {
    Ok(sqlx::query_as(
        "SELECT id, code_hash, attempts, expires_at, resend_after, consumed_at FROM otp_challenges WHERE phone = $1",
    )
    .bind(phone)
    .fetch_optional(db.reader())
    .await?)
}

/// Stores a new code for the phone, replacing the old one, unless the old one is still in its
/// resend cooldown (then `None`). One statement, so two concurrent requests cannot both pass.
pub async fn replace_otp(
    db: &Db,
    phone: &str,
    code_hash: &str,
    expires_at: i64,
    resend_after: i64,
) -> AppResult<Option<String>> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "INSERT INTO otp_challenges (id, phone, code_hash, attempts, created_at, expires_at, resend_after) \
         VALUES ($1, $2, $3, 0, $4, $5, $6) \
         ON CONFLICT (phone) DO UPDATE SET id = excluded.id, code_hash = excluded.code_hash, attempts = 0, \
         created_at = excluded.created_at, expires_at = excluded.expires_at, \
         resend_after = excluded.resend_after, consumed_at = NULL \
         WHERE otp_challenges.resend_after <= $4 OR otp_challenges.consumed_at IS NOT NULL \
         RETURNING id",
    )
    .bind(new_id())
    .bind(phone)
    .bind(code_hash)
    .bind(now)
    .bind(expires_at)
    .bind(resend_after)
    .fetch_optional(db.writer())
    .await?)
}

pub async fn delete_otp(db: &Db, id: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM otp_challenges WHERE id = $1")
        .bind(id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Counts a wrong try; returns false if the challenge was already out of tries (or gone).
pub async fn count_otp_attempt(db: &Db, id: &str, max: i64) -> AppResult<bool> {
    let done = sqlx::query(
        "UPDATE otp_challenges SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2",
    )
    .bind(id)
    .bind(max)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Consumes a challenge exactly once (inside the sign-in transaction).
pub async fn consume_otp(tx: &mut Tx, id: &str, max_attempts: i64) -> AppResult<bool> {
    let done = sqlx::query(
        "UPDATE otp_challenges SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL AND attempts < $3",
    )
    .bind(id)
    .bind(now_ms())
    .bind(max_attempts)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The single-use tokens mailed as links, each in its own table.
#[derive(Clone, Copy)]
pub enum LinkToken {
    PasswordReset,
    EmailVerification,
}

/// Stores a mailed link's token (its hash), for `email`, until `expires_at`.
pub async fn insert_link_token(
    db: &Db,
    kind: LinkToken,
    hash: &str,
    user_id: &str,
    email: &str,
    expires_at: i64,
) -> AppResult<()> {
    let table = match kind {
        LinkToken::PasswordReset => "password_resets",
        LinkToken::EmailVerification => "email_verifications",
    };
    let sql = format!(
        "INSERT INTO {table} (token_hash, user_id, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"
    );
    sqlx::query(&sql)
        .bind(hash)
        .bind(user_id)
        .bind(email)
        .bind(now_ms())
        .bind(expires_at)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Uses a reset token exactly once, and spends the user's other reset tokens with it; returns
/// its user and the address it was mailed to.
pub async fn use_password_reset(
    tx: &mut Tx,
    hash: &str,
) -> AppResult<Option<(String, Option<String>)>> {
    let now = now_ms();
    let used: Option<(String, Option<String>)> = sqlx::query_as(
        "UPDATE password_resets SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING user_id, email",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((user_id, _)) = &used {
        sqlx::query(
            "UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(used)
}

/// Uses a verification token exactly once; returns its user and the address it was mailed to.
pub async fn use_email_verification(
    tx: &mut Tx,
    hash: &str,
) -> AppResult<Option<(String, String)>> {
    Ok(sqlx::query_as(
        "UPDATE email_verifications SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING user_id, email",
    )
    .bind(hash)
    .bind(now_ms())
    .fetch_optional(&mut **tx)
    .await?)
}

/// Marks `email` verified for `user_id` if it is still the user's address; `true` if it was.
pub async fn set_email_verified(tx: &mut Tx, user_id: &str, email: &str) -> AppResult<bool> {
    Ok(sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $3) WHERE id = $1 AND email = $2",
    )
    .bind(user_id)
    .bind(email)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1)
}
