//! Media queries. Who may read a media item is decided by [`readable`] alone.

use crate::db::{Db, Tenant, Tx};
use crate::error::AppResult;

use super::model::{MediaRow, MEDIA_COLUMNS};

pub struct NewMedia<'a> {
    pub id: &'a str,
    pub owner_id: Option<&'a str>,
    pub kind: &'a str,
    pub content_type: &'a str,
    pub size: i64,
    pub sha256: &'a str,
    pub file_name: Option<&'a str>,
    pub storage_key: &'a str,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub text_state: &'a str,
    pub created_at: i64,
}

pub async fn insert(tx: &mut Tx, t: Tenant<'_>, m: NewMedia<'_>) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO media (id, workspace_id, owner_id, kind, content_type, size, sha256, file_name, \
         storage_key, width, height, text_state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(m.id)
    .bind(t.workspace_id())
    .bind(m.owner_id)
    .bind(m.kind)
    .bind(m.content_type)
    .bind(m.size)
    .bind(m.sha256)
    .bind(m.file_name)
    .bind(m.storage_key)
    .bind(m.width)
    .bind(m.height)
    .bind(m.text_state)
    .bind(m.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The media item if `user` may read it, else `None` (the caller answers 404 either way):
/// - its uploader;
/// - a member of a conversation with a message (not deleted for everyone) that carries it,
///   within the part of the conversation the member sees (a removed member keeps what was
///   sent before the removal);
/// - a current member of a group whose avatar it is;
/// - anyone in the caller's workspace, when it is the avatar of a user of that workspace.
pub async fn readable(t: Tenant<'_>, user: &str, media_id: &str) -> AppResult<Option<MediaRow>> {
    let sql = format!(
        "SELECT {MEDIA_COLUMNS} FROM media m WHERE m.id = $1 AND ( \
           (m.workspace_id = $2 AND ( \
             m.owner_id = $3 \
             OR EXISTS (SELECT 1 FROM messages msg \
                 JOIN conversation_members cm ON cm.conversation_id = msg.conversation_id AND cm.user_id = $3 \
                 WHERE msg.media_id = m.id AND msg.deleted_at IS NULL AND msg.seq > cm.joined_seq \
                   AND (cm.left_seq IS NULL OR msg.seq <= cm.left_seq)) \
             OR EXISTS (SELECT 1 FROM conversations c \
                 JOIN conversation_members cm ON cm.conversation_id = c.id AND cm.user_id = $3 \
                 WHERE c.avatar_media_id = m.id AND c.workspace_id = $2 AND cm.left_at IS NULL))) \
           OR EXISTS (SELECT 1 FROM users u JOIN memberships ms ON ms.user_id = u.id \
                 WHERE u.avatar_media_id = m.id AND ms.workspace_id = $2))"
    );
    Ok(sqlx::query_as(&sql)
        .bind(media_id)
        .bind(t.workspace_id())
        .bind(user)
        .fetch_optional(t.db().reader())
        .await?)
}

/// Any media item by id (jobs, and views of messages already checked).
pub async fn find(db: &Db, id: &str) -> AppResult<Option<MediaRow>> {
    let sql = format!("SELECT {MEDIA_COLUMNS} FROM media m WHERE m.id = $1");
    Ok(sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(db.reader())
        .await?)
}

pub async fn find_many(db: &Db, ids: &[String]) -> AppResult<Vec<MediaRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT {MEDIA_COLUMNS} FROM media m WHERE m.id IN ({})",
        db.slots().in_list(ids, &mut params)
    );
    db.rows_once(sql, params, MediaRow::from_lite).await
}

/// What the analysis found.
#[derive(Debug, Default)]
pub struct Analysis {
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub duration_ms: Option<i64>,
    pub pages: Option<i64>,
    pub thumbnail_key: Option<String>,
}

pub async fn set_analysis(tx: &mut Tx, id: &str, a: &Analysis, at: i64) -> AppResult<bool> {
    let done = sqlx::query(
        "UPDATE media SET width = COALESCE($1, width), height = COALESCE($2, height), \
         duration_ms = $3, pages = $4, thumbnail_key = $5, analyzed_at = $6 WHERE id = $7",
    )
    .bind(a.width)
    .bind(a.height)
    .bind(a.duration_ms)
    .bind(a.pages)
    .bind(a.thumbnail_key.as_deref())
    .bind(at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn set_text(
    db: &Db,
    id: &str,
    state: &str,
    source: Option<&str>,
    text: Option<&str>,
) -> AppResult<()> {
    db.write(
        sqlx::query("UPDATE media SET text_state = $1, text_source = $2, text = $3 WHERE id = $4")
            .bind(state)
            .bind(source)
            .bind(text)
            .bind(id),
    )
    .await?;
    Ok(())
}

/// Messages (not deleted) that carry a media item: (id, conversation, seq).
pub async fn messages_with(tx: &mut Tx, media_id: &str) -> AppResult<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT id, conversation_id, seq FROM messages WHERE media_id = $1 AND deleted_at IS NULL",
    )
    .bind(media_id)
    .fetch_all(&mut **tx)
    .await?)
}

/// The condition of a media row `m` that nothing references.
const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM messages msg WHERE msg.media_id = m.id) \
    AND NOT EXISTS (SELECT 1 FROM users u WHERE u.avatar_media_id = m.id) \
    AND NOT EXISTS (SELECT 1 FROM conversations c WHERE c.avatar_media_id = m.id)";

/// Up to `limit` uploads older than `before` that no message or avatar references.
pub async fn unreferenced(
    db: &Db,
    before: i64,
    limit: i64,
) -> AppResult<Vec<(String, String, Option<String>)>> {
    let sql = format!(
        "SELECT m.id, m.storage_key, m.thumbnail_key FROM media m \
         WHERE m.created_at < $1 AND {UNREFERENCED} ORDER BY m.created_at LIMIT $2"
    );
    Ok(sqlx::query_as(&sql)
        .bind(before)
        .bind(limit)
        .fetch_all(db.reader())
        .await?)
}

/// Deletes a media row if it is still unreferenced (a message may have picked it up since it
/// was listed); true when it was deleted.
pub async fn delete_if_unreferenced(tx: &mut Tx, id: &str) -> AppResult<bool> {
    let sql = format!("DELETE FROM media WHERE id = $1 AND id IN (SELECT m.id FROM media m WHERE m.id = $1 AND {UNREFERENCED})");
    Ok(sqlx::query(&sql)
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
        > 0)
}

/// Deletes every media row a user uploaded; returns the storage keys to delete.
pub async fn delete_owned_by(tx: &mut Tx, user: &str) -> AppResult<Vec<String>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "DELETE FROM media WHERE owner_id = $1 RETURNING storage_key, thumbnail_key",
    )
    .bind(user)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .flat_map(|(key, thumb)| std::iter::once(key).chain(thumb))
        .collect())
}
