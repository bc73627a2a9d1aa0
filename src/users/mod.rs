//! Users, contacts and blocks: the caller's profile and privacy, other users' public profiles,
//! search, address-book sync and blocking.
//!
//! Users are global identities, but finding another user (search, contact matching, profile by
//! id) is limited to members of the workspace the request acts in: a user of one workspace
//! cannot discover the people of another.

pub mod model;
pub mod routes;
pub mod service;
pub mod store;
