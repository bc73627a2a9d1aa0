//! Palaver: a self-hosted messaging backend for WhatsApp-style products, in one binary.
//!
//! # Layout
//!
//! One crate, organised by capability. Each capability module owns its rules and its SQL:
//! `model.rs` (domain and API types, validated inputs), `store.rs` (queries only, no HTTP),
//! `service.rs` (the rules, shared by HTTP, Socket.IO and jobs; skipped where it would only
//! forward a query) and `routes.rs` (thin handlers: extract, call, answer).
//!
//! | module | owns |
//! |---|---|
//! | [`cli`] | the command line: `serve` (default), `migrate`, `admin create`, `keys generate`, `demo`, `openapi`, `bench`, `import-webhooks`, and the hidden `pdf-info` (PDFs read apart from the server) |
//! | [`server`] | the wiring: routes, OpenAPI, middleware stack, background tasks, job kinds, the cluster's node side, graceful shutdown |
//! | [`app`] | the shared state: the handles every handler and task uses |
//! | [`demo`] | demo users, chats and messages for a newcomer |
//! | [`config`] | settings from `palaver.toml`, the environment and flags |
//! | [`error`] | the one error type and the list of problem codes |
//! | [`events`] | every Socket.IO event name |
//! | [`engineio`] | Engine.IO v4, the server side: WebSocket and long-polling sessions, the upgrade, heartbeats, bounded per-session queues of shared packets |
//! | [`http`] | extractors (JSON, query, auth, workspace scope, client IP), pagination, middleware, the connection loop (header read timeout) |
//! | [`outbound`] | the one HTTP client for requests to the outside world: no loopback, private or link-local targets (after DNS, on redirects), capped answers |
//! | [`db`] | the data-access layer over SQLite or PostgreSQL, migrations, the tenant scope and the caller's role in it |
//! | [`changes`] | the change log every visible change writes, one helper per kind, read in order without gaps |
//! | [`audit`] | the append-only audit log: who did what, when, to what (written in the transaction of the change) |
//! | [`ratelimit`] | request rate limits behind one interface (memory on one node, Redis in cluster mode) |
//! | [`auth`] | signup, login, OTP, refresh-token rotation, sessions, email verification, signing keys, JWKS, the caller's own account (`/users/me`: changes, erasure) |
//! | [`users`] | profiles and privacy, others' public profiles, search, contacts, blocks |
//! | [`workspaces`] | tenants, memberships, roles, invitations |
//! | [`conversations`] | conversations as data: rows of conversations and members, their queries, the one access check, the events automation rules wait for (queued in the transaction of the change), and the facts analytics reads (written likewise) |
//! | [`chats`] | what a user does with conversations: direct chats, groups, members and roles (with their system messages), message requests, settings, the list with last messages, message search |
//! | [`messages`] | parsing a send (`model`), checks (`service`), the one-row write (`write`), the batched write (`pipeline`), views (`views`), history, edits, deletion, reactions, receipts, sends to WhatsApp customers (`channel`: window, templates, the jobs that carry them out) and the templates themselves |
//! | [`sync`] | pages of a user's change stream (`GET /sync`, `sync:request`): on SQLite written to JSON as their rows are read (`written`), else built from views (`service`); the wire shape of a change (`envelope`) |
//! | [`realtime`] | the Socket.IO gateway (`gateway`), the device registry (`hub`), presence, client events, the dispatcher that pushes the change log live |
//! | [`notify`] | SMS and mail senders |
//! | [`ops`] | health, readiness, metrics, `/docs` |
//! | [`web`] | the web app at `/` (messenger, inbox, admin): the built files of `web/`, embedded |
//! | [`media`] | uploads (`upload`), storage (directory or S3), sniffing, thumbnails, durations, PDF text, OCR, transcription, protected downloads |
//! | [`jobs`] | the durable background job runner (leases, retries with backoff; kinds handed in by `server`) and leases for scheduled work |
//! | [`inbox`] | the team inbox and support desk: leads (stages, tags, opt-in, attributes, CSV import and export), support conversations, status, snooze, assignment and auto-assignment, notes, canned responses, the audit log's route |
//! | [`ai`] | AI analysis: opt-in per workspace, runs (`POST /ai/analyze`, and the idle trigger under a lease) carried out by a durable job, insights for agents (`insight:new`); OpenAI-compatible providers (retries, circuit breaker, checked answers), workspace keys sealed at rest with rotation, usage records and the monthly budget, and the offline analyzer that needs no provider |
//! | [`automations`] | bot rules: triggers (customers' messages, openings, stage and tag changes from `conversations::triggers`; timed ones from a scan under a lease), conditions, actions carried out with the job's end in one transaction, runs, signed webhooks |
//! | [`analytics`] | reports of the inbox, its agents, channels and campaigns over a range, per day in the workspace's timezone, in wall time and business hours, as JSON and CSV, from the facts `conversations::facts` writes in the transaction of each change |
//! | [`campaigns`] | template campaigns: drafts, states, the audience of opted-in leads, the sender under a lease (paced per channel, claimed with the messages and send jobs in one transaction), the funnel read from the messages |
//! | [`whatsapp`] | the Cloud API bridge: channels, webhooks (customers become leads), outbound queue, templates, import |
//! | [`push`] | push notifications for devices that are not connected: subscriptions, VAPID, the change-log follower, Web Push and gateway webhooks |
//! | [`calls`] | 1:1 calls: the state machine (ring, answer, busy, missed, failed), the call log and call messages, the ICE servers with short-lived TURN credentials; `realtime::calls` carries the `call:*` events |
//! | [`cluster`] | cluster mode: Redis fan-out between nodes, presence across nodes, heartbeats (the node's side behind [`cluster::Node`]) |
//! | `bench`, `client` | the load generator and the Socket.IO client it and the tests use; the default `bench` feature, never imported by the server |
//!
//! ## Floors
//!
//! Every module points down. No file imports one that imports it back, and no capability
//! folder imports one that imports it back (`tests/api/layout.rs` reads the `use` lines and
//! fails on a loop, naming it). From the ground up:
//!
//! 1. `config`, `error`, `events`, `engineio`, `outbound`, `telemetry`, `notify`, `db` (with the tenant
//!    scope, [`db::Role`] and the membership lookups every transport uses), `changes`, `audit`,
//!    `jobs`, `cluster`, `ratelimit`;
//! 2. `http`: extractors, validation, pagination;
//! 3. `conversations`, `media`, `users`: rows, queries and the rules that need nothing above;
//! 4. `messages`, on `conversations` (a message lives in one), `media` and `users`;
//! 5. `chats`, on `messages` (a conversation shows its last message; membership changes write
//!    system messages);
//! 6. `workspaces`, then `auth` (signup joins workspaces and their channel conversations;
//!    erasing an account leaves its groups);
//! 7. `inbox`, on `chats` (an inbox conversation is viewed like any other) and `workspaces`
//!    (the desk's settings); then `ai` (a suggested reply is a canned response filled in for the
//!    lead), `whatsapp` (its customers are leads), `sync`, `calls`,
//!    `push`, `ops`, `web` (files only), then `realtime` (which carries the call events and pushes an incoming call
//!    to a callee who is away), `automations` (its actions send messages, assign, tag and
//!    write notes through `messages` and `inbox`), `campaigns` (templates to leads through
//!    `whatsapp`'s channels and `messages`) and `analytics` (which reads the facts
//!    `conversations::facts` keeps, the workspace's hours and the campaigns' funnels);
//! 8. [`app::AppState`], the handles every transport shares; [`server`], the wiring; [`cli`].
//!
//! The arrows that point up, on purpose: every transport (routes, job handlers, `http`'s
//! extractors, the gateway and the dispatcher) takes the shared state, and the state holds the
//! handles of the floors below it (`auth`'s keys and session gate, the `media` store, the
//! `messages` send queue, `realtime`'s hub and presence), types that never name the state.
//! A handle a lower floor must call is reached through the state, not by importing its folder:
//! `http` checks a token with `state.keys` (whose error turns into the problem document by a
//! `From`), and `jobs` and `cluster` call the state through their own traits (`jobs::Host`,
//! `cluster::Node`), implemented by `app` and `server`.
//!
//! # A message's path
//!
//! `message:send` on a socket: `realtime::gateway` (the device's worker, in event order) →
//! `realtime::handlers::send_queued` → `messages::model::Content::parse` →
//! `messages::service::send_queued` (media and replies checked; a plain send is queued at
//! once) → `messages::pipeline` (batched with other sends into one transaction, which checks
//! each sender first — `conversations::access::SendCheck`: a member, no block or declined
//! request — and writes those that pass as `messages::write::Plan` lays out their rows, marks
//! and `changes`; the others, and requests, the support desk and WhatsApp customers
//! (`messages::channel`), go alone through `conversations::access` and every check to
//! `write::write_one`) → the ack once durable
//! (`handlers::send_finish`). The commit wakes `realtime::dispatch`, which reads the
//! `changes`, works out who is connected and may see each, builds the views once
//! (`messages::views`), the payload once (`sync::envelope`), and hands the same bytes to every
//! device through `realtime::hub`: the peer's `message:new`, queued on its `engineio::Socket`
//! and written by its connection's task.
//!
//! Migrations live in `migrations/sqlite` and `migrations/postgres`.

pub mod ai;
pub mod analytics;
pub mod app;
pub mod audit;
pub mod auth;
pub mod automations;
#[cfg(feature = "bench")]
pub mod bench;
pub mod calls;
pub mod campaigns;
pub mod changes;
pub mod chats;
pub mod cli;
#[cfg(feature = "bench")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod conversations;
pub mod db;
pub mod demo;
pub mod engineio;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzzing;
pub mod http;
pub mod inbox;
pub mod jobs;
pub mod media;
pub mod messages;
pub mod notify;
pub mod ops;
pub mod outbound;
pub mod push;
pub mod ratelimit;
pub mod realtime;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod users;
pub mod web;
pub mod whatsapp;
pub mod workspaces;
