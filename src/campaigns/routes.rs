//! `/api/v1/campaigns` (owners and admins).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{parse_start, Audience, Move};
use super::store::{self, CampaignView, Fields, RecipientView, Stats};
use crate::app::AppState;
use crate::audit::{self, actions as audited};
use crate::db::Tenant;
use crate::error::{AppError, AppResult, FieldError};
use crate::http::{Json, Page, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(schedule))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(cancel))
        .routes(routes!(preview))
        .routes(routes!(stats))
        .routes(routes!(recipients))
}

const ADMIN: &str = "run campaigns";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// The WhatsApp channel it sends through.
    pub channel_id: Option<String>,
    /// A template of the workspace (approved when it is scheduled).
    pub template_id: Option<String>,
    /// The template's `{{1}}`… in order; each may name the lead's fields like canned responses (`{{lead.name}}`, `{{lead.attributes.KEY}}`).
    #[schema(max_items = 20)]
    pub parameters: Option<Vec<String>>,
    pub audience: Option<Audience>,
    /// When to start, for a later `schedule` without `at`: RFC 3339, or local `YYYY-MM-DDTHH:MM` in the workspace's timezone.
    pub scheduled_at: Option<String>,
}

/// Checks every part given against the workspace (its channels, templates, timezone).
async fn fields(t: Tenant<'_>, b: CampaignBody) -> AppResult<Fields> {
    let mut errors = Vec::new();
    let mut f = Fields::default();
    if let Some(n) = b.name {
        match crate::automations::service::parse_rule_name(&n) {
            Ok(n) => f.name = Some(n),
            Err(m) => errors.push(FieldError::new("name", m)),
        }
    }
    if let Some(c) = b.channel_id {
        match crate::whatsapp::channels::find(t, &c).await? {
            Some(_) => f.channel_id = Some(c),
            None => errors.push(FieldError::new(
                "channelId",
                "no such channel in this workspace",
            )),
        }
    }
    if let Some(id) = b.template_id {
        match crate::messages::templates::find(t, &id).await? {
            Some(_) => f.template_id = Some(id),
            None => errors.push(FieldError::new(
                "templateId",
                "no such template in this workspace",
            )),
        }
    }
    if let Some(p) = b.parameters {
        if p.len() > 20 || p.iter().any(|s| s.is_empty() || s.chars().count() > 1024) {
            errors.push(FieldError::new(
                "parameters",
                "at most 20, each 1 to 1024 characters",
            ));
        }
        f.parameters = Some(p);
    }
    if let Some(a) = b.audience {
        match a.check() {
            Ok(a) => f.audience = Some(a),
            Err((field, m)) => errors.push(FieldError::new(field, m)),
        }
    }
    if let Some(at) = b.scheduled_at {
        match parse_start(&at, crate::workspaces::store::timezone(t).await?) {
            Ok(at) => f.scheduled_at = Some(at),
            Err(m) => errors.push(FieldError::new("scheduledAt", m)),
        }
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(f)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// GET /api/v1/campaigns — newest first (owners and admins).
#[utoipa::path(get, path = "/campaigns", tag = "campaigns", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<CampaignView>), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn list(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<CampaignView>>> {
    scope.require_admin(ADMIN)?;
    let list = crate::http::ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = list.limit()?;
    let rows = store::list(scope.tenant(&state.db), list.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |c| (c.created_at, c.id.clone()),
        |c| c.view(),
    )))
}

/// POST /api/v1/campaigns — a draft: `name`, `channelId` and `templateId` are required (owners and admins).
#[utoipa::path(post, path = "/campaigns", tag = "campaigns", security(("bearer" = [])), request_body = CampaignBody,
    responses((status = 201, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<CampaignBody>,
) -> AppResult<(StatusCode, Json<CampaignView>)> {
    scope.require_admin(ADMIN)?;
    let missing: Vec<FieldError> = [
        ("name", b.name.is_none()),
        ("channelId", b.channel_id.is_none()),
        ("templateId", b.template_id.is_none()),
    ]
    .into_iter()
    .filter(|(_, absent)| *absent)
    .map(|(f, _)| FieldError::new(f, "is required"))
    .collect();
    if !missing.is_empty() {
        return Err(AppError::validation(missing));
    }
    let t = scope.tenant(&state.db);
    let f = fields(t, b).await?;
    let mut tx = state.db.begin().await?;
    let id = store::insert(&mut tx, t, &scope.user_id, &f).await?;
    let details = json!({"name": f.name});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        audited::CAMPAIGN_CREATED,
        ("campaign", &id),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(store::find(t, &id).await?.view())))
}

/// GET /api/v1/campaigns/{id} (owners and admins).
#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn get_one(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<CampaignView>> {
    scope.require_admin(ADMIN)?;
    Ok(Json(
        store::find(scope.tenant(&state.db), &id).await?.view(),
    ))
}

/// PATCH /api/v1/campaigns/{id} — changes a draft (409 `campaign_state` after) (owners and admins).
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns", security(("bearer" = [])), request_body = CampaignBody,
    params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state: no longer a draft", body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn update(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<CampaignBody>,
) -> AppResult<Json<CampaignView>> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    store::find(t, &id).await?;
    let f = fields(t, b).await?;
    let mut tx = state.db.begin().await?;
    store::update_draft(&mut tx, t, &id, &f).await?;
    tx.commit().await?;
    Ok(Json(store::find(t, &id).await?.view()))
}

/// DELETE /api/v1/campaigns/{id} — a draft, or one that ended, with its recipients (owners and admins).
#[utoipa::path(delete, path = "/campaigns/{id}", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state: scheduled, running or paused (cancel it first)", body = crate::error::Problem)))]
async fn delete(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    let c = store::find(t, &id).await?;
    let mut tx = state.db.begin().await?;
    store::delete(&mut tx, t, &id).await?;
    let details = json!({"name": c.name});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        audited::CAMPAIGN_DELETED,
        ("campaign", &id),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleBody {
    /// RFC 3339, or local `YYYY-MM-DDTHH:MM` in the workspace's timezone [default: the draft's `scheduledAt`, else now].
    pub at: Option<String>,
}

/// POST /api/v1/campaigns/{id}/schedule — a draft (or a scheduled one, again) starts at `at`; its channel and approved template are checked now (owners and admins).
#[utoipa::path(post, path = "/campaigns/{id}/schedule", tag = "campaigns", security(("bearer" = [])), request_body = ScheduleBody,
    params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state", body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn schedule(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    body: Option<Json<ScheduleBody>>,
) -> AppResult<Json<CampaignView>> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    let c = store::find(t, &id).await?;
    let at = match body.and_then(|Json(b)| b.at) {
        Some(raw) => Some(
            parse_start(&raw, crate::workspaces::store::timezone(t).await?)
                .map_err(|m| AppError::invalid_field("at", m))?,
        ),
        None => c.scheduled_at,
    };
    ready(t, &c).await?;
    transition(&state, &scope, &id, Move::Schedule, at).await
}

/// What scheduling needs: the channel, an approved template with the right parameters.
async fn ready(t: Tenant<'_>, c: &store::CampaignRow) -> AppResult<()> {
    let channel = match &c.channel_id {
        Some(id) => crate::whatsapp::channels::find(t, id).await?,
        None => None,
    };
    if channel.is_none() {
        return Err(AppError::invalid_field("channelId", "the channel is gone"));
    }
    let template = match &c.template_id {
        Some(id) => crate::messages::templates::find(t, id).await?,
        None => None,
    };
    let Some(template) = template else {
        return Err(AppError::invalid_field(
            "templateId",
            "the template is gone",
        ));
    };
    if template.status != "approved" {
        return Err(AppError::invalid_field(
            "templateId",
            format!("the template is {}, not approved", template.status),
        ));
    }
    let body = crate::messages::templates::body_text(&template);
    let wanted = crate::messages::templates::variable_count(&body);
    if wanted != c.parameters().len() {
        return Err(AppError::invalid_field(
            "parameters",
            format!("the template expects {wanted} parameter(s)"),
        ));
    }
    Ok(())
}

/// A move someone asks for (owners and admins; 404 for another workspace's campaign).
async fn transition(
    state: &AppState,
    scope: &Scope,
    id: &str,
    m: Move,
    at: Option<i64>,
) -> AppResult<Json<CampaignView>> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    store::find(t, id).await?;
    let mut tx = state.db.begin().await?;
    store::transition(&mut tx, t, id, m, at).await?;
    let details = json!({"move": m.name(), "to": m.to().as_str()});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        audited::CAMPAIGN_CHANGED,
        ("campaign", id),
        details,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(store::find(t, id).await?.view()))
}

/// POST /api/v1/campaigns/{id}/pause — a running campaign stops handing out messages (those due in the next two seconds still go) (owners and admins).
#[utoipa::path(post, path = "/campaigns/{id}/pause", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state: not running", body = crate::error::Problem)))]
async fn pause(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<CampaignView>> {
    transition(&state, &scope, &id, Move::Pause, None).await
}

/// POST /api/v1/campaigns/{id}/resume — a paused campaign runs on from where it stopped (owners and admins).
#[utoipa::path(post, path = "/campaigns/{id}/resume", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state: not paused", body = crate::error::Problem)))]
async fn resume(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<CampaignView>> {
    transition(&state, &scope, &id, Move::Resume, None).await
}

/// POST /api/v1/campaigns/{id}/cancel — ends a campaign that has not ended; recipients not yet handed out get nothing (owners and admins).
#[utoipa::path(post, path = "/campaigns/{id}/cancel", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "campaign_state: completed or cancelled already", body = crate::error::Problem)))]
async fn cancel(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<CampaignView>> {
    transition(&state, &scope, &id, Move::Cancel, None).await
}

/// Who a campaign would reach now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    pub count: i64,
    /// Up to 10 of them: `{leadId, name, phone}`.
    #[schema(value_type = Vec<Object>)]
    pub sample: Vec<serde_json::Value>,
}

/// GET /api/v1/campaigns/{id}/preview — how many opted-in leads the audience holds now, and a sample (owners and admins).
#[utoipa::path(get, path = "/campaigns/{id}/preview", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Preview), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn preview(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<Preview>> {
    scope.require_admin(ADMIN)?;
    let c = store::find(scope.tenant(&state.db), &id).await?;
    let mut tx = state.db.begin().await?;
    let leads = super::send::audience(&mut tx, &c.workspace_id, &c.audience()).await?;
    drop(tx);
    Ok(Json(Preview {
        count: leads.len() as i64,
        sample: super::send::sample(&leads),
    }))
}

/// GET /api/v1/campaigns/{id}/stats — the funnel, from each recipient's message (owners and admins).
#[utoipa::path(get, path = "/campaigns/{id}/stats", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Stats), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn stats(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<Stats>> {
    scope.require_admin(ADMIN)?;
    store::find(scope.tenant(&state.db), &id).await?;
    Ok(Json(store::stats(&state.db, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecipientsQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only recipients in this status: queued, sent, delivered, read, failed, replied.
    pub status: Option<String>,
}

/// GET /api/v1/campaigns/{id}/recipients — each recipient with its status, by lead id (owners and admins).
#[utoipa::path(get, path = "/campaigns/{id}/recipients", tag = "campaigns", security(("bearer" = [])), params(("id" = String, Path), RecipientsQuery),
    responses((status = 200, body = Page<RecipientView>), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
async fn recipients(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<RecipientsQuery>,
) -> AppResult<Json<Page<RecipientView>>> {
    scope.require_admin(ADMIN)?;
    if let Some(s) = &q.status {
        if !["queued", "sent", "delivered", "read", "failed", "replied"].contains(&s.as_str()) {
            return Err(AppError::invalid_field(
                "status",
                "queued, sent, delivered, read, failed or replied",
            ));
        }
    }
    store::find(scope.tenant(&state.db), &id).await?;
    let list = crate::http::ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = list.limit()?;
    let after: String = list.position()?.unwrap_or_default();
    let rows = store::recipients(&state.db, &id, q.status.as_deref(), &after, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |r| r.lead_id.clone(),
        |r| r,
    )))
}
