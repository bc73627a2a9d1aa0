//! Canned responses: a short code → a text with variables, found by prefix from the composer
//! (`/ret` → `returns`), rendered on the server for one conversation.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{is_unique_violation, new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult, Code};

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct CannedRow {
    pub id: String,
    pub short_code: String,
    pub text: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CannedView {
    pub id: String,
    pub short_code: String,
    pub text: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl CannedRow {
    pub fn view(self) -> CannedView {
        CannedView {
            id: self.id,
            short_code: self.short_code,
            text: self.text,
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        }
    }
}

/// A short code: 1 to 40 lower-case letters, digits, `_` or `-` (typed after `/`).
pub fn parse_short_code(raw: &str) -> Result<String, String> {
    let t = raw.trim().trim_start_matches('/').to_lowercase();
    let ok = !t.is_empty()
        && t.len() <= 40
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(t)
    } else {
        Err("1 to 40 lower-case letters, digits, _ or -".into())
    }
}

pub fn parse_text(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > 4096 {
        return Err("1 to 4096 characters".into());
    }
    Ok(t.to_owned())
}

fn taken(e: sqlx::Error) -> AppError {
    if is_unique_violation(&e) {
        AppError::new(
            Code::ShortCodeTaken,
            "the workspace has a canned response with this short code",
        )
    } else {
        e.into()
    }
}

const COLUMNS: &str = "id, short_code, text, created_at, updated_at";

/// The workspace's canned responses, by short code; `prefix`: those whose code starts so.
pub async fn list(t: Tenant<'_>, prefix: Option<&str>) -> AppResult<Vec<CannedView>> {
    let like = prefix.map(|p| format!("{}%", p.replace(['%', '_', '\\'], "")));
    let rows: Vec<CannedRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM canned_responses WHERE workspace_id = $1 \
         AND ($2 IS NULL OR short_code LIKE $2) ORDER BY short_code LIMIT 200"
    ))
    .bind(t.workspace_id())
    .bind(like)
    .fetch_all(t.db().reader())
    .await?;
    Ok(rows.into_iter().map(CannedRow::view).collect())
}

pub async fn find(t: Tenant<'_>, id: &str) -> AppResult<CannedRow> {
    let row: Option<CannedRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM canned_responses WHERE id = $1 AND workspace_id = $2"
    ))
    .bind(id)
    .bind(t.workspace_id())
    .fetch_optional(t.db().reader())
    .await?;
    row.ok_or_else(AppError::not_found)
}

pub async fn insert(
    tx: &mut Tx,
    t: Tenant<'_>,
    by: &str,
    code: &str,
    text: &str,
) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO canned_responses (id, workspace_id, short_code, text, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(code)
    .bind(text)
    .bind(by)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(taken)?;
    Ok(id)
}

pub async fn update(
    tx: &mut Tx,
    t: Tenant<'_>,
    id: &str,
    code: Option<&str>,
    text: Option<&str>,
) -> AppResult<()> {
    let n = sqlx::query(
        "UPDATE canned_responses SET short_code = COALESCE($1, short_code), text = COALESCE($2, text), \
         updated_at = $3 WHERE id = $4 AND workspace_id = $5",
    )
    .bind(code)
    .bind(text)
    .bind(now_ms())
    .bind(id)
    .bind(t.workspace_id())
    .execute(&mut **tx)
    .await
    .map_err(taken)?
    .rows_affected();
    if n == 0 {
        return Err(AppError::not_found());
    }
    Ok(())
}

pub async fn delete(tx: &mut Tx, t: Tenant<'_>, id: &str) -> AppResult<()> {
    let n = sqlx::query("DELETE FROM canned_responses WHERE id = $1 AND workspace_id = $2")
        .bind(id)
        .bind(t.workspace_id())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(AppError::not_found());
    }
    Ok(())
}

/// What the variables of a text may name.
#[derive(Debug, Default)]
pub struct Context {
    pub lead_name: Option<String>,
    pub lead_phone: Option<String>,
    pub lead_email: Option<String>,
    pub lead_stage: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub agent_name: Option<String>,
    pub workspace_name: Option<String>,
}

/// What the variables may name in conversation `c`: its lead, the workspace, and `agent` (the
/// agent who will send it).
pub async fn context(
    t: Tenant<'_>,
    c: &crate::conversations::model::ConversationRow,
    agent: Option<&str>,
) -> AppResult<Context> {
    let lead = match &c.lead_id {
        Some(l) => super::leads::find(t, l).await?,
        None => None,
    };
    let names: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'agent', display_name FROM users WHERE id = $1 UNION ALL SELECT 'workspace', name FROM workspaces WHERE id = $2",
    )
    .bind(agent.unwrap_or(""))
    .bind(t.workspace_id())
    .fetch_all(t.db().reader())
    .await?;
    let name = |k: &str| names.iter().find(|(w, _)| w == k).map(|(_, n)| n.clone());
    Ok(Context {
        lead_phone: lead
            .as_ref()
            .and_then(|l| l.wa_id.as_ref().map(|w| format!("+{w}"))),
        lead_email: lead.as_ref().and_then(|l| l.email.clone()),
        lead_stage: lead.as_ref().map(|l| l.stage.clone()),
        attributes: lead
            .as_ref()
            .and_then(|l| serde_json::from_str(&l.attributes).ok())
            .unwrap_or_default(),
        lead_name: lead.and_then(|l| l.name),
        agent_name: name("agent"),
        workspace_name: name("workspace"),
    })
}

/// Replaces `{{lead.name}}`, `{{lead.phone}}`, `{{lead.email}}`, `{{lead.stage}}`,
/// `{{lead.attributes.KEY}}` (or `{{attributes.KEY}}`), `{{agent.name}}` and
/// `{{workspace.name}}`; a variable without a value becomes empty and is listed in the
/// second result, one that is not a variable stays as written.
pub fn render(text: &str, cx: &Context) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let name = after[..end].trim();
        match value(name, cx) {
            Some(Some(v)) => out.push_str(&v),
            Some(None) => missing.push(name.to_owned()),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    (out, missing)
}

/// `None`: not a variable; `Some(None)`: a variable without a value here.
fn value(name: &str, cx: &Context) -> Option<Option<String>> {
    let attribute = name
        .strip_prefix("lead.attributes.")
        .or_else(|| name.strip_prefix("attributes."));
    if let Some(key) = attribute {
        return Some(cx.attributes.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }));
    }
    Some(match name {
        "lead.name" => cx.lead_name.clone(),
        "lead.phone" => cx.lead_phone.clone(),
        "lead.email" => cx.lead_email.clone(),
        "lead.stage" => cx.lead_stage.clone(),
        "agent.name" => cx.agent_name.clone(),
        "workspace.name" => cx.workspace_name.clone(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_filled_and_missing_ones_listed() {
        let mut cx = Context {
            lead_name: Some("Rosa".into()),
            agent_name: Some("Ana".into()),
            workspace_name: Some("Farmácia Central".into()),
            ..Default::default()
        };
        cx.attributes
            .insert("order".into(), serde_json::json!(1042));
        let (text, missing) = render(
            "Hi {{ lead.name }}, {{agent.name}} of {{workspace.name}} here: order {{attributes.order}} \
             ships to {{lead.email}}. {{unknown}} {{open",
            &cx,
        );
        assert_eq!(
            text,
            "Hi Rosa, Ana of Farmácia Central here: order 1042 ships to . {{unknown}} {{open"
        );
        assert_eq!(missing, ["lead.email"]);
        assert_eq!(parse_short_code("/Returns").unwrap(), "returns");
        assert!(parse_short_code("two words").is_err());
    }
}
