//! AI analysis of conversations: runs asked for by agents (`POST /ai/analyze`), carried out
//! by a durable job with [`offline`], the deterministic analyzer that needs no provider and no
//! network, and insights for the workspace's agents. Opt-in per workspace (`settings.ai`).

pub mod insights;
pub mod offline;
pub mod routes;
