//! Conversations as stored: the row of a conversation and of its members, their kinds, roles
//! and request states, and the constants the rules share.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Channel conversations: the customer-service window, free-form replies within 24 hours
/// of the customer's last message; templates only after that.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ConversationKind)]
pub enum Kind {
    Direct,
    Group,
    Channel,
    /// An app user writing to a workspace's team (the support desk).
    Support,
}

impl Kind {
    pub fn from_db(s: &str) -> Kind {
        match s {
            "group" => Kind::Group,
            "channel" => Kind::Channel,
            "support" => Kind::Support,
            _ => Kind::Direct,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Group => "group",
            Kind::Channel => "channel",
            Kind::Support => "support",
        }
    }

    /// A conversation of the team inbox: a customer on one side (a WhatsApp lead, or an app
    /// user at the support desk), the workspace's agents by their role on the other.
    pub fn is_inbox(self) -> bool {
        matches!(self, Kind::Channel | Kind::Support)
    }
}

/// A channel conversation's state in the team inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InboxStatus {
    Open,
    Pending,
    Closed,
}

impl InboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Open => "open",
            InboxStatus::Pending => "pending",
            InboxStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }
    pub fn from_db(s: &str) -> MemberRole {
        match s {
            "owner" => MemberRole::Owner,
            "admin" => MemberRole::Admin,
            _ => MemberRole::Member,
        }
    }
    pub fn manages(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Accepted,
    Pending,
    Declined,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Accepted => "accepted",
            RequestState::Pending => "pending",
            RequestState::Declined => "declined",
        }
    }
    pub fn from_db(s: &str) -> RequestState {
        match s {
            "pending" => RequestState::Pending,
            "declined" => RequestState::Declined,
            _ => RequestState::Accepted,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub workspace_id: String,
    pub kind: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub avatar_media_id: Option<String>,
    pub created_by: Option<String>,
    pub last_seq: i64,
    pub last_activity_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Channel conversations: the channel, the lead, the inbox status and assignee, and the
    /// customer's last message (the 24-hour service window runs from it).
    pub channel_id: Option<String>,
    pub lead_id: Option<String>,
    pub inbox_status: Option<String>,
    pub assignee_id: Option<String>,
    pub last_inbound_at: Option<i64>,
    /// Inbox conversations: snoozed until this time (then open again).
    pub snoozed_until: Option<i64>,
    /// Inbox conversations: what views sort by (the customer's last message, else the opening).
    pub inbox_at: Option<i64>,
}

impl ConversationRow {
    pub fn kind(&self) -> Kind {
        Kind::from_db(&self.kind)
    }

    /// Is this user the customer of this support conversation (who never sees its internal
    /// fields)?
    pub fn is_customer(&self, user_id: &str) -> bool {
        self.kind() == Kind::Support && self.created_by.as_deref() == Some(user_id)
    }
}

/// The lead pipeline of a workspace that has not configured its own.
pub const DEFAULT_STAGES: [&str; 4] = ["new", "qualified", "won", "lost"];

/// The job that runs when an inbox conversation opens or reopens (auto-assignment and the
/// agents' activity line); its payload is `{conversationId, reopened}`.
pub const INBOX_OPENED_JOB: &str = "inbox.opened";

crate::db::lite::lite_row!(ConversationRow {
    id,
    workspace_id,
    kind,
    title,
    description,
    avatar_media_id,
    created_by,
    last_seq,
    last_activity_at,
    created_at,
    updated_at,
    channel_id,
    lead_id,
    inbox_status,
    assignee_id,
    last_inbound_at,
    snoozed_until,
    inbox_at
});

pub const CONVERSATION_COLUMNS: &str =
    "c.id, c.workspace_id, c.kind, c.title, c.description, c.avatar_media_id, \
    c.created_by, c.last_seq, c.last_activity_at, c.created_at, c.updated_at, \
    c.channel_id, c.lead_id, c.inbox_status, c.assignee_id, c.last_inbound_at, c.snoozed_until, c.inbox_at";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRow {
    pub conversation_id: String,
    pub user_id: String,
    pub role: String,
    pub joined_at: i64,
    pub joined_seq: i64,
    pub left_at: Option<i64>,
    pub left_seq: Option<i64>,
    pub left_pos: Option<i64>,
    pub delivered_seq: i64,
    pub read_seq: i64,
    pub muted_until: Option<i64>,
    pub archived: i64,
    pub pinned: i64,
    pub request_state: String,
}

pub const MEMBER_COLUMNS: &str = "m.conversation_id, m.user_id, m.role, m.joined_at, m.joined_seq, m.left_at, \
    m.left_seq, m.left_pos, m.delivered_seq, m.read_seq, m.muted_until, m.archived, m.pinned, m.request_state";

crate::db::lite::lite_row!(MemberRow {
    conversation_id,
    user_id,
    role,
    joined_at,
    joined_seq,
    left_at,
    left_seq,
    left_pos,
    delivered_seq,
    read_seq,
    muted_until,
    archived,
    pinned,
    request_state
});

impl MemberRow {
    pub fn is_current(&self) -> bool {
        self.left_at.is_none()
    }
    pub fn role(&self) -> MemberRole {
        MemberRole::from_db(&self.role)
    }
    pub fn request_state(&self) -> RequestState {
        RequestState::from_db(&self.request_state)
    }
    /// The highest seq this member may see.
    pub fn visible_until(&self, last_seq: i64) -> i64 {
        self.left_seq.unwrap_or(last_seq)
    }
}
