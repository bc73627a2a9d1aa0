//! `GET /api/v1/calls` (the call log) and `GET /api/v1/calls/ice-servers`.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ice::IceServers;
use super::model::CallView;
use crate::app::AppState;
use crate::error::{AppResult, Problem};
use crate::http::{AuthUser, Json, ListQuery, Page, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_calls))
        .routes(routes!(ice_servers))
}

/// GET /api/v1/calls — the caller's calls in the workspace, made and received, newest first; a call shows here once it has ended.
#[utoipa::path(get, path = "/calls", tag = "calls", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<CallView>), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn list_calls(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<CallView>>> {
    let limit = q.limit()?;
    let before: Option<String> = q.position()?;
    let rows = super::store::log(
        scope.tenant(&state.db),
        &scope.user_id,
        before.as_deref(),
        limit + 1,
    )
    .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |c| c.id.clone(),
        |c| c.view(&scope.user_id),
    )))
}

/// GET /api/v1/calls/ice-servers — the STUN and TURN servers for a call, with TURN credentials for the caller that expire after `ttl` seconds.
#[utoipa::path(get, path = "/calls/ice-servers", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = IceServers)))]
async fn ice_servers(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<IceServers>> {
    Ok(Json(super::ice::ice_servers(
        &state.config.calls,
        &auth.user_id,
    )))
}
