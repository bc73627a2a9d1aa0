//! `palaver bench`: the load generator behind BENCHMARKS.md. It speaks only the public contract
//! (HTTP for setup and reads, Socket.IO over WebSocket for live traffic, through
//! [`crate::client`]), so it measures any server that implements it.
//!
//! Scenarios follow quality.md: `chat` (P1, P1L with `--rate`, P7 with `--receivers-url`), `fanout` (P2), `idle` (P3),
//! `catchup` (P4), `webhooks` (P5), `reads` (P6), `push` (push fan-out), `inbox` (views, counts, CSV import), `ai-idle` (the AI idle trigger's overhead), `campaign` (campaign send rate), `analytics` (report latency on a big inbox). Each prints a report (throughput, latency percentiles, errors,
//! duplicates, gaps, order, server RSS and CPU when given `--pid`) as text, or as JSON with
//! `--json`. The server must run with `PALAVER_RATE_LIMITS=off`.

mod ai;
mod analytics;
mod campaign;
mod chat;
mod idle;
mod inbox;
mod push;
mod report;
mod setup;
mod webhooks;

use std::time::Duration;

use clap::{Args, Subcommand};

pub use report::Report;

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The server's base URL
    #[arg(long, default_value = "http://127.0.0.1:3000", global = true)]
    pub url: String,
    /// The server's process id: its RSS and CPU time are read from /proc and reported
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Print the report as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// P1/P1L: users in pairs of direct chats; each sender keeps `window` sends in flight (or
    /// all senders together keep `rate` messages per second); receivers check order and gaps
    Chat {
        /// Connected users (half send, half receive)
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 8)]
        window: usize,
        /// Fixed total send rate (messages/s); 0 sends as fast as acks come back
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Seconds of measured traffic
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// P7: receivers connect to this node instead (senders stay on `--url`), so every
        /// delivery crosses nodes
        #[arg(long)]
        receivers_url: Option<String>,
    },
    /// P2: groups with one sender each; every other member receives
    Fanout {
        #[arg(long, default_value_t = 5)]
        groups: usize,
        #[arg(long, default_value_t = 100)]
        members: usize,
        #[arg(long, default_value_t = 8)]
        window: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// P3: authenticated sockets that only answer pings
    Idle {
        #[arg(long, default_value_t = 19_000)]
        connections: usize,
        /// Seconds to hold them (longer than the ping interval shows they stay connected)
        #[arg(long, default_value_t = 30)]
        duration: u64,
    },
    /// P4: a device offline while `messages` arrive, then catching up with sync:request
    Catchup {
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Page size asked of sync:request
        #[arg(long, default_value_t = 500)]
        limit: usize,
        /// Catch-ups to time (the report gives percentiles)
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
    /// P5: signed WhatsApp webhook bodies of `per_body` messages; accepted and stored rates
    /// (the server needs PALAVER_WORKSPACES=open besides PALAVER_RATE_LIMITS=off)
    Webhooks {
        #[arg(long, default_value_t = 2000)]
        bodies: usize,
        #[arg(long, default_value_t = 10)]
        per_body: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Distinct customers (channel conversations) the messages come from
        #[arg(long, default_value_t = 1000)]
        customers: usize,
    },
    /// Push fan-out: one message to each group of `members`, every member offline with a Web
    /// Push subscription (the server needs PALAVER_OUTBOUND_ALLOW=127.0.0.1)
    Push {
        #[arg(long, default_value_t = 4)]
        groups: usize,
        #[arg(long, default_value_t = 256)]
        members: usize,
    },
    /// The team inbox: view and count latency with `conversations` open WhatsApp
    /// conversations and `agents` agents, then a CSV import of `rows` leads (rows/s, and the
    /// latency of single lead writes meanwhile); the server needs PALAVER_WORKSPACES=open
    Inbox {
        #[arg(long, default_value_t = 10_000)]
        conversations: usize,
        #[arg(long, default_value_t = 50)]
        agents: usize,
        #[arg(long, default_value_t = 100_000)]
        rows: usize,
        /// Requests timed per view
        #[arg(long, default_value_t = 200)]
        requests: usize,
    },
    /// The AI idle trigger's overhead: CPU and scan statements per minute with `conversations`
    /// conversations waiting for their quiet period, then every insight once all come due (the
    /// server needs PALAVER_WORKSPACES=open)
    AiIdle {
        #[arg(long, default_value_t = 10_000)]
        conversations: usize,
        /// Seconds of waiting measured
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
    /// Campaign sends: `recipients` opted-in leads, a channel paced at `rate` messages a second
    /// whose Graph API the bench stands in for; the send rate it saw (the server needs
    /// PALAVER_WORKSPACES=open and PALAVER_OUTBOUND_ALLOW=127.0.0.1)
    Campaign {
        #[arg(long, default_value_t = 10_000)]
        recipients: usize,
        /// The channel's sendRate, 1 to 1000
        #[arg(long, default_value_t = 80)]
        rate: u64,
    },
    /// Analytics latency on a big inbox: `messages` messages in `conversations` WhatsApp
    /// conversations over `days` days with their facts, written straight into the server's
    /// database (DATABASE_URL or PALAVER_DATA_DIR); then `requests` of each report
    Analytics {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 25_000)]
        conversations: usize,
        #[arg(long, default_value_t = 20)]
        agents: usize,
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long, default_value_t = 100)]
        requests: usize,
        /// The server's database [default: DATABASE_URL, else PALAVER_DATA_DIR's SQLite file]
        #[arg(long)]
        database_url: Option<String>,
    },
    /// P6: conversation list and history page latency, with chat load at `rate` beside them
    Reads {
        /// Conversations of the reading user
        #[arg(long, default_value_t = 1000)]
        conversations: usize,
        /// Background chat load (messages/s) from `users` connected users
        #[arg(long, default_value_t = 12_500)]
        rate: u64,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let report = measure(&args).await?;
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// Runs the scenario and returns its report.
pub async fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    let c = &args.common;
    Ok(match args.scenario.clone() {
        Scenario::Chat {
            users,
            window,
            rate,
            duration,
            receivers_url,
        } => {
            chat::pairs(
                c,
                users,
                window,
                rate,
                Duration::from_secs(duration),
                receivers_url.as_deref(),
            )
            .await?
        }
        Scenario::Fanout {
            groups,
            members,
            window,
            rate,
            duration,
        } => {
            chat::fanout(
                c,
                groups,
                members,
                window,
                rate,
                Duration::from_secs(duration),
            )
            .await?
        }
        Scenario::Idle {
            connections,
            duration,
        } => idle::run(c, connections, Duration::from_secs(duration)).await?,
        Scenario::Catchup {
            messages,
            limit,
            repeat,
        } => chat::catchup(c, messages, limit, repeat).await?,
        Scenario::Webhooks {
            bodies,
            per_body,
            concurrency,
            customers,
        } => webhooks::run(c, bodies, per_body, concurrency, customers).await?,
        Scenario::Push { groups, members } => push::run(c, groups, members).await?,
        Scenario::Inbox {
            conversations,
            agents,
            rows,
            requests,
        } => inbox::run(c, conversations, agents, rows, requests).await?,
        Scenario::AiIdle {
            conversations,
            duration,
        } => ai::run(c, conversations, Duration::from_secs(duration)).await?,
        Scenario::Campaign { recipients, rate } => campaign::run(c, recipients, rate).await?,
        Scenario::Analytics {
            messages,
            conversations,
            agents,
            days,
            requests,
            database_url,
        } => {
            let size = analytics::Size {
                messages,
                conversations,
                agents,
                days,
                requests,
                database_url,
            };
            analytics::run(c, size).await?
        }
        Scenario::Reads {
            conversations,
            rate,
            users,
            duration,
        } => chat::reads(c, conversations, rate, users, Duration::from_secs(duration)).await?,
    })
}
