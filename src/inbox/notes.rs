//! Internal notes and activity lines of inbox conversations: agents only. They are not
//! messages: they never enter the change log, so no customer's sync, search, history or
//! WhatsApp send can carry one. Agents get `note:new` live and page through them with `GET`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::{new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::{AppError, AppResult};

/// A note's text, at most.
pub const MAX_NOTE_CHARS: usize = 4000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoteAuthor {
    pub id: String,
    pub name: Option<String>,
}

/// A note (`kind: "note"`, written by an agent) or an activity line (`kind: "activity"`:
/// assigned, status changed, snoozed, reopened — `details.event` says which).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoteView {
    pub id: String,
    pub conversation_id: String,
    /// `null` for the system's own activity (auto-assignment, a snooze ending).
    pub author: Option<NoteAuthor>,
    pub kind: String,
    pub text: String,
    pub mentions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NoteRow {
    pub id: String,
    pub conversation_id: String,
    pub author_id: Option<String>,
    pub author_name: Option<String>,
    pub kind: String,
    pub text: String,
    pub mentions: String,
    pub details: Option<String>,
    pub created_at: i64,
}

impl NoteRow {
    pub fn view(self) -> NoteView {
        NoteView {
            author: self.author_id.map(|id| NoteAuthor {
                id,
                name: self.author_name,
            }),
            mentions: serde_json::from_str(&self.mentions).unwrap_or_default(),
            details: self.details.and_then(|d| serde_json::from_str(&d).ok()),
            created_at: Timestamp(self.created_at),
            id: self.id,
            conversation_id: self.conversation_id,
            kind: self.kind,
            text: self.text,
        }
    }
}

const SELECT: &str = "SELECT n.id, n.conversation_id, n.author_id, u.display_name AS author_name, \
    n.kind, n.text, n.mentions, n.details, n.created_at FROM notes n \
    LEFT JOIN users u ON u.id = n.author_id";

pub fn parse_text(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > MAX_NOTE_CHARS {
        return Err(format!("a note is 1 to {MAX_NOTE_CHARS} characters"));
    }
    Ok(t.to_owned())
}

/// A note or activity line to write.
pub struct NewNote<'a> {
    pub conversation_id: &'a str,
    /// `None`: the system.
    pub author: Option<&'a str>,
    /// `note` or `activity`.
    pub kind: &'static str,
    pub text: &'a str,
    pub mentions: &'a [String],
    pub details: Option<serde_json::Value>,
}

/// Writes a note or an activity line; returns its id.
pub async fn insert(tx: &mut Tx, t: Tenant<'_>, n: NewNote<'_>) -> AppResult<String> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO notes (id, workspace_id, conversation_id, author_id, kind, text, mentions, details, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(t.workspace_id())
    .bind(n.conversation_id)
    .bind(n.author)
    .bind(n.kind)
    .bind(n.text)
    .bind(serde_json::json!(n.mentions).to_string())
    .bind(n.details.map(|d| d.to_string()))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// An activity line by `actor` (`None`: the system).
pub async fn activity(
    tx: &mut Tx,
    t: Tenant<'_>,
    conversation_id: &str,
    actor: Option<&str>,
    text: &str,
    details: serde_json::Value,
) -> AppResult<String> {
    let line = NewNote {
        conversation_id,
        author: actor,
        kind: "activity",
        text,
        mentions: &[],
        details: Some(details),
    };
    insert(tx, t, line).await
}

pub async fn find(t: Tenant<'_>, ids: &[String]) -> AppResult<Vec<NoteView>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row: Option<NoteRow> =
            sqlx::query_as(&format!("{SELECT} WHERE n.id = $1 AND n.workspace_id = $2"))
                .bind(id)
                .bind(t.workspace_id())
                .fetch_optional(t.db().reader())
                .await?;
        out.push(row.ok_or_else(AppError::not_found)?.view());
    }
    Ok(out)
}

/// A page of a conversation's notes and activity, oldest first, after the note id `after`.
pub async fn list(
    t: Tenant<'_>,
    conversation_id: &str,
    after: Option<String>,
    limit: i64,
) -> AppResult<Vec<NoteRow>> {
    Ok(sqlx::query_as(&format!(
        "{SELECT} WHERE n.conversation_id = $1 AND n.workspace_id = $2 AND n.id > $3 \
         ORDER BY n.id LIMIT $4"
    ))
    .bind(conversation_id)
    .bind(t.workspace_id())
    .bind(after.unwrap_or_default())
    .bind(limit + 1)
    .fetch_all(t.db().reader())
    .await?)
}
