//! Users, contacts and blocks: profiles and privacy as stored, other users' public profiles,
//! search, address-book sync and blocking. The caller's own account (`/users/me`) is served by
//! `auth::account`, which needs sign-in's rules.
//!
//! Users are global identities, but finding another user (search, contact matching, profile by
//! id) is limited to members of the workspace the request acts in: a user of one workspace
//! cannot discover the people of another.

pub mod model;
pub mod routes;
pub mod store;
