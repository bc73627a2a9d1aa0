//! Message views: a stored row as its API shape (reactions, reply preview, media, the
//! sender's status from the conversation's receipt floor). Built in batches: the history, the
//! conversation list, the sync page and the live dispatcher all come here.

use std::collections::HashMap;

use super::model::*;
use super::store;
use crate::conversations::desk::TeamFace;
use crate::conversations::model::{ConversationRow, MemberRow, RequestState};
use crate::db::{Db, Timestamp};
use crate::error::{AppError, AppResult, Code};

/// (deliveredSeq, readSeq) every side of the conversation has reached: a message at or below
/// them is delivered / read by everyone, its sender included (sending moves the sender's own
/// marks). Each current member is a side, but in a support conversation (`customer` given) the
/// team is one side, as far as its furthest agent (as `messages::store::receipt_floors`).
pub fn floor_of(members: &[MemberRow], customer: Option<&str>) -> (i64, i64) {
    let marks = |m: &MemberRow| {
        let read = if m.request_state() == RequestState::Pending {
            0
        } else {
            m.read_seq
        };
        (m.delivered_seq, read)
    };
    let current = members.iter().filter(|m| m.is_current());
    let Some(customer) = customer else {
        let delivered = current.clone().map(|m| marks(m).0).min().unwrap_or(0);
        let read = current.map(|m| marks(m).1).min().unwrap_or(0);
        return (delivered, read);
    };
    let (them, team): (Vec<&MemberRow>, Vec<&MemberRow>) =
        current.partition(|m| m.user_id == customer);
    let side = |ms: &[&MemberRow]| {
        let d = ms.iter().map(|m| marks(m).0).max();
        let r = ms.iter().map(|m| marks(m).1).max();
        d.zip(r)
    };
    let sides: Vec<(i64, i64)> = [side(&them), side(&team)].into_iter().flatten().collect();
    (
        sides.iter().map(|s| s.0).min().unwrap_or(0),
        sides.iter().map(|s| s.1).min().unwrap_or(0),
    )
}

fn status_of(seq: i64, (delivered, read): (i64, i64)) -> Status {
    if read >= seq {
        Status::Read
    } else if delivered >= seq {
        Status::Delivered
    } else {
        Status::Sent
    }
}

fn parse_json(s: &Option<String>) -> Option<serde_json::Value> {
    s.as_deref().and_then(|p| serde_json::from_str(p).ok())
}

/// Builds message views: reactions and reply previews in one query each; `floors` gives each
/// conversation's receipt floor for the status.
pub async fn build_views(
    db: &Db,
    rows: Vec<MessageRow>,
    floors: &HashMap<String, (i64, i64)>,
) -> AppResult<Vec<MessageView>> {
    let ids: Vec<String> = rows.iter().map(|m| m.id.clone()).collect();
    build_views_with(db, rows, floors, &ids).await
}

/// [`build_views`] for a reader that already knows which of the messages have reactions
/// (`reacted`; the others have none): no query for the reactions of the rest.
pub async fn build_views_with(
    db: &Db,
    rows: Vec<MessageRow>,
    floors: &HashMap<String, (i64, i64)>,
    reacted: &[String],
) -> AppResult<Vec<MessageView>> {
    let mut reactions: HashMap<String, Vec<ReactionView>> = HashMap::new();
    for (message_id, reactor_type, reactor_id, emoji) in store::reactions(db, reacted).await? {
        let kind = if reactor_type == "lead" {
            SenderType::Lead
        } else {
            SenderType::User
        };
        reactions.entry(message_id).or_default().push(ReactionView {
            emoji,
            by: Party {
                kind,
                id: Some(reactor_id),
            },
        });
    }
    let reply_ids: Vec<String> = rows.iter().filter_map(|m| m.reply_to_id.clone()).collect();
    let replies: HashMap<String, ReplyPreview> = store::find_many(db, &reply_ids)
        .await?
        .into_iter()
        .map(|r| {
            let preview = ReplyPreview {
                id: r.id.clone(),
                seq: r.seq,
                sender: r.party(),
                kind: r.message_type(),
                text: r.text.as_ref().map(|t| t.chars().take(200).collect()),
                deleted: r.deleted_at.is_some(),
            };
            (r.id, preview)
        })
        .collect();
    let media_ids: Vec<String> = rows.iter().filter_map(|m| m.media_id.clone()).collect();
    let media: HashMap<String, Box<crate::media::model::MediaView>> =
        crate::media::store::find_many(db, &media_ids)
            .await?
            .into_iter()
            .map(|m| (m.id.clone(), Box::new(m.view())))
            .collect();
    Ok(rows
        .into_iter()
        .map(|m| {
            let kind = m.message_type();
            let payload = parse_json(&m.payload);
            let (location, contact, call, payload) = match kind {
                MessageType::Location => (payload, None, None, None),
                MessageType::Contact => (None, payload, None, None),
                MessageType::Call => (None, None, payload, None),
                _ => (None, None, None, payload),
            };
            let floor = floors.get(&m.conversation_id).copied().unwrap_or((0, 0));
            let external =
                (m.external_id.is_some() || m.external_status.is_some()).then(|| External {
                    id: m.external_id.clone(),
                    status: m.external_status.clone(),
                    error: parse_json(&m.external_error),
                });
            let status = match m.external_status.as_deref() {
                Some("pending") => Status::Pending,
                Some("sent") => Status::Sent,
                Some("delivered") => Status::Delivered,
                Some("read") => Status::Read,
                Some("failed") => Status::Failed,
                _ => status_of(m.seq, floor),
            };
            let sender = m.sender_kind();
            MessageView {
                status,
                external,
                sender: Party {
                    kind: sender,
                    id: m.sender_id,
                },
                reply_to: m
                    .reply_to_id
                    .as_ref()
                    .and_then(|id| replies.get(id).cloned()),
                reactions: reactions.remove(&m.id).unwrap_or_default(),
                forwarded: m.forwarded != 0,
                media: m.media_id.as_ref().and_then(|id| media.get(id).cloned()),
                location,
                contact,
                call,
                payload,
                edited_at: m.edited_at.map(Timestamp),
                deleted_at: m.deleted_at.map(Timestamp),
                created_at: Timestamp(m.created_at),
                text: m.text,
                kind,
                id: m.id,
                conversation_id: m.conversation_id,
                seq: m.seq,
                client_msg_id: m.client_msg_id,
            }
        })
        .collect())
}

/// The message of a row read in place (its [`MESSAGE_COLUMNS`] from `at`), written as it is
/// stored when nothing about it needs another read: no media, reply, reactions (`reacted`),
/// JSON payload or provider state. Its status comes from `floor`, as [`build_views`] gives
/// it. `None`: the message needs its view.
pub fn plain_wire<'r>(
    row: &'r rusqlite::Row<'_>,
    at: usize,
    reacted: bool,
    floor: (i64, i64),
) -> rusqlite::Result<Option<MessageWire<'r>>> {
    use super::model::column as c;
    let null = |i: usize| -> rusqlite::Result<bool> {
        Ok(row.get_ref(at + i)? == rusqlite::types::ValueRef::Null)
    };
    let plain = !reacted
        && null(c::MEDIA_ID)?
        && null(c::REPLY_TO_ID)?
        && null(c::PAYLOAD)?
        && null(c::EXTERNAL_ID)?
        && null(c::EXTERNAL_STATUS)?
        && null(c::EXTERNAL_ERROR)?;
    if !plain {
        return Ok(None);
    }
    let text = |i: usize| -> rusqlite::Result<Option<&'r str>> {
        row.get_ref(at + i)?.as_str_or_null().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                at + i,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
    };
    let required = |i: usize| -> rusqlite::Result<&'r str> {
        text(i)?.ok_or(rusqlite::Error::InvalidColumnType(
            at + i,
            "NULL".into(),
            rusqlite::types::Type::Null,
        ))
    };
    let seq: i64 = row.get(at + c::SEQ)?;
    Ok(Some(MessageWire {
        id: required(c::ID)?,
        conversation_id: required(c::CONVERSATION_ID)?,
        seq,
        sender: PartyWire {
            kind: SenderType::from_db(required(c::SENDER_TYPE)?),
            id: text(c::SENDER_ID)?,
        },
        kind: MessageType::from_db(required(c::TYPE)?),
        text: text(c::TEXT)?,
        media: None,
        reply_to: None,
        forwarded: row.get::<_, i64>(at + c::FORWARDED)? != 0,
        location: None,
        contact: None,
        payload: None,
        call: None,
        reactions: &[],
        edited_at: row.get::<_, Option<i64>>(at + c::EDITED_AT)?.map(Timestamp),
        deleted_at: row
            .get::<_, Option<i64>>(at + c::DELETED_AT)?
            .map(Timestamp),
        created_at: Timestamp(row.get(at + c::CREATED_AT)?),
        status: status_of(seq, floor),
        external: None,
        client_msg_id: text(c::CLIENT_MSG_ID)?,
    }))
}

/// A party as the customer of a desk that hides its agents sees it: any user but them is the
/// team.
fn disguise_party(p: &mut Party, face: &TeamFace) {
    if p.kind == SenderType::User {
        if let Some(id) = p.id.as_mut().filter(|id| face.hides(id)) {
            id.clone_from(&face.team);
        }
    }
}

/// The message as the customer of a support desk that hides its agents sees it: the sender,
/// the reactors and the replied-to sender are the team, never an agent.
pub fn disguise(view: &mut MessageView, face: &TeamFace) {
    disguise_party(&mut view.sender, face);
    for r in &mut view.reactions {
        disguise_party(&mut r.by, face);
    }
    // Two agents' same emoji is the team's one reaction.
    let mut seen = std::collections::HashSet::new();
    view.reactions
        .retain(|r| seen.insert((r.emoji.clone(), r.by.kind, r.by.id.clone())));
    if let Some(reply) = view.reply_to.as_mut() {
        disguise_party(&mut reply.sender, face);
    }
}

/// The views as `viewer` sees them in `conversation` (see [`disguise`]).
pub async fn as_seen_by(
    db: &Db,
    conversation: &ConversationRow,
    viewer: &str,
    mut views: Vec<MessageView>,
) -> AppResult<Vec<MessageView>> {
    let face = crate::conversations::store::team_face(db, conversation, viewer).await?;
    if let Some(face) = face {
        views.iter_mut().for_each(|v| disguise(v, &face));
    }
    Ok(views)
}

/// Views of messages of one conversation.
pub async fn views_in(
    db: &Db,
    conversation_id: &str,
    rows: Vec<MessageRow>,
) -> AppResult<Vec<MessageView>> {
    let floor = store::receipt_floor(db, conversation_id).await?;
    let floors = HashMap::from([(conversation_id.to_owned(), floor)]);
    build_views(db, rows, &floors).await
}

pub(super) async fn one_view(db: &Db, row: MessageRow) -> AppResult<MessageView> {
    let conversation_id = row.conversation_id.clone();
    Ok(views_in(db, &conversation_id, vec![row]).await?.remove(0))
}

/// The answer to a retried send: the message its clientMsgId already named, if it is in this
/// conversation.
pub async fn original(
    db: &Db,
    existing: MessageRow,
    conversation_id: &str,
) -> AppResult<(MessageView, bool)> {
    if existing.conversation_id != conversation_id {
        return Err(AppError::new(
            Code::ClientMsgIdConflict,
            "this clientMsgId belongs to a message in another conversation",
        ));
    }
    Ok((one_view(db, existing).await?, false))
}
