//! Automations: a workspace's rules, each a trigger, conditions and actions, fired in order.
//!
//! - Events come from below, queued as jobs in the transaction of the change that caused them
//!   (`conversations::triggers`: a customer wrote, a conversation opened, a lead's stage
//!   moved, a tag was added); timed triggers come from a scan under a lease ([`timed`]).
//! - [`run`] carries an event out in one transaction: each rule's trigger test, conditions,
//!   claim (once per conversation per cooldown, or once per wait), actions ([`actions`]) and
//!   its run record. Loop protection: rules read only customers' messages, never the
//!   automations' own; a chain of rules (an action that sets a stage fires the stage rules)
//!   stops at `conversations::triggers::MAX_DEPTH`.
//! - [`webhook`] delivers the webhook action, signed, retried, through the SSRF-safe client.

pub mod actions;
pub mod model;
pub mod routes;
pub mod run;
pub mod service;
pub mod store;
pub mod timed;
pub mod webhook;
