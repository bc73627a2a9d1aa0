//! The wire shape of a change, built in one place: the payload of the live event the
//! dispatcher pushes and the `data` of the same change replayed by `GET /sync` and
//! `sync:request` are the same value, cursor included.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::changes::kinds;
use crate::changes::ChangeRow;
use crate::chats::model::ConversationView;
use crate::conversations::desk::TeamFace;
use crate::db::Timestamp;
use crate::messages::model::MessageView;

/// One replayed change: the live event's name, its payload, and the cursor just after it
/// (written through [`EnvelopeWire`]).
#[derive(Debug, ToSchema)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    /// The live event's payload.
    #[schema(value_type = Object)]
    pub data: EventData,
    /// The same text as the payload's (one allocation for both).
    #[schema(value_type = String)]
    pub cursor: Arc<str>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EnvelopeWire {
            kind: &self.kind,
            data: &self.data,
            cursor: &self.cursor,
        }
        .serialize(s)
    }
}

/// The one builder of an envelope's JSON, for a view's payload or one written straight from
/// its row (`sync::written`).
#[derive(Serialize)]
pub struct EnvelopeWire<'a, D> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub data: &'a D,
    pub cursor: &'a str,
}

/// The payload of a change's event (typed, so a page is written to JSON once, without an
/// intermediate `Value` per event). Every kind carries the cursor just after its change. The
/// message is a view, or (`sync::written`) a stored row's [`MessageWire`](crate::messages::model::MessageWire).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventData<M = Arc<MessageView>> {
    Message {
        message: M,
        cursor: Arc<str>,
    },
    #[serde(rename_all = "camelCase")]
    Status {
        conversation_id: String,
        user_id: Option<String>,
        status: Option<String>,
        up_to_seq: Option<i64>,
        at: Timestamp,
        cursor: Arc<str>,
    },
    Conversation {
        conversation: Arc<ConversationView>,
        cursor: Arc<str>,
    },
}

impl EventData {
    /// The event as the customer of a support desk that hides its agents sees it: the team
    /// in place of any agent (see `conversations::desk`).
    pub fn disguised(&self, face: &TeamFace) -> EventData {
        match self {
            EventData::Message { message, cursor } => {
                let mut seen = MessageView::clone(message);
                crate::messages::views::disguise(&mut seen, face);
                EventData::Message {
                    message: Arc::new(seen),
                    cursor: cursor.clone(),
                }
            }
            EventData::Status {
                conversation_id,
                user_id,
                status,
                up_to_seq,
                at,
                cursor,
            } => EventData::Status {
                conversation_id: conversation_id.clone(),
                user_id: user_id.as_deref().map(|u| face.user(u).to_owned()),
                status: status.clone(),
                up_to_seq: *up_to_seq,
                at: *at,
                cursor: cursor.clone(),
            },
            EventData::Conversation {
                conversation,
                cursor,
            } => EventData::Conversation {
                conversation: conversation.clone(),
                cursor: cursor.clone(),
            },
        }
    }
}

/// The cursor just after `row`: where a reader who has its event goes on from.
pub fn cursor_after(row: &ChangeRow) -> Arc<str> {
    crate::http::pagination::encode_pair_cursor(row.txid, row.pos)
}

/// The payload of `row`'s event, `cursor` being the position just after it; `message` and
/// `conversation` are the views the change names, as its reader sees them. `None`: nothing to
/// send (the view is gone, or the kind is unknown).
pub fn data(
    row: &ChangeRow,
    cursor: &Arc<str>,
    message: Option<&Arc<MessageView>>,
    conversation: Option<&Arc<ConversationView>>,
) -> Option<EventData> {
    let cursor = cursor.clone();
    Some(match row.kind.as_str() {
        kinds::MESSAGE_NEW | kinds::MESSAGE_UPDATED => EventData::Message {
            message: message?.clone(),
            cursor,
        },
        kinds::MESSAGE_STATUS => EventData::Status {
            conversation_id: row.conversation_id.clone(),
            user_id: row.actor_id.clone(),
            status: row.status.clone(),
            up_to_seq: row.seq,
            at: Timestamp(row.created_at),
            cursor,
        },
        kinds::CONVERSATION_UPDATED => EventData::Conversation {
            conversation: conversation?.clone(),
            cursor,
        },
        _ => return None,
    })
}
