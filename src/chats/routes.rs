//! `/api/v1/conversations*` (conversation-level; messages and receipts are in `messages`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{ConversationView, MemberView};
use super::service::{self, NewGroup};
use crate::app::AppState;
use crate::conversations::model::{InboxStatus, MemberRole};
use crate::conversations::store::{self, InboxFilter, ListFilter, SettingsChange};
use crate::error::{AppError, AppResult};
use crate::http::pagination::encode_cursor;
use crate::http::validate::{field, optional, Validate};
use crate::http::Query;
use crate::http::{IdempotencyKey, Json, ListQuery, Page, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_conversations))
        .routes(routes!(open_direct))
        .routes(routes!(create_group))
        .routes(routes!(get_conversation))
        .routes(routes!(list_members, add_members))
        .routes(routes!(remove_member, change_member_role))
        .routes(routes!(update_settings))
        .routes(routes!(accept_request))
        .routes(routes!(decline_request))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListConversationsQuery {
    /// `true`: the message requests waiting for the caller instead of the accepted conversations.
    pub requests: Option<bool>,
    /// `true`: only archived; `false`: only not archived; absent: both.
    pub archived: Option<bool>,
    /// Only conversations of this kind: `direct`, `group`, `channel`, `support`, or `inbox`
    /// (channel and support). The inbox kinds are sorted by the customer's last message.
    pub kind: Option<KindFilter>,
    /// Inbox conversations with this status: `open`, `pending` or `closed`.
    pub status: Option<InboxStatus>,
    /// Inbox conversations assigned to `me`, to nobody (`none`) or to a user id.
    pub assignee: Option<String>,
    /// Inbox views: conversations whose lead has this tag.
    pub tag: Option<String>,
    /// Inbox views: conversations whose lead is in this stage.
    pub stage: Option<String>,
    /// Inbox views: conversations of this WhatsApp channel.
    pub channel: Option<String>,
    /// Inbox views: only those with messages the caller has not read.
    pub unread: Option<bool>,
    /// Inbox views: the conversations of this lead (a customer's WhatsApp and support chats).
    pub lead: Option<String>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KindFilter {
    Direct,
    Group,
    Channel,
    Support,
    Inbox,
}

/// GET /api/v1/conversations — the caller's conversations, most recent activity first; the
/// inbox kinds by the customer's last message.
#[utoipa::path(get, path = "/conversations", tag = "conversations", security(("bearer" = [])), params(ListConversationsQuery),
    responses((status = 200, body = Page<ConversationView>)))]
async fn list_conversations(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListConversationsQuery>,
) -> AppResult<Json<Page<ConversationView>>> {
    let inbox_kinds: &[&'static str] = match q.kind {
        Some(KindFilter::Channel) => &["channel"],
        Some(KindFilter::Support) => &["support"],
        Some(KindFilter::Inbox) => &["channel", "support"],
        _ => &[],
    };
    let inbox_only = q.tag.is_some()
        || q.stage.is_some()
        || q.channel.is_some()
        || q.unread.is_some()
        || q.lead.is_some();
    if !inbox_kinds.is_empty() {
        return Ok(Json(inbox_view(&state, &scope, q, inbox_kinds).await?));
    }
    if inbox_only {
        return Err(AppError::invalid_field(
            "kind",
            "tag, stage, channel, unread and lead filter the inbox: kind=channel, support or inbox",
        ));
    }
    let paging = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    let filter = ListFilter {
        requests: q.requests.unwrap_or(false),
        archived: q.archived,
        // (The inbox kinds went to their view above.)
        kind: q.kind.map(|k| match k {
            KindFilter::Direct => "direct".to_owned(),
            _ => "group".to_owned(),
        }),
        status: q.status.map(|s| s.as_str().to_owned()),
        assignee: match q.assignee.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some("me") => Some(Some(scope.user_id.clone())),
            Some(id) => Some(Some(id.to_owned())),
        },
        after: paging.position()?,
        limit,
    };
    let t = scope.tenant(&state.db);
    let mut rows = store::list_for_user(t, &scope.user_id, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last()
            .map(|r| encode_cursor(&(r.conversation.last_activity_at, &r.conversation.id)))
    } else {
        None
    };
    let items = rows
        .into_iter()
        .map(|r| (r.conversation, r.member, r.unread))
        .collect();
    let items = service::views(&state.db, &scope.user_id, items).await?;
    Ok(Json(Page { items, next_cursor }))
}

/// An inbox view (agents): channel and support conversations by status, assignee, the lead's
/// tag and stage, channel and unread; a tag or stage the workspace does not have is 422.
async fn inbox_view(
    state: &AppState,
    scope: &Scope,
    q: ListConversationsQuery,
    kinds: &[&'static str],
) -> AppResult<Page<ConversationView>> {
    let t = scope.tenant(&state.db);
    let paging = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    if let Some(stage) = &q.stage {
        if !store::is_stage(t, stage).await? {
            return Err(AppError::invalid_field(
                "stage",
                "is not a stage of this workspace",
            ));
        }
    }
    let tags: Vec<String> = q.tag.into_iter().collect();
    if let Some(unknown) = store::unknown_tags(t, &tags).await?.first() {
        return Err(AppError::invalid_field(
            "tag",
            format!("the workspace has no tag {unknown:?}"),
        ));
    }
    let filter = InboxFilter {
        kinds: kinds.to_vec(),
        status: q.status.map(|s| s.as_str().to_owned()),
        assignee: match q.assignee.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some("me") => Some(Some(scope.user_id.clone())),
            Some(id) => Some(Some(id.to_owned())),
        },
        tags,
        stage: q.stage,
        channel_id: q.channel,
        lead_id: q.lead,
        unread: q.unread.unwrap_or(false),
        after: paging.position()?,
        limit,
    };
    let mut rows = store::list_inbox(t, &scope.user_id, &filter).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|r| {
        let c = &r.conversation;
        encode_cursor(&(c.inbox_at.unwrap_or_default(), &c.id))
    });
    let items = rows
        .into_iter()
        .map(|r| (r.conversation, r.member, r.unread))
        .collect();
    let items = service::views(&state.db, &scope.user_id, items).await?;
    Ok(Page { items, next_cursor })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenDirectBody {
    pub user_id: String,
}

/// POST /api/v1/conversations/direct — the direct conversation with a user: the existing one (200) or a new one (201).
#[utoipa::path(post, path = "/conversations/direct", tag = "conversations", security(("bearer" = [])), request_body = OpenDirectBody,
    responses((status = 200, body = ConversationView), (status = 201, body = ConversationView)))]
async fn open_direct(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<OpenDirectBody>,
) -> AppResult<(StatusCode, Json<ConversationView>)> {
    let (view, created) =
        service::open_direct(scope.tenant(&state.db), &scope.user_id, &b.user_id).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

fn parse_title(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control) {
        return Err("must be 1 to 100 characters without control characters".into());
    }
    Ok(t.to_owned())
}

fn parse_description(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 512 {
        return Err("must be at most 512 characters".into());
    }
    Ok(raw.trim().to_owned())
}

/// A group avatar is an image the caller uploaded.
async fn check_avatar(state: &AppState, scope: &Scope, value: &Option<String>) -> AppResult<()> {
    match value {
        Some(id) => crate::media::usable_as_avatar(&state.db, &scope.user_id, id).await,
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupBody {
    #[schema(min_length = 1, max_length = 100)]
    pub title: String,
    /// The other members (1 to 1023); the creator becomes the owner.
    pub member_ids: Vec<String>,
    #[schema(max_length = 512)]
    pub description: Option<String>,
    pub avatar_media_id: Option<String>,
}

/// POST /api/v1/conversations/groups — creates a group; its first message (seq 1) records the creation. An `Idempotency-Key` makes retries safe.
#[utoipa::path(post, path = "/conversations/groups", tag = "conversations", security(("bearer" = [])), request_body = CreateGroupBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key answers the group made the first time (200)")),
    responses((status = 201, body = ConversationView), (status = 200, description = "made by an earlier request with this Idempotency-Key", body = ConversationView),
        (status = 403, description = "blocked")))]
async fn create_group(
    State(state): State<AppState>,
    scope: Scope,
    key: IdempotencyKey,
    Json(b): Json<CreateGroupBody>,
) -> AppResult<(StatusCode, Json<ConversationView>)> {
    let (title, description) = (
        field("title", parse_title(&b.title)),
        optional("description", b.description, |d| parse_description(&d)),
    )
        .validate()?;
    check_avatar(&state, &scope, &b.avatar_media_id).await?;
    let group = NewGroup {
        title,
        description,
        member_ids: b.member_ids,
        avatar_media_id: b.avatar_media_id,
    };
    let (view, created) = service::create_group(
        scope.tenant(&state.db),
        &scope.user_id,
        group,
        key.0.as_deref(),
    )
    .await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

/// GET /api/v1/conversations/{id} — one conversation, for its current members.
#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ConversationView)))]
async fn get_conversation(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<ConversationView>> {
    Ok(Json(
        service::reload(scope.tenant(&state.db), &id, &scope.user_id).await?,
    ))
}

/// A group's title, description or avatar (owner and admins), checked; the inbox's
/// `PATCH /conversations/{id}` (in `inbox::desk_routes`) calls it for those fields.
pub async fn update_group_fields(
    state: &AppState,
    scope: &Scope,
    id: &str,
    title: Option<String>,
    description: Option<String>,
    avatar_media_id: Option<String>,
) -> AppResult<ConversationView> {
    let (title, description) = (
        optional("title", title, |t| parse_title(&t)),
        optional("description", description, |d| parse_description(&d)),
    )
        .validate()?;
    check_avatar(state, scope, &avatar_media_id).await?;
    service::update_group(
        scope.tenant(&state.db),
        &scope.user_id,
        id,
        title,
        description,
        avatar_media_id,
    )
    .await
}

/// GET /api/v1/conversations/{id}/members — the current members, paged.
#[utoipa::path(get, path = "/conversations/{id}/members", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path), ListQuery), responses((status = 200, body = Page<MemberView>)))]
async fn list_members(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<MemberView>>> {
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let t = scope.tenant(&state.db);
    let rows = service::members_page(t, &scope.user_id, &id, after.as_deref(), limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |m| m.user_id.clone(),
        |m| m,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMembersBody {
    pub user_ids: Vec<String>,
}

/// POST /api/v1/conversations/{id}/members — adds users to a group (owner and admins); 200 with the conversation.
#[utoipa::path(post, path = "/conversations/{id}/members", tag = "conversations", security(("bearer" = [])), request_body = AddMembersBody,
    params(("id" = String, Path)), responses((status = 200, body = ConversationView), (status = 403, body = crate::error::Problem)))]
async fn add_members(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<AddMembersBody>,
) -> AppResult<Json<ConversationView>> {
    Ok(Json(
        service::add_members(scope.tenant(&state.db), &scope.user_id, &id, b.user_ids).await?,
    ))
}

/// DELETE /api/v1/conversations/{id}/members/{userId} — removes a member (owner and admins), or leaves (yourself).
#[utoipa::path(delete, path = "/conversations/{id}/members/{userId}", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path), ("userId" = String, Path)), responses((status = 204), (status = 403, body = crate::error::Problem)))]
async fn remove_member(
    State(state): State<AppState>,
    scope: Scope,
    Path((id, user_id)): Path<(String, String)>,
) -> AppResult<StatusCode> {
    service::remove_member(scope.tenant(&state.db), &scope.user_id, &id, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeMemberRoleBody {
    /// `admin` or `member`.
    pub role: MemberRole,
}

/// PATCH /api/v1/conversations/{id}/members/{userId} — makes a member admin or member (owner and admins).
#[utoipa::path(patch, path = "/conversations/{id}/members/{userId}", tag = "conversations", security(("bearer" = [])), request_body = ChangeMemberRoleBody,
    params(("id" = String, Path), ("userId" = String, Path)), responses((status = 200, body = ConversationView), (status = 403, body = crate::error::Problem)))]
async fn change_member_role(
    State(state): State<AppState>,
    scope: Scope,
    Path((id, user_id)): Path<(String, String)>,
    Json(b): Json<ChangeMemberRoleBody>,
) -> AppResult<Json<ConversationView>> {
    Ok(Json(
        service::set_role(
            scope.tenant(&state.db),
            &scope.user_id,
            &id,
            &user_id,
            b.role,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsBody {
    /// RFC 3339 time until which the conversation is muted; `null` unmutes.
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub muted_until: Option<Option<String>>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
}

/// PATCH /api/v1/conversations/{id}/settings — the caller's own mute, archive and pin.
#[utoipa::path(patch, path = "/conversations/{id}/settings", tag = "conversations", security(("bearer" = [])), request_body = SettingsBody,
    params(("id" = String, Path)), responses((status = 200, body = ConversationView)))]
async fn update_settings(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<SettingsBody>,
) -> AppResult<Json<ConversationView>> {
    let muted_until = match b.muted_until {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => {
            let at = chrono::DateTime::parse_from_rfc3339(&s).map_err(|_| {
                AppError::invalid_field("mutedUntil", "must be an RFC 3339 time or null")
            })?;
            Some(Some(at.timestamp_millis()))
        }
    };
    let change = SettingsChange {
        muted_until,
        archived: b.archived,
        pinned: b.pinned,
    };
    Ok(Json(
        service::update_settings(scope.tenant(&state.db), &scope.user_id, &id, change).await?,
    ))
}

/// POST /api/v1/conversations/{id}/accept — accepts a message request.
#[utoipa::path(post, path = "/conversations/{id}/accept", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ConversationView)))]
async fn accept_request(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<ConversationView>> {
    let view = service::answer_request(scope.tenant(&state.db), &scope.user_id, &id, true).await?;
    view.map(Json).ok_or_else(AppError::not_found)
}

/// POST /api/v1/conversations/{id}/decline — declines a message request: hidden for the caller, the sender's further messages refused.
#[utoipa::path(post, path = "/conversations/{id}/decline", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204)))]
async fn decline_request(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    service::answer_request(scope.tenant(&state.db), &scope.user_id, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
