//! Push fan-out: groups of `members` whose members all have a Web Push subscription and no
//! device connected; one message to each group is one encrypted, VAPID-signed notification
//! per other member. A receiver in this process stands in for the push service and counts
//! them. The server must run with `PALAVER_RATE_LIMITS=off` and
//! `PALAVER_OUTBOUND_ALLOW=127.0.0.1` (the receiver listens on loopback).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use web_push_native::p256;

use super::report::{histogram, record, Probe, Report};
use super::setup::{parallel, Api, User};
use super::Common;

/// What the receiver saw: how many, and when each came after the sends started.
#[derive(Default)]
struct Seen {
    count: AtomicU64,
    arrivals: Mutex<Vec<Duration>>,
    started: Mutex<Option<Instant>>,
}

async fn receiver(seen: Arc<Seen>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            if let Some(t) = *seen.started.lock().expect("lock") {
                seen.arrivals.lock().expect("lock").push(t.elapsed());
            }
            seen.count.fetch_add(1, Ordering::Relaxed);
            axum::http::StatusCode::CREATED
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(base)
}

fn subscription(endpoint: &str) -> serde_json::Value {
    let rng = ring::rand::SystemRandom::new();
    let secret = loop {
        let mut scalar = [0u8; 32];
        let _ = ring::rand::SecureRandom::fill(&rng, &mut scalar);
        if let Ok(s) = p256::SecretKey::from_slice(&scalar) {
            break s;
        }
    };
    let mut auth = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&rng, &mut auth);
    json!({"endpoint": endpoint, "keys": {
        "p256dh": URL_SAFE_NO_PAD.encode(secret.public_key().to_sec1_bytes()),
        "auth": URL_SAFE_NO_PAD.encode(auth)}})
}

pub async fn run(c: &Common, groups: usize, members: usize) -> anyhow::Result<Report> {
    if members < 2 {
        bail!("a group needs at least 2 members");
    }
    let api = Api::new(&c.url);
    let seen = Arc::new(Seen::default());
    let base = receiver(seen.clone()).await?;
    let owners = api.users("push-owner", groups).await?;
    let others = api.users("push-member", members - 1).await?;
    parallel(others.iter().enumerate().map(|(i, u)| {
        let (api, endpoint) = (api.clone(), format!("{base}/send/{i}"));
        async move {
            api.call(
                reqwest::Method::POST,
                "/push/subscriptions",
                Some(&u.token),
                Some(subscription(&endpoint)),
            )
            .await
        }
    }))
    .await
    .context("subscribing")?;
    let mut conversations = Vec::new();
    for owner in &owners {
        conversations.push(api.group(owner, &others).await?);
    }
    let expected = (groups * (members - 1)) as u64;
    let probe = Probe::start(c.pid);
    *seen.started.lock().expect("lock") = Some(Instant::now());
    let start = Instant::now();
    parallel(owners.iter().zip(&conversations).map(|(owner, conv): (&User, &String)| {
        let api = api.clone();
        async move {
            api.call(
                reqwest::Method::POST,
                &format!("/conversations/{conv}/messages"),
                Some(&owner.token),
                Some(json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": "to everyone"})),
            )
            .await
        }
    }))
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen.count.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            bail!(
                "only {} of {expected} notifications arrived after 300 s (PALAVER_OUTBOUND_ALLOW=127.0.0.1?)",
                seen.count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_in = start.elapsed();
    let arrivals = seen.arrivals.lock().expect("lock").clone();
    let first = arrivals.iter().min().copied().unwrap_or_default();
    let last = arrivals.iter().max().copied().unwrap_or_default();
    let mut latency = histogram();
    for a in &arrivals {
        record(&mut latency, *a);
    }
    let mut report = Report::new("push", json!({"groups": groups, "members": members}));
    report.seconds = all_in.as_secs_f64();
    report.count("notifications expected", expected);
    report.count("notifications received", seen.count.load(Ordering::Relaxed));
    report.rate(
        "notifications/s (first to last)",
        arrivals.len() as f64 / (last - first).as_secs_f64().max(0.001),
    );
    report.latency("send → notification (with the collapse wait)", &latency);
    report.server = probe.finish();
    Ok(report)
}
