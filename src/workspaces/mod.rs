//! Workspaces: the tenants. A default workspace is created on first start; users belong to
//! workspaces through memberships with a role. Owners, admins and agents are the workspace's
//! agents for the inbox; members are its end users.

pub mod hours;
pub mod routes;
pub mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::conversations::desk::DeskSettings;
use crate::db::{Role, Timestamp};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub is_default: bool,
    /// Free-form workspace settings (business hours, timezone, AI options…).
    pub settings: serde_json::Value,
    /// The caller's role in this workspace.
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceMember {
    pub user_id: String,
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub role: Role,
    /// True while the member was invited and has not signed in yet.
    pub invited: bool,
    pub joined_at: Timestamp,
}

/// A workspace slug: 2 to 40 of `a-z`, `0-9` and inner `-`.
pub fn parse_slug(raw: &str) -> Result<String, String> {
    let s = raw.trim();
    let ok = (2..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
        // Workspaces are named by id or slug; a slug shaped like an id would be ambiguous.
        && uuid::Uuid::parse_str(s).is_err();
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 2 to 40 characters of a-z, 0-9 and inner dashes".into())
    }
}

pub fn parse_name(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    let n = t.chars().count();
    if !(1..=80).contains(&n) || t.chars().any(char::is_control) {
        return Err("must be 1 to 80 characters without control characters".into());
    }
    Ok(t.to_owned())
}

/// `settings.ai` of a workspace: AI analysis is opt-in; until `enabled` nothing is analysed
/// or sent anywhere.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct AiSettings {
    pub enabled: bool,
    /// Analyse a conversation this long after it went quiet (default: the server's
    /// `PALAVER_AI_IDLE_AFTER`); 1 to 604,800.
    pub idle_after_seconds: Option<i64>,
    /// Tokens a month the workspace's provider calls may use; none: no limit.
    pub monthly_token_budget: Option<i64>,
    /// Mask phone numbers and email addresses before anything is sent to a provider.
    pub mask_contacts: bool,
}

impl AiSettings {
    /// The AI settings within a workspace's stored `settings` (defaults where absent).
    pub fn of_workspace(settings: &str) -> AiSettings {
        serde_json::from_str::<serde_json::Value>(settings)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("ai")?.clone()).ok())
            .unwrap_or_default()
    }

    fn check(&self) -> Result<(), String> {
        if self
            .idle_after_seconds
            .is_some_and(|s| !(1..=604_800).contains(&s))
        {
            return Err("idleAfterSeconds: 1 to 604800".into());
        }
        if self.monthly_token_budget.is_some_and(|b| b < 0) {
            return Err("monthlyTokenBudget: 0 or more".into());
        }
        Ok(())
    }
}

/// Checks a workspace's `settings` object (on `PATCH /workspaces/{id}`): `support`, when
/// present, must be a desk setting, `ai` AI settings, and `timezone`, `businessHours` and
/// `holidays` business hours ([`hours`]).
pub fn check_settings(settings: &serde_json::Value) -> Result<(), String> {
    hours::BusinessHours::of_settings(settings)?;
    if let Some(v) = settings.get("support") {
        serde_json::from_value::<DeskSettings>(v.clone()).map_err(|e| format!("support: {e}"))?;
    }
    if let Some(v) = settings.get("ai") {
        let ai: AiSettings = serde_json::from_value(v.clone()).map_err(|e| format!("ai: {e}"))?;
        ai.check().map_err(|e| format!("ai: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_words_with_dashes() {
        assert!(parse_slug("acme-pharmacy").is_ok());
        for bad in [
            "a",
            "Acme",
            "-acme",
            "acme-",
            "ac me",
            "ac_me",
            "01a1fcc9-f534-7180-b41d-68bc6714f8df",
        ] {
            assert!(parse_slug(bad).is_err(), "{bad}");
        }
    }
}
