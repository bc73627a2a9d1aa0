//! `GET /api/v1/sync`: the caller's change stream, paged by cursor.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::kinds;
use super::store::{self, Position};
use crate::app::AppState;
use crate::chats::model::ConversationView;
use crate::chats::service as chats;
use crate::db::{Tenant, Timestamp};
use crate::error::{AppError, AppResult};
use crate::http::pagination::{decode_cursor, encode_cursor};
use crate::http::Query;
use crate::http::{Json, Scope};
use crate::messages::model::MessageView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync))
}

/// One change: the live event's name, its payload, and the cursor just after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    /// The live event's payload.
    #[schema(value_type = Object)]
    pub data: EventData,
    pub cursor: String,
}

/// The payload of a replayed event, serialised as the live event's (typed, so a page is
/// written to JSON once, without an intermediate `Value` per event).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventData {
    Message {
        message: Arc<MessageView>,
        cursor: String,
    },
    #[serde(rename_all = "camelCase")]
    Status {
        conversation_id: String,
        user_id: Option<String>,
        status: Option<String>,
        up_to_seq: Option<i64>,
        at: Timestamp,
    },
    Conversation {
        conversation: Arc<ConversationView>,
        cursor: String,
    },
}

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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// The cursor of the last event seen; absent: a snapshot and the current cursor.
    pub cursor: Option<String>,
    /// At most this many events (default 500, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// GET /api/v1/sync — the changes after a cursor, oldest first, with no gaps and no duplicates.
#[utoipa::path(get, path = "/sync", tag = "sync", security(("bearer" = [])), params(SyncQuery),
    responses((status = 200, body = SyncPage)))]
async fn sync(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<SyncQuery>,
) -> AppResult<Json<SyncPage>> {
    let limit = match q.limit {
        None => 500,
        Some(n) if n < 1 => return Err(AppError::invalid_field("limit", "must be at least 1")),
        Some(n) => n.min(1000),
    };
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor::<Position>)
        .transpose()?;
    Ok(Json(
        page(scope.tenant(&state.db), &scope.user_id, cursor, limit).await?,
    ))
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
        let position = store::current_position(db).await?;
        let filter = crate::chats::store::ListFilter {
            requests: false,
            archived: None,
            kind: None,
            status: None,
            assignee: None,
            after: None,
            limit: 100,
        };
        let mut rows = crate::chats::store::list_for_user(t, user_id, &filter).await?;
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
    let mut rows = store::changes_after(db, user_id, t.workspace_id(), after, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);

    // Messages and conversations are shown as they are now: an edited or deleted message
    // replays with its current (erased) content.
    let message_ids: Vec<String> = rows.iter().filter_map(|r| r.message_id.clone()).collect();
    let hidden = hidden_for(db, user_id, &message_ids).await?;
    let rows_found = crate::messages::store::find_many(db, &message_ids).await?;
    let mut in_conversations: Vec<String> = rows_found
        .iter()
        .map(|m| m.conversation_id.clone())
        .collect();
    in_conversations.sort();
    in_conversations.dedup();
    let floors = crate::messages::store::receipt_floors(db, &in_conversations).await?;
    let messages: HashMap<String, Arc<MessageView>> =
        crate::messages::service::build_views(db, rows_found, &floors)
            .await?
            .into_iter()
            .map(|v| (v.id.clone(), Arc::new(v)))
            .collect();
    let mut conversations: HashMap<String, Arc<ConversationView>> = HashMap::new();
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let cursor = encode_cursor(&r.position());
        let data = match r.kind.as_str() {
            kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED => {
                let Some(id) = &r.message_id else { continue };
                if hidden.contains(id) {
                    continue;
                }
                let Some(m) = messages.get(id) else { continue };
                EventData::Message {
                    message: m.clone(),
                    cursor: cursor.clone(),
                }
            }
            kinds::MESSAGE_STATUS => EventData::Status {
                conversation_id: r.conversation_id.clone(),
                user_id: r.actor_id.clone(),
                status: r.status.clone(),
                up_to_seq: r.seq,
                at: Timestamp(r.created_at),
            },
            kinds::CONVERSATION_UPDATED => {
                let view = match conversations.get(&r.conversation_id) {
                    Some(v) => v.clone(),
                    None => match chats::reload(t, &r.conversation_id, user_id).await {
                        Ok(v) => {
                            let v = Arc::new(v);
                            conversations.insert(r.conversation_id.clone(), v.clone());
                            v
                        }
                        Err(_) => continue,
                    },
                };
                EventData::Conversation {
                    conversation: view,
                    cursor: cursor.clone(),
                }
            }
            _ => continue,
        };
        events.push(Envelope {
            kind: r.kind.clone(),
            data,
            cursor,
        });
    }
    let cursor = rows
        .last()
        .map(|r| encode_cursor(&r.position()))
        .unwrap_or_else(|| encode_cursor(&after));
    Ok(SyncPage {
        events,
        cursor,
        has_more,
        conversations: None,
    })
}

async fn hidden_for(
    db: &crate::db::Db,
    user_id: &str,
    ids: &[String],
) -> AppResult<std::collections::HashSet<String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut slots = db.slots();
    let mut params = vec![crate::db::lite::text(user_id)];
    let sql = format!(
        "SELECT message_id FROM message_hidden WHERE user_id = {} AND message_id IN ({})",
        slots.take(),
        slots.in_list(ids, &mut params)
    );
    let found: Vec<(String,)> = db.rows_once(sql, params, |r| Ok((r.get(0)?,))).await?;
    Ok(found.into_iter().map(|(id,)| id).collect())
}
