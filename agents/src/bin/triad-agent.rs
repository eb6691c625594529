//! `triad-agent --config FILE`: parse arguments, load the configuration, run.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Triad's per-host agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// The agent's TOML configuration (see deploy/agent.example.toml).
    #[arg(long, short, env = "TRIAD_AGENT_CONFIG")]
    config: PathBuf,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Internal: the guard an agent restarted in place (SIGUSR2) leaves behind, which fences
    /// the primary unless the next agent takes it over in time (agents/src/safety/handover.rs).
    #[arg(long, hide = true)]
    handover_guard: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match triad_agent::config::AgentConfig::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("triad-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    triad_agent::init_logging(&cfg.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("triad-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        if args.handover_guard {
            triad_agent::handover_guard(cfg).await
        } else {
            triad_agent::run(cfg).await
        }
    };
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("triad-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
