//! The team inbox: leads (external contacts) with the workspace's pipeline, tags, opt-in and
//! custom attributes; the audit log of what agents and admins did.
//!
//! - [`model`]: the shapes and the parsing of every input (phone numbers to E.164, tags,
//!   stages, attributes and their definitions).
//! - [`leads`]: leads as stored, their tags, the filtered list.
//! - [`catalog`]: what a workspace defines: stages, attribute definitions, tags.
//! - [`audit`]: the append-only log, written in the transaction of each change.
//! - [`service`]: the checks and writes with their audit entries; [`routes`]: the handlers.

pub mod audit;
pub mod catalog;
pub mod leads;
pub mod model;
pub mod routes;
pub mod service;
