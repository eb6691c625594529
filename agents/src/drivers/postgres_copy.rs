//! A dr-test's isolated copy (issue 21), like SRM's test recovery: a base backup taken from this
//! standby (`pg_basebackup` streams from a standby as from a primary), started on a port of its
//! own as a writable server that replicates to and from nobody, checked, then destroyed. The
//! member is never stopped or reconfigured, so production replication to it goes on throughout.
//!
//! Isolation: the copy's `postgresql.auto.conf` ends with settings that win over everything it
//! inherited: no `primary_conninfo` (it streams from nobody), no archive, no synchronous
//! standbys, its own port and `cluster_name`; no standby signal file, so it opens for writes once
//! it has replayed the WAL its backup carries. No standby points at its port. Its directory
//! carries a marker, and only a directory with the marker is ever deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use triad_proto::v1::CanaryRow;

use super::postgres::PgLocal;
use super::postgres_ctl;
use super::{CopyMade, DriverError};

/// The file that marks a directory as a copy Triad made.
const MARKER: &str = "triad-drill-copy";

/// Where copy `name` of the member at `l` lives: beside its data directory.
pub fn dir(l: &PgLocal, name: &str) -> PathBuf {
    PathBuf::from(format!("{}.{name}", l.data_dir.display()))
}

/// The settings appended to the copy's `postgresql.auto.conf` (the last setting of a name wins).
fn isolation(port: u16) -> String {
    format!(
        "\n# --- Triad drill copy: isolated, no replication to or from production ---\n\
         port = {port}\n\
         cluster_name = 'triad-drill-copy'\n\
         primary_conninfo = ''\n\
         primary_slot_name = ''\n\
         restore_command = ''\n\
         archive_mode = off\n\
         synchronous_standby_names = ''\n"
    )
}

/// Makes the copy's files: a base backup from the member (`source`: its connection keywords),
/// isolated. A copy left by an earlier run of the same name (its agent died) is removed first.
/// Returns when the backup ended (ms since the Unix epoch) and how long it took.
pub fn take(l: &PgLocal, source: &str, name: &str, port: u16) -> Result<(u64, Duration), DriverError> {
    let copy = dir(l, name);
    remove(l, &copy)?;
    let started = Instant::now();
    let target = copy.display().to_string();
    let r = postgres_ctl::run(
        &l.bin_dir,
        &l.os_user,
        "pg_basebackup",
        // --no-sync: a throwaway copy need not wait for the disk.
        &["-D", &target, "-d", source, "-X", "stream", "-c", "fast", "--no-password", "--no-sync"],
    );
    let copied_at = super::now_ms();
    let took = started.elapsed();
    let file = |e: std::io::Error| DriverError::File(format!("preparing the copy in {target}: {e}"));
    if let Err(e) = r {
        // pg_basebackup removes what it wrote when it fails; a marker makes any rest removable.
        if copy.exists() {
            std::fs::write(copy.join(MARKER), name).map_err(file)?;
        }
        return Err(DriverError::Program(format!("base backup from the standby failed: {e}")));
    }
    std::fs::write(copy.join(MARKER), name).map_err(file)?;
    for signal in ["standby.signal", "recovery.signal"] {
        match std::fs::remove_file(copy.join(signal)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file(e)),
            _ => {}
        }
    }
    let auto = copy.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
    conf.push_str(&isolation(port));
    std::fs::write(&auto, conf).map_err(file)?;
    Ok((copied_at, took))
}

/// Starts the copy on its port (its log in its directory).
pub fn start(l: &PgLocal, name: &str, port: u16) -> Result<(), DriverError> {
    let copy = dir(l, name);
    let (data, log) = (copy.display().to_string(), copy.join("copy.log").display().to_string());
    let port = format!("-p {port}");
    postgres_ctl::run(
        &l.bin_dir,
        &l.os_user,
        "pg_ctl",
        &["-D", &data, "-l", &log, "-o", &port, "-w", "-t", "60", "start"],
    )
    .map(|_| ())
}

/// Stops the copy at once and deletes it. Nothing there: done. A directory without the marker
/// is not ours, and is refused.
pub fn destroy(l: &PgLocal, name: &str) -> Result<String, DriverError> {
    let copy = dir(l, name);
    if !copy.exists() {
        return Ok(format!("no copy {name} (gone already)"));
    }
    remove(l, &copy)?;
    Ok(format!("copy {name} stopped and deleted"))
}

fn remove(l: &PgLocal, copy: &Path) -> Result<(), DriverError> {
    if !copy.exists() {
        return Ok(());
    }
    if !copy.join(MARKER).exists() {
        return Err(DriverError::Refused(format!("{} exists and is not a copy Triad made", copy.display())));
    }
    if copy.join("postmaster.pid").exists() {
        let data = copy.display().to_string();
        // Not running (a stale pid file): pg_ctl says so, and the files go all the same.
        if let Err(e) =
            postgres_ctl::run(&l.bin_dir, &l.os_user, "pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
        {
            tracing::debug!("stopping the copy in {data}: {e}");
        }
    }
    std::fs::remove_dir_all(copy).map_err(|e| DriverError::File(format!("deleting {}: {e}", copy.display())))
}

/// Once the copy runs: waits (until `deadline`) for it to accept a write, which it proves by
/// writing one (`triad.drill_probe`), and reads its newest canary row.
pub async fn prove_writable(endpoint: &str, deadline: Instant) -> Result<Option<CanaryRow>, DriverError> {
    let client = loop {
        let last = match super::postgres::connect_member(endpoint).await {
            Ok(client) => match super::postgres::in_recovery(&client).await {
                Ok(false) => break client,
                Ok(true) => "it is still replaying its backup's WAL".to_string(),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(DriverError::Timeout(format!("the copy did not accept writes in time: {last}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let db = |e: tokio_postgres::Error| DriverError::Database(format!("the copy: {e}"));
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS triad; \
             CREATE TABLE IF NOT EXISTS triad.drill_probe (at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             INSERT INTO triad.drill_probe DEFAULT VALUES",
        )
        .await
        .map_err(db)?;
    let has_canary: bool =
        client.query_one("SELECT to_regclass('triad.canary') IS NOT NULL", &[]).await.map_err(db)?.get(0);
    if !has_canary {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT seq, epoch, origin, (extract(epoch FROM at) * 1000)::bigint FROM triad.canary WHERE id = 1",
            &[],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| CanaryRow {
        seq: r.get::<_, i64>(0) as u64,
        epoch: r.get::<_, i64>(1) as u64,
        origin: r.get(2),
        written_ms: r.get::<_, i64>(3) as u64,
    }))
}

/// The whole copy, as the driver's `make_copy` does it: take, start, prove writable.
pub async fn make(
    l: PgLocal,
    source: String,
    name: String,
    port: u16,
    deadline: Instant,
) -> Result<CopyMade, DriverError> {
    let endpoint = super::postgres_conninfo::with_port(&source, port)
        .ok_or_else(|| DriverError::Refused("the member's connection string does not read".into()))?;
    let started = Instant::now();
    let (l2, name2) = (l.clone(), name.clone());
    let (copied_at_ms, backup) = super::postgres::blocking(move || take(&l2, &source, &name2, port)).await?;
    let t = Instant::now();
    let (l2, name2) = (l.clone(), name.clone());
    let started_copy = super::postgres::blocking(move || start(&l2, &name2, port)).await;
    if let Err(e) = started_copy {
        let log = std::fs::read_to_string(dir(&l, &name).join("copy.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(3).collect();
        return Err(DriverError::Program(format!("starting the copy: {e} ({})", tail.join(" | "))));
    }
    let start_ms = t.elapsed().as_millis();
    let canary = prove_writable(&endpoint, deadline).await?;
    let detail = format!(
        "copy {name} on port {port}: base backup {} ms, start {start_ms} ms, writable after {} ms",
        backup.as_millis(),
        started.elapsed().as_millis()
    );
    Ok(CopyMade { endpoint, copied_at_ms, canary, detail })
}
