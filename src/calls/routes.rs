//! `GET /api/v1/calls/ice-servers`.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::IceServers;
use crate::app::AppState;
use crate::error::AppResult;
use crate::http::{AuthUser, Json};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(ice_servers))
}

/// GET /api/v1/calls/ice-servers — the STUN and TURN servers for a call, with TURN credentials for the caller that expire after `ttl` seconds.
#[utoipa::path(get, path = "/calls/ice-servers", tag = "calls", security(("bearer" = [])),
    responses((status = 200, body = IceServers)))]
async fn ice_servers(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<IceServers>> {
    Ok(Json(super::ice_servers(&state.config.calls, &auth.user_id)))
}
