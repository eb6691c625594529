//! Triad's gRPC protocol: the messages and services generated from `proto/triad.proto`, and the
//! TLS naming conventions every peer follows.
#![forbid(unsafe_code)]

pub mod clock;
pub mod files;
pub mod replica;
pub mod tls;
pub mod words;

/// What an agent answers a `StopStandby` for a member that had finished its promotion when it
/// was stopped: it may hold writes the old primary lacks, so a rollback must go forward to it.
pub const FINISHED_PROMOTION: &str = "stopped, but it had finished a promotion";

/// Version 1 of the protocol (`package triad.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("triad.v1");
}
