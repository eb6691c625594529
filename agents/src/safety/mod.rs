//! What keeps a primary from writing when it should not (DESIGN.md, "Safety of role changes",
//! points 1-3 and 8), each rule written where it is enforced: the persisted epoch and the
//! target state read from the controllers (`epoch.rs`, `target.rs`), the primary's lease and the
//! guard that fences without one (`lease.rs`, `guard.rs`), the failsafe's vouches (`vouch.rs`),
//! the watchdog (`watchdog.rs`), the disk writes kept off the guard's path (`disk.rs`), and how a primary is started or opened under its lease at boot
//! and after a fence (`boot.rs`, `opening.rs`), and handed over to the next agent when this one
//! restarts in place (`handover.rs`).

pub mod boot;
pub mod disk;
pub mod epoch;
pub mod guard;
pub mod handover;
pub mod lease;
pub mod opening;
pub mod target;
pub mod vouch;
pub mod watchdog;
