//! The application state: the handles every handler and background task shares. It names
//! only the capabilities' handles (database, keys, limits, senders, the device hub, presence,
//! media storage, the job runner, the message send queue, the cluster link); the wiring that
//! uses them (routes, middleware, background tasks, job kinds) is in `server.rs`.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::keys::{ServerSecret, SigningKeys};
use crate::auth::SessionGate;
use crate::config::Config;
use crate::db::Db;
use crate::notify::{Mailer, SmsSender};
use crate::ratelimit::RateLimiter;

/// JSON request bodies are limited to 1 MiB (api.md).
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub keys: SigningKeys,
    pub secret: ServerSecret,
    pub limiter: RateLimiter,
    pub sessions: SessionGate,
    pub sms: SmsSender,
    pub mail: Mailer,
    pub metrics: PrometheusHandle,
    pub default_workspace_id: String,
    pub hub: crate::realtime::Hub,
    pub presence: crate::realtime::presence::Presence,
    pub media: crate::media::Media,
    /// Push notifications: the VAPID key and the outbound client.
    pub push: crate::push::Push,
    /// AI analysis: the outbound client and the providers' circuit breakers.
    pub ai: crate::ai::Ai,
    pub jobs: crate::jobs::Runner,
    /// The outbound client for requests of their own (automations' webhooks).
    pub http: crate::outbound::Outbound,
    /// The queue of batched message sends; its task ends with the last handle.
    pub sends: crate::messages::pipeline::Pipeline,
    /// This process's id among the nodes (a fresh one every start).
    pub node_id: String,
    /// Set in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the database (migrating it), loads or generates keys, builds the senders.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        crate::config::create_private_dir(&config.data_dir)?;
        if let Ok(meta) = std::fs::metadata(&config.data_dir) {
            if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
                tracing::warn!(dir = %config.data_dir.display(),
                    "the data dir is open to other users; chmod 700 it");
            }
        }
        let db = Db::connect(config.database_url.expose(), config.db_max_connections).await?;
        db.migrate().await?;
        let default_workspace_id = crate::workspaces::store::ensure_default(&db).await?;
        let keys = SigningKeys::load_or_generate(&config)?;
        let secret = ServerSecret::load_or_generate(&config)?;
        let http = crate::outbound::Outbound::new(
            Arc::new(crate::outbound::Allow::parse(&config.outbound_allow)?),
            Duration::from_secs(10),
        )
        .context("building the HTTP client")?;
        if config.otp_dev_code.is_some() {
            tracing::warn!("PALAVER_OTP_DEV_CODE is set: every phone accepts the fixed code; never do this in production");
        }
        let media = crate::media::Media::open(&config).await?;
        let node_id = crate::db::new_id();
        let cluster = match &config.cluster {
            Some(c) => Some(crate::cluster::Cluster::open(c, &node_id).await?),
            None => None,
        };
        let vapid_seed: [u8; 32] = hex::decode(secret.mac(&["palaver", "vapid-v1"]))
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("deriving the VAPID key")?;
        let push = crate::push::Push {
            vapid: crate::push::vapid::Vapid::new(
                config.push.vapid_private_key.as_ref().map(|s| s.expose()),
                vapid_seed,
                config.push.vapid_subject.clone(),
            )?,
            http: http.clone(),
        };
        let ai = crate::ai::Ai {
            http: http.clone(),
            breakers: Default::default(),
        };
        let sms = SmsSender::new(config.sms.clone(), http.clone());
        let mail = Mailer::new(&config.mail, config.mail_from.clone(), http.clone())?;
        let sends = crate::messages::pipeline::Pipeline::start(db.clone());
        Ok(AppState(Arc::new(Inner {
            limiter: RateLimiter::new(config.rate_limits, cluster.clone()),
            config,
            db,
            keys,
            secret,
            sessions: SessionGate::default(),
            sms,
            mail,
            metrics: crate::telemetry::metrics_handle(),
            default_workspace_id,
            hub: Default::default(),
            presence: crate::realtime::presence::Presence::new(cluster.clone()),
            media,
            push,
            ai,
            http,
            jobs: Default::default(),
            sends,
            node_id,
            cluster,
        })))
    }
}

impl crate::jobs::Host for AppState {
    fn db(&self) -> &Db {
        &self.db
    }
    fn runner(&self) -> &crate::jobs::Runner {
        &self.jobs
    }
}

impl AppState {
    /// After sessions were revoked here: their access tokens stop working at once and their
    /// sockets are closed.
    pub fn sessions_revoked<S: AsRef<str>>(&self, session_ids: &[S]) {
        self.sessions.forget(session_ids);
        self.hub.close_sessions(session_ids);
        if let Some(c) = &self.cluster {
            c.sessions_revoked(session_ids.iter().map(|s| s.as_ref().to_owned()).collect());
        }
    }

    /// `user_id` is no longer a member of `workspace_id`: their devices acting in it, on every
    /// node, are told (`session:ended`) and disconnected.
    pub fn left_workspace(&self, user_id: &str, workspace_id: &str) {
        self.hub.close_workspace(user_id, workspace_id);
        if let Some(c) = &self.cluster {
            c.left_workspace(user_id.to_owned(), workspace_id.to_owned());
        }
    }

    /// Sends one encoded event to some devices of a user, on every node.
    pub fn emit_to(
        &self,
        user: &str,
        devices: crate::cluster::Devices,
        packet: crate::engineio::Str,
    ) {
        self.hub.send_to(user, &packet, &devices);
        if let Some(c) = &self.cluster {
            c.emit_to(vec![user.to_owned()], devices, packet.to_string());
        }
    }

    /// Sends an event to every device of these users, on every node (encoded once).
    pub fn emit_event(&self, users: Vec<String>, name: &str, data: &impl serde::Serialize) {
        if !users.is_empty() {
            self.emit(users, crate::realtime::protocol::event(name, data));
        }
    }

    /// Those of `users` who are online now, on any node.
    pub async fn online_among(&self, users: Vec<String>) -> Vec<String> {
        self.presence.online_among(&self.hub, users).await
    }

    /// Sends one encoded event to every device of these users, on every node.
    pub fn emit(&self, users: Vec<String>, packet: crate::engineio::Str) {
        for u in &users {
            self.hub.send(u, &packet, None);
        }
        if let Some(c) = &self.cluster {
            if !users.is_empty() {
                c.emit(users, packet.to_string());
            }
        }
    }
}
