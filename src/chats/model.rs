//! The API shapes of a conversation: how one member sees it, with its last message.

use serde::Serialize;
use utoipa::ToSchema;

use crate::conversations::model::{Kind, MemberRole, RequestState};
use crate::db::Timestamp;
use crate::messages::model::MessageView;

/// Groups have at most this many members (the creator included).
pub const MAX_GROUP_MEMBERS: usize = 1024;
/// `members` in a conversation answer is complete up to this many.
pub const MEMBERS_INLINE: usize = 256;

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: String,
    pub role: MemberRole,
    pub joined_at: Timestamp,
}

impl MemberView {
    pub fn of(m: &crate::conversations::model::MemberRow) -> MemberView {
        MemberView {
            user_id: m.user_id.clone(),
            role: m.role(),
            joined_at: Timestamp(m.joined_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Muted until this time (null: not muted).
    pub muted_until: Option<Timestamp>,
    pub archived: bool,
    pub pinned: bool,
}

/// A conversation as one member sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub id: String,
    pub kind: Kind,
    /// The group's title; for a direct conversation, the other member's display name.
    pub title: Option<String>,
    pub description: Option<String>,
    /// Avatar media id.
    pub avatar: Option<String>,
    pub created_at: Timestamp,
    pub last_activity_at: Timestamp,
    pub last_message: Option<MessageView>,
    pub unread_count: i64,
    /// Current members, complete up to 256 (else use `GET /conversations/{id}/members`).
    pub members: Vec<MemberView>,
    pub member_count: i64,
    /// The caller's message-request state: `pending` for a direct conversation started by
    /// someone not in the caller's contacts, until accepted.
    pub request_state: RequestState,
    pub settings: Settings,
    /// Channel conversations: the WhatsApp channel's id (also in `channel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// Channel conversations: the customer's lead id (also in `lead`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    /// Channel conversations: the WhatsApp channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelRef>,
    /// Channel conversations: the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead: Option<LeadRef>,
    /// Inbox conversations (for agents): `open`, `pending` or `closed` (a customer message
    /// reopens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Inbox conversations (for agents): the agent in charge (null: unassigned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<Option<String>>,
    /// Inbox conversations (for agents): snoozed until then (null: not snoozed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<Option<Timestamp>>,
    /// Channel conversations: until when free-form replies are allowed (24 hours after the
    /// customer's last message); null when the window is closed or never opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_expires_at: Option<Option<Timestamp>>,
}

/// The channel of a channel conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRef {
    pub id: String,
    pub phone_number_id: String,
}

/// The customer of a channel conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadRef {
    pub id: String,
    /// Channel conversations: the customer's WhatsApp id (their number, digits only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Support conversations: the customer's user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub name: Option<String>,
}
