//! The workspace admins' side of AI analysis: provider keys, usage, and the log of what was
//! sent to providers.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::keys::{self, KeyView, NewKey};
use super::usage::{self, CallView, GroupBy, Usage};
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{AppError, AppResult};
use crate::http::validate::{field, optional, Validate};
use crate::http::{Json, Page, Query, Scope};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, add_key))
        .routes(routes!(rotate_key))
        .routes(routes!(revoke_key))
        .routes(routes!(get_usage))
        .routes(routes!(get_usage_csv))
        .routes(routes!(list_calls))
}

const ADMIN: &str = "manage AI keys and read AI usage";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyBody {
    /// A label, 1 to 80 characters.
    #[schema(min_length = 1, max_length = 80)]
    pub name: Option<String>,
    /// The provider's API key; stored encrypted, never shown again.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: Option<String>,
    /// The provider's base URL, `/chat/completions` is appended [default: the server's provider, else https://api.openai.com/v1].
    pub base_url: Option<String>,
    /// [default: the server's model, `PALAVER_AI_MODEL`].
    #[schema(min_length = 1, max_length = 200)]
    pub model: Option<String>,
}

/// GET /api/v1/admin/ai/keys — the workspace's AI provider keys, newest first, masked (owners and admins).
#[utoipa::path(get, path = "/admin/ai/keys", tag = "ai", security(("bearer" = [])),
    responses((status = 200, body = Vec<KeyView>), (status = 403, body = crate::error::Problem)))]
async fn list_keys(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Vec<KeyView>>> {
    scope.require_admin(ADMIN)?;
    Ok(Json(keys::list(scope.tenant(&state.db)).await?))
}

/// POST /api/v1/admin/ai/keys — adds an active key: the workspace's calls use its newest active key instead of the server's provider (owners and admins).
#[utoipa::path(post, path = "/admin/ai/keys", tag = "ai", security(("bearer" = [])), request_body = KeyBody,
    responses((status = 201, body = KeyView), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn add_key(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<KeyBody>,
) -> AppResult<(StatusCode, Json<KeyView>)> {
    scope.require_admin(ADMIN)?;
    let (name, api_key, base_url, model) = (
        field(
            "name",
            b.name
                .as_deref()
                .ok_or("is required".to_string())
                .and_then(crate::workspaces::parse_name),
        ),
        field(
            "apiKey",
            b.api_key
                .as_deref()
                .ok_or("is required".to_string())
                .and_then(keys::parse_api_key),
        ),
        optional("baseUrl", b.base_url, |v| {
            crate::outbound::parse_base_url(state.ai.http.allow(), &v)
        }),
        optional("model", b.model, |v| keys::parse_model(&v)),
    )
        .validate()?;
    let key = NewKey {
        name,
        api_key,
        base_url,
        model,
    };
    let t = scope.tenant(&state.db);
    let view = keys::add(t, &state.secret, &state.config.ai, &scope.user_id, key).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateBody {
    /// The new key.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: Option<String>,
    /// How long the old key stays usable (`retiring`), 0 to 2,592,000 [default: 86,400].
    #[schema(minimum = 0, maximum = 2_592_000)]
    pub grace_seconds: Option<i64>,
}

/// POST /api/v1/admin/ai/keys/{id}/rotate — a new active key replaces this one, which stays usable (`retiring`) for the grace period, then is revoked (owners and admins).
#[utoipa::path(post, path = "/admin/ai/keys/{id}/rotate", tag = "ai", security(("bearer" = [])), request_body = RotateBody,
    params(("id" = String, Path)),
    responses((status = 201, body = KeyView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 409, description = "ai_key_not_active: the key is retiring or revoked", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
async fn rotate_key(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<RotateBody>,
) -> AppResult<(StatusCode, Json<KeyView>)> {
    scope.require_admin(ADMIN)?;
    let (api_key, grace) = (
        field(
            "apiKey",
            b.api_key
                .as_deref()
                .ok_or("is required".to_string())
                .and_then(keys::parse_api_key),
        ),
        optional("graceSeconds", b.grace_seconds, |g| {
            if (0..=2_592_000).contains(&g) {
                Ok(g)
            } else {
                Err("must be 0 to 2592000".to_string())
            }
        }),
    )
        .validate()?;
    let grace = grace.unwrap_or(keys::DEFAULT_GRACE_SECONDS);
    let t = scope.tenant(&state.db);
    let view = keys::rotate(t, &state.secret, &scope.user_id, &id, api_key, grace).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// DELETE /api/v1/admin/ai/keys/{id} — revokes a key at once (owners and admins).
#[utoipa::path(delete, path = "/admin/ai/keys/{id}", tag = "ai", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn revoke_key(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin(ADMIN)?;
    keys::revoke(scope.tenant(&state.db), &scope.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsageQuery {
    /// From this instant (RFC 3339) or day (`YYYY-MM-DD`, UTC) [default: 30 days ago].
    pub from: Option<String>,
    /// Until this instant (RFC 3339), or to the end of this day (`YYYY-MM-DD`, UTC) [default: now].
    pub to: Option<String>,
    /// `day` (UTC), `key`, `conversation` or `model` [default: day].
    #[param(pattern = "^(day|key|conversation|model)$")]
    pub group_by: Option<String>,
}

/// An instant, or a day's first instant (`end`: the next day's).
fn parse_bound(raw: &str, end: bool) -> Result<i64, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_millis());
    }
    crate::http::validate::parse_instant(raw)
        .map_err(|_| "must be an RFC 3339 time or a YYYY-MM-DD date".into())
}

async fn usage_of(state: &AppState, scope: &Scope, q: UsageQuery) -> AppResult<Usage> {
    scope.require_admin(ADMIN)?;
    let now = now_ms();
    let (from, to, by) = (
        optional("from", q.from, |v| parse_bound(&v, false)),
        optional("to", q.to, |v| parse_bound(&v, true)),
        optional("groupBy", q.group_by, |v| GroupBy::parse(&v)),
    )
        .validate()?;
    let to = to.unwrap_or(now + 1);
    let from = from.unwrap_or(to - 30 * 86_400_000);
    if from > to {
        return Err(AppError::invalid_field("from", "must not be after `to`"));
    }
    usage::report(
        scope.tenant(&state.db),
        from,
        to,
        by.unwrap_or(GroupBy::Day),
    )
    .await
}

/// GET /api/v1/admin/ai/usage — provider calls and tokens, grouped by day, key, conversation or model, with totals (owners and admins).
#[utoipa::path(get, path = "/admin/ai/usage", tag = "ai", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, body = Usage), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn get_usage(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<UsageQuery>,
) -> AppResult<Json<Usage>> {
    Ok(Json(usage_of(&state, &scope, q).await?))
}

/// GET /api/v1/admin/ai/usage.csv — the same as CSV: group, calls, failures, promptTokens, completionTokens, totalTokens (owners and admins).
#[utoipa::path(get, path = "/admin/ai/usage.csv", tag = "ai", security(("bearer" = [])), params(UsageQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn get_usage_csv(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<UsageQuery>,
) -> AppResult<Response> {
    let u = usage_of(&state, &scope, q).await?;
    let body = usage::csv(&u)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"ai-usage.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CallsQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Calls about this conversation.
    pub conversation_id: Option<String>,
}

/// GET /api/v1/admin/ai/calls — every provider call, newest first: what was sent (after masking) to which provider and model, the outcome and the tokens (owners and admins).
#[utoipa::path(get, path = "/admin/ai/calls", tag = "ai", security(("bearer" = [])), params(CallsQuery),
    responses((status = 200, body = Page<CallView>), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn list_calls(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<CallsQuery>,
) -> AppResult<Json<Page<CallView>>> {
    scope.require_admin(ADMIN)?;
    let list = crate::http::ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = list.limit()?;
    let t = scope.tenant(&state.db);
    let rows = usage::calls(t, q.conversation_id.as_deref(), list.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |c| (c.created_at.0, c.id.clone()),
        |c| c,
    )))
}
