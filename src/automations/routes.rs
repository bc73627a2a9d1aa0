//! `/api/v1/automations` (owners and admins) and the business hours agents read.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{Action, Condition, Trigger};
use super::service::{self, Parts};
use super::store::{self, RuleView, RunView};
use crate::app::AppState;
use crate::db::Timestamp;
use crate::error::AppResult;
use crate::http::{Json, Page, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(runs))
        .routes(routes!(hours))
}

const ADMIN: &str = "manage automations";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleBody {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// [default: true]
    pub enabled: Option<bool>,
    /// Rules fire in ascending position [default: after the last].
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub position: Option<i64>,
    pub trigger: Option<Trigger>,
    /// All must hold; at most 20 [default: none].
    pub conditions: Option<Vec<Condition>>,
    /// 1 to 20, carried out in order.
    pub actions: Option<Vec<Action>>,
    /// At most once per conversation in this many minutes, 0 to 525,600 (timed triggers: once per wait) [default: 60].
    #[schema(minimum = 0, maximum = 525_600)]
    pub cooldown_minutes: Option<i64>,
}

impl RuleBody {
    fn parts(self) -> Parts {
        Parts {
            name: self.name,
            enabled: self.enabled,
            position: self.position,
            trigger: self.trigger,
            conditions: self.conditions,
            actions: self.actions,
            cooldown_minutes: self.cooldown_minutes,
        }
    }
}

/// GET /api/v1/automations — the workspace's rules in the order they fire (owners and admins).
#[utoipa::path(get, path = "/automations", tag = "automations", security(("bearer" = [])),
    responses((status = 200, body = Vec<RuleView>), (status = 403, body = crate::error::Problem)))]
async fn list(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Vec<RuleView>>> {
    scope.require_admin(ADMIN)?;
    let rows = store::list(scope.tenant(&state.db)).await?;
    Ok(Json(
        rows.iter().map(|r| r.view()).collect::<AppResult<_>>()?,
    ))
}

/// POST /api/v1/automations — a rule: `name`, `trigger` and `actions` are required (owners and admins).
#[utoipa::path(post, path = "/automations", tag = "automations", security(("bearer" = [])), request_body = RuleBody,
    responses((status = 201, body = RuleView), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<RuleBody>,
) -> AppResult<(StatusCode, Json<RuleView>)> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    let view = service::create(&state, t, &scope.user_id, b.parts()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// GET /api/v1/automations/{id} (owners and admins).
#[utoipa::path(get, path = "/automations/{id}", tag = "automations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn get_one(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<RuleView>> {
    scope.require_admin(ADMIN)?;
    Ok(Json(
        store::find(scope.tenant(&state.db), &id).await?.view()?,
    ))
}

/// PATCH /api/v1/automations/{id} — changes the parts given; new actions with a webhook give its secret again (owners and admins).
#[utoipa::path(patch, path = "/automations/{id}", tag = "automations", security(("bearer" = [])), request_body = RuleBody,
    params(("id" = String, Path)),
    responses((status = 200, body = RuleView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
async fn update(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<RuleBody>,
) -> AppResult<Json<RuleView>> {
    scope.require_admin(ADMIN)?;
    let t = scope.tenant(&state.db);
    Ok(Json(
        service::update(&state, t, &scope.user_id, &id, b.parts()).await?,
    ))
}

/// DELETE /api/v1/automations/{id} — the rule and its runs (owners and admins).
#[utoipa::path(delete, path = "/automations/{id}", tag = "automations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn delete(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin(ADMIN)?;
    service::delete(scope.tenant(&state.db), &scope.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// GET /api/v1/automations/{id}/runs — when the rule fired, where, and what came of each action, newest first (owners and admins).
#[utoipa::path(get, path = "/automations/{id}/runs", tag = "automations", security(("bearer" = [])),
    params(("id" = String, Path), RunsQuery),
    responses((status = 200, body = Page<RunView>), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
async fn runs(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> AppResult<Json<Page<RunView>>> {
    scope.require_admin(ADMIN)?;
    let list = crate::http::ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = list.limit()?;
    let t = scope.tenant(&state.db);
    store::find(t, &id).await?;
    let rows = store::runs(t, &id, list.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |r| (r.at.0, r.id.clone()),
        |r| r,
    )))
}

/// Whether the workspace is open by its business hours.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hours {
    /// The workspace's `settings.timezone` (UTC when unset).
    pub timezone: String,
    /// Whether the workspace sets business hours at all (without: always open).
    pub configured: bool,
    pub open_now: bool,
    /// When it next opens, if closed now (none within a year: null).
    pub next_opening: Option<Timestamp>,
}

/// GET /api/v1/inbox/hours — open now by the workspace's business hours and holidays, and the next opening (agents).
#[utoipa::path(get, path = "/inbox/hours", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Hours), (status = 403, body = crate::error::Problem)))]
async fn hours(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Hours>> {
    scope.require_agent("read the business hours")?;
    let settings = crate::workspaces::store::settings(scope.tenant(&state.db)).await?;
    let timezone = settings
        .get("timezone")
        .and_then(|v| v.as_str())
        .unwrap_or("UTC")
        .to_owned();
    let hours = crate::workspaces::hours::BusinessHours::of_settings(&settings)
        .ok()
        .flatten();
    let now = chrono::Utc::now();
    Ok(Json(match hours {
        None => Hours {
            timezone,
            configured: false,
            open_now: true,
            next_opening: None,
        },
        Some(h) => {
            let open_now = h.is_open(now);
            Hours {
                timezone,
                configured: true,
                open_now,
                next_opening: if open_now {
                    None
                } else {
                    h.next_opening(now).map(|t| Timestamp(t.timestamp_millis()))
                },
            }
        }
    }))
}
