//! The support desk as the conversations see it: a workspace's desk settings, and the face its
//! team shows a customer. With `showAgentNames` off, the customer of a support conversation
//! never learns which agent did what: every agent is one party, "the team", named by the
//! workspace's id, in messages (sender, reactions, reply previews), receipts, members, typing
//! and read events.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `settings.support` of a workspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeskSettings {
    pub enabled: bool,
    /// `members` (the workspace's members only) or `anyone` (any signed-in user, who becomes a
    /// member when they first write).
    pub who_may_write: WhoMayWrite,
    /// Whether the customer sees which agent wrote, reacted and read, or only the workspace
    /// (the team as one party, named by the workspace's id). Off by default.
    pub show_agent_names: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WhoMayWrite {
    #[default]
    Members,
    Anyone,
}

impl DeskSettings {
    /// The desk settings within a workspace's stored `settings` (defaults where absent or
    /// unreadable: `PATCH /workspaces/{id}` checks them on the way in).
    pub fn of_workspace(settings: &str) -> DeskSettings {
        serde_json::from_str::<serde_json::Value>(settings)
            .ok()
            .and_then(|v| serde_json::from_value(v.get("support")?.clone()).ok())
            .unwrap_or_default()
    }
}

/// The team as one support conversation's customer sees it when the desk hides its agents:
/// anyone but the customer is the team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamFace {
    pub customer: String,
    /// The workspace's id: the id the team goes by.
    pub team: String,
}

impl TeamFace {
    /// The id the customer sees for `user_id`.
    pub fn user<'a>(&'a self, user_id: &'a str) -> &'a str {
        if user_id == self.customer {
            user_id
        } else {
            &self.team
        }
    }

    /// Is this someone of the team (anyone but the customer)?
    pub fn hides(&self, user_id: &str) -> bool {
        user_id != self.customer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desk_settings_come_from_the_workspace_settings() {
        let on =
            r#"{"support": {"enabled": true, "whoMayWrite": "anyone", "showAgentNames": true}}"#;
        let d = DeskSettings::of_workspace(on);
        assert!(d.enabled && d.show_agent_names);
        assert_eq!(d.who_may_write, WhoMayWrite::Anyone);
        for absent in ["{}", "", "not json", r#"{"support": 3}"#] {
            let d = DeskSettings::of_workspace(absent);
            assert!(!d.enabled && !d.show_agent_names, "{absent}");
        }
    }

    #[test]
    fn the_team_is_everyone_but_the_customer() {
        let face = TeamFace {
            customer: "c".into(),
            team: "w".into(),
        };
        assert_eq!(face.user("c"), "c");
        assert_eq!(face.user("agent-1"), "w");
        assert!(face.hides("agent-2") && !face.hides("c"));
    }
}
