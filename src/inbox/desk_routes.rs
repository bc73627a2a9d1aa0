//! The inbox at work: `PATCH /conversations/{id}` (status, assignee, snooze; a group's fields
//! are passed on to `chats`), notes, `POST /support`, counts, agents' availability and
//! capacity, canned responses.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::canned::{self, CannedView};
use super::conversations::{self as inbox, InboxChange};
use super::notes::{self, NoteView};
use crate::app::AppState;
use crate::audit::{self, actions};
use crate::chats::model::ConversationView;
use crate::conversations::access::access;
use crate::conversations::model::InboxStatus;
use crate::conversations::store;
use crate::db::{Tenant, Timestamp};
use crate::error::{AppError, AppResult};
use crate::events;
use crate::http::validate::{field, optional, parse_instant, Validate};
use crate::http::{AuthUser, Json, ListQuery, Page, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_conversation))
        .routes(routes!(list_notes, create_note))
        .routes(routes!(open_support))
        .routes(routes!(counts))
        .routes(routes!(list_agents))
        .routes(routes!(update_agent))
        .routes(routes!(list_canned, create_canned))
        .routes(routes!(update_canned, delete_canned))
        .routes(routes!(render_canned))
}

/// The agents of an inbox conversation (its current members but the support customer), who
/// get its notes and activity live.
async fn agents_of(t: Tenant<'_>, conversation_id: &str) -> AppResult<Vec<String>> {
    let c = store::find(t, conversation_id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(
        store::current_members(t.db(), &[conversation_id.to_owned()])
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .filter(|u| !c.is_customer(u))
            .collect(),
    )
}

/// Sends these notes (just written) to the conversation's agents and the mentioned.
pub async fn tell_agents(
    state: &AppState,
    t: Tenant<'_>,
    conversation_id: &str,
    ids: &[String],
) -> AppResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let agents = agents_of(t, conversation_id).await?;
    for note in notes::find(t, ids).await? {
        let mut to = agents.clone();
        to.extend(
            note.mentions
                .iter()
                .filter(|m| !agents.contains(m))
                .cloned(),
        );
        state.emit_event(to, events::NOTE_NEW, &note);
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateConversationBody {
    /// Groups (owner and admins): the title.
    #[schema(min_length = 1, max_length = 100)]
    pub title: Option<String>,
    #[schema(max_length = 512)]
    pub description: Option<String>,
    pub avatar_media_id: Option<String>,
    /// Inbox conversations (agents): `open`, `pending` or `closed`.
    pub status: Option<InboxStatus>,
    /// Inbox conversations (agents): the agent in charge; `null` unassigns.
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub assignee_id: Option<Option<String>>,
    /// Inbox conversations (agents): snooze until this time (RFC 3339; the conversation is
    /// `pending` until then and opens again); `null` wakes it now.
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub snoozed_until: Option<Option<String>>,
}

/// PATCH /api/v1/conversations/{id} — a group's title, description or avatar (owner and admins); an inbox conversation's status, assignee or snooze (agents), each with its activity line.
#[utoipa::path(patch, path = "/conversations/{id}", tag = "conversations", security(("bearer" = [])), request_body = UpdateConversationBody,
    params(("id" = String, Path)), responses((status = 200, body = ConversationView), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn update_conversation(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<UpdateConversationBody>,
) -> AppResult<Json<ConversationView>> {
    let change = InboxChange {
        status: b.status,
        assignee: b.assignee_id,
        snooze_until: optional("snoozedUntil", b.snoozed_until, |s| {
            s.as_deref().map(parse_instant).transpose()
        })
        .validate()?,
    };
    if change.is_empty() {
        let view = crate::chats::routes::update_group_fields(
            &state,
            &scope,
            &id,
            b.title,
            b.description,
            b.avatar_media_id,
        )
        .await?;
        return Ok(Json(view));
    }
    let t = scope.tenant(&state.db);
    access(t, &id, &scope.user_id, false).await?;
    scope.require_agent("work the inbox")?;
    let lines = inbox::change(t, &scope.user_id, &id, change).await?;
    tell_agents(&state, t, &id, &lines).await?;
    state.db.wake_jobs();
    Ok(Json(
        crate::chats::service::reload(t, &id, &scope.user_id).await?,
    ))
}

/// An agent of the workspace who may see this inbox conversation (404 otherwise, as for a
/// conversation that does not exist; the support customer is no agent).
/// `what` ends the 403's message.
pub async fn agent_access(
    state: &AppState,
    scope: &Scope,
    id: &str,
    what: &str,
) -> AppResult<crate::conversations::model::ConversationRow> {
    let a = access(scope.tenant(&state.db), id, &scope.user_id, false).await?;
    if !a.conversation.kind().is_inbox() || a.conversation.is_customer(&scope.user_id) {
        return Err(AppError::not_found());
    }
    scope.require_agent(what)?;
    Ok(a.conversation)
}

/// GET /api/v1/conversations/{id}/notes — the notes and activity lines, oldest first (agents).
#[utoipa::path(get, path = "/conversations/{id}/notes", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path), ListQuery), responses((status = 200, body = Page<NoteView>), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn list_notes(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(paging): Query<ListQuery>,
) -> AppResult<Json<Page<NoteView>>> {
    agent_access(&state, &scope, &id, "see notes").await?;
    let limit = paging.limit()?;
    let rows = notes::list(scope.tenant(&state.db), &id, paging.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |n| n.id.clone(),
        notes::NoteRow::view,
    )))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    #[schema(min_length = 1, max_length = 4000)]
    pub text: String,
    /// Agents to tell (user ids of the workspace's owners, admins or agents).
    pub mentions: Option<Vec<String>>,
}

/// POST /api/v1/conversations/{id}/notes — an internal note (agents): never sent to the customer; `note:new` goes to the conversation's agents and the mentioned.
#[utoipa::path(post, path = "/conversations/{id}/notes", tag = "inbox", security(("bearer" = [])), request_body = NoteBody,
    params(("id" = String, Path)), responses((status = 201, body = NoteView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create_note(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<NoteBody>,
) -> AppResult<(StatusCode, Json<NoteView>)> {
    agent_access(&state, &scope, &id, "write notes").await?;
    let text = field("text", notes::parse_text(&b.text)).validate()?;
    let mut mentions: Vec<String> = Vec::new();
    let t = scope.tenant(&state.db);
    for m in b.mentions.unwrap_or_default() {
        super::service::require_agent_user(t, &m, "mentions").await?;
        if !mentions.contains(&m) {
            mentions.push(m);
        }
    }
    if mentions.len() > 50 {
        return Err(AppError::invalid_field("mentions", "at most 50"));
    }
    let mut tx = state.db.begin().await?;
    let new = notes::NewNote {
        conversation_id: &id,
        author: Some(&scope.user_id),
        kind: "note",
        text: &text,
        mentions: &mentions,
        details: None,
    };
    let note = notes::insert(&mut tx, t, new).await?;
    let details = serde_json::json!({"conversationId": id, "mentions": mentions});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::NOTE_CREATED,
        ("note", &note),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    tell_agents(&state, t, &id, std::slice::from_ref(&note)).await?;
    let view = notes::find(t, &[note])
        .await?
        .pop()
        .ok_or_else(AppError::not_found)?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SupportBody {
    /// The workspace (id or slug) whose team the caller writes to.
    pub workspace_id: String,
}

/// POST /api/v1/support — the caller's support conversation with a workspace's team: made (201) or found (200). The desk must be enabled (`settings.support`); 404 otherwise.
#[utoipa::path(post, path = "/support", tag = "inbox", security(("bearer" = [])), request_body = SupportBody,
    responses((status = 403, body = crate::error::Problem), (status = 200, body = ConversationView), (status = 201, body = ConversationView), (status = 404, body = crate::error::Problem)))]
async fn open_support(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(b): Json<SupportBody>,
) -> AppResult<(StatusCode, Json<ConversationView>)> {
    let workspace_id: Option<String> =
        sqlx::query_scalar("SELECT id FROM workspaces WHERE id = $1 OR slug = $1")
            .bind(&b.workspace_id)
            .fetch_optional(state.db.reader())
            .await?;
    let workspace_id = workspace_id.ok_or_else(AppError::not_found)?;
    let (id, made) = super::support::open(&state.db, &workspace_id, &auth.user_id).await?;
    if made {
        state.db.wake_jobs();
    }
    let t = Tenant::new(&state.db, &workspace_id);
    let view = crate::chats::service::reload(t, &id, &auth.user_id).await?;
    let status = if made {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Counts {
    /// Open conversations.
    pub open: i64,
    /// Open and assigned to the caller.
    pub mine: i64,
    /// Open and unassigned.
    pub unassigned: i64,
    /// Pending (snoozed ones included).
    pub pending: i64,
}

/// GET /api/v1/inbox/counts — the sidebar's badges (agents).
#[utoipa::path(get, path = "/inbox/counts", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Counts), (status = 403, body = crate::error::Problem)))]
async fn counts(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Counts>> {
    scope.require_agent("see the inbox")?;
    let (open, mine, unassigned, pending) =
        store::inbox_counts(scope.tenant(&state.db), &scope.user_id).await?;
    Ok(Json(Counts {
        open,
        mine,
        unassigned,
        pending,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    pub user_id: String,
    /// `online`, `busy` or `away`, as the agent set it.
    pub availability: String,
    /// Connected now (on any node).
    pub online: bool,
    /// Open conversations auto-assignment may give them; `null`: no limit.
    pub capacity: Option<i64>,
    pub auto_assign: bool,
    /// Open conversations assigned to them now.
    pub open_assigned: i64,
    pub last_assigned_at: Option<Timestamp>,
}

/// GET /api/v1/inbox/agents — the workspace's agents with their availability, capacity, whether they are connected and their open load (agents).
#[utoipa::path(get, path = "/inbox/agents", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Vec<AgentView>), (status = 403, body = crate::error::Problem)))]
async fn list_agents(
    State(state): State<AppState>,
    scope: Scope,
) -> AppResult<Json<Vec<AgentView>>> {
    scope.require_agent("see the team")?;
    Ok(Json(agent_views(&state, scope.tenant(&state.db)).await?))
}

/// The workspace's agents as `GET /inbox/agents` shows them.
async fn agent_views(state: &AppState, t: crate::db::Tenant<'_>) -> AppResult<Vec<AgentView>> {
    let agents = inbox::candidates(t).await?;
    let online: HashSet<String> = state
        .online_among(agents.iter().map(|a| a.user_id.clone()).collect())
        .await
        .into_iter()
        .collect();
    let load: Vec<(String, i64)> = sqlx::query_as(
        "SELECT assignee_id, COUNT(*) FROM conversations WHERE workspace_id = $1 \
         AND inbox_status = 'open' AND assignee_id IS NOT NULL GROUP BY assignee_id",
    )
    .bind(t.workspace_id())
    .fetch_all(state.db.reader())
    .await?;
    Ok(agents
        .into_iter()
        .map(|a| AgentView {
            online: online.contains(&a.user_id),
            open_assigned: load
                .iter()
                .find(|(u, _)| *u == a.user_id)
                .map_or(0, |l| l.1),
            last_assigned_at: (a.last_assigned_at > 0).then_some(Timestamp(a.last_assigned_at)),
            user_id: a.user_id,
            availability: a.availability,
            capacity: a.capacity,
            auto_assign: a.auto_assign != 0,
        })
        .collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentBody {
    /// `online`, `busy` or `away` (the agent themselves).
    pub availability: Option<String>,
    /// 1 to 1000 open conversations, `null` for no limit (admins).
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<i64>)]
    pub capacity: Option<Option<i64>>,
    /// Whether auto-assignment may give them conversations (the agent or admins).
    pub auto_assign: Option<bool>,
}

/// PATCH /api/v1/inbox/agents/{userId} — an agent's availability (themselves), capacity (admins) and auto-assignment; `agent:updated` tells the team.
#[utoipa::path(patch, path = "/inbox/agents/{userId}", tag = "inbox", security(("bearer" = [])), request_body = AgentBody,
    params(("userId" = String, Path)), responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn update_agent(
    State(state): State<AppState>,
    scope: Scope,
    Path(user_id): Path<String>,
    Json(b): Json<AgentBody>,
) -> AppResult<StatusCode> {
    scope.require_agent("set availability")?;
    let t = scope.tenant(&state.db);
    let me = user_id == scope.user_id;
    if !me {
        scope.require_admin("change another agent's settings")?;
    }
    if !me && b.availability.is_some() {
        return Err(AppError::forbidden("agents set their own availability"));
    }
    if b.capacity.is_some() && !scope.is_admin() {
        return Err(AppError::forbidden(
            "only the workspace's owners and admins set capacities",
        ));
    }
    // The path names an agent of this workspace: anyone else is not found.
    if !t.role_of(&user_id).await?.is_some_and(|r| r.works_inbox()) {
        return Err(AppError::not_found());
    }
    let (availability, capacity) = (
        optional("availability", b.availability, |a| match a.as_str() {
            "online" | "busy" | "away" => Ok(a),
            _ => Err("must be online, busy or away".to_owned()),
        }),
        optional("capacity", b.capacity, |c| match c {
            Some(n) if !(1..=1000).contains(&n) => Err("1 to 1000, or null".to_owned()),
            c => Ok(c),
        }),
    )
        .validate()?;
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO agent_settings (workspace_id, user_id, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (workspace_id, user_id) DO NOTHING",
    )
    .bind(&scope.workspace_id)
    .bind(&user_id)
    .bind(crate::db::now_ms())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE agent_settings SET availability = COALESCE($1, availability), \
         capacity = CASE WHEN $2 = 1 THEN $3 ELSE capacity END, \
         auto_assign = COALESCE($4, auto_assign), updated_at = $5 WHERE workspace_id = $6 AND user_id = $7",
    )
    .bind(availability.as_deref())
    .bind(capacity.is_some() as i64)
    .bind(capacity.flatten())
    .bind(b.auto_assign.map(i64::from))
    .bind(crate::db::now_ms())
    .bind(&scope.workspace_id)
    .bind(&user_id)
    .execute(&mut *tx)
    .await?;
    let details = serde_json::json!({"availability": availability, "capacity": capacity, "autoAssign": b.auto_assign});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::AGENT_SETTINGS,
        ("member", &user_id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    // The team sees the change live (a board of who takes conversations).
    let team = agent_views(&state, t).await?;
    let to: Vec<String> = team.iter().map(|a| a.user_id.clone()).collect();
    if let Some(changed) = team.iter().find(|a| a.user_id == user_id) {
        state.emit_event(to, events::AGENT_UPDATED, changed);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CannedQuery {
    /// Short codes starting with this (the composer's `/` shortcut).
    pub q: Option<String>,
}

/// GET /api/v1/canned-responses — the workspace's canned responses by short code (agents).
#[utoipa::path(get, path = "/canned-responses", tag = "inbox", security(("bearer" = [])), params(CannedQuery),
    responses((status = 200, body = Vec<CannedView>), (status = 403, body = crate::error::Problem)))]
async fn list_canned(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<CannedQuery>,
) -> AppResult<Json<Vec<CannedView>>> {
    scope.require_agent("see canned responses")?;
    let prefix =
        q.q.as_deref()
            .map(|p| p.trim().trim_start_matches('/').to_lowercase());
    Ok(Json(
        canned::list(scope.tenant(&state.db), prefix.as_deref()).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CannedBody {
    pub short_code: Option<String>,
    /// The text, with variables: `{{lead.name}}`, `{{lead.phone}}`, `{{lead.email}}`,
    /// `{{lead.stage}}`, `{{lead.attributes.KEY}}`, `{{agent.name}}`, `{{workspace.name}}`.
    pub text: Option<String>,
}

/// POST /api/v1/canned-responses — a new canned response (agents); 409 `short_code_taken`.
#[utoipa::path(post, path = "/canned-responses", tag = "inbox", security(("bearer" = [])), request_body = CannedBody,
    responses((status = 403, body = crate::error::Problem), (status = 201, body = CannedView), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create_canned(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<CannedBody>,
) -> AppResult<(StatusCode, Json<CannedView>)> {
    scope.require_agent("write canned responses")?;
    let required = |v: Option<String>| v.ok_or_else(|| "is required".to_owned());
    let (code, text) = (
        field(
            "shortCode",
            required(b.short_code).and_then(|c| canned::parse_short_code(&c)),
        ),
        field(
            "text",
            required(b.text).and_then(|t| canned::parse_text(&t)),
        ),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    let id = canned::insert(&mut tx, t, &scope.user_id, &code, &text).await?;
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::CANNED_CREATED,
        ("canned_response", &id),
        serde_json::json!({"shortCode": code}),
    )
    .await?;
    state.db.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(canned::find(t, &id).await?.view()),
    ))
}

/// PATCH /api/v1/canned-responses/{id} (agents)
#[utoipa::path(patch, path = "/canned-responses/{id}", tag = "inbox", security(("bearer" = [])), request_body = CannedBody,
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 200, body = CannedView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
async fn update_canned(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<CannedBody>,
) -> AppResult<Json<CannedView>> {
    scope.require_agent("change canned responses")?;
    let (code, text) = (
        optional("shortCode", b.short_code, |c| canned::parse_short_code(&c)),
        optional("text", b.text, |t| canned::parse_text(&t)),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    canned::update(&mut tx, t, &id, code.as_deref(), text.as_deref()).await?;
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::CANNED_UPDATED,
        ("canned_response", &id),
        serde_json::json!({"shortCode": code}),
    )
    .await?;
    state.db.commit(tx).await?;
    Ok(Json(canned::find(t, &id).await?.view()))
}

/// DELETE /api/v1/canned-responses/{id} (agents)
#[utoipa::path(delete, path = "/canned-responses/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 204), (status = 404, body = crate::error::Problem)))]
async fn delete_canned(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_agent("delete canned responses")?;
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    canned::delete(&mut tx, t, &id).await?;
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::CANNED_DELETED,
        ("canned_response", &id),
        serde_json::json!({}),
    )
    .await?;
    state.db.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderBody {
    pub conversation_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rendered {
    pub text: String,
    /// Variables that had no value (left empty).
    pub missing: Vec<String>,
}

/// POST /api/v1/canned-responses/{id}/render — the text with the variables of a conversation (its lead, the calling agent, the workspace) filled in (agents).
#[utoipa::path(post, path = "/canned-responses/{id}/render", tag = "inbox", security(("bearer" = [])), request_body = RenderBody,
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 200, body = Rendered), (status = 404, body = crate::error::Problem)))]
async fn render_canned(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<RenderBody>,
) -> AppResult<Json<Rendered>> {
    scope.require_agent("use canned responses")?;
    let t = scope.tenant(&state.db);
    let response = canned::find(t, &id).await?;
    let a = access(t, &b.conversation_id, &scope.user_id, false).await?;
    let cx = canned::context(t, &a.conversation, Some(&scope.user_id)).await?;
    let (text, missing) = canned::render(&response.text, &cx);
    Ok(Json(Rendered { text, missing }))
}
