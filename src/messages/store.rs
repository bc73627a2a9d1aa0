//! Message, reaction and receipt queries.

use super::model::{MessageRow, MESSAGE_COLUMNS};
use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::AppResult;

pub struct NewMessage<'a> {
    pub conversation_id: &'a str,
    pub seq: i64,
    pub sender_type: &'static str,
    pub sender_id: Option<&'a str>,
    pub client_msg_id: Option<&'a str>,
    pub kind: &'static str,
    pub text: Option<&'a str>,
    pub media_id: Option<&'a str>,
    pub reply_to_id: Option<&'a str>,
    pub forwarded: bool,
    pub payload: Option<&'a str>,
    /// Channel messages: the provider's id and status.
    pub external_id: Option<&'a str>,
    pub external_status: Option<&'a str>,
    /// When it was sent (the provider's time for inbound channel messages); now if `None`.
    pub created_at: Option<i64>,
}

/// Inserts a message; a unique violation on (sender, clientMsgId) is left to the caller.
pub async fn insert(tx: &mut Tx, m: NewMessage<'_>) -> Result<MessageRow, sqlx::Error> {
    let returning = MESSAGE_COLUMNS.replace("msg.", "");
    sqlx::query_as(&format!(
        "INSERT INTO messages (id, conversation_id, seq, sender_type, sender_id, client_msg_id, type, text, \
         media_id, reply_to_id, forwarded, payload, created_at, external_id, external_status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING {returning}"
    ))
    .bind(new_id())
    .bind(m.conversation_id)
    .bind(m.seq)
    .bind(m.sender_type)
    .bind(m.sender_id)
    .bind(m.client_msg_id)
    .bind(m.kind)
    .bind(m.text)
    .bind(m.media_id)
    .bind(m.reply_to_id)
    .bind(m.forwarded as i64)
    .bind(m.payload)
    .bind(m.created_at.unwrap_or_else(now_ms))
    .bind(m.external_id)
    .bind(m.external_status)
    .fetch_one(&mut **tx)
    .await
}

pub async fn find(db: &Db, id: &str) -> AppResult<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.id = $1"
    ))
    .bind(id)
    .fetch_optional(db.reader())
    .await?)
}

pub async fn find_in_tx(tx: &mut Tx, id: &str) -> AppResult<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?)
}

pub async fn find_by_client_id(
    db: &Db,
    sender_id: &str,
    client_msg_id: &str,
) -> AppResult<Option<MessageRow>> {
    Ok(sqlx::query_as(&format!("SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.sender_id = $1 AND msg.client_msg_id = $2"))
        .bind(sender_id)
        .bind(client_msg_id)
        .fetch_optional(db.reader())
        .await?)
}

/// Messages by id (for reply previews and change replays).
pub async fn find_many(db: &Db, ids: &[String]) -> AppResult<Vec<MessageRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.id IN ({})",
        db.slots().in_list(ids, &mut params)
    );
    db.rows_once(sql, params, MessageRow::from_lite).await
}

/// The last message of each conversation at its `last_seq`.
pub async fn last_messages(db: &Db, conversations: &[(String, i64)]) -> AppResult<Vec<MessageRow>> {
    let wanted: Vec<&(String, i64)> = conversations.iter().filter(|(_, seq)| *seq > 0).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let mut slots = db.slots();
    let pairs: Vec<String> = (0..wanted.len())
        .map(|_| {
            format!(
                "(msg.conversation_id = {} AND msg.seq = {})",
                slots.take(),
                slots.take()
            )
        })
        .collect();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE {}",
        pairs.join(" OR ")
    );
    use crate::db::lite::{text, Value};
    let params = wanted
        .iter()
        .flat_map(|(id, seq)| [text(id), Value::Integer(*seq)])
        .collect();
    db.rows_once(sql, params, MessageRow::from_lite).await
}

/// Which way a history page goes from its anchor.
pub enum Direction {
    /// The `limit` messages just below `seq`.
    Before(i64),
    /// The `limit` messages just above `seq`.
    After(i64),
    Latest,
}

/// A page of history within [from_seq, to_seq] (the reader's window), minus what the reader
/// deleted for themself; answered ascending.
pub async fn page(
    db: &Db,
    conversation_id: &str,
    reader: &str,
    from_seq: i64,
    to_seq: i64,
    dir: &Direction,
    limit: i64,
) -> AppResult<Vec<MessageRow>> {
    let (bound, order, anchor) = match dir {
        Direction::Before(s) => ("msg.seq < $5", "DESC", *s),
        Direction::After(s) => ("msg.seq > $5", "ASC", *s),
        Direction::Latest => ("$5 = $5", "DESC", 0),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages msg WHERE msg.conversation_id = $1 AND msg.seq >= $3 AND msg.seq <= $4 AND {bound} \
         AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $2 AND h.message_id = msg.id) \
         ORDER BY msg.seq {order} LIMIT $6"
    );
    use crate::db::lite::{text, Value};
    let params = vec![
        text(conversation_id),
        text(reader),
        Value::Integer(from_seq),
        Value::Integer(to_seq),
        Value::Integer(anchor),
        Value::Integer(limit),
    ];
    let mut rows = db.rows(sql, params, MessageRow::from_lite).await?;
    rows.sort_by_key(|m| m.seq);
    Ok(rows)
}

/// (message id, reactor type, reactor id, emoji) of the messages, oldest reaction first.
pub async fn reactions(
    db: &Db,
    message_ids: &[String],
) -> AppResult<Vec<(String, String, String, String)>> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT message_id, reactor_type, reactor_id, emoji FROM reactions WHERE message_id IN ({}) ORDER BY created_at, reactor_id",
        db.slots().in_list(message_ids, &mut params)
    );
    db.rows_once(sql, params, |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .await
}

/// The marks every side of a conversation has reached, from its current members' marks, in one
/// statement for all of `conversation_ids`. A side is one member, except in a support
/// conversation, where the team is one side (its furthest agent) and the customer the other: a
/// customer's message is read when an agent read it. A member with a pending message request
/// counts as having read nothing.
const FLOORS: &str = "SELECT conversation_id, MIN(d), MIN(r) FROM ( \
     SELECT m.conversation_id, MAX(m.delivered_seq) AS d, \
     MAX(CASE WHEN m.request_state = 'pending' THEN 0 ELSE m.read_seq END) AS r \
     FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
     WHERE m.left_at IS NULL AND m.conversation_id IN ({}) \
     GROUP BY m.conversation_id, \
     CASE WHEN c.kind = 'support' AND m.user_id <> c.created_by THEN '' ELSE m.user_id END \
    ) sides GROUP BY conversation_id";

/// (deliveredSeq, readSeq) that every side of the conversation has reached (see [`FLOORS`]).
pub async fn receipt_floor(db: &Db, conversation_id: &str) -> AppResult<(i64, i64)> {
    let floors = receipt_floors(db, &[conversation_id.to_owned()]).await?;
    Ok(floors.get(conversation_id).copied().unwrap_or((0, 0)))
}

/// [`receipt_floor`] of many conversations in one query.
pub async fn receipt_floors(
    db: &Db,
    conversation_ids: &[String],
) -> AppResult<std::collections::HashMap<String, (i64, i64)>> {
    if conversation_ids.is_empty() {
        return Ok(Default::default());
    }
    let mut params = Vec::new();
    let sql = FLOORS.replace("{}", &db.slots().in_list(conversation_ids, &mut params));
    let rows: Vec<(String, Option<i64>, Option<i64>)> = db
        .rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(c, d, r)| (c, (d.unwrap_or(0), r.unwrap_or(0))))
        .collect())
}

/// [`receipt_floor`] on a SQLite reader already held (a sync page written as it is read).
pub fn receipt_floor_on(
    conn: &rusqlite::Connection,
    conversation_id: &str,
) -> rusqlite::Result<(i64, i64)> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| FLOORS.replace("{}", "?1"));
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut rows = stmt.query([conversation_id])?;
    let Some(row) = rows.next()? else {
        return Ok((0, 0));
    };
    let (d, r): (Option<i64>, Option<i64>) = (row.get(1)?, row.get(2)?);
    Ok((d.unwrap_or(0), r.unwrap_or(0)))
}

pub async fn edit_text(tx: &mut Tx, id: &str, old_text: &str, new_text: &str) -> AppResult<()> {
    let now = now_ms();
    sqlx::query("INSERT INTO message_edits (message_id, text, replaced_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(old_text)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE messages SET text = $2, edited_at = $3 WHERE id = $1")
        .bind(id)
        .bind(new_text)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Deletes for everyone: the row stays as a tombstone (id, seq, sender, time); content,
/// media link, reactions and edit history go.
pub async fn tombstone(tx: &mut Tx, id: &str) -> AppResult<()> {
    sqlx::query(
        "UPDATE messages SET text = NULL, media_id = NULL, payload = NULL, reply_to_id = NULL, edited_at = NULL, deleted_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    for table in ["reactions", "message_edits"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE message_id = $1"))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn hide_for(db: &Db, message_id: &str, user_id: &str) -> AppResult<()> {
    sqlx::query("INSERT INTO message_hidden (message_id, user_id) VALUES ($1, $2) ON CONFLICT (user_id, message_id) DO NOTHING")
        .bind(message_id)
        .bind(user_id)
        .execute(db.writer())
        .await?;
    Ok(())
}

/// Sets or replaces the user's reaction; false if it was already this emoji.
pub async fn set_reaction(
    tx: &mut Tx,
    message_id: &str,
    user_id: &str,
    emoji: &str,
) -> AppResult<bool> {
    let done = sqlx::query(
        "INSERT INTO reactions (message_id, reactor_type, reactor_id, emoji, created_at) VALUES ($1, 'user', $2, $3, $4) \
         ON CONFLICT (message_id, reactor_type, reactor_id) DO UPDATE SET emoji = excluded.emoji, created_at = excluded.created_at \
         WHERE reactions.emoji <> excluded.emoji",
    )
    .bind(message_id)
    .bind(user_id)
    .bind(emoji)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes the user's reaction; false if there was none.
pub async fn remove_reaction(tx: &mut Tx, message_id: &str, user_id: &str) -> AppResult<bool> {
    let done = sqlx::query(
        "DELETE FROM reactions WHERE message_id = $1 AND reactor_type = 'user' AND reactor_id = $2",
    )
    .bind(message_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves a member's delivered (and, for `read`, read) position forward to `seq`, never back.
/// Returns which of (delivered, read) moved.
pub async fn advance_receipts(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    seq: i64,
    read: bool,
) -> AppResult<(bool, bool)> {
    let before: (i64, i64) = sqlx::query_as(
        "SELECT delivered_seq, read_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .fetch_one(&mut **tx)
    .await?;
    let delivered = seq > before.0;
    let read_moved = read && seq > before.1;
    if !delivered && !read_moved {
        return Ok((false, false));
    }
    sqlx::query(
        "UPDATE conversation_members SET \
         delivered_seq = CASE WHEN delivered_seq < $3 THEN $3 ELSE delivered_seq END, \
         read_seq = CASE WHEN $4 = 1 AND read_seq < $3 THEN $3 ELSE read_seq END \
         WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(seq)
    .bind(read as i64)
    .execute(&mut **tx)
    .await?;
    let now = now_ms();
    for (kind, moved) in [("delivered", delivered), ("read", read_moved)] {
        if moved {
            sqlx::query("INSERT INTO receipt_moves (conversation_id, user_id, kind, up_to_seq, at) VALUES ($1, $2, $3, $4, $5)")
                .bind(conversation_id)
                .bind(user_id)
                .bind(kind)
                .bind(seq)
                .bind(now)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok((delivered, read_moved))
}

/// When each current member other than the sender first had the message delivered and read:
/// (user id, deliveredAt, readAt).
pub async fn receipts_for(
    db: &Db,
    conversation_id: &str,
    seq: i64,
    sender: Option<&str>,
) -> AppResult<Vec<(String, Option<i64>, Option<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT m.user_id, \
         (SELECT MIN(r.at) FROM receipt_moves r WHERE r.conversation_id = m.conversation_id AND r.user_id = m.user_id AND r.kind = 'delivered' AND r.up_to_seq >= $2), \
         CASE WHEN m.request_state = 'pending' THEN NULL ELSE \
         (SELECT MIN(r.at) FROM receipt_moves r WHERE r.conversation_id = m.conversation_id AND r.user_id = m.user_id AND r.kind = 'read' AND r.up_to_seq >= $2) END \
         FROM conversation_members m WHERE m.conversation_id = $1 AND m.left_at IS NULL AND m.joined_seq < $2 \
         AND ($3 = '' OR m.user_id <> $3) ORDER BY m.user_id",
    )
    .bind(conversation_id)
    .bind(seq)
    .bind(sender.unwrap_or(""))
    .fetch_all(db.reader())
    .await?)
}

/// Words of a search query: runs of letters and digits, lower-cased, at most 10.
pub fn search_terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(10)
        .map(|w| w.chars().take(64).collect::<String>().to_lowercase())
        .collect()
}

/// Messages matching every term (the last as a prefix) in the conversations `reader` is a
/// current member of in the tenant's workspace, best match first. Deleted messages have no text and are not in
/// the index; messages the reader hid are skipped.
pub async fn search(
    t: crate::db::Tenant<'_>,
    reader: &str,
    terms: &[String],
    conversation_id: Option<&str>,
    limit: i64,
) -> AppResult<Vec<MessageRow>> {
    let db = t.db();
    let last = terms.len() - 1;
    // Terms hold only letters and digits; the expression is bound, not spliced.
    let (from, matches, order, expr) = match db.backend() {
        crate::db::Backend::Sqlite => {
            let words: Vec<String> = terms
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == last {
                        format!("\"{w}\"*")
                    } else {
                        format!("\"{w}\"")
                    }
                })
                .collect();
            (
                "messages_fts f JOIN messages msg ON msg.rowid = f.rowid",
                "messages_fts MATCH $5",
                "bm25(messages_fts)",
                words.join(" "),
            )
        }
        crate::db::Backend::Postgres => {
            let words: Vec<String> = terms
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    if i == last {
                        format!("{w}:*")
                    } else {
                        w.clone()
                    }
                })
                .collect();
            (
                "messages msg",
                "msg.search @@ to_tsquery('simple', $5)",
                "ts_rank(msg.search, to_tsquery('simple', $5)) DESC",
                words.join(" & "),
            )
        }
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM {from} \
         JOIN conversation_members cm ON cm.conversation_id = msg.conversation_id AND cm.user_id = $1 \
         JOIN conversations c ON c.id = msg.conversation_id AND c.workspace_id = $2 \
         WHERE {matches} AND msg.deleted_at IS NULL AND cm.request_state <> 'declined' \
         AND cm.left_at IS NULL AND msg.seq > cm.joined_seq \
         AND ($3 = '' OR msg.conversation_id = $3) \
         AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $1 AND h.message_id = msg.id) \
         ORDER BY {order}, msg.id DESC LIMIT $4"
    );
    Ok(sqlx::query_as(&sql)
        .bind(reader)
        .bind(t.workspace_id())
        .bind(conversation_id.unwrap_or(""))
        .bind(limit)
        .bind(expr)
        .fetch_all(db.reader())
        .await?)
}
