//! An in-process simulated database member, for demos and tests on machines without PostgreSQL.
//! A primary's position advances as if written to; a standby follows a little behind.

use std::time::Instant;

use super::{now_ms, DatabaseDriver, DbStatus};

/// A simulated member with a fixed role.
pub struct SimulatedDriver {
    cluster: String,
    member: String,
    primary: bool,
    started: Instant,
}

impl SimulatedDriver {
    /// A simulated `member` of `cluster`, primary or standby.
    pub fn new(cluster: &str, member: &str, primary: bool) -> Self {
        SimulatedDriver {
            cluster: cluster.into(),
            member: member.into(),
            primary,
            started: Instant::now(),
        }
    }
}

#[async_trait::async_trait]
impl DatabaseDriver for SimulatedDriver {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    async fn observe(&self) -> DbStatus {
        // 64 kB of WAL per second; a standby is 8 kB (an eighth of a second) behind.
        let written = self.started.elapsed().as_millis() as u64 * 64;
        let lsn = if self.primary {
            written
        } else {
            written.saturating_sub(8192)
        };
        DbStatus {
            cluster: self.cluster.clone(),
            member: self.member.clone(),
            driver: "simulated".into(),
            up: true,
            role: if self.primary { "primary" } else { "standby" }.into(),
            timeline: 1,
            wal_lsn: lsn,
            receive_lsn: if self.primary { 0 } else { lsn },
            replay_lsn: if self.primary { 0 } else { lsn },
            replay_delay_seconds: if self.primary { -1.0 } else { 0.125 },
            replicas: Vec::new(),
            error: String::new(),
            observed_ms: now_ms(),
        }
    }
}
