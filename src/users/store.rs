//! User, address-book and block queries. Users are global identities; everything that lists or
//! finds *other* users is limited to a workspace through [`Tenant`].

use super::model::{UserRow, USER_COLUMNS};
use crate::db::{is_unique_violation, new_id, now_ms, Db, Tenant, Tx};
use crate::error::{AppError, AppResult, Code};

pub async fn find_by_id(db: &Db, id: &str) -> AppResult<Option<UserRow>> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(db.reader())
            .await?,
    )
}

pub async fn find_by_email(db: &Db, email: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(db.reader())
    .await?)
}

pub async fn find_by_phone(db: &Db, phone: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE phone = $1"
    ))
    .bind(phone)
    .fetch_optional(db.reader())
    .await?)
}

/// Fields of a new user.
pub struct NewUser<'a> {
    pub display_name: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub is_platform_admin: bool,
    pub is_invited: bool,
}

/// Inserts a user; a taken email is `EmailTaken`.
pub async fn insert(tx: &mut Tx, u: NewUser<'_>) -> AppResult<UserRow> {
    let now = now_ms();
    sqlx::query_as(&format!(
        "INSERT INTO users (id, display_name, about, email, phone, password_hash, privacy_last_seen, \
         is_platform_admin, is_invited, created_at, updated_at) \
         VALUES ($1, $2, '', $3, $4, $5, 'everyone', $6, $7, $8, $8) RETURNING {USER_COLUMNS}"
    ))
    .bind(new_id())
    .bind(u.display_name)
    .bind(u.email)
    .bind(u.phone)
    .bind(u.password_hash)
    .bind(u.is_platform_admin as i64)
    .bind(u.is_invited as i64)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::new(Code::EmailTaken, "an account with this email or phone exists")
        } else {
            e.into()
        }
    })
}

/// An invited account is claimed at its first sign-in: it gets a name (and a password), and
/// stops being "invited".
pub async fn claim_invited(
    tx: &mut Tx,
    id: &str,
    display_name: Option<&str>,
    password_hash: Option<&str>,
) -> AppResult<UserRow> {
    Ok(sqlx::query_as(&format!(
        "UPDATE users SET display_name = COALESCE($2, display_name), \
         password_hash = COALESCE($3, password_hash), is_invited = 0, updated_at = $4 \
         WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(display_name)
    .bind(password_hash)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn set_password(tx: &mut Tx, id: &str, password_hash: &str) -> AppResult<()> {
    sqlx::query(
        "UPDATE users SET password_hash = $2, is_invited = 0, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(password_hash)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The editable fields of the caller's profile; `None` leaves a field unchanged.
#[derive(Default)]
pub struct ProfileChange {
    pub display_name: Option<String>,
    pub about: Option<String>,
    pub email: Option<String>,
    pub privacy_last_seen: Option<&'static str>,
    pub push_previews: Option<bool>,
    /// `Some(None)` clears the avatar, `Some(Some(id))` sets it (checked by the caller).
    pub avatar: Option<Option<String>>,
}

pub async fn update_profile(db: &Db, id: &str, c: &ProfileChange) -> AppResult<UserRow> {
    sqlx::query_as(&format!(
        "UPDATE users SET display_name = COALESCE($2, display_name), about = COALESCE($3, about), \
         email_verified_at = CASE WHEN $4 IS NULL OR $4 = email THEN email_verified_at ELSE NULL END, \
         email = COALESCE($4, email), privacy_last_seen = COALESCE($5, privacy_last_seen), \
         avatar_media_id = CASE WHEN $7 = 1 THEN $8 ELSE avatar_media_id END, \
         push_previews = COALESCE($9, push_previews), \
         updated_at = $6 WHERE id = $1 RETURNING {USER_COLUMNS}"
    ))
    .bind(id)
    .bind(c.display_name.as_deref())
    .bind(c.about.as_deref())
    .bind(c.email.as_deref())
    .bind(c.privacy_last_seen)
    .bind(now_ms())
    .bind(c.avatar.is_some() as i64)
    .bind(c.avatar.clone().flatten())
    .bind(c.push_previews.map(i64::from))
    .fetch_one(db.writer())
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            AppError::new(Code::EmailTaken, "another account uses this email")
        } else {
            e.into()
        }
    })
}

/// A member of the tenant's workspace by id.
pub async fn find_member(t: Tenant<'_>, id: &str) -> AppResult<Option<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM users u JOIN memberships m ON m.user_id = u.id AND m.workspace_id = $1 WHERE u.id = $2",
        prefixed_user_columns()
    ))
    .bind(t.workspace_id())
    .bind(id)
    .fetch_optional(t.db().reader())
    .await?)
}

fn prefixed_user_columns() -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a search query matches.
pub enum SearchKey<'a> {
    Phone(&'a str),
    Email(&'a str),
    /// Prefix of the display name or of a word in it, lower-cased.
    Name(&'a str),
}

/// Members of the tenant's workspace matching the key, except the caller and anyone who
/// blocked the caller.
pub async fn search(
    t: Tenant<'_>,
    caller: &str,
    key: SearchKey<'_>,
    limit: i64,
) -> AppResult<Vec<UserRow>> {
    let (condition, value) = match key {
        SearchKey::Phone(p) => ("u.phone = $3", p.to_owned()),
        SearchKey::Email(e) => ("u.email = $3", e.to_owned()),
        SearchKey::Name(n) => {
            let escaped = n
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            ("(lower(u.display_name) LIKE $3 || '%' ESCAPE '\\' OR lower(u.display_name) LIKE '% ' || $3 || '%' ESCAPE '\\')", escaped)
        }
    };
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM users u JOIN memberships m ON m.user_id = u.id AND m.workspace_id = $1 \
         WHERE u.id <> $2 AND {condition} \
         AND NOT EXISTS (SELECT 1 FROM blocks b WHERE b.blocker_id = u.id AND b.blocked_id = $2) \
         ORDER BY lower(u.display_name), u.id LIMIT $4",
        prefixed_user_columns()
    ))
    .bind(t.workspace_id())
    .bind(caller)
    .bind(value)
    .bind(limit)
    .fetch_all(t.db().reader())
    .await?)
}

/// Stores phones in the owner's address book (adding to what is there).
pub async fn add_to_address_book(db: &Db, owner: &str, phones: &[String]) -> AppResult<()> {
    let mut tx = db.begin().await?;
    let now = now_ms();
    for phone in phones {
        sqlx::query(
            "INSERT INTO address_book (owner_id, phone, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (owner_id, phone) DO NOTHING",
        )
        .bind(owner)
        .bind(phone)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The owner's address-book entries that are members of the tenant's workspace, by name.
/// `phones` limits the answer to those numbers.
pub async fn contacts(
    t: Tenant<'_>,
    owner: &str,
    phones: Option<&[String]>,
    after: Option<(String, String)>,
    limit: i64,
) -> AppResult<Vec<UserRow>> {
    let (after_name, after_id) = after.unwrap_or_default();
    let phone_filter = match phones {
        Some([]) => return Ok(Vec::new()),
        Some(list) => {
            let params: Vec<String> = (0..list.len()).map(|i| format!("${}", i + 6)).collect();
            format!("AND a.phone IN ({})", params.join(", "))
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM address_book a JOIN users u ON u.phone = a.phone \
         JOIN memberships m ON m.user_id = u.id AND m.workspace_id = $1 \
         WHERE a.owner_id = $2 AND u.id <> $2 {phone_filter} \
         AND (lower(u.display_name) > $3 OR (lower(u.display_name) = $3 AND u.id > $4)) \
         ORDER BY lower(u.display_name), u.id LIMIT $5",
        prefixed_user_columns()
    );
    let mut query = sqlx::query_as(&sql)
        .bind(t.workspace_id())
        .bind(owner)
        .bind(after_name)
        .bind(after_id)
        .bind(limit);
    for phone in phones.unwrap_or_default() {
        query = query.bind(phone);
    }
    Ok(query.fetch_all(t.db().reader()).await?)
}

/// Does `owner` have `phone` in their address book?
pub async fn has_in_address_book(db: &Db, owner: &str, phone: &str) -> AppResult<bool> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM address_book WHERE owner_id = $1 AND phone = $2")
            .bind(owner)
            .bind(phone)
            .fetch_one(db.reader())
            .await?;
    Ok(n > 0)
}

/// Is there a block between the two users, in either direction?
pub async fn blocked_either_way(db: &Db, a: &str, b: &str) -> AppResult<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM blocks WHERE (blocker_id = $1 AND blocked_id = $2) OR (blocker_id = $2 AND blocked_id = $1)",
    )
    .bind(a)
    .bind(b)
    .fetch_one(db.reader())
    .await?;
    Ok(n > 0)
}

pub async fn block(db: &Db, blocker: &str, blocked: &str) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO blocks (blocker_id, blocked_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
    )
    .bind(blocker)
    .bind(blocked)
    .bind(now_ms())
    .execute(db.writer())
    .await?;
    Ok(())
}

pub async fn unblock(db: &Db, blocker: &str, blocked: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
        .bind(blocker)
        .bind(blocked)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// The users `blocker` blocked, newest id first after the cursor.
pub async fn list_blocked(
    db: &Db,
    blocker: &str,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM blocks b JOIN users u ON u.id = b.blocked_id \
         WHERE b.blocker_id = $1 AND u.id > $2 ORDER BY u.id LIMIT $3",
        prefixed_user_columns()
    ))
    .bind(blocker)
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(db.reader())
    .await?)
}
