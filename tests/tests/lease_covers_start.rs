//! The lease covers the start of a primary, the watchdog is armed before it, and a clean stop of
//! the agent disarms it on purpose (issue 16, item 2; DESIGN.md point 2). Real PostgreSQL, real
//! processes; dc's agent runs PostgreSQL's tools through a directory of links to the real ones,
//! with a `pg_ctl` that can be made slow to start, and its watchdog is a regular file that shows
//! what was written to it ("1" per pet, "V" for the magic close).
//!
//! - dc is fenced (its agent stalled past its lease) and the leader restarts it; the start takes
//!   4 s, and as it begins every controller and ndc's agent (the vouch set) freeze, so the lease
//!   ends during the start. dc's server never accepts a write: it was started in recovery and
//!   is stopped again instead of opened. The watchdog was armed when the start began. Before, the
//!   start brought the server up as a primary, writable after its lease, until the guard's next
//!   look; and the watchdog was still disarmed from the fence.
//! - SIGTERM to the primary's agent: it stops dc's server first (a clean shutdown), then disarms
//!   the watchdog (the file ends in "V"); ndc is promoted and no acknowledged write is lost.
//!   Before, the agent exited with the primary running unguarded and the watchdog closed without
//!   the magic character (a real one would reset the host).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use triad_tests::workload::{Workload, WritableWatch};
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ALL: &[&str] = &["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc", "agent-dr"];

/// dc's agent, rigged: its own PostgreSQL tool directory and a regular file for a watchdog.
struct Rig {
    /// Written by the `pg_ctl` wrapper (as the database's user): `slow-start` (made by the test)
    /// makes a start wait 4 s, after writing `starting` and `watchdog-at-start`.
    marks: PathBuf,
    watchdog: PathBuf,
}

/// Rewrites dc's agent config before it starts (see [`Rig`]).
fn rig_dc_agent(d: &Deployment) -> Result<Rig> {
    let real = triad_controller::ctl::postgres::find_bin_dir().context("PostgreSQL binaries")?;
    let tools = d.dir().join("rigged-bin");
    let marks = d.dir().join("marks");
    std::fs::create_dir_all(&tools)?;
    std::fs::create_dir_all(&marks)?;
    // The wrapper runs as `postgres`, which writes the marks.
    std::fs::set_permissions(&marks, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    for entry in std::fs::read_dir(&real)? {
        let entry = entry?;
        if entry.file_name() != "pg_ctl" {
            std::os::unix::fs::symlink(entry.path(), tools.join(entry.file_name()))?;
        }
    }
    let watchdog = d.dir().join("watchdog-dc");
    std::fs::write(&watchdog, "")?;
    let script = format!(
        "#!/bin/sh\n# pg_ctl, and a start that waits while {m}/slow-start exists.\ncase \" $* \" in\n  *\" start \"*)\n    if [ -e {m}/slow-start ]; then\n      tail -c 1 {wd} > {m}/watchdog-at-start\n      touch {m}/starting\n      sleep 4\n    fi;;\nesac\nexec {real}/pg_ctl \"$@\"\n",
        m = marks.display(),
        wd = watchdog.display(),
        real = real.display()
    );
    let pg_ctl = tools.join("pg_ctl");
    std::fs::write(&pg_ctl, script)?;
    std::fs::set_permissions(&pg_ctl, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = d.plan.agent_config_path("agent-dc");
    let text = std::fs::read_to_string(&path)?;
    let bin_line = text.lines().find(|l| l.starts_with("bin_dir = ")).context("bin_dir in the agent config")?;
    let quoted = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    let text = text.replace(bin_line, &format!("bin_dir = {}", quoted(&tools)))
        + &format!("\n[lease]\nwatchdog = \"automatic\"\nwatchdog_device = {}\n", quoted(&watchdog));
    std::fs::write(&path, text)?;
    Ok(Rig { marks, watchdog })
}

/// Stalls dc's agent past its lease, so that it fences dc on its late tick.
async fn fence_dc(d: &Deployment) -> Result<()> {
    let paused = d.pause("agent-dc")?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(paused);
    wait_for("dc fenced by its agent", Duration::from_secs(15), || async {
        d.log_tail("agent-dc", 300).contains("fencing the primary").then_some(())
    })
    .await
}

/// The members that report themselves primary, and whether the committed primary is one.
async fn one_writable_primary(d: &Deployment) -> Option<String> {
    let v = d.status().await.ok()?;
    let c = v.cluster_state.get("customs")?;
    let primaries: Vec<&str> =
        v.clusters["customs"].iter().filter(|m| m.role == "primary").map(|m| m.name.as_str()).collect();
    (primaries == [c.primary.as_str()]).then(|| c.primary.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_whose_start_outlasts_its_lease_never_takes_a_write() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    let rig = rig_dc_agent(&d)?;
    d.start_all().await?;
    let ready = d.wait_ready(true).await?;
    let period = Duration::from_millis(ready.lease.period_ms);
    ensure!(period < Duration::from_secs(3), "the test needs a lease shorter than the slow start: {period:?}");

    std::fs::write(rig.marks.join("slow-start"), "")?;
    fence_dc(&d).await?;
    // The leader restarts dc; its start has begun and waits.
    let starting = rig.marks.join("starting");
    wait_for("dc's restart under way", Duration::from_secs(30), || async { starting.exists().then_some(()) })
        .await
        .inspect_err(|_| {
            let _ = d.diagnose(ALL);
        })?;
    // No renewal from here on: no controller answers, and the vouch set's agent is frozen.
    let frozen: Vec<_> = ["controller-1", "controller-2", "controller-3", "agent-ndc"]
        .iter()
        .map(|k| d.pause(k))
        .collect::<Result<_>>()?;
    let froze = Instant::now();
    let watch = WritableWatch::start(d.conninfos()?[0].clone());
    // The start ends 4 s after it began, long after the lease: the guard has fenced what there
    // was to fence, and the opener looks at the lease again before it would open the server.
    // Watched until a lease period and a little more after that: whatever a start left
    // running as a primary would be writable by then.
    let not_opened = wait_for("dc's agent refusing to open the started server", Duration::from_secs(10), || async {
        d.log_tail("agent-dc", 300).contains("the primary was not opened").then_some(())
    })
    .await;
    let done = froze + Duration::from_secs(4) + period + Duration::from_millis(500);
    tokio::time::sleep(done.saturating_duration_since(Instant::now())).await;
    let writable = watch.finish().await;
    std::fs::remove_file(rig.marks.join("slow-start"))?;
    drop(frozen);
    ensure!(
        writable.is_none(),
        "dc's server accepted writes {:?} after its lease's renewals stopped (the lease is {period:?})",
        writable.map(|w| w - froze)
    );
    let armed = std::fs::read_to_string(rig.marks.join("watchdog-at-start"))?;
    ensure!(armed == "1", "the watchdog was not armed when the start began (its last write: {armed:?})");
    not_opened.inspect_err(|_| {
        let _ = d.diagnose(&["agent-dc"]);
    })?;

    // Thawed, the cluster has one writable primary again (dc restarted, or ndc failed over to).
    let primary = wait_for("one writable primary again", Duration::from_secs(60), || one_writable_primary(&d))
        .await
        .inspect_err(|_| {
            let _ = d.diagnose(ALL);
        })?;
    eprintln!("after the thaw, {primary} is the primary");
    let conninfo = &d.conninfos()?[if primary == "dc" { 0 } else { 1 }];
    let (client, conn) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.execute("INSERT INTO orders (note) VALUES ('after the thaw')", &[]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_primarys_agent_stops_its_server_and_disarms_the_watchdog() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    let rig = rig_dc_agent(&d)?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let load = Workload::start(d.conninfos()?, 50).await?;
    let pets = std::fs::read_to_string(&rig.watchdog)?;
    ensure!(pets.starts_with('1') && !pets.contains('V'), "the primary's watchdog is armed and petted: {pets:?}");

    d.signal("agent-dc", nix::sys::signal::Signal::SIGTERM)?;
    let log = d.log_tail("agent-dc", 100);
    ensure!(log.contains("stopping the server first"), "{log}");
    ensure!(log.contains("watchdog disarmed"), "{log}");
    let pets = std::fs::read_to_string(&rig.watchdog)?;
    ensure!(pets.ends_with("1V"), "petted until the stop, then the magic close: {pets:?}");
    let dc_pid = d.pg.as_ref().expect("PostgreSQL").member("dc")?.dir.join("data/postmaster.pid");
    ensure!(!dc_pid.exists(), "dc's server still runs after its agent stopped");

    d.wait_primary("ndc", 2, ALL).await?;
    load.more("writes on ndc", 50, Duration::from_secs(20)).await?;
    let acked = load.finish().await?;
    d.wait_holds_all("ndc", &acked, Duration::from_secs(10)).await?;
    Ok(())
}
