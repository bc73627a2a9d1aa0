//! The webhook action: a POST of what fired, signed with the rule's secret, delivered by a
//! durable job through the SSRF-safe outbound client and retried with backoff (429, 5xx,
//! timeouts); a delivery that gives up marks its run failed.
//!
//! Signature: `X-Palaver-Signature: sha256=<hex>`, the HMAC-SHA256 with the secret of
//! `<X-Palaver-Timestamp>.<body>` (the timestamp in Unix seconds, fresh on every attempt, so a
//! receiver can refuse old replays). `X-Palaver-Delivery` is the same on every attempt of one
//! delivery: a receiver that may see a retry of a delivery it already took drops it by that id.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use super::store::{self, Rule};
use crate::app::AppState;
use crate::conversations::model::ConversationRow;
use crate::db::{new_id, Timestamp, Tx};
use crate::error::{AppError, AppResult};
use crate::jobs::{Job, JobError, JobResult};

pub const JOB: &str = "automation.webhook";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    id: String,
    run_id: String,
    url: String,
    /// Sealed with the server secret, as the rule stores it.
    secret: String,
    body: String,
}

/// What a delivery tells of the lead.
#[derive(sqlx::FromRow)]
struct LeadFace {
    id: String,
    name: Option<String>,
    wa_id: Option<String>,
    email: Option<String>,
    stage: String,
}

/// Queues the delivery, in the transaction that records the run.
pub async fn queue(
    tx: &mut Tx,
    t: crate::db::Tenant<'_>,
    (rule, run_id): (&Rule, &str),
    c: &ConversationRow,
    url: &str,
    sealed: &str,
) -> AppResult<()> {
    let lead: Option<LeadFace> = match &c.lead_id {
        Some(id) => {
            sqlx::query_as("SELECT id, name, wa_id, email, stage FROM leads WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?
        }
        None => None,
    };
    let id = new_id();
    let body = json!({
        "id": id,
        "event": "automation.fired",
        "at": Timestamp(crate::db::now_ms()),
        "workspaceId": t.workspace_id(),
        "automation": {"id": rule.id, "name": rule.name, "trigger": rule.trigger.kind.as_str()},
        "runId": run_id,
        "conversation": {
            "id": c.id, "kind": c.kind, "channelId": c.channel_id,
            "status": c.inbox_status, "assigneeId": c.assignee_id,
        },
        "lead": lead.map(|l| json!({
            "id": l.id, "name": l.name, "phone": l.wa_id.map(|w| format!("+{w}")),
            "email": l.email, "stage": l.stage,
        })),
    });
    let d = Delivery {
        id,
        run_id: run_id.to_owned(),
        url: url.to_owned(),
        secret: sealed.to_owned(),
        body: body.to_string(),
    };
    let payload = serde_json::to_string(&d).map_err(AppError::internal)?;
    crate::jobs::enqueue(tx, JOB, &payload).await
}

/// `sha256=<hex>` of `<timestamp>.<body>` with `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn deliver(state: AppState, job: Arc<Job>) -> JobResult {
    let d: Delivery = serde_json::from_str(&job.payload).map_err(JobError::permanent)?;
    let secret = state.secret.open(&d.secret).ok_or_else(|| {
        JobError::permanent("the webhook's secret cannot be opened with this server's secret")
    })?;
    let timestamp = chrono::Utc::now().timestamp();
    let resp = state
        .http
        .post(&d.url)?
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Palaver-Delivery", &d.id)
        .header("X-Palaver-Timestamp", timestamp.to_string())
        .header(
            "X-Palaver-Signature",
            signature(&secret, timestamp, &d.body),
        )
        .body(d.body.clone())
        .send()
        .await
        .map_err(crate::jobs::request_error)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let after = crate::jobs::retry_after(resp.headers());
    let what = format!("the webhook answered {status}");
    Err(crate::jobs::provider_error(status, after, what))
}

/// A delivery that gave up: its run is failed, with why.
pub async fn gave_up(state: AppState, job: Arc<Job>, error: String) -> AppResult<()> {
    let Ok(d) = serde_json::from_str::<Delivery>(&job.payload) else {
        return Ok(());
    };
    let error = format!("webhook {}: {error}", d.url);
    store::run_failed(&state.db, &d.run_id, &error).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_signature_is_the_hmac_of_timestamp_and_body() {
        // Checked against `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            super::signature("secret", 1_700_000_000, r#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
