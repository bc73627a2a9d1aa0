//! Sync pages read ahead for a device that is catching up. When a `sync:request` is answered
//! with `hasMore`, the next page is read at once, while the answer travels and the device takes
//! it in; and once that one is read and the device has taken the one before it, the page after
//! it. So a device paging through a long catch-up finds each page read when it asks, and the
//! reads go on while a device slower than them takes in a page. (The first page of a
//! catch-up has its next read beside it, from where it ends: see `handlers::sync`.)
//!
//! A page read a moment early is as true as one read when asked: anything written in between
//! has a later position and comes on a later page. A read-ahead answers only the cursor and
//! limit it was read for; any other request drops it (and the one behind it).
//!
//! Bounds: at most two pages per device (the one asked next and the one after it); each
//! waits at most [`KEPT`] to be asked for, then is dropped with those behind it; and the
//! server as a whole holds at most [`ROOM_EVENTS`] events read ahead — when there is no room a
//! device's next page is read when it asks, as without read-ahead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::changes::Position;
use crate::db::{Db, Tenant};
use crate::error::AppResult;
use crate::sync::service::Page;

/// How long a page read ahead waits to be asked for before it is dropped (a device that
/// stops paging holds no page).
const KEPT: Duration = Duration::from_secs(5);

/// Events the server holds read ahead at most, for all devices (~600 bytes each as JSON: about
/// 30 MB; 50 devices catching up at once with 500-event pages).
const ROOM_EVENTS: usize = 50_000;

/// The server's room for pages read ahead, in events (a page takes its limit's worth), and
/// how long a page waits to be asked for.
#[derive(Clone)]
pub struct Room {
    events: Arc<Semaphore>,
    kept: Duration,
}

impl Default for Room {
    fn default() -> Self {
        Room::new(ROOM_EVENTS, KEPT)
    }
}

impl Room {
    fn new(events: usize, kept: Duration) -> Self {
        Room {
            events: Arc::new(Semaphore::new(events)),
            kept,
        }
    }
}

/// Whose pages: the device's user in its workspace.
#[derive(Clone)]
pub struct Reader {
    pub db: Db,
    pub user_id: String,
    pub workspace_id: String,
}

/// Told to a page's read: that the page before it was taken (so this one is next and may
/// start the one after it), and that it is itself asked for.
#[derive(Default)]
struct Signals {
    next_in_line: Notify,
    asked: Notify,
}

/// A page being read, or read and waiting to be asked for.
pub struct ReadAhead {
    cursor: String,
    limit: i64,
    signals: Arc<Signals>,
    task: JoinHandle<Option<Ahead>>,
}

/// What a read-ahead yields when asked: its page, and the read of the page after it.
struct Ahead {
    page: AppResult<Page>,
    next: Option<ReadAhead>,
}

impl ReadAhead {
    /// Starts reading the page at `cursor` for the device, next in line (it asks for it
    /// next); `None` if the server has no room for it or the cursor is not one.
    pub fn start(room: &Room, reader: &Reader, cursor: &str, limit: i64) -> Option<Self> {
        let ahead = Self::spawn(room, reader.clone(), cursor, limit)?;
        ahead.signals.next_in_line.notify_one();
        Some(ahead)
    }

    /// Starts reading the page at `cursor`; once read, and once next in line, it starts the
    /// page after it (a device has at most two pages read ahead).
    fn spawn(room: &Room, reader: Reader, cursor: &str, limit: i64) -> Option<Self> {
        let after = crate::http::pagination::decode_cursor::<Position>(cursor).ok()?;
        let permit = room
            .events
            .clone()
            .try_acquire_many_owned(limit as u32)
            .ok()?;
        let signals = Arc::<Signals>::default();
        let task = tokio::spawn(read(
            room.clone(),
            reader,
            after,
            limit,
            signals.clone(),
            permit,
        ));
        Some(ReadAhead {
            cursor: cursor.to_owned(),
            limit,
            signals,
            task,
        })
    }

    /// Whether this is the page a request for `cursor` and `limit` asks for.
    pub fn answers(&self, cursor: &str, limit: i64) -> bool {
        self.cursor == cursor && self.limit == limit
    }

    /// The page read ahead, and the read of the one after it (now next in line); `None` if
    /// it was dropped or its read failed (the request reads it again, and answers that read's
    /// error if it fails too).
    pub async fn take(mut self) -> Option<(Page, Option<ReadAhead>)> {
        self.signals.asked.notify_one();
        let Ahead { page, next } = (&mut self.task).await.ok()??;
        let page = page.ok()?;
        if let Some(next) = &next {
            next.signals.next_in_line.notify_one();
        }
        Some((page, next))
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // (And so the read of the page after it, which the task owns.)
        self.task.abort();
    }
}

/// A read-ahead's task: the page, then (when next in line) the start of the one after it,
/// then waiting to be asked for. The permit is the page's room, given back when the task ends.
async fn read(
    room: Room,
    reader: Reader,
    after: Position,
    limit: i64,
    signals: Arc<Signals>,
    _permit: OwnedSemaphorePermit,
) -> Option<Ahead> {
    let t = Tenant::new(&reader.db, &reader.workspace_id);
    let page = crate::sync::service::page(t, &reader.user_id, Some(after), limit).await;
    let mut next = None;
    if let Some(cursor) = page.as_ref().ok().and_then(Page::next_cursor) {
        tokio::time::timeout(room.kept, signals.next_in_line.notified())
            .await
            .ok()?;
        next = ReadAhead::spawn(&room, reader, cursor, limit);
    }
    tokio::time::timeout(room.kept, signals.asked.notified())
        .await
        .ok()?;
    Some(Ahead { page, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reader() -> (tempfile::TempDir, Reader) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let reader = Reader {
            db,
            user_id: "someone".into(),
            workspace_id: "somewhere".into(),
        };
        (dir, reader)
    }

    const FROM: &str = "WzAsMF0"; // [0,0]

    /// A page asked for in time is answered; the server's room bounds what is read ahead,
    /// and a page taken gives its room back.
    #[tokio::test]
    async fn pages_read_ahead_take_room_until_taken() {
        let (_dir, reader) = reader().await;
        let room = Room::new(500, Duration::from_secs(60));
        let ahead = ReadAhead::start(&room, &reader, FROM, 500).expect("room for one page");
        assert!(ahead.answers(FROM, 500) && !ahead.answers(FROM, 499));
        assert!(
            ReadAhead::start(&room, &reader, FROM, 1).is_none(),
            "no room for a second"
        );
        let (page, next) = ahead.take().await.expect("the page");
        assert!(
            page.next_cursor().is_none() && next.is_none(),
            "nothing more"
        );
        assert_eq!(room.events.available_permits(), 500);
    }

    /// A page nobody asks for is dropped after the room's wait, and its room given back.
    #[tokio::test]
    async fn a_page_not_asked_for_is_dropped() {
        let (_dir, reader) = reader().await;
        let kept = Duration::from_millis(50);
        let room = Room::new(500, kept);
        let ahead = ReadAhead::start(&room, &reader, FROM, 500).expect("room");
        // (Waiting out the wait is the point here: there is no event to await instead.)
        tokio::time::sleep(kept * 4).await;
        assert_eq!(room.events.available_permits(), 500, "room given back");
        assert!(ahead.take().await.is_none(), "dropped, not answered");
    }
}
