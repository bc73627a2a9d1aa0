//! Leads: a workspace's external contacts (customers who write to a channel). Made and named
//! from webhooks' `contacts[]`; listed for the workspace's agents.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::db::{new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult};
use crate::http::Query;
use crate::http::{Json, Page, Scope};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeadRow {
    pub id: String,
    pub workspace_id: String,
    pub channel_id: Option<String>,
    pub wa_id: String,
    pub name: Option<String>,
    pub stage: String,
    pub tags: String,
    pub attributes: String,
    pub opted_in_at: Option<i64>,
    pub assignee_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, workspace_id, channel_id, wa_id, name, stage, tags, attributes, opted_in_at, \
    assignee_id, created_at, updated_at";

/// A lead as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadView {
    pub id: String,
    /// The WhatsApp id (the customer's phone number in international format, digits only).
    pub wa_id: String,
    /// The phone number, `+` and the wa_id.
    pub phone: String,
    pub name: Option<String>,
    /// The channel the lead last wrote to.
    pub channel_id: Option<String>,
    pub stage: String,
    pub tags: Vec<String>,
    pub attributes: serde_json::Value,
    pub opted_in_at: Option<Timestamp>,
    pub assignee_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl LeadRow {
    pub fn view(self) -> LeadView {
        LeadView {
            phone: format!("+{}", self.wa_id),
            tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            attributes: serde_json::from_str(&self.attributes).unwrap_or_default(),
            opted_in_at: self.opted_in_at.map(Timestamp),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
            id: self.id,
            wa_id: self.wa_id,
            name: self.name,
            channel_id: self.channel_id,
            stage: self.stage,
            assignee_id: self.assignee_id,
        }
    }
}

/// Creates the leads of these customers (each once) in the workspace, or updates their names
/// (when one is given) and channel, with one statement; (wa_id, lead id) pairs.
pub async fn upsert_many(
    tx: &mut Tx,
    mut slots: crate::db::Slots,
    workspace_id: &str,
    channel_id: &str,
    contacts: &[(&str, Option<&str>)],
) -> AppResult<Vec<(String, String)>> {
    if contacts.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "INSERT INTO leads (id, workspace_id, channel_id, wa_id, name, created_at, updated_at) VALUES ",
    );
    for i in 0..contacts.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&slots.row(7));
    }
    sql.push_str(
        " ON CONFLICT (workspace_id, wa_id) DO UPDATE SET \
           name = COALESCE(excluded.name, leads.name), channel_id = excluded.channel_id, \
           updated_at = excluded.updated_at \
         RETURNING wa_id, id",
    );
    let now = now_ms();
    let mut q = sqlx::query_as::<_, (String, String)>(&sql).persistent(false);
    for (wa_id, name) in contacts {
        q = q
            .bind(new_id())
            .bind(workspace_id)
            .bind(channel_id)
            .bind(*wa_id)
            .bind(name.map(|n| n.chars().take(200).collect::<String>()))
            .bind(now)
            .bind(now);
    }
    Ok(q.fetch_all(&mut **tx).await?)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_leads))
        .routes(routes!(get_lead))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LeadsQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Only leads of this channel.
    pub channel: Option<String>,
    /// Name or wa_id prefix (2 characters or more).
    pub q: Option<String>,
}

/// GET /api/v1/leads — the workspace's leads, newest first (agents, admins, owners).
#[utoipa::path(get, path = "/leads", tag = "whatsapp", security(("bearer" = [])), params(LeadsQuery),
    responses((status = 200, body = Page<LeadView>), (status = 403, body = crate::error::Problem)))]
async fn list_leads(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<LeadsQuery>,
) -> AppResult<Json<Page<LeadView>>> {
    scope.require_agent("see leads")?;
    let paging = crate::http::ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    let after: Option<String> = paging.position()?;
    let search = match q.q.as_deref().map(str::trim) {
        Some(s) if s.chars().count() < 2 => {
            return Err(AppError::invalid_field(
                "q",
                "must be at least 2 characters",
            ))
        }
        Some(s) => Some(format!(
            "{}%",
            s.to_lowercase().replace(['%', '_', '\\'], "")
        )),
        None => None,
    };
    let rows: Vec<LeadRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads WHERE workspace_id = $1 AND ($2 IS NULL OR id < $2) \
         AND ($3 IS NULL OR channel_id = $3) \
         AND ($4 IS NULL OR LOWER(COALESCE(name, '')) LIKE $4 OR wa_id LIKE $4) \
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(&scope.workspace_id)
    .bind(after.as_deref())
    .bind(q.channel.as_deref())
    .bind(search.as_deref())
    .bind(limit + 1)
    .fetch_all(state.db.reader())
    .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |l| l.id.clone(),
        LeadRow::view,
    )))
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<Option<LeadRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM leads WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?)
}

/// GET /api/v1/leads/{id}
#[utoipa::path(get, path = "/leads/{id}", tag = "whatsapp", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = LeadView), (status = 403, body = crate::error::Problem)))]
async fn get_lead(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<LeadView>> {
    scope.require_agent("see leads")?;
    let lead = find(scope.tenant(&state.db), &id)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(Json(lead.view()))
}
