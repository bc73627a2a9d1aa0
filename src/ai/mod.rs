//! AI analysis of conversations, opt-in per workspace (`settings.ai`): runs asked for by
//! agents (`POST /ai/analyze`) or by a conversation going quiet ([`idle`]), carried out by a
//! durable job ([`run`]) with the workspace's OpenAI-compatible provider ([`provider`], keys in
//! [`keys`]), the server's, or [`offline`], the deterministic analyzer that needs no network;
//! insights for the workspace's agents; every provider call recorded with what was sent and
//! its tokens ([`usage`]), within a monthly budget.

pub mod admin_routes;
pub mod idle;
pub mod insights;
pub mod keys;
pub mod offline;
pub mod prompt;
pub mod provider;
pub mod routes;
pub mod run;
pub mod usage;

/// The handles AI calls use: the outbound client and the providers' circuit breakers.
pub struct Ai {
    pub http: crate::outbound::Outbound,
    pub breakers: provider::Breakers,
}
