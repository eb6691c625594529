//! The host watchdog (`/dev/watchdog`, e.g. the `softdog` module) that backs the lease: armed
//! while this host runs a primary, so that a hung or killed agent cannot leave a primary running
//! unguarded — the kernel resets the host when the agent stops petting it (DESIGN.md, point 2).
//!
//! Its timeout is the device's own (softdog's `soft_margin`), read from sysfs and required to be
//! shorter than the lease; setting it would need an ioctl, which is not worth `unsafe` here.
//! Modes: `required` (production: a primary is fenced when no suitable watchdog can be armed),
//! `automatic` (use one when present, else run unguarded and say so), `off`.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::LeaseConfig;

/// The watchdog, shared by everything that may run a primary on this host: the guard pets it,
/// a start or promote arms it first (`opening.rs`), a clean stop disarms it (`lib.rs`).
pub type SharedWatchdog = Arc<Mutex<Watchdog>>;

/// `lease.watchdog`, as configured (validated in `config.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Required,
    Automatic,
    Off,
}

/// The watchdog device, open while armed.
pub struct Watchdog {
    mode: Mode,
    device: PathBuf,
    open: Option<File>,
    warned: bool,
    /// The agent is stopping and has disarmed it for good: nothing arms it again (the guard's
    /// last ticks run on an observation made before the server was stopped).
    retired: bool,
}

/// Why the watchdog cannot guard a primary (in mode `required`, a reason to fence).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchdogProblem {
    #[error("no watchdog device at {}", .0.display())]
    NoDevice(std::path::PathBuf),
    #[error("the watchdog's timeout ({timeout_ms} ms) is not shorter than the lease ({period_ms} ms)")]
    TimeoutTooLong { timeout_ms: u64, period_ms: u64 },
    #[error("cannot open {}: {reason}", .device.display())]
    Open { device: std::path::PathBuf, reason: String },
    #[error("petting the watchdog failed: {0}")]
    Pet(String),
}

/// What status shows: `armed`, `unguarded` or `off`.
pub fn describe(cfg: &LeaseConfig) -> &'static str {
    match cfg.watchdog.as_str() {
        "off" => "off",
        _ if cfg.watchdog_device.exists() => "available",
        _ => "unguarded",
    }
}

impl Watchdog {
    pub fn new(cfg: &LeaseConfig) -> Self {
        let mode = match cfg.watchdog.as_str() {
            "off" => Mode::Off,
            "automatic" => Mode::Automatic,
            // Anything else was refused by the config's validation; `required` is the safe side.
            _ => Mode::Required,
        };
        Watchdog { mode, device: cfg.watchdog_device.clone(), open: None, warned: false, retired: false }
    }

    /// A watchdog to share (see [`SharedWatchdog`]).
    pub fn shared(cfg: &LeaseConfig) -> SharedWatchdog {
        Arc::new(Mutex::new(Watchdog::new(cfg)))
    }

    /// Arms and pets it before a primary is started or promoted (DESIGN.md point 2: armed before
    /// the primary is unfenced, not after it is first observed). An error only in mode
    /// `required`: the primary must then not be opened.
    pub fn arm(&mut self, period_ms: u64) -> Result<(), WatchdogProblem> {
        self.keep_alive(period_ms).map_or(Ok(()), Err)
    }

    /// Whether it is armed (the device open).
    pub fn armed(&self) -> bool {
        self.open.is_some()
    }

    /// The device's timeout in milliseconds, from sysfs (`/sys/class/watchdog/<name>/timeout`).
    fn timeout_ms(&self) -> Option<u64> {
        let name = self.device.file_name()?.to_str()?;
        let name = if name == "watchdog" { "watchdog0" } else { name };
        let text = std::fs::read_to_string(format!("/sys/class/watchdog/{name}/timeout")).ok()?;
        text.trim().parse::<u64>().ok().map(|s| s * 1000)
    }

    /// Arms (when needed) and pets the watchdog while a primary runs under a lease of
    /// `period_ms`. Returns a reason to fence when the mode is `required` and that cannot be done.
    pub fn keep_alive(&mut self, period_ms: u64) -> Option<WatchdogProblem> {
        if self.mode == Mode::Off || self.retired {
            return None;
        }
        if self.open.is_none() {
            let problem = match self.timeout_ms() {
                _ if !self.device.exists() => Some(WatchdogProblem::NoDevice(self.device.clone())),
                Some(timeout_ms) if period_ms > 0 && timeout_ms >= period_ms => {
                    Some(WatchdogProblem::TimeoutTooLong { timeout_ms, period_ms })
                }
                // Append: harmless on the device, and a test can stand a regular file in for it
                // and read what was written ("1" per pet, "V" for the magic close).
                _ => match std::fs::OpenOptions::new().append(true).open(&self.device) {
                    Ok(f) => {
                        tracing::info!(device = %self.device.display(), "watchdog armed");
                        self.open = Some(f);
                        None
                    }
                    Err(e) => Some(WatchdogProblem::Open { device: self.device.clone(), reason: e.to_string() }),
                },
            };
            if let Some(p) = problem {
                if !self.warned {
                    tracing::warn!(mode = ?self.mode, "the primary runs without a watchdog: {p}");
                    self.warned = true;
                }
                return (self.mode == Mode::Required).then_some(p);
            }
        }
        if let Some(f) = self.open.as_mut() {
            if let Err(e) = f.write_all(b"1").and_then(|_| f.flush()) {
                tracing::error!("petting the watchdog failed: {e}");
                self.open = None;
                return (self.mode == Mode::Required).then(|| WatchdogProblem::Pet(e.to_string()));
            }
        }
        None
    }

    /// Disarms it for good as the agent stops (see the field `retired`).
    pub fn retire(&mut self, why: &str) {
        self.disarm(why);
        self.retired = true;
    }

    /// Disarms it (the magic close), when this host no longer runs a primary; `why` is logged.
    pub fn disarm(&mut self, why: &str) {
        if let Some(mut f) = self.open.take() {
            match f.write_all(b"V").and_then(|_| f.flush()) {
                Ok(()) => tracing::info!("watchdog disarmed: {why}"),
                // The device stays armed once closed without "V": the host will be reset.
                Err(e) => tracing::error!("disarming the watchdog failed ({e}); it will reset the host: {why}"),
            }
        }
    }
}
