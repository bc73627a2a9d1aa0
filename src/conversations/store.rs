//! Conversation and member queries. Conversations belong to a workspace: every read takes the
//! [`Tenant`].

use std::collections::HashMap;

use super::desk::{DeskSettings, TeamFace};
use super::model::{
    ConversationRow, MemberRole, MemberRow, RequestState, CONVERSATION_COLUMNS, MEMBER_COLUMNS,
};
use crate::db::{is_unique_violation, new_id, now_ms, Db, Tenant, Tx};
use crate::error::AppResult;

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<Option<ConversationRow>> {
    Ok(sqlx::query_as(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1 AND c.workspace_id = $2"))
        .bind(id)
        .bind(t.workspace_id())
        .fetch_optional(t.db().reader())
        .await?)
}

/// The conversation (in the tenant) with the user's membership row, in one query.
/// The conversation and `user_id`'s membership row, and for a direct conversation the other
/// current member: their request state and whether a block stands between them and `user_id`
/// (either way). One query: a send checks all of it, and each query is a hop to a blocking
/// thread (two per send were 8% of the server's CPU under P1).
pub async fn find_with_member(
    t: Tenant<'_>,
    id: &str,
    user_id: &str,
) -> AppResult<Option<(ConversationRow, MemberRow, Option<DirectPeer>)>> {
    #[derive(sqlx::FromRow)]
    struct Found {
        #[sqlx(flatten)]
        conversation: ConversationRow,
        #[sqlx(flatten)]
        member: MemberRow,
        peer_state: Option<String>,
        peer_blocks: i64,
    }
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS}, p.request_state AS peer_state, \
         (SELECT COUNT(*) FROM blocks b WHERE (b.blocker_id = $3 AND b.blocked_id = p.user_id) \
          OR (b.blocker_id = p.user_id AND b.blocked_id = $3)) AS peer_blocks \
         FROM conversations c \
         JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = $3 \
         LEFT JOIN conversation_members p ON c.kind = 'direct' AND p.conversation_id = c.id \
          AND p.user_id <> $3 AND p.left_at IS NULL \
         WHERE c.id = $1 AND c.workspace_id = $2"
    );
    use crate::db::lite::text;
    let params = vec![text(id), text(t.workspace_id()), text(user_id)];
    let found = t
        .db()
        .rows(sql, params, |r| {
            const PEER_AT: usize = ConversationRow::LITE_COLUMNS + MemberRow::LITE_COLUMNS;
            Ok(Found {
                conversation: ConversationRow::from_lite(r)?,
                member: MemberRow::from_lite_at(r, ConversationRow::LITE_COLUMNS)?,
                peer_state: r.get(PEER_AT)?,
                peer_blocks: r.get(PEER_AT + 1)?,
            })
        })
        .await?
        .pop();
    Ok(found.map(|f| {
        let peer = f.peer_state.map(|state| DirectPeer {
            request_state: state,
            blocked: f.peer_blocks > 0,
        });
        (f.conversation, f.member, peer)
    }))
}

/// The other current member of a direct conversation, as its sender sees them.
#[derive(Debug, Clone)]
pub struct DirectPeer {
    pub request_state: String,
    /// A block stands between them and the member (either way).
    pub blocked: bool,
}

/// The conversation inside a write transaction (sees the transaction's own changes).
pub async fn find_in_tx(tx: &mut Tx, id: &str) -> AppResult<ConversationRow> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.id = $1"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn find_direct(t: Tenant<'_>, key: &str) -> AppResult<Option<ConversationRow>> {
    Ok(sqlx::query_as(&format!("SELECT {CONVERSATION_COLUMNS} FROM conversations c WHERE c.direct_key = $1 AND c.workspace_id = $2"))
        .bind(key)
        .bind(t.workspace_id())
        .fetch_optional(t.db().reader())
        .await?)
}

pub struct NewConversation<'a> {
    pub kind: &'static str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub created_by: &'a str,
    pub direct_key: Option<&'a str>,
}

/// Inserts a conversation; `None` when a direct conversation with this key already exists.
pub async fn insert(
    tx: &mut Tx,
    t: Tenant<'_>,
    c: NewConversation<'_>,
) -> AppResult<Option<String>> {
    let id = new_id();
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO conversations (id, workspace_id, kind, title, description, created_by, direct_key, last_seq, \
         last_activity_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $8) \
         ON CONFLICT (direct_key) DO NOTHING",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(c.kind)
    .bind(c.title)
    .bind(c.description)
    .bind(c.created_by)
    .bind(c.direct_key)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok((done.rows_affected() == 1).then_some(id))
}

/// Adds a member (or brings a former member back) with visibility from `joined_seq` on.
pub async fn upsert_member(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    role: MemberRole,
    joined_seq: i64,
    request: RequestState,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_seq, delivered_seq, read_seq, request_state) \
         VALUES ($1, $2, $3, $4, $5, $5, $5, $6) \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET role = excluded.role, joined_at = excluded.joined_at, \
         joined_seq = excluded.joined_seq, left_at = NULL, left_seq = NULL, left_pos = NULL, \
         delivered_seq = CASE WHEN conversation_members.delivered_seq > excluded.delivered_seq THEN conversation_members.delivered_seq ELSE excluded.delivered_seq END, \
         read_seq = CASE WHEN conversation_members.read_seq > excluded.read_seq THEN conversation_members.read_seq ELSE excluded.read_seq END, \
         request_state = excluded.request_state",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(role.as_str())
    .bind(now_ms())
    .bind(joined_seq)
    .bind(request.as_str())
    .execute(&mut **tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { crate::error::AppError::internal(e) } else { e.into() })?;
    Ok(())
}

pub async fn find_member(
    db: &Db,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<Option<MemberRow>> {
    Ok(sqlx::query_as(&format!("SELECT {MEMBER_COLUMNS} FROM conversation_members m WHERE m.conversation_id = $1 AND m.user_id = $2"))
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(db.reader())
        .await?)
}

pub async fn find_member_in_tx(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
) -> AppResult<Option<MemberRow>> {
    Ok(sqlx::query_as(&format!("SELECT {MEMBER_COLUMNS} FROM conversation_members m WHERE m.conversation_id = $1 AND m.user_id = $2"))
        .bind(conversation_id)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Current members of the conversations, in join order.
pub async fn current_members(db: &Db, conversation_ids: &[String]) -> AppResult<Vec<MemberRow>> {
    if conversation_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT {MEMBER_COLUMNS} FROM conversation_members m WHERE m.conversation_id IN ({}) AND m.left_at IS NULL \
         ORDER BY m.conversation_id, m.joined_at, m.user_id",
        db.slots().in_list(conversation_ids, &mut params)
    );
    db.rows_once(sql, params, MemberRow::from_lite).await
}

/// Current members of one conversation, paged by user id.
pub async fn list_members(
    db: &Db,
    conversation_id: &str,
    after: Option<&str>,
    limit: i64,
) -> AppResult<Vec<MemberRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {MEMBER_COLUMNS} FROM conversation_members m WHERE m.conversation_id = $1 AND m.left_at IS NULL \
         AND m.user_id > $2 ORDER BY m.user_id LIMIT $3"
    ))
    .bind(conversation_id)
    .bind(after.unwrap_or(""))
    .bind(limit + 1)
    .fetch_all(db.reader())
    .await?)
}

pub async fn count_current_members(tx: &mut Tx, conversation_id: &str) -> AppResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM conversation_members WHERE conversation_id = $1 AND left_at IS NULL",
    )
    .bind(conversation_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// Takes the next `seq` of the conversation. The row update is also the lock that orders
/// concurrent writers of one conversation on PostgreSQL, so seqs commit in order.
pub async fn next_seq(tx: &mut Tx, conversation_id: &str) -> AppResult<i64> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "UPDATE conversations SET last_seq = last_seq + 1, last_activity_at = $2, updated_at = $2 WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation_id)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?)
}

/// Locks the conversation row for a membership change (PostgreSQL row lock; SQLite has one
/// writer anyway) and returns it fresh.
pub async fn lock(tx: &mut Tx, conversation_id: &str) -> AppResult<ConversationRow> {
    sqlx::query("UPDATE conversations SET updated_at = $2 WHERE id = $1")
        .bind(conversation_id)
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    find_in_tx(tx, conversation_id).await
}

pub async fn set_member_left(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    left_seq: i64,
    left_pos: i64,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE conversation_members SET left_at = $3, left_seq = $4, left_pos = $5 WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(now_ms())
    .bind(left_seq)
    .bind(left_pos)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_member_role(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    role: MemberRole,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE conversation_members SET role = $3 WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(role.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn set_request_state(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    state: RequestState,
) -> AppResult<()> {
    sqlx::query("UPDATE conversation_members SET request_state = $3 WHERE conversation_id = $1 AND user_id = $2")
        .bind(conversation_id)
        .bind(user_id)
        .bind(state.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn update_group(
    tx: &mut Tx,
    conversation_id: &str,
    title: Option<&str>,
    description: Option<&str>,
    avatar_media_id: Option<&str>,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE conversations SET title = COALESCE($2, title), description = COALESCE($3, description), \
         avatar_media_id = COALESCE($5, avatar_media_id), updated_at = $4 WHERE id = $1",
    )
    .bind(conversation_id)
    .bind(title)
    .bind(description)
    .bind(now_ms())
    .bind(avatar_media_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The caller's own settings; `None` leaves a field as it is.
pub struct SettingsChange {
    /// `Some(None)` unmutes.
    pub muted_until: Option<Option<i64>>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
}

pub async fn update_settings(
    tx: &mut Tx,
    conversation_id: &str,
    user_id: &str,
    c: &SettingsChange,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE conversation_members SET \
         muted_until = CASE WHEN $3 = 1 THEN $4 ELSE muted_until END, \
         archived = COALESCE($5, archived), pinned = COALESCE($6, pinned) \
         WHERE conversation_id = $1 AND user_id = $2",
    )
    .bind(conversation_id)
    .bind(user_id)
    .bind(c.muted_until.is_some() as i64)
    .bind(c.muted_until.flatten())
    .bind(c.archived.map(i64::from))
    .bind(c.pinned.map(i64::from))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A page of the user's conversation list, newest activity first, with the unread count.
pub struct ListFilter {
    pub requests: bool,
    pub archived: Option<bool>,
    /// `direct`, `group` or `channel`.
    pub kind: Option<String>,
    /// Channel conversations' inbox status.
    pub status: Option<String>,
    /// `Some(None)`: unassigned; `Some(Some(id))`: assigned to this user.
    pub assignee: Option<Option<String>>,
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

#[derive(sqlx::FromRow)]
pub struct ListedConversation {
    #[sqlx(flatten)]
    pub conversation: ConversationRow,
    #[sqlx(flatten)]
    pub member: MemberRow,
    pub unread: i64,
}

impl ListedConversation {
    /// A row of `{CONVERSATION_COLUMNS}, {MEMBER_COLUMNS}, unread`.
    fn from_lite(r: &rusqlite::Row<'_>) -> rusqlite::Result<ListedConversation> {
        const MEMBER_AT: usize = ConversationRow::LITE_COLUMNS;
        Ok(ListedConversation {
            conversation: ConversationRow::from_lite(r)?,
            member: MemberRow::from_lite_at(r, MEMBER_AT)?,
            unread: r.get(MEMBER_AT + MemberRow::LITE_COLUMNS)?,
        })
    }
}

pub async fn list_for_user(
    t: Tenant<'_>,
    user_id: &str,
    f: &ListFilter,
) -> AppResult<Vec<ListedConversation>> {
    let (after_at, after_id) = f.after.clone().unwrap_or_default();
    let archived = match f.archived {
        Some(true) => "AND m.archived = 1",
        Some(false) => "AND m.archived = 0",
        None => "",
    };
    let state = if f.requests {
        "m.request_state = 'pending'"
    } else {
        "m.request_state = 'accepted'"
    };
    // The page is chosen first; unread counts are taken only for its conversations (counted
    // for every conversation before the sort, they made a list of 50 out of 1,000 cost 1,000).
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS}, \
         (SELECT COUNT(*) FROM messages msg WHERE msg.conversation_id = c.id AND msg.seq > m.read_seq \
          AND msg.seq > m.joined_seq AND (msg.sender_id IS NULL OR msg.sender_id <> $2)) AS unread \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = $2 AND c.id IN ( \
          SELECT c.id FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
          WHERE m.user_id = $2 AND c.workspace_id = $1 AND m.left_at IS NULL AND {state} {archived} \
          AND (c.kind <> 'direct' OR c.last_seq > 0 OR c.created_by = $2) \
          AND ($6 = 0 OR c.last_activity_at < $3 OR (c.last_activity_at = $3 AND c.id < $4)) \
          AND ($7 IS NULL OR c.kind = $7) AND ($8 IS NULL OR c.inbox_status = $8) \
          AND ($9 = 0 OR ($10 IS NULL AND c.assignee_id IS NULL) OR c.assignee_id = $10) \
          ORDER BY c.last_activity_at DESC, c.id DESC LIMIT $5) \
         ORDER BY c.last_activity_at DESC, c.id DESC"
    );
    use crate::db::lite::{text, Value};
    let opt = |v: Option<&str>| v.map(text).unwrap_or(Value::Null);
    let params = vec![
        text(t.workspace_id()),
        text(user_id),
        Value::Integer(after_at),
        text(&after_id),
        Value::Integer(f.limit + 1),
        Value::Integer(f.after.is_some() as i64),
        opt(f.kind.as_deref()),
        opt(f.status.as_deref()),
        Value::Integer(f.assignee.is_some() as i64),
        opt(f.assignee.as_ref().and_then(|a| a.as_deref())),
    ];
    t.db()
        .rows(sql, params, ListedConversation::from_lite)
        .await
}

/// Display names of users, for direct-conversation titles.
pub async fn display_names(db: &Db, user_ids: &[String]) -> AppResult<Vec<(String, String)>> {
    if user_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT id, display_name FROM users WHERE id IN ({})",
        db.slots().in_list(user_ids, &mut params)
    );
    db.rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?)))
        .await
}

/// (channel id, phone number id) of these channels.
pub async fn channel_refs(db: &Db, ids: &[String]) -> AppResult<Vec<(String, String)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT id, phone_number_id FROM channels WHERE id IN ({})",
        db.slots().in_list(ids, &mut params)
    );
    db.rows_once(sql, params, |r| Ok((r.get(0)?, r.get(1)?)))
        .await
}

/// (id, wa_id, user id, name) of these leads.
pub async fn lead_refs(
    db: &Db,
    ids: &[String],
) -> AppResult<Vec<(String, Option<String>, Option<String>, Option<String>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    let sql = format!(
        "SELECT id, wa_id, user_id, name FROM leads WHERE id IN ({})",
        db.slots().in_list(ids, &mut params)
    );
    db.rows_once(sql, params, |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .await
}

/// Makes a workspace's new (or newly promoted) agent a member of its inbox conversations
/// (channel and support), so they see them like the agents who were there when the
/// conversations began.
pub async fn join_channel_conversations(
    tx: &mut crate::db::Tx,
    workspace_id: &str,
    user_id: &str,
) -> crate::error::AppResult<()> {
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_seq) \
         SELECT c.id, $1, 'member', $2, 0 FROM conversations c \
         WHERE c.workspace_id = $3 AND c.kind IN ('channel', 'support') \
         ON CONFLICT (conversation_id, user_id) DO UPDATE SET left_at = NULL, left_seq = NULL, \
         left_pos = NULL, joined_seq = 0, joined_at = excluded.joined_at \
         WHERE conversation_members.left_at IS NOT NULL",
    )
    .bind(user_id)
    .bind(crate::db::now_ms())
    .bind(workspace_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What [`customer_wrote`] reads of a conversation (one read serves the reopening and the
/// automations' event).
#[derive(sqlx::FromRow)]
struct Wrote {
    inbox_status: Option<String>,
    snoozed_until: Option<i64>,
    workspace_id: String,
    lead_id: Option<String>,
}

/// A customer wrote `count` messages in this inbox conversation at `at`: the service window
/// moves, a conversation that was not open (closed, pending or snoozed) opens again, records
/// the change and queues the opened job (auto-assignment, the agents' activity line), the
/// analytics facts are kept, and the automation rules waiting for customers' messages get the
/// event. Returns whether it reopened.
pub async fn customer_wrote(tx: &mut Tx, id: &str, at: i64, count: i64) -> AppResult<bool> {
    let before: Option<Wrote> = sqlx::query_as(
        "SELECT inbox_status, snoozed_until, workspace_id, lead_id FROM conversations WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(Wrote {
        inbox_status: status,
        snoozed_until: snoozed,
        workspace_id,
        lead_id,
    }) = before
    else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE conversations SET inbox_status = 'open', snoozed_until = NULL, \
         last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < $2 \
         THEN $2 ELSE last_inbound_at END, \
         inbox_at = CASE WHEN inbox_at IS NULL OR inbox_at < $2 THEN $2 ELSE inbox_at END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    let reopened = status.as_deref() != Some("open") || snoozed.is_some();
    if reopened {
        crate::changes::conversation_updated(tx, id, None).await?;
        opened(tx, id, true).await?;
    }
    super::facts::status_moved(
        tx,
        id,
        Some(status.as_deref().unwrap_or("open")),
        "open",
        at,
    )
    .await?;
    super::facts::wrote(tx, id, super::facts::Writer::Customer, at, count).await?;
    let on = (Some(id), lead_id.as_deref());
    super::triggers::emit(tx, &workspace_id, on, super::triggers::Event::Message, 0).await?;
    Ok(reopened)
}

/// Queues the job of an inbox conversation that opened: auto-assignment, and with
/// `reopened` (the customer wrote again) a line telling the agents so; and the event for the
/// automation rules waiting for conversations to open.
pub async fn opened(tx: &mut Tx, id: &str, reopened: bool) -> AppResult<()> {
    let payload = serde_json::json!({"conversationId": id, "reopened": reopened});
    crate::jobs::enqueue(tx, super::model::INBOX_OPENED_JOB, &payload.to_string()).await?;
    super::triggers::emit_for(tx, id, super::triggers::Event::Opened).await
}

/// The conversation of a lead on a channel, made (closed, the agents its members) when the
/// lead has none there yet: a business that writes first (a campaign) does not open work in
/// the inbox; the customer's answer will.
pub async fn channel_conversation(
    tx: &mut Tx,
    (workspace_id, channel_id): (&str, &str),
    lead_id: &str,
    title: &str,
) -> AppResult<ConversationRow> {
    let key = format!("{channel_id}:{lead_id}");
    let now = now_ms();
    let made: Option<String> = sqlx::query_scalar(
        "INSERT INTO conversations (id, workspace_id, kind, title, last_seq, last_activity_at, created_at, \
         updated_at, channel_id, lead_id, channel_key, inbox_status, inbox_at) \
         VALUES ($1, $2, 'channel', $3, 0, $4, $4, $4, $5, $6, $7, 'closed', $4) \
         ON CONFLICT (channel_key) WHERE channel_key IS NOT NULL DO NOTHING RETURNING id",
    )
    .bind(crate::db::new_id())
    .bind(workspace_id)
    .bind(title)
    .bind(now)
    .bind(channel_id)
    .bind(lead_id)
    .bind(&key)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = &made {
        join_inbox(tx, id).await?;
        crate::changes::conversation_updated(tx, id, None).await?;
    }
    let id: String = sqlx::query_scalar("SELECT id FROM conversations WHERE channel_key = $1")
        .bind(&key)
        .fetch_one(&mut **tx)
        .await?;
    find_in_tx(tx, &id).await
}

/// Makes the workspace's agents (owners, admins, agents) members of a new inbox conversation.
pub async fn join_inbox(tx: &mut Tx, conversation_id: &str) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at, joined_seq) \
         SELECT c.id, m.user_id, 'member', $1, 0 FROM conversations c \
         JOIN memberships m ON m.workspace_id = c.workspace_id AND m.role IN ('owner', 'admin', 'agent') \
         WHERE c.id = $2 ON CONFLICT DO NOTHING",
    )
    .bind(now_ms())
    .bind(conversation_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An inbox view: a page of a user's inbox conversations (channel and support), sorted by the
/// customer's last message (`inbox_at`).
#[derive(Debug, Default)]
pub struct InboxFilter {
    /// `channel`, `support`, or both.
    pub kinds: Vec<&'static str>,
    pub status: Option<String>,
    /// `Some(None)`: unassigned.
    pub assignee: Option<Option<String>>,
    /// Leads with any of these tag names.
    pub tags: Vec<String>,
    pub stage: Option<String>,
    pub channel_id: Option<String>,
    /// The conversations of one lead.
    pub lead_id: Option<String>,
    /// Only those with messages the user has not read.
    pub unread: bool,
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

pub async fn list_inbox(
    t: Tenant<'_>,
    user_id: &str,
    f: &InboxFilter,
) -> AppResult<Vec<ListedConversation>> {
    use crate::db::lite::{text, Value};
    let db = t.db();
    let mut slots = db.slots();
    let mut params: Vec<Value> = Vec::new();
    let mut bind = |v: Value, params: &mut Vec<Value>| {
        params.push(v);
        slots.take()
    };
    // The page is chosen first, walking the workspace's inbox index in sort order; the unread
    // counts are taken for its conversations only. (Placeholders are taken in the order they
    // appear: SQLite's `?` are positional.)
    let me = bind(text(user_id), &mut params);
    let mut sql = format!(
        "SELECT {CONVERSATION_COLUMNS}, {MEMBER_COLUMNS}, \
         (SELECT COUNT(*) FROM messages msg WHERE msg.conversation_id = c.id AND msg.seq > m.read_seq \
          AND msg.seq > m.joined_seq AND (msg.sender_id IS NULL OR msg.sender_id <> {me})) AS unread \
         FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id \
         WHERE m.user_id = {} AND c.id IN (SELECT c.id FROM conversations c \
         JOIN conversation_members m ON m.conversation_id = c.id AND m.user_id = {} AND m.left_at IS NULL \
         WHERE c.workspace_id = {} AND c.inbox_at IS NOT NULL",
        bind(text(user_id), &mut params),
        bind(text(user_id), &mut params),
        bind(text(t.workspace_id()), &mut params),
    );
    let kinds: Vec<String> = f.kinds.iter().map(|k| bind(text(k), &mut params)).collect();
    sql += &format!(" AND c.kind IN ({})", kinds.join(", "));
    if let Some(s) = &f.status {
        sql += &format!(" AND c.inbox_status = {}", bind(text(s), &mut params));
    }
    match &f.assignee {
        Some(None) => sql += " AND c.assignee_id IS NULL",
        Some(Some(a)) => sql += &format!(" AND c.assignee_id = {}", bind(text(a), &mut params)),
        None => {}
    }
    if !f.tags.is_empty() {
        let names: Vec<String> = f.tags.iter().map(|n| bind(text(n), &mut params)).collect();
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM lead_tags lt JOIN tags tg ON tg.id = lt.tag_id \
              WHERE lt.lead_id = c.lead_id AND tg.name IN ({}))",
            names.join(", ")
        );
    }
    if let Some(stage) = &f.stage {
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM leads l WHERE l.id = c.lead_id AND l.stage = {})",
            bind(text(stage), &mut params)
        );
    }
    if let Some(ch) = &f.channel_id {
        sql += &format!(" AND c.channel_id = {}", bind(text(ch), &mut params));
    }
    if let Some(lead) = &f.lead_id {
        sql += &format!(" AND c.lead_id = {}", bind(text(lead), &mut params));
    }
    if f.unread {
        sql += " AND c.last_seq > m.read_seq AND c.last_seq > m.joined_seq";
    }
    if let Some((at, id)) = &f.after {
        let (a1, a2, i) = (
            bind(Value::Integer(*at), &mut params),
            bind(Value::Integer(*at), &mut params),
            bind(text(id), &mut params),
        );
        sql += &format!(" AND (c.inbox_at < {a1} OR (c.inbox_at = {a2} AND c.id < {i}))");
    }
    sql += &format!(
        " ORDER BY c.inbox_at DESC, c.id DESC LIMIT {}) ORDER BY c.inbox_at DESC, c.id DESC",
        f.limit + 1
    );
    db.rows_once(sql, params, ListedConversation::from_lite)
        .await
}

/// Is this stage one of the workspace's (its own pipeline, else the default one)?
pub async fn is_stage(t: Tenant<'_>, stage: &str) -> AppResult<bool> {
    let stages: Vec<String> =
        sqlx::query_scalar("SELECT name FROM lead_stages WHERE workspace_id = $1")
            .bind(t.workspace_id())
            .fetch_all(t.db().reader())
            .await?;
    Ok(if stages.is_empty() {
        super::model::DEFAULT_STAGES.contains(&stage)
    } else {
        stages.iter().any(|s| s == stage)
    })
}

/// The names among these that are not tags of the workspace.
pub async fn unknown_tags(t: Tenant<'_>, names: &[String]) -> AppResult<Vec<String>> {
    let mut unknown = Vec::new();
    for n in names {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM tags WHERE workspace_id = $1 AND name = $2")
                .bind(t.workspace_id())
                .bind(n)
                .fetch_optional(t.db().reader())
                .await?;
        if found.is_none() {
            unknown.push(n.clone());
        }
    }
    Ok(unknown)
}

/// The sidebar's numbers: open, open and mine, open and unassigned, pending. Read from the
/// inbox index (open and pending conversations only; closed ones are never scanned).
pub async fn inbox_counts(t: Tenant<'_>, user_id: &str) -> AppResult<(i64, i64, i64, i64)> {
    let row: (Option<i64>, Option<i64>, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT SUM(CASE WHEN inbox_status = 'open' THEN 1 ELSE 0 END), \
         SUM(CASE WHEN inbox_status = 'open' AND assignee_id = $2 THEN 1 ELSE 0 END), \
         SUM(CASE WHEN inbox_status = 'open' AND assignee_id IS NULL THEN 1 ELSE 0 END), \
         SUM(CASE WHEN inbox_status = 'pending' THEN 1 ELSE 0 END) \
         FROM conversations WHERE workspace_id = $1 AND inbox_status IN ('open', 'pending')",
    )
    .bind(t.workspace_id())
    .bind(user_id)
    .fetch_one(t.db().reader())
    .await?;
    Ok((
        row.0.unwrap_or(0),
        row.1.unwrap_or(0),
        row.2.unwrap_or(0),
        row.3.unwrap_or(0),
    ))
}

const FACES: &str = "SELECT c.id, c.created_by, w.id, w.settings FROM conversations c \
     JOIN workspaces w ON w.id = c.workspace_id \
     WHERE c.id IN ({}) AND c.kind = 'support'";

/// A row of [`FACES`]: the face, if the conversation's desk hides its agents' names.
fn face_of(customer: Option<String>, team: String, settings: &str) -> Option<TeamFace> {
    if DeskSettings::of_workspace(settings).show_agent_names {
        return None;
    }
    Some(TeamFace {
        customer: customer?,
        team,
    })
}

/// The team's face for each support conversation among `ids` whose desk hides its agents'
/// names, by conversation (one query; nothing for other kinds).
pub async fn team_faces(db: &Db, ids: &[String]) -> AppResult<HashMap<String, TeamFace>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut params = Vec::new();
    let sql = FACES.replace("{}", &db.slots().in_list(ids, &mut params));
    let rows: Vec<(String, Option<String>, String, String)> = db
        .rows_once(sql, params, |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, customer, team, settings)| {
            Some((id, face_of(customer, team, &settings)?))
        })
        .collect())
}

/// [`team_faces`] of one conversation on a SQLite reader already held (a sync page written
/// as it is read).
pub fn team_face_on(
    conn: &rusqlite::Connection,
    conversation_id: &str,
) -> rusqlite::Result<Option<TeamFace>> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| FACES.replace("{}", "?1"));
    let mut stmt = conn.prepare_cached(&SQL)?;
    let mut rows = stmt.query([conversation_id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let settings: String = row.get(3)?;
    Ok(face_of(row.get(1)?, row.get(2)?, &settings))
}

/// How `viewer` sees the team of `c`: `Some` only for the customer of a support conversation
/// whose desk hides its agents' names (a query only then).
pub async fn team_face(db: &Db, c: &ConversationRow, viewer: &str) -> AppResult<Option<TeamFace>> {
    if !c.is_customer(viewer) {
        return Ok(None);
    }
    Ok(team_faces(db, std::slice::from_ref(&c.id))
        .await?
        .remove(&c.id))
}
