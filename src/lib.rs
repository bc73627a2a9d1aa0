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
//! | [`http`] | extractors (JSON, query, auth, workspace scope, client IP), pagination, middleware, the connection loop (header read timeout) |
//! | [`outbound`] | the one HTTP client for requests to the outside world: no loopback, private or link-local targets (after DNS, on redirects), capped answers |
//! | [`db`] | the data-access layer over SQLite or PostgreSQL, migrations, tenant scope |
//! | [`changes`] | the change log every visible change writes, one helper per kind, read in order without gaps |
//! | [`ratelimit`] | request rate limits behind one interface (memory on one node, Redis in cluster mode) |
//! | [`auth`] | signup, login, OTP, refresh-token rotation, sessions, email verification, signing keys, JWKS |
//! | [`users`] | profiles, privacy, search, contacts, blocks, erasure |
//! | [`workspaces`] | tenants, memberships, roles, invitations |
//! | [`chats`] | conversations: direct, groups, members and roles, message requests, settings, the list |
//! | [`messages`] | parsing a send (`model`), checks (`service`), the one-row write (`write`), the batched write (`pipeline`), views (`views`), history, edits, deletion, reactions, receipts |
//! | [`sync`] | pages of a user's change stream (`GET /sync`, `sync:request`) and the wire shape of a change (`envelope`) |
//! | [`realtime`] | the Socket.IO gateway (`gateway`), the device registry (`hub`), presence, client events, the dispatcher that pushes the change log live |
//! | [`notify`] | SMS and mail senders |
//! | [`ops`] | health, readiness, metrics, `/docs` |
//! | [`media`] | uploads (`upload`), storage (directory or S3), sniffing, thumbnails, durations, PDF text, OCR, transcription, protected downloads |
//! | [`jobs`] | the durable background job runner (leases, retries with backoff; kinds handed in by `server`) and leases for scheduled work |
//! | [`whatsapp`] | the Cloud API bridge: channels, webhooks, leads, outbound queue, templates, import |
//! | [`calls`] | the ICE servers of a call, with short-lived TURN credentials (signalling to come) |
//! | [`cluster`] | cluster mode: Redis fan-out between nodes, presence across nodes, heartbeats (the node's side behind [`cluster::Node`]) |
//! | `bench`, `client` | the load generator and the Socket.IO client it and the tests use; the default `bench` feature, never imported by the server |
//!
//! ## Floors
//!
//! No file imports one that imports it back (`tests/api/layout.rs` reads the `use` lines and
//! fails on a loop, naming it). From the ground up:
//!
//! 1. `config`, `error`, `events`, `outbound`, `telemetry`, `notify`, `db`, `changes`, `jobs`,
//!    `cluster`, `ratelimit`;
//! 2. each capability's data: `model.rs`, `store.rs`, `auth::{keys, secrets}`, the media
//!    handle and its storage, `realtime::{hub, presence}`, `messages::{views, pipeline}`,
//!    `sync::envelope`;
//! 3. [`app::AppState`], which holds the handles of floors 1 and 2 (the hub, presence, media,
//!    the job runner, the send queue, the cluster link) and nothing that takes it back;
//! 4. what takes the state: `http`'s extractors, the services, routes, job handlers, the
//!    gateway and the dispatcher;
//! 5. [`server`], then [`cli`].
//!
//! The capability folders span floors (a folder's `store.rs` sits low, its `routes.rs` high).
//! Counted by folder, eight of them still import each other in one loop — `auth`, `chats`,
//! `http`, `media`, `messages`, `users`, `whatsapp`, `workspaces` — through these arrows,
//! each of which is to be cut (issue 18 is not finished):
//!
//! - `http` → `auth::keys` (`TokenError`), `workspaces` (`Role`, the membership lookup): the
//!   extractors check tokens and memberships. To cut: the check and the lookup move below
//!   `http` (or behind the state), `Role` with them.
//! - `chats` → `messages` (`model`, `store`, `views`, `write`) while `messages` → `chats`
//!   (the access check): a conversation shows its last message and records membership
//!   changes as system messages. To cut: the conversation view with its last message is
//!   built above both; system messages are written by a function below both.
//! - `users` → `auth` (password check, verification mail, revoking sessions) and → `chats`
//!   (erasure leaves conversations) while `auth` → `users`: to cut, the account changes that
//!   need auth's rules and erasure move up into `auth`.
//! - `messages` → `whatsapp` (the customer window, queuing a channel send) while `whatsapp` →
//!   `messages` (rows and views): to cut, the window check and the queue move below both.
//!
//! Besides those, every folder's routes and jobs → `app` (the transports take the shared
//! state) and `app` → `realtime` (`Hub`, `Presence`, which name no state) point up by
//! design.
//!
//! # A message's path
//!
//! `message:send` on a socket: `realtime::gateway` (the device's worker, in event order) →
//! `realtime::handlers::send_queued` → `messages::model::Content::parse` →
//! `messages::service::send_queued` (the checks: access, blocks, requests, media, replies) →
//! `messages::pipeline` (batched with other sends into one transaction, as
//! `messages::write::Plan` lays out its rows, marks and `changes`; `write::write_one` for a
//! send that goes alone) → the ack once durable
//! (`handlers::send_finish`). The commit wakes `realtime::dispatch`, which reads the
//! `changes`, works out who is connected and may see each, builds the views once
//! (`messages::views`), the payload once (`sync::envelope`), and hands the same bytes to every
//! device through `realtime::hub`: the peer's `message:new`.
//!
//! The capabilities still to come slot in beside these without moving them: `inbox` (notes,
//! automations, campaigns), `ai` (analysis, keys, usage) and `calls` (signalling). Migrations
//! live in `migrations/sqlite` and `migrations/postgres`.

pub mod app;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
pub mod calls;
pub mod changes;
pub mod chats;
pub mod cli;
#[cfg(feature = "bench")]
pub mod client;
pub mod cluster;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzzing;
pub mod http;
pub mod jobs;
pub mod media;
pub mod messages;
pub mod notify;
pub mod ops;
pub mod outbound;
pub mod ratelimit;
pub mod realtime;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod users;
pub mod whatsapp;
pub mod workspaces;
