//! Presence: a user is online while one of their devices is connected. When the first device
//! comes or the last one goes (then `lastSeenAt` is stored), a `presence` event goes to the
//! users who share an accepted conversation with them or have their number, unless a block
//! stands between them or their privacy setting says otherwise (`contacts`: only people in
//! their address book; `nobody`: no one).
//!
//! [`Presence`] decides who is online. On one node that is whoever has a socket in this node's
//! [`super::Hub`]; cluster mode counts devices across nodes behind the same calls, so nothing
//! else changes.

use serde_json::json;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{events, protocol, Hub};
use crate::app::AppState;
use crate::cluster::Cluster;
use crate::db::{now_ms, Timestamp};
use crate::users::model::LastSeenPrivacy;

/// Which users are online.
#[derive(Default)]
pub struct Presence {
    /// Set when the server shuts down: devices going then are not announced one by one.
    stopping: AtomicBool,
    /// Cluster mode: devices are counted per node in Redis.
    cluster: Option<Arc<Cluster>>,
}

impl Presence {
    pub fn new(cluster: Option<Arc<Cluster>>) -> Presence {
        Presence {
            stopping: AtomicBool::new(false),
            cluster,
        }
    }

    /// A device of the user connected (`first_here`: their first on this node); `true` if the
    /// user came online with it.
    pub async fn device_connected(&self, hub: &Hub, user_id: &str, first_here: bool) -> bool {
        if !first_here || self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let Some(c) = &self.cluster else {
            return true;
        };
        // Without Redis, this node's view: the user may be online elsewhere already.
        let came_online = c.join(user_id).await.map_or(true, |nodes| nodes == 1);
        if !hub.is_online(user_id) {
            // The device went while this node registered it, and its leave may have run
            // first: leave again, so no stale entry stays behind.
            let _ = c.leave(user_id).await;
            return false;
        }
        came_online
    }

    /// A device of the user went (`last_here`: their last on this node); `true` if the user
    /// went offline with it.
    pub async fn device_gone(&self, user_id: &str, last_here: bool) -> bool {
        if !last_here || self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        match &self.cluster {
            Some(c) => c.leave(user_id).await.map_or(true, |nodes| nodes == 0),
            None => true,
        }
    }

    pub async fn is_online(&self, hub: &Hub, user_id: &str) -> bool {
        !self
            .online_among(hub, vec![user_id.to_owned()])
            .await
            .is_empty()
    }

    /// Those of `users` who are online (on any node).
    pub async fn online_among(&self, hub: &Hub, users: Vec<String>) -> Vec<String> {
        let (mut online, elsewhere): (Vec<String>, Vec<String>) =
            users.into_iter().partition(|u| hub.is_online(u));
        if let Some(c) = &self.cluster {
            // Without Redis, only this node's users are known to be online.
            if let Ok(found) = c.online(&elsewhere).await {
                online.extend(
                    elsewhere
                        .into_iter()
                        .zip(found)
                        .filter(|(_, on)| *on)
                        .map(|(u, _)| u),
                );
            }
        }
        online
    }

    /// The server is stopping: its users' `lastSeenAt` is stored at once (see [`stopping`]).
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

/// Shutdown: every user connected here is going; the `lastSeenAt` of those with no device on
/// another node becomes now, in one write, before the database closes. No events: on one
/// node their peers' sockets are closing too; in a cluster the devices reconnect to another
/// node within seconds.
pub async fn stopping(state: &AppState, users: &[String]) {
    state.presence.stop();
    let gone;
    let users = match &state.cluster {
        Some(c) => {
            gone = c.deregister(users).await;
            &gone[..]
        }
        None => users,
    };
    let now = now_ms();
    for chunk in users.chunks(500) {
        let mut slots = state.db.slots();
        let sql = format!(
            "UPDATE users SET last_seen_at = {} WHERE id IN ({})",
            slots.take(),
            slots.list(chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(now);
        for id in chunk {
            q = q.bind(id);
        }
        if let Err(e) = q.execute(state.db.writer()).await {
            tracing::warn!(error = %e, "storing lastSeenAt at shutdown failed");
        }
    }
}

/// Who may learn of `user_id`'s presence, per their privacy and blocks.
async fn audience(state: &AppState, user_id: &str) -> crate::error::AppResult<Vec<String>> {
    let db = &state.db;
    let Some(user) = crate::users::store::find_by_id(db, user_id).await? else {
        return Ok(Vec::new());
    };
    let privacy = LastSeenPrivacy::from_db(&user.privacy_last_seen);
    if privacy == LastSeenPrivacy::Nobody {
        return Ok(Vec::new());
    }
    let people: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT other.user_id FROM conversation_members me \
         JOIN conversation_members other ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id \
         WHERE me.user_id = $1 AND me.left_at IS NULL AND other.left_at IS NULL \
         AND me.request_state = 'accepted' AND other.request_state = 'accepted' \
         UNION SELECT a.owner_id FROM address_book a WHERE a.phone = $2 AND a.owner_id <> $1",
    )
    .bind(user_id)
    .bind(user.phone.as_deref().unwrap_or(""))
    .fetch_all(db.reader())
    .await?;
    // Only people online now can be told.
    let people = state.presence.online_among(&state.hub, people).await;
    let mut allowed = Vec::with_capacity(people.len());
    for p in people {
        if crate::users::store::blocked_either_way(db, user_id, &p).await? {
            continue;
        }
        if privacy == LastSeenPrivacy::Contacts {
            let their_phone = crate::users::store::find_by_id(db, &p)
                .await?
                .and_then(|u| u.phone);
            let known = match their_phone {
                Some(phone) => {
                    crate::users::store::has_in_address_book(db, user_id, &phone).await?
                }
                None => false,
            };
            if !known {
                continue;
            }
        }
        allowed.push(p);
    }
    Ok(allowed)
}

/// Announces that the user came online or went offline (storing `lastSeenAt` then).
pub async fn announce(state: AppState, user_id: String, online: bool) {
    let result: crate::error::AppResult<()> = async {
        let last_seen = if online {
            None
        } else {
            let now = now_ms();
            sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
                .bind(&user_id)
                .bind(now)
                .execute(state.db.writer())
                .await?;
            Some(Timestamp(now))
        };
        // Still the same state (a device may have come back meanwhile)?
        if state.presence.is_online(&state.hub, &user_id).await != online {
            return Ok(());
        }
        let packet: engineioxide::Str = protocol::event(
            events::PRESENCE,
            &json!({"userId": user_id, "online": online, "lastSeenAt": last_seen}),
        )
        .into();
        state.emit(audience(&state, &user_id).await?, packet);
        Ok(())
    }
    .await;
    match result {
        Err(e) if state.presence.stopping.load(Ordering::Relaxed) => {
            tracing::debug!(error = %e, "presence not announced: shutting down");
        }
        Err(e) => tracing::warn!(error = %e, "announcing presence failed"),
        Ok(()) => {}
    }
}
