//! Live traffic: senders keep a window of `message:send` in flight (or hold a fixed rate),
//! receivers check every `message:new` for order, gaps and duplicates and time it from the
//! send (the text carries the send instant; sender and receiver share this process's clock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::report::{histogram, record, Probe, Report};
use super::setup::{Api, User};
use super::Common;
use crate::client::{Client, Events};

/// How long stragglers (acks, deliveries) are awaited after the sending stops.
const DRAIN: Duration = Duration::from_secs(10);

/// One conversation with its sending socket and the sockets that receive.
struct Lane {
    sender: Client,
    conversation: String,
    receivers: Vec<Events>,
}

#[derive(Default)]
struct SendStats {
    sent: u64,
    acked: u64,
    errors: u64,
}

#[derive(Default)]
struct ReceiveStats {
    delivered: u64,
    in_window: u64,
    gaps: u64,
    out_of_order: u64,
    /// (lane, seq, latency µs) of every delivery, for send → last receiver (fan-out only).
    deliveries: Vec<(u32, i64, u32)>,
}

struct Outcome {
    seconds: f64,
    send: SendStats,
    receive: ReceiveStats,
    ack: Histogram<u64>,
    delivery: Histogram<u64>,
    last_member: Option<Histogram<u64>>,
}

fn conversation_lane(lanes: &[Lane]) -> Arc<HashMap<String, u32>> {
    Arc::new(
        lanes
            .iter()
            .enumerate()
            .map(|(i, l)| (l.conversation.clone(), i as u32))
            .collect(),
    )
}

/// Runs the traffic for `duration` and collects what senders and receivers saw.
async fn drive(
    lanes: Vec<Lane>,
    window: usize,
    rate: u64,
    duration: Duration,
    track_last_member: bool,
) -> anyhow::Result<Outcome> {
    let epoch = Instant::now();
    let index = conversation_lane(&lanes);
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);

    // Warm up: one acknowledged message per lane, so that every connection is live and each
    // receiver's first message sets its starting seq.
    for lane in &lanes {
        let ack = lane
            .sender
            .call("message:send", &message(&lane.conversation, epoch), DRAIN)
            .await?;
        anyhow::ensure!(ack["ok"] == true, "warm-up send failed: {ack}");
    }
    let lanes_n = lanes.len();
    let start = Instant::now();
    let end = start + duration;
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let mut expected_per_ack = Vec::new();
    for (i, lane) in lanes.into_iter().enumerate() {
        expected_per_ack.push(lane.receivers.len() as u64);
        for events in lane.receivers {
            receivers.push(tokio::spawn(receive(
                events,
                epoch,
                end,
                index.clone(),
                delivered.clone(),
                stop_rx.clone(),
                track_last_member,
            )));
        }
        let offset = if rate > 0 {
            Duration::from_secs_f64(lanes_n as f64 / rate as f64 * i as f64 / lanes_n as f64)
        } else {
            Duration::ZERO
        };
        senders.push(tokio::spawn(send(
            lane.sender,
            lane.conversation,
            epoch,
            end,
            window,
            (rate > 0).then(|| Duration::from_secs_f64(lanes_n as f64 / rate as f64)),
            offset,
        )));
    }
    let mut send_stats = SendStats::default();
    let mut ack = histogram();
    let mut expected = 0;
    for (task, per_ack) in senders.into_iter().zip(expected_per_ack) {
        let (s, h) = task.await?;
        send_stats.sent += s.sent;
        send_stats.acked += s.acked;
        send_stats.errors += s.errors;
        expected += s.acked * per_ack;
        ack.add(&h).ok();
    }
    // Deliveries of acked messages, then stop the receivers.
    let deadline = Instant::now() + DRAIN;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_tx.send(true);
    let mut receive_stats = ReceiveStats::default();
    let mut delivery = histogram();
    for task in receivers {
        let (r, h) = task.await?;
        receive_stats.delivered += r.delivered;
        receive_stats.in_window += r.in_window;
        receive_stats.gaps += r.gaps;
        receive_stats.out_of_order += r.out_of_order;
        receive_stats.deliveries.extend(r.deliveries);
        delivery.add(&h).ok();
    }
    let last_member = track_last_member.then(|| {
        let mut last: HashMap<(u32, i64), u32> = HashMap::new();
        for (lane, seq, us) in &receive_stats.deliveries {
            let e = last.entry((*lane, *seq)).or_default();
            *e = (*e).max(*us);
        }
        let mut h = histogram();
        for us in last.values() {
            record(&mut h, Duration::from_micros(*us as u64));
        }
        h
    });
    receive_stats.deliveries.clear();
    Ok(Outcome {
        seconds: duration.as_secs_f64(),
        send: send_stats,
        receive: ReceiveStats {
            delivered: receive_stats.delivered,
            in_window: receive_stats.in_window,
            gaps: receive_stats.gaps,
            out_of_order: receive_stats.out_of_order,
            deliveries: Vec::new(),
        },
        ack,
        delivery,
        last_member,
    })
}

fn message(conversation: &str, epoch: Instant) -> Value {
    json!({
        "conversationId": conversation,
        "clientMsgId": uuid::Uuid::now_v7().to_string(),
        "type": "text",
        "text": epoch.elapsed().as_nanos().to_string(),
    })
}

async fn send(
    sender: Client,
    conversation: String,
    epoch: Instant,
    end: Instant,
    window: usize,
    period: Option<Duration>,
    offset: Duration,
) -> (SendStats, Histogram<u64>) {
    let mut stats = SendStats::default();
    let mut ack = histogram();
    let mut inflight = FuturesUnordered::new();
    let mut pace = period.map(|p| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, p);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    let done =
        |stats: &mut SendStats, ack: &mut Histogram<u64>, (t, r): (Instant, Result<Value, _>)| {
            match r {
                Ok(v) if v["ok"] == true => {
                    stats.acked += 1;
                    record(ack, t.elapsed());
                }
                _ => stats.errors += 1,
            }
        };
    'sending: while Instant::now() < end {
        if let Some(p) = pace.as_mut() {
            tokio::select! {
                _ = p.tick() => {}
                Some(r) = inflight.next(), if !inflight.is_empty() => {
                    done(&mut stats, &mut ack, r);
                    continue;
                }
            }
            if Instant::now() >= end {
                break;
            }
        }
        while inflight.len() >= window {
            match tokio::time::timeout(DRAIN, inflight.next()).await {
                Ok(Some(r)) => done(&mut stats, &mut ack, r),
                _ => {
                    stats.errors += 1;
                    break 'sending;
                }
            }
        }
        let t = Instant::now();
        match sender
            .call_later("message:send", &message(&conversation, epoch))
            .await
        {
            Ok(rx) => {
                stats.sent += 1;
                inflight.push(async move { (t, rx.await) });
            }
            Err(_) => {
                stats.errors += 1;
                break;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + DRAIN;
    while !inflight.is_empty() {
        match tokio::time::timeout_at(deadline, inflight.next()).await {
            Ok(Some(r)) => done(&mut stats, &mut ack, r),
            _ => {
                stats.errors += inflight.len() as u64;
                break;
            }
        }
    }
    (stats, ack)
}

async fn receive(
    mut events: Events,
    epoch: Instant,
    end: Instant,
    index: Arc<HashMap<String, u32>>,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
    track: bool,
) -> (ReceiveStats, Histogram<u64>) {
    let mut stats = ReceiveStats::default();
    let mut latency = histogram();
    let mut last_seq: HashMap<u32, i64> = HashMap::new();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = stop.changed() => break,
        };
        let Some(event) = event else { break };
        if event.name != "message:new" {
            continue;
        }
        let m = &event.data["message"];
        let (Some(seq), Some(lane)) = (
            m["seq"].as_i64(),
            m["conversationId"].as_str().and_then(|c| index.get(c)),
        ) else {
            continue;
        };
        let Some(sent_ns) = m["text"].as_str().and_then(|t| t.parse::<u128>().ok()) else {
            continue;
        };
        let now = Instant::now();
        let us = now.duration_since(epoch).as_nanos().saturating_sub(sent_ns) / 1000;
        match last_seq.get(lane) {
            Some(&prev) if seq == prev + 1 => {}
            Some(&prev) if seq <= prev => stats.out_of_order += 1,
            Some(&prev) => stats.gaps += (seq - prev - 1) as u64,
            None => {
                // The lane's warm-up message: it sets the starting seq and is not measured (it
                // waited in the socket while the other lanes warmed up).
                last_seq.insert(*lane, seq);
                continue;
            }
        }
        let prev = last_seq.entry(*lane).or_insert(seq);
        *prev = (*prev).max(seq);
        stats.delivered += 1;
        if now < end {
            stats.in_window += 1;
        }
        delivered.fetch_add(1, Ordering::Relaxed);
        record(&mut latency, Duration::from_micros(us as u64));
        if track {
            stats
                .deliveries
                .push((*lane, seq, us.min(u32::MAX as u128) as u32));
        }
    }
    (stats, latency)
}

fn fill(report: &mut Report, o: &Outcome) {
    report.seconds = o.seconds;
    report.count("sent", o.send.sent);
    report.count("acked", o.send.acked);
    report.count("errors", o.send.errors);
    report.count("delivered", o.receive.delivered);
    report.count("gaps", o.receive.gaps);
    report.count("duplicates_or_out_of_order", o.receive.out_of_order);
    report.rate("acked", o.send.acked as f64 / o.seconds);
    report.rate("delivered", o.receive.in_window as f64 / o.seconds);
    report.latency("ack (send → ack)", &o.ack);
    report.latency("delivery (send → receive)", &o.delivery);
    if let Some(h) = &o.last_member {
        report.latency("send → last member", h);
    }
}

/// P1 / P1L: `users` / 2 pairs of direct chats, one side sending.
pub async fn pairs(
    c: &Common,
    users: usize,
    window: usize,
    rate: u64,
    duration: Duration,
    receivers_url: Option<&str>,
) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let receiving = receivers_url.map(|url| api.at(url));
    let lanes = pair_lanes(&api, receiving.as_ref().unwrap_or(&api), users / 2).await?;
    let probe = Probe::start(c.pid);
    let outcome = drive(lanes, window, rate, duration, false).await?;
    let mut report = Report::new(
        "chat",
        json!({"users": users, "window": window, "rate": rate, "duration_s": duration.as_secs(),
               "receivers_url": receivers_url}),
    );
    fill(&mut report, &outcome);
    report.server = probe.finish();
    Ok(report)
}

/// Pairs whose senders connect through `api` and receivers through `receiving`.
async fn pair_lanes(api: &Api, receiving: &Api, pairs: usize) -> anyhow::Result<Vec<Lane>> {
    eprintln!("setting up {pairs} pairs…");
    let senders = api.users("s", pairs).await?;
    let receivers = api.users("r", pairs).await?;
    let conversations = super::setup::parallel(
        senders
            .iter()
            .zip(&receivers)
            .map(|(s, r)| api.direct(s, r)),
    )
    .await?;
    let sending = api.connect_all(&senders).await?;
    let receiving = receiving.connect_all(&receivers).await?;
    Ok(sending
        .into_iter()
        .zip(receiving)
        .zip(conversations)
        .map(|(((sender, _), (_, events)), conversation)| Lane {
            sender,
            conversation,
            receivers: vec![events],
        })
        .collect())
}

/// P2: groups of `members`, the owner sending, every other member receiving.
pub async fn fanout(
    c: &Common,
    groups: usize,
    members: usize,
    window: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<Report> {
    anyhow::ensure!(members >= 2, "a group needs 2 members or more");
    let api = Api::new(&c.url);
    eprintln!("setting up {groups} groups of {members}…");
    let mut lanes = Vec::new();
    for g in 0..groups {
        let owner = api.signup(&format!("owner{g}")).await?;
        let others = api.users(&format!("g{g}m"), members - 1).await?;
        let conversation = api.group(&owner, &others).await?;
        let (sender, _) = api.connect(&owner).await?;
        let receivers = api
            .connect_all(&others)
            .await?
            .into_iter()
            .map(|(_, events)| events)
            .collect();
        lanes.push(Lane {
            sender,
            conversation,
            receivers,
        });
    }
    let probe = Probe::start(c.pid);
    let outcome = drive(lanes, window, rate, duration, true).await?;
    let mut report = Report::new(
        "fanout",
        json!({"groups": groups, "members": members, "window": window, "rate": rate, "duration_s": duration.as_secs()}),
    );
    fill(&mut report, &outcome);
    report.server = probe.finish();
    Ok(report)
}

/// What the catch-up reads of a `sync:request` page: the rest of each event is skipped while
/// parsing, as a client that stores events as they come would not build them twice.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncPage {
    ok: bool,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    events: Vec<SyncEvent>,
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    has_more: bool,
}

#[derive(serde::Deserialize)]
struct SyncEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: SyncData,
}

#[derive(serde::Deserialize, Default)]
struct SyncData {
    #[serde(default)]
    message: Option<SeqOnly>,
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    seq: i64,
}

/// P4: a device offline while `messages` arrive; then the time to page through them all with
/// `sync:request`, `repeat` times from the same cursor, checking that nothing is missing or
/// repeated.
pub async fn catchup(
    c: &Common,
    messages: usize,
    limit: usize,
    repeat: usize,
) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    let a = api.signup("writer").await?;
    let b = api.signup("reader").await?;
    let conversation = api.direct(&a, &b).await?;
    let (b_socket, b_events) = api.connect(&b).await?;
    let snapshot = b_socket
        .call("sync:request", &json!({}), DRAIN)
        .await
        .context("snapshot")?;
    let cursor = snapshot["cursor"]
        .as_str()
        .context("a snapshot cursor")?
        .to_owned();
    b_socket.close().await;
    drop(b_events);

    eprintln!("sending {messages} messages while the reader is offline…");
    let (a_socket, _a_events) = api.connect(&a).await?;
    let epoch = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for _ in 0..messages {
        while inflight.len() >= 64 {
            let ack: Result<Value, _> = inflight.next().await.context("an ack")?;
            anyhow::ensure!(ack.ok().is_some_and(|v| v["ok"] == true), "a send failed");
        }
        inflight.push(
            a_socket
                .call_later("message:send", &message(&conversation, epoch))
                .await?,
        );
    }
    while let Some(ack) = inflight.next().await {
        anyhow::ensure!(ack.ok().is_some_and(|v| v["ok"] == true), "a send failed");
    }

    let (b_socket, _b_events) = api.connect(&b).await?;
    let probe = Probe::start(c.pid);
    let mut took = histogram();
    let mut pages = 0;
    let mut problems = Vec::new();
    for _ in 0..repeat {
        let started = Instant::now();
        let mut cursor = cursor.clone();
        let mut seqs = Vec::with_capacity(messages + 1);
        loop {
            let page: SyncPage = b_socket
                .call_as(
                    "sync:request",
                    &json!({"cursor": cursor, "limit": limit}),
                    DRAIN,
                )
                .await?;
            anyhow::ensure!(page.ok, "sync:request failed: {:?}", page.error);
            pages += 1;
            for e in &page.events {
                if e.kind == "message:new" {
                    seqs.push(e.data.message.as_ref().map_or(-1, |m| m.seq));
                }
            }
            cursor = page.cursor;
            if !page.has_more {
                break;
            }
        }
        record(&mut took, started.elapsed());
        let expected: Vec<i64> = (1..=messages as i64).collect();
        if seqs != expected {
            problems.push(format!(
                "got {} messages, expected seq 1..={messages} exactly once in order",
                seqs.len()
            ));
        }
    }
    let mut report = Report::new(
        "catchup",
        json!({"messages": messages, "limit": limit, "repeat": repeat}),
    );
    report.seconds = took.max() as f64 / 1e6;
    report.count("catchups", repeat as u64);
    report.count("pages", pages);
    report.count("incomplete", problems.len() as u64);
    report.latency("full catch-up", &took);
    report.server = probe.finish();
    report.notes = problems;
    Ok(report)
}

/// P6: the conversation list (of a user with `conversations` chats) and a history page,
/// read over HTTP while chat traffic runs at `rate`.
pub async fn reads(
    c: &Common,
    conversations: usize,
    rate: u64,
    users: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let api = Api::new(&c.url);
    eprintln!("setting up a reader with {conversations} conversations…");
    let reader = api.signup("reader").await?;
    let peers = api.users("peer", conversations).await?;
    let ids = super::setup::parallel(peers.iter().map(|p| {
        let api = api.clone();
        let reader = reader.clone();
        async move {
            let id = api.direct(&reader, p).await?;
            say(&api, &reader, &id).await?;
            Ok(id)
        }
    }))
    .await?;
    let history_of = ids[0].clone();
    for _ in 0..49 {
        say(&api, &reader, &history_of).await?;
    }
    let lanes = if rate > 0 {
        pair_lanes(&api, &api, users / 2).await?
    } else {
        Vec::new()
    };
    let probe = Probe::start(c.pid);
    let load = tokio::spawn(drive(lanes, 64, rate, duration, false));
    let mut list = histogram();
    let mut history = histogram();
    let mut errors = 0;
    let end = Instant::now() + duration;
    while Instant::now() < end {
        for (h, path) in [
            (&mut list, "/conversations?limit=50".to_owned()),
            (
                &mut history,
                format!("/conversations/{history_of}/messages?limit=50"),
            ),
        ] {
            let t = Instant::now();
            match api
                .call(reqwest::Method::GET, &path, Some(&reader.token), None)
                .await
            {
                Ok(_) => record(h, t.elapsed()),
                Err(_) => errors += 1,
            }
        }
    }
    let mut report = Report::new(
        "reads",
        json!({"conversations": conversations, "rate": rate, "users": users, "duration_s": duration.as_secs()}),
    );
    if rate > 0 {
        let outcome = load.await??;
        fill(&mut report, &outcome);
    } else {
        load.abort();
    }
    report.seconds = duration.as_secs_f64();
    report.count("read_errors", errors);
    report.latency("GET conversation list", &list);
    report.latency("GET history page", &history);
    report.server = probe.finish();
    Ok(report)
}

async fn say(api: &Api, from: &User, conversation: &str) -> anyhow::Result<()> {
    api.call(
        reqwest::Method::POST,
        &format!("/conversations/{conversation}/messages"),
        Some(&from.token),
        Some(json!({"clientMsgId": uuid::Uuid::now_v7().to_string(), "type": "text", "text": "0"})),
    )
    .await?;
    Ok(())
}
