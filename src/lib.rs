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
//! | [`demo`] | demo users, chats and messages for a newcomer |
//! | [`config`] | settings from `palaver.toml`, the environment and flags |
//! | [`app`] | shared state, router assembly, middleware stack, graceful shutdown |
//! | [`error`] | the one error type and the list of problem codes |
//! | [`http`] | extractors (JSON, query, auth, workspace scope, client IP), pagination, middleware, the connection loop (header read timeout) |
//! | [`outbound`] | the one HTTP client for requests to the outside world: no loopback, private or link-local targets (after DNS, on redirects), capped answers |
//! | [`db`] | the data-access layer over SQLite or PostgreSQL, migrations, tenant scope |
//! | [`ratelimit`] | request rate limits behind one interface (memory on one node, Redis in cluster mode) |
//! | [`auth`] | signup, login, OTP, refresh-token rotation, sessions, signing keys, JWKS |
//! | [`users`] | profiles, privacy, search, contacts, blocks |
//! | [`workspaces`] | tenants, memberships and roles |
//! | [`chats`] | conversations: direct, groups, members and roles, message requests, settings, the list |
//! | [`messages`] | sending (ordered, idempotent), history, edits, deletion, reactions, receipts |
//! | [`sync`] | the change log behind `GET /sync` and the socket's `sync:request` |
//! | [`realtime`] | the Socket.IO gateway: handshake auth, client events, pushing the change log live |
//! | [`notify`] | SMS and mail senders |
//! | [`ops`] | health, readiness, metrics, OpenAPI and `/docs` |
//! | [`media`] | uploads, storage (directory or S3), sniffing, thumbnails, durations, PDF text, OCR, transcription, protected downloads |
//! | [`jobs`] | the durable background job runner (leases, retries with backoff) and leases for scheduled work |
//! | [`whatsapp`] | the Cloud API bridge: channels, webhooks, leads, outbound queue, templates, import |
//! | [`cluster`] | cluster mode: Redis fan-out between nodes, presence across nodes, heartbeats |
//!
//! The capabilities still to come slot in beside these without moving them: `inbox` (notes,
//! automations, campaigns), `ai` (analysis, keys, usage) and `calls` (signalling). Migrations
//! live in `migrations/sqlite` and `migrations/postgres`.

pub mod app;
pub mod auth;
#[cfg(feature = "bench")]
pub mod bench;
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
