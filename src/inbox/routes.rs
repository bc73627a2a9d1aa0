//! `/api/v1/leads*`, `/api/v1/tags*` and `/api/v1/audit`: thin handlers over the inbox's
//! service and stores. Agents (owners, admins, agents) work with leads and tags; owners and
//! admins change the pipeline and attribute definitions and read the audit log.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog;
use super::leads::{self, LeadFilter, Sort};
use super::model::{
    parse_attribute_key, parse_attributes, parse_color, parse_name, parse_phone, parse_stage,
    parse_tag, parse_tags, AttributeDefinition, AttributeType, LeadFields, LeadView, OptInSource,
    OptInStatus, TagView,
};
use super::service;
use crate::app::AppState;
use crate::audit::{self, actions, AuditEntry, AuditFilter};
use crate::error::{AppError, AppResult};
use crate::http::pagination::encode_cursor;
use crate::http::validate::{field, optional, parse_instant, Validate};
use crate::http::{Json, ListQuery, Page, Query, Scope};
use crate::users::model::Email;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_leads, create_lead))
        .routes(routes!(get_lead, update_lead, delete_lead))
        .routes(routes!(get_stages, put_stages))
        .routes(routes!(get_attributes, put_attributes))
        .routes(routes!(list_tags, create_tag))
        .routes(routes!(update_tag, delete_tag))
        .routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeadsQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Leads in this stage (one of the workspace's stages).
    pub stage: Option<String>,
    /// Leads with any of these tags (repeatable: `?tag=a&tag=b`).
    #[param(value_type = Option<Vec<String>>)]
    #[serde(skip)]
    pub tag: Option<String>,
    /// Leads with all of these tags, comma-separated.
    pub tags: Option<String>,
    /// `me`, `none` or an agent's user id.
    pub assignee: Option<String>,
    pub opt_in: Option<OptInStatus>,
    /// Leads whose last message came to this channel.
    pub channel: Option<String>,
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub updated_from: Option<String>,
    pub updated_to: Option<String>,
    /// Text found in the name, phone, email or attributes (2 characters or more).
    pub q: Option<String>,
    /// `updatedAt`, `createdAt` or `name`; `-` first for descending (default `-updatedAt`).
    pub sort: Option<String>,
}

/// Text for a LIKE: lower-cased, its wildcards escaped; phone-like text loses `+` and spaces.
fn like_text(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.chars().count() < 2 {
        return Err("must be at least 2 characters".into());
    }
    let phone_like = t
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let t = if phone_like {
        t.chars().filter(char::is_ascii_digit).collect()
    } else {
        t.to_lowercase()
    };
    Ok(t.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_"))
}

/// Reads a lead filter; a filter that cannot be applied (an unknown stage, tag or channel) is 422.
pub async fn lead_filter(
    state: &AppState,
    scope: &Scope,
    raw: Option<String>,
) -> AppResult<(LeadFilter, ListQuery)> {
    let (q, any): (LeadsQuery, Vec<String>) =
        crate::http::query::parse_repeated(raw.as_deref().unwrap_or_default(), "tag")?;
    let t = scope.tenant(&state.db);
    let all: Vec<String> = q
        .tags
        .as_deref()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let range = |name: &str, v: &Option<String>| optional(name, v.as_deref(), parse_instant);
    let (stage, any, all, text, sort, cf, ct, uf, ut) = (
        optional("stage", q.stage.as_deref(), parse_stage),
        field("tag", parse_tags(&any)),
        field("tags", parse_tags(&all)),
        optional("q", q.q.as_deref(), like_text),
        optional("sort", q.sort.as_deref(), Sort::parse),
        range("createdFrom", &q.created_from),
        range("createdTo", &q.created_to),
        range("updatedFrom", &q.updated_from),
        range("updatedTo", &q.updated_to),
    )
        .validate()?;
    if let Some(s) = &stage {
        if !catalog::stages(t).await?.contains(s) {
            return Err(AppError::invalid_field(
                "stage",
                "is not a stage of this workspace",
            ));
        }
    }
    if let Some(c) = &q.channel {
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM channels WHERE id = $1 AND workspace_id = $2")
                .bind(c)
                .bind(t.workspace_id())
                .fetch_optional(state.db.reader())
                .await?;
        known.ok_or_else(|| {
            AppError::invalid_field("channel", "is not a channel of this workspace")
        })?;
    }
    let filter = LeadFilter {
        stage,
        any_tags: catalog::tag_ids(t, &any, "tag").await?,
        all_tags: catalog::tag_ids(t, &all, "tags").await?,
        assignee: match q.assignee.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some("me") => Some(Some(scope.user_id.clone())),
            Some(id) => Some(Some(id.to_owned())),
        },
        opt_in: q.opt_in,
        channel_id: q.channel,
        created: (cf, ct),
        updated: (uf, ut),
        text,
        sort: sort.unwrap_or_default(),
    };
    Ok((
        filter,
        ListQuery {
            limit: q.limit,
            cursor: q.cursor,
        },
    ))
}

/// GET /api/v1/leads — the workspace's leads, filtered, sorted and paged (agents).
#[utoipa::path(get, path = "/leads", tag = "inbox", security(("bearer" = [])), params(LeadsQuery),
    responses((status = 200, body = Page<LeadView>), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn list_leads(
    State(state): State<AppState>,
    scope: Scope,
    RawQuery(raw): RawQuery,
) -> AppResult<Json<Page<LeadView>>> {
    scope.require_agent("see leads")?;
    let (filter, paging) = lead_filter(&state, &scope, raw).await?;
    let limit = paging.limit()?;
    let t = scope.tenant(&state.db);
    let mut rows = leads::list(t, &filter, paging.position()?, limit).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(&filter.sort.position(r))))
        .flatten();
    let items = leads::views(&state.db, rows).await?;
    Ok(Json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptInBody {
    pub status: OptInStatus,
    /// Where the consent came from (default `agent`).
    pub source: Option<OptInSource>,
}

/// A lead's fields; absent ones stay as they are, `null` clears one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeadBody {
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Option<String>>,
    /// E.164 (spaces, dashes and a leading `00` are accepted); unique in the workspace.
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    /// One of the workspace's stages.
    pub stage: Option<String>,
    /// Replaces the lead's tags (new names become tags).
    pub tags: Option<Vec<String>>,
    pub opt_in: Option<OptInBody>,
    #[serde(default, deserialize_with = "crate::http::validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub assignee_id: Option<Option<String>>,
    /// Merged into the attributes; a key set to `null` is removed.
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Value>,
}

impl LeadBody {
    fn parse(self) -> AppResult<LeadFields> {
        let (name, phone, email, stage, tags, attributes) = (
            optional("name", self.name, |n| match n {
                Some(n) => parse_name(&n),
                None => Ok(None),
            }),
            optional("phone", self.phone, |p| {
                p.as_deref().map(parse_phone).transpose()
            }),
            optional("email", self.email, |e| {
                e.as_deref().map(Email::parse).transpose()
            }),
            optional("stage", self.stage.as_deref(), parse_stage),
            optional("tags", self.tags, |t| parse_tags(&t)),
            optional("attributes", self.attributes, parse_attributes),
        )
            .validate()?;
        Ok(LeadFields {
            name,
            phone,
            email,
            stage,
            tags,
            opt_in: self
                .opt_in
                .map(|o| (o.status, o.source.unwrap_or(OptInSource::Agent))),
            assignee_id: self.assignee_id,
            attributes,
        })
    }
}

/// POST /api/v1/leads — a new lead (agents); 409 `lead_exists` when the phone has one.
#[utoipa::path(post, path = "/leads", tag = "inbox", security(("bearer" = [])), request_body = LeadBody,
    responses((status = 403, body = crate::error::Problem), (status = 201, body = LeadView), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create_lead(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<LeadBody>,
) -> AppResult<(StatusCode, Json<LeadView>)> {
    scope.require_agent("create leads")?;
    let f = b.parse()?;
    let given = [
        matches!(f.name, Some(Some(_))),
        matches!(f.phone, Some(Some(_))),
        matches!(f.email, Some(Some(_))),
    ];
    if !given.contains(&true) {
        return Err(AppError::invalid_field(
            "name",
            "a lead needs a name, phone or email",
        ));
    }
    let lead = service::create_lead(scope.tenant(&state.db), &scope.user_id, f).await?;
    Ok((StatusCode::CREATED, Json(lead)))
}

/// GET /api/v1/leads/{id}
#[utoipa::path(get, path = "/leads/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = LeadView), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn get_lead(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<LeadView>> {
    scope.require_agent("see leads")?;
    let t = scope.tenant(&state.db);
    let lead = leads::find(t, &id).await?.ok_or_else(AppError::not_found)?;
    Ok(Json(service::view(t, lead).await?))
}

/// PATCH /api/v1/leads/{id} — changes the given fields (agents).
#[utoipa::path(patch, path = "/leads/{id}", tag = "inbox", security(("bearer" = [])), request_body = LeadBody,
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 200, body = LeadView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn update_lead(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<LeadBody>,
) -> AppResult<Json<LeadView>> {
    scope.require_agent("change leads")?;
    let f = b.parse()?;
    Ok(Json(
        service::update_lead(scope.tenant(&state.db), &scope.user_id, &id, f).await?,
    ))
}

/// DELETE /api/v1/leads/{id} — deletes a lead without conversations (409 `lead_in_use` otherwise).
#[utoipa::path(delete, path = "/leads/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 204), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
async fn delete_lead(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_agent("delete leads")?;
    service::delete_lead(scope.tenant(&state.db), &scope.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stages {
    /// The pipeline in order; a new lead starts in the first.
    pub stages: Vec<String>,
}

/// GET /api/v1/leads/stages — the workspace's pipeline (agents).
#[utoipa::path(get, path = "/leads/stages", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Stages), (status = 403, body = crate::error::Problem)))]
async fn get_stages(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Stages>> {
    scope.require_agent("see the pipeline")?;
    Ok(Json(Stages {
        stages: catalog::stages(scope.tenant(&state.db)).await?,
    }))
}

/// PUT /api/v1/leads/stages — replaces the pipeline (owners and admins); a stage leads are in stays.
#[utoipa::path(put, path = "/leads/stages", tag = "inbox", security(("bearer" = [])), request_body = Stages,
    responses((status = 200, body = Stages), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn put_stages(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<Stages>,
) -> AppResult<Json<Stages>> {
    scope.require_admin("change the pipeline")?;
    let mut stages = Vec::new();
    for s in &b.stages {
        let s = parse_stage(s).map_err(|m| AppError::invalid_field("stages", m))?;
        if stages.contains(&s) {
            return Err(AppError::invalid_field(
                "stages",
                format!("{s:?} appears twice"),
            ));
        }
        stages.push(s);
    }
    if stages.is_empty() || stages.len() > 30 {
        return Err(AppError::invalid_field("stages", "1 to 30 stages"));
    }
    let stages = service::set_stages(scope.tenant(&state.db), &scope.user_id, stages).await?;
    Ok(Json(Stages { stages }))
}

#[derive(Debug, serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    pub attributes: Vec<AttributeDefinition>,
}

/// GET /api/v1/leads/attributes — the custom attributes the workspace defines (agents).
#[utoipa::path(get, path = "/leads/attributes", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Attributes), (status = 403, body = crate::error::Problem)))]
async fn get_attributes(
    State(state): State<AppState>,
    scope: Scope,
) -> AppResult<Json<Attributes>> {
    scope.require_agent("see attribute definitions")?;
    Ok(Json(Attributes {
        attributes: catalog::attributes(scope.tenant(&state.db)).await?,
    }))
}

/// PUT /api/v1/leads/attributes — replaces the attribute definitions (owners and admins).
#[utoipa::path(put, path = "/leads/attributes", tag = "inbox", security(("bearer" = [])), request_body = Attributes,
    responses((status = 200, body = Attributes), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn put_attributes(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<Attributes>,
) -> AppResult<Json<Attributes>> {
    scope.require_admin("define attributes")?;
    if b.attributes.len() > 100 {
        return Err(AppError::invalid_field(
            "attributes",
            "at most 100 definitions",
        ));
    }
    let mut keys = Vec::new();
    for d in &b.attributes {
        parse_attribute_key(&d.key).map_err(|m| AppError::invalid_field("attributes", m))?;
        if keys.contains(&d.key) {
            return Err(AppError::invalid_field(
                "attributes",
                format!("{:?} appears twice", d.key),
            ));
        }
        let label_ok = !d.label.trim().is_empty() && d.label.chars().count() <= 100;
        let options_ok = match (d.kind, &d.options) {
            (AttributeType::List, Some(o)) => !o.is_empty() && o.len() <= 100,
            (AttributeType::List, None) => false,
            (_, o) => o.is_none(),
        };
        if !label_ok || !options_ok {
            return Err(AppError::invalid_field(
                "attributes",
                format!(
                    "{:?}: a label of 1 to 100 characters; options only (and always) for a list",
                    d.key
                ),
            ));
        }
        keys.push(d.key.clone());
    }
    let attributes =
        service::set_attributes(scope.tenant(&state.db), &scope.user_id, b.attributes).await?;
    Ok(Json(Attributes { attributes }))
}

/// GET /api/v1/tags — the workspace's tags with how many leads carry each (agents).
#[utoipa::path(get, path = "/tags", tag = "inbox", security(("bearer" = [])),
    responses((status = 200, body = Vec<TagView>), (status = 403, body = crate::error::Problem)))]
async fn list_tags(State(state): State<AppState>, scope: Scope) -> AppResult<Json<Vec<TagView>>> {
    scope.require_agent("see tags")?;
    Ok(Json(catalog::tags(scope.tenant(&state.db)).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    pub name: Option<String>,
    /// `#rrggbb`.
    pub color: Option<String>,
}

/// POST /api/v1/tags — a new tag (agents); 409 `tag_exists` for a name in use.
#[utoipa::path(post, path = "/tags", tag = "inbox", security(("bearer" = [])), request_body = TagBody,
    responses((status = 403, body = crate::error::Problem), (status = 201, body = TagView), (status = 409, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn create_tag(
    State(state): State<AppState>,
    scope: Scope,
    Json(b): Json<TagBody>,
) -> AppResult<(StatusCode, Json<TagView>)> {
    scope.require_agent("create tags")?;
    let (name, color) = (
        field(
            "name",
            b.name
                .as_deref()
                .ok_or("is required".to_owned())
                .and_then(parse_tag),
        ),
        optional("color", b.color.as_deref(), parse_color),
    )
        .validate()?;
    let color = color.unwrap_or_else(|| super::model::default_color(&name));
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    let id = catalog::create_tag(&mut tx, t, &name, &color).await?;
    let details = serde_json::json!({"name": name, "color": color});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::TAG_CREATED,
        ("tag", &id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    Ok((StatusCode::CREATED, Json(catalog::tag(t, &id).await?)))
}

/// PATCH /api/v1/tags/{id} — renames or recolours a tag (agents).
#[utoipa::path(patch, path = "/tags/{id}", tag = "inbox", security(("bearer" = [])), request_body = TagBody,
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 200, body = TagView), (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
async fn update_tag(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(b): Json<TagBody>,
) -> AppResult<Json<TagView>> {
    scope.require_agent("change tags")?;
    let (name, color) = (
        optional("name", b.name.as_deref(), parse_tag),
        optional("color", b.color.as_deref(), parse_color),
    )
        .validate()?;
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    catalog::update_tag(&mut tx, t, &id, name.as_deref(), color.as_deref()).await?;
    let details = serde_json::json!({"name": name, "color": color});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::TAG_UPDATED,
        ("tag", &id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    Ok(Json(catalog::tag(t, &id).await?))
}

/// DELETE /api/v1/tags/{id} — deletes a tag and takes it off every lead (owners and admins).
#[utoipa::path(delete, path = "/tags/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
async fn delete_tag(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    scope.require_admin("delete tags")?;
    let t = scope.tenant(&state.db);
    let mut tx = state.db.begin().await?;
    let name = catalog::delete_tag(&mut tx, t, &id).await?;
    let details = serde_json::json!({"name": name});
    audit::record(
        &mut tx,
        t,
        Some(&scope.user_id),
        actions::TAG_DELETED,
        ("tag", &id),
        details,
    )
    .await?;
    state.db.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditQuery {
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Entries by this user.
    pub actor: Option<String>,
    /// An action (`lead.updated`) or a prefix ending in `.` (`lead.`).
    pub action: Option<String>,
    /// The target's type (`lead`, `conversation`, `tag`, `member`…).
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// GET /api/v1/audit — who did what, when, to what; newest first (owners and admins).
#[utoipa::path(get, path = "/audit", tag = "inbox", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = crate::error::Problem)))]
async fn list_audit(
    State(state): State<AppState>,
    scope: Scope,
    Query(q): Query<AuditQuery>,
) -> AppResult<Json<Page<AuditEntry>>> {
    scope.require_admin("read the audit log")?;
    let paging = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    let (from, to) = (
        optional("from", q.from.as_deref(), parse_instant),
        optional("to", q.to.as_deref(), parse_instant),
    )
        .validate()?;
    let filter = AuditFilter {
        actor_id: q.actor,
        action: q.action,
        target_type: q.target_type,
        target_id: q.target_id,
        from,
        to,
    };
    let rows = audit::list(scope.tenant(&state.db), &filter, paging.position()?, limit).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |r| r.id.clone(),
        audit::AuditRow::view,
    )))
}
