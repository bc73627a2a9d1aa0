//! Server keys: the Ed25519 key that signs access tokens (served as a JWKS) and the 32-byte
//! server secret used to hash one-time codes and to seal secrets at rest (AES-256-GCM: the
//! WhatsApp channels' tokens and app secrets).
//!
//! Both come from configuration when given; otherwise they are generated on first start into
//! the data dir with mode 0600 and read back on later starts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{AppError, Code};

const JWT_KEY_FILE: &str = "jwt-ed25519.pem";
const SECRET_KEY_FILE: &str = "secret.key";
const ISSUER: &str = "palaver";

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

pub enum TokenError {
    Expired,
    Invalid,
}

/// What a caller with a bad access token is told: the client refreshes on `token_expired`
/// and signs in again on anything else.
impl From<TokenError> for AppError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => {
                AppError::new(Code::TokenExpired, "the access token has expired")
            }
            TokenError::Invalid => AppError::unauthorized(),
        }
    }
}

pub struct SigningKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_x: String,
    validation: Validation,
}

impl SigningKeys {
    pub fn load_or_generate(config: &Config) -> anyhow::Result<SigningKeys> {
        let pem = match &config.jwt_private_key {
            Some(pem) => pem.expose().to_owned(),
            None => load_or_create(&config.data_dir.join(JWT_KEY_FILE), new_jwt_pem)?,
        };
        Self::from_pem(&pem)
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<SigningKeys> {
        let der = from_pem(pem).context("the JWT private key is not a PKCS#8 PEM")?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| anyhow::anyhow!("the JWT private key is not an Ed25519 PKCS#8 key"))?;
        let public = pair.public_key().as_ref();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        let kid = hex::encode(&Sha256::digest(public)[..8]);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        Ok(SigningKeys {
            kid,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_components(&public_x)?,
            public_x,
            validation,
        })
    }

    pub fn sign(
        &self,
        user_id: &str,
        session_id: &str,
        now_s: i64,
        ttl_s: i64,
    ) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            iat: now_s,
            exp: now_s + ttl_s,
            iss: ISSUER.to_owned(),
        };
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Verifies signature, algorithm (EdDSA only: `none` and HMAC are refused), issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(_) => Err(TokenError::Invalid),
        }
    }

    /// The public key set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                "kid": self.kid, "x": self.public_x,
            }]
        })
    }
}

/// The 32-byte server secret.
pub struct ServerSecret([u8; 32]);

impl ServerSecret {
    pub fn load_or_generate(config: &Config) -> anyhow::Result<ServerSecret> {
        let text = match &config.secret_key {
            Some(s) => s.expose().to_owned(),
            None => load_or_create(&config.data_dir.join(SECRET_KEY_FILE), new_secret_hex)?,
        };
        let bytes = hex::decode(text.trim()).context("the server secret is not hex")?;
        let Ok(bytes) = <[u8; 32]>::try_from(bytes) else {
            bail!("the server secret must be 32 bytes (64 hex digits)");
        };
        Ok(ServerSecret(bytes))
    }

    /// HMAC-SHA256 of `parts` (joined unambiguously) under the server secret, hex encoded.
    pub fn mac(&self, parts: &[&str]) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// The encryption key for secrets at rest, derived from the server secret (so one secret
    /// never serves two purposes directly).
    fn sealing_key(&self) -> ring::aead::LessSafeKey {
        let derived = hex::decode(self.mac(&["palaver", "seal-v1"])).expect("hex");
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &derived)
            .expect("a 32-byte key");
        ring::aead::LessSafeKey::new(key)
    }

    /// Encrypts a secret for storage: `v1.` + base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plaintext: &str) -> String {
        use base64::Engine;
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let mut data = plaintext.as_bytes().to_vec();
        self.sealing_key()
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                &mut data,
            )
            .expect("sealing cannot fail for in-memory data");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!(
            "v1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// Decrypts what [`ServerSecret::seal`] made; `None` if it was not sealed with this key.
    pub fn open(&self, sealed: &str) -> Option<String> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix("v1.")?)
            .ok()?;
        if raw.len() < 12 + 16 {
            return None;
        }
        let (nonce, rest) = raw.split_at(12);
        let mut data = rest.to_vec();
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self
            .sealing_key()
            .open_in_place(nonce, ring::aead::Aad::empty(), &mut data)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod sealing_tests {
    use super::ServerSecret;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let a = ServerSecret([7; 32]);
        let b = ServerSecret([8; 32]);
        let sealed = a.seal("EAAG-token");
        assert!(!sealed.contains("EAAG"));
        assert_ne!(sealed, a.seal("EAAG-token"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).as_deref(), Some("EAAG-token"));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open("v1.AAAA"), None);
        assert_eq!(a.open("plain"), None);
    }
}

fn new_jwt_pem() -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| anyhow::anyhow!("generating an Ed25519 key"))?;
    Ok(to_pem(pkcs8.as_ref()))
}

fn new_secret_hex() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    Ok(hex::encode(bytes))
}

/// `palaver keys generate DIR`: writes a new signing key and server secret (0600) for the
/// nodes of a cluster to share; never overwrites. Answers the two paths.
pub fn generate_files(dir: &Path) -> anyhow::Result<[std::path::PathBuf; 2]> {
    let paths = [dir.join(JWT_KEY_FILE), dir.join(SECRET_KEY_FILE)];
    for p in &paths {
        if p.exists() {
            bail!("{} exists already; not overwriting it", p.display());
        }
    }
    load_or_create(&paths[0], new_jwt_pem)?;
    load_or_create(&paths[1], new_secret_hex)?;
    Ok(paths)
}

/// Reads `path`, or creates it (0600, exclusively, so two processes starting at once agree)
/// with `make()`'s content.
fn load_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        crate::config::create_private_dir(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let content = make()?;
            file.write_all(content.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "generated a new key file");
            Ok(content)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

fn to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

fn from_pem(pem: &str) -> anyhow::Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    Ok(STANDARD.decode(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SigningKeys {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        SigningKeys::from_pem(&to_pem(pkcs8.as_ref())).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_carries_its_claims() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        let claims = k
            .verify(&k.sign("u1", "s1", now, 60).unwrap())
            .ok()
            .unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("u1", "s1"));
    }

    #[test]
    fn another_keys_token_is_refused() {
        let (a, b) = (keys(), keys());
        let t = a
            .sign("u", "s", chrono::Utc::now().timestamp(), 60)
            .unwrap();
        assert!(matches!(b.verify(&t), Err(TokenError::Invalid)));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let k = keys();
        let t = k
            .sign("u", "s", chrono::Utc::now().timestamp() - 120, 60)
            .unwrap();
        assert!(matches!(k.verify(&t), Err(TokenError::Expired)));
    }

    #[test]
    fn alg_none_is_refused() {
        let k = keys();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = chrono::Utc::now().timestamp() + 60;
        let body = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"sub":"u","sid":"s","iat":0,"exp":{exp},"iss":"palaver"}}"#
        ));
        assert!(k.verify(&format!("{header}.{body}.")).is_err());
    }

    #[test]
    fn pem_round_trips() {
        let der = vec![1u8, 2, 3, 250, 251];
        assert_eq!(from_pem(&to_pem(&der)).unwrap(), der);
    }
}
