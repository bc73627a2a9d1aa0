//! Campaigns: a template sent to an audience of opted-in leads, on a schedule in the
//! workspace's timezone, paced per channel, surviving `kill -9` without sending twice, with
//! each recipient's progress read from its message ([`store::stats`], [`store::recipients`]).
//! [`send`] is the sender under a lease; [`routes`] the API.

pub mod model;
pub mod routes;
pub mod send;
pub mod store;
