//! Integration tests: the real server on a random port, over real HTTP, on SQLite and (with
//! `TEST_DATABASE_URL`) on PostgreSQL.

mod helpers;

mod ai;
mod ai_provider;
mod analytics;
mod auth;
mod automations;
mod bench;
mod calls;
mod campaigns;
mod chats;
mod cluster;
mod crash;
mod demo;
mod desk;
mod errors;
mod inbox;
mod layout;
mod logs;
mod matrix;
mod media;
mod messages;
mod ops;
mod otp;
mod push;
mod realtime;
mod search;
mod senders;
mod sync;
mod users;
mod web;
mod whatsapp;
mod workspaces;
