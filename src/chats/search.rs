//! Message search over the caller's conversations, `GET /api/v1/search/messages`: each hit
//! comes with its conversation as the caller sees it, so it lives above both.

use std::collections::HashMap;

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::ConversationView;
use crate::app::AppState;
use crate::db::Tenant;
use crate::error::{AppError, AppResult};
use crate::http::{Json, Page, Query, Scope};
use crate::messages::model::MessageView;
use crate::messages::store;
use crate::messages::views::{build_views, disguise};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_messages))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    /// Words to find (all of them; the last also as a prefix).
    #[param(min_length = 1, max_length = 256)]
    pub q: String,
    /// Only in this conversation.
    pub conversation_id: Option<String>,
    /// At most 50 (default 20).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// A search hit: the message and its conversation.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct SearchHit {
    pub message: MessageView,
    pub conversation: ConversationView,
}

/// GET /api/v1/search/messages — full-text search over the caller's conversations, best match first.
#[utoipa::path(get, path = "/search/messages", tag = "messages", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, body = Page<SearchHit>)))]
async fn search_messages(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<SearchQuery>,
) -> AppResult<Json<Page<SearchHit>>> {
    let terms = store::search_terms(&q.q);
    if terms.is_empty() || q.q.chars().count() > 256 {
        return Err(AppError::invalid_field(
            "q",
            "must contain a word of letters or digits (at most 256 characters)",
        ));
    }
    let limit = match q.limit {
        Some(n) if n < 1 => return Err(AppError::invalid_field("limit", "must be at least 1")),
        n => n.unwrap_or(20).min(50),
    };
    let items = search(
        scope.tenant(&state.db),
        &scope.user_id,
        &terms,
        q.conversation_id.as_deref(),
        limit,
    )
    .await?;
    let items = items
        .into_iter()
        .map(|(message, conversation)| SearchHit {
            message,
            conversation,
        })
        .collect();
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

/// Full-text search: hits in rank order, each with its conversation as the caller sees it.
pub async fn search(
    t: Tenant<'_>,
    me: &str,
    terms: &[String],
    conversation_id: Option<&str>,
    limit: i64,
) -> AppResult<Vec<(MessageView, ConversationView)>> {
    let db = t.db();
    let rows = store::search(t, me, terms, conversation_id, limit).await?;
    let mut conversation_ids: Vec<String> =
        rows.iter().map(|m| m.conversation_id.clone()).collect();
    conversation_ids.sort();
    conversation_ids.dedup();
    let mut conversations = HashMap::new();
    let mut floors = HashMap::new();
    for id in &conversation_ids {
        if let Ok(view) = super::service::reload(t, id, me).await {
            conversations.insert(id.clone(), view);
        }
        floors.insert(id.clone(), store::receipt_floor(db, id).await?);
    }
    let views = build_views(db, rows, &floors).await?;
    let faces = crate::conversations::store::team_faces(db, &conversation_ids).await?;
    Ok(views
        .into_iter()
        .filter_map(|mut m| {
            let c = conversations.get(&m.conversation_id)?.clone();
            if let Some(face) = faces.get(&m.conversation_id).filter(|f| f.customer == me) {
                disguise(&mut m, face);
            }
            Some((m, c))
        })
        .collect())
}
