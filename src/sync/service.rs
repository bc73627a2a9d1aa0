//! A page of a user's change stream: a snapshot to start from, or the changes after a cursor
//! with the messages and conversations they name as they are now. Shared by `GET /sync` and
//! the socket's `sync:request`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::envelope::{self, Envelope};
use crate::changes::{self, ChangeRow, Position};
use crate::chats::model::ConversationView;
use crate::chats::service as chats;
use crate::db::Tenant;
use crate::error::AppResult;
use crate::http::pagination::encode_cursor;
use crate::messages::model::MessageView;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    /// Oldest first.
    pub events: Vec<Envelope>,
    /// Ask again from here.
    pub cursor: String,
    pub has_more: bool,
    /// Without a cursor: the starting point, the most recent conversations (up to 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Vec<ConversationView>>,
}

/// A page of the user's changes (shared with the socket's `sync:request`).
pub async fn page(
    t: Tenant<'_>,
    user_id: &str,
    cursor: Option<Position>,
    limit: i64,
) -> AppResult<SyncPage> {
    let db = t.db();
    let Some(after) = cursor else {
        // Snapshot: where the stream stands now, and the conversation list as of then.
        let position = changes::current_position(db).await?;
        let filter = crate::conversations::store::ListFilter {
            requests: false,
            archived: None,
            kind: None,
            status: None,
            assignee: None,
            after: None,
            limit: 100,
        };
        let mut rows = crate::conversations::store::list_for_user(t, user_id, &filter).await?;
        rows.truncate(100);
        let items = rows
            .into_iter()
            .map(|r| (r.conversation, r.member, r.unread))
            .collect();
        let conversations = chats::views(db, user_id, items).await?;
        return Ok(SyncPage {
            events: Vec::new(),
            cursor: encode_cursor(&position),
            has_more: false,
            conversations: Some(conversations),
        });
    };
    let mut rows = super::store::page_rows(t, user_id, after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);

    // Messages and conversations are shown as they are now: an edited or deleted message
    // replays with its current (erased) content. A message hidden for the reader (deleted for
    // them) is not replayed. A message named twice in a page is viewed once.
    let (rows, found): (Vec<ChangeRow>, Vec<_>) = rows
        .into_iter()
        .map(|r| (r.change, (r.message, r.hidden, r.reacted)))
        .unzip();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stored = Vec::new();
    let mut reacted = Vec::new();
    for (r, (message, hidden, has_reactions)) in rows.iter().zip(found) {
        let (Some(m), Some(id)) = (message.filter(|_| !hidden), r.message_id.as_deref()) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if has_reactions {
            reacted.push(m.id.clone());
        }
        stored.push(m);
    }
    let in_conversations = distinct(stored.iter().map(|m| m.conversation_id.as_str()));
    let floors = crate::messages::store::receipt_floors(db, &in_conversations).await?;
    let messages: Vec<Arc<MessageView>> =
        crate::messages::views::build_views_with(db, stored, &floors, &reacted)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
    let index: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    // Where the reader is a support desk's customer and the desk hides its agents.
    let page_conversations = distinct(rows.iter().map(|r| r.conversation_id.as_str()));
    let faces = crate::conversations::store::team_faces(db, &page_conversations).await?;
    let mut conversations: HashMap<String, Arc<ConversationView>> = HashMap::new();
    let mut events = Vec::with_capacity(rows.len());
    let next_cursor = match rows.last() {
        Some(r) => envelope::cursor_after(r).to_string(),
        None => encode_cursor(&after),
    };
    for r in rows {
        let message = r
            .message_id
            .as_deref()
            .and_then(|id| index.get(id))
            .map(|&i| &messages[i]);
        let conversation = if r.kind == crate::changes::kinds::CONVERSATION_UPDATED {
            if !conversations.contains_key(&r.conversation_id) {
                let Ok(v) = chats::reload(t, &r.conversation_id, user_id).await else {
                    continue;
                };
                conversations.insert(r.conversation_id.clone(), Arc::new(v));
            }
            conversations.get(&r.conversation_id)
        } else {
            None
        };
        let cursor = envelope::cursor_after(&r);
        if let Some(mut data) = envelope::data(&r, &cursor, message, conversation) {
            let face = faces.get(&r.conversation_id);
            if let Some(face) = face.filter(|f| f.customer == user_id) {
                data = data.disguised(face);
            }
            events.push(Envelope {
                kind: r.kind,
                data,
                cursor,
            });
        }
    }
    Ok(SyncPage {
        events,
        cursor: next_cursor,
        has_more,
        conversations: None,
    })
}

/// The distinct values of `items`, sorted, copied once each.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut items: Vec<&str> = items.collect();
    items.sort_unstable();
    items.dedup();
    items.into_iter().map(str::to_owned).collect()
}
