//! `triadctl`'s commands, one file per group: status, certificates, cluster membership and users,
//! the local demo; `cli.rs` is the command line that dispatches to them, and `bin/triadctl.rs` only
//! parses it and calls `cli::run`.

pub mod admin;
pub mod alerts;
pub mod assets;
pub mod certs;
pub mod cli;
pub mod client;
pub mod demo;
mod demo_noc;
pub mod drills;
pub mod failover;
pub mod links;
pub mod local;
pub mod observe;
pub mod postgres;
pub mod services;
pub mod status;

/// `println!` for `triadctl`'s output: a reader that went away (`triadctl status | head -1`,
/// `endpoint --watch | head -1`) ends the program quietly instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::ctl::output_failed(e);
        }
    }};
}

/// `print!` for `triadctl`'s output, like [`outln!`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        if let Err(e) = write!(stdout, $($arg)*).and_then(|_| stdout.flush()) {
            $crate::ctl::output_failed(e);
        }
    }};
}

/// Ends `triadctl` when its output cannot be written: quietly (success) when the reader closed
/// the pipe, as command-line tools do; with the error otherwise.
pub fn output_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("triadctl: cannot write the output: {e}");
    std::process::exit(1);
}
