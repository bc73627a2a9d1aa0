//! VAPID (RFC 8292): the server's P-256 key, whose public half a browser subscribes with, and
//! the short-lived ES256 token that identifies the server to a push service.

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use web_push_native::p256;

/// How long a VAPID token is good for (RFC 8292 allows at most 24 hours).
const TOKEN_SECONDS: i64 = 12 * 3600;

pub struct Vapid {
    pair: EcdsaKeyPair,
    /// The uncompressed public point, base64url: the browser's `applicationServerKey`.
    public: String,
    subject: String,
}

impl Vapid {
    /// From a configured private scalar (base64url), or derived from the server secret's
    /// `derived` bytes so that every node of a cluster has the same key.
    pub fn new(
        configured: Option<&str>,
        derived: [u8; 32],
        subject: String,
    ) -> anyhow::Result<Vapid> {
        let scalar = match configured {
            Some(text) => URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .context("PALAVER_VAPID_PRIVATE_KEY is not base64url")?,
            None => derived.to_vec(),
        };
        let secret = p256::SecretKey::from_slice(&scalar)
            .map_err(|_| anyhow::anyhow!("the VAPID private key is not a P-256 scalar"))?;
        let public = secret.public_key().to_sec1_bytes();
        if public.len() != 65 {
            bail!("the VAPID public key is not an uncompressed point");
        }
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            &public,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|_| anyhow::anyhow!("the VAPID key pair is invalid"))?;
        Ok(Vapid {
            pair,
            public: URL_SAFE_NO_PAD.encode(&public),
            subject,
        })
    }

    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to `endpoint`: `vapid t=<token>, k=<public key>`.
    pub fn authorization(&self, endpoint: &url::Url, now: i64) -> anyhow::Result<String> {
        let audience = endpoint.origin().ascii_serialization();
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now + TOKEN_SECONDS,
            "sub": self.subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{claims}");
        let signature = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| anyhow::anyhow!("signing the VAPID token"))?;
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        Ok(format!("vapid t={token}, k={}", self.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

    #[test]
    fn the_token_verifies_with_the_public_key_it_names() {
        let v = Vapid::new(None, [7u8; 32], "mailto:ops@example.com".into()).unwrap();
        let url = url::Url::parse("https://push.example.net:8443/send/abc").unwrap();
        let header = v.authorization(&url, 1_700_000_000).unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|r| r.split_once(", k="))
            .unwrap();
        assert_eq!(k, v.public_key());
        let (input, signature) = t.rsplit_once('.').unwrap();
        let key = URL_SAFE_NO_PAD.decode(k).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("a valid ES256 signature");
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(input.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert_eq!(claims["exp"], 1_700_000_000 + TOKEN_SECONDS);
        // A configured key is used as given.
        let scalar = URL_SAFE_NO_PAD.encode([9u8; 32]);
        let c = Vapid::new(Some(&scalar), [7u8; 32], "mailto:x@y".into()).unwrap();
        assert_ne!(c.public_key(), v.public_key());
        assert!(Vapid::new(Some("!!"), [7u8; 32], "mailto:x@y".into()).is_err());
    }
}
