//! A sync page's rows: the user's changes after a cursor with, in the same statement, the
//! message each names as it is stored now and two facts about it (hidden for this reader, has
//! reactions). One read for the page instead of one for the changes and one per fact, each
//! with the page's message ids as a list (SQLite builds a temporary index of such a list).

use crate::changes::{self, ChangeRow, Position};
use crate::db::Tenant;
use crate::error::AppResult;
use crate::messages::model::{MessageRow, MESSAGE_COLUMNS};

/// One change of a page and what it names.
pub struct PageRow {
    pub change: ChangeRow,
    /// The message a message change names (`None` for other kinds, or a message gone).
    pub message: Option<MessageRow>,
    /// The reader deleted the message for themselves.
    pub hidden: bool,
    /// The message has reactions (their rows are read only for such messages).
    pub reacted: bool,
}

/// Where the message's columns start, and the two facts after them (hidden, reacted).
pub const MESSAGE_AT: usize = ChangeRow::LITE_COLUMNS;
pub const FACTS_AT: usize = MESSAGE_AT + MessageRow::LITE_COLUMNS;

impl PageRow {
    fn from_lite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let present = row.get_ref(MESSAGE_AT)? != rusqlite::types::ValueRef::Null;
        Ok(PageRow {
            change: ChangeRow::from_lite_at(row, 0)?,
            message: if present {
                Some(MessageRow::from_lite_at(row, MESSAGE_AT)?)
            } else {
                None
            },
            hidden: row.get::<_, i64>(FACTS_AT)? > 0,
            reacted: row.get::<_, i64>(FACTS_AT + 1)? > 0,
        })
    }
}

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for PageRow {
    fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        let present: Option<String> = row.try_get(MESSAGE_AT)?;
        Ok(PageRow {
            change: ChangeRow::from_any_at(row, 0)?,
            message: match present {
                Some(_) => Some(MessageRow::from_any_at(row, MESSAGE_AT)?),
                None => None,
            },
            hidden: row.try_get::<i64, _>(FACTS_AT)? > 0,
            reacted: row.try_get::<i64, _>(FACTS_AT + 1)? > 0,
        })
    }
}

/// Up to `limit` of the user's changes after `after`, oldest first, with their messages. The
/// changes are picked (and limited) first, then joined: the join never runs for changes the
/// limit leaves out. Whether the reader hid anything at all is asked once per statement (a
/// constant subquery), so a reader who never did costs no look per row.
pub async fn page_rows(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<Vec<PageRow>> {
    let (sql, params) = page_statement(t, user_id, after, until, limit).await?;
    // Put in order here rather than by the statement: an ORDER BY there sorts the wide joined
    // rows again (SQLite copies each into a temporary B-tree; P4's catch-up took 6% less
    // without it), and here they come in order already, which the sort only checks.
    let mut rows = t.db().rows(sql, params, PageRow::from_lite).await?;
    rows.sort_by_key(|r| r.change.position());
    Ok(rows)
}

/// The statement of [`page_rows`] and its parameters: its columns are [`ChangeRow`]'s, the
/// message's from [`MESSAGE_AT`] and the two facts from [`FACTS_AT`]. Its rows come in the
/// page's order, though nothing in it says so (see [`page_rows`]).
pub async fn page_statement(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<(String, Vec<crate::db::lite::Value>)> {
    let (changes, params) =
        changes::changes_after_query(t.db(), user_id, t.workspace_id(), after, until, limit)
            .await?;
    let sql = format!(
        "SELECT ch.pos, ch.txid, ch.conversation_id, ch.kind, ch.message_id, ch.seq, ch.actor_id, \
         ch.status, ch.created_at, {MESSAGE_COLUMNS}, \
         CASE WHEN EXISTS (SELECT 1 FROM message_hidden WHERE user_id = $1) \
          THEN (SELECT COUNT(*) FROM message_hidden h \
                WHERE h.user_id = $1 AND h.message_id = ch.message_id) \
          ELSE 0 END AS hidden, \
         (SELECT COUNT(*) FROM reactions r WHERE r.message_id = ch.message_id) AS reacted \
         FROM ({changes}) ch LEFT JOIN messages msg ON msg.id = ch.message_id"
    );
    Ok((sql, params))
}

/// Where a page of up to `limit` of the user's changes after `after` ends, if more changes
/// follow it: the position of its last change. `None`: that page is the last one for now.
/// Positions only, so that the page after it can be read while this one is.
pub async fn page_end(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    limit: i64,
) -> AppResult<Option<Position>> {
    let (changes, mut params) =
        changes::changes_after_query(t.db(), user_id, t.workspace_id(), after, None, limit + 1)
            .await?;
    let sql = format!(
        "SELECT ch.txid, ch.pos FROM ({changes}) ch ORDER BY ch.txid, ch.pos LIMIT 2 OFFSET $9"
    );
    params.push(crate::db::lite::Value::Integer(limit - 1));
    let rows: Vec<(i64, i64)> = t
        .db()
        .rows(sql, params, |row| Ok((row.get(0)?, row.get(1)?)))
        .await?;
    Ok(match rows[..] {
        [(txid, pos), _] => Some(Position(txid, pos)),
        _ => None,
    })
}
