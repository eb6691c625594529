//! Triad's gRPC protocol: the messages and services generated from `proto/triad.proto`, and the
//! TLS naming conventions every peer follows.
#![forbid(unsafe_code)]

pub mod files;
pub mod tls;

/// Version 1 of the protocol (`package triad.v1`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("triad.v1");
}
