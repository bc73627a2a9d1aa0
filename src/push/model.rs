//! Push subscriptions as the API takes and shows them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::Timestamp;
use crate::error::{AppError, AppResult, FieldError};
use web_push_native::p256;

/// `POST /push/subscriptions`: a Web Push subscription as `PushSubscription.toJSON()` gives it,
/// or a gateway's webhook.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    /// `webpush` (the default) or `webhook`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Web Push: the push service's URL for this browser.
    pub endpoint: Option<String>,
    pub keys: Option<WebPushKeys>,
    /// Webhook: the gateway's URL (HTTPS, or an address `PALAVER_OUTBOUND_ALLOW` admits).
    pub url: Option<String>,
    /// Webhook: a token the gateway expects; sent as `Authorization: Bearer` and the key of the
    /// body's signature. Stored encrypted, never shown.
    pub token: Option<String>,
    /// Ignored (browsers send it).
    #[serde(default)]
    pub expiration_time: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct WebPushKeys {
    /// The user agent's P-256 public key, an uncompressed point, base64url.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url.
    pub auth: String,
}

/// A checked subscription.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    WebPush {
        endpoint: String,
        p256dh: String,
        auth: String,
    },
    Webhook {
        url: String,
        token: Option<String>,
    },
}

fn b64(raw: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(raw.trim().trim_end_matches('='))
        .ok()
}

fn https_url(field: &'static str, raw: Option<String>) -> Result<String, FieldError> {
    let raw = raw.ok_or_else(|| FieldError::new(field, "is required"))?;
    match url::Url::parse(&raw) {
        Ok(u)
            if matches!(u.scheme(), "https" | "http")
                && u.host().is_some()
                && raw.len() <= 2048 =>
        {
            Ok(raw)
        }
        _ => Err(FieldError::new(
            field,
            "must be an http(s) URL of at most 2048 characters",
        )),
    }
}

impl SubscriptionBody {
    pub fn parse(self) -> AppResult<Target> {
        match self.kind.as_deref().unwrap_or("webpush") {
            "webpush" => {
                let endpoint = https_url("endpoint", self.endpoint)
                    .map_err(|e| AppError::validation(vec![e]))?;
                let keys = self
                    .keys
                    .ok_or_else(|| AppError::invalid_field("keys", "is required"))?;
                let point = b64(&keys.p256dh).filter(|k| k.len() == 65);
                if point.is_none_or(|k| p256::PublicKey::from_sec1_bytes(&k).is_err()) {
                    return Err(AppError::invalid_field(
                        "keys.p256dh",
                        "must be an uncompressed P-256 point, base64url",
                    ));
                }
                if b64(&keys.auth).is_none_or(|a| a.len() != 16) {
                    return Err(AppError::invalid_field(
                        "keys.auth",
                        "must be 16 bytes, base64url",
                    ));
                }
                Ok(Target::WebPush {
                    endpoint,
                    p256dh: keys.p256dh.trim().trim_end_matches('=').to_owned(),
                    auth: keys.auth.trim().trim_end_matches('=').to_owned(),
                })
            }
            "webhook" => {
                let url = https_url("url", self.url).map_err(|e| AppError::validation(vec![e]))?;
                if self
                    .token
                    .as_ref()
                    .is_some_and(|t| t.is_empty() || t.len() > 4096)
                {
                    return Err(AppError::invalid_field(
                        "token",
                        "must be 1 to 4096 characters",
                    ));
                }
                Ok(Target::Webhook {
                    url,
                    token: self.token,
                })
            }
            _ => Err(AppError::invalid_field(
                "type",
                "must be webpush or webhook",
            )),
        }
    }
}

/// A subscription as its owner sees it (the webhook's token is never shown).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub id: String,
    /// `webpush` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The push service's URL, or the webhook's.
    pub endpoint: String,
    /// The session (device) it belongs to; it goes with that session.
    pub session_id: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: String,
    pub user_id: String,
    pub session_id: String,
    pub kind: String,
    pub endpoint: String,
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    pub token: Option<String>,
    pub created_at: i64,
}

pub const SUBSCRIPTION_COLUMNS: &str =
    "id, user_id, session_id, kind, endpoint, p256dh, auth, token, created_at";

impl SubscriptionRow {
    pub fn view(&self) -> SubscriptionView {
        SubscriptionView {
            id: self.id.clone(),
            kind: self.kind.clone(),
            endpoint: self.endpoint.clone(),
            session_id: self.session_id.clone(),
            created_at: Timestamp(self.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VapidKey {
    /// The server's VAPID public key: an uncompressed P-256 point, base64url (a browser's
    /// `applicationServerKey`).
    pub public_key: String,
}
