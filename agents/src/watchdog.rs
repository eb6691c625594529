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

use crate::config::LeaseConfig;

/// The watchdog device, open while armed.
pub struct Watchdog {
    mode: String,
    device: PathBuf,
    open: Option<File>,
    warned: bool,
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
        Watchdog { mode: cfg.watchdog.clone(), device: cfg.watchdog_device.clone(), open: None, warned: false }
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
    pub fn keep_alive(&mut self, period_ms: u64) -> Option<String> {
        if self.mode == "off" {
            return None;
        }
        if self.open.is_none() {
            let problem = match self.timeout_ms() {
                _ if !self.device.exists() => Some(format!("no watchdog device at {}", self.device.display())),
                Some(t) if period_ms > 0 && t >= period_ms => {
                    Some(format!("the watchdog's timeout ({t} ms) is not shorter than the lease ({period_ms} ms)"))
                }
                _ => match std::fs::OpenOptions::new().write(true).open(&self.device) {
                    Ok(f) => {
                        tracing::info!(device = %self.device.display(), "watchdog armed");
                        self.open = Some(f);
                        None
                    }
                    Err(e) => Some(format!("cannot open {}: {e}", self.device.display())),
                },
            };
            if let Some(p) = problem {
                if !self.warned {
                    tracing::warn!(mode = %self.mode, "the primary runs without a watchdog: {p}");
                    self.warned = true;
                }
                return (self.mode == "required").then_some(p);
            }
        }
        if let Some(f) = self.open.as_mut() {
            if let Err(e) = f.write_all(b"1").and_then(|_| f.flush()) {
                tracing::error!("petting the watchdog failed: {e}");
                self.open = None;
                return (self.mode == "required").then(|| format!("petting the watchdog failed: {e}"));
            }
        }
        None
    }

    /// Disarms it (the magic close), when this host no longer runs a primary.
    pub fn disarm(&mut self) {
        if let Some(mut f) = self.open.take() {
            let _ = f.write_all(b"V");
            tracing::info!("watchdog disarmed");
        }
    }
}
