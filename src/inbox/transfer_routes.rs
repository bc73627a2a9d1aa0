//! `POST /leads/import`, `GET /leads/imports/{id}`, `GET /leads/export.csv`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::import::{self, ImportReport, OnDuplicate};
use super::leads::{self, LeadRow};
use crate::app::AppState;
use crate::audit::{self, actions};
use crate::db::Timestamp;
use crate::error::{AppError, AppResult, Code};
use crate::http::{Json, Scope};
use crate::jobs::{Job, JobError, JobResult};

/// The largest CSV an import takes.
pub const IMPORT_LIMIT: usize = 64 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(import_leads))
        .layer(DefaultBodyLimit::max(IMPORT_LIMIT))
        .routes(routes!(get_import))
        .routes(routes!(export_leads))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImportQuery {
    /// A row whose phone has a lead: `update` it (default) or `skip` it.
    pub on_duplicate: Option<String>,
}

/// The CSV of a request: a multipart form's `file` field, or the body itself (`text/csv`).
async fn csv_of(state: &AppState, req: Request) -> AppResult<String> {
    let kind = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = if kind.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, state)
            .await
            .map_err(|e| AppError::new(Code::BadRequest, e.body_text()))?;
        let mut file = None;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| AppError::new(Code::BadRequest, e.body_text()))?
        {
            if field.name() == Some("file") {
                file = Some(
                    field
                        .bytes()
                        .await
                        .map_err(|e| AppError::new(Code::PayloadTooLarge, e.body_text()))?,
                );
            }
        }
        file.ok_or_else(|| AppError::invalid_field("file", "is required"))?
    } else if kind.starts_with("application/json") {
        let bytes = axum::body::to_bytes(req.into_body(), IMPORT_LIMIT)
            .await
            .map_err(|_| AppError::new(Code::PayloadTooLarge, "the body is larger than 64 MiB"))?;
        return rows_as_csv(&bytes);
    } else if kind.starts_with("text/csv") || kind.starts_with("text/plain") {
        axum::body::to_bytes(req.into_body(), IMPORT_LIMIT)
            .await
            .map_err(|_| AppError::new(Code::PayloadTooLarge, "the file is larger than 64 MiB"))?
    } else {
        return Err(AppError::new(
            Code::UnsupportedMediaType,
            "send the CSV as multipart/form-data (field `file`) or as text/csv, or JSON rows",
        ));
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| AppError::invalid_field("file", "must be UTF-8"))
}

/// JSON rows (`{"rows": [{"name": …, "phone": …, "tags": ["a", "b"], "attributes.city": …}]}`,
/// the keys being the CSV's columns) written as the CSV they stand for, so that both take one
/// path: a list becomes a `;`-separated cell, a number or boolean its text, `null` an empty cell.
fn rows_as_csv(bytes: &[u8]) -> AppResult<String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rows {
        rows: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let rows: Rows = serde_json::from_slice(bytes)
        .map_err(|e| AppError::invalid_field("rows", format!("must be a list of objects: {e}")))?;
    let mut columns: Vec<&str> = Vec::new();
    for row in &rows.rows {
        for k in row.keys() {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    let cell = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, record: Vec<String>| {
        out.write_record(record).map_err(AppError::internal)
    };
    write(&mut out, columns.iter().map(|c| c.to_string()).collect())?;
    for row in &rows.rows {
        write(
            &mut out,
            columns.iter().map(|c| cell(row.get(*c))).collect(),
        )?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
    String::from_utf8(bytes).map_err(AppError::internal)
}

/// POST /api/v1/leads/import — leads from a CSV (agents): `name`, `phone`, `email`, `tags` (`;`-separated), `stage`, `optIn`, `attributes.KEY` columns; or `application/json` `{rows: [{column: value}]}`. Up to 1,000 rows: 201 with the report; more: 202 `{id}`, the report at `GET /leads/imports/{id}`.
#[utoipa::path(post, path = "/leads/import", tag = "inbox", security(("bearer" = [])), params(ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "the CSV, a multipart/form-data form with its `file`, or application/json `{rows: [{column: value}]}`"),
    responses((status = 403, body = crate::error::Problem), (status = 201, body = ImportReport), (status = 202, body = ImportReport), (status = 413, body = crate::error::Problem),
        (status = 415, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn import_leads(
    State(state): State<AppState>,
    scope: Scope,
    crate::http::Query(q): crate::http::Query<ImportQuery>,
    req: Request,
) -> AppResult<(StatusCode, Json<ImportReport>)> {
    scope.require_agent("import leads")?;
    let on_duplicate = match q.on_duplicate.as_deref() {
        None | Some("update") => OnDuplicate::Update,
        Some("skip") => OnDuplicate::Skip,
        Some(_) => {
            return Err(AppError::invalid_field(
                "onDuplicate",
                "must be update or skip",
            ))
        }
    };
    let body = csv_of(&state, req).await?;
    let text = body.strip_prefix('\u{feff}').unwrap_or(&body);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| AppError::invalid_field("file", e.to_string()))?;
    import::columns(header)?;
    // Rows, roughly (a quoted cell may hold a line break): enough to choose now or later.
    let rows = text.lines().count().saturating_sub(1);
    let t = scope.tenant(&state.db);
    if rows > import::INLINE_ROWS {
        let id = import::create(t, &scope.user_id, &body, on_duplicate, None).await?;
        state.db.wake_jobs();
        return Ok((
            StatusCode::ACCEPTED,
            Json(import::find(t, &id).await?.report()),
        ));
    }
    let safety_net = Some(std::time::Duration::from_secs(60));
    let id = import::create(t, &scope.user_id, &body, on_duplicate, safety_net).await?;
    import::run(t, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(import::find(t, &id).await?.report()),
    ))
}

/// GET /api/v1/leads/imports/{id} — an import's progress and report (agents).
#[utoipa::path(get, path = "/leads/imports/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 403, body = crate::error::Problem), (status = 200, body = ImportReport), (status = 404, body = crate::error::Problem)))]
async fn get_import(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> AppResult<Json<ImportReport>> {
    scope.require_agent("see imports")?;
    Ok(Json(
        import::find(scope.tenant(&state.db), &id).await?.report(),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImportJob {
    import_id: String,
}

/// The import job: runs (or goes on with) an import.
pub async fn import_job(state: AppState, job: Arc<Job>) -> JobResult {
    let p: ImportJob = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let ws: Option<String> =
        sqlx::query_scalar("SELECT workspace_id FROM lead_imports WHERE id = $1")
            .bind(&p.import_id)
            .fetch_optional(state.db.reader())
            .await
            .map_err(JobError::retry)?;
    let Some(ws) = ws else { return Ok(()) };
    let t = crate::db::Tenant::new(&state.db, &ws);
    import::run(t, &p.import_id).await.map_err(JobError::retry)
}

/// The import job gave up: its import is `failed`, with the reason.
pub async fn import_gave_up(state: &AppState, job: &Job, error: &str) -> AppResult<()> {
    let p: ImportJob = serde_json::from_str(&job.payload).map_err(AppError::internal)?;
    let ws: Option<String> =
        sqlx::query_scalar("SELECT workspace_id FROM lead_imports WHERE id = $1")
            .bind(&p.import_id)
            .fetch_optional(state.db.reader())
            .await?;
    match ws {
        Some(ws) => {
            import::failed(crate::db::Tenant::new(&state.db, &ws), &p.import_id, error).await
        }
        None => Ok(()),
    }
}

const EXPORT_PAGE: i64 = 500;

/// One lead as a CSV record, in the order of [`export_header`].
fn export_record(l: &LeadRow, tags: &[String], keys: &[String]) -> Vec<String> {
    let attributes: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&l.attributes).unwrap_or_default();
    let mut rest = attributes.clone();
    let mut cells = vec![
        l.id.clone(),
        l.name.clone().unwrap_or_default(),
        l.wa_id
            .as_ref()
            .map(|w| format!("+{w}"))
            .unwrap_or_default(),
        l.email.clone().unwrap_or_default(),
        l.stage.clone(),
        tags.join(";"),
        l.opt_in_status.clone(),
        l.opted_in_at
            .map(|t| Timestamp(t).rfc3339())
            .unwrap_or_default(),
        l.opt_in_source.clone().unwrap_or_default(),
        l.assignee_id.clone().unwrap_or_default(),
        Timestamp(l.created_at).rfc3339(),
        Timestamp(l.updated_at).rfc3339(),
    ];
    for k in keys {
        cells.push(match rest.remove(k) {
            Some(serde_json::Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        });
    }
    cells.push(if rest.is_empty() {
        String::new()
    } else {
        serde_json::Value::Object(rest).to_string()
    });
    cells
}

fn export_header(keys: &[String]) -> Vec<String> {
    let mut h: Vec<String> = [
        "id",
        "name",
        "phone",
        "email",
        "stage",
        "tags",
        "optIn",
        "optInAt",
        "optInSource",
        "assigneeId",
        "createdAt",
        "updatedAt",
    ]
    .map(str::to_owned)
    .to_vec();
    h.extend(keys.iter().map(|k| format!("attributes.{k}")));
    h.push("attributes".into());
    h
}

/// GET /api/v1/leads/export.csv — the filtered list as CSV (agents; the list's filters and sort), streamed: the defined attributes have a column each, the rest go as JSON in `attributes`.
#[utoipa::path(get, path = "/leads/export.csv", tag = "inbox", security(("bearer" = [])), params(super::routes::LeadsQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
async fn export_leads(
    State(state): State<AppState>,
    scope: Scope,
    RawQuery(raw): RawQuery,
) -> AppResult<Response> {
    scope.require_agent("export leads")?;
    let (filter, _) = super::routes::lead_filter(&state, &scope, raw.clone()).await?;
    let keys: Vec<String> = super::catalog::attributes(scope.tenant(&state.db))
        .await?
        .into_iter()
        .map(|d| d.key)
        .collect();
    {
        let t = scope.tenant(&state.db);
        let mut tx = state.db.begin().await?;
        let details = serde_json::json!({"query": raw.unwrap_or_default()});
        audit::record(
            &mut tx,
            t,
            Some(&scope.user_id),
            actions::LEADS_EXPORTED,
            ("workspace", &scope.workspace_id),
            details,
        )
        .await?;
        state.db.commit(tx).await?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let t = scope.tenant(&state.db);
        let mut header = Some(export_header(&keys));
        let mut after = None;
        loop {
            let page = match leads::list(t, &filter, after.clone(), EXPORT_PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let more = page.len() as i64 > EXPORT_PAGE;
            let page: Vec<LeadRow> = page.into_iter().take(EXPORT_PAGE as usize).collect();
            let ids: Vec<&str> = page.iter().map(|l| l.id.as_str()).collect();
            let tags = match leads::tags_of(&state.db, &ids).await {
                Ok(tags) => tags,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let mut out = csv::Writer::from_writer(Vec::new());
            if let Some(h) = header.take() {
                let _ = out.write_record(h);
            }
            for l in &page {
                let _ = out.write_record(export_record(
                    l,
                    tags.get(&l.id).map_or(&[][..], |t| t),
                    &keys,
                ));
            }
            after = page.last().map(|l| filter.sort.position(l));
            let chunk = out.into_inner().unwrap_or_default();
            if tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() || !more {
                return;
            }
        }
    });
    let body = Body::from_stream(tokio_stream_of(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"leads.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// A receiver as a stream of body chunks.
fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
