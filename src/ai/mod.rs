//! AI analysis of conversations. So far its model-free half: [`offline`], the deterministic
//! analyzer that reads a conversation with no provider and no network.

pub mod offline;
