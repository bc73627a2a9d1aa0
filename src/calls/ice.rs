//! The ICE servers a device uses to reach its peer: the configured STUN and TURN servers,
//! with short-lived TURN credentials by the TURN REST shared-secret scheme (coturn's
//! `use-auth-secret`): the username is `<expiry unix time>:<user id>`, the credential
//! base64(HMAC-SHA1(secret, username)), so the TURN server checks them with the secret alone
//! and they stop working at the expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::CallsConfig;

/// One `RTCIceServer` (WebRTC's shape).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IceServers {
    /// Empty when no STUN or TURN server is configured.
    pub ice_servers: Vec<IceServer>,
    /// Seconds the TURN credentials stay valid.
    pub ttl: u64,
}

/// TURN REST credentials for `user_id`, valid until `expires` (seconds since the epoch).
pub fn turn_credentials(secret: &[u8], user_id: &str, expires: u64) -> (String, String) {
    let username = format!("{expires}:{user_id}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = ring::hmac::sign(&key, username.as_bytes());
    (username, STANDARD.encode(tag.as_ref()))
}

/// The ICE servers for `user_id` now.
pub fn ice_servers(config: &CallsConfig, user_id: &str) -> IceServers {
    let mut servers = Vec::new();
    if !config.stun_urls.is_empty() {
        servers.push(IceServer {
            urls: config.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (config.turn_urls.is_empty(), &config.turn_secret) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let expires = (now + config.turn_ttl).as_secs();
        let (username, credential) = turn_credentials(secret.expose().as_bytes(), user_id, expires);
        servers.push(IceServer {
            urls: config.turn_urls.clone(),
            username: Some(username),
            credential: Some(credential),
        });
    }
    IceServers {
        ice_servers: servers,
        ttl: config.turn_ttl.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_credentials_name_their_expiry_and_user() {
        let (username, credential) = turn_credentials(b"north", "u-1", 1_700_000_000);
        assert_eq!(username, "1700000000:u-1");
        assert_eq!(
            STANDARD.decode(&credential).unwrap().len(),
            20,
            "an HMAC-SHA1"
        );
        let (_, other) = turn_credentials(b"south", "u-1", 1_700_000_000);
        assert_ne!(credential, other, "the secret counts");
    }
}
