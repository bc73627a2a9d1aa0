//! Configuration: built-in defaults, then `palaver.toml`, then environment variables, then
//! command-line flags (each layer wins over the one before).
//!
//! [`Settings`] is both the clap argument set (so `palaver serve --help` lists every setting with
//! its environment variable) and the TOML file's schema (keys are the flag names in snake_case).
//! [`Config::build`] applies the defaults and checks the values. Secrets may also be given as
//! `NAME_FILE` environment variables that point to a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// Every setting. `None` means "not given at this layer".
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP + Socket.IO listen address [default: 127.0.0.1:3000]
    #[arg(long, env = "PALAVER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory: SQLite file, media, generated keys [default: ./palaver-data]
    #[arg(long, env = "PALAVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite:...` or `postgres://...` [default: SQLite file `palaver.db` in the data dir]
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database connection pool size [default: 16]
    #[arg(long, env = "PALAVER_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Redis URL (`redis://[:password@]host:port[/db]`); setting it selects cluster mode, which
    /// needs a PostgreSQL DATABASE_URL and the keys given by configuration
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel, so clusters can share a Redis [default: palaver:]
    #[arg(long, env = "PALAVER_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Cluster mode: seconds without a heartbeat after which a node counts as dead and its
    /// devices go offline (it beats every third of this) [default: 15]
    #[arg(long, env = "PALAVER_NODE_TIMEOUT")]
    pub node_timeout: Option<u64>,
    /// Public base URL, for links in mails and media URLs [default: http://<listen>]
    #[arg(long, env = "PALAVER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Who may sign up: open, invite or closed [default: open]
    #[arg(long, env = "PALAVER_SIGNUP")]
    pub signup: Option<SignupMode>,
    /// Who may create workspaces: admin (platform admins) or open [default: admin]
    #[arg(long, env = "PALAVER_WORKSPACES")]
    pub workspaces: Option<WorkspaceCreation>,
    /// SMS sender for one-time codes: log, webhook or twilio [default: log]
    #[arg(long, env = "PALAVER_SMS_SENDER")]
    pub sms_sender: Option<SmsSenderKind>,
    /// The webhook SMS sender POSTs {"phone","code","expiresIn"} here
    #[arg(long, env = "PALAVER_SMS_WEBHOOK_URL")]
    pub sms_webhook_url: Option<String>,
    /// Twilio account SID (twilio SMS sender)
    #[arg(long, env = "PALAVER_TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token (twilio SMS sender; also PALAVER_TWILIO_AUTH_TOKEN_FILE)
    #[arg(long, env = "PALAVER_TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<String>,
    /// Twilio sender number or messaging service (twilio SMS sender)
    #[arg(long, env = "PALAVER_TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// Twilio API base URL [default: https://api.twilio.com]
    #[arg(long, env = "PALAVER_TWILIO_API_URL")]
    pub twilio_api_url: Option<String>,
    /// Mailer for password-reset links: log, smtp or webhook [default: log]
    #[arg(long, env = "PALAVER_MAIL_SENDER")]
    pub mail_sender: Option<MailSenderKind>,
    /// SMTP URL for the smtp mailer: smtps://user:pass@host (TLS), smtp://user:pass@host:587?tls=required (STARTTLS) or smtp://host:25 (plain) (also PALAVER_SMTP_URL_FILE)
    #[arg(long, env = "PALAVER_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The webhook mailer POSTs {"to","subject","text","link"} here
    #[arg(long, env = "PALAVER_MAIL_WEBHOOK_URL")]
    pub mail_webhook_url: Option<String>,
    /// From address of mails [default: Palaver <no-reply@localhost>]
    #[arg(long, env = "PALAVER_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Comma-separated allowed CORS origins [default: none]
    #[arg(long, env = "PALAVER_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// Per-IP and per-account request rate limits: on or off [default: on]
    #[arg(long, env = "PALAVER_RATE_LIMITS")]
    pub rate_limits: Option<OnOff>,
    /// Take the client address from X-Forwarded-For (only behind a trusted proxy) [default: off]
    #[arg(long, env = "PALAVER_TRUST_PROXY")]
    pub trust_proxy: Option<OnOff>,
    /// Log filter (tracing EnvFilter syntax) [default: info]
    #[arg(long, env = "PALAVER_LOG")]
    pub log: Option<String>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "PALAVER_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Access-token lifetime in seconds [default: 900]
    #[arg(long, env = "PALAVER_ACCESS_TOKEN_TTL")]
    pub access_token_ttl: Option<u64>,
    /// Refresh-token lifetime in seconds [default: 2592000 (30 days)]
    #[arg(long, env = "PALAVER_REFRESH_TOKEN_TTL")]
    pub refresh_token_ttl: Option<u64>,
    /// Ed25519 signing key, PKCS#8 PEM (also PALAVER_JWT_PRIVATE_KEY_FILE) [default: generated into the data dir]
    #[arg(long, env = "PALAVER_JWT_PRIVATE_KEY", hide_env_values = true)]
    pub jwt_private_key: Option<String>,
    /// 32-byte server secret, 64 hex digits, for code hashing and encryption at rest (also PALAVER_SECRET_KEY_FILE) [default: generated into the data dir]
    #[arg(long, env = "PALAVER_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Development only: a fixed one-time code accepted for every phone. Never set in production.
    #[arg(long, env = "PALAVER_OTP_DEV_CODE", hide_env_values = true)]
    pub otp_dev_code: Option<String>,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT [default: 10]
    #[arg(long, env = "PALAVER_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Where media is stored: fs (a directory) or s3 (any S3-compatible service) [default: fs]
    #[arg(long, env = "PALAVER_MEDIA_STORE")]
    pub media_store: Option<MediaStoreKind>,
    /// Directory of the fs media store [default: media/ in the data dir]
    #[arg(long, env = "PALAVER_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
    /// S3 endpoint URL, e.g. http://127.0.0.1:9000 for MinIO [default: AWS]
    #[arg(long, env = "PALAVER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket (s3 media store)
    #[arg(long, env = "PALAVER_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 region [default: us-east-1]
    #[arg(long, env = "PALAVER_S3_REGION")]
    pub s3_region: Option<String>,
    /// S3 access key id
    #[arg(long, env = "PALAVER_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (also PALAVER_S3_SECRET_ACCESS_KEY_FILE)
    #[arg(long, env = "PALAVER_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Path-style S3 requests (endpoint/bucket/key), as MinIO and most self-hosted services want [default: on]
    #[arg(long, env = "PALAVER_S3_PATH_STYLE")]
    pub s3_path_style: Option<OnOff>,
    /// Largest image upload in MiB [default: 16]
    #[arg(long, env = "PALAVER_MEDIA_MAX_IMAGE_MIB")]
    pub media_max_image_mib: Option<u64>,
    /// Largest audio or voice upload in MiB [default: 16]
    #[arg(long, env = "PALAVER_MEDIA_MAX_AUDIO_MIB")]
    pub media_max_audio_mib: Option<u64>,
    /// Largest video upload in MiB [default: 64]
    #[arg(long, env = "PALAVER_MEDIA_MAX_VIDEO_MIB")]
    pub media_max_video_mib: Option<u64>,
    /// Largest document or other file upload in MiB [default: 100]
    #[arg(long, env = "PALAVER_MEDIA_MAX_FILE_MIB")]
    pub media_max_file_mib: Option<u64>,
    /// Seconds after which an upload no message (or avatar) references is deleted [default: 86400]
    #[arg(long, env = "PALAVER_MEDIA_UNREFERENCED_TTL")]
    pub media_unreferenced_ttl: Option<u64>,
    /// The tesseract program for OCR of images, or "off" [default: tesseract, when installed]
    #[arg(long, env = "PALAVER_TESSERACT")]
    pub tesseract: Option<String>,
    /// Tesseract language(s), e.g. eng or eng+deu [default: eng]
    #[arg(long, env = "PALAVER_TESSERACT_LANG")]
    pub tesseract_lang: Option<String>,
    /// The pdftoppm program (poppler-utils) for PDF thumbnails, or "off" [default: pdftoppm, when installed]
    #[arg(long, env = "PALAVER_PDFTOPPM")]
    pub pdftoppm: Option<String>,
    /// Base URL of an OpenAI-compatible API for voice-note transcription, e.g. https://api.openai.com/v1 [default: none]
    #[arg(long, env = "PALAVER_TRANSCRIPTION_URL")]
    pub transcription_url: Option<String>,
    /// API key of the transcription API (also PALAVER_TRANSCRIPTION_API_KEY_FILE)
    #[arg(long, env = "PALAVER_TRANSCRIPTION_API_KEY", hide_env_values = true)]
    pub transcription_api_key: Option<String>,
    /// The palaver program that reads PDFs (page count, text) in a process of its own, under memory and time limits, as `PROGRAM pdf-info FILE` [default: this program]
    #[arg(long, env = "PALAVER_PDF_READER")]
    pub pdf_reader: Option<String>,
    /// Base URL of the server's default OpenAI-compatible chat-completions API for AI analysis, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (Ollama); a workspace's own active key takes precedence [default: none, the offline analyzer]
    #[arg(long, env = "PALAVER_AI_URL")]
    pub ai_url: Option<String>,
    /// API key of the default AI provider (also PALAVER_AI_API_KEY_FILE) [default: none, no Authorization header]
    #[arg(long, env = "PALAVER_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<String>,
    /// Model of the default AI provider, and of workspace keys that name none [default: gpt-4o-mini]
    #[arg(long, env = "PALAVER_AI_MODEL")]
    pub ai_model: Option<String>,
    /// Seconds an AI provider call may take, 1 to 600 [default: 60]
    #[arg(long, env = "PALAVER_AI_TIMEOUT")]
    pub ai_timeout: Option<u64>,
    /// Most completion tokens an AI provider call asks for, 64 to 32768 [default: 1024]
    #[arg(long, env = "PALAVER_AI_MAX_TOKENS")]
    pub ai_max_tokens: Option<u32>,
    /// Tokens of conversation an AI provider call sends at most (newest messages first), 256 to 1000000 [default: 8000]
    #[arg(long, env = "PALAVER_AI_CONTEXT_TOKENS")]
    pub ai_context_tokens: Option<u32>,
    /// Seconds a conversation stays quiet before it is analysed, for workspaces that set no idleAfterSeconds, 1 to 604800 [default: 300]
    #[arg(long, env = "PALAVER_AI_IDLE_AFTER")]
    pub ai_idle_after: Option<u64>,
    /// Seconds between two looks for conversations gone quiet, 1 to 60 [default: 10]
    #[arg(long, env = "PALAVER_AI_IDLE_SCAN")]
    pub ai_idle_scan: Option<u64>,
    /// Transcription model [default: whisper-1]
    #[arg(long, env = "PALAVER_TRANSCRIPTION_MODEL")]
    pub transcription_model: Option<String>,
    /// Background jobs (webhooks, sends, media processing…) this node runs at once; 0 runs none here; CPU-heavy media work is further limited to one per core [default: 16]
    #[arg(long, env = "PALAVER_JOB_WORKERS")]
    pub job_workers: Option<usize>,
    /// Seconds between two looks for automations' timed triggers (no agent reply, no customer reply) whose wait is over, 1 to 300 [default: 15]
    #[arg(long, env = "PALAVER_AUTOMATION_SCAN")]
    pub automation_scan: Option<u64>,
    /// Check X-Hub-Signature-256 on WhatsApp webhooks: on, or off for local testing only [default: on]
    #[arg(long, env = "PALAVER_WHATSAPP_VERIFY_SIGNATURES")]
    pub whatsapp_verify_signatures: Option<OnOff>,
    /// An app secret accepted for every channel's webhooks, besides each channel's own (also PALAVER_WHATSAPP_APP_SECRET_FILE)
    #[arg(long, env = "PALAVER_WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub whatsapp_app_secret: Option<String>,
    /// A verify token accepted for the webhook handshake, besides each channel's own (also PALAVER_WHATSAPP_VERIFY_TOKEN_FILE)
    #[arg(long, env = "PALAVER_WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub whatsapp_verify_token: Option<String>,
    /// Comma-separated hosts inbound media may be downloaded from, besides each channel's Graph host [default: lookaside.fbsbx.com]
    #[arg(long, env = "PALAVER_WHATSAPP_MEDIA_HOSTS")]
    pub whatsapp_media_hosts: Option<String>,
    /// Comma-separated hosts, addresses or CIDR ranges that outbound requests may reach although private, loopback or link-local, e.g. 127.0.0.1,10.0.0.0/8 [default: none]
    #[arg(long, env = "PALAVER_OUTBOUND_ALLOW")]
    pub outbound_allow: Option<String>,
    /// A bearer token that /metrics requires (also PALAVER_METRICS_TOKEN_FILE) [default: none, /metrics is open]
    #[arg(long, env = "PALAVER_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Comma-separated STUN server URLs offered to calls, e.g. stun:stun.example.com:3478 [default: none]
    #[arg(long, env = "PALAVER_STUN_URLS")]
    pub stun_urls: Option<String>,
    /// Comma-separated TURN server URLs offered to calls, e.g. turn:turn.example.com:3478 [default: none]
    #[arg(long, env = "PALAVER_TURN_URLS")]
    pub turn_urls: Option<String>,
    /// The TURN server's shared secret for short-lived credentials (coturn's static-auth-secret; also PALAVER_TURN_SECRET_FILE)
    #[arg(long, env = "PALAVER_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of TURN credentials in seconds, 60 to 604800 [default: 86400]
    #[arg(long, env = "PALAVER_TURN_TTL")]
    pub turn_ttl: Option<u64>,
    /// Seconds a call rings before it ends as missed, 5 to 300 [default: 30]
    #[arg(long, env = "PALAVER_CALL_RING_TIMEOUT")]
    pub call_ring_timeout: Option<u64>,
    /// The VAPID private key for Web Push: the P-256 scalar, base64url, as `web-push generate-vapid-keys` prints it (also PALAVER_VAPID_PRIVATE_KEY_FILE) [default: derived from the server secret]
    #[arg(long, env = "PALAVER_VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<String>,
    /// The contact push services see in the VAPID token, a mailto: or https: URI [default: the public URL if https, else mailto: the mail sender]
    #[arg(long, env = "PALAVER_VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,
}

macro_rules! merge_fields {
    ($a:ident, $b:ident, $($f:ident),* $(,)?) => { Settings { $($f: $a.$f.or($b.$f)),* } };
}

impl Settings {
    /// Field-wise: `self` wins where it has a value.
    pub fn or(self, fallback: Settings) -> Settings {
        let (a, b) = (self, fallback);
        merge_fields!(
            a,
            b,
            listen,
            data_dir,
            database_url,
            db_max_connections,
            redis_url,
            redis_prefix,
            node_timeout,
            public_url,
            signup,
            workspaces,
            sms_sender,
            sms_webhook_url,
            twilio_account_sid,
            twilio_auth_token,
            twilio_from,
            twilio_api_url,
            mail_sender,
            smtp_url,
            mail_webhook_url,
            mail_from,
            cors_origins,
            rate_limits,
            trust_proxy,
            log,
            log_format,
            access_token_ttl,
            refresh_token_ttl,
            jwt_private_key,
            secret_key,
            otp_dev_code,
            shutdown_timeout,
            media_store,
            media_dir,
            s3_endpoint,
            s3_bucket,
            s3_region,
            s3_access_key_id,
            s3_secret_access_key,
            s3_path_style,
            media_max_image_mib,
            media_max_audio_mib,
            media_max_video_mib,
            media_max_file_mib,
            media_unreferenced_ttl,
            tesseract,
            tesseract_lang,
            pdftoppm,
            transcription_url,
            transcription_api_key,
            transcription_model,
            ai_url,
            ai_api_key,
            ai_model,
            ai_timeout,
            ai_max_tokens,
            ai_context_tokens,
            ai_idle_after,
            ai_idle_scan,
            pdf_reader,
            job_workers,
            automation_scan,
            whatsapp_verify_signatures,
            whatsapp_app_secret,
            whatsapp_verify_token,
            whatsapp_media_hosts,
            outbound_allow,
            metrics_token,
            stun_urls,
            turn_urls,
            turn_secret,
            turn_ttl,
            call_ring_timeout,
            vapid_private_key,
            vapid_subject
        )
    }

    /// Reads a `palaver.toml`-style file.
    pub fn from_file(path: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SignupMode {
    Open,
    Invite,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceCreation {
    Admin,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SmsSenderKind {
    Log,
    Webhook,
    Twilio,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MailSenderKind {
    Log,
    Smtp,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MediaStoreKind {
    Fs,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A secret string whose `Debug` never prints it.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub enum SmsConfig {
    Log,
    Webhook {
        url: String,
    },
    Twilio {
        api_url: String,
        account_sid: String,
        auth_token: Secret,
        from: String,
    },
}

#[derive(Debug, Clone)]
pub enum MailConfig {
    Log,
    Webhook { url: String },
    Smtp { url: Secret },
}

/// Where media bytes live.
#[derive(Debug, Clone)]
pub enum MediaStoreConfig {
    Fs {
        dir: PathBuf,
    },
    S3 {
        endpoint: Option<String>,
        bucket: String,
        region: String,
        access_key_id: Option<String>,
        secret_access_key: Option<Secret>,
        path_style: bool,
    },
}

/// Per-class upload limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct MediaLimits {
    pub image: u64,
    pub audio: u64,
    pub video: u64,
    pub file: u64,
}

/// An OpenAI-compatible transcription API.
#[derive(Debug, Clone)]
pub struct TranscriptionConfig {
    pub url: String,
    pub api_key: Option<Secret>,
    pub model: String,
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub store: MediaStoreConfig,
    pub limits: MediaLimits,
    pub unreferenced_ttl: Duration,
    /// Program names; `None` when turned off.
    pub tesseract: Option<String>,
    pub tesseract_lang: String,
    pub pdftoppm: Option<String>,
    pub transcription: Option<TranscriptionConfig>,
    /// The program run as `pdf-info FILE` to read PDFs apart from the server.
    pub pdf_reader: PathBuf,
}

/// The checked, defaulted configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Secret,
    pub db_max_connections: u32,
    pub public_url: String,
    pub signup: SignupMode,
    pub workspaces: WorkspaceCreation,
    pub sms: SmsConfig,
    pub mail: MailConfig,
    pub mail_from: String,
    pub cors_origins: Vec<String>,
    pub rate_limits: bool,
    pub trust_proxy: bool,
    pub log: String,
    pub log_format: LogFormat,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub jwt_private_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub otp_dev_code: Option<Secret>,
    pub shutdown_timeout: Duration,
    pub media: MediaConfig,
    pub job_workers: usize,
    /// How often the automations' timed triggers are looked for.
    pub automation_scan: Duration,
    pub whatsapp: WhatsAppConfig,
    /// Set in cluster mode.
    pub cluster: Option<ClusterConfig>,
    /// What outbound requests may reach although not public (`PALAVER_OUTBOUND_ALLOW`).
    pub outbound_allow: Vec<String>,
    /// The bearer token `/metrics` requires, if any.
    pub metrics_token: Option<Secret>,
    pub calls: CallsConfig,
    pub push: PushConfig,
    pub ai: AiConfig,
}

/// AI analysis: the server's default provider (none: the offline analyzer) and the limits of
/// every provider call.
#[derive(Clone, Debug)]
pub struct AiConfig {
    pub provider: Option<AiProviderConfig>,
    /// The model of workspace keys that name none.
    pub model: String,
    pub timeout: Duration,
    pub max_tokens: u32,
    pub context_tokens: u32,
    pub idle_after: Duration,
    pub idle_scan: Duration,
}

/// An OpenAI-compatible chat-completions API.
#[derive(Clone, Debug)]
pub struct AiProviderConfig {
    /// Without a trailing slash; `/chat/completions` is appended.
    pub url: String,
    pub api_key: Option<Secret>,
}

/// Web Push: the VAPID key (none: derived from the server secret) and contact.
#[derive(Clone, Debug)]
pub struct PushConfig {
    pub vapid_private_key: Option<Secret>,
    pub vapid_subject: String,
}

/// What calls are offered: STUN and TURN servers, and the TURN REST shared secret.
#[derive(Clone, Debug)]
pub struct CallsConfig {
    pub stun_urls: Vec<String>,
    pub turn_urls: Vec<String>,
    pub turn_secret: Option<Secret>,
    pub turn_ttl: Duration,
    /// How long an unanswered call rings.
    pub ring_timeout: Duration,
}

/// Cluster mode's settings.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: Secret,
    pub prefix: String,
    pub node_timeout: Duration,
}

/// The WhatsApp bridge's server-wide settings (channels hold their own).
#[derive(Debug, Clone)]
pub struct WhatsAppConfig {
    pub verify_signatures: bool,
    pub app_secret: Option<Secret>,
    pub verify_token: Option<Secret>,
    pub media_hosts: Vec<String>,
}

/// A comma-separated list, trimmed, without empty items.
fn list(value: &Option<String>) -> Vec<String> {
    value
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

fn calls_config(
    stun_urls: &Option<String>,
    turn_urls: &Option<String>,
    turn_secret: Option<String>,
    turn_ttl: Option<u64>,
    ring_timeout: Option<u64>,
) -> anyhow::Result<CallsConfig> {
    let stun_urls = list(stun_urls);
    let turn_urls = list(turn_urls);
    if let Some(bad) = stun_urls
        .iter()
        .find(|u| !u.starts_with("stun:") && !u.starts_with("stuns:"))
    {
        bail!("PALAVER_STUN_URLS: {bad} is not a stun: or stuns: URL");
    }
    if let Some(bad) = turn_urls
        .iter()
        .find(|u| !u.starts_with("turn:") && !u.starts_with("turns:"))
    {
        bail!("PALAVER_TURN_URLS: {bad} is not a turn: or turns: URL");
    }
    let turn_secret = secret_or_file(turn_secret, "PALAVER_TURN_SECRET")?;
    if !turn_urls.is_empty() && turn_secret.is_none() {
        bail!("PALAVER_TURN_URLS needs PALAVER_TURN_SECRET (the TURN server's shared secret)");
    }
    let ttl = turn_ttl.unwrap_or(86_400);
    if !(60..=604_800).contains(&ttl) {
        bail!("PALAVER_TURN_TTL must be between 60 and 604800 seconds");
    }
    let ring = ring_timeout.unwrap_or(30);
    if !(5..=300).contains(&ring) {
        bail!("PALAVER_CALL_RING_TIMEOUT must be between 5 and 300 seconds");
    }
    Ok(CallsConfig {
        stun_urls,
        turn_urls,
        turn_secret,
        turn_ttl: Duration::from_secs(ttl),
        ring_timeout: Duration::from_secs(ring),
    })
}

fn push_config(
    key: Option<String>,
    subject: Option<String>,
    public_url: &str,
    mail_from: &str,
) -> anyhow::Result<PushConfig> {
    let vapid_private_key = secret_or_file(key, "PALAVER_VAPID_PRIVATE_KEY")?;
    let vapid_subject = match subject {
        Some(s) if s.starts_with("mailto:") || s.starts_with("https://") => s,
        Some(_) => bail!("PALAVER_VAPID_SUBJECT must be a mailto: or https: URI"),
        None if public_url.starts_with("https://") => public_url.to_owned(),
        None => {
            let address = match (mail_from.find('<'), mail_from.rfind('>')) {
                (Some(a), Some(b)) if a < b => &mail_from[a + 1..b],
                _ => mail_from.trim(),
            };
            format!("mailto:{address}")
        }
    };
    Ok(PushConfig {
        vapid_private_key,
        vapid_subject,
    })
}

fn ai_config(s: &Settings) -> anyhow::Result<AiConfig> {
    let within =
        |v: Option<u64>, default: u64, range: std::ops::RangeInclusive<u64>, name: &str| {
            let v = v.unwrap_or(default);
            if !range.contains(&v) {
                bail!("{name} must be {} to {}", range.start(), range.end());
            }
            Ok(v)
        };
    let provider = match &s.ai_url {
        Some(url) => {
            let parsed = url::Url::parse(url).context("PALAVER_AI_URL is not a valid URL")?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("PALAVER_AI_URL must be an http: or https: URL");
            }
            Some(AiProviderConfig {
                url: url.trim_end_matches('/').to_owned(),
                api_key: secret_or_file(s.ai_api_key.clone(), "PALAVER_AI_API_KEY")?,
            })
        }
        None => None,
    };
    Ok(AiConfig {
        provider,
        model: s.ai_model.clone().unwrap_or_else(|| "gpt-4o-mini".into()),
        timeout: Duration::from_secs(within(s.ai_timeout, 60, 1..=600, "PALAVER_AI_TIMEOUT")?),
        max_tokens: within(
            s.ai_max_tokens.map(u64::from),
            1024,
            64..=32_768,
            "PALAVER_AI_MAX_TOKENS",
        )? as u32,
        context_tokens: within(
            s.ai_context_tokens.map(u64::from),
            8000,
            256..=1_000_000,
            "PALAVER_AI_CONTEXT_TOKENS",
        )? as u32,
        idle_after: Duration::from_secs(within(
            s.ai_idle_after,
            300,
            1..=604_800,
            "PALAVER_AI_IDLE_AFTER",
        )?),
        idle_scan: Duration::from_secs(within(s.ai_idle_scan, 10, 1..=60, "PALAVER_AI_IDLE_SCAN")?),
    })
}

/// A secret from `VALUE` or the file named by `NAME_FILE` (environment only).
fn secret_or_file(value: Option<String>, env_name: &str) -> anyhow::Result<Option<Secret>> {
    if let Some(v) = value {
        return Ok(Some(Secret::new(v)));
    }
    match std::env::var_os(format!("{env_name}_FILE")) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {env_name}_FILE"))?;
            Ok(Some(Secret::new(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )))
        }
        None => Ok(None),
    }
}

impl Config {
    pub fn build(s: Settings) -> anyhow::Result<Config> {
        let listen = s
            .listen
            .unwrap_or_else(|| "127.0.0.1:3000".parse().expect("valid address"));
        let data_dir = s
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./palaver-data"));
        let media = media_config(&s, &data_dir)?;
        let ai = ai_config(&s)?;
        let whatsapp = WhatsAppConfig {
            verify_signatures: s.whatsapp_verify_signatures.unwrap_or(OnOff::On) == OnOff::On,
            app_secret: secret_or_file(
                s.whatsapp_app_secret.clone(),
                "PALAVER_WHATSAPP_APP_SECRET",
            )?,
            verify_token: secret_or_file(
                s.whatsapp_verify_token.clone(),
                "PALAVER_WHATSAPP_VERIFY_TOKEN",
            )?,
            media_hosts: s
                .whatsapp_media_hosts
                .clone()
                .unwrap_or_else(|| "lookaside.fbsbx.com".into())
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        };
        let database_url = match s.database_url {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir.join("palaver.db").display()),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!("DATABASE_URL must start with sqlite: or postgres://");
        }
        let jwt_private_key = secret_or_file(s.jwt_private_key, "PALAVER_JWT_PRIVATE_KEY")?;
        let secret_key = secret_or_file(s.secret_key, "PALAVER_SECRET_KEY")?;
        let cluster = match s.redis_url {
            None => None,
            Some(url) => {
                if database_url.starts_with("sqlite:") {
                    bail!("REDIS_URL selects cluster mode, which needs a PostgreSQL DATABASE_URL (every node shares it)");
                }
                if jwt_private_key.is_none() || secret_key.is_none() {
                    bail!(
                        "cluster mode needs the same keys on every node: set PALAVER_JWT_PRIVATE_KEY(_FILE) \
                         and PALAVER_SECRET_KEY(_FILE) (`palaver keys generate DIR` writes a pair)"
                    );
                }
                let parsed = url::Url::parse(&url).context("REDIS_URL is not a valid URL")?;
                if !matches!(parsed.scheme(), "redis" | "rediss") {
                    bail!("REDIS_URL must start with redis:// or rediss://");
                }
                let node_timeout = s.node_timeout.unwrap_or(15);
                if !(3..=3600).contains(&node_timeout) {
                    bail!("PALAVER_NODE_TIMEOUT must be 3 to 3600 seconds");
                }
                Some(ClusterConfig {
                    redis_url: Secret::new(url),
                    prefix: s.redis_prefix.unwrap_or_else(|| "palaver:".into()),
                    node_timeout: Duration::from_secs(node_timeout),
                })
            }
        };
        let public_url = s
            .public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        url::Url::parse(&public_url).context("PALAVER_PUBLIC_URL is not a valid URL")?;

        let sms = match s.sms_sender.unwrap_or(SmsSenderKind::Log) {
            SmsSenderKind::Log => SmsConfig::Log,
            SmsSenderKind::Webhook => SmsConfig::Webhook {
                url: s
                    .sms_webhook_url
                    .context("PALAVER_SMS_SENDER=webhook needs PALAVER_SMS_WEBHOOK_URL")?,
            },
            SmsSenderKind::Twilio => SmsConfig::Twilio {
                api_url: s
                    .twilio_api_url
                    .unwrap_or_else(|| "https://api.twilio.com".into()),
                account_sid: s
                    .twilio_account_sid
                    .context("the twilio SMS sender needs PALAVER_TWILIO_ACCOUNT_SID")?,
                auth_token: secret_or_file(s.twilio_auth_token, "PALAVER_TWILIO_AUTH_TOKEN")?
                    .context("the twilio SMS sender needs PALAVER_TWILIO_AUTH_TOKEN")?,
                from: s
                    .twilio_from
                    .context("the twilio SMS sender needs PALAVER_TWILIO_FROM")?,
            },
        };
        let mail = match s.mail_sender.unwrap_or(MailSenderKind::Log) {
            MailSenderKind::Log => MailConfig::Log,
            MailSenderKind::Webhook => MailConfig::Webhook {
                url: s
                    .mail_webhook_url
                    .context("PALAVER_MAIL_SENDER=webhook needs PALAVER_MAIL_WEBHOOK_URL")?,
            },
            MailSenderKind::Smtp => MailConfig::Smtp {
                url: secret_or_file(s.smtp_url, "PALAVER_SMTP_URL")?
                    .context("PALAVER_MAIL_SENDER=smtp needs PALAVER_SMTP_URL")?,
            },
        };
        let otp_dev_code = secret_or_file(s.otp_dev_code, "PALAVER_OTP_DEV_CODE")?;
        if let Some(code) = &otp_dev_code {
            let c = code.expose();
            if c.len() != 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
                bail!("PALAVER_OTP_DEV_CODE must be 6 digits");
            }
        }
        let access_token_ttl = s.access_token_ttl.unwrap_or(900);
        if !(30..=86_400).contains(&access_token_ttl) {
            bail!("PALAVER_ACCESS_TOKEN_TTL must be between 30 and 86400 seconds");
        }
        let outbound_allow: Vec<String> = s
            .outbound_allow
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let calls = calls_config(
            &s.stun_urls,
            &s.turn_urls,
            s.turn_secret,
            s.turn_ttl,
            s.call_ring_timeout,
        )?;
        let metrics_token = secret_or_file(s.metrics_token, "PALAVER_METRICS_TOKEN")?;
        let mail_from = s
            .mail_from
            .unwrap_or_else(|| "Palaver <no-reply@localhost>".into());
        let push = push_config(
            s.vapid_private_key,
            s.vapid_subject,
            &public_url,
            &mail_from,
        )?;
        Ok(Config {
            ai,
            calls,
            push,
            outbound_allow,
            metrics_token,
            whatsapp,
            media,
            job_workers: s.job_workers.unwrap_or(16),
            automation_scan: Duration::from_secs(match s.automation_scan.unwrap_or(15) {
                v @ 1..=300 => v,
                _ => bail!("PALAVER_AUTOMATION_SCAN must be 1 to 300"),
            }),
            listen,
            data_dir,
            database_url: Secret::new(database_url),
            db_max_connections: s.db_max_connections.unwrap_or(16).max(2),
            public_url,
            signup: s.signup.unwrap_or(SignupMode::Open),
            workspaces: s.workspaces.unwrap_or(WorkspaceCreation::Admin),
            sms,
            mail,
            mail_from,
            cors_origins: s
                .cors_origins
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            rate_limits: s.rate_limits.unwrap_or(OnOff::On) == OnOff::On,
            trust_proxy: s.trust_proxy.unwrap_or(OnOff::Off) == OnOff::On,
            log: s.log.unwrap_or_else(|| "info".into()),
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            access_token_ttl: Duration::from_secs(access_token_ttl),
            refresh_token_ttl: Duration::from_secs(
                s.refresh_token_ttl.unwrap_or(30 * 86_400).max(60),
            ),
            jwt_private_key,
            secret_key,
            cluster,
            otp_dev_code,
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout.unwrap_or(10)),
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose().starts_with("sqlite:")
    }
}

fn media_config(s: &Settings, data_dir: &Path) -> anyhow::Result<MediaConfig> {
    let store = match s.media_store.unwrap_or(MediaStoreKind::Fs) {
        MediaStoreKind::Fs => MediaStoreConfig::Fs {
            dir: s
                .media_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("media")),
        },
        MediaStoreKind::S3 => MediaStoreConfig::S3 {
            endpoint: s.s3_endpoint.clone(),
            bucket: s
                .s3_bucket
                .clone()
                .context("PALAVER_MEDIA_STORE=s3 needs PALAVER_S3_BUCKET")?,
            region: s.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
            access_key_id: s.s3_access_key_id.clone(),
            secret_access_key: secret_or_file(
                s.s3_secret_access_key.clone(),
                "PALAVER_S3_SECRET_ACCESS_KEY",
            )?,
            path_style: s.s3_path_style.unwrap_or(OnOff::On) == OnOff::On,
        },
    };
    let mib = |v: Option<u64>, default: u64| -> anyhow::Result<u64> {
        let v = v.unwrap_or(default);
        if !(1..=100_000).contains(&v) {
            bail!("media size limits must be between 1 and 100000 MiB");
        }
        Ok(v * 1024 * 1024)
    };
    let program = |v: &Option<String>, default: &str| match v.as_deref() {
        Some("off") | Some("") => None,
        Some(p) => Some(p.to_owned()),
        None => Some(default.to_owned()),
    };
    let transcription = match s.transcription_url.clone() {
        Some(url) => {
            url::Url::parse(&url).context("PALAVER_TRANSCRIPTION_URL is not a valid URL")?;
            Some(TranscriptionConfig {
                url: url.trim_end_matches('/').to_owned(),
                api_key: secret_or_file(
                    s.transcription_api_key.clone(),
                    "PALAVER_TRANSCRIPTION_API_KEY",
                )?,
                model: s
                    .transcription_model
                    .clone()
                    .unwrap_or_else(|| "whisper-1".into()),
            })
        }
        None => None,
    };
    let lang = s.tesseract_lang.clone().unwrap_or_else(|| "eng".into());
    if lang.is_empty()
        || !lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_'))
    {
        bail!("PALAVER_TESSERACT_LANG must be language codes joined by +, e.g. eng+deu");
    }
    let pdf_reader = match &s.pdf_reader {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe().context("finding this program (for PALAVER_PDF_READER)")?,
    };
    Ok(MediaConfig {
        pdf_reader,
        store,
        limits: MediaLimits {
            image: mib(s.media_max_image_mib, 16)?,
            audio: mib(s.media_max_audio_mib, 16)?,
            video: mib(s.media_max_video_mib, 64)?,
            file: mib(s.media_max_file_mib, 100)?,
        },
        unreferenced_ttl: Duration::from_secs(s.media_unreferenced_ttl.unwrap_or(86_400).max(1)),
        tesseract: program(&s.tesseract, "tesseract"),
        tesseract_lang: lang,
        pdftoppm: program(&s.pdftoppm, "pdftoppm"),
        transcription,
    })
}

/// Creates `dir` (and missing parents) readable by its owner only (0700). A directory that
/// exists already keeps its mode: the operator may have chosen it.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_servers_need_their_secret_and_urls_their_scheme() {
        let with = |f: fn(&mut Settings)| {
            let mut s = Settings::default();
            f(&mut s);
            Config::build(s).map(|c| c.calls)
        };
        let none = with(|_| {}).unwrap();
        assert!(none.stun_urls.is_empty() && none.turn_urls.is_empty());
        assert_eq!(none.turn_ttl, Duration::from_secs(86_400));
        assert!(with(|s| s.turn_urls = Some("turn:t.example.com".into())).is_err());
        let ok = with(|s| {
            s.turn_urls = Some("turn:t.example.com, turns:t.example.com:5349".into());
            s.turn_secret = Some("x".into());
        })
        .unwrap();
        assert_eq!(ok.turn_urls.len(), 2);
        assert!(with(|s| s.stun_urls = Some("http://stun.example.com".into())).is_err());
        assert!(with(|s| s.turn_ttl = Some(10)).is_err());
        assert_eq!(none.ring_timeout, Duration::from_secs(30));
        assert!(with(|s| s.call_ring_timeout = Some(1)).is_err());
    }

    #[test]
    fn defaults_give_a_local_sqlite_server() {
        let c = Config::build(Settings::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
        assert!(c.is_sqlite());
        assert!(c.rate_limits);
        assert_eq!(c.signup, SignupMode::Open);
    }

    #[test]
    fn earlier_layer_wins_field_by_field() {
        let file: Settings =
            toml::from_str("listen = \"0.0.0.0:4000\"\nsignup = \"closed\"").unwrap();
        let env = Settings {
            signup: Some(SignupMode::Invite),
            ..Default::default()
        };
        let merged = env.or(file);
        assert_eq!(merged.listen.unwrap().port(), 4000);
        assert_eq!(merged.signup, Some(SignupMode::Invite));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        // A variable name no other test reads.
        std::env::set_var("PALAVER_UNIT_TEST_SECRET_FILE", &path);
        let from_file = secret_or_file(None, "PALAVER_UNIT_TEST_SECRET")
            .unwrap()
            .unwrap();
        assert_eq!(from_file.expose(), "s3cret");
        let direct = secret_or_file(Some("direct".into()), "PALAVER_UNIT_TEST_SECRET")
            .unwrap()
            .unwrap();
        assert_eq!(direct.expose(), "direct");
        assert!(secret_or_file(None, "PALAVER_UNIT_TEST_UNSET")
            .unwrap()
            .is_none());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
