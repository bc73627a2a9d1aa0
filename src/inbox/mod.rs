//! The team inbox and support desk: leads (external contacts) with the workspace's pipeline,
//! tags, opt-in and custom attributes; the support desk (app users writing to a workspace's
//! team); status, snooze and assignment (by hand and round-robin); internal notes; canned
//! responses. (The audit log they write is [`crate::audit`]; its route is here.)
//!
//! - [`model`]: the shapes and the parsing of every input (phone numbers to E.164, tags,
//!   stages, attributes and their definitions).
//! - [`leads`]: leads as stored, their tags, the filtered list.
//! - [`catalog`]: what a workspace defines: stages, attribute definitions, tags.
//! - [`notes`]: internal notes and activity lines (agents only; never messages).
//! - [`conversations`]: status, snooze, assignment, auto-assignment; the opened and wake jobs.
//! - [`support`]: the support desk's conversations; [`jobs`]: the opened and wake jobs.
//! - [`canned`]: canned responses and their variables.
//! - [`import`]: CSV imports of leads, in chunks that commit with their progress;
//!   [`transfer_routes`]: import, its report, and the streamed CSV export.
//! - [`service`]: the checks and writes of leads with their audit entries; [`routes`] and
//!   [`desk_routes`]: the handlers.

pub mod canned;
pub mod catalog;
pub mod conversations;
pub mod desk_routes;
pub mod import;
pub mod jobs;
pub mod leads;
pub mod model;
pub mod notes;
pub mod routes;
pub mod service;
pub mod support;
pub mod transfer_routes;
