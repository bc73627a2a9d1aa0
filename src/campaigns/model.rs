//! A campaign as data: its audience filter, its states and their transitions.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::inbox::model::{parse_attribute_key, parse_stage, parse_tag};

/// Who receives a campaign: the workspace's leads with a WhatsApp number who opted in, and
/// (each given part narrows) are in one of `stages`, have one of `tags`, and have every
/// attribute of `attributes` equal to its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Audience {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub attributes: Option<serde_json::Map<String, Value>>,
}

impl Audience {
    /// The checked filter (tag and stage names as stored), or (field, message).
    pub fn check(mut self) -> Result<Audience, (&'static str, String)> {
        if let Some(tags) = &self.tags {
            if tags.is_empty() || tags.len() > 50 {
                return Err(("audience.tags", "1 to 50 tags".into()));
            }
            let parsed: Result<Vec<_>, _> = tags.iter().map(|t| parse_tag(t)).collect();
            self.tags = Some(parsed.map_err(|m| ("audience.tags", m))?);
        }
        if let Some(stages) = &self.stages {
            if stages.is_empty() || stages.len() > 50 {
                return Err(("audience.stages", "1 to 50 stages".into()));
            }
            let parsed: Result<Vec<_>, _> = stages.iter().map(|s| parse_stage(s)).collect();
            self.stages = Some(parsed.map_err(|m| ("audience.stages", m))?);
        }
        if let Some(attributes) = &self.attributes {
            if attributes.len() > 20 {
                return Err(("audience.attributes", "at most 20".into()));
            }
            for (k, v) in attributes {
                parse_attribute_key(k).map_err(|m| ("audience.attributes", m))?;
                if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    return Err((
                        "audience.attributes",
                        format!("{k}: a string, number or boolean"),
                    ));
                }
            }
        }
        Ok(self)
    }

    /// Whether a lead's attributes (JSON) match.
    pub fn attributes_match(&self, attributes: &str) -> bool {
        let Some(wanted) = &self.attributes else {
            return true;
        };
        let have: serde_json::Map<String, Value> =
            serde_json::from_str(attributes).unwrap_or_default();
        wanted.iter().all(|(k, v)| have.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Scheduled,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// A transition someone asks for: the states it may start from and the one it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Schedule,
    Pause,
    Resume,
    Cancel,
}

impl Move {
    pub fn from(self) -> &'static [Status] {
        match self {
            // A scheduled campaign may be scheduled again (another time).
            Move::Schedule => &[Status::Draft, Status::Scheduled],
            Move::Pause => &[Status::Running],
            Move::Resume => &[Status::Paused],
            Move::Cancel => &[
                Status::Draft,
                Status::Scheduled,
                Status::Running,
                Status::Paused,
            ],
        }
    }

    pub fn to(self) -> Status {
        match self {
            Move::Schedule => Status::Scheduled,
            Move::Pause => Status::Paused,
            Move::Resume => Status::Running,
            Move::Cancel => Status::Cancelled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Move::Schedule => "schedule",
            Move::Pause => "pause",
            Move::Resume => "resume",
            Move::Cancel => "cancel",
        }
    }
}

/// A time to start: RFC 3339, or a local date and time (`2026-12-24T09:00`) in the workspace's
/// timezone. A local time that does not exist (skipped by a daylight-saving change) is refused;
/// one that happens twice is the first.
pub fn parse_start(raw: &str, timezone: chrono_tz::Tz) -> Result<i64, String> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.timestamp_millis());
    }
    let local = chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            "an RFC 3339 time, or a local YYYY-MM-DDTHH:MM in the workspace's timezone".to_string()
        })?;
    match timezone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Ok(t.timestamp_millis()),
        chrono::LocalResult::Ambiguous(first, _) => Ok(first.timestamp_millis()),
        chrono::LocalResult::None => Err(format!(
            "{raw} does not exist in {timezone} (the clocks skip it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_start_times_follow_the_workspace_clock() {
        let lisbon: chrono_tz::Tz = "Europe/Lisbon".parse().unwrap();
        // Winter: Lisbon is UTC; summer: UTC+1.
        assert_eq!(
            parse_start("2026-12-24T09:00", lisbon).unwrap(),
            1_798_102_800_000
        );
        assert_eq!(
            parse_start("2026-07-01T09:00", lisbon).unwrap(),
            1_782_892_800_000
        );
        // 2026-03-29 01:30 does not exist in Lisbon; 2026-10-25 01:30 happens twice.
        assert!(parse_start("2026-03-29T01:30", lisbon).is_err());
        assert_eq!(
            parse_start("2026-10-25T01:30", lisbon).unwrap(),
            1_792_888_200_000
        );
        assert_eq!(
            parse_start("2026-12-24T09:00:00Z", lisbon).unwrap(),
            1_798_102_800_000
        );
        assert!(parse_start("tomorrow", lisbon).is_err());
    }

    #[test]
    fn attributes_must_all_match() {
        let a = Audience {
            attributes: serde_json::json!({"plan": "gold", "seats": 3})
                .as_object()
                .cloned(),
            ..Default::default()
        };
        assert!(a.attributes_match(r#"{"plan":"gold","seats":3,"x":1}"#));
        assert!(!a.attributes_match(r#"{"plan":"gold"}"#));
        assert!(Audience::default().attributes_match("{}"));
    }
}
