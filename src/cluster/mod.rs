//! Cluster mode: several nodes share one PostgreSQL database and one Redis.
//!
//! What crosses nodes, and how:
//!
//! - **Change-log events** (`message:*`, `conversation:updated`) need no relay: every node's
//!   dispatcher follows the shared change log in PostgreSQL and pushes to its own sockets. A
//!   node that commits changes publishes a wake-up (`changes`) so the others read at once
//!   instead of at their next 100 ms poll; without Redis they still poll, so messages keep
//!   flowing, a little later.
//! - **Ephemeral events** (`typing`, `presence`) are emitted for users: delivered to this node's
//!   sockets and published on the cluster channel; every other node delivers the same bytes to
//!   its sockets of those users (the Socket.IO adapter pattern: one broadcast channel, each
//!   node filters locally).
//! - **Session revocations** are published so every node closes the session's sockets and
//!   forgets its cached check.
//! - **Presence** counts nodes per user in Redis: `presence:<user>` is a hash of the nodes
//!   where the user has a device. Each node holds a heartbeat key (`node:<id>`, expiring after
//!   `PALAVER_NODE_TIMEOUT`, 15 s by default, renewed every third of it); when one stops beating, another node (one, by a `reap:<id>` lock)
//!   removes the dead node from every hash and announces the users who are now offline.
//! - **Rate limits** count in Redis (see `ratelimit.rs`).
//!
//! When Redis cannot be reached, calls fail fast (a one-second breaker after each failure)
//! and callers fall back to this node's view: live delivery and presence then cover this
//! node only, rate limits count per node, and `/readyz` answers 503. The connection, the
//! subscription and this node's presence entries come back by themselves.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, PubSub};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use crate::config::ClusterConfig;
use crate::db::now_ms;

/// Every Redis call gives up after this long.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);
/// After a failed call, Redis counts as down (calls fail at once) for this long.
const BREAKER: i64 = 1000;
/// Cluster messages waiting to be published, at most; more are dropped (live events are best
/// effort; sync is the truth).
const OUTBOX: usize = 10_000;

/// A message on the cluster channel.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The publishing node (it does not handle its own messages).
    n: String,
    #[serde(flatten)]
    msg: Msg,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "lowercase")]
enum Msg {
    /// Deliver an encoded Socket.IO packet to these users' sockets.
    Emit {
        users: Vec<String>,
        packet: String,
        #[serde(default, skip_serializing_if = "Devices::is_all")]
        devices: Devices,
    },
    /// These sessions were revoked.
    Close { sessions: Vec<String> },
    /// This user left this workspace.
    Leave { user: String, workspace: String },
    /// The change log grew.
    Changes,
}

pub type RedisResult<T> = Result<T, redis::RedisError>;

/// Which of a user's devices an event is for, by the session each is signed in with (a call
/// rings every device, then goes on with the one that answered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Devices {
    #[default]
    All,
    Only(String),
    Except(String),
}

impl Devices {
    pub fn is_all(&self) -> bool {
        *self == Devices::All
    }

    pub fn includes(&self, session_id: &str) -> bool {
        match self {
            Devices::All => true,
            Devices::Only(s) => s == session_id,
            Devices::Except(s) => s != session_id,
        }
    }
}

pub struct Cluster {
    node: String,
    prefix: String,
    /// A node's heartbeat key lives this long without renewal.
    node_ttl: Duration,
    client: redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    /// Until this time (ms), Redis counts as down.
    down_until: AtomicI64,
    outbox: mpsc::Sender<Msg>,
    outbox_rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    changes_elsewhere: Notify,
    /// The subscription made at start-up, before the node says it is ready; the subscriber
    /// task takes it over (messages that arrive meanwhile wait on its connection).
    first_subscription: Mutex<Option<PubSub>>,
    /// Listening on the cluster channel now: without it the node misses the others' typing,
    /// presence and revocations, so `/readyz` counts it.
    subscribed: AtomicBool,
}

impl Cluster {
    /// Prepares the client and tries to connect once; the connection is (re)made in the
    /// background if Redis is not there yet.
    pub async fn open(config: &ClusterConfig, node: &str) -> anyhow::Result<Arc<Cluster>> {
        let client = redis::Client::open(config.redis_url.expose())
            .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let cluster = Arc::new(Cluster {
            node: node.to_owned(),
            prefix: config.prefix.clone(),
            node_ttl: config.node_timeout,
            client,
            conn: RwLock::new(None),
            down_until: AtomicI64::new(0),
            outbox,
            outbox_rx: Mutex::new(Some(rx)),
            changes_elsewhere: Notify::new(),
            first_subscription: Mutex::new(None),
            subscribed: AtomicBool::new(false),
        });
        let connected = async {
            cluster.connect().await?;
            cluster.subscribe().await
        };
        match connected.await {
            Ok(pubsub) => {
                *cluster
                    .first_subscription
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(pubsub);
                cluster.subscribed.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "Redis is not reachable yet; this node runs on its own until it is");
            }
        }
        Ok(cluster)
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        k.push_str(&parts.join(":"));
        k
    }

    fn channel(&self) -> String {
        self.key(&["events"])
    }

    async fn connect(&self) -> RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CALL_TIMEOUT)
            .set_response_timeout(CALL_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let conn = tokio::time::timeout(
            CALL_TIMEOUT * 2,
            self.client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| timeout_error())??;
        *self.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one pipeline against Redis, failing fast while it is known to be down.
    pub async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> RedisResult<T> {
        if now_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(down_error());
        }
        let conn = self.conn.read().unwrap_or_else(|p| p.into_inner()).clone();
        let result = match conn {
            Some(mut c) => tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut c))
                .await
                .unwrap_or_else(|_| Err(timeout_error())),
            None => Err(down_error()),
        };
        if let Err(e) = &result {
            self.down_until.store(now_ms() + BREAKER, Ordering::Relaxed);
            metrics::counter!("cluster_redis_errors_total").increment(1);
            tracing::debug!(error = %e, "a Redis call failed");
        }
        result
    }

    /// Whether Redis answers now (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let conn = self.conn.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(mut c) = conn else { return false };
        let ping = redis::cmd("PING");
        matches!(
            tokio::time::timeout(CALL_TIMEOUT, ping.query_async::<String>(&mut c)).await,
            Ok(Ok(_))
        )
    }

    /// Whether this node listens on the cluster channel now.
    pub fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    async fn subscribe(&self) -> RedisResult<PubSub> {
        let mut pubsub = tokio::time::timeout(CALL_TIMEOUT * 2, self.client.get_async_pubsub())
            .await
            .map_err(|_| timeout_error())??;
        pubsub.subscribe(self.channel()).await?;
        Ok(pubsub)
    }

    /// Queues a message for the other nodes (dropped if the outbox is full).
    fn publish(&self, msg: Msg) {
        if self.outbox.try_send(msg).is_err() {
            metrics::counter!("cluster_messages_dropped_total").increment(1);
        }
    }

    /// Delivers `packet` to these users' sockets on the other nodes.
    pub fn emit(&self, users: Vec<String>, packet: String) {
        self.emit_to(users, Devices::All, packet);
    }

    /// Delivers `packet` to some devices of these users on the other nodes.
    pub fn emit_to(&self, users: Vec<String>, devices: Devices, packet: String) {
        self.publish(Msg::Emit {
            users,
            packet,
            devices,
        });
    }

    /// Tells the other nodes that these sessions were revoked.
    pub fn sessions_revoked(&self, sessions: Vec<String>) {
        self.publish(Msg::Close { sessions });
    }

    /// Tells the other nodes that a user left a workspace.
    pub fn left_workspace(&self, user: String, workspace: String) {
        self.publish(Msg::Leave { user, workspace });
    }

    /// Tells the other nodes that the change log grew.
    pub fn changes_committed(&self) {
        self.publish(Msg::Changes);
    }

    /// Resolves when another node said the change log grew.
    pub async fn changes_elsewhere(&self) {
        self.changes_elsewhere.notified().await;
    }

    // Presence.

    /// The user got a first device on this node; answers on how many nodes they now are.
    pub async fn join(&self, user_id: &str) -> RedisResult<i64> {
        let presence = self.key(&["presence", user_id]);
        let (nodes,): (i64,) = self
            .query(
                redis::pipe()
                    .atomic()
                    .hset(&presence, &self.node, 1)
                    .ignore()
                    .sadd(self.key(&["node-users", &self.node]), user_id)
                    .ignore()
                    .hlen(&presence),
            )
            .await?;
        Ok(nodes)
    }

    /// The user's last device on this node went; answers on how many nodes they still are.
    pub async fn leave(&self, user_id: &str) -> RedisResult<i64> {
        let presence = self.key(&["presence", user_id]);
        let (nodes,): (i64,) = self
            .query(
                redis::pipe()
                    .atomic()
                    .hdel(&presence, &self.node)
                    .ignore()
                    .srem(self.key(&["node-users", &self.node]), user_id)
                    .ignore()
                    .hlen(&presence),
            )
            .await?;
        Ok(nodes)
    }

    /// Which of `users` have a device on some node.
    pub async fn online(&self, users: &[String]) -> RedisResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.exists(self.key(&["presence", u]));
        }
        self.query(&pipe).await
    }

    /// Puts every user with a device here (back) into Redis: after Redis lost its data or
    /// another node took this one for dead.
    async fn register(&self, users: &[String]) -> RedisResult<()> {
        self.query::<()>(
            redis::pipe()
                .sadd(self.key(&["nodes"]), &self.node)
                .ignore(),
        )
        .await?;
        for chunk in users.chunks(1000) {
            let mut pipe = redis::pipe();
            for u in chunk {
                pipe.hset(self.key(&["presence", u]), &self.node, 1)
                    .ignore()
                    .sadd(self.key(&["node-users", &self.node]), u)
                    .ignore();
            }
            self.query::<()>(&pipe).await?;
        }
        Ok(())
    }

    /// Takes `node` out of these users' presence; answers those left on no node.
    async fn remove_node(&self, node: &str, users: &[String]) -> RedisResult<Vec<String>> {
        let mut gone = Vec::new();
        for chunk in users.chunks(500) {
            let mut pipe = redis::pipe();
            for u in chunk {
                let presence = self.key(&["presence", u]);
                pipe.hdel(&presence, node).ignore().hlen(&presence);
            }
            let left: Vec<i64> = self.query(&pipe).await?;
            gone.extend(
                chunk
                    .iter()
                    .zip(left)
                    .filter(|(_, n)| *n == 0)
                    .map(|(u, _)| u.clone()),
            );
        }
        Ok(gone)
    }

    /// Renews this node's heartbeat; `true` if it had expired (or never existed), so this
    /// node's presence entries must be written again.
    async fn beat(&self) -> RedisResult<bool> {
        let (previous,): (Option<String>,) = self
            .query(
                redis::pipe()
                    .cmd("SET")
                    .arg(self.key(&["node", &self.node]))
                    .arg(now_ms())
                    .arg("PX")
                    .arg(self.node_ttl.as_millis() as u64)
                    .arg("GET"),
            )
            .await?;
        Ok(previous.is_none())
    }

    /// Finds nodes whose heartbeat expired and, for each one this node gets to reap, removes
    /// it from every user's presence; answers the users who are offline now, and the nodes
    /// reaped.
    async fn reap(&self) -> RedisResult<(Vec<String>, Vec<String>)> {
        let (nodes,): (Vec<String>,) = self
            .query(redis::pipe().smembers(self.key(&["nodes"])))
            .await?;
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.node).collect();
        if others.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let mut pipe = redis::pipe();
        for n in &others {
            pipe.exists(self.key(&["node", n]));
        }
        let alive: Vec<bool> = self.query(&pipe).await?;
        let mut offline = Vec::new();
        let mut reaped = Vec::new();
        for (dead, _) in others.into_iter().zip(alive).filter(|(_, a)| !a) {
            let (got,): (Option<String>,) = self
                .query(
                    redis::pipe()
                        .cmd("SET")
                        .arg(self.key(&["reap", dead]))
                        .arg(&self.node)
                        .arg("NX")
                        .arg("EX")
                        .arg(60),
                )
                .await?;
            if got.is_none() {
                continue; // another node is reaping it
            }
            tracing::info!(node = %dead, "a node stopped beating; its devices go offline");
            let users_key = self.key(&["node-users", dead]);
            let (users,): (Vec<String>,) = self.query(redis::pipe().smembers(&users_key)).await?;
            offline.extend(self.remove_node(dead, &users).await?);
            self.query::<()>(
                redis::pipe()
                    .del(&users_key)
                    .ignore()
                    .srem(self.key(&["nodes"]), dead)
                    .ignore(),
            )
            .await?;
            reaped.push(dead.clone());
        }
        Ok((offline, reaped))
    }

    /// Removes this node from Redis (graceful stop); answers the users who had no device
    /// elsewhere.
    pub async fn deregister(&self, users: &[String]) -> Vec<String> {
        // Without Redis, every one of them counts as gone.
        let gone = self
            .remove_node(&self.node, users)
            .await
            .unwrap_or_else(|_| users.to_vec());
        let _ = self
            .query::<()>(
                redis::pipe()
                    .del(self.key(&["node-users", &self.node]))
                    .ignore()
                    .del(self.key(&["node", &self.node]))
                    .ignore()
                    .srem(self.key(&["nodes"]), &self.node)
                    .ignore(),
            )
            .await;
        gone
    }

    // Rate limits.

    /// Counts a hit in the fixed window of `name`/`key`; answers the hits so far and the
    /// window's remaining milliseconds.
    pub async fn hit(&self, name: &str, key: &str, window: Duration) -> RedisResult<(u64, i64)> {
        // Keys are emails, phone numbers, addresses: Redis sees a digest of them.
        let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes())[..16]);
        let k = self.key(&["rl", name, &digest]);
        let (count, ttl): (u64, i64) = self
            .query(
                redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&k)
                    .arg(0)
                    .arg("PX")
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .ignore()
                    .incr(&k, 1)
                    .pttl(&k),
            )
            .await?;
        Ok((count, ttl))
    }
}

fn down_error() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::IoError, "Redis is unavailable"))
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// What the cluster asks of this node: the node's side of the messages between nodes. The
/// top (`server.rs`) implements it over the device hub, the session gate and presence, so
/// this module knows none of them.
pub trait Node: Clone + Send + Sync + 'static {
    /// Sends an encoded event to this node's devices of these users.
    fn deliver(&self, users: &[String], devices: &Devices, packet: crate::engineio::Str);
    /// These sessions were revoked on another node: forget them and close their sockets here.
    fn close_sessions(&self, sessions: &[String]);
    /// A user left a workspace on another node: close their sockets acting in it here.
    fn close_workspace(&self, user: &str, workspace: &str);
    /// The users with a device connected to this node.
    fn users(&self) -> Vec<String>;
    /// A user went offline with a dead node.
    fn went_offline(&self, user: String);
    /// A node stopped beating and this node reaped it (once in the cluster).
    fn node_gone(&self, node: String);
}

/// Runs this node's cluster tasks until the server stops: the publisher, the subscriber and
/// the heartbeat (with the reaper).
pub async fn run<N: Node>(state: N, cluster: Arc<Cluster>) {
    let rx = cluster
        .outbox_rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let Some(rx) = rx else { return };
    tokio::join!(
        publisher(cluster.clone(), rx),
        subscriber(state.clone(), cluster.clone()),
        heartbeat(state, cluster),
    );
}

/// Publishes queued messages, as many as are waiting in one pipeline.
async fn publisher(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Msg>) {
    let channel = cluster.channel();
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        let mut changes = false;
        for msg in batch.drain(..) {
            // One wake-up says as much as many.
            if matches!(msg, Msg::Changes) {
                if changes {
                    continue;
                }
                changes = true;
            }
            let envelope = Envelope {
                n: cluster.node.clone(),
                msg,
            };
            let body = serde_json::to_string(&envelope).expect("serializes");
            pipe.publish(&channel, body).ignore();
        }
        if cluster.query::<()>(&pipe).await.is_err() {
            metrics::counter!("cluster_messages_dropped_total").increment(1);
        }
    }
}

/// Listens on the cluster channel, reconnecting with a growing pause while Redis is away.
async fn subscriber<N: Node>(state: N, cluster: Arc<Cluster>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let first = cluster
            .first_subscription
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let subscribed = match first {
            Some(pubsub) => Ok(pubsub),
            None => cluster.subscribe().await,
        };
        match subscribed {
            Ok(pubsub) => {
                tracing::info!("subscribed to the cluster channel");
                cluster.subscribed.store(true, Ordering::Relaxed);
                pause = Duration::from_millis(100);
                // Whatever was missed meanwhile is in the change log.
                cluster.changes_elsewhere.notify_one();
                let mut messages = pubsub.into_on_message();
                while let Some(m) = messages.next().await {
                    handle(&state, &cluster, m.get_payload_bytes());
                }
                cluster.subscribed.store(false, Ordering::Relaxed);
                tracing::warn!("lost the cluster channel; reconnecting");
            }
            Err(e) => tracing::debug!(error = %e, "cannot subscribe to the cluster channel yet"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

fn handle<N: Node>(state: &N, cluster: &Cluster, body: &[u8]) {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(body) else {
        tracing::warn!("an unreadable message on the cluster channel");
        return;
    };
    if envelope.n == cluster.node {
        return;
    }
    match envelope.msg {
        Msg::Emit {
            users,
            packet,
            devices,
        } => state.deliver(&users, &devices, packet.into()),
        Msg::Close { sessions } => state.close_sessions(&sessions),
        Msg::Leave { user, workspace } => state.close_workspace(&user, &workspace),
        Msg::Changes => cluster.changes_elsewhere.notify_one(),
    }
}

/// Renews this node's heartbeat (re-registering its users when it had lapsed), makes the
/// connection again when it was never made, and reaps dead nodes.
async fn heartbeat<N: Node>(state: N, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(cluster.node_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let connected = cluster
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !connected && cluster.connect().await.is_err() {
            continue;
        }
        // A ping outside the breaker, so that a Redis that came back is noticed.
        if !cluster.ping().await {
            continue;
        }
        cluster.down_until.store(0, Ordering::Relaxed);
        match cluster.beat().await {
            Ok(true) => {
                let users = state.users();
                if let Err(e) = cluster.register(&users).await {
                    tracing::warn!(error = %e, "registering this node's devices in Redis failed");
                    // Try again at the next beat.
                    let _ = cluster
                        .query::<()>(
                            redis::pipe()
                                .del(cluster.key(&["node", &cluster.node]))
                                .ignore(),
                        )
                        .await;
                    continue;
                }
                tracing::info!(
                    devices_of = users.len(),
                    "this node is registered in the cluster"
                );
            }
            Ok(false) => {}
            Err(_) => continue,
        }
        match cluster.reap().await {
            Ok((offline, reaped)) => {
                for user in offline {
                    state.went_offline(user);
                }
                for node in reaped {
                    state.node_gone(node);
                }
            }
            Err(e) => tracing::debug!(error = %e, "looking for dead nodes failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let e = Envelope {
            n: "a".into(),
            msg: Msg::Emit {
                users: vec!["u1".into()],
                packet: "42[\"typing\",{}]".into(),
                devices: Devices::All,
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"n":"a","k":"emit","users":["u1"],"packet":"42[\"typing\",{}]"}"#
        );
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.msg, Msg::Emit { .. }));
        let one = Envelope {
            n: "a".into(),
            msg: Msg::Emit {
                users: vec!["u1".into()],
                packet: "p".into(),
                devices: Devices::Only("s1".into()),
            },
        };
        let text = serde_json::to_string(&one).unwrap();
        assert!(text.contains(r#""devices":{"only":"s1"}"#), "{text}");
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert!(matches!(back.msg, Msg::Emit { devices: Devices::Only(s), .. } if s == "s1"));
        let c: Envelope = serde_json::from_str(r#"{"n":"b","k":"changes"}"#).unwrap();
        assert!(matches!(c.msg, Msg::Changes));
    }
}
