//! sea-orm entities, matching the `migration` crate.

pub mod connection;
pub mod tenant;
