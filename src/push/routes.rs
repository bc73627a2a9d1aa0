//! `GET /api/v1/push/vapid-public-key` and `/api/v1/push/subscriptions`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{SubscriptionBody, SubscriptionView, Target, VapidKey};
use super::store;
use crate::app::AppState;
use crate::error::{AppError, AppResult, Problem};
use crate::http::{AuthUser, Json, Page};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(vapid_public_key))
        .routes(routes!(subscribe, list_subscriptions))
        .routes(routes!(unsubscribe))
}

/// GET /api/v1/push/vapid-public-key — the server's VAPID key, a browser's `applicationServerKey`.
#[utoipa::path(get, path = "/push/vapid-public-key", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = VapidKey), (status = 401, body = Problem)))]
async fn vapid_public_key(State(state): State<AppState>, _auth: AuthUser) -> Json<VapidKey> {
    Json(VapidKey {
        public_key: state.push.vapid.public_key().to_owned(),
    })
}

/// POST /api/v1/push/subscriptions — registers where this device (session) is notified while it is not connected: a Web Push subscription (`PushSubscription.toJSON()`) or `{type: "webhook", url, token?}`. Idempotent on the endpoint: 201 when new, 200 when it was known (it then moves to this session).
#[utoipa::path(post, path = "/push/subscriptions", tag = "push", security(("bearer" = [])), request_body = SubscriptionBody,
    responses((status = 201, body = SubscriptionView), (status = 200, body = SubscriptionView), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn subscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<SubscriptionBody>,
) -> AppResult<(StatusCode, Json<SubscriptionView>)> {
    let target = body.parse()?;
    if let Target::Webhook { url, .. } = &target {
        let parsed =
            url::Url::parse(url).map_err(|_| AppError::invalid_field("url", "is not a URL"))?;
        crate::outbound::check_url(state.push.http.allow(), &parsed)
            .map_err(|e| AppError::invalid_field("url", e.to_string()))?;
    }
    let sealed = match &target {
        Target::Webhook { token: Some(t), .. } => Some(state.secret.seal(t)),
        _ => None,
    };
    let (row, created) =
        store::upsert(&state.db, &auth.user_id, &auth.session_id, &target, sealed).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(row.view())))
}

/// GET /api/v1/push/subscriptions — the caller's subscriptions, on every device.
#[utoipa::path(get, path = "/push/subscriptions", tag = "push", security(("bearer" = [])),
    responses((status = 200, body = Page<SubscriptionView>), (status = 401, body = Problem)))]
async fn list_subscriptions(
    State(state): State<AppState>,
    auth: AuthUser,
) -> AppResult<Json<Page<SubscriptionView>>> {
    let rows = store::list_for_user(&state.db, &auth.user_id).await?;
    Ok(Json(Page {
        items: rows.iter().map(|r| r.view()).collect(),
        next_cursor: None,
    }))
}

/// DELETE /api/v1/push/subscriptions/{id} — stops notifications to one of the caller's subscriptions.
#[utoipa::path(delete, path = "/push/subscriptions/{id}", tag = "push", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn unsubscribe(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if !store::delete(&state.db, &auth.user_id, &id).await? {
        return Err(AppError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
