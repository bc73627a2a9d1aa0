//! The change log: every change a user can see (new, edited or deleted message, reaction,
//! receipt, conversation or membership change) is a row of one log, written in the same
//! transaction as the change itself, with one writer helper per kind. `sync` pages through it
//! for `GET /sync` and `sync:request`; the real-time dispatcher follows it.
//!
//! Ordering without gaps: on SQLite there is one writer, so positions are handed out in commit
//! order. On PostgreSQL a sequence is not commit order (a transaction may take position 10 and
//! commit after another took 11), so every row records its transaction id, readers only return
//! rows of transactions older than every transaction still running (`pg_snapshot_xmin`), and
//! the order is (transaction id, position). A row that commits late therefore always sorts
//! after any cursor handed out before it became visible.

use serde::{Deserialize, Serialize};

/// Change kinds; each is the name of the live event it replays.
pub mod kinds {
    pub use crate::events::{CONVERSATION_UPDATED, MESSAGE_NEW, MESSAGE_STATUS, MESSAGE_UPDATED};
}
use crate::db::{now_ms, Backend, Db, Tx};
use crate::error::AppResult;

/// One change to record.
#[derive(Default)]
pub struct NewChange<'a> {
    pub conversation_id: &'a str,
    /// Only for this user (their settings or request state); `None`: for every member.
    pub user_id: Option<&'a str>,
    pub kind: &'static str,
    pub message_id: Option<&'a str>,
    pub seq: Option<i64>,
    pub actor_id: Option<&'a str>,
    pub status: Option<&'static str>,
}

impl<'a> NewChange<'a> {
    /// A change of one message (`message:new`, `message:updated`).
    pub fn message(
        kind: &'static str,
        conversation_id: &'a str,
        message_id: &'a str,
        seq: i64,
    ) -> NewChange<'a> {
        NewChange {
            conversation_id,
            kind,
            message_id: Some(message_id),
            seq: Some(seq),
            ..Default::default()
        }
    }

    /// `message:status`: `actor` has delivered or read everything up to `seq`.
    pub fn status(
        conversation_id: &'a str,
        actor: Option<&'a str>,
        status: &'static str,
        seq: i64,
    ) -> NewChange<'a> {
        NewChange {
            conversation_id,
            kind: kinds::MESSAGE_STATUS,
            seq: Some(seq),
            actor_id: actor,
            status: Some(status),
            ..Default::default()
        }
    }

    /// `conversation:updated`, for every member or (`only`) one.
    pub fn conversation(conversation_id: &'a str, only: Option<&'a str>) -> NewChange<'a> {
        NewChange {
            conversation_id,
            user_id: only,
            kind: kinds::CONVERSATION_UPDATED,
            ..Default::default()
        }
    }
}

/// Binds a change's columns in the order of the INSERTs below (sqlx's query types share no
/// trait for `bind`).
macro_rules! bind_change {
    ($q:expr, $c:expr, $now:expr) => {
        $q.bind($c.conversation_id)
            .bind($c.user_id)
            .bind($c.kind)
            .bind($c.message_id)
            .bind($c.seq)
            .bind($c.actor_id)
            .bind($c.status)
            .bind($now)
    };
}

/// Appends many changes with one statement, in order.
pub async fn append_many(
    tx: &mut Tx,
    mut slots: crate::db::Slots,
    changes: &[NewChange<'_>],
) -> AppResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO changes (conversation_id, user_id, kind, message_id, seq, actor_id, status, created_at) VALUES ",
    );
    for i in 0..changes.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&slots.row(8));
    }
    let now = now_ms();
    let mut q = sqlx::query(&sql).persistent(false);
    for c in changes {
        q = bind_change!(q, c, now);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

/// [`append_many`] in a transaction of SQLite's direct writer ([`crate::db::Db::write_direct`]):
/// one kept statement, run once per change.
pub fn append_many_direct(
    tx: &rusqlite::Transaction<'_>,
    changes: &[NewChange<'_>],
) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO changes (conversation_id, user_id, kind, message_id, seq, actor_id, status, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let now = now_ms();
    for c in changes {
        insert.execute(rusqlite::params![
            c.conversation_id,
            c.user_id,
            c.kind,
            c.message_id,
            c.seq,
            c.actor_id,
            c.status,
            now
        ])?;
    }
    Ok(())
}

/// Appends a change inside the transaction that makes it; returns its position. Writers call
/// the helper of their kind above.
async fn append(tx: &mut Tx, c: NewChange<'_>) -> AppResult<i64> {
    let q = sqlx::query_scalar(
        "INSERT INTO changes (conversation_id, user_id, kind, message_id, seq, actor_id, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING pos",
    );
    Ok(bind_change!(q, c, now_ms()).fetch_one(&mut **tx).await?)
}

/// `message:new`: a message joined its conversation at `seq`.
pub async fn message_new(
    tx: &mut Tx,
    conversation_id: &str,
    message_id: &str,
    seq: i64,
) -> AppResult<i64> {
    append(
        tx,
        NewChange::message(kinds::MESSAGE_NEW, conversation_id, message_id, seq),
    )
    .await
}

/// `message:updated`: a message was edited, deleted, reacted to, its media was processed or
/// its WhatsApp status moved; readers get it as it is now.
pub async fn message_updated(
    tx: &mut Tx,
    conversation_id: &str,
    message_id: &str,
    seq: i64,
) -> AppResult<i64> {
    let change = NewChange::message(kinds::MESSAGE_UPDATED, conversation_id, message_id, seq);
    append(tx, change).await
}

/// `message:status`: `actor` (a member, or a WhatsApp customer's lead) has delivered or read
/// everything up to `seq`.
pub async fn message_status(
    tx: &mut Tx,
    conversation_id: &str,
    actor: Option<&str>,
    status: &'static str,
    seq: i64,
) -> AppResult<i64> {
    append(tx, NewChange::status(conversation_id, actor, status, seq)).await
}

/// `conversation:updated`: for every member, or (`only`) for one member's own view of it
/// (their settings, their request state).
pub async fn conversation_updated(
    tx: &mut Tx,
    conversation_id: &str,
    only: Option<&str>,
) -> AppResult<i64> {
    append(tx, NewChange::conversation(conversation_id, only)).await
}

/// A position in the change stream: (transaction id, position). The transaction id is always
/// 0 on SQLite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position(pub i64, pub i64);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub pos: i64,
    pub txid: i64,
    pub conversation_id: String,
    pub kind: String,
    pub message_id: Option<String>,
    pub seq: Option<i64>,
    pub actor_id: Option<String>,
    pub status: Option<String>,
    pub created_at: i64,
}

crate::db::lite::lite_row!(with_any ChangeRow {
    pos,
    txid,
    conversation_id,
    kind,
    message_id,
    seq,
    actor_id,
    status,
    created_at
});

impl ChangeRow {
    pub fn position(&self) -> Position {
        Position(self.txid, self.pos)
    }
}

/// Rows with a transaction id at or above this may still be joined by rows that commit later.
async fn horizon(db: &Db) -> AppResult<i64> {
    Ok(match db.backend() {
        Backend::Sqlite => i64::MAX,
        Backend::Postgres => {
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(db.reader())
                .await?
        }
    })
}

/// The condition "change `ch` comes after the position (`$t`, `$p`) and below the horizon
/// (`$h`)", for a WHERE clause (the numbers are the parameters'). SQLite's one writer commits
/// in order and every change has txid 0, so there a position is its `pos` alone:
/// `txid = $t AND pos > $p` seeks the primary key or the (conversation_id, txid, pos) index,
/// where the general form below scans the whole log (23 ms per read at 200,000 changes). On
/// PostgreSQL a row comparison, which the (txid, pos) indexes seek.
fn after_position(db: &Db, ch: &str, t: u8, p: u8, h: u8) -> String {
    match db.backend() {
        Backend::Sqlite => format!("{ch}.txid = ${t} AND {ch}.pos > ${p}"),
        Backend::Postgres => {
            format!("({ch}.txid, {ch}.pos) > (${t}, ${p}) AND {ch}.txid < ${h}")
        }
    }
}

/// The condition "change `ch` is at or before the position (`$t`, `$p`)" (SQLite: `pos` alone,
/// as in [`after_position`]).
fn until_position(db: &Db, ch: &str, t: u8, p: u8) -> String {
    match db.backend() {
        Backend::Sqlite => format!("{ch}.pos <= ${p}"),
        Backend::Postgres => format!("({ch}.txid, {ch}.pos) <= (${t}, ${p})"),
    }
}

/// The statement that reads the user's changes after `after` (and up to `until`, if given),
/// oldest first, and its parameters: changes of conversations they are a member of, within
/// their visibility window, plus changes addressed to them alone; its columns are
/// [`ChangeRow`]'s and `$1` is the user. A statement rather than rows, so that its reader can
/// join what the changes name (sync reads each change's message in the same statement).
pub async fn changes_after_query(
    db: &Db,
    user_id: &str,
    workspace_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<(String, Vec<crate::db::lite::Value>)> {
    let sql = format!(
        "SELECT ch.pos, ch.txid, ch.conversation_id, ch.kind, ch.message_id, ch.seq, ch.actor_id, ch.status, ch.created_at \
         FROM conversation_members m \
         JOIN conversations c ON c.id = m.conversation_id AND c.workspace_id = $2 \
         JOIN changes ch ON ch.conversation_id = m.conversation_id \
         WHERE m.user_id = $1 AND m.request_state <> 'declined' AND {} AND {} \
         AND (ch.user_id IS NULL OR ch.user_id = $1) \
         AND (m.left_pos IS NULL OR ch.pos <= m.left_pos) \
         AND (ch.kind NOT IN ('message:new', 'message:updated') OR ch.seq > m.joined_seq) \
         ORDER BY ch.txid, ch.pos LIMIT $6",
        after_position(db, "ch", 3, 4, 5),
        until_position(db, "ch", 7, 8),
    );
    use crate::db::lite::{text, Value};
    let horizon = horizon(db).await?;
    let mut params = vec![
        text(user_id),
        text(workspace_id),
        Value::Integer(after.0),
        Value::Integer(after.1),
        Value::Integer(horizon),
        Value::Integer(limit),
    ];
    let until = until.unwrap_or(Position(i64::MAX, i64::MAX));
    params.extend([Value::Integer(until.0), Value::Integer(until.1)]);
    Ok((sql, params))
}

/// The position of the newest change a reader may see now: a cursor from which sync starts.
pub async fn current_position(db: &Db) -> AppResult<Position> {
    let horizon = horizon(db).await?;
    // SQLite: every txid is 0 (see `after_position`), and the primary key gives the newest at once.
    let order = match db.backend() {
        Backend::Sqlite => "pos DESC",
        Backend::Postgres => "txid DESC, pos DESC",
    };
    let row: Option<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT txid, pos FROM changes WHERE txid < $1 ORDER BY {order} LIMIT 1"
    ))
    .bind(horizon)
    .fetch_optional(db.reader())
    .await?;
    Ok(row.map(|(t, p)| Position(t, p)).unwrap_or_default())
}

/// Every change after `after` (all conversations), oldest first: what the real-time dispatcher
/// pushes to connected devices.
pub async fn all_changes_after(
    db: &Db,
    after: Position,
    limit: i64,
) -> AppResult<Vec<(ChangeRow, Option<String>)>> {
    let sql = format!(
        "SELECT pos, txid, conversation_id, kind, message_id, seq, actor_id, status, created_at, user_id \
         FROM changes ch WHERE {} ORDER BY txid, pos LIMIT $4",
        after_position(db, "ch", 1, 2, 3)
    );
    use crate::db::lite::Value;
    let horizon = horizon(db).await?;
    let params = vec![
        Value::Integer(after.0),
        Value::Integer(after.1),
        Value::Integer(horizon),
        Value::Integer(limit),
    ];
    let rows = db
        .rows(sql, params, |row| {
            Ok(ChangeRowWithUser {
                change: ChangeRow::from_lite(row)?,
                user_id: row.get(ChangeRow::LITE_COLUMNS)?,
            })
        })
        .await?;
    Ok(rows.into_iter().map(|r| (r.change, r.user_id)).collect())
}

#[derive(sqlx::FromRow)]
struct ChangeRowWithUser {
    #[sqlx(flatten)]
    change: ChangeRow,
    user_id: Option<String>,
}
