//! Database drivers: one trait for what Triad needs of a replicated database member, implemented
//! for PostgreSQL streaming replication (`postgres.rs`) and by an in-process simulation
//! (`simulated.rs`). An Oracle Data Guard driver fits beside them without touching the controller,
//! which sees only [`DbStatus`].

mod postgres;
mod postgres_conninfo;
mod postgres_copy;
mod postgres_ctl;
mod postgres_kill;
mod postgres_promote;
mod postgres_rewind;
mod postgres_wal;
mod simulated;

pub use postgres::{PgLocal, PostgresDriver};
pub use postgres_ctl::default_bin_dir;
pub use simulated::SimulatedDriver;
pub use triad_proto::v1::{Assignment, DbStatus, PositionUnit, ReplicaState, ReplicaStatus};

/// Why a driver could not do what it was asked. Each kind carries its whole message, which is
/// what the leader records (the `Display` is the message alone); the kind tells a caller what
/// went wrong without reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The server: a connection, a query, a reload.
    #[error("{0}")]
    Database(String),
    /// A PostgreSQL program (`pg_ctl`, `pg_rewind`, `pg_basebackup`, `pg_waldump`...) or a
    /// signal to the server's processes failed, or could not run.
    #[error("{0}")]
    Program(String),
    /// A file of the member's could not be read or written.
    #[error("{0}")]
    File(String),
    /// The member is not in a state for it (running as a primary when asked to follow, already
    /// running when asked to start...): nothing was done.
    #[error("{0}")]
    Refused(String),
    /// Its time ran out.
    #[error("{0}")]
    Timeout(String),
    /// The member cannot be rejoined in place: an operator must re-create it as a standby
    /// (Oracle: no flashback log reaches the divergence). The controller ends the rejoin at once,
    /// raises an alert and leaves the member alone until it is a standby again.
    #[error("{0}")]
    NeedsRecreation(String),
}

/// For the callers whose own errors are still text (the agent's command results are).
impl From<DriverError> for String {
    fn from(e: DriverError) -> String {
        e.to_string()
    }
}

/// What [`DatabaseDriver::make_copy`] made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyMade {
    /// How to reach the copy (the driver's connection keywords).
    pub endpoint: String,
    /// When the copy's data was taken (ms since the Unix epoch).
    pub copied_at_ms: u64,
    /// The newest canary row in the copy.
    pub canary: Option<triad_proto::v1::CanaryRow>,
    /// The steps' timings, in words.
    pub detail: String,
}

/// A copy's name: `drill-7`, letters, digits and `-` (it names a directory).
pub fn valid_copy_name(name: &str) -> Result<(), DriverError> {
    let ok = !name.is_empty() && name.len() <= 40 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some(()).ok_or_else(|| DriverError::Refused(format!("`{name}` is not a copy name (letters, digits, -)")))
}

/// A database member on this host.
#[async_trait::async_trait]
pub trait DatabaseDriver: Send + Sync {
    /// `postgres`, `simulated`, ...
    fn kind(&self) -> &'static str;

    /// This member's identity as a replication source, from its configured `endpoint` (the
    /// driver's connect string), in the canonical form in which the driver reports a standby's
    /// upstream (`DbStatus.upstream_id`): the controller compares the two for equality alone
    /// and never reads a connect string. Empty when the endpoint cannot be read.
    fn endpoint_id(&self, endpoint: &str) -> String;

    /// Observes the member: role, timeline, WAL positions, and (on a primary) its standbys. An
    /// unreachable server is an observation too (`up = false`, `role = "down"`), not an error.
    async fn observe(&self) -> DbStatus;

    /// Writes the canary row (sequence, epoch, origin; the time is the database's) on a primary.
    /// Every member reads it back in [`DatabaseDriver::observe`]: its age on a standby is the
    /// replication delay as the database itself sees it.
    async fn write_canary(&self, seq: u64, epoch: u64, origin: &str) -> Result<(), DriverError>;

    /// Stops the primary cleanly: its connected standbys receive every record up to the shutdown
    /// checkpoint, whose position is returned.
    async fn stop_primary(&self) -> Result<u64, DriverError>;

    /// Promotes this standby (replay is resumed first if it was paused, and queries that hold
    /// replay back are cancelled: DESIGN.md point 7), waiting from its first commit for the
    /// `synchronous` standbys (none: it starts asynchronous). Gives up at `deadline`, saying
    /// whether the promotion had begun by then.
    async fn promote(&self, synchronous: &[String], deadline: std::time::Instant) -> Result<(), DriverError>;

    /// Starts this stopped member as a standby of the primary at `primary_endpoint` (its driver's
    /// connect string, as that member's agent reports it); a former primary is rewound first, its
    /// discarded WAL saved and reported (the returned text).
    async fn rejoin(&self, primary_endpoint: &str) -> Result<String, DriverError>;

    /// Sets a primary's synchronous standbys (empty: asynchronous).
    async fn set_synchronous(&self, names: &[String]) -> Result<(), DriverError>;

    /// Starts this stopped member again as it was. For a member stopped as a primary the agent
    /// uses [`DatabaseDriver::start_in_recovery`] instead: a primary opens only under a lease.
    async fn restart(&self) -> Result<(), DriverError>;

    /// Starts this member, stopped as a primary, in recovery and streaming from nowhere: it
    /// replays its own WAL and accepts no write until [`DatabaseDriver::open_started`]. A start
    /// (with its retries) can take longer than the lease it began under, so the agent looks at
    /// the lease again between the two (DESIGN.md point 2; issue 16, item 2).
    async fn start_in_recovery(&self) -> Result<(), DriverError>;

    /// Opens a member started by [`DatabaseDriver::start_in_recovery`] for writes, as the
    /// primary it was (its synchronous standbys unchanged); gives up at `deadline`.
    async fn open_started(&self, deadline: std::time::Instant) -> Result<(), DriverError>;

    /// Undoes [`DatabaseDriver::start_in_recovery`] when the member is not to be opened: stops it
    /// at once and leaves it stopped as the primary it was (its final position readable, its
    /// next start again under a lease).
    async fn stop_unopened(&self) -> Result<(), DriverError>;

    /// Points this running standby at the primary at `primary_endpoint`.
    async fn follow(&self, primary_endpoint: &str) -> Result<(), DriverError>;

    /// Before a switchover to this member: the database's own readiness check beyond what
    /// `observe` shows, answering what it found (Oracle: `DGMGRL VALIDATE DATABASE`). The
    /// controller's checks of the reports are all PostgreSQL needs.
    async fn validate_target(&self) -> Result<String, DriverError> {
        Ok(format!("{}: nothing to check beyond its reports", self.kind()))
    }

    /// A dr-test's isolated, writable copy of this member named `name` (issue 21), on `port`
    /// (0: the driver's choice), made by `deadline`: production replication to this member never
    /// stops, and the copy neither streams from nor to anyone. A driver that cannot refuses.
    async fn make_copy(&self, name: &str, port: u16, deadline: std::time::Instant) -> Result<CopyMade, DriverError> {
        let _ = (name, port, deadline);
        Err(DriverError::Refused(format!("the {} driver cannot make an isolated copy", self.kind())))
    }

    /// Stops and deletes the copy `name` (gone already: done).
    async fn destroy_copy(&self, name: &str) -> Result<String, DriverError> {
        let _ = name;
        Err(DriverError::Refused(format!("the {} driver makes no copies", self.kind())))
    }

    /// True when this member is stopped on this host and would start as a primary (it is not
    /// configured as a standby). The agent then starts it only under a lease at an epoch that
    /// makes it primary (DESIGN.md point 8); a stopped standby is left to the leader's rejoin.
    async fn stopped_as_primary(&self) -> bool {
        false
    }

    /// True when this member runs in recovery as a primary started to be opened
    /// ([`DatabaseDriver::start_in_recovery`]) and not opened yet: what an agent that died half
    /// way through an opening leaves behind. It accepts no write, and nothing but an opening
    /// would ever make it writable again.
    async fn started_unopened(&self) -> bool {
        false
    }

    /// Waits until this standby has received and replayed everything up to `position`, looking every
    /// few milliseconds (a switchover's catch-up is part of its write outage); fails after
    /// `timeout`. The default looks through [`DatabaseDriver::observe`].
    async fn wait_replayed(&self, position: u64, timeout: std::time::Duration) -> Result<(), DriverError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let st = self.observe().await;
            if st.up && st.received_position >= position && st.applied_position >= position {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "not caught up within {} ms: received {}, replayed {}, wanted {position}",
                    timeout.as_millis(),
                    st.received_position,
                    st.applied_position
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Fences this member: stops it at once (no checkpoint, every session cut), so that nothing
    /// can commit on it any more. Idempotent. Used when the primary's lease is about to lapse.
    async fn fence(&self) -> Result<(), DriverError>;
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
