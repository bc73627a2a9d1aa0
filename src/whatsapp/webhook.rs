//! The webhook: the verification handshake, and signed bodies recorded durably before the 200
//! and applied by a job.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{channels, ingest, parse};
use crate::app::AppState;
use crate::db::{new_id, now_ms, Db, Tx};
use crate::error::{AppError, AppResult, Code};
use crate::http::ClientIp;
use crate::jobs::{Job, JobError, JobResult};
use crate::ratelimit::limits;

/// Payload: the id of a `webhook_events` row.
pub const PROCESS: &str = "whatsapp.webhook";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/whatsapp", get(verify).post(receive))
        .route("/webhook", get(verify).post(receive))
}

/// `GET /webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`: answers C
/// when T is a channel's (or the configured) verify token.
async fn verify(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> AppResult<Response> {
    let (Some("subscribe"), Some(token), Some(challenge)) = (
        q.get("hub.mode").map(String::as_str),
        q.get("hub.verify_token"),
        q.get("hub.challenge"),
    ) else {
        return Err(AppError::new(
            Code::BadRequest,
            "expected hub.mode=subscribe, hub.verify_token and hub.challenge",
        ));
    };
    if challenge.len() > 256 || challenge.chars().any(char::is_control) {
        return Err(AppError::new(
            Code::BadRequest,
            "hub.challenge is not a plain token",
        ));
    }
    let mut known: Vec<String> = channels::with_verify_tokens(&state.db)
        .await?
        .iter()
        .filter_map(|c| c.verify_token(&state.secret))
        .collect();
    known.extend(
        state
            .config
            .whatsapp
            .verify_token
            .as_ref()
            .map(|s| s.expose().to_owned()),
    );
    let matches = known.iter().fold(false, |found, k| {
        found | bool::from(k.as_bytes().ct_eq(token.as_bytes()))
    });
    if !matches {
        return Err(AppError::forbidden("the verify token matches no channel"));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        challenge.clone(),
    )
        .into_response())
}

/// `POST /webhooks/whatsapp` (and `/webhook`): 401 without a valid signature, 400 for a
/// malformed body (nothing stored either way); else the body is stored and queued, then 200.
async fn receive(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<(StatusCode, &'static str)> {
    if let Err(retry) = state
        .limiter
        .check(&limits::WEBHOOKS_PER_IP, &crate::ratelimit::ip_key(ip))
        .await
    {
        return Err(AppError::rate_limited(Code::RateLimited, retry));
    }
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if state.config.whatsapp.verify_signatures && signature.is_none() {
        return Err(AppError::new(
            Code::Unauthorized,
            "missing X-Hub-Signature-256",
        ));
    }
    let changes = parse::parse(&body).map_err(|m| AppError::new(Code::BadRequest, m.0))?;
    if state.config.whatsapp.verify_signatures {
        let mut ids: Vec<String> = changes.iter().map(|c| c.phone_number_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let secrets: HashMap<String, Option<String>> =
            channels::by_phone_number_ids(&state.db, &ids)
                .await?
                .iter()
                .map(|c| (c.phone_number_id.clone(), c.app_secret(&state.secret)))
                .collect();
        let server = state
            .config
            .whatsapp
            .app_secret
            .as_ref()
            .map(|s| s.expose());
        let signature = signature.as_deref().unwrap_or_default();
        if !every_part_signed(&body, signature, &ids, &secrets, server) {
            metrics::counter!("whatsapp_webhooks_total", "result" => "bad_signature").increment(1);
            return Err(AppError::new(
                Code::Unauthorized,
                "the signature does not match",
            ));
        }
    }
    record(&state.db, "webhook", &body).await?;
    state.db.wake_jobs();
    metrics::counter!("whatsapp_webhooks_total", "result" => "accepted").increment(1);
    Ok((StatusCode::OK, "EVENT_RECEIVED"))
}

/// Whether every part of a body may be applied: the signature verifies with the server-wide
/// app secret, or else, for each phone number id the body names, with the app secret of that
/// id's channel. One workspace's secret can never vouch for a part naming another workspace's
/// number (nor for a number no channel has). A body naming no number needs the server secret.
pub fn every_part_signed(
    body: &[u8],
    signature: &str,
    phone_number_ids: &[String],
    channel_secrets: &HashMap<String, Option<String>>,
    server_secret: Option<&str>,
) -> bool {
    if server_secret.is_some_and(|s| signed_with(body, signature, s)) {
        return true;
    }
    !phone_number_ids.is_empty()
        && phone_number_ids.iter().all(|id| {
            channel_secrets
                .get(id)
                .and_then(Option::as_deref)
                .is_some_and(|s| signed_with(body, signature, s))
        })
}

/// `sha256=` + hex HMAC-SHA256 of the raw body with `secret`, compared in constant time.
pub fn signed_with(body: &[u8], signature: &str, secret: &str) -> bool {
    let Some(given) = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h.trim()).ok())
    else {
        return false;
    };
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

async fn insert_event(tx: &mut Tx, source: &str, body: &[u8]) -> AppResult<String> {
    // A parsed body is JSON, so UTF-8.
    let text = std::str::from_utf8(body)
        .map_err(|_| AppError::new(Code::BadRequest, "the body is not UTF-8"))?;
    let id = new_id();
    sqlx::query("INSERT INTO webhook_events (id, source, body, sha256, received_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(source)
        .bind(text)
        .bind(hex::encode(Sha256::digest(body)))
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Stores a body and queues its processing, in one transaction.
pub async fn record(db: &Db, source: &str, body: &[u8]) -> AppResult<String> {
    let mut tx = db.begin().await?;
    let id = insert_event(&mut tx, source, body).await?;
    crate::jobs::enqueue(&mut tx, PROCESS, &id).await?;
    tx.commit().await?;
    Ok(id)
}

/// Stores a body that the caller applies itself (imports).
pub async fn store(db: &Db, source: &str, body: &[u8]) -> AppResult<String> {
    let mut tx = db.begin().await?;
    let id = insert_event(&mut tx, source, body).await?;
    tx.commit().await?;
    Ok(id)
}

/// Notes that a stored body was applied, with what could not be.
pub async fn mark_processed(db: &Db, id: &str, report: &ingest::Report) -> AppResult<()> {
    let mut tx = db.begin().await?;
    mark_processed_in(&mut tx, id, report).await?;
    tx.commit().await?;
    Ok(())
}

async fn mark_processed_in(tx: &mut Tx, id: &str, report: &ingest::Report) -> AppResult<()> {
    let notes: Vec<String> = report
        .unknown_channels
        .iter()
        .map(|p| format!("no channel for phone_number_id {p}"))
        .chain(report.skipped.iter().cloned())
        .collect();
    sqlx::query("UPDATE webhook_events SET processed_at = $1, error = $2 WHERE id = $3")
        .bind(now_ms())
        .bind((!notes.is_empty()).then(|| notes.join("; ")))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The job: applies a recorded body.
pub async fn process(state: &AppState, job: &Job) -> JobResult {
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM webhook_events WHERE id = $1")
        .bind(&job.payload)
        .fetch_optional(state.db.reader())
        .await?;
    let Some(body) = body else {
        return Err(JobError::permanent("the recorded body is gone"));
    };
    // The body's effects, its processed mark and the job's end commit together.
    let mut tx = state.db.begin().await?;
    let applied = ingest::ingest_in(
        state,
        &mut tx,
        body.as_bytes(),
        ingest::UnknownChannels::Skip,
    )
    .await;
    let (report, media_queued) = match applied {
        Ok(r) => r,
        Err(e) if e.code() == Code::BadRequest => return Err(JobError::permanent(e)),
        Err(e) => return Err(JobError::retry(e)),
    };
    mark_processed_in(&mut tx, &job.payload, &report).await?;
    job.finish_in(&mut tx).await?;
    state.db.commit(tx).await?;
    if media_queued {
        state.db.wake_jobs();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(body: &[u8], secret: &str) -> String {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = sig(body, "s3cret");
        assert!(signed_with(body, &good, "s3cret"));
        assert!(!signed_with(b"{}", &good, "s3cret"));
        assert!(!signed_with(body, &good, "other"));
        assert!(!signed_with(body, "sha1=abc", "s3cret"));
        assert!(!signed_with(body, "sha256=zz", "s3cret"));
        assert!(!signed_with(body, "", "s3cret"));
    }

    #[test]
    fn each_part_needs_its_own_channels_secret() {
        let body = b"{}";
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let secrets: HashMap<String, Option<String>> = [
            ("A".to_string(), Some("secret-a".to_string())),
            ("B".to_string(), Some("secret-b".to_string())),
            ("C".to_string(), Some("secret-a".to_string())),
            ("N".to_string(), None),
        ]
        .into();
        let by_a = sig(body, "secret-a");
        assert!(every_part_signed(body, &by_a, &ids(&["A"]), &secrets, None));
        // Two numbers of one Meta app share its secret.
        assert!(every_part_signed(
            body,
            &by_a,
            &ids(&["A", "C"]),
            &secrets,
            None
        ));
        // A's secret does not vouch for B's part, nor for an unknown number or one without a secret.
        assert!(!every_part_signed(
            body,
            &by_a,
            &ids(&["A", "B"]),
            &secrets,
            None
        ));
        assert!(!every_part_signed(
            body,
            &by_a,
            &ids(&["A", "X"]),
            &secrets,
            None
        ));
        assert!(!every_part_signed(
            body,
            &by_a,
            &ids(&["A", "N"]),
            &secrets,
            None
        ));
        assert!(!every_part_signed(body, &by_a, &[], &secrets, None));
        // The server-wide secret vouches for everything; a wrong one for nothing.
        let by_server = sig(body, "server");
        assert!(every_part_signed(
            body,
            &by_server,
            &ids(&["A", "B", "X"]),
            &secrets,
            Some("server")
        ));
        assert!(every_part_signed(
            body,
            &by_server,
            &[],
            &secrets,
            Some("server")
        ));
        assert!(!every_part_signed(
            body,
            &by_server,
            &ids(&["A"]),
            &secrets,
            Some("other")
        ));
        assert!(every_part_signed(
            body,
            &by_a,
            &ids(&["A"]),
            &secrets,
            Some("other")
        ));
    }
}
