//! Message types, their API shape and the validated content of a new message.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::templates::{parse_language, parse_template_name};
use crate::db::Timestamp;
use crate::error::{AppError, AppResult};
use crate::http::validate::{field, Validate};

/// Edits are allowed this long after sending.
pub const EDIT_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Deleting for everyone is allowed this long after sending.
pub const DELETE_WINDOW_MS: i64 = 48 * 3600 * 1000;
pub const MAX_TEXT_CHARS: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    Audio,
    Voice,
    Video,
    Document,
    Sticker,
    Location,
    Contact,
    Template,
    Interactive,
    System,
    Call,
    Button,
    Order,
    Unsupported,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Audio => "audio",
            Self::Voice => "voice",
            Self::Video => "video",
            Self::Document => "document",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contact => "contact",
            Self::Template => "template",
            Self::Interactive => "interactive",
            Self::System => "system",
            Self::Call => "call",
            Self::Button => "button",
            Self::Order => "order",
            Self::Unsupported => "unsupported",
        }
    }

    /// Every type, in declaration order.
    pub const ALL: [MessageType; 16] = [
        Self::Text,
        Self::Image,
        Self::Audio,
        Self::Voice,
        Self::Video,
        Self::Document,
        Self::Sticker,
        Self::Location,
        Self::Contact,
        Self::Template,
        Self::Interactive,
        Self::System,
        Self::Call,
        Self::Button,
        Self::Order,
        Self::Unsupported,
    ];

    /// The stored name's type (`unsupported` for a name this build does not know). A scan of
    /// the names rather than serde's parse: every message view goes through here.
    pub fn from_db(s: &str) -> MessageType {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .unwrap_or(Self::Unsupported)
    }

    /// What an upload must be to be sent as this type (media types only).
    pub fn media_kind(self) -> Option<crate::media::sniff::Kind> {
        use crate::media::sniff::Kind;
        Some(match self {
            Self::Image => Kind::Image,
            Self::Sticker => Kind::Sticker,
            Self::Audio => Kind::Audio,
            Self::Voice => Kind::Voice,
            Self::Video => Kind::Video,
            Self::Document => Kind::Document,
            _ => return None,
        })
    }

    pub fn is_media(self) -> bool {
        matches!(
            self,
            Self::Image | Self::Audio | Self::Voice | Self::Video | Self::Document | Self::Sticker
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SenderType {
    User,
    Lead,
    System,
}

impl SenderType {
    /// From the stored `sender_type` (`user`, `lead` or `system`).
    pub fn from_db(s: &str) -> SenderType {
        match s {
            "lead" => SenderType::Lead,
            "system" => SenderType::System,
            _ => SenderType::User,
        }
    }
}

#[derive(Debug, Clone, ToSchema)]
pub struct Party {
    #[serde(rename = "type")]
    pub kind: SenderType,
    /// The user's or lead's id (null for the system). The customer of a support desk that
    /// hides its agents' names sees the workspace's id for every agent: the team.
    pub id: Option<String>,
}

impl Serialize for Party {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PartyWire {
            kind: self.kind,
            id: self.id.as_deref(),
        }
        .serialize(s)
    }
}

/// [`Party`] as it is written, borrowed (a stored row's columns or a view's fields).
#[derive(Serialize)]
pub struct PartyWire<'a> {
    #[serde(rename = "type")]
    pub kind: SenderType,
    pub id: Option<&'a str>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    pub by: Party,
}

/// What a reply shows of the message it answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplyPreview {
    pub id: String,
    pub seq: i64,
    pub sender: Party,
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// Null when the original was deleted for everyone.
    pub text: Option<String>,
    pub deleted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Sent,
    Delivered,
    Read,
    Failed,
}

/// What the provider (WhatsApp) says of a channel message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct External {
    /// The wamid.
    pub id: Option<String>,
    /// `pending`, `sent`, `delivered`, `read`, `failed` (outbound), `received` (inbound).
    pub status: Option<String>,
    /// `{code, title, message, details}` of a failure.
    pub error: Option<serde_json::Value>,
}

/// A message as the API answers it (written through [`MessageWire`]).
#[derive(Debug, Clone, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender: Party,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub text: Option<String>,
    /// Media metadata and URLs (media messages).
    pub media: Option<Box<crate::media::model::MediaView>>,
    pub reply_to: Option<ReplyPreview>,
    pub forwarded: bool,
    /// `{latitude, longitude, name?, address?}` for `location` messages.
    pub location: Option<serde_json::Value>,
    /// `{name, phones: [...]}` for `contact` messages.
    pub contact: Option<serde_json::Value>,
    /// Type-specific data (system events, interactive, order…).
    pub payload: Option<serde_json::Value>,
    /// `call` messages: `{callId, media, outcome, durationMs}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<serde_json::Value>,
    pub reactions: Vec<ReactionView>,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// The sender's view: read by every other member, delivered to every other member, or sent.
    /// Channel messages sent to a customer take the provider's status (`pending` while queued).
    pub status: Status,
    /// Channel messages: the provider's id, status and error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<External>,
    pub client_msg_id: Option<String>,
}

/// The one builder of a message's JSON: a view's fields, or a stored row's columns as they
/// are read (a sync page writes a plain message straight from its row, see
/// `messages::views::plain_wire`). The field names and order are [`MessageView`]'s.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageWire<'a> {
    pub id: &'a str,
    pub conversation_id: &'a str,
    pub seq: i64,
    pub sender: PartyWire<'a>,
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub text: Option<&'a str>,
    pub media: Option<&'a crate::media::model::MediaView>,
    pub reply_to: Option<&'a ReplyPreview>,
    pub forwarded: bool,
    pub location: Option<&'a serde_json::Value>,
    pub contact: Option<&'a serde_json::Value>,
    pub payload: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<&'a serde_json::Value>,
    pub reactions: &'a [ReactionView],
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<&'a External>,
    pub client_msg_id: Option<&'a str>,
}

impl Serialize for MessageView {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MessageWire {
            id: &self.id,
            conversation_id: &self.conversation_id,
            seq: self.seq,
            sender: PartyWire {
                kind: self.sender.kind,
                id: self.sender.id.as_deref(),
            },
            kind: self.kind,
            text: self.text.as_deref(),
            media: self.media.as_deref(),
            reply_to: self.reply_to.as_ref(),
            forwarded: self.forwarded,
            location: self.location.as_ref(),
            contact: self.contact.as_ref(),
            payload: self.payload.as_ref(),
            call: self.call.as_ref(),
            reactions: &self.reactions,
            edited_at: self.edited_at,
            deleted_at: self.deleted_at,
            created_at: self.created_at,
            status: self.status,
            external: self.external.as_ref(),
            client_msg_id: self.client_msg_id.as_deref(),
        }
        .serialize(s)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub sender_type: String,
    pub sender_id: Option<String>,
    pub client_msg_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub reply_to_id: Option<String>,
    pub forwarded: i64,
    pub payload: Option<String>,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    /// Channel messages: the provider's id (wamid), status and error (JSON).
    pub external_id: Option<String>,
    pub external_status: Option<String>,
    pub external_error: Option<String>,
}

pub const MESSAGE_COLUMNS: &str = "msg.id, msg.conversation_id, msg.seq, msg.sender_type, msg.sender_id, \
    msg.client_msg_id, msg.type, msg.text, msg.media_id, msg.reply_to_id, msg.forwarded, msg.payload, \
    msg.edited_at, msg.deleted_at, msg.created_at, msg.external_id, msg.external_status, msg.external_error";

/// Where each of [`MESSAGE_COLUMNS`] is, from the first (for rows read in place).
pub mod column {
    pub const ID: usize = 0;
    pub const CONVERSATION_ID: usize = 1;
    pub const SEQ: usize = 2;
    pub const SENDER_TYPE: usize = 3;
    pub const SENDER_ID: usize = 4;
    pub const CLIENT_MSG_ID: usize = 5;
    pub const TYPE: usize = 6;
    pub const TEXT: usize = 7;
    pub const MEDIA_ID: usize = 8;
    pub const REPLY_TO_ID: usize = 9;
    pub const FORWARDED: usize = 10;
    pub const PAYLOAD: usize = 11;
    pub const EDITED_AT: usize = 12;
    pub const DELETED_AT: usize = 13;
    pub const CREATED_AT: usize = 14;
    pub const EXTERNAL_ID: usize = 15;
    pub const EXTERNAL_STATUS: usize = 16;
    pub const EXTERNAL_ERROR: usize = 17;
}

crate::db::lite::lite_row!(with_any MessageRow {
    id,
    conversation_id,
    seq,
    sender_type,
    sender_id,
    client_msg_id,
    kind = "type",
    text,
    media_id,
    reply_to_id,
    forwarded,
    payload,
    edited_at,
    deleted_at,
    created_at,
    external_id,
    external_status,
    external_error
});

impl MessageRow {
    pub fn party(&self) -> Party {
        Party {
            kind: self.sender_kind(),
            id: self.sender_id.clone(),
        }
    }

    pub fn sender_kind(&self) -> SenderType {
        SenderType::from_db(&self.sender_type)
    }

    pub fn message_type(&self) -> MessageType {
        MessageType::from_db(&self.kind)
    }
}

/// A location as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

/// A template to send in a channel conversation: its name and language, and the values of its
/// body's `{{1}}`, `{{2}}`… in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TemplateSend {
    pub name: String,
    pub language: String,
    #[serde(default)]
    pub parameters: Vec<String>,
}

/// A shared contact card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactCard {
    pub name: String,
    #[serde(default)]
    pub phones: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
}

/// Validated content of a message a user sends.
#[derive(Debug, Clone)]
pub struct Content {
    pub kind: MessageType,
    pub text: Option<String>,
    pub media_id: Option<String>,
    /// JSON of the location or contact.
    pub payload: Option<String>,
}

pub fn parse_text(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if raw.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("must be at most {MAX_TEXT_CHARS} characters"));
    }
    Ok(raw.to_owned())
}

pub fn parse_client_msg_id(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
        return Err("must be 1 to 128 visible characters".into());
    }
    Ok(t.to_owned())
}

/// An emoji reaction: one short grapheme-ish string without spaces or control characters.
pub fn parse_emoji(raw: &str) -> Result<String, String> {
    let t = raw.trim();
    if t.is_empty()
        || t.len() > 32
        || t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c.is_ascii_alphanumeric())
    {
        return Err("must be one emoji".into());
    }
    Ok(t.to_owned())
}

pub fn parse_location(l: Location) -> Result<String, String> {
    if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
        return Err("latitude must be within ±90 and longitude within ±180".into());
    }
    for s in [&l.name, &l.address].into_iter().flatten() {
        if s.chars().count() > 256 {
            return Err("name and address must be at most 256 characters".into());
        }
    }
    Ok(serde_json::to_string(&l).unwrap_or_default())
}

pub fn parse_contact(c: ContactCard) -> Result<String, String> {
    if c.name.trim().is_empty() || c.name.chars().count() > 128 {
        return Err("name must be 1 to 128 characters".into());
    }
    if c.phones.len() + c.emails.len() > 20
        || c.phones.iter().chain(&c.emails).any(|s| s.len() > 64)
    {
        return Err("at most 20 phones and emails of at most 64 characters".into());
    }
    Ok(serde_json::to_string(&c).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_short_and_not_words() {
        assert!(parse_emoji("👍").is_ok());
        assert!(parse_emoji("👍🏽").is_ok());
        for bad in ["", " ", "ok", "👍 👍", "\u{7}"] {
            assert!(parse_emoji(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn locations_are_on_earth() {
        assert!(parse_location(Location {
            latitude: 48.85,
            longitude: 2.35,
            name: None,
            address: None
        })
        .is_ok());
        assert!(parse_location(Location {
            latitude: 91.0,
            longitude: 0.0,
            name: None,
            address: None
        })
        .is_err());
    }

    /// The column positions name the columns of `MESSAGE_COLUMNS` they say.
    #[test]
    fn column_positions_match_the_column_list() {
        let names: Vec<&str> = MESSAGE_COLUMNS.split(',').map(str::trim).collect();
        let expected = [
            (column::ID, "msg.id"),
            (column::CONVERSATION_ID, "msg.conversation_id"),
            (column::SEQ, "msg.seq"),
            (column::SENDER_TYPE, "msg.sender_type"),
            (column::SENDER_ID, "msg.sender_id"),
            (column::CLIENT_MSG_ID, "msg.client_msg_id"),
            (column::TYPE, "msg.type"),
            (column::TEXT, "msg.text"),
            (column::MEDIA_ID, "msg.media_id"),
            (column::REPLY_TO_ID, "msg.reply_to_id"),
            (column::FORWARDED, "msg.forwarded"),
            (column::PAYLOAD, "msg.payload"),
            (column::EDITED_AT, "msg.edited_at"),
            (column::DELETED_AT, "msg.deleted_at"),
            (column::CREATED_AT, "msg.created_at"),
            (column::EXTERNAL_ID, "msg.external_id"),
            (column::EXTERNAL_STATUS, "msg.external_status"),
            (column::EXTERNAL_ERROR, "msg.external_error"),
        ];
        assert_eq!(names.len(), expected.len(), "{names:?}");
        for (at, name) in expected {
            assert_eq!(names[at], name);
        }
    }

    #[test]
    fn types_round_trip_through_the_database_names() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::from_db(t.as_str()), t);
            // The stored name, the wire name and serde's name are one.
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(MessageType::from_db("hologram"), MessageType::Unsupported);
        // `ALL` lists every type the API documents: a type added to the enum but not to the
        // list would read back from the database as `unsupported`.
        let schema =
            serde_json::to_value(<MessageType as utoipa::PartialSchema>::schema()).unwrap();
        let documented: Vec<&str> = schema["enum"]
            .as_array()
            .expect("the type's schema lists its names")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let listed: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(documented, listed);
    }
}

/// What a user sends.
#[derive(Clone)]
pub struct Outgoing {
    pub client_msg_id: String,
    pub content: Content,
    pub reply_to_id: Option<String>,
    pub forwarded: bool,
}

impl Outgoing {
    /// Nothing to check beyond the sender's membership: no media, no reply, no kind kept for
    /// channel conversations.
    pub fn is_plain(&self) -> bool {
        self.content.media_id.is_none()
            && self.reply_to_id.is_none()
            && !matches!(
                self.content.kind,
                MessageType::Template | MessageType::Interactive
            )
    }
}

/// What a send carries besides its type and text (HTTP and socket alike).
#[derive(Debug, Default)]
pub struct Parts {
    pub media_id: Option<String>,
    pub location: Option<Location>,
    pub contact: Option<ContactCard>,
    pub template: Option<TemplateSend>,
    pub interactive: Option<serde_json::Value>,
}

impl Content {
    /// Validates a message's content for its type: the one parser of a send, for HTTP, the
    /// socket and tests alike.
    pub fn parse(kind: MessageType, text: Option<String>, parts: Parts) -> AppResult<Content> {
        let Parts {
            media_id,
            location,
            contact,
            template,
            interactive,
        } = parts;
        let required = |what: &str| {
            AppError::invalid_field(what, format!("is required for {} messages", kind.as_str()))
        };
        let c = match kind {
            MessageType::Text => Content {
                kind,
                text: Some(
                    field("text", parse_text(&text.ok_or_else(|| required("text"))?)).validate()?,
                ),
                media_id: None,
                payload: None,
            },
            // Media messages reference an upload (checked against the sender when sending) and
            // may carry a caption.
            _ if kind.is_media() => Content {
                kind,
                text: text
                    .map(|t| field("text", parse_text(&t)).validate())
                    .transpose()?,
                media_id: Some(media_id.ok_or_else(|| required("mediaId"))?),
                payload: None,
            },
            MessageType::Location => Content {
                kind,
                text: None,
                media_id: None,
                payload: Some(
                    field(
                        "location",
                        parse_location(location.ok_or_else(|| required("location"))?),
                    )
                    .validate()?,
                ),
            },
            MessageType::Contact => Content {
                kind,
                text: None,
                media_id: None,
                payload: Some(
                    field(
                        "contact",
                        parse_contact(contact.ok_or_else(|| required("contact"))?),
                    )
                    .validate()?,
                ),
            },
            // Only in channel conversations (the service checks where it goes).
            MessageType::Template => {
                let t = template.ok_or_else(|| required("template"))?;
                let name = field("template.name", parse_template_name(&t.name));
                let language = field("template.language", parse_language(&t.language));
                let too_long = t.parameters.len() > 100
                    || t.parameters
                        .iter()
                        .any(|p| p.trim().is_empty() || p.chars().count() > 1024);
                let parameters = field(
                    "template.parameters",
                    if too_long {
                        Err(
                            "must be at most 100 non-empty values of at most 1024 characters"
                                .into(),
                        )
                    } else {
                        Ok(t.parameters)
                    },
                );
                let (name, language, parameters) = (name, language, parameters).validate()?;
                let send = TemplateSend {
                    name,
                    language,
                    parameters,
                };
                Content {
                    kind,
                    text: None,
                    media_id: None,
                    payload: Some(serde_json::to_string(&send).map_err(AppError::internal)?),
                }
            }
            MessageType::Interactive => {
                let i = interactive.ok_or_else(|| required("interactive"))?;
                let encoded = i.to_string();
                if !i.is_object() || encoded.len() > 8 * 1024 {
                    return Err(AppError::invalid_field(
                        "interactive",
                        "must be an object of at most 8 KiB",
                    ));
                }
                let body = i
                    .pointer("/body/text")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned);
                Content {
                    kind,
                    text: body.or(text),
                    media_id: None,
                    payload: Some(encoded),
                }
            }
            other => {
                return Err(AppError::invalid_field(
                    "type",
                    format!("{} messages cannot be sent here", other.as_str()),
                ))
            }
        };
        Ok(c)
    }
}
