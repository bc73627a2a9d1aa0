//! What a workspace defines for its leads: the pipeline's stages, custom attribute
//! definitions and tags (with colours).

use super::model::{AttributeDefinition, AttributeType, TagView, DEFAULT_STAGES};
use crate::db::{is_unique_violation, new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

/// The workspace's stages in order (the default pipeline when it has none of its own).
pub async fn stages(t: Tenant<'_>) -> AppResult<Vec<String>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM lead_stages WHERE workspace_id = $1 ORDER BY position",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?;
    Ok(if rows.is_empty() {
        DEFAULT_STAGES.iter().map(|s| s.to_string()).collect()
    } else {
        rows
    })
}

/// The stage a new lead starts in.
pub async fn first_stage(tx: &mut Tx, t: Tenant<'_>) -> AppResult<String> {
    let first: Option<String> = sqlx::query_scalar(
        "SELECT name FROM lead_stages WHERE workspace_id = $1 ORDER BY position LIMIT 1",
    )
    .bind(t.workspace_id())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(first.unwrap_or_else(|| DEFAULT_STAGES[0].to_owned()))
}

/// Replaces the pipeline. A stage that leads are still in cannot go (422 naming it).
pub async fn set_stages(tx: &mut Tx, t: Tenant<'_>, stages: &[String]) -> AppResult<()> {
    let used: Vec<(String, i64)> =
        sqlx::query_as("SELECT stage, COUNT(*) FROM leads WHERE workspace_id = $1 GROUP BY stage")
            .bind(t.workspace_id())
            .fetch_all(&mut **tx)
            .await?;
    if let Some((stage, n)) = used.iter().find(|(s, _)| !stages.contains(s)) {
        return Err(AppError::invalid_field(
            "stages",
            format!("{n} lead(s) are in stage {stage:?}; move them first"),
        ));
    }
    sqlx::query("DELETE FROM lead_stages WHERE workspace_id = $1")
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?;
    for (i, s) in stages.iter().enumerate() {
        sqlx::query("INSERT INTO lead_stages (workspace_id, name, position) VALUES ($1, $2, $3)")
            .bind(t.workspace_id())
            .bind(s)
            .bind(i as i64)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn attributes(t: Tenant<'_>) -> AppResult<Vec<AttributeDefinition>> {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT key, label, type, options FROM lead_attributes WHERE workspace_id = $1 ORDER BY position",
    )
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, label, kind, options)| AttributeDefinition {
            key,
            label,
            kind: AttributeType::from_db(&kind),
            options: options.and_then(|o| serde_json::from_str(&o).ok()),
        })
        .collect())
}

/// Replaces the attribute definitions (values leads already have stay).
pub async fn set_attributes(
    tx: &mut Tx,
    t: Tenant<'_>,
    defs: &[AttributeDefinition],
) -> AppResult<()> {
    sqlx::query("DELETE FROM lead_attributes WHERE workspace_id = $1")
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?;
    for (i, d) in defs.iter().enumerate() {
        sqlx::query(
            "INSERT INTO lead_attributes (workspace_id, key, label, type, options, position) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(t.workspace_id())
        .bind(&d.key)
        .bind(&d.label)
        .bind(d.kind.as_str())
        .bind(d.options.as_ref().map(|o| serde_json::json!(o).to_string()))
        .bind(i as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct TagRow {
    id: String,
    name: String,
    color: String,
    created_at: i64,
    leads: i64,
}

impl TagRow {
    fn view(self) -> TagView {
        TagView {
            id: self.id,
            name: self.name,
            color: self.color,
            leads: self.leads,
            created_at: Timestamp(self.created_at),
        }
    }
}

const TAG_SELECT: &str = "SELECT t.id, t.name, t.color, t.created_at, \
    (SELECT COUNT(*) FROM lead_tags lt WHERE lt.tag_id = t.id) AS leads FROM tags t";

pub async fn tags(t: Tenant<'_>) -> AppResult<Vec<TagView>> {
    let rows: Vec<TagRow> = sqlx::query_as(&format!(
        "{TAG_SELECT} WHERE t.workspace_id = $1 ORDER BY t.name"
    ))
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows.into_iter().map(TagRow::view).collect())
}

pub async fn tag(t: Tenant<'_>, id: &str) -> AppResult<TagView> {
    let row: Option<TagRow> = sqlx::query_as(&format!(
        "{TAG_SELECT} WHERE t.workspace_id = $1 AND t.id = $2"
    ))
    .bind(t.workspace_id())
    .bind(id)
    .fetch_optional(t.db().reader())
    .await?;
    row.map(TagRow::view).ok_or_else(AppError::not_found)
}

/// Tag ids of these names; a name the workspace has no tag of is a 422 on `field`.
pub async fn tag_ids(t: Tenant<'_>, names: &[String], field: &str) -> AppResult<Vec<String>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM tags WHERE workspace_id = $1 AND name = $2")
                .bind(t.workspace_id())
                .bind(name)
                .fetch_optional(t.db().reader())
                .await?;
        ids.push(id.ok_or_else(|| {
            AppError::invalid_field(field, format!("the workspace has no tag {name:?}"))
        })?);
    }
    Ok(ids)
}

fn tag_taken(e: sqlx::Error) -> AppError {
    if is_unique_violation(&e) {
        AppError::new(Code::TagExists, "the workspace has a tag of this name")
    } else {
        e.into()
    }
}

pub async fn create_tag(tx: &mut Tx, t: Tenant<'_>, name: &str, color: &str) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO tags (id, workspace_id, name, color, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(name)
    .bind(color)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(tag_taken)?;
    Ok(id)
}

pub async fn update_tag(
    tx: &mut Tx,
    t: Tenant<'_>,
    id: &str,
    name: Option<&str>,
    color: Option<&str>,
) -> AppResult<()> {
    let n = sqlx::query(
        "UPDATE tags SET name = COALESCE($1, name), color = COALESCE($2, color) \
         WHERE id = $3 AND workspace_id = $4",
    )
    .bind(name)
    .bind(color)
    .bind(id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await
    .map_err(tag_taken)?
    .rows_affected();
    if n == 0 {
        return Err(AppError::not_found());
    }
    Ok(())
}

/// Deletes a tag (and takes it off every lead).
pub async fn delete_tag(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<String> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM tags WHERE id = $1 AND workspace_id = $2")
            .bind(id)
            .bind(t.workspace_id())
            .fetch_optional(&mut **tx)
            .await?;
    let name = name.ok_or_else(AppError::not_found)?;
    sqlx::query("DELETE FROM lead_tags WHERE tag_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM tags WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(name)
}
