//! An in-process simulated database member, for demos and tests on machines without PostgreSQL.
//! A primary's position advances as if written to; a standby follows a little behind.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{now_ms, DatabaseDriver, DbStatus, DriverError, PositionUnit};

/// A simulated member with a fixed role.
pub struct SimulatedDriver {
    cluster: String,
    member: String,
    primary: std::sync::atomic::AtomicBool,
    up: std::sync::atomic::AtomicBool,
    started: Instant,
    /// The canary as last written on the simulated primary: (seq, epoch, origin, when).
    canary: std::sync::Mutex<Option<(u64, u64, String, Instant)>>,
}

impl SimulatedDriver {
    /// A simulated `member` of `cluster`, primary or standby.
    pub fn new(cluster: &str, member: &str, primary: bool) -> Self {
        SimulatedDriver {
            cluster: cluster.into(),
            member: member.into(),
            primary: primary.into(),
            up: true.into(),
            started: Instant::now(),
            canary: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl DatabaseDriver for SimulatedDriver {
    fn kind(&self) -> &'static str {
        "simulated"
    }

    /// A simulated member's connect string is any text; it names itself as it is written.
    fn endpoint_id(&self, endpoint: &str) -> String {
        endpoint.trim().to_string()
    }

    async fn observe(&self) -> DbStatus {
        let primary = self.primary.load(Ordering::SeqCst);
        if !self.up.load(Ordering::SeqCst) {
            return DbStatus {
                cluster: self.cluster.clone(),
                member: self.member.clone(),
                driver: "simulated".into(),
                role: "down".into(),
                stopped: true,
                configured_standby: !primary,
                replay_delay_seconds: -1.0,
                canary_age_seconds: -1.0,
                observed_ms: now_ms(),
                ..Default::default()
            };
        }
        // 64 kB of WAL per second; a standby is 8 kB (an eighth of a second) behind.
        let written = self.started.elapsed().as_millis() as u64 * 64;
        let lsn = if primary { written } else { written.saturating_sub(8192) };
        DbStatus {
            cluster: self.cluster.clone(),
            member: self.member.clone(),
            driver: "simulated".into(),
            up: true,
            role: if primary { "primary" } else { "standby" }.into(),
            timeline: 1,
            position: lsn,
            received_position: if primary { 0 } else { lsn },
            applied_position: if primary { 0 } else { lsn },
            replay_delay_seconds: if primary { -1.0 } else { 0.125 },
            position_unit: PositionUnit::Bytes as i32,
            replay_remaining_seconds: if primary { -1.0 } else { 0.0 },
            replicas: Vec::new(),
            error: String::new(),
            observed_ms: now_ms(),
            configured_standby: !primary,
            ..self.canary_fields()
        }
    }

    async fn stop_primary(&self) -> Result<u64, DriverError> {
        self.up.store(false, Ordering::SeqCst);
        Ok(self.lsn())
    }

    async fn promote(&self, _synchronous: &[String], _deadline: std::time::Instant) -> Result<(), DriverError> {
        self.primary.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn rejoin(&self, _primary_endpoint: &str) -> Result<String, DriverError> {
        self.primary.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
        Ok("simulated: nothing to rewind".into())
    }

    async fn set_synchronous(&self, _names: &[String]) -> Result<(), DriverError> {
        Ok(())
    }

    async fn follow(&self, _primary_endpoint: &str) -> Result<(), DriverError> {
        if self.primary.load(Ordering::SeqCst) {
            return Err(DriverError::Refused("running as a primary".into()));
        }
        Ok(())
    }

    async fn restart(&self) -> Result<(), DriverError> {
        self.up.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn start_in_recovery(&self) -> Result<(), DriverError> {
        // Up, not yet primary: what a real member is while it replays before opening.
        self.primary.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn open_started(&self, _deadline: std::time::Instant) -> Result<(), DriverError> {
        self.primary.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn stop_unopened(&self) -> Result<(), DriverError> {
        self.up.store(false, Ordering::SeqCst);
        self.primary.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn fence(&self) -> Result<(), DriverError> {
        self.up.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// A simulated copy: instant, holding the canary this member last wrote (members do not
    /// share a simulated database).
    async fn make_copy(&self, name: &str, port: u16, _: Instant) -> Result<super::CopyMade, DriverError> {
        super::valid_copy_name(name)?;
        let canary = self.canary.lock().expect("canary lock poisoned").clone().map(|(seq, epoch, origin, at)| {
            triad_proto::v1::CanaryRow {
                seq,
                epoch,
                origin,
                written_ms: super::now_ms().saturating_sub(at.elapsed().as_millis() as u64),
            }
        });
        Ok(super::CopyMade {
            endpoint: format!("simulated copy {name} port {port}"),
            copied_at_ms: super::now_ms(),
            canary,
            detail: format!("simulated copy {name}"),
        })
    }

    async fn destroy_copy(&self, name: &str) -> Result<String, DriverError> {
        super::valid_copy_name(name)?;
        Ok(format!("simulated copy {name} deleted"))
    }

    async fn write_canary(&self, seq: u64, epoch: u64, origin: &str) -> Result<(), DriverError> {
        if !self.primary.load(Ordering::SeqCst) || !self.up.load(Ordering::SeqCst) {
            return Err(DriverError::Refused("cannot write: not a running primary".into()));
        }
        *self.canary.lock().expect("canary lock poisoned") = Some((seq, epoch, origin.to_string(), Instant::now()));
        Ok(())
    }
}

impl SimulatedDriver {
    fn lsn(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 * 64
    }

    /// Members do not share a simulated database, so only the primary sees its own canary.
    fn canary_fields(&self) -> DbStatus {
        match &*self.canary.lock().expect("canary lock poisoned") {
            Some((seq, epoch, origin, at)) => DbStatus {
                canary_seq: *seq,
                canary_epoch: *epoch,
                canary_origin: origin.clone(),
                canary_age_seconds: at.elapsed().as_secs_f64(),
                ..Default::default()
            },
            None => DbStatus { canary_age_seconds: -1.0, ..Default::default() },
        }
    }
}
