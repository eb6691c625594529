//! A guard with missing knowledge fences (issue 16, item 1; DESIGN.md, "Safety of role changes",
//! point 1): a running primary that its agent cannot prove holds a lease at the current epoch is
//! stopped, whatever the agent remembers or forgot. Real PostgreSQL, real processes.
//!
//! - The two-primaries case found on the demo: dc's server frozen and its agent killed, ndc
//!   promoted, dc's agent directory emptied, its server continued, the agent restarted: it fences
//!   dc (which the controllers no longer name), `/primary` never answers 200, dc rejoins. Then its
//!   epoch file is corrupted: the agent is fenced until the leader confirms the epoch.
//! - A server the agent cannot see (frozen while its agent restarts) is assumed to be a primary:
//!   fenced, by SIGKILL of its tree since a stopped postmaster cannot act on `pg_ctl stop`.
//! - With no controller to ask, an agent that forgot its state fences the primary it finds once
//!   its start grace is over; with the controllers back, the leader starts it again.
//! - An agent that died half way through opening its primary (started in recovery, not opened)
//!   finds it so when it starts again: it stops it and starts it once the controllers confirm
//!   its role. Before (chaos seed 71), the primary stayed in recovery for good, no member
//!   writable and nothing said.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::workload::Frozen;
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ALL: &[&str] = &["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"];

fn data_dir(d: &Deployment, member: &str) -> Result<PathBuf> {
    Ok(d.pg.as_ref().expect("a PostgreSQL deployment").member(member)?.dir.join("data"))
}

/// Empties what the agent of `site` keeps (its epoch and lease files), as a lost disk would.
fn forget_state(d: &Deployment, site: &str) -> Result<()> {
    for file in ["epoch", "lease"] {
        let path = d.dir().join(format!("data/agent-{site}/{file}"));
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn http_addr(d: &Deployment, site: &str) -> String {
    d.plan.agents.iter().find(|a| a.site == site).expect("an agent at the site").http_addr.clone()
}

/// Polls an agent's `/primary` every 20 ms until finished; keeps the first 200's body.
struct PrimaryWatch {
    answered_200: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl PrimaryWatch {
    fn start(addr: String) -> PrimaryWatch {
        let answered_200 = Arc::new(Mutex::new(None));
        let seen = answered_200.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok((200, body)) = Deployment::http_get(&addr, "/primary").await {
                    seen.lock().unwrap().get_or_insert(body);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        PrimaryWatch { answered_200, task }
    }

    fn finish(self) -> Option<String> {
        self.task.abort();
        self.answered_200.lock().unwrap().clone()
    }
}

/// Whether the server in `data` accepts connections as a primary right now.
async fn runs_as_primary(d: &Deployment, member: &str) -> bool {
    let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), d.pg_connect(member)).await else {
        return false;
    };
    matches!(client.query_one("SELECT pg_is_in_recovery()", &[]).await, Ok(row) if !row.get::<_, bool>(0))
}

/// Waits until the status shows `member`, and only it, running as a primary (a controller that
/// just came back may have no fresh observation of every member for a moment).
async fn wait_only_primary(d: &Deployment, member: &str) -> Result<()> {
    let primaries = || async {
        let v = d.status().await.ok()?;
        Some(v.clusters["customs"].iter().filter(|m| m.role == "primary").map(|m| m.name.clone()).collect::<Vec<_>>())
    };
    let only = wait_for(&format!("{member} the only primary"), Duration::from_secs(20), || async {
        (primaries().await? == [member]).then_some(())
    })
    .await;
    match only {
        Ok(()) => Ok(()),
        Err(e) => anyhow::bail!("{e}; primaries now: {:?}", primaries().await),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_without_its_state_fences_the_stale_primary_and_confirms_a_lost_epoch() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let dc_data = data_dir(&d, "dc")?;

    d.kill("agent-dc")?;
    let frozen = Frozen::freeze(&dc_data)?;
    d.wait_primary("ndc", 2, ALL).await?;
    forget_state(&d, "dc")?;
    drop(frozen);
    ensure!(runs_as_primary(&d, "dc").await, "dc's server, continued, should run as the stale primary");

    let watch = PrimaryWatch::start(http_addr(&d, "dc"));
    d.start_agent("dc")?;
    let fenced = wait_for("dc's stale primary fenced", Duration::from_secs(30), || async {
        let log = d.log_tail("agent-dc", 400);
        (log.contains("fencing the primary") && !runs_as_primary(&d, "dc").await).then_some(log)
    })
    .await;
    if fenced.is_err() {
        d.diagnose(ALL)?;
    }
    let log = fenced?;
    ensure!(log.contains("epoch 2 makes `ndc` the primary"), "the fence names the current primary: {log}");
    d.wait_synchronous_again("dc", Duration::from_secs(90)).await?;
    wait_only_primary(&d, "ndc").await?;
    if let Some(body) = watch.finish() {
        anyhow::bail!("dc's /primary answered 200 for the stale primary: {body}");
    }

    // The way out of an unreadable epoch file: the leader's confirmed target state.
    d.kill("agent-dc")?;
    let epoch_file = d.dir().join("data/agent-dc/epoch");
    std::fs::write(&epoch_file, "triad-epoch v1\nepoch 7\ncheck 3\n")?;
    d.start_agent("dc")?;
    let confirmed = wait_for("dc's epoch confirmed by the leader", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let dc = v.clusters["customs"].iter().find(|m| m.name == "dc")?.clone();
        (dc.agent_epoch == Some(2) && d.log_tail("agent-dc", 400).contains("the leader confirmed epoch 2"))
            .then_some(())
    })
    .await;
    if confirmed.is_err() {
        d.diagnose(&["agent-dc"])?;
    }
    confirmed?;
    let text = std::fs::read_to_string(&epoch_file)?;
    ensure!(text.contains("epoch 2\ncheck 2"), "the epoch file is written again: {text}");
    ensure!(d.log_tail("agent-dc", 400).contains("fenced: "), "the agent said it was fenced first");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_its_agent_cannot_see_is_taken_for_a_primary_and_killed() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let dc_data = data_dir(&d, "dc")?;
    let pidfile = std::fs::read_to_string(dc_data.join("postmaster.pid"))?;
    let postmaster: i32 = pidfile.lines().next().unwrap_or_default().trim().parse()?;

    d.kill("agent-dc")?;
    let _frozen = Frozen::freeze(&dc_data)?;
    d.wait_primary("ndc", 2, ALL).await?;
    // The agent comes back with its state kept; its server answers nothing.
    d.start_agent("dc")?;
    let gone = wait_for("dc's frozen server killed", Duration::from_secs(30), || async {
        let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string));
        matches!(state.as_deref(), None | Some("Z")).then_some(())
    })
    .await;
    if gone.is_err() {
        d.diagnose(ALL)?;
    }
    gone?;
    let log = d.log_tail("agent-dc", 400);
    ensure!(log.contains("fencing the primary") && log.contains("killing its tree"), "{log}");
    d.wait_synchronous_again("dc", Duration::from_secs(90)).await?;
    wait_only_primary(&d, "ndc").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_controller_to_ask_an_agent_that_forgot_its_state_fences_after_its_grace() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.tune_controllers(|c| c.failover.automatic = false)?;
    d.start_all().await?;
    d.wait_ready(false).await?;

    for id in d.founders() {
        d.kill(&format!("controller-{id}"))?;
    }
    d.kill("agent-dc")?;
    forget_state(&d, "dc")?;
    let watch = PrimaryWatch::start(http_addr(&d, "dc"));
    d.start_agent("dc")?;
    let started = Instant::now();
    let fenced = wait_for("dc fenced for want of any word", Duration::from_secs(30), || async {
        let log = d.log_tail("agent-dc", 400);
        (log.contains("no word from the controllers") && !runs_as_primary(&d, "dc").await).then_some(())
    })
    .await;
    if fenced.is_err() {
        d.diagnose(&["agent-dc"])?;
    }
    fenced?;
    // The default lease.start_grace_ms: the agent waited for a word that long first.
    ensure!(
        started.elapsed() >= Duration::from_millis(10_000),
        "fenced {} ms after the start, before its grace ended: {}",
        started.elapsed().as_millis(),
        d.log_tail("agent-dc", 60)
    );
    if let Some(body) = watch.finish() {
        anyhow::bail!("dc's /primary answered 200 with no controller's word: {body}");
    }

    // The controllers back: dc is still the primary they name, and it is started again.
    d.start_controllers()?;
    d.wait_ready(false).await?;
    wait_only_primary(&d, "dc").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_left_in_recovery_by_an_unfinished_opening_is_opened_again() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    // No failover may hide what the agent does with its own member.
    d.tune_controllers(|c| c.failover.automatic = false)?;
    d.start_all().await?;
    d.wait_ready(false).await?;

    // What an agent that died between the start in recovery and the opening leaves: dc's
    // server running in recovery from its own WAL, with no upstream, as `start_in_recovery`
    // starts it.
    d.kill("agent-dc")?;
    let pg = d.pg.as_ref().expect("a PostgreSQL deployment");
    pg.stop("dc", "immediate")?;
    std::fs::write(data_dir(&d, "dc")?.join("standby.signal"), "")?;
    pg.start_with("dc", "-c primary_conninfo=''")?;
    ensure!(!runs_as_primary(&d, "dc").await, "dc should run in recovery now");

    d.start_agent("dc")?;
    let opened = wait_for("dc opened again as the primary", Duration::from_secs(30), || async {
        runs_as_primary(&d, "dc").await.then_some(())
    })
    .await;
    if opened.is_err() {
        d.diagnose(ALL)?;
    }
    opened?;
    let log = d.log_tail("agent-dc", 400);
    ensure!(log.contains("an opening that did not finish"), "{log}");
    let v = d.status().await?;
    ensure!(v.cluster_state["customs"].epoch == 1, "no role change was needed: {:?}", v.cluster_state["customs"]);
    wait_only_primary(&d, "dc").await?;
    Ok(())
}
