//! Timings other than the defaults for a benchmark run, from the environment: the Raft election
//! timeout (`TRIAD_BENCH_ELECTION_MS=MIN-MAX`) and the lease period (`TRIAD_BENCH_LEASE_MS=P`).
//! The controllers still check them: a P below its floor (2 x MAX + the agents' backoff cap +
//! their fence lead) is refused when they start.

use anyhow::{bail, Result};

/// Timings other than the defaults, read from the environment.
pub struct Timing {
    /// `TRIAD_BENCH_ELECTION_MS=MIN-MAX`: the Raft election timeout.
    pub election_ms: Option<(u64, u64)>,
    /// `TRIAD_BENCH_LEASE_MS=P`: the lease period.
    pub lease_ms: Option<u64>,
}

impl Timing {
    pub fn from_env() -> Result<Timing> {
        let election_ms = match std::env::var("TRIAD_BENCH_ELECTION_MS") {
            Ok(v) => {
                let parsed =
                    v.split_once('-').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                match parsed {
                    Some((min, max)) if min > 0 && min < max => Some((min, max)),
                    _ => bail!("TRIAD_BENCH_ELECTION_MS=`{v}`: expected MIN-MAX in milliseconds, MIN < MAX"),
                }
            }
            Err(_) => None,
        };
        let lease_ms = match std::env::var("TRIAD_BENCH_LEASE_MS") {
            Ok(v) => match v.trim().parse::<u64>() {
                Ok(p) if p > 0 => Some(p),
                _ => bail!("TRIAD_BENCH_LEASE_MS=`{v}`: expected the lease period P in milliseconds"),
            },
            Err(_) => None,
        };
        Ok(Timing { election_ms, lease_ms })
    }

    /// Sets these timings in a controller's configuration.
    pub fn apply(&self, c: &mut triad_controller::config::ControllerConfig) {
        if let Some((min, max)) = self.election_ms {
            (c.raft.election_timeout_min_ms, c.raft.election_timeout_max_ms) = (min, max);
        }
        if let Some(p) = self.lease_ms {
            c.lease.period_ms = p;
        }
    }

    /// One line for a benchmark's output.
    pub fn describe(&self) -> String {
        let election = self.election_ms.map(|(a, b)| format!("{a}-{b} ms")).unwrap_or_else(|| "default".into());
        let lease = self.lease_ms.map(|p| format!("{p} ms")).unwrap_or_else(|| "default".into());
        format!("timings: Raft election timeout {election}, lease P {lease}")
    }
}
