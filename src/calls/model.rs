//! Call rows, the call log's shape, and the signals the state machine sends.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::cluster::Devices;
use crate::db::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = CallMedia)]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Audio => "audio",
            Media::Video => "video",
        }
    }

    pub fn parse(raw: &str) -> Result<Media, String> {
        match raw {
            "audio" => Ok(Media::Audio),
            "video" => Ok(Media::Video),
            _ => Err("must be audio or video".into()),
        }
    }
}

/// How a call ended, as the log keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = CallOutcome)]
pub enum Outcome {
    /// Accepted (whatever ended it afterwards).
    Answered,
    /// Not answered: it rang out, or the caller hung up first.
    Missed,
    Rejected,
    /// The callee (or the caller) was on another call.
    Busy,
    /// The caller's device went away before an answer.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Missed => "missed",
            Outcome::Rejected => "rejected",
            Outcome::Busy => "busy",
            Outcome::Failed => "failed",
        }
    }

    pub fn from_db(s: &str) -> Outcome {
        match s {
            "answered" => Outcome::Answered,
            "missed" => Outcome::Missed,
            "rejected" => Outcome::Rejected,
            "busy" => Outcome::Busy,
            _ => Outcome::Failed,
        }
    }
}

/// Why a device is told `call:ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Ended,
    Missed,
    Busy,
    Failed,
    /// Another device of the callee accepted.
    AnsweredElsewhere,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Ended => "ended",
            Reason::Missed => "missed",
            Reason::Busy => "busy",
            Reason::Failed => "failed",
            Reason::AnsweredElsewhere => "answered_elsewhere",
        }
    }
}

pub const STATE_RINGING: &str = "ringing";
pub const STATE_ACTIVE: &str = "active";
pub const STATE_ENDED: &str = "ended";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CallRow {
    pub id: String,
    pub workspace_id: String,
    pub conversation_id: String,
    pub caller_id: String,
    pub callee_id: String,
    pub media: String,
    pub state: String,
    pub outcome: Option<String>,
    pub caller_session: String,
    pub caller_node: String,
    pub callee_session: Option<String>,
    pub callee_node: Option<String>,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
}

pub const CALL_COLUMNS: &str = "id, workspace_id, conversation_id, caller_id, callee_id, media, \
    state, outcome, caller_session, caller_node, callee_session, callee_node, started_at, \
    answered_at, ended_at";

impl CallRow {
    pub fn media(&self) -> Media {
        Media::parse(&self.media).unwrap_or(Media::Audio)
    }

    /// From the accept to `ended_at` (or `now` while it lasts); 0 when never answered.
    pub fn duration_ms(&self, now: i64) -> i64 {
        self.answered_at
            .map_or(0, |a| (self.ended_at.unwrap_or(now) - a).max(0))
    }

    /// The call as `viewer` (its caller or callee) sees it in the log.
    pub fn view(&self, viewer: &str) -> CallView {
        CallView {
            id: self.id.clone(),
            conversation_id: self.conversation_id.clone(),
            caller_id: self.caller_id.clone(),
            callee_id: self.callee_id.clone(),
            media: self.media(),
            direction: if self.caller_id == viewer {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            outcome: Outcome::from_db(self.outcome.as_deref().unwrap_or_default()),
            started_at: Timestamp(self.started_at),
            answered_at: self.answered_at.map(Timestamp),
            ended_at: self.ended_at.map(Timestamp),
            duration_ms: self.duration_ms(self.ended_at.unwrap_or(self.started_at)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = CallDirection)]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// One call in the log.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub id: String,
    pub conversation_id: String,
    pub caller_id: String,
    pub callee_id: String,
    pub media: Media,
    /// `outgoing` when the caller of the log is the one who called.
    pub direction: Direction,
    pub outcome: Outcome,
    pub started_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// From the accept to the end; 0 when never answered.
    pub duration_ms: i64,
}

/// An event for some devices of one user: what the state machine asks the gateway to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub user_id: String,
    pub devices: Devices,
    pub event: &'static str,
    pub data: Value,
}
