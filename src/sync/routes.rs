//! `GET /api/v1/sync`: the caller's change stream, paged by cursor.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::response::{IntoResponse, Response};

use super::service::{page, Page, SyncPage};
use crate::app::AppState;
use crate::changes::Position;
use crate::error::{AppError, AppResult};
use crate::http::pagination::decode_cursor;
use crate::http::Query;
use crate::http::Scope;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SyncQuery {
    /// The cursor of the last event seen; absent: a snapshot and the current cursor.
    pub cursor: Option<String>,
    /// At most this many events (default 500, at most 5000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// GET /api/v1/sync — the changes after a cursor, oldest first, with no gaps and no duplicates.
#[utoipa::path(get, path = "/sync", tag = "sync", security(("bearer" = [])), params(SyncQuery),
    responses((status = 200, body = SyncPage)))]
async fn sync(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<SyncQuery>,
) -> AppResult<Page> {
    let limit = match q.limit {
        None => super::DEFAULT_LIMIT,
        Some(n) if n < 1 => return Err(AppError::invalid_field("limit", "must be at least 1")),
        Some(n) => n.min(super::MAX_LIMIT),
    };
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(decode_cursor::<Position>)
        .transpose()?;
    page(scope.tenant(&state.db), &scope.user_id, cursor, limit).await
}

/// The page as a JSON body ([`SyncPage`]'s shape).
impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.to_json() {
            Ok(body) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => AppError::internal(e).into_response(),
        }
    }
}
