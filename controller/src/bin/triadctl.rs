//! `triadctl`: parse arguments, call the command (`triad_controller::ctl::cli`), say how it ended.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use triad_controller::ctl::cli::{run, Args};

/// The longest argument `triadctl` sends: longer ones are refused before anything is sent (a
/// megabyte in a gRPC request fails far away with "h2 protocol error").
const MAX_ARG_BYTES: usize = 4096;

fn main() -> ExitCode {
    if let Some((i, arg)) = std::env::args_os().enumerate().find(|(_, a)| a.len() > MAX_ARG_BYTES) {
        eprintln!("triadctl: argument {i} is {} bytes long: at most {MAX_ARG_BYTES}", arg.len());
        return ExitCode::from(2);
    }
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("triadctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("triadctl: {e}");
            ExitCode::FAILURE
        }
    }
}
