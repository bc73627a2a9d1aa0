//! `/api/v1/analytics/…` (owners and admins; an agent reads their own row of `agents`), each
//! as JSON and as CSV (`….csv`).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::csv;
use super::model::{parse_bound, Range};
use super::service::{self, Agents, Campaigns, Channels, Overview};
use crate::app::AppState;
use crate::db::{now_ms, Role};
use crate::error::{AppError, AppResult};
use crate::http::validate::{optional, Validate};
use crate::http::{Json, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(overview))
        .routes(routes!(overview_csv))
        .routes(routes!(agents))
        .routes(routes!(agents_csv))
        .routes(routes!(campaigns))
        .routes(routes!(campaigns_csv))
        .routes(routes!(channels))
        .routes(routes!(channels_csv))
}

const ADMIN: &str = "read the workspace's analytics";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    /// From this instant (RFC 3339) or the start of this day (`YYYY-MM-DD` in `tz`) [default: the start of the day 29 days ago].
    pub from: Option<String>,
    /// Until this instant (RFC 3339), or the end of this day (`YYYY-MM-DD` in `tz`) [default: now]. At most 400 days after `from`.
    pub to: Option<String>,
    /// The timezone of dates and days, an IANA name [default: the workspace's timezone, else UTC].
    pub tz: Option<String>,
}

async fn range(state: &AppState, scope: &Scope, q: RangeQuery) -> AppResult<Range> {
    let tz = match q.tz {
        Some(name) => name.parse().map_err(|_| {
            AppError::invalid_field("tz", "must be an IANA time zone name, e.g. Europe/Lisbon")
        })?,
        None => crate::workspaces::store::timezone(scope.tenant(&state.db)).await?,
    };
    let (from, to) = (
        optional("from", q.from, |v| parse_bound(&v, tz, false)),
        optional("to", q.to, |v| parse_bound(&v, tz, true)),
    )
        .validate()?;
    Range::new(from, to, tz, now_ms()).map_err(|m| AppError::invalid_field("from", m))
}

fn csv_response(name: &str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}.csv\"");
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

async fn overview_of(state: &AppState, scope: &Scope, q: RangeQuery) -> AppResult<Overview> {
    scope.require_admin(ADMIN)?;
    let r = range(state, scope, q).await?;
    service::overview(scope.tenant(&state.db), r).await
}

/// GET /api/v1/analytics/overview — the inbox over a range: conversations opened, reopened and closed, messages in and out, first-response and resolution times (median and 90th percentile, wall time and business hours), in total and per day (owners and admins).
#[utoipa::path(get, path = "/analytics/overview", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Overview), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn overview(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Json<Overview>> {
    Ok(Json(overview_of(&state, &scope, q).await?))
}

/// GET /api/v1/analytics/overview.csv — the overview's days, then a `total` row (owners and admins).
#[utoipa::path(get, path = "/analytics/overview.csv", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn overview_csv(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Response> {
    let o = overview_of(&state, &scope, q).await?;
    Ok(csv_response("analytics-overview", csv::overview(&o)?))
}

async fn agents_of(state: &AppState, scope: &Scope, q: RangeQuery) -> AppResult<Agents> {
    scope.require_agent("read analytics")?;
    let only = (scope.role == Role::Agent).then_some(scope.user_id.as_str());
    let r = range(state, scope, q).await?;
    service::agents(scope.tenant(&state.db), r, only).await
}

/// GET /api/v1/analytics/agents — per agent: conversations assigned, messages sent, response and first-response times, conversations closed (owners and admins; an agent gets their own row).
#[utoipa::path(get, path = "/analytics/agents", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Agents), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn agents(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Json<Agents>> {
    Ok(Json(agents_of(&state, &scope, q).await?))
}

/// GET /api/v1/analytics/agents.csv — the agents' rows as CSV.
#[utoipa::path(get, path = "/analytics/agents.csv", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn agents_csv(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Response> {
    let a = agents_of(&state, &scope, q).await?;
    Ok(csv_response("analytics-agents", csv::agents(&a)?))
}

async fn campaigns_of(state: &AppState, scope: &Scope, q: RangeQuery) -> AppResult<Campaigns> {
    scope.require_admin(ADMIN)?;
    let r = range(state, scope, q).await?;
    service::campaigns(scope.tenant(&state.db), r).await
}

/// GET /api/v1/analytics/campaigns — the campaigns that started in the range, each with its funnel (owners and admins).
#[utoipa::path(get, path = "/analytics/campaigns", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Campaigns), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn campaigns(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Json<Campaigns>> {
    Ok(Json(campaigns_of(&state, &scope, q).await?))
}

/// GET /api/v1/analytics/campaigns.csv — the campaigns' funnels as CSV.
#[utoipa::path(get, path = "/analytics/campaigns.csv", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn campaigns_csv(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Response> {
    let c = campaigns_of(&state, &scope, q).await?;
    Ok(csv_response("analytics-campaigns", csv::campaigns(&c)?))
}

async fn channels_of(state: &AppState, scope: &Scope, q: RangeQuery) -> AppResult<Channels> {
    scope.require_admin(ADMIN)?;
    let r = range(state, scope, q).await?;
    service::channels(scope.tenant(&state.db), r).await
}

/// GET /api/v1/analytics/channels — the overview's figures per channel, the support desk first (owners and admins).
#[utoipa::path(get, path = "/analytics/channels", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, body = Channels), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn channels(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Json<Channels>> {
    Ok(Json(channels_of(&state, &scope, q).await?))
}

/// GET /api/v1/analytics/channels.csv — the channels' rows as CSV.
#[utoipa::path(get, path = "/analytics/channels.csv", tag = "analytics", security(("bearer" = [])), params(RangeQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn channels_csv(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<RangeQuery>,
) -> AppResult<Response> {
    let c = channels_of(&state, &scope, q).await?;
    Ok(csv_response("analytics-channels", csv::channels(&c)?))
}
