//! Analytics: the inbox (conversations opened, reopened and closed; messages in and out;
//! first-response and resolution times, median and 90th percentile, in wall time and within
//! business hours), its agents, its channels and its campaigns, over a range and per day in
//! the workspace's timezone, as JSON and CSV.
//!
//! Read from the facts `conversations::facts` writes in the transaction of each change (so
//! they hold what the data holds: no counter is moved anywhere else): the inbox's events, one
//! row each, and its messages per quarter hour. The database sums the counts per local day
//! (each an index range); durations come back one by one, for exact percentiles, and are
//! measured against the business hours as they are set now, laid out once per report.

pub mod csv;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;
