//! `triadctl` with input a new user might give it (issue 16, item 13): a reader that goes away,
//! free text far too long, an argument of 100 kB. Each gets a clear answer naming the problem;
//! nothing panics. Real controllers over TLS.

use std::process::{Command, Stdio};

use anyhow::{ensure, Result};
use triad_tests::{bin, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn triadctl_ends_quietly_without_a_reader_and_refuses_oversized_input() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_all().await?;

    // `triadctl status | true`: the pipe is closed before anything is written.
    for args in [&["status"][..], &["status", "-o", "json"], &["audit"], &["history"]] {
        let mut child = Command::new(bin("triadctl"))
            .args(args)
            .env("TRIAD_CONFIG", d.plan.ctl_config_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        drop(child.stdout.take());
        let out = child.wait_with_output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!err.contains("panicked"), "triadctl {args:?} panicked on a closed stdout: {err}");
        ensure!(out.status.success(), "triadctl {args:?}: {:?}: {err}", out.status);
    }

    // Free text far longer than anyone reads: refused, naming the argument.
    let long = "x".repeat(3000);
    let out = d.triadctl(&["break-glass", "request", "--cluster", "customs", "--to", "dr", "--attest", &long])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("--attest is 3000 characters long"), "{err}");
    let out = d.triadctl(&["pause", "--cluster", "customs", "--reason", &long])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("--reason is 3000 characters long"), "{err}");
    // An argument of 100 kB is refused before anything is sent.
    let huge = "y".repeat(100_000);
    let out = d.triadctl(&["switchover", "--cluster", &huge, "--to", "ndc"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2) && err.contains("100000 bytes long"), "{err}");
    ensure!(!err.contains("h2 protocol"), "{err}");
    Ok(())
}
