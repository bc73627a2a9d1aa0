//! `palaver import-webhooks DIR`: webhook bodies from files, through the webhook's code path
//! (without signatures). Each new body is recorded like a delivered one, then applied at once;
//! a body imported before is applied again, which changes nothing (ingest is idempotent).

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ingest::{self, Report, UnknownChannels};
use crate::app::AppState;

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub files: u64,
    pub imported_files: u64,
    pub failed_files: u64,
    /// Bodies recorded by an earlier import (applied again, to no effect).
    pub already_recorded: u64,
    pub totals: Report,
    /// `{file, error}` for each file that could not be imported.
    pub errors: Vec<FileError>,
}

#[derive(Debug, Serialize)]
pub struct FileError {
    pub file: String,
    pub error: String,
}

pub async fn run(
    state: &AppState,
    dir: &Path,
    workspace: Option<&str>,
) -> anyhow::Result<ImportReport> {
    let workspace_id = match workspace {
        Some(w) => {
            sqlx::query_scalar::<_, String>("SELECT id FROM workspaces WHERE id = $1 OR slug = $1")
                .bind(w)
                .fetch_optional(state.db.reader())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no workspace {w}"))?
        }
        None => state.default_workspace_id.clone(),
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut report = ImportReport::default();
    for path in files {
        report.files += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match import_one(state, &path, &workspace_id).await {
            Ok((r, seen)) => {
                report.imported_files += 1;
                report.already_recorded += u64::from(seen);
                report.totals.add(r);
            }
            Err(error) => {
                report.failed_files += 1;
                report.errors.push(FileError { file: name, error });
            }
        }
    }
    Ok(report)
}

async fn import_one(
    state: &AppState,
    path: &Path,
    workspace_id: &str,
) -> Result<(Report, bool), String> {
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    super::parse::parse(&body).map_err(|m| m.0)?;
    let sha = hex::encode(Sha256::digest(&body));
    let seen: bool = sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM webhook_events WHERE source = 'import' AND sha256 = $1",
    )
    .bind(&sha)
    .fetch_one(state.db.reader())
    .await
    .map_err(|e| e.to_string())?
        > 0;
    let event = if seen {
        None
    } else {
        Some(
            super::webhook::store(&state.db, "import", &body)
                .await
                .map_err(|e| e.to_string())?,
        )
    };
    let report = ingest::ingest(state, &body, UnknownChannels::CreateIn(workspace_id))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(id) = event {
        super::webhook::mark_processed(&state.db, &id, &report)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok((report, seen))
}
