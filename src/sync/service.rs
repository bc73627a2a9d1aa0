//! A page of a user's change stream: a snapshot to start from, or the changes after a cursor
//! with the messages and conversations they name as they are now. Shared by `GET /sync` and
//! the socket's `sync:request`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use utoipa::ToSchema;

use super::envelope::{self, Envelope};
use crate::changes::{self, ChangeRow, Position};
use crate::chats::model::ConversationView;
use crate::chats::service as chats;
use crate::db::Tenant;
use crate::error::AppResult;
use crate::http::pagination::{encode_cursor, encode_pair_cursor};
use crate::messages::model::MessageView;

/// A page's JSON shape (for the API reference): [`Page`] writes it.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncPage {
    /// Oldest first.
    pub events: Vec<Envelope>,
    /// Ask again from here.
    pub cursor: String,
    pub has_more: bool,
    /// Without a cursor: the starting point, the most recent conversations (up to 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversations: Option<Vec<ConversationView>>,
}

/// A page as it is answered, written to JSON once into the ack's packet or the response's
/// body: its events are either already written (`sync::written`) or envelopes of views.
pub struct Page {
    written: Vec<u8>,
    events: Vec<Event>,
    cursor: String,
    has_more: bool,
    conversations: Option<Vec<ConversationView>>,
}

/// An event of a [`Page`]: a range of its written bytes, or an envelope to write.
pub(super) enum Event {
    Written(std::ops::Range<usize>),
    Viewed(Envelope),
}

impl Page {
    pub(super) fn new(
        written: Vec<u8>,
        events: Vec<Event>,
        cursor: String,
        has_more: bool,
    ) -> Page {
        Page {
            written,
            events,
            cursor,
            has_more,
            conversations: None,
        }
    }

    /// The cursor to ask from next, if there is more to read.
    pub fn next_cursor(&self) -> Option<&str> {
        self.has_more.then_some(self.cursor.as_str())
    }

    /// The [`SyncPage`]'s fields, without the braces around them (the socket's ack puts its
    /// `ok` first).
    pub fn write_fields(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"\"events\":[");
        for (i, event) in self.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match event {
                Event::Written(range) => out.extend_from_slice(&self.written[range.clone()]),
                Event::Viewed(envelope) => serde_json::to_writer(&mut *out, envelope)?,
            }
        }
        out.extend_from_slice(b"],\"cursor\":");
        serde_json::to_writer(&mut *out, &self.cursor)?;
        out.extend_from_slice(if self.has_more {
            b",\"hasMore\":true"
        } else {
            b",\"hasMore\":false"
        });
        if let Some(conversations) = &self.conversations {
            out.extend_from_slice(b",\"conversations\":");
            serde_json::to_writer(&mut *out, conversations)?;
        }
        Ok(())
    }

    /// About how many bytes the page's JSON takes.
    pub fn size_hint(&self) -> usize {
        self.written.len() + 1024 * (self.events.len() - self.written_count()) + 256
    }

    fn written_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Written(_)))
            .count()
    }

    /// The page as a JSON object.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size_hint());
        out.push(b'{');
        self.write_fields(&mut out)?;
        out.push(b'}');
        Ok(out)
    }
}

/// A page of the user's changes (shared with the socket's `sync:request`).
pub async fn page(
    t: Tenant<'_>,
    user_id: &str,
    cursor: Option<Position>,
    limit: i64,
) -> AppResult<Page> {
    let db = t.db();
    let Some(after) = cursor else {
        // Snapshot: where the stream stands now, and the conversation list as of then.
        let position = changes::current_position(db).await?;
        let filter = crate::conversations::store::ListFilter {
            requests: false,
            archived: None,
            kind: None,
            status: None,
            assignee: None,
            after: None,
            limit: 100,
        };
        let mut rows = crate::conversations::store::list_for_user(t, user_id, &filter).await?;
        rows.truncate(100);
        let items = rows
            .into_iter()
            .map(|r| (r.conversation, r.member, r.unread))
            .collect();
        let conversations = chats::views(db, user_id, items).await?;
        return Ok(Page {
            conversations: Some(conversations),
            ..Page::new(Vec::new(), Vec::new(), encode_cursor(&position), false)
        });
    };
    page_until(t, user_id, after, None, limit).await
}

/// A page of the user's changes after `after`: up to `limit` of them, and none after `until`
/// if given ([`page_end`]'s answer for the same `after` and `limit`, so that the page after it
/// can be read at the same time: it starts at `until` whatever this page finds).
pub async fn page_until(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<Page> {
    if let Some(page) = super::written::page(t, user_id, after, until, limit).await? {
        return Ok(page);
    }
    page_viewed(t, user_id, after, until, limit).await
}

pub use super::store::page_end;

/// A page's cursor and `hasMore`, from the position of its last change (or of where it
/// started, if it has none) and whether more followed it. A page up to `until` ends there
/// and has more — the page after it starts there, even where changes `page_end` counted have
/// gone since (a conversation deleted): nothing can come before `until` any more, positions
/// being given in commit order. A page that found more than `page_end` did (a request
/// accepted since) ends at its own last change instead, before `until`.
pub(super) fn page_close(last: Position, more: bool, until: Option<Position>) -> (String, bool) {
    match until {
        Some(until) if !more => (encode_cursor(&until), true),
        _ => (encode_pair_cursor(last.0, last.1).to_string(), more),
    }
}

/// The changes after `after` as views in envelopes: PostgreSQL's page, and SQLite's when its
/// rows come out of order (`sync::written` writes the same events).
async fn page_viewed(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<Page> {
    let db = t.db();
    let mut rows = super::store::page_rows(t, user_id, after, until, limit + 1).await?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);

    // Messages and conversations are shown as they are now: an edited or deleted message
    // replays with its current (erased) content. A message hidden for the reader (deleted for
    // them) is not replayed. A message named twice in a page is viewed once.
    let (rows, found): (Vec<ChangeRow>, Vec<_>) = rows
        .into_iter()
        .map(|r| (r.change, (r.message, r.hidden, r.reacted)))
        .unzip();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stored = Vec::new();
    let mut reacted = Vec::new();
    for (r, (message, hidden, has_reactions)) in rows.iter().zip(found) {
        let (Some(m), Some(id)) = (message.filter(|_| !hidden), r.message_id.as_deref()) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if has_reactions {
            reacted.push(m.id.clone());
        }
        stored.push(m);
    }
    let in_conversations = distinct(stored.iter().map(|m| m.conversation_id.as_str()));
    let floors = crate::messages::store::receipt_floors(db, &in_conversations).await?;
    let messages: Vec<Arc<MessageView>> =
        crate::messages::views::build_views_with(db, stored, &floors, &reacted)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
    let index: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.as_str(), i))
        .collect();
    // Where the reader is a support desk's customer and the desk hides its agents.
    let page_conversations = distinct(rows.iter().map(|r| r.conversation_id.as_str()));
    let faces = crate::conversations::store::team_faces(db, &page_conversations).await?;
    let mut conversations: HashMap<String, Arc<ConversationView>> = HashMap::new();
    let mut events = Vec::with_capacity(rows.len());
    let last = rows.last().map_or(after, ChangeRow::position);
    let (next_cursor, has_more) = page_close(last, has_more, until);
    for r in rows {
        let message = r
            .message_id
            .as_deref()
            .and_then(|id| index.get(id))
            .map(|&i| &messages[i]);
        let conversation = if r.kind == crate::changes::kinds::CONVERSATION_UPDATED {
            if !conversations.contains_key(&r.conversation_id) {
                let Ok(v) = chats::reload(t, &r.conversation_id, user_id).await else {
                    continue;
                };
                conversations.insert(r.conversation_id.clone(), Arc::new(v));
            }
            conversations.get(&r.conversation_id)
        } else {
            None
        };
        let cursor = envelope::cursor_after(&r);
        if let Some(mut data) = envelope::data(&r, &cursor, message, conversation) {
            let face = faces.get(&r.conversation_id);
            if let Some(face) = face.filter(|f| f.customer == user_id) {
                data = data.disguised(face);
            }
            events.push(Event::Viewed(Envelope {
                kind: r.kind,
                data,
                cursor,
            }));
        }
    }
    Ok(Page::new(Vec::new(), events, next_cursor, has_more))
}

/// The distinct values of `items`, sorted, copied once each.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut items: Vec<&str> = items.collect();
    items.sort_unstable();
    items.dedup();
    items.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page read up to an end looked up before it goes on from that end, whatever it found
    /// before it; one that found more than the end allowed goes on from its own last change.
    #[test]
    fn a_page_up_to_its_end_goes_on_from_there() {
        let decode = |c: &str| crate::http::pagination::decode_cursor::<Position>(c).unwrap();
        let (last, end) = (Position(0, 7), Position(0, 9));
        let (cursor, more) = page_close(last, false, Some(end));
        assert_eq!((decode(&cursor), more), (end, true));
        let (cursor, more) = page_close(last, true, Some(end));
        assert_eq!((decode(&cursor), more), (last, true));
        for more in [false, true] {
            let (cursor, has_more) = page_close(last, more, None);
            assert_eq!((decode(&cursor), has_more), (last, more));
        }
    }

    fn json(page: &Page) -> serde_json::Value {
        serde_json::from_slice(&page.to_json().unwrap()).unwrap()
    }

    /// Three users in the default workspace of a new SQLite database, and a send pipeline.
    async fn three() -> (
        tempfile::TempDir,
        crate::db::Db,
        String,
        [String; 3],
        crate::messages::pipeline::Pipeline,
    ) {
        use crate::users::store::{self as users, NewUser};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = crate::db::Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let workspace = crate::workspaces::store::ensure_default(&db).await.unwrap();
        let mut ids = Vec::new();
        for name in ["A", "B", "C"] {
            let mut tx = db.begin().await.unwrap();
            let new = NewUser {
                display_name: name,
                email: None,
                phone: None,
                password_hash: None,
                is_platform_admin: false,
                is_invited: false,
            };
            let user = users::insert(&mut tx, new).await.unwrap();
            let member = crate::db::Role::Member;
            crate::workspaces::store::insert_membership(&mut tx, &workspace, &user.id, member)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            ids.push(user.id);
        }
        let sends = crate::messages::pipeline::Pipeline::start(db.clone());
        (dir, db, workspace, ids.try_into().unwrap(), sends)
    }

    /// The events of every page from `cursor` on, read as `GET /sync` reads them.
    async fn rest(t: Tenant<'_>, user: &str, mut cursor: Position) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        loop {
            let read = json(&page(t, user, Some(cursor), 2).await.unwrap());
            events.extend(read["events"].as_array().unwrap().iter().cloned());
            if read["hasMore"] != true {
                return events;
            }
            cursor = decode(read["cursor"].as_str().unwrap());
        }
    }

    fn decode(cursor: &str) -> Position {
        crate::http::pagination::decode_cursor::<Position>(cursor).unwrap()
    }

    /// A page read up to the end `page_end` looked up, then the pages after it, replay what
    /// reading from the same cursor without an end replays: also when a declined request is
    /// accepted between the look-up and the read, so that the page finds changes the look-up
    /// did not count (it then goes on from its own last change, before the end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_that_finds_more_than_its_end_counted_loses_nothing() {
        use crate::messages::model::{Content, MessageType, Outgoing};
        let (_dir, db, workspace, [a, b, c], sends) = three().await;
        let t = Tenant::new(&db, &workspace);
        let say = |from: &str, conversation: &str, text: &str| {
            let out = Outgoing {
                client_msg_id: crate::db::new_id(),
                content: Content {
                    kind: MessageType::Text,
                    text: Some(text.into()),
                    media_id: None,
                    payload: None,
                },
                reply_to_id: None,
                forwarded: false,
            };
            let (from, conversation) = (from.to_owned(), conversation.to_owned());
            let sends = &sends;
            async move {
                crate::messages::service::send(t, sends, &from, &conversation, out)
                    .await
                    .unwrap()
            }
        };
        let after = changes::current_position(&db).await.unwrap();
        // C's request, which B declines; then A's messages, which B sees.
        let (request, _) = chats::open_direct(t, &c, &b).await.unwrap();
        say(&c, &request.id, "c1").await;
        say(&c, &request.id, "c2").await;
        chats::answer_request(t, &b, &request.id, false)
            .await
            .unwrap();
        let (direct, _) = chats::open_direct(t, &a, &b).await.unwrap();
        for text in ["a1", "a2", "a3"] {
            say(&a, &direct.id, text).await;
        }
        let texts = |events: &[serde_json::Value]| -> Vec<String> {
            let text =
                |e: &serde_json::Value| e["data"]["message"]["text"].as_str().map(String::from);
            events.iter().filter_map(text).collect()
        };

        // Nothing in between: the page ends where the look-up said, and the rest follows.
        let end = page_end(t, &b, after, 2)
            .await
            .unwrap()
            .expect("more than a page");
        let first = json(&page_until(t, &b, after, Some(end), 2).await.unwrap());
        assert_eq!(decode(first["cursor"].as_str().unwrap()), end);
        let mut events = first["events"].as_array().unwrap().clone();
        events.extend(rest(t, &b, end).await);
        assert_eq!(events, rest(t, &b, after).await);
        assert_eq!(texts(&events), ["a1", "a2", "a3"], "{events:?}");

        // The request accepted between the look-up and the read: C's messages come first.
        let end = page_end(t, &b, after, 2)
            .await
            .unwrap()
            .expect("more than a page");
        chats::answer_request(t, &b, &request.id, true)
            .await
            .unwrap();
        let first = json(&page_until(t, &b, after, Some(end), 2).await.unwrap());
        assert_eq!(first["hasMore"], true);
        let own = decode(first["cursor"].as_str().unwrap());
        assert!(own < end, "{own:?} goes on before {end:?}");
        let mut events = first["events"].as_array().unwrap().clone();
        events.extend(rest(t, &b, own).await);
        assert_eq!(events, rest(t, &b, after).await);
        assert_eq!(texts(&events), ["c1", "c2", "a1", "a2", "a3"], "{events:?}");
    }

    /// The hand-written fields around the events are `SyncPage`'s, written and viewed events
    /// alike, in order, with commas between them.
    #[test]
    fn a_page_is_written_in_the_sync_page_shape() {
        let written = br#"{"type":"a"}{"type":"b"}"#.to_vec();
        let viewed = Envelope {
            kind: "message:status".into(),
            data: envelope::EventData::Status {
                conversation_id: "c".into(),
                user_id: None,
                status: Some("read".into()),
                up_to_seq: Some(3),
                at: crate::db::Timestamp(0),
                cursor: "x".into(),
            },
            cursor: "x".into(),
        };
        let events = vec![
            Event::Written(0..12),
            Event::Viewed(viewed),
            Event::Written(12..24),
        ];
        let page = Page::new(written, events, "next".into(), true);
        assert_eq!(
            json(&page),
            serde_json::json!({
                "events": [
                    {"type": "a"},
                    {"type": "message:status", "data": {"conversationId": "c", "userId": null,
                     "status": "read", "upToSeq": 3, "at": "1970-01-01T00:00:00.000Z",
                     "cursor": "x"}, "cursor": "x"},
                    {"type": "b"},
                ],
                "cursor": "next",
                "hasMore": true,
            })
        );
        let empty = Page {
            conversations: Some(Vec::new()),
            ..Page::new(Vec::new(), Vec::new(), "here".into(), false)
        };
        assert_eq!(
            json(&empty),
            serde_json::json!({"events": [], "cursor": "here", "hasMore": false, "conversations": []})
        );
    }
}
