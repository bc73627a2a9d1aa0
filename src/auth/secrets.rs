//! Password hashing (Argon2id) and opaque random tokens (refresh and reset tokens), which are
//! stored only as SHA-256 hashes.

use argon2::password_hash::{
    rand_core::OsRng, Output, ParamsString, PasswordHash, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{AppError, AppResult};

type Argon2Job = Box<dyn FnOnce() + Send>;

/// Runs an Argon2 computation on one of a few dedicated threads (one per core), in arrival
/// order, so that a burst of sign-ins queues instead of taking every core.
async fn argon2_job<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    static QUEUE: std::sync::OnceLock<tokio::sync::mpsc::Sender<Argon2Job>> =
        std::sync::OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Argon2Job>(1024);
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).blocking_recv();
                    match next {
                        Some(job) => job(),
                        None => return,
                    }
                })
                .expect("starting a password-hashing thread");
        }
        tx
    });
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Argon2Job = Box::new(move || {
        let _ = reply.send(job());
    });
    // The queue is bounded: a burst waits here for room.
    queue
        .send(job)
        .await
        .map_err(|_| AppError::internal(anyhow::anyhow!("the password hashers stopped")))?;
    answer
        .await
        .map_err(|_| AppError::internal(anyhow::anyhow!("a password hasher failed")))
}

thread_local! {
    /// Argon2's working memory (~19 MiB), kept by each hashing thread. Allocating and freeing
    /// it per hash left the allocator holding a copy in every arena a thread ever touched:
    /// hundreds of MiB after a burst of sign-ins.
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2id with `params` into `out`, in this thread's reused memory.
fn argon2id(
    params: Params,
    version: Version,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < params.block_count() {
            memory.resize(params.block_count(), Block::default());
        }
        let blocks = params.block_count();
        Argon2::new(Algorithm::Argon2id, version, params).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut memory[..blocks],
        )
    })
}

/// A PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) for the password, default parameters.
fn phc_hash(password: &[u8]) -> AppResult<String> {
    let failed =
        |e: &dyn std::fmt::Display| AppError::internal(anyhow::anyhow!("hashing a password: {e}"));
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| failed(&e))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2id(params.clone(), Version::V0x13, password, salt_raw, &mut out)
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Does the password match the PHC string? Argon2id hashes are checked in the thread's reused
/// memory; anything else through the argon2 crate's own verifier.
fn phc_verify(password: &[u8], stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Ok(params), Some(salt), Some(expected)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Argon2::default().verify_password(password, &parsed).is_ok();
    }
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    if argon2id(params, version, password, salt_raw, &mut out).is_err() {
        return false;
    }
    bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

/// Hashes off the async runtime: Argon2id is deliberately slow.
pub async fn hash_password(password: String) -> AppResult<String> {
    argon2_job(move || phc_hash(password.as_bytes())).await?
}

/// An Argon2id hash of a random password, verified when the account does not exist, so that an
/// unknown email costs the same time as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| phc_hash(new_token().as_bytes()).expect("hashing with default parameters"))
}

pub async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    argon2_job(move || {
        let exists = hash.is_some();
        let stored: &str = match &hash {
            Some(h) => h,
            None => dummy_hash(),
        };
        phc_verify(password.as_bytes(), stored) && exists
    })
    .await
}

/// A new opaque token: 256 random bits, base64url.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(h.clone()))
            .await
            .unwrap());
        assert!(!verify_password("wrong horse".into(), Some(h))
            .await
            .unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }

    #[test]
    fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::password_hash::PasswordHasher;
        // Ours verify with the argon2 crate's own verifier…
        let ours = phc_hash(b"s3cret").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"s3cret", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"other", &parsed)
            .is_err());
        // …and the crate's hashes (other parameters too) verify with ours.
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::new(8192, 1, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"s3cret", &salt)
            .unwrap()
            .to_string();
        assert!(phc_verify(b"s3cret", &theirs));
        assert!(!phc_verify(b"s3creT", &theirs));
        assert!(!phc_verify(b"s3cret", "$argon2id$v=19$garbage"));
    }

    #[test]
    fn tokens_are_256_bit_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(token_hash(&a).len(), 64);
    }
}
