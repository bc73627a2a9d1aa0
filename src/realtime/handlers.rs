//! Client events: each calls the same service as its HTTP endpoint and answers through the ack,
//! `{"ok": true, ...}` or `{"ok": false, "error": {"code", "message"}}`.

use serde::Deserialize;
use serde_json::{json, Value};

use super::hub::{Conn, Sock};
use super::read_ahead::{self, ReadAhead};
use super::Session;
use crate::app::AppState;
use crate::changes::Position;
use crate::db::Tenant;
use crate::error::{AppError, AppResult, Code};
use crate::events;
use crate::messages::model::{
    parse_client_msg_id, parse_emoji, parse_text, ContactCard, Location, MessageType, Outgoing,
};
use crate::messages::service as messages;

/// Checks a handshake: the access token (like HTTP, but without the clock leeway: a socket
/// lives until its token's expiry, so a token at or past it is refused), then the workspace.
pub async fn authenticate(
    state: &AppState,
    token: &str,
    workspace: Option<String>,
) -> AppResult<Session> {
    let auth = crate::http::authenticate(state, token).await?;
    let expired = state
        .keys
        .verify(token)
        .map(|c| c.exp <= chrono::Utc::now().timestamp())
        .unwrap_or(true);
    if expired {
        return Err(AppError::new(
            Code::TokenExpired,
            "the access token has expired",
        ));
    }
    let membership = match workspace {
        Some(w) => crate::db::find_membership_by_ref(&state.db, &auth.user_id, &w).await?,
        None => crate::db::default_membership(&state.db, &auth.user_id).await?,
    };
    let (workspace_id, _) = membership.ok_or_else(AppError::unauthorized)?;
    Ok(Session {
        user_id: auth.user_id,
        session_id: auth.session_id,
        workspace_id,
    })
}

pub(super) fn failure(e: &AppError) -> Value {
    json!({"ok": false, "error": {"code": e.code().as_str(), "message": e.detail()}})
}

pub(super) fn payload<T: serde::de::DeserializeOwned>(data: Value) -> AppResult<T> {
    crate::http::json::parse(&serde_json::to_vec(&data).unwrap_or_default())
}

/// Handles one event; `None` for events that take no ack.
pub async fn handle(
    state: &AppState,
    session: &Session,
    conn: &Conn,
    name: &str,
    data: Value,
) -> Option<Reply> {
    let t = Tenant::new(&state.db, &session.workspace_id);
    let result = match name {
        events::MESSAGE_DELIVERED | events::MESSAGE_READ => {
            mark(t, session, data, name == events::MESSAGE_READ)
                .await
                .map(Reply::Json)
        }
        events::MESSAGE_EDIT => edit(t, session, data).await.map(Reply::Json),
        events::MESSAGE_DELETE => delete(t, session, data).await.map(Reply::Json),
        events::MESSAGE_REACT => react(t, session, data).await.map(Reply::Json),
        events::SYNC_REQUEST => sync(state, session, conn, data).await,
        events::TYPING_START | events::TYPING_STOP => {
            typing(state, session, data, name == events::TYPING_START)
                .await
                .map(Reply::Json)
        }
        _ => Err(AppError::new(
            Code::BadRequest,
            format!("unknown event {name:?}"),
        )),
    };
    Some(result.unwrap_or_else(|e| Reply::Json(failure(&e))))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendPayload {
    conversation_id: String,
    client_msg_id: String,
    #[serde(rename = "type")]
    kind: MessageType,
    text: Option<String>,
    media_id: Option<String>,
    reply_to_id: Option<String>,
    location: Option<Location>,
    contact: Option<ContactCard>,
    template: Option<crate::messages::model::TemplateSend>,
    interactive: Option<Value>,
}

impl SendPayload {
    /// The send's content, parsed as HTTP parses it (the parts are taken out).
    fn content(&mut self) -> AppResult<crate::messages::model::Content> {
        let parts = crate::messages::model::Parts {
            media_id: self.media_id.take(),
            location: self.location.take(),
            contact: self.contact.take(),
            template: self.template.take(),
            interactive: self.interactive.take(),
        };
        crate::messages::model::Content::parse(self.kind, self.text.take(), parts)
    }
}

/// A send queued by [`send_queued`].
pub(super) struct Sending {
    pub client_msg_id: String,
    /// This send noted its device as the message's origin (see `Hub::note_origin`).
    noted: bool,
    queued: messages::Queued,
}

/// A `message:send`, first half: checked and queued in the device's event order. The ack
/// comes from [`send_finish`] once the message is durable, while the device's next events go on.
pub(super) async fn send_queued(
    state: &AppState,
    session: &Session,
    socket: &Sock,
    data: Value,
) -> Result<Sending, Value> {
    let t = Tenant::new(&state.db, &session.workspace_id);
    let mut p: SendPayload = payload(data).map_err(|e| failure(&e))?;
    let client_msg_id = parse_client_msg_id(&p.client_msg_id)
        .map_err(|m| failure(&AppError::invalid_field("clientMsgId", m)))?;
    let content = p.content().map_err(|e| failure(&e))?;
    let noted = state
        .hub
        .note_origin(&session.user_id, &client_msg_id, socket.id);
    let out = Outgoing {
        client_msg_id: client_msg_id.clone(),
        content,
        reply_to_id: p.reply_to_id,
        forwarded: false,
    };
    match messages::send_queued(t, &state.sends, &session.user_id, &p.conversation_id, out).await {
        Ok(queued) => Ok(Sending {
            client_msg_id,
            noted,
            queued,
        }),
        Err(e) => {
            if noted {
                state.hub.forget_origin(&session.user_id, &client_msg_id);
            }
            Err(failure(&e))
        }
    }
}

/// A `message:send`, second half: the ack once the message is durable.
pub(super) async fn send_finish(state: &AppState, session: &Session, sending: Sending) -> Reply {
    let result = sending.queued.answer(&state.db).await;
    if sending.noted && !matches!(result, Ok((_, true))) {
        // Nothing new was committed, so the dispatcher will not come for it.
        state
            .hub
            .forget_origin(&session.user_id, &sending.client_msg_id);
    }
    match result {
        Ok((message, _)) => Reply::Sent(Box::new(message)),
        Err(e) => Reply::Json(failure(&e)),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkPayload {
    conversation_id: String,
    seq: i64,
}

async fn mark(t: Tenant<'_>, session: &Session, data: Value, read: bool) -> AppResult<Value> {
    let p: MarkPayload = payload(data)?;
    let marks = messages::mark(t, &session.user_id, &p.conversation_id, p.seq, read).await?;
    Ok(json!({"ok": true, "deliveredSeq": marks.delivered_seq, "readSeq": marks.read_seq}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditPayload {
    message_id: String,
    text: String,
}

async fn edit(t: Tenant<'_>, session: &Session, data: Value) -> AppResult<Value> {
    let p: EditPayload = payload(data)?;
    let text = parse_text(&p.text).map_err(|m| AppError::invalid_field("text", m))?;
    let message = messages::edit(t, &session.user_id, &p.message_id, text).await?;
    Ok(json!({"ok": true, "message": message}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeletePayload {
    message_id: String,
    #[serde(rename = "for")]
    scope: Option<String>,
}

async fn delete(t: Tenant<'_>, session: &Session, data: Value) -> AppResult<Value> {
    let p: DeletePayload = payload(data)?;
    let everyone = match p.scope.as_deref() {
        None | Some("me") => false,
        Some("everyone") => true,
        Some(_) => return Err(AppError::invalid_field("for", "must be me or everyone")),
    };
    messages::delete(t, &session.user_id, &p.message_id, everyone).await?;
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactPayload {
    message_id: String,
    emoji: Option<String>,
}

async fn react(t: Tenant<'_>, session: &Session, data: Value) -> AppResult<Value> {
    let p: ReactPayload = payload(data)?;
    let emoji = match p.emoji.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(e) => Some(parse_emoji(e).map_err(|m| AppError::invalid_field("emoji", m))?),
    };
    messages::react(t, &session.user_id, &p.message_id, emoji).await?;
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
struct SyncPayload {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// An ack's payload: a value, a sent message (`{ok, message}`) or a sync page (written to
/// JSON once, after the ack's `ok`), the last two written from their types without a `Value`
/// in between.
pub enum Reply {
    Json(Value),
    Sent(Box<crate::messages::model::MessageView>),
    Sync(crate::sync::service::Page),
}

/// A sent message's ack.
#[derive(serde::Serialize)]
struct SentAck<'a> {
    ok: bool,
    message: &'a crate::messages::model::MessageView,
}

impl Reply {
    /// The ack packet that answers event `id` with this.
    pub fn ack(&self, id: u64) -> crate::engineio::Str {
        match self {
            Reply::Json(value) => super::protocol::ack(id, value),
            Reply::Sent(message) => super::protocol::ack(id, &SentAck { ok: true, message }),
            Reply::Sync(page) => super::protocol::ack_with(id, page.size_hint(), |out| {
                out.extend_from_slice(b"{\"ok\":true,");
                page.write_fields(out)?;
                out.push(b'}');
                Ok(())
            }),
        }
    }
}

async fn sync(state: &AppState, session: &Session, conn: &Conn, data: Value) -> AppResult<Reply> {
    let p: SyncPayload = if data.is_null() {
        SyncPayload {
            cursor: None,
            limit: None,
        }
    } else {
        payload(data)?
    };
    let limit = p
        .limit
        .unwrap_or(crate::sync::DEFAULT_LIMIT)
        .clamp(1, crate::sync::MAX_LIMIT);
    let cursor = p.cursor.filter(|c| !c.is_empty());
    let ahead = conn
        .read_ahead
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let read = match (ahead, &cursor) {
        (Some(ahead), Some(cursor)) if ahead.answers(cursor, limit) => ahead.take().await,
        _ => None,
    };
    let reader = read_ahead::Reader {
        db: state.db.clone(),
        user_id: session.user_id.clone(),
        workspace_id: session.workspace_id.clone(),
    };
    let room = &state.hub.read_ahead_room;
    let (page, next) = match (read, cursor) {
        (Some(read), _) => read,
        (None, None) => {
            let t = Tenant::new(&state.db, &session.workspace_id);
            let page = crate::sync::service::page(t, &session.user_id, None, limit).await?;
            (page, None)
        }
        (None, Some(cursor)) => {
            // A device starting to page: its second page is read beside its first, from where
            // the first ends (and then the ones after it as each is taken).
            let after = crate::http::pagination::decode_cursor::<Position>(&cursor)?;
            let t = Tenant::new(&state.db, &session.workspace_id);
            let end = crate::sync::service::page_end(t, &session.user_id, after, limit).await?;
            let next = end.and_then(|end| {
                let cursor = crate::http::pagination::encode_cursor(&end);
                ReadAhead::start(room, &reader, &cursor, limit)
            });
            let page =
                crate::sync::service::page_until(t, &session.user_id, after, end, limit).await?;
            (page, next)
        }
    };
    // (A page that found more than its end said goes on from elsewhere: read that instead.)
    let next = next
        .filter(|next| page.next_cursor().is_some_and(|c| next.answers(c, limit)))
        .or_else(|| ReadAhead::start(room, &reader, page.next_cursor()?, limit));
    if let Some(next) = next {
        *conn.read_ahead.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(next));
    }
    Ok(Reply::Sync(page))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingPayload {
    conversation_id: String,
}

async fn typing(state: &AppState, session: &Session, data: Value, start: bool) -> AppResult<Value> {
    let p: TypingPayload = payload(data)?;
    if start {
        super::typing::start(state, session, &p.conversation_id).await?;
    } else {
        super::typing::stop(state, session, &p.conversation_id).await?;
    }
    Ok(json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event payload's decoding (the typed payload, then the checks the handlers make
    /// before touching the database) meets generated hostile values without panicking.
    #[test]
    fn hostile_payloads_never_panic() {
        let keys = [
            "conversationId",
            "clientMsgId",
            "type",
            "text",
            "mediaId",
            "replyToId",
            "location",
            "contact",
            "template",
            "interactive",
            "seq",
            "messageId",
            "emoji",
            "forEveryone",
            "cursor",
            "limit",
            "latitude",
            "longitude",
            "name",
            "phones",
            "emails",
            "language",
            "components",
            "parameters",
            "image",
            "voice",
        ];
        let seeds = [
            json!({"conversationId": "c", "clientMsgId": "0b7e6a1c-1", "type": "text", "text": "hi"}),
            json!({"conversationId": "c", "clientMsgId": "m", "type": "location", "location": {"latitude": 1.5, "longitude": 2.5, "name": "x"}}),
            json!({"conversationId": "c", "clientMsgId": "m", "type": "contact", "contact": {"name": "A", "phones": ["+1"], "emails": []}}),
            json!({"conversationId": "c", "clientMsgId": "m", "type": "template", "template": {"name": "t", "language": "en", "components": []}}),
            json!({"conversationId": "c", "seq": 4}),
            json!({"messageId": "m", "text": "edited"}),
            json!({"messageId": "m", "forEveryone": true}),
            json!({"messageId": "m", "emoji": "👍"}),
            json!({"cursor": "abc", "limit": 50}),
        ];
        crate::fuzzing::json(&keys, &seeds, |v| {
            if let Ok(mut p) = payload::<SendPayload>(v.clone()) {
                let _ = parse_client_msg_id(&p.client_msg_id);
                let _ = p.content();
            }
            let _ = payload::<MarkPayload>(v.clone());
            if let Ok(p) = payload::<EditPayload>(v.clone()) {
                let _ = parse_text(&p.text);
            }
            let _ = payload::<DeletePayload>(v.clone());
            if let Ok(p) = payload::<ReactPayload>(v.clone()) {
                if let Some(e) = p.emoji.as_deref() {
                    let _ = parse_emoji(e);
                }
            }
            if let Ok(SyncPayload {
                cursor: Some(c), ..
            }) = payload::<SyncPayload>(v.clone())
            {
                let _ = crate::http::pagination::decode_cursor::<Position>(&c);
            }
            let _ = payload::<TypingPayload>(v.clone());
        });
    }
}
