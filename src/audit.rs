//! The audit log: who did what, when, to what. Written in the transaction of the change it
//! records; append-only (there is no update or delete here, and the database's triggers
//! refuse one from anywhere else).

use serde::Serialize;
use utoipa::ToSchema;

use crate::db::lite::{text, Value};
use crate::db::{new_id, now_ms, Tenant, Timestamp, Tx};
use crate::error::AppResult;

/// Actions recorded (the `action` of an entry).
pub mod actions {
    pub const LEAD_CREATED: &str = "lead.created";
    pub const LEAD_UPDATED: &str = "lead.updated";
    pub const LEAD_DELETED: &str = "lead.deleted";
    pub const LEADS_IMPORTED: &str = "leads.imported";
    pub const LEADS_EXPORTED: &str = "leads.exported";
    pub const STAGES_CHANGED: &str = "stages.changed";
    pub const ATTRIBUTES_CHANGED: &str = "attributes.changed";
    pub const TAG_CREATED: &str = "tag.created";
    pub const TAG_UPDATED: &str = "tag.updated";
    pub const TAG_DELETED: &str = "tag.deleted";
    pub const CONVERSATION_ASSIGNED: &str = "conversation.assigned";
    pub const CONVERSATION_STATUS: &str = "conversation.status_changed";
    pub const NOTE_CREATED: &str = "note.created";
    pub const AUTOMATION_CREATED: &str = "automation.created";
    pub const AUTOMATION_UPDATED: &str = "automation.updated";
    pub const AUTOMATION_DELETED: &str = "automation.deleted";
    pub const CAMPAIGN_CREATED: &str = "campaign.created";
    /// Scheduled, paused, resumed or cancelled (`details.move`).
    pub const CAMPAIGN_CHANGED: &str = "campaign.changed";
    pub const CAMPAIGN_DELETED: &str = "campaign.deleted";
    pub const CANNED_CREATED: &str = "canned_response.created";
    pub const CANNED_UPDATED: &str = "canned_response.updated";
    pub const CANNED_DELETED: &str = "canned_response.deleted";
    pub const AGENT_SETTINGS: &str = "agent.settings_changed";
    pub const MEMBER_ROLE_CHANGED: &str = "member.role_changed";
    pub const MEMBER_REMOVED: &str = "member.removed";
    pub const CHANNEL_CREATED: &str = "channel.created";
    pub const CHANNEL_UPDATED: &str = "channel.updated";
    pub const CHANNEL_DELETED: &str = "channel.deleted";
    pub const AI_KEY_CREATED: &str = "ai_key.created";
    pub const AI_KEY_ROTATED: &str = "ai_key.rotated";
    pub const AI_KEY_REVOKED: &str = "ai_key.revoked";
    /// A rotated key's grace period ended (the system's).
    pub const AI_KEY_RETIRED: &str = "ai_key.retired";
    /// AI calls were first refused this month for the token budget (the system's).
    pub const AI_BUDGET_EXHAUSTED: &str = "ai.budget_exhausted";
}

/// Appends one entry. `actor`: `None` for the system (auto-assignment, a snooze ending).
pub async fn record(
    tx: &mut Tx,
    t: Tenant<'_>,
    actor: Option<&str>,
    action: &str,
    target: (&str, &str),
    details: serde_json::Value,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, workspace_id, at, actor_id, action, target_type, target_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(t.workspace_id())
    .bind(now_ms())
    .bind(actor)
    .bind(action)
    .bind(target.0)
    .bind(target.1)
    .bind(details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Actor {
    pub id: String,
    /// The user's display name; `null` for an erased account.
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// An entry as `GET /audit` shows it; `actor` is `null` for the system's own actions.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub at: Timestamp,
    pub actor: Option<Actor>,
    pub action: String,
    pub target: Target,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: String,
    pub at: i64,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub details: String,
}

crate::db::lite::lite_row!(AuditRow {
    id,
    at,
    actor_id,
    actor_name,
    action,
    target_type,
    target_id,
    details
});

impl AuditRow {
    pub fn view(self) -> AuditEntry {
        AuditEntry {
            actor: self.actor_id.map(|id| Actor {
                id,
                name: self.actor_name,
            }),
            at: Timestamp(self.at),
            action: self.action,
            target: Target {
                kind: self.target_type,
                id: self.target_id,
            },
            details: serde_json::from_str(&self.details).unwrap_or_default(),
            id: self.id,
        }
    }
}

#[derive(Debug, Default)]
pub struct AuditFilter {
    pub actor_id: Option<String>,
    /// An action, or a prefix ending in `.` (`lead.`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// A page of entries, newest first, before the entry id `before`.
pub async fn list(
    t: Tenant<'_>,
    f: &AuditFilter,
    before: Option<String>,
    limit: i64,
) -> AppResult<Vec<AuditRow>> {
    let db = t.db();
    let mut b = crate::db::Binds::new(db);
    let mut sql = format!(
        "SELECT a.id, a.at, a.actor_id, u.display_name AS actor_name, a.action, a.target_type, \
         a.target_id, a.details FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id \
         WHERE a.workspace_id = {}",
        b.bind(text(t.workspace_id()))
    );
    let mut eq = |column: &str, v: &Option<String>, sql: &mut String| {
        if let Some(v) = v {
            *sql += &format!(" AND {column} = {}", b.bind(text(v)));
        }
    };
    eq("a.actor_id", &f.actor_id, &mut sql);
    eq("a.target_type", &f.target_type, &mut sql);
    eq("a.target_id", &f.target_id, &mut sql);
    match &f.action {
        Some(a) if a.ends_with('.') => {
            sql += &format!(" AND a.action LIKE {}", b.bind(text(&format!("{a}%"))))
        }
        Some(a) => sql += &format!(" AND a.action = {}", b.bind(text(a))),
        None => {}
    }
    if let Some(from) = f.from {
        sql += &format!(" AND a.at >= {}", b.bind(Value::Integer(from)));
    }
    if let Some(to) = f.to {
        sql += &format!(" AND a.at < {}", b.bind(Value::Integer(to)));
    }
    if let Some(before) = before {
        sql += &format!(" AND a.id < {}", b.bind(text(&before)));
    }
    sql += &format!(" ORDER BY a.id DESC LIMIT {}", limit + 1);
    db.rows_once(sql, b.params, AuditRow::from_lite).await
}
