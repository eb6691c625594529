//! `triadctl`'s commands, one file per group: status, certificates, cluster membership and users,
//! the local demo. The binary in `bin/triadctl.rs` only parses arguments and calls these.

pub mod admin;
pub mod certs;
pub mod client;
pub mod demo;
pub mod failover;
pub mod local;
pub mod postgres;
pub mod status;
