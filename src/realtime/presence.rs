//! Presence: a user is online while one of their devices is connected. When the first device
//! comes or the last one goes (then `lastSeenAt` is stored), a `presence` event goes to the
//! users who share an accepted conversation with them or have their number, unless a block
//! stands between them or their privacy setting says otherwise (`contacts`: only people in
//! their address book; `nobody`: no one).
//!
//! [`Presence`] decides who is online (`announce.rs` tells the others). On one node that is whoever has a socket in this node's
//! [`super::Hub`]; cluster mode counts devices across nodes behind the same calls, so nothing
//! else changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::Hub;
use crate::cluster::Cluster;

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

    /// The server is stopping: its users' `lastSeenAt` is stored at once
    /// (`announce::stopping`).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}
