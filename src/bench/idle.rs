//! P3: many authenticated sockets that only answer pings; the server's RSS per connection and
//! whether they all stay connected.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::report::{Probe, Report};
use super::setup::Api;
use super::Common;

/// Devices per user: the sockets are spread over this many per account.
const DEVICES_PER_USER: usize = 50;

pub async fn run(c: &Common, connections: usize, duration: Duration) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let users = api
        .users("idle", connections.div_ceil(DEVICES_PER_USER))
        .await?;
    // Let the server settle after sign-up (password hashing buffers) before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probe = Probe::start(c.pid);
    eprintln!("opening {connections} sockets…");
    let dropped = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let sockets: Vec<_> = futures_util::stream::iter((0..connections).map(|i| {
        let api = api.clone();
        let user = users[i % users.len()].clone();
        async move { api.connect(&user).await }
    }))
    .buffer_unordered(64)
    .collect()
    .await;
    let connect_seconds = started.elapsed().as_secs_f64();
    let mut clients = Vec::new();
    let mut failed = 0;
    for s in sockets {
        match s {
            Ok((client, mut events)) => {
                let dropped = dropped.clone();
                // Counts connections the server ends; other events are read and ignored.
                tokio::spawn(async move {
                    while events.next().await.is_some() {}
                    dropped.fetch_add(1, Ordering::Relaxed);
                });
                clients.push(client);
            }
            Err(_) => failed += 1,
        }
    }
    let rss_connected = probe.rss_now();
    eprintln!("holding them for {} s…", duration.as_secs());
    tokio::time::sleep(duration).await;
    let mut report = Report::new(
        "idle",
        json!({"connections": connections, "duration_s": duration.as_secs()}),
    );
    report.seconds = duration.as_secs_f64();
    report.count("connected", clients.len() as u64);
    report.count("connect_failures", failed);
    report.count("dropped_while_idle", dropped.load(Ordering::Relaxed));
    report.rate("connects", clients.len() as f64 / connect_seconds);
    report.server = probe.finish();
    if let (Some(server), Some(connected)) = (&report.server, rss_connected) {
        let n = clients.len().max(1) as f64;
        let per = (connected.saturating_sub(server.rss_before_kib)) as f64 / n;
        let per_end = (server.rss_after_kib.saturating_sub(server.rss_before_kib)) as f64 / n;
        report.notes.push(format!(
            "server RSS per connection: {per:.2} KiB once connected, {per_end:.2} KiB after {} s",
            duration.as_secs()
        ));
    }
    for client in &clients {
        client.close().await;
    }
    Ok(report)
}
