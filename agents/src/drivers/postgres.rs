//! The PostgreSQL driver: observes a member of a streaming-replication cluster through an
//! ordinary client connection (tokio-postgres). Promotion, fencing and rejoining come with the
//! failover work; they will live here too.

use std::path::PathBuf;
use tokio::sync::Mutex;

use tokio_postgres::{Client, NoTls};

use super::{now_ms, DatabaseDriver, DbStatus, DriverError, PositionUnit, ReplicaState, ReplicaStatus};
use super::{postgres_conninfo, postgres_ctl, postgres_kill, postgres_promote, postgres_wal};

/// A PostgreSQL member reached with a libpq-style connection string.
pub struct PostgresDriver {
    cluster: String,
    member: String,
    conninfo: String,
    client: Mutex<Option<Client>>,
    /// A second connection for canary writes, so that a write waiting for a synchronous standby
    /// never delays observation.
    writer: Mutex<Option<Client>>,
    /// Where the server lives on this host, for the commands that stop, start and promote it.
    local: Option<PgLocal>,
    /// The final position of this member while it is stopped as a primary.
    wal_end: std::sync::Arc<postgres_wal::WalEnd>,
}

/// The member's files on this host.
#[derive(Debug, Clone)]
pub struct PgLocal {
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub os_user: String,
    pub log_file: PathBuf,
}

const CANARY_DDL: &str = "CREATE SCHEMA IF NOT EXISTS triad; \
     CREATE TABLE IF NOT EXISTS triad.canary (id int PRIMARY KEY, seq bigint NOT NULL, \
     at timestamptz NOT NULL, epoch bigint NOT NULL, origin text NOT NULL)";

const CANARY_UPSERT: &str = "INSERT INTO triad.canary (id, seq, at, epoch, origin) \
     VALUES (1, $1, clock_timestamp(), $2, $3) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, \
     at = excluded.at, epoch = excluded.epoch, origin = excluded.origin";

/// How long a connection may take to open. A stopped (SIGSTOP) or wedged server accepts the TCP
/// connection in the kernel and then never answers: without a bound, the observation waits for
/// ever and the guard never learns that it cannot see its server (DESIGN.md point 1).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long the observation's queries may take on an open connection.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn connect(conninfo: &str) -> Result<Client, DriverError> {
    let (client, conn) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(conninfo, NoTls))
        .await
        .map_err(|_| DriverError::Timeout(format!("no answer within {} ms", CONNECT_TIMEOUT.as_millis())))?
        .map_err(|e| DriverError::Database(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl PostgresDriver {
    /// A driver for `member` of `cluster`; connects lazily and reconnects after failures.
    pub fn new(cluster: &str, member: &str, conninfo: &str, local: Option<PgLocal>) -> Self {
        PostgresDriver {
            cluster: cluster.into(),
            member: member.into(),
            conninfo: conninfo.into(),
            client: Mutex::new(None),
            writer: Mutex::new(None),
            local,
            wal_end: Default::default(),
        }
    }

    /// `Some(true)` for a running standby, `Some(false)` for a running primary, `None` when
    /// the server does not answer.
    async fn running_role(&self) -> Result<Option<bool>, DriverError> {
        let Ok(client) = connect(&self.conninfo).await else { return Ok(None) };
        Ok(Some(in_recovery(&client).await?))
    }

    fn local(&self) -> Result<PgLocal, DriverError> {
        self.local
            .clone()
            .ok_or_else(|| DriverError::Refused("database.data_dir is not configured on this agent".into()))
    }

    fn base(&self) -> DbStatus {
        DbStatus {
            cluster: self.cluster.clone(),
            member: self.member.clone(),
            driver: "postgres".into(),
            role: "down".into(),
            position_unit: PositionUnit::Bytes as i32,
            replay_delay_seconds: -1.0,
            replay_remaining_seconds: -1.0,
            canary_age_seconds: -1.0,
            observed_ms: now_ms(),
            ..Default::default()
        }
    }

    async fn query(&self, client: &Client, st: &mut DbStatus) -> Result<(), tokio_postgres::Error> {
        let row = client
            // The checkpoint's timeline lags a promotion until the next checkpoint: a primary's
            // current WAL file name and a standby's WAL receiver know the timeline at once.
            .query_one(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() \
                   THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), \
                                 (SELECT timeline_id FROM pg_control_checkpoint())) \
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END",
                &[],
            )
            .await?;
        let in_recovery: bool = row.get(0);
        st.timeline = row.get::<_, i32>(1) as u32;
        st.up = true;
        if in_recovery {
            st.role = "standby".into();
            let row = client
                .query_one(
                    "SELECT coalesce((pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                            coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                            coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8, -1), \
                            coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false), \
                            coalesce((SELECT sender_host FROM pg_stat_wal_receiver), ''), \
                            coalesce((SELECT sender_port FROM pg_stat_wal_receiver), 0), \
                            current_setting('primary_conninfo')",
                    &[],
                )
                .await?;
            st.received_position = row.get::<_, i64>(0) as u64;
            st.applied_position = row.get::<_, i64>(1) as u64;
            // After a restart the receiver starts from zero until it reconnects; the replayed
            // position, read from the standby's own WAL, still counts.
            st.position = st.received_position.max(st.applied_position);
            st.replay_delay_seconds = row.get(2);
            st.receiver_streaming = row.get(3);
            (st.upstream, st.upstream_id) = upstream(row.get(4), row.get(5), row.get(6));
            st.replay_remaining_seconds = replay_seconds(st.received_position.saturating_sub(st.applied_position));
        } else {
            st.role = "primary".into();
            let row = client.query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[]).await?;
            st.position = row.get::<_, i64>(0) as u64;
            let rows = client
                .query(
                    "SELECT coalesce(application_name, ''), coalesce(state, ''), coalesce(sync_state, ''), \
                            coalesce((pg_current_wal_lsn() - flush_lsn)::bigint, -1), \
                            coalesce((pg_current_wal_lsn() - replay_lsn)::bigint, -1), \
                            coalesce(extract(epoch FROM replay_lag)::float8, 0), \
                            coalesce(extract(epoch FROM flush_lag)::float8, \
                                     CASE WHEN flush_lsn = pg_current_wal_lsn() THEN 0 ELSE -1 END) \
                     FROM pg_stat_replication ORDER BY application_name",
                    &[],
                )
                .await?;
            st.replicas = rows
                .iter()
                .map(|r| {
                    let (state, sync_state): (String, String) = (r.get(1), r.get(2));
                    let flush_lag_bytes: i64 = r.get(3);
                    ReplicaStatus {
                        name: r.get(0),
                        replica_state: replica_state(&state) as i32,
                        synchronous: sync_state == "sync",
                        caught_up: flush_lag_bytes == 0,
                        state,
                        sync_state,
                        flush_lag_bytes,
                        replay_lag_bytes: r.get(4),
                        replay_lag_seconds: r.get(5),
                        flush_lag_seconds: r.get(6),
                    }
                })
                .collect();
        }
        let row = client.query_one("SELECT to_regclass('triad.canary') IS NOT NULL", &[]).await?;
        if row.get::<_, bool>(0) {
            if let Some(r) = client
                .query_opt(
                    "SELECT seq, epoch, origin, extract(epoch FROM clock_timestamp() - at)::float8 FROM triad.canary WHERE id = 1",
                    &[],
                )
                .await?
            {
                st.canary_seq = r.get::<_, i64>(0) as u64;
                st.canary_epoch = r.get::<_, i64>(1) as u64;
                st.canary_origin = r.get(2);
                st.canary_age_seconds = r.get(3);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DatabaseDriver for PostgresDriver {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn endpoint_id(&self, endpoint: &str) -> String {
        postgres_conninfo::server_id(endpoint).unwrap_or_default()
    }

    async fn observe(&self) -> DbStatus {
        let mut st = self.base();
        if let Some(l) = &self.local {
            // A single-user server (pg_rewind's recovery step, which this agent runs during a
            // rejoin) writes its pid negated and serves no client: not a primary either.
            st.configured_standby =
                l.data_dir.join("standby.signal").exists() || postgres_kill::single_user_running(&l.data_dir);
        }
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(&self.conninfo).await {
                Ok(client) => {
                    *guard = Some(client);
                }
                Err(e) => {
                    st.error = format!("connect: {e}");
                    // Unreachable is not stopped: only the postmaster's absence on this host is.
                    if let Some(l) = self.local.clone() {
                        let wal_end = self.wal_end.clone();
                        (st.stopped, st.final_position) =
                            blocking(move || Ok(stopped_at(&l, &wal_end))).await.unwrap_or((false, 0));
                    }
                    return st;
                }
            }
        }
        let Some(client) = guard.as_ref() else {
            return st;
        };
        let configured_standby = st.configured_standby;
        // Bounded like the connection: a server stopped after it was connected must not hang
        // the observation either.
        let queried = tokio::time::timeout(QUERY_TIMEOUT, self.query(client, &mut st)).await;
        let failed = match queried {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer to the observation's queries within {} ms", QUERY_TIMEOUT.as_millis())),
        };
        if let Some(error) = failed {
            st = DbStatus { error, configured_standby, ..self.base() };
            *guard = None;
        }
        st
    }

    async fn stop_primary(&self) -> Result<u64, DriverError> {
        let l = self.local()?;
        // Idempotent: a member already stopped cleanly reports its shutdown checkpoint again.
        // A fast shutdown ends sessions, writes a shutdown checkpoint, and lets the WAL senders
        // ship everything up to it before they exit.
        blocking(move || {
            let was_running = stop(&l, "fast", 60)?;
            let (lsn, state) = postgres_ctl::control_data(&l.bin_dir, &l.os_user, &l.data_dir)?;
            if state != "shut down" {
                return Err(DriverError::Refused(if was_running {
                    format!("after stopping, the cluster state is `{state}`, not `shut down`")
                } else {
                    // Stopped before this command came, without a shutdown checkpoint (a fence's
                    // immediate stop, a crash): no clean end of its WAL to hand over.
                    format!(
                        "the server was already stopped without a clean shutdown (cluster state `{state}`: \
                         fenced or crashed), so it has no shutdown checkpoint to hand over"
                    )
                }));
            }
            Ok(lsn)
        })
        .await
    }

    async fn promote(&self, synchronous: &[String], deadline: std::time::Instant) -> Result<(), DriverError> {
        let sync = sync_value(synchronous)?;
        let client = connect_member(&self.conninfo).await?;
        // Idempotent: a member already out of recovery has nothing left to do.
        let in_recovery: bool = in_recovery(&client).await?;
        if !in_recovery {
            return Ok(());
        }
        // Paused replay would hold back what the new primary has received.
        client
            .batch_execute("SELECT pg_wal_replay_resume() WHERE pg_is_wal_replay_paused()")
            .await
            .map_err(|e| DriverError::Database(e.to_string()))?;
        // A base backup copies its primary's synchronous_standby_names; promoted with it, this
        // member would wait for standbys that are not there (possibly itself). It starts with
        // the names the controller gives: none (asynchronous until a standby follows and is
        // made synchronous), or, in strict mode, the standbys every commit must wait for.
        set_sync_names(&client, &sync).await?;
        if std::time::Instant::now() >= deadline {
            return Err(DriverError::Timeout(
                "the promote's time ran out before the promotion began: nothing was promoted".into(),
            ));
        }
        postgres_promote::promote_and_wait(&client, deadline).await
    }

    async fn wait_replayed(&self, lsn: u64, timeout: std::time::Duration) -> Result<(), DriverError> {
        // One connection and one light query per look, rather than a whole observation.
        let client = connect_member(&self.conninfo).await?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let row = client
                .query_one(
                    "SELECT coalesce((pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint, 0), \
                            coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)",
                    &[],
                )
                .await
                .map_err(|e| DriverError::Database(e.to_string()))?;
            let (received, replayed) = (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64);
            if received >= lsn && replayed >= lsn {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "not caught up within {} ms: received {received}, replayed {replayed}, wanted {lsn}",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn rejoin(&self, primary_conninfo: &str) -> Result<String, DriverError> {
        let l = self.local()?;
        let conninfo = format!("{primary_conninfo} application_name={}", self.member);
        if self.running_role().await? == Some(true) {
            // Already a running standby: nothing to do (a recovering leader may repeat this step).
            return Ok("already a running standby".into());
        }
        if self.running_role().await? == Some(false) {
            return Err(DriverError::Refused(format!(
                "{} is running as a primary; refusing to turn it into a standby",
                self.member
            )));
        }
        let (member, source) = (self.member.clone(), format!("{primary_conninfo} dbname=postgres"));
        // A just-promoted primary names its new timeline in pg_control only after its next
        // checkpoint; pg_rewind reads it there and would find "the same timeline, no rewind
        // required" and leave the diverged WAL in place.
        let src =
            connect(&source).await.map_err(|e| DriverError::Database(format!("connecting to the new primary: {e}")))?;
        src.batch_execute("CHECKPOINT")
            .await
            .map_err(|e| DriverError::Database(format!("CHECKPOINT on the new primary: {e}")))?;
        blocking(move || {
            if super::postgres_rewind::restore_kept_config(&l.data_dir)? {
                tracing::warn!(member = %member, "restored this member's configuration, kept by a rejoin that did not finish");
            }
            // A member that was a primary (stopped, or crashed as one) may hold WAL the new
            // primary never had, so it is rewound first. A standby.signal left by an earlier attempt would make pg_rewind's single-user
            // recovery refuse to run; it is written again below.
            let signal = l.data_dir.join("standby.signal");
            if signal.exists() {
                std::fs::remove_file(&signal).map_err(|e| DriverError::File(format!("{}: {e}", signal.display())))?;
            }
            let (_, state) = postgres_ctl::control_data(&l.bin_dir, &l.os_user, &l.data_dir)?;
            // A standby (stopped cleanly or not) holds only WAL it received: nothing to rewind,
            // and a rewind's single-user recovery would end its recovery and write WAL of its own.
            let report = if state == "shut down in recovery" || state == "in archive recovery" {
                "was a standby: nothing to rewind".to_string()
            } else {
                super::postgres_rewind::rewind(&l, &source, &member)?
            };
            let auto = l.data_dir.join("postgresql.auto.conf");
            let text =
                std::fs::read_to_string(&auto).map_err(|e| DriverError::File(format!("{}: {e}", auto.display())))?;
            let mut lines: Vec<String> =
                text.lines().filter(|l| !l.trim_start().starts_with("primary_conninfo")).map(String::from).collect();
            lines.push(format!("primary_conninfo = '{}'", conninfo.replace('\'', "''")));
            // Rewriting in place keeps the file's owner (the database user).
            std::fs::write(&auto, lines.join("\n") + "\n")
                .map_err(|e| DriverError::File(format!("{}: {e}", auto.display())))?;
            let signal = l.data_dir.join("standby.signal");
            std::fs::write(&signal, "").map_err(|e| DriverError::File(format!("{}: {e}", signal.display())))?;
            start(&l)?;
            Ok(report)
        })
        .await
    }

    async fn set_synchronous(&self, names: &[String]) -> Result<(), DriverError> {
        let value = sync_value(names)?;
        let client = connect_member(&self.conninfo).await?;
        set_sync_names(&client, &value).await
    }

    async fn follow(&self, primary_conninfo: &str) -> Result<(), DriverError> {
        let client = connect_member(&self.conninfo).await?;
        let in_recovery: bool = in_recovery(&client).await?;
        if !in_recovery {
            return Err(DriverError::Refused(format!(
                "{} is running as a primary; refusing to make it follow another",
                self.member
            )));
        }
        // primary_conninfo is reloadable since PostgreSQL 13: the WAL receiver reconnects.
        let conninfo = format!("{primary_conninfo} application_name={}", self.member).replace('\'', "''");
        client
            .batch_execute(&format!("ALTER SYSTEM SET primary_conninfo = '{conninfo}'"))
            .await
            .map_err(|e| DriverError::Database(format!("ALTER SYSTEM: {e}")))?;
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(|e| DriverError::Database(format!("reload: {e}")))?;
        Ok(())
    }

    async fn fence(&self) -> Result<(), DriverError> {
        let l = self.local()?;
        blocking(move || fence_now(&l)).await
    }

    async fn stopped_as_primary(&self) -> bool {
        let Ok(l) = self.local() else { return false };
        blocking(move || Ok(!is_running(&l) && !l.data_dir.join("standby.signal").exists())).await.unwrap_or(false)
    }

    async fn started_unopened(&self) -> bool {
        let Ok(l) = self.local() else { return false };
        blocking(move || {
            let opts = std::fs::read_to_string(l.data_dir.join("postmaster.opts")).unwrap_or_default();
            let recovering = l.data_dir.join("standby.signal").exists();
            Ok(recovering && postgres_ctl::started_with_no_upstream(&opts) && is_running(&l))
        })
        .await
        .unwrap_or(false)
    }

    async fn restart(&self) -> Result<(), DriverError> {
        let l = self.local()?;
        blocking(move || if is_running(&l) { Ok(()) } else { start(&l) }).await
    }

    async fn start_in_recovery(&self) -> Result<(), DriverError> {
        let l = self.local()?;
        blocking(move || {
            if is_running(&l) {
                return Err(DriverError::Refused("the server is already running: not starting it in recovery".into()));
            }
            // In standby mode it replays its own WAL (crash recovery first, after a fence's
            // immediate stop) and then waits: with no primary_conninfo (the command line wins over
            // postgresql.auto.conf) it streams from nowhere, so it stays exactly the primary it
            // was, and only a promotion opens it.
            let signal = l.data_dir.join("standby.signal");
            std::fs::write(&signal, "").map_err(|e| DriverError::File(format!("{}: {e}", signal.display())))?;
            start_with(&l, &["-o", &format!("-c {}", postgres_ctl::NO_UPSTREAM)])
        })
        .await
    }

    async fn open_started(&self, deadline: std::time::Instant) -> Result<(), DriverError> {
        let client = connect_member(&self.conninfo).await?;
        let in_recovery: bool = in_recovery(&client).await?;
        if !in_recovery {
            return Ok(());
        }
        postgres_promote::promote_and_wait(&client, deadline).await
    }

    async fn stop_unopened(&self) -> Result<(), DriverError> {
        let l = self.local()?;
        blocking(move || {
            fence_now(&l)?;
            // Stopped: what is left of the start is the file that made it a standby.
            let signal = l.data_dir.join("standby.signal");
            match std::fs::remove_file(&signal) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(DriverError::File(format!("{}: {e}", signal.display())))
                }
                _ => Ok(()),
            }
        })
        .await
    }

    async fn make_copy(
        &self,
        name: &str,
        port: u16,
        deadline: std::time::Instant,
    ) -> Result<super::CopyMade, DriverError> {
        super::valid_copy_name(name)?;
        let l = self.local()?;
        let port = match port {
            0 => super::postgres_conninfo::server(&self.conninfo)
                .and_then(|(_, p)| p.checked_add(100))
                .ok_or_else(|| DriverError::Refused("no port for the copy: give the plan a copy_port".into()))?,
            p => p,
        };
        super::postgres_copy::make(l, self.conninfo.clone(), name.into(), port, deadline).await
    }

    async fn destroy_copy(&self, name: &str) -> Result<String, DriverError> {
        super::valid_copy_name(name)?;
        let (l, name) = (self.local()?, name.to_string());
        blocking(move || super::postgres_copy::destroy(&l, &name)).await
    }

    async fn write_canary(&self, seq: u64, epoch: u64, origin: &str) -> Result<(), DriverError> {
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            let client = connect_member(&self.conninfo).await?;
            client
                .batch_execute(CANARY_DDL)
                .await
                .map_err(|e| DriverError::Database(format!("creating triad.canary: {e}")))?;
            *guard = Some(client);
        }
        let Some(client) = guard.as_ref() else {
            return Err(DriverError::Database("no connection".into()));
        };
        let r = client.execute(CANARY_UPSERT, &[&(seq as i64), &(epoch as i64), &origin]).await;
        if let Err(e) = r {
            *guard = None;
            return Err(DriverError::Database(e.to_string()));
        }
        Ok(())
    }
}

/// [`connect`], its error saying it was the connection that failed.
pub(super) async fn connect_member(conninfo: &str) -> Result<Client, DriverError> {
    connect(conninfo).await.map_err(|e| DriverError::Database(format!("connect: {e}")))
}

/// Whether the server `client` is connected to is in recovery (a standby).
pub(super) async fn in_recovery(client: &Client) -> Result<bool, DriverError> {
    let row = client.query_one("SELECT pg_is_in_recovery()", &[]).await;
    Ok(row.map_err(|e| DriverError::Database(e.to_string()))?.get(0))
}

/// Runs blocking work (child processes, file edits) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| DriverError::Program(format!("the blocking task: {e}")))?
}

/// Starts the server. The port of a server stopped moments ago (immediately, as a fence does)
/// can stay taken by its connections' TCP TIME-WAIT state for up to a minute; the start is
/// retried meanwhile rather than failed.
fn start(l: &PgLocal) -> Result<(), DriverError> {
    start_with(l, &[])
}

/// [`start`], with `extra` arguments for pg_ctl (`-o` and the server's options).
fn start_with(l: &PgLocal, extra: &[&str]) -> Result<(), DriverError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (data, log) = (l.data_dir.display().to_string(), l.log_file.display().to_string());
    let mut args = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
    args.extend_from_slice(extra);
    args.push("start");
    loop {
        let r = postgres_ctl::run(&l.bin_dir, &l.os_user, "pg_ctl", &args);
        let Err(e) = r else { return Ok(()) };
        let log = std::fs::read_to_string(&l.log_file).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(6).collect();
        if !tail.iter().any(|line| line.contains("Address already in use")) || std::time::Instant::now() > deadline {
            return Err(e);
        }
        tracing::warn!("the server's port is still taken by its previous run's connections; retrying in 2 s");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// `ALTER SYSTEM` runs outside a transaction block, so it cannot share a batch with the reload.
/// `synchronous_standby_names` waiting for all of `names` (never more names than the count waited
/// for, DESIGN.md point 5); empty for none.
fn sync_value(names: &[String]) -> Result<String, DriverError> {
    // Names are member names, checked when configured; quoted as identifiers all the same.
    if names.iter().any(|n| !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))) {
        return Err(DriverError::Refused(format!("refusing unusual standby names {names:?}")));
    }
    Ok(match names.len() {
        0 => String::new(),
        n => format!("FIRST {n} ({})", names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")),
    })
}

async fn set_sync_names(client: &Client, value: &str) -> Result<(), DriverError> {
    client
        .batch_execute(&format!("ALTER SYSTEM SET synchronous_standby_names = '{value}'"))
        .await
        .map_err(|e| DriverError::Database(format!("ALTER SYSTEM: {e}")))?;
    client.batch_execute("SELECT pg_reload_conf()").await.map_err(|e| DriverError::Database(format!("reload: {e}")))?;
    Ok(())
}

/// Stops the server of `l` in shutdown `mode`, waiting up to `secs`; nothing when it is not
/// running. `true` when it was running.
fn stop(l: &PgLocal, mode: &str, secs: u32) -> Result<bool, DriverError> {
    if !is_running(l) {
        return Ok(false);
    }
    let data = l.data_dir.display().to_string();
    postgres_ctl::run(
        &l.bin_dir,
        &l.os_user,
        "pg_ctl",
        &["-D", &data, "-m", mode, "-w", "-t", &secs.to_string(), "stop"],
    )?;
    Ok(true)
}

/// The fence: an immediate stop (no shutdown checkpoint to wait for, and no session gets to
/// commit after the postmaster's SIGQUIT; recovery on the next start replays the WAL), and, for a
/// postmaster that is stopped or does not act on it, SIGKILL of the whole tree
/// (`postgres_kill.rs`). A fence that leaves the server running is an error the guard reports.
fn fence_now(l: &PgLocal) -> Result<(), DriverError> {
    if let Some(pid) = postgres_kill::postmaster_pid(&l.data_dir).filter(|&pid| postgres_kill::is_stopped(pid)) {
        tracing::warn!(pid, "the postmaster is stopped (SIGSTOP?): it cannot act on a stop; killing its tree");
        return postgres_kill::kill_tree(pid, KILL_WAIT).map(|_| ());
    }
    let Err(e) = stop(l, "immediate", IMMEDIATE_STOP_SECS) else { return Ok(()) };
    match postgres_kill::postmaster_pid(&l.data_dir) {
        Some(pid) => {
            tracing::warn!(pid, "the immediate stop failed ({e}); killing the postmaster's tree");
            postgres_kill::kill_tree(pid, KILL_WAIT).map(|_| ())
        }
        None if !is_running(l) => Ok(()),
        None => Err(e),
    }
}

/// How long the fence's immediate stop may take before the tree is killed: it normally takes
/// milliseconds, so a slower one means a postmaster that is not acting on signals.
const IMMEDIATE_STOP_SECS: u32 = 3;
/// How long a SIGKILLed postmaster may take to be gone.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the server is confirmed stopped on this host, and, when it is stopped as a primary,
/// its final position (0 when that cannot be read: an unknown position qualifies no standby).
fn stopped_at(l: &PgLocal, wal_end: &postgres_wal::WalEnd) -> (bool, u64) {
    if is_running(l) {
        return (false, 0);
    }
    if l.data_dir.join("standby.signal").exists() {
        return (true, 0);
    }
    (true, wal_end.read(&l.bin_dir, &l.os_user, &l.data_dir).unwrap_or(0))
}

/// Whether the postmaster of `l` runs (`pg_ctl status`).
fn is_running(l: &PgLocal) -> bool {
    postgres_ctl::run(&l.bin_dir, &l.os_user, "pg_ctl", &["-D", &l.data_dir.display().to_string(), "status"]).is_ok()
}

/// A standby's upstream: for display as `host=H port=P`, and as the canonical `host:port` the
/// controller compares with the primary's `endpoint_id`. Where its WAL receiver streams from,
/// else what its `primary_conninfo` names; both empty when neither says.
fn upstream(sender_host: String, sender_port: i32, primary_conninfo: String) -> (String, String) {
    let quoted = |h: &str| format!("'{}'", h.replace('\\', "\\\\").replace('\'', "\\'"));
    let sender_port = u16::try_from(sender_port).ok().filter(|p| *p > 0);
    let (host, port) = if let Some(port) = sender_port.filter(|_| !sender_host.is_empty()) {
        (sender_host, port)
    } else {
        match postgres_conninfo::server(&primary_conninfo) {
            Some(server) if !primary_conninfo.trim().is_empty() => server,
            _ => return (String::new(), String::new()),
        }
    };
    (format!("host={} port={port}", quoted(&host)), postgres_conninfo::id(&host, port))
}

/// `pg_stat_replication.state` in Triad's words.
fn replica_state(state: &str) -> ReplicaState {
    match state {
        "streaming" => ReplicaState::Streaming,
        "catchup" | "startup" | "backup" => ReplicaState::CatchingUp,
        "stopping" => ReplicaState::Stopped,
        _ => ReplicaState::Unknown,
    }
}

/// The slowest a standby is assumed to replay, in bytes per second, for the time it needs to
/// apply what it has received (DESIGN.md point 7 sizes a promotion's budget from it).
const MIN_REPLAY_BYTES_PER_SEC: u64 = 8 << 20;

/// Seconds to replay `bytes` of received WAL at [`MIN_REPLAY_BYTES_PER_SEC`].
fn replay_seconds(bytes: u64) -> f64 {
    bytes as f64 / MIN_REPLAY_BYTES_PER_SEC as f64
}
