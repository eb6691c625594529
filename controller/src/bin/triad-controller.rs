//! `triad-controller --config FILE`: parse arguments, load the configuration, run.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// One controller of Triad's replicated control plane.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// The controller's TOML configuration (see deploy/controller.example.toml).
    #[arg(long, short, env = "TRIAD_CONTROLLER_CONFIG")]
    config: PathBuf,
    /// Only validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match triad_controller::config::ControllerConfig::load(&args.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("triad-controller: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    triad_controller::init_logging(&cfg.log_format);
    // Failpoints for tests (FAILPOINTS=name=action;...) stop a workflow between two steps. They
    // are honoured only with TRIAD_TEST_FAILPOINTS=1, so a stray FAILPOINTS variable cannot break
    // a production controller.
    let _failpoints = (std::env::var("TRIAD_TEST_FAILPOINTS").as_deref() == Ok("1")).then(|| {
        tracing::warn!("TRIAD_TEST_FAILPOINTS=1: failpoints from FAILPOINTS are active (tests only)");
        fail::FailScenario::setup()
    });
    // A break-glass order restarts the controller in place: a fresh runtime, so that every task
    // of the old one (and with them the store's handles) is gone before the store is rewritten.
    loop {
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("triad-controller: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let exit = runtime.block_on(triad_controller::run(cfg.clone()));
        runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        match exit {
            Ok(triad_controller::Exit::Stopped) => return ExitCode::SUCCESS,
            Ok(triad_controller::Exit::Restart) => tracing::warn!("restarting to carry out the break-glass order"),
            Err(e) => {
                eprintln!("triad-controller: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
