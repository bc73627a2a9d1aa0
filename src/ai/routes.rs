//! AI analysis over HTTP for agents: asking for a run, reading runs and insights.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::insights::{self, InsightView, RunView};
use crate::app::AppState;
use crate::error::{AppError, AppResult};
use crate::http::{Json, ListQuery, Page, Query, Scope};
use crate::inbox::desk_routes::agent_access;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(analyze))
        .routes(routes!(get_run))
        .routes(routes!(list_insights))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalyzeBody {
    pub conversation_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queued {
    pub run_id: String,
}

/// POST /api/v1/ai/analyze — analyses an inbox conversation now (agents; the workspace must have opted in): 202 with the run's id; the insight follows as `insight:new` and in `GET /conversations/{id}/insights`.
#[utoipa::path(post, path = "/ai/analyze", tag = "ai", security(("bearer" = [])), request_body = AnalyzeBody,
    responses((status = 202, body = Queued), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn analyze(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<AnalyzeBody>,
) -> AppResult<(StatusCode, Json<Queued>)> {
    let c = agent_access(&state, &scope, &b.conversation_id, "use AI analysis").await?;
    let t = scope.tenant(&state.db);
    insights::enabled(t).await?;
    let run_id = insights::request(t, &c, "manual", Some(&scope.user_id)).await?;
    Ok((StatusCode::ACCEPTED, Json(Queued { run_id })))
}

/// GET /api/v1/ai/runs/{id} — a run: `queued`, `completed` (with its insight's id) or `failed` (with the error) (agents).
#[utoipa::path(get, path = "/ai/runs/{id}", tag = "ai", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = RunView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn get_run(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<RunView>> {
    scope.require_agent("see AI runs")?;
    let run = insights::find_run(scope.tenant(&state.db), &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(run))
}

/// GET /api/v1/conversations/{id}/insights — the conversation's insights, newest first (agents; never its customer).
#[utoipa::path(get, path = "/conversations/{id}/insights", tag = "ai", security(("bearer" = [])),
    params(("id" = String, Path), ListQuery),
    responses((status = 200, body = Page<InsightView>), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn list_insights(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<InsightView>>> {
    agent_access(&state, &scope, &id, "see insights").await?;
    let limit = q.limit()?;
    let rows = insights::list(scope.tenant(&state.db), &id, q.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |i| (i.created_at.0, i.id.clone()),
        |i| i,
    )))
}
