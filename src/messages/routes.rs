//! Message endpoints: history, send, edit, delete, reactions, receipts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::Outgoing;
use super::model::*;
use super::service::{self, Marks, Receipt};
use super::store::Direction;
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::http::pagination::{decode_cursor, encode_cursor};
use crate::http::validate::{field, Validate};
use crate::http::Query;
use crate::http::{Json, Page, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, send_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(react, unreact))
        .routes(routes!(list_receipts))
        .routes(routes!(mark_delivered))
        .routes(routes!(mark_read))
        .routes(routes!(forward_message))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The `limit` messages just below this seq.
    pub before: Option<i64>,
    /// The `limit` messages just above this seq.
    pub after: Option<i64>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page (continues in the same direction).
    pub cursor: Option<String>,
}

#[derive(serde::Serialize, Deserialize)]
enum HistoryCursor {
    #[serde(rename = "b")]
    Before(i64),
    #[serde(rename = "a")]
    After(i64),
}

/// GET /api/v1/conversations/{id}/messages — history, always ascending by seq: the latest page, or the page before/after a seq.
#[utoipa::path(get, path = "/conversations/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path), HistoryQuery), responses((status = 200, body = Page<MessageView>)))]
async fn list_messages(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> AppResult<Json<Page<MessageView>>> {
    let limit = match q.limit {
        None => 50,
        Some(n) if n < 1 => return Err(AppError::invalid_field("limit", "must be at least 1")),
        Some(n) => n.min(100),
    };
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor::<HistoryCursor>)
        .transpose()?;
    let dir = match (cursor, q.before, q.after) {
        (Some(HistoryCursor::Before(s)), _, _) | (None, Some(s), None) => Direction::Before(s),
        (Some(HistoryCursor::After(s)), _, _) | (None, None, Some(s)) => Direction::After(s),
        (None, None, None) => Direction::Latest,
        (None, Some(_), Some(_)) => {
            return Err(AppError::invalid_field(
                "before",
                "give before or after, not both",
            ))
        }
    };
    let forward = matches!(dir, Direction::After(_));
    let (items, more) =
        service::history(scope.tenant(&state.db), &scope.user_id, &id, dir, limit).await?;
    let next_cursor = match (more, forward) {
        (true, true) => items
            .last()
            .map(|m| encode_cursor(&HistoryCursor::After(m.seq))),
        (true, false) => items
            .first()
            .map(|m| encode_cursor(&HistoryCursor::Before(m.seq))),
        _ => None,
    };
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageBody {
    /// The client's id for this message: a retry with the same id returns the original.
    #[schema(min_length = 1, max_length = 128)]
    pub client_msg_id: String,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub reply_to_id: Option<String>,
    pub location: Option<Location>,
    pub contact: Option<ContactCard>,
    /// Channel conversations, `template` messages: the template and its parameters.
    pub template: Option<TemplateSend>,
    /// Channel conversations, `interactive` messages: the Cloud API's `interactive` object
    /// (buttons, lists…).
    #[schema(value_type = Option<Object>)]
    pub interactive: Option<serde_json::Value>,
    /// The id of a message the caller can see; marks this one as forwarded.
    pub forwarded_from: Option<String>,
}

/// POST /api/v1/conversations/{id}/messages — sends a message: 201 once stored, 200 with the original for a retried clientMsgId.
#[utoipa::path(post, path = "/conversations/{id}/messages", tag = "messages", security(("bearer" = [])), request_body = SendMessageBody,
    params(("id" = String, Path)),
    responses((status = 201, body = MessageView), (status = 200, description = "the original of a retried clientMsgId", body = MessageView),
        (status = 403, description = "blocked, request_declined", body = crate::error::Problem),
        (status = 409, description = "client_msg_id_conflict", body = crate::error::Problem)))]
async fn send_message(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<SendMessageBody>,
) -> AppResult<(StatusCode, Json<MessageView>)> {
    let client_msg_id = field("clientMsgId", parse_client_msg_id(&b.client_msg_id)).validate()?;
    let content = Content::parse(
        b.kind,
        b.text,
        Parts {
            media_id: b.media_id,
            location: b.location,
            contact: b.contact,
            template: b.template,
            interactive: b.interactive,
        },
    )?;
    let t = scope.tenant(&state.db);
    let forwarded = match &b.forwarded_from {
        Some(original) => {
            if !service::can_see(t, &scope.user_id, original).await? {
                return Err(AppError::invalid_field("forwardedFrom", "no such message"));
            }
            true
        }
        None => false,
    };
    let out = Outgoing {
        client_msg_id,
        content,
        reply_to_id: b.reply_to_id,
        forwarded,
    };
    let (message, created) = service::send(t, &state.sends, &scope.user_id, &id, out).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(message),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct EditBody {
    /// Not blank.
    #[schema(min_length = 1, max_length = 65536, pattern = "\\S")]
    pub text: String,
}

/// PATCH /api/v1/messages/{id} — edits a text message (its sender, within 15 minutes); sets editedAt.
#[utoipa::path(patch, path = "/messages/{id}", tag = "messages", security(("bearer" = [])), request_body = EditBody,
    params(("id" = String, Path)), responses((status = 200, body = MessageView), (status = 403, description = "forbidden, edit_window_closed", body = crate::error::Problem)))]
async fn edit_message(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<EditBody>,
) -> AppResult<Json<MessageView>> {
    let text = field("text", parse_text(&b.text)).validate()?;
    Ok(Json(
        service::edit(scope.tenant(&state.db), &scope.user_id, &id, text).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// `me` (default) hides it for the caller; `everyone` erases it (sender or group admin, within 48 h).
    #[serde(rename = "for")]
    #[param(rename = "for", value_type = Option<DeleteFor>)]
    pub scope: Option<String>,
}

/// Whom a deletion is for.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeleteFor {
    Me,
    Everyone,
}

/// DELETE /api/v1/messages/{id} — deletes for the caller or for everyone (a tombstone stays).
#[utoipa::path(delete, path = "/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path), DeleteQuery), responses((status = 204), (status = 403, description = "forbidden, delete_window_closed", body = crate::error::Problem)))]
async fn delete_message(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> AppResult<StatusCode> {
    let everyone = match q.scope.as_deref() {
        None | Some("me") => false,
        Some("everyone") => true,
        Some(_) => return Err(AppError::invalid_field("for", "must be me or everyone")),
    };
    service::delete(scope.tenant(&state.db), &scope.user_id, &id, everyone).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReactBody {
    pub emoji: String,
}

/// PUT /api/v1/messages/{id}/reactions — sets the caller's reaction (one per user per message).
#[utoipa::path(put, path = "/messages/{id}/reactions", tag = "messages", security(("bearer" = [])), request_body = ReactBody,
    params(("id" = String, Path)), responses((status = 200, body = MessageView)))]
async fn react(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<ReactBody>,
) -> AppResult<Json<MessageView>> {
    let emoji = field("emoji", parse_emoji(&b.emoji)).validate()?;
    Ok(Json(
        service::react(scope.tenant(&state.db), &scope.user_id, &id, Some(emoji)).await?,
    ))
}

/// DELETE /api/v1/messages/{id}/reactions — removes the caller's reaction.
#[utoipa::path(delete, path = "/messages/{id}/reactions", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = MessageView)))]
async fn unreact(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<MessageView>> {
    Ok(Json(
        service::react(scope.tenant(&state.db), &scope.user_id, &id, None).await?,
    ))
}

/// GET /api/v1/messages/{id}/receipts — when each other member got and read the message.
#[utoipa::path(get, path = "/messages/{id}/receipts", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Page<Receipt>)))]
async fn list_receipts(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<Page<Receipt>>> {
    let items = service::receipts(scope.tenant(&state.db), &scope.user_id, &id).await?;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SeqBody {
    pub seq: i64,
}

/// POST /api/v1/conversations/{id}/delivered — everything up to seq reached one of the caller's devices.
#[utoipa::path(post, path = "/conversations/{id}/delivered", tag = "messages", security(("bearer" = [])), request_body = SeqBody,
    params(("id" = String, Path)), responses((status = 200, body = Marks)))]
async fn mark_delivered(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<SeqBody>,
) -> AppResult<Json<Marks>> {
    Ok(Json(
        service::mark(scope.tenant(&state.db), &scope.user_id, &id, b.seq, false).await?,
    ))
}

/// POST /api/v1/conversations/{id}/read — the caller read up to seq (which implies delivered).
#[utoipa::path(post, path = "/conversations/{id}/read", tag = "messages", security(("bearer" = [])), request_body = SeqBody,
    params(("id" = String, Path)), responses((status = 200, body = Marks)))]
async fn mark_read(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<SeqBody>,
) -> AppResult<Json<Marks>> {
    Ok(Json(
        service::mark(scope.tenant(&state.db), &scope.user_id, &id, b.seq, true).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardBody {
    /// 1 to 20 conversations of the caller.
    #[schema(min_items = 1, max_items = 20)]
    pub conversation_ids: Vec<String>,
}

/// POST /api/v1/messages/{id}/forward — copies a message into other conversations, marked forwarded. Send an `Idempotency-Key` header to make retries safe.
#[utoipa::path(post, path = "/messages/{id}/forward", tag = "messages", security(("bearer" = [])), request_body = ForwardBody,
    params(("id" = String, Path), ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the same copies")),
    responses((status = 201, body = Page<MessageView>)))]
async fn forward_message(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Json(b): Json<ForwardBody>,
) -> AppResult<(StatusCode, Json<Page<MessageView>>)> {
    let mut targets = b.conversation_ids;
    targets.sort();
    targets.dedup();
    if targets.is_empty() || targets.len() > 20 {
        return Err(AppError::invalid_field(
            "conversationIds",
            "give 1 to 20 conversations",
        ));
    }
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 100)
                .ok_or_else(|| {
                    AppError::new(
                        crate::error::Code::BadRequest,
                        "Idempotency-Key must be 1 to 100 visible characters",
                    )
                })?
                .to_owned(),
        ),
        None => None,
    };
    let items = service::forward(
        scope.tenant(&state.db),
        &state.sends,
        &scope.user_id,
        &id,
        &targets,
        key.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Page {
            items,
            next_cursor: None,
        }),
    ))
}
