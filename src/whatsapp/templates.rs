//! Message templates: what may be sent outside the 24-hour window. Admins write them (or pull
//! the approved ones of a channel's WABA with `POST /templates/sync`); agents list them to send.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::channels;
use crate::app::AppState;
use crate::db::{new_id, now_ms, Timestamp};
use crate::error::{AppError, AppResult};
use crate::http::validate::{field, optional, Validate};
use crate::http::Query;
use crate::http::{Json, ListQuery, Page, Scope};
use crate::messages::templates::{
    body_of, body_text, find, parse_language, parse_template_name as parse_name, variable_count,
    variables, TemplateRow, COLUMNS,
};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateView {
    pub id: String,
    pub channel_id: Option<String>,
    pub name: String,
    pub language: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// The Cloud API's components: `[{type: "HEADER"|"BODY"|"FOOTER"|"BUTTONS", text?, …}]`;
    /// the body's `{{1}}`, `{{2}}`… are the parameters a send fills in.
    pub components: Value,
    /// `approved` (sendable), `pending`, `rejected`, `paused` or `disabled`.
    pub status: String,
    /// How many parameters a send must give (the body's variables).
    pub parameter_count: usize,
    pub external_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl TemplateRow {
    fn view(self) -> TemplateView {
        let body = body_text(&self);
        TemplateView {
            parameter_count: variable_count(&body),
            components: serde_json::from_str(&self.components).unwrap_or_default(),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            id: self.id,
            channel_id: self.channel_id,
            name: self.name,
            language: self.language,
            category: self.category,
            status: self.status,
            external_id: self.external_id,
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(sync_templates))
}

fn parse_category(raw: &str) -> Result<String, String> {
    let up = raw.to_ascii_uppercase();
    matches!(up.as_str(), "MARKETING" | "UTILITY" | "AUTHENTICATION")
        .then_some(up)
        .ok_or_else(|| "must be MARKETING, UTILITY or AUTHENTICATION".into())
}

fn parse_status(raw: &str) -> Result<String, String> {
    let low = raw.to_ascii_lowercase();
    matches!(
        low.as_str(),
        "approved" | "pending" | "rejected" | "paused" | "disabled"
    )
    .then_some(low)
    .ok_or_else(|| "must be approved, pending, rejected, paused or disabled".into())
}

/// Components: an array of up to 10 objects with a `type`; the body's variables numbered
/// 1, 2, 3… without holes.
fn parse_components(v: Value) -> Result<String, String> {
    let items = v.as_array().ok_or("must be an array")?;
    if items.len() > 10
        || items
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str).is_none())
    {
        return Err("must be at most 10 objects, each with a type".into());
    }
    let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
    if text.len() > 16 * 1024 {
        return Err("must be at most 16 KiB".into());
    }
    let body = body_of(items);
    let mut numbers = variables(body);
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.iter().enumerate().any(|(i, n)| *n != i + 1) {
        return Err("the body's variables must be {{1}}, {{2}}, … without gaps".into());
    }
    Ok(text)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    pub name: Option<String>,
    pub language: Option<String>,
    pub category: Option<String>,
    pub components: Option<Value>,
    /// Default `approved` for templates written here.
    pub status: Option<String>,
    pub channel_id: Option<String>,
}

/// GET /api/v1/templates — the workspace's templates (agents, admins, owners).
#[utoipa::path(get, path = "/templates", tag = "whatsapp", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<TemplateView>), (status = 403, body = crate::error::Problem)))]
async fn list_templates(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Page<TemplateView>>> {
    scope.require_agent("see templates")?;
    let limit = q.limit()?;
    let after: Option<String> = q.position()?;
    let rows: Vec<TemplateRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM templates WHERE workspace_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(&scope.workspace_id)
    .bind(after.as_deref())
    .bind(limit + 1)
    .fetch_all(state.db.reader())
    .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |t| t.id.clone(),
        TemplateRow::view,
    )))
}

/// POST /api/v1/templates — adds a template (admins); name and language are unique.
#[utoipa::path(post, path = "/templates", tag = "whatsapp", security(("bearer" = [])), request_body = TemplateBody,
    responses((status = 201, body = TemplateView), (status = 403, body = crate::error::Problem), (status = 409, description = "template_exists", body = crate::error::Problem)))]
async fn create_template(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<TemplateBody>,
) -> AppResult<(StatusCode, Json<TemplateView>)> {
    scope.require_admin("manage templates")?;
    let missing = || "is required".to_string();
    let (name, language, category, components, status) = (
        field(
            "name",
            b.name.as_deref().ok_or_else(missing).and_then(parse_name),
        ),
        field(
            "language",
            b.language
                .as_deref()
                .ok_or_else(missing)
                .and_then(parse_language),
        ),
        field(
            "category",
            b.category
                .as_deref()
                .ok_or_else(missing)
                .and_then(parse_category),
        ),
        field(
            "components",
            b.components.ok_or_else(missing).and_then(parse_components),
        ),
        optional("status", b.status, |s| parse_status(&s)),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    if let Some(c) = &b.channel_id {
        channels::find(t, c)
            .await?
            .ok_or_else(|| AppError::invalid_field("channelId", "no such channel"))?;
    }
    let now = now_ms();
    let id = new_id();
    let done = sqlx::query(
        "INSERT INTO templates (id, workspace_id, channel_id, name, language, category, components, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(&scope.workspace_id)
    .bind(&b.channel_id)
    .bind(&name)
    .bind(&language)
    .bind(&category)
    .bind(&components)
    .bind(status.as_deref().unwrap_or("approved"))
    .bind(now)
    .execute(state.db.writer())
    .await;
    match done {
        Ok(_) => {}
        Err(e) if crate::db::is_unique_violation(&e) => {
            return Err(AppError::new(
                crate::error::Code::TemplateExists,
                "a template with this name and language exists",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    let row = find(t, &id).await?.ok_or_else(AppError::not_found)?;
    Ok((StatusCode::CREATED, Json(row.view())))
}

/// GET /api/v1/templates/{id}
#[utoipa::path(get, path = "/templates/{id}", tag = "whatsapp", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = crate::error::Problem)))]
async fn get_template(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<TemplateView>> {
    scope.require_agent("see templates")?;
    let row = find(scope.tenant(&state.db), &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(row.view()))
}

/// PATCH /api/v1/templates/{id} — changes category, components or status (admins).
#[utoipa::path(patch, path = "/templates/{id}", tag = "whatsapp", security(("bearer" = [])), request_body = TemplateBody,
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = crate::error::Problem)))]
async fn update_template(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<TemplateBody>,
) -> AppResult<Json<TemplateView>> {
    scope.require_admin("manage templates")?;
    let (category, components, status) = (
        optional("category", b.category, |c| parse_category(&c)),
        optional("components", b.components, parse_components),
        optional("status", b.status, |s| parse_status(&s)),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    sqlx::query(
        "UPDATE templates SET category = COALESCE($1, category), components = COALESCE($2, components), \
         status = COALESCE($3, status), updated_at = $4 WHERE workspace_id = $5 AND id = $6",
    )
    .bind(category)
    .bind(components)
    .bind(status)
    .bind(now_ms())
    .bind(&scope.workspace_id)
    .bind(&id)
    .execute(state.db.writer())
    .await?;
    let row = find(t, &id).await?.ok_or_else(AppError::not_found)?;
    Ok(Json(row.view()))
}

/// DELETE /api/v1/templates/{id} (admins)
#[utoipa::path(delete, path = "/templates/{id}", tag = "whatsapp", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = crate::error::Problem)))]
async fn delete_template(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin("manage templates")?;
    let done = sqlx::query("DELETE FROM templates WHERE workspace_id = $1 AND id = $2")
        .bind(&scope.workspace_id)
        .bind(&id)
        .execute(state.db.writer())
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncBody {
    /// The channel whose WABA to read.
    pub channel_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResult {
    /// Templates created or updated.
    pub synced: u64,
}

/// POST /api/v1/templates/sync — pulls the templates of a channel's WhatsApp Business Account from the Graph API (admins).
#[utoipa::path(post, path = "/templates/sync", tag = "whatsapp", security(("bearer" = [])), request_body = SyncBody,
    responses((status = 200, body = SyncResult), (status = 403, body = crate::error::Problem),
        (status = 503, description = "the Graph API could not be reached or refused", body = crate::error::Problem)))]
async fn sync_templates(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<SyncBody>,
) -> AppResult<Json<SyncResult>> {
    scope.require_admin("manage templates")?;
    let t = scope.tenant(&state.db);
    let channel = channels::find(t, &b.channel_id)
        .await?
        .ok_or_else(|| AppError::invalid_field("channelId", "no such channel"))?;
    let waba = channel
        .waba_id
        .clone()
        .ok_or_else(|| AppError::invalid_field("channelId", "the channel has no wabaId"))?;
    let token = channel
        .access_token(&state.secret)
        .ok_or_else(|| AppError::invalid_field("channelId", "the channel has no access token"))?;
    let mut synced = 0;
    let mut after: Option<String> = None;
    // At most 20 pages of 100.
    for _ in 0..20 {
        let mut req = state
            .media
            .http
            .get(&format!("{}/{waba}/message_templates", channel.graph()))
            .map_err(|e| AppError::invalid_field("graphBaseUrl", e.to_string()))?
            .bearer_auth(&token)
            .query(&[
                ("fields", "name,language,category,components,status,id"),
                ("limit", "100"),
            ]);
        if let Some(a) = &after {
            req = req.query(&[("after", a.as_str())]);
        }
        let resp = req.send().await.map_err(|e| {
            if crate::outbound::is_refusal(&e) {
                AppError::invalid_field("graphBaseUrl", e.to_string())
            } else {
                AppError::unavailable(e)
            }
        })?;
        let status = resp.status();
        let page = crate::outbound::json_capped(resp)
            .await
            .map_err(AppError::unavailable)?;
        if !status.is_success() {
            return Err(AppError::unavailable(anyhow::anyhow!(
                "the Graph API answered {status}: {page}"
            )));
        }
        for tpl in page["data"].as_array().into_iter().flatten() {
            let (Some(name), Some(language)) = (tpl["name"].as_str(), tpl["language"].as_str())
            else {
                continue;
            };
            let (Ok(name), Ok(language)) = (parse_name(name), parse_language(language)) else {
                continue;
            };
            let category = tpl["category"]
                .as_str()
                .and_then(|c| parse_category(c).ok())
                .unwrap_or_else(|| "UTILITY".into());
            let status = tpl["status"]
                .as_str()
                .and_then(|s| parse_status(s).ok())
                .unwrap_or_else(|| "pending".into());
            let components = tpl
                .get("components")
                .cloned()
                .unwrap_or_else(|| Value::Array(vec![]))
                .to_string();
            let now = now_ms();
            sqlx::query(
                "INSERT INTO templates (id, workspace_id, channel_id, name, language, category, components, status, external_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
                 ON CONFLICT (workspace_id, name, language) DO UPDATE SET category = excluded.category, \
                 components = excluded.components, status = excluded.status, external_id = excluded.external_id, \
                 channel_id = excluded.channel_id, updated_at = excluded.updated_at",
            )
            .bind(new_id())
            .bind(&scope.workspace_id)
            .bind(&channel.id)
            .bind(&name)
            .bind(&language)
            .bind(&category)
            .bind(&components)
            .bind(&status)
            .bind(tpl["id"].as_str())
            .bind(now)
            .execute(state.db.writer())
            .await?;
            synced += 1;
        }
        after = page
            .pointer("/paging/cursors/after")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if after.is_none() || page.pointer("/paging/next").is_none() {
            break;
        }
    }
    Ok(Json(SyncResult { synced }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_number_their_variables_from_one() {
        assert!(
            parse_components(serde_json::json!([{"type": "BODY", "text": "{{1}} {{3}}"}])).is_err()
        );
        assert!(
            parse_components(serde_json::json!([{"type": "BODY", "text": "{{2}} {{1}}"}])).is_ok()
        );
    }
}
