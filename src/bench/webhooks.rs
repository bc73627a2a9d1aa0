//! P5: webhook ingest. Signed Cloud API bodies of `per_body` customer messages each are
//! POSTed to `/webhooks/whatsapp` with `concurrency` in flight; the report gives how fast they
//! were accepted (stored raw, answered 200) and how fast their messages were stored (applied:
//! visible in the channel's statistics). The server must run with `PALAVER_RATE_LIMITS=off` and
//! `PALAVER_WORKSPACES=open` (the bench makes a workspace of its own for the channel).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use hmac::Mac;
use serde_json::{json, Value};

use super::report::{histogram, record, Probe, Report};
use super::setup::Api;
use super::Common;

/// A workspace of the bench's own (the caller owns it) with a WhatsApp channel.
pub struct Channel {
    pub owner: super::setup::User,
    pub workspace: String,
    pub phone_number_id: String,
    pub secret: String,
    pub tag: String,
}

pub async fn channel(api: &Api, name: &str) -> anyhow::Result<Channel> {
    let owner = api.signup(name).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let ws = api
        .call(
            reqwest::Method::POST,
            "/workspaces",
            Some(&owner.token),
            Some(
                json!({"name": format!("{name} bench"), "slug": format!("{name}-{}", &tag[20..])}),
            ),
        )
        .await
        .context("creating a workspace (run the server with PALAVER_WORKSPACES=open)")?;
    let workspace = ws["id"].as_str().context("workspace id")?.to_owned();
    let phone_number_id = format!(
        "9{}",
        &tag[16..30]
            .bytes()
            .map(|b| (b % 10 + b'0') as char)
            .collect::<String>()
    );
    let secret = format!("bench-secret-{tag}");
    api.call_in(
        &workspace,
        reqwest::Method::POST,
        "/channels",
        Some(&owner.token),
        Some(
            json!({"phoneNumberId": phone_number_id, "appSecret": secret, "accessToken": "unused"}),
        ),
    )
    .await?;
    Ok(Channel {
        owner,
        workspace,
        phone_number_id,
        secret,
        tag,
    })
}

/// `conversations` customers write one message each (ten per signed webhook body) and the
/// bench waits until every message is stored: that many open channel conversations.
pub async fn open_conversations(
    c: &Common,
    api: &Api,
    ch: &Channel,
    conversations: usize,
) -> anyhow::Result<()> {
    let per_body = 10;
    let bodies = conversations.div_ceil(per_body);
    let results = post_all(c, signed(ch, bodies, per_body, conversations), 32).await?;
    if results.iter().any(|(ok, _)| !ok) {
        anyhow::bail!("a webhook was refused");
    }
    stored(api, ch, (bodies * per_body) as u64).await?;
    Ok(())
}

/// `bodies` signed webhook bodies of `per_body` text messages each, from `customers` distinct
/// customers in turn.
pub fn signed(
    ch: &Channel,
    bodies: usize,
    per_body: usize,
    customers: usize,
) -> Vec<(Vec<u8>, String)> {
    let (tag, phone_number_id) = (&ch.tag, &ch.phone_number_id);
    (0..bodies)
        .map(|i| {
            let mut contacts = Vec::new();
            let messages: Vec<Value> = (0..per_body)
                .map(|j| {
                    let n = i * per_body + j;
                    let wa = format!("{}", 4_900_000_000u64 + (n % customers.max(1)) as u64);
                    contacts.push(json!({"wa_id": wa, "profile": {"name": format!("Customer {wa}")}}));
                    json!({"from": wa, "id": format!("wamid.bench.{tag}.{n}"), "timestamp": "1754400000",
                           "type": "text", "text": {"body": format!("message {n}")}})
                })
                .collect();
            let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "bench", "changes": [{
                "field": "messages", "value": {"messaging_product": "whatsapp",
                    "metadata": {"phone_number_id": phone_number_id, "display_phone_number": "1555000"},
                    "contacts": contacts, "messages": messages}}]}]});
            let bytes = serde_json::to_vec(&body).expect("serializes");
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(ch.secret.as_bytes()).expect("key");
            mac.update(&bytes);
            let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            (bytes, sig)
        })
        .collect()
}

/// POSTs the bodies with `concurrency` in flight: (accepted, answer time) of each.
pub async fn post_all(
    c: &Common,
    signed: Vec<(Vec<u8>, String)>,
    concurrency: usize,
) -> anyhow::Result<Vec<(bool, Duration)>> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = format!("{}/webhooks/whatsapp", c.url.trim_end_matches('/'));
    Ok(futures_util::stream::iter(signed)
        .map(|(bytes, sig)| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let t = Instant::now();
                let ok = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sig)
                    .body(bytes)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                (ok, t.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await)
}

/// Waits until the channel's statistics count `total` received messages (at most 300 s).
pub async fn stored(api: &Api, ch: &Channel, total: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let stats = api
            .call_in(
                &ch.workspace,
                reqwest::Method::GET,
                "/stats",
                Some(&ch.owner.token),
                None,
            )
            .await?;
        let n = stats["channels"][0]["messagesByStatus"]["received"]
            .as_u64()
            .unwrap_or(0);
        if n >= total {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("only {n} of {total} messages were stored after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn run(
    c: &Common,
    bodies: usize,
    per_body: usize,
    concurrency: usize,
    customers: usize,
) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let ch = channel(&api, "hooks").await?;
    // Every body made and signed before the clock starts.
    let signed = signed(&ch, bodies, per_body, customers);
    let total = (bodies * per_body) as u64;
    let probe = Probe::start(c.pid);
    let start = Instant::now();
    let results = post_all(c, signed, concurrency).await?;
    let accepted_in = start.elapsed();
    let mut accept = histogram();
    let mut errors = 0;
    for (ok, d) in &results {
        record(&mut accept, *d);
        errors += u64::from(!ok);
    }
    // Stored: the channel's statistics count them.
    let stored = stored(&api, &ch, total).await?;
    let stored_in = start.elapsed();
    let mut report = Report::new(
        "webhooks",
        json!({"bodies": bodies, "perBody": per_body, "concurrency": concurrency, "customers": customers}),
    );
    report.seconds = stored_in.as_secs_f64();
    report.count("messages sent", total);
    report.count("messages stored", stored);
    report.count("webhook errors", errors);
    report.rate(
        "messages accepted (200)",
        total as f64 / accepted_in.as_secs_f64(),
    );
    report.rate("messages stored", total as f64 / stored_in.as_secs_f64());
    report.latency("webhook answer", &accept);
    report.server = probe.finish();
    Ok(report)
}
