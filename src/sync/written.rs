//! A sync page written to JSON as its rows are read (SQLite). A plain message goes from its
//! columns into the page, with no row, view or envelope of its own in between; what needs
//! more than its row (media, a reply, reactions, a JSON payload, a desk's disguise, a
//! conversation) is left as a hole, viewed after the read and put in its place. Every event
//! is written by the same builders as a viewed page's (`MessageWire`, `EnvelopeWire`); the
//! API tests compare every message a page replays with the history's view of it.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use rusqlite::types::ValueRef;

use super::envelope::{self, Envelope, EnvelopeWire, EventData};
use super::service::{Event, Page};
use super::store::{FACTS_AT, MESSAGE_AT};
use crate::changes::{kinds, ChangeRow, Position};
use crate::conversations::desk::TeamFace;
use crate::db::Tenant;
use crate::error::AppResult;
use crate::http::pagination::encode_pair_cursor;
use crate::messages::model::MessageRow;

/// The user's changes after `after` as a written page; `None` on PostgreSQL, or when the
/// rows did not come in the page's order (the caller views the page instead).
pub async fn page(
    t: Tenant<'_>,
    user_id: &str,
    after: Position,
    until: Option<Position>,
    limit: i64,
) -> AppResult<Option<Page>> {
    let Some(readers) = t.db().lite_readers() else {
        return Ok(None);
    };
    let (sql, params) = super::store::page_statement(t, user_id, after, until, limit + 1).await?;
    let user = user_id.to_owned();
    let read = readers
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            crate::db::lite::bind(&mut stmt, &params)?;
            Reading::new(conn, &user, limit).read(stmt.raw_query())
        })
        .await?;
    let Some(read) = read else {
        return Ok(None);
    };
    Ok(Some(read.fill(t, user_id, after, until).await?))
}

/// About how many bytes a plain message's event takes, its text short.
const EVENT_BYTES: usize = 640;

/// What a conversation's events need, looked up once per page on the reading connection.
struct Facts {
    conversation_id: String,
    /// Its receipt floor (for message statuses); looked up at its first message.
    floor: Option<(i64, i64)>,
    /// How the reader sees its team, if they are the customer of a desk that hides agents.
    face: Option<TeamFace>,
}

/// A message that needs its view: its row, whether it has reactions, the face it is seen by.
struct Hole {
    row: MessageRow,
    reacted: bool,
    face: Option<TeamFace>,
}

/// An event of the page as read.
enum Slot {
    Written(Range<usize>),
    Message {
        kind: &'static str,
        cursor: Arc<str>,
        hole: usize,
    },
    Conversation {
        id: String,
        cursor: Arc<str>,
    },
}

struct Reading<'c> {
    conn: &'c rusqlite::Connection,
    user: &'c str,
    limit: i64,
    facts: Vec<Facts>,
    /// Where each conversation's facts are in `facts`.
    facts_at: HashMap<String, usize>,
    /// The last row's conversation's, in `facts` (rows mostly follow one of the same: this
    /// spares them hashing its id, 1.6% of the server's CPU in a catch-up).
    recent: usize,
    /// The events written, back to back.
    written: Vec<u8>,
    slots: Vec<Slot>,
    holes: Vec<Hole>,
    /// Which hole each message is (a message named twice in a page is viewed once).
    hole_of: HashMap<String, usize>,
    last: Option<Position>,
    has_more: bool,
}

/// A page's reading, done.
struct Read {
    facts: Vec<Facts>,
    written: Vec<u8>,
    slots: Vec<Slot>,
    holes: Vec<Hole>,
    last: Option<Position>,
    has_more: bool,
}

fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A JSON error while writing to memory (these types never make one) as the read's error
/// (rusqlite has no variant for a caller's own error; this one carries it to the 500 it
/// becomes).
fn json_error(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl<'c> Reading<'c> {
    fn new(conn: &'c rusqlite::Connection, user: &'c str, limit: i64) -> Self {
        Reading {
            conn,
            user,
            limit,
            facts: Vec::new(),
            facts_at: HashMap::new(),
            recent: 0,
            // A plain message's event is ~550 bytes: a page of them fits without regrowing
            // (which copied ~450 KB per 500-event page); a larger limit grows as it goes.
            written: Vec::with_capacity(EVENT_BYTES * limit.clamp(1, 500) as usize),
            slots: Vec::new(),
            holes: Vec::new(),
            hole_of: HashMap::new(),
            last: None,
            has_more: false,
        }
    }

    /// `None`: a row came out of the page's order.
    fn read(mut self, mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<Option<Read>> {
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let position = Position(row.get(1)?, row.get(0)?);
            if self.last.is_some_and(|last| position <= last) {
                return Ok(None);
            }
            if count == self.limit {
                self.has_more = true;
                break;
            }
            count += 1;
            self.last = Some(position);
            self.row(row, position)?;
        }
        Ok(Some(Read {
            facts: self.facts,
            written: self.written,
            slots: self.slots,
            holes: self.holes,
            last: self.last,
            has_more: self.has_more,
        }))
    }

    fn row(&mut self, row: &rusqlite::Row<'_>, at: Position) -> rusqlite::Result<()> {
        let kind = match text(row, 3)? {
            kinds::MESSAGE_NEW => kinds::MESSAGE_NEW,
            kinds::MESSAGE_UPDATED => kinds::MESSAGE_UPDATED,
            kinds::MESSAGE_STATUS => kinds::MESSAGE_STATUS,
            kinds::CONVERSATION_UPDATED => kinds::CONVERSATION_UPDATED,
            _ => return Ok(()),
        };
        let conversation_id = text(row, 2)?;
        let cursor = encode_pair_cursor(at.0, at.1);
        if kind == kinds::CONVERSATION_UPDATED {
            self.slots.push(Slot::Conversation {
                id: conversation_id.to_owned(),
                cursor,
            });
            return Ok(());
        }
        let at = self.facts_of(conversation_id)?;
        // (A clone only in a desk's conversation with its customer.)
        let face = self.facts[at]
            .face
            .clone()
            .filter(|f| f.customer == self.user);
        if kind == kinds::MESSAGE_STATUS {
            let change = ChangeRow::from_lite_at(row, 0)?;
            let Some(mut data) = envelope::data(&change, &cursor, None, None) else {
                return Ok(());
            };
            if let Some(face) = &face {
                data = data.disguised(face);
            }
            return self.write(kind, &data, &cursor);
        }
        // A message gone, or hidden for the reader, is not replayed.
        let hidden = row.get::<_, i64>(FACTS_AT)? > 0;
        if row.get_ref(MESSAGE_AT)? == ValueRef::Null || hidden {
            return Ok(());
        }
        let reacted = row.get::<_, i64>(FACTS_AT + 1)? > 0;
        let floor = self.floor_of(at)?;
        let wire = match face {
            Some(_) => None,
            None => crate::messages::views::plain_wire(row, MESSAGE_AT, reacted, floor)?,
        };
        if let Some(message) = wire {
            let data = EventData::Message {
                message,
                cursor: cursor.clone(),
            };
            return self.write(kind, &data, &cursor);
        }
        let id = text(row, MESSAGE_AT)?;
        let hole = match self.hole_of.get(id) {
            Some(&hole) => hole,
            None => {
                self.hole_of.insert(id.to_owned(), self.holes.len());
                self.holes.push(Hole {
                    row: MessageRow::from_lite_at(row, MESSAGE_AT)?,
                    reacted,
                    face,
                });
                self.holes.len() - 1
            }
        };
        self.slots.push(Slot::Message { kind, cursor, hole });
        Ok(())
    }

    /// Where `conversation_id`'s facts are in `facts`; its face is looked up once per page.
    fn facts_of(&mut self, conversation_id: &str) -> rusqlite::Result<usize> {
        let recent = self.facts.get(self.recent);
        if recent.is_some_and(|f| f.conversation_id == conversation_id) {
            return Ok(self.recent);
        }
        let at = match self.facts_at.get(conversation_id) {
            Some(&at) => at,
            None => {
                let face = crate::conversations::store::team_face_on(self.conn, conversation_id)?;
                self.facts.push(Facts {
                    conversation_id: conversation_id.to_owned(),
                    floor: None,
                    face,
                });
                let at = self.facts.len() - 1;
                self.facts_at.insert(conversation_id.to_owned(), at);
                at
            }
        };
        self.recent = at;
        Ok(at)
    }

    /// The receipt floor of the conversation at `at` in `facts`, looked up at its first
    /// message in the page.
    fn floor_of(&mut self, at: usize) -> rusqlite::Result<(i64, i64)> {
        let facts = &mut self.facts[at];
        if facts.floor.is_none() {
            facts.floor = Some(crate::messages::store::receipt_floor_on(
                self.conn,
                &facts.conversation_id,
            )?);
        }
        Ok(facts.floor.unwrap_or_default())
    }

    fn write<D: serde::Serialize>(
        &mut self,
        kind: &str,
        data: &D,
        cursor: &str,
    ) -> rusqlite::Result<()> {
        let start = self.written.len();
        let envelope = EnvelopeWire { kind, data, cursor };
        serde_json::to_writer(&mut self.written, &envelope).map_err(json_error)?;
        self.slots.push(Slot::Written(start..self.written.len()));
        Ok(())
    }
}

impl Read {
    /// The page, with its holes viewed: the messages in one pass (as a viewed page builds
    /// them), the conversations as the reader sees them now (one left since is left out).
    async fn fill(
        self,
        t: Tenant<'_>,
        user_id: &str,
        after: Position,
        until: Option<Position>,
    ) -> AppResult<Page> {
        let db = t.db();
        let floors: HashMap<String, (i64, i64)> = self
            .facts
            .into_iter()
            .filter_map(|f| Some((f.conversation_id, f.floor?)))
            .collect();
        let reacted: Vec<String> = self
            .holes
            .iter()
            .filter(|h| h.reacted)
            .map(|h| h.row.id.clone())
            .collect();
        let (rows, faces): (Vec<MessageRow>, Vec<Option<TeamFace>>) =
            self.holes.into_iter().map(|h| (h.row, h.face)).unzip();
        let views = crate::messages::views::build_views_with(db, rows, &floors, &reacted).await?;
        let views: Vec<_> = views
            .into_iter()
            .zip(faces)
            .map(|(mut view, face)| {
                if let Some(face) = face {
                    crate::messages::views::disguise(&mut view, &face);
                }
                Arc::new(view)
            })
            .collect();
        let mut conversations = HashMap::new();
        let mut events = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            events.push(match slot {
                Slot::Written(range) => Event::Written(range),
                Slot::Message { kind, cursor, hole } => Event::Viewed(Envelope {
                    kind: kind.to_owned(),
                    data: EventData::Message {
                        message: views[hole].clone(),
                        cursor: cursor.clone(),
                    },
                    cursor,
                }),
                Slot::Conversation { id, cursor } => {
                    if !conversations.contains_key(&id) {
                        let Ok(view) = crate::chats::service::reload(t, &id, user_id).await else {
                            continue;
                        };
                        conversations.insert(id.clone(), Arc::new(view));
                    }
                    Event::Viewed(Envelope {
                        kind: kinds::CONVERSATION_UPDATED.to_owned(),
                        data: EventData::Conversation {
                            conversation: conversations[&id].clone(),
                            cursor: cursor.clone(),
                        },
                        cursor,
                    })
                }
            });
        }
        let last = self.last.unwrap_or(after);
        let (cursor, has_more) = super::service::page_close(last, self.has_more, until);
        Ok(Page::new(self.written, events, cursor, has_more))
    }
}
