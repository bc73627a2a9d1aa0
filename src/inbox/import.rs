//! Lead imports from CSV: the header maps columns (`name`, `phone`, `email`, `tags`, `stage`,
//! `optIn`, `attributes.KEY`), every row is checked, valid rows are written in chunks (each
//! row whole or not at all; deduplicated by phone: update or skip), rejected rows are reported
//! with their line (the header is line 1). The upload is kept with the import's progress, and
//! each chunk commits with that progress: a restarted server goes on where it stopped, and no
//! row is written twice.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::leads::{self, Rules};
use super::model::{
    parse_name, parse_phone, parse_stage, parse_tags, wa_id_of, LeadFields, OptInSource,
    OptInStatus,
};
use crate::audit::{self, actions};
use crate::db::{new_id, now_ms, Tenant, Tx};
use crate::error::{AppError, AppResult};
use crate::users::model::Email;

/// Rows written per transaction: short, so that other writers wait little (SQLite's one
/// writer) and no reader waits on it (PostgreSQL's sync stream shows only what every older
/// transaction has committed, so a long one holds new messages back from `GET /sync`).
pub const CHUNK: usize = 200;
/// Imports of at most this many rows are done within the request (201); larger ones by a job
/// (202).
pub const INLINE_ROWS: usize = 1000;
/// Rejected rows reported, at most (the count of rejected rows is always exact).
pub const MAX_ERRORS: usize = 1000;
pub const JOB: &str = "leads.import";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDuplicate {
    Update,
    Skip,
}

impl OnDuplicate {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDuplicate::Update => "update",
            OnDuplicate::Skip => "skip",
        }
    }
}

/// What a column of the file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Name,
    Phone,
    Email,
    Tags,
    Stage,
    OptIn,
    Attribute(String),
    /// An empty header cell: ignored.
    Ignored,
}

/// Maps the header; an unknown column is a 422 naming it.
pub fn columns(header: &csv::StringRecord) -> AppResult<Vec<Column>> {
    let mut out = Vec::new();
    for raw in header {
        let h = raw.trim();
        let flat: String = h
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .collect::<String>()
            .to_lowercase();
        let column = match flat.as_str() {
            "" => Column::Ignored,
            "name" => Column::Name,
            "phone" | "phonenumber" | "waid" => Column::Phone,
            "email" => Column::Email,
            "tags" => Column::Tags,
            "stage" => Column::Stage,
            "optin" => Column::OptIn,
            _ => match h.strip_prefix("attributes.") {
                Some(key) => Column::Attribute(
                    super::model::parse_attribute_key(key)
                        .map_err(|m| AppError::invalid_field("file", m))?,
                ),
                None => {
                    return Err(AppError::invalid_field(
                        "file",
                        format!(
                            "unknown column {h:?}: name, phone, email, tags, stage, optIn or attributes.KEY"
                        ),
                    ))
                }
            },
        };
        if column != Column::Ignored && out.contains(&column) {
            return Err(AppError::invalid_field(
                "file",
                format!("column {h:?} appears twice"),
            ));
        }
        out.push(column);
    }
    if !out
        .iter()
        .any(|c| matches!(c, Column::Name | Column::Phone | Column::Email))
    {
        return Err(AppError::invalid_field(
            "file",
            "needs a name, phone or email column",
        ));
    }
    Ok(out)
}

/// One row's fields, or why it is refused. Empty cells give nothing (an update keeps the
/// lead's value).
pub fn row_fields(
    columns: &[Column],
    record: &csv::StringRecord,
    rules: &Rules,
) -> Result<LeadFields, String> {
    let mut f = LeadFields::default();
    let mut attributes = serde_json::Map::new();
    for (column, cell) in columns.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let fail = |field: &str, m: String| format!("{field}: {m}");
        match column {
            Column::Name => f.name = Some(parse_name(cell).map_err(|m| fail("name", m))?),
            Column::Phone => f.phone = Some(Some(parse_phone(cell).map_err(|m| fail("phone", m))?)),
            Column::Email => {
                f.email = Some(Some(Email::parse(cell).map_err(|m| fail("email", m))?))
            }
            Column::Stage => f.stage = Some(parse_stage(cell).map_err(|m| fail("stage", m))?),
            Column::Tags => {
                let names: Vec<&str> = cell.split(';').filter(|t| !t.trim().is_empty()).collect();
                f.tags = Some(parse_tags(&names).map_err(|m| fail("tags", m))?);
            }
            Column::OptIn => {
                let status = OptInStatus::parse(cell).map_err(|m| fail("optIn", m))?;
                f.opt_in = Some((status, OptInSource::Import));
            }
            Column::Attribute(key) => {
                let value = match rules.attributes.iter().find(|d| &d.key == key) {
                    Some(d) => d.from_cell(cell).map_err(|m| fail("attributes", m))?,
                    None => serde_json::Value::String(cell.to_owned()),
                };
                attributes.insert(key.clone(), value);
            }
            Column::Ignored => {}
        }
    }
    if record.len() != columns.len() {
        return Err(format!(
            "has {} cells, the header {}",
            record.len(),
            columns.len()
        ));
    }
    if !attributes.is_empty() {
        f.attributes = Some(attributes);
    }
    if f.name.is_none() && f.phone.is_none() && f.email.is_none() {
        return Err("a lead needs a name, phone or email".into());
    }
    rules
        .check(&f)
        .map_err(|(field, m)| format!("{field}: {m}"))?;
    Ok(f)
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct RowError {
    /// The line in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// An import's report (`GET /leads/imports/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub id: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub imported: i64,
    pub updated: i64,
    pub skipped: i64,
    /// Rows refused (all of them; `errors` lists the first 1,000).
    pub rejected: i64,
    pub errors: Vec<RowError>,
    /// Why the import as a whole failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct ImportRow {
    pub id: String,
    pub workspace_id: String,
    pub created_by: Option<String>,
    pub status: String,
    pub on_duplicate: String,
    pub position: i64,
    pub line: i64,
    pub imported: i64,
    pub updated: i64,
    pub skipped: i64,
    pub rejected: i64,
    pub errors: String,
    pub error: Option<String>,
}

impl ImportRow {
    pub fn report(&self) -> ImportReport {
        ImportReport {
            id: self.id.clone(),
            status: self.status.clone(),
            imported: self.imported,
            updated: self.updated,
            skipped: self.skipped,
            rejected: self.rejected,
            errors: serde_json::from_str(&self.errors).unwrap_or_default(),
            error: self.error.clone(),
        }
    }
}

const SELECT: &str = "SELECT id, workspace_id, created_by, status, on_duplicate, position, line, \
    imported, updated, skipped, rejected, errors, error FROM lead_imports";

/// An import (without its upload).
pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<ImportRow> {
    let row: Option<ImportRow> =
        sqlx::query_as(&format!("{SELECT} WHERE id = $1 AND workspace_id = $2"))
            .bind(id)
            .bind(t.workspace_id())
            .fetch_optional(t.db().reader())
            .await?;
    row.ok_or_else(AppError::not_found)
}

/// Stores an upload as a new import (whose header was checked) with its job; its id. The job
/// runs at once, or (`after`) later: a safety net for an import the request itself runs, which
/// finds nothing left to do unless the server died before the request finished it.
pub async fn create(
    t: Tenant<'_>,
    by: &str,
    body: &str,
    on_duplicate: OnDuplicate,
    after: Option<std::time::Duration>,
) -> AppResult<String> {
    let id = new_id();
    let now = now_ms();
    let mut tx = t.db().begin().await?;
    sqlx::query(
        "INSERT INTO lead_imports (id, workspace_id, created_by, status, on_duplicate, created_at, updated_at) \
         VALUES ($1, $2, $3, 'running', $4, $5, $5)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(by)
    .bind(on_duplicate.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO lead_import_files (import_id, body) VALUES ($1, $2)")
        .bind(&id)
        .bind(body)
        .execute(&mut *tx)
        .await?;
    let payload = serde_json::json!({"importId": id}).to_string();
    let at = now + after.map_or(0, |d| d.as_millis() as i64);
    crate::jobs::enqueue_at(&mut tx, JOB, &payload, at).await?;
    t.db().commit(tx).await?;
    Ok(id)
}

/// Runs an import from where it stands to its end, a chunk per transaction. Two runners of one
/// import (the request and its safety-net job) never write a chunk twice: each chunk claims
/// its range of the file in its own transaction, and the one that finds it claimed stops.
pub async fn run(t: Tenant<'_>, id: &str) -> AppResult<()> {
    let import = find(t, id).await?;
    if import.status != "running" {
        return Ok(());
    }
    let body: Option<String> =
        sqlx::query_scalar("SELECT body FROM lead_import_files WHERE import_id = $1")
            .bind(id)
            .fetch_optional(t.db().reader())
            .await?;
    let body = body.unwrap_or_default();
    let body = body.strip_prefix('\u{feff}').unwrap_or(&body);
    let mut header = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(body.as_bytes());
    let columns = columns(
        header
            .headers()
            .map_err(|e| AppError::invalid_field("file", e.to_string()))?,
    )?;
    let on_duplicate = if import.on_duplicate == "skip" {
        OnDuplicate::Skip
    } else {
        OnDuplicate::Update
    };
    let rules = Rules::load(t).await?;
    // Position 0: nothing done yet; the rows start after the header, on line 2.
    let (start, first_line) = if import.position == 0 {
        (header.position().byte() as usize, 2)
    } else {
        (import.position as usize, import.line as u64)
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.get(start..).unwrap_or_default().as_bytes());
    let mut progress = Progress::of(&import);
    let mut claimed = import.position;
    let mut record = csv::StringRecord::new();
    loop {
        let mut chunk: Vec<(u64, Result<LeadFields, String>)> = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) if record.iter().all(|c| c.trim().is_empty()) => {}
                Ok(true) => {
                    let line = first_line + record.position().map_or(1, |p| p.line()) - 1;
                    chunk.push((line, row_fields(&columns, &record, &rules)));
                }
                Err(e) => {
                    let line = first_line + e.position().map_or(1, |p| p.line()) - 1;
                    chunk.push((line, Err(format!("unreadable: {e}"))));
                }
            }
        }
        let done = chunk.len() < CHUNK;
        let upto = Claim {
            from: claimed,
            to: (start + reader.position().byte() as usize) as i64,
            line: (first_line + reader.position().line() - 1) as i64,
        };
        if !write_chunk(t, &import, chunk, on_duplicate, &mut progress, &upto, done).await? {
            return Ok(());
        }
        if done {
            return Ok(());
        }
        claimed = upto.to;
    }
}

/// The running counts of an import.
struct Progress {
    imported: i64,
    updated: i64,
    skipped: i64,
    rejected: i64,
    errors: Vec<RowError>,
}

impl Progress {
    fn of(import: &ImportRow) -> Progress {
        Progress {
            imported: import.imported,
            updated: import.updated,
            skipped: import.skipped,
            rejected: import.rejected,
            errors: serde_json::from_str(&import.errors).unwrap_or_default(),
        }
    }
}

/// A chunk's range: the import's position before it (`from`) and after it.
struct Claim {
    from: i64,
    to: i64,
    line: i64,
}

/// Writes one chunk's rows with the import's progress in one transaction; `false` when another
/// runner claimed the chunk first (nothing written).
async fn write_chunk(
    t: Tenant<'_>,
    import: &ImportRow,
    chunk: Vec<(u64, Result<LeadFields, String>)>,
    on_duplicate: OnDuplicate,
    p: &mut Progress,
    claim: &Claim,
    done: bool,
) -> AppResult<bool> {
    let mut tx = t.db().begin().await?;
    let claimed = sqlx::query(
        "UPDATE lead_imports SET position = $1, line = $2 WHERE id = $3 AND position = $4 AND status = 'running'",
    )
    .bind(claim.to)
    .bind(claim.line)
    .bind(&import.id)
    .bind(claim.from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Ok(false);
    }
    // Leads of the chunk's phones that exist already (this file's earlier rows included).
    let phones: Vec<String> = chunk
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.phone.clone().flatten())
        .map(|p| wa_id_of(&p))
        .collect();
    let mut known = existing(&mut tx, t, &phones).await?;
    // The chunk's tags, made where missing, once.
    let mut names: Vec<String> = chunk
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok()?.tags.clone())
        .flatten()
        .collect();
    names.sort();
    names.dedup();
    let tag_ids: HashMap<String, String> = names
        .iter()
        .cloned()
        .zip(leads::ensure_tags(&mut tx, t, &names).await?)
        .collect();
    for (line, fields) in chunk {
        let mut f = match fields {
            Ok(f) => f,
            Err(reason) => {
                p.rejected += 1;
                if p.errors.len() < MAX_ERRORS {
                    p.errors.push(RowError { line, reason });
                }
                continue;
            }
        };
        let wa = f.phone.clone().flatten().map(|p| wa_id_of(&p));
        let tags: Option<Vec<String>> = f.tags.take().map(|names| {
            names
                .iter()
                .filter_map(|n| tag_ids.get(n).cloned())
                .collect()
        });
        let lead_id = match wa.as_ref().and_then(|w| known.get(w)).cloned() {
            Some(_) if on_duplicate == OnDuplicate::Skip => {
                p.skipped += 1;
                continue;
            }
            Some(id) => {
                let lead = leads::find_in_tx(&mut tx, t, &id).await?;
                leads::update(&mut tx, t, &lead, &f).await?;
                p.updated += 1;
                id
            }
            None => {
                let lead = leads::insert(&mut tx, t, &f).await?;
                if let Some(w) = wa {
                    known.insert(w, lead.id.clone());
                }
                p.imported += 1;
                lead.id
            }
        };
        if let Some(ids) = tags {
            leads::set_tag_ids(&mut tx, &lead_id, &ids).await?;
        }
    }
    let status = if done { "completed" } else { "running" };
    sqlx::query(
        "UPDATE lead_imports SET status = $1, imported = $2, updated = $3, skipped = $4, rejected = $5, \
         errors = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(status)
    .bind(p.imported)
    .bind(p.updated)
    .bind(p.skipped)
    .bind(p.rejected)
    .bind(serde_json::json!(p.errors).to_string())
    .bind(now_ms())
    .bind(&import.id)
    .execute(&mut *tx)
    .await?;
    if done {
        sqlx::query("DELETE FROM lead_import_files WHERE import_id = $1")
            .bind(&import.id)
            .execute(&mut *tx)
            .await?;
        let details = serde_json::json!({
            "imported": p.imported, "updated": p.updated, "skipped": p.skipped,
            "rejected": p.rejected, "onDuplicate": on_duplicate.as_str()});
        audit::record(
            &mut tx,
            t,
            import.created_by.as_deref(),
            actions::LEADS_IMPORTED,
            ("import", &import.id),
            details,
        )
        .await?;
    }
    t.db().commit(tx).await?;
    Ok(true)
}

/// wa_id → lead id for those of these phones the workspace has.
async fn existing(
    tx: &mut Tx,
    t: Tenant<'_>,
    wa_ids: &[String],
) -> AppResult<HashMap<String, String>> {
    let mut out = HashMap::new();
    for batch in wa_ids.chunks(100) {
        let mut slots = t.db().slots();
        let ws = slots.take();
        let list = slots.list(batch.len());
        let sql =
            format!("SELECT wa_id, id FROM leads WHERE workspace_id = {ws} AND wa_id IN ({list})");
        let mut q = sqlx::query_as::<_, (String, String)>(&sql)
            .persistent(false)
            .bind(t.workspace_id());
        for w in batch {
            q = q.bind(w);
        }
        out.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(out)
}

/// Marks an import failed (the job gave up on it).
pub async fn failed(t: Tenant<'_>, id: &str, error: &str) -> AppResult<()> {
    let mut tx = t.db().begin().await?;
    sqlx::query("UPDATE lead_imports SET status = 'failed', error = $1, updated_at = $2 WHERE id = $3 AND workspace_id = $4")
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(t.workspace_id())
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM lead_import_files WHERE import_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    t.db().commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            stages: vec!["new".into(), "won".into()],
            attributes: vec![],
        }
    }

    #[test]
    fn headers_map_columns_and_refuse_unknown_ones() {
        let h = csv::StringRecord::from(vec![
            "Name",
            "Phone Number",
            "opt_in",
            "attributes.city",
            "",
        ]);
        assert_eq!(
            columns(&h).unwrap(),
            [
                Column::Name,
                Column::Phone,
                Column::OptIn,
                Column::Attribute("city".into()),
                Column::Ignored
            ]
        );
        assert!(columns(&csv::StringRecord::from(vec!["name", "colour"])).is_err());
        assert!(columns(&csv::StringRecord::from(vec!["tags", "stage"])).is_err());
        assert!(columns(&csv::StringRecord::from(vec!["name", "Name"])).is_err());
    }

    #[test]
    fn rows_are_checked_cell_by_cell() {
        let cols = columns(&csv::StringRecord::from(vec![
            "name", "phone", "tags", "stage", "optIn",
        ]))
        .unwrap();
        let ok = row_fields(
            &cols,
            &csv::StringRecord::from(vec!["Ana", "0049 151 1234567", "a; b;", "won", "yes"]),
            &rules(),
        )
        .unwrap();
        assert_eq!(ok.phone.flatten().unwrap().as_str(), "+491511234567");
        assert_eq!(ok.tags.unwrap(), ["a", "b"]);
        assert_eq!(ok.opt_in, Some((OptInStatus::OptedIn, OptInSource::Import)));
        let bad = |cells: Vec<&str>| {
            row_fields(&cols, &csv::StringRecord::from(cells), &rules()).unwrap_err()
        };
        assert!(bad(vec!["Ana", "12", "", "", ""]).starts_with("phone"));
        assert!(bad(vec!["Ana", "", "", "lost", ""]).starts_with("stage"));
        assert!(bad(vec!["Ana", "", "", "", "maybe"]).starts_with("optIn"));
        assert!(bad(vec!["", "", "x", "", ""]).contains("needs a name"));
        assert!(bad(vec!["Ana", ""]).contains("cells"));
    }
}
