//! The chaos suite (issue 16): randomized faults on real processes, in the spirit of Jepsen's
//! analyses. The three sites run in network namespaces with the demo's topology
//! ([`Deployment::with_postgres_in_namespaces`]); an outside writer inserts rows with unique ids
//! into whichever member accepts writes, and a checker samples every member for writability. A
//! nemesis, from a seed, picks and combines faults ([`schedule`]): each step injects one or two
//! faults on different sites, holds them, heals them, and rests (the faults: [`FaultKind`]; a
//! slow disk is a block-I/O cgroup throttle on a loop device mounted as the agent's state
//! directory, `slow_disk.rs`). After the last step everything
//! is healed and the run is judged ([`ChaosReport::violations`]):
//! - never two members writable at the same moment (the checker's samples);
//! - no acknowledged write missing on the final primary;
//! - within [`CONVERGE`] of the heal, a single writable primary, the one the controllers name,
//!   with a synchronous standby again, no workflow under way and no quorum held;
//! - every change of epoch explained by a finished failover or switchover in the history, and
//!   every fence an agent counted by a workflow on its member.
//!
//! A run prints its seed and its schedule; the same seed replays the same schedule (the timing
//! of the processes themselves is not replayed: a failure is re-run, not re-lived).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::slow_disk::{self, SlowDisk};
use crate::workload::{accepts_writes, kill_postgres, Frozen, Workload};
use crate::{bin, wait_for, Deployment, Paused};

/// The sites, in the order of the deployment's plan.
pub const SITES: [&str; 3] = ["dc", "ndc", "dr"];

/// How long after the heal the cluster has to converge.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// What the nemesis can do to one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// SIGKILL the site's controller; restarted at the heal.
    KillController,
    /// SIGSTOP the site's controller; SIGCONT at the heal.
    PauseController,
    /// SIGKILL the site's agent; restarted at the heal.
    KillAgent,
    /// SIGSTOP the site's agent.
    PauseAgent,
    /// SIGKILL the site's postmaster and every child (the agent and the leader bring it back).
    KillPostgres,
    /// SIGSTOP the site's whole PostgreSQL tree.
    PausePostgres,
    /// Every link of the site cut (host and controller).
    IsolateSite,
    /// The site's controller cut from the management network.
    CutControllerLink,
    /// The site's host cut from the controllers (the data network stays).
    CutAgentPath,
    /// The site's agent killed and its epoch and lease files removed; restarted at the heal.
    WipeAgentState,
    /// A switchover to this site asked for, and the Raft leader killed while it runs.
    KillLeaderMidSwitchover,
    /// The site's agent's state directory throttled to one write a second (a lease write takes
    /// a second, an epoch's fsyncs two); unthrottled at the heal.
    SlowDisk,
}

impl FaultKind {
    /// Every kind, in a fixed order (the schedule indexes it).
    pub const ALL: [FaultKind; 12] = [
        FaultKind::KillController,
        FaultKind::PauseController,
        FaultKind::KillAgent,
        FaultKind::PauseAgent,
        FaultKind::KillPostgres,
        FaultKind::PausePostgres,
        FaultKind::IsolateSite,
        FaultKind::CutControllerLink,
        FaultKind::CutAgentPath,
        FaultKind::WipeAgentState,
        FaultKind::KillLeaderMidSwitchover,
        FaultKind::SlowDisk,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillController => "kill controller",
            FaultKind::PauseController => "pause controller",
            FaultKind::KillAgent => "kill agent",
            FaultKind::PauseAgent => "pause agent",
            FaultKind::KillPostgres => "kill postgres tree",
            FaultKind::PausePostgres => "pause postgres tree",
            FaultKind::IsolateSite => "isolate site",
            FaultKind::CutControllerLink => "cut controller link",
            FaultKind::CutAgentPath => "cut agent path",
            FaultKind::WipeAgentState => "wipe agent state",
            FaultKind::KillLeaderMidSwitchover => "kill leader mid-switchover",
            FaultKind::SlowDisk => "slow agent disk",
        }
    }
}

/// One fault on one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub site: &'static str,
}

/// One step of a schedule: faults injected together, held, healed, then a rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub faults: Vec<Fault>,
    pub hold_ms: u64,
    pub rest_ms: u64,
}

/// The schedule of `seed`: `steps` steps, each of one fault (or two, on different sites, about
/// one time in three), held 0.5-6 s and followed by a rest of up to 3 s.
pub fn schedule(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..steps)
        .map(|_| {
            let count = if rng.random_bool(0.3) { 2 } else { 1 };
            let mut faults: Vec<Fault> = Vec::new();
            while faults.len() < count {
                let kind = FaultKind::ALL[rng.random_range(0..FaultKind::ALL.len())];
                let site = SITES[rng.random_range(0..SITES.len())];
                if !faults.iter().any(|f| f.site == site) {
                    faults.push(Fault { kind, site });
                }
            }
            Step { faults, hold_ms: rng.random_range(500..6_000), rest_ms: rng.random_range(0..3_000) }
        })
        .collect()
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct ChaosReport {
    pub seed: u64,
    pub faults: BTreeMap<FaultKind, usize>,
    /// Every invariant that did not hold, said plainly (empty: the run passed).
    pub violations: Vec<String>,
    /// From the last heal until the cluster was seen converged (`None`: not within [`CONVERGE`]).
    pub converged_in: Option<Duration>,
    pub writes_acked: usize,
    /// Epoch changes during the run.
    pub epoch_changes: u64,
    /// Fences the agents counted (an agent restarted during the run counts from its restart).
    pub fences: u64,
    /// When convergence took longer than [`SLOW`]: the workflows that ran after the last heal,
    /// each with its duration and outcome, to say where the time went.
    pub slow: Vec<String>,
}

/// A convergence slower than this is accounted for in [`ChaosReport::slow`].
pub const SLOW: Duration = Duration::from_secs(10);

/// What is injected now and must be healed.
#[derive(Default)]
struct Injected {
    paused: Vec<Paused>,
    frozen: Vec<Frozen>,
    /// Process keys to start again.
    killed: Vec<String>,
    /// (site, the cut was of the whole site rather than one path).
    cuts: Vec<(&'static str, FaultKind)>,
    switchovers: Vec<Child>,
    /// Sites whose agent's disk is throttled.
    slowed: Vec<&'static str>,
}

/// Each agent's state directory on a disk of its own (`slow_disk.rs`), unthrottled but for a
/// [`FaultKind::SlowDisk`]; empty where the kernel offers no block-I/O throttle (the fault is
/// then a no-op, said in the run's output).
struct Disks(BTreeMap<&'static str, SlowDisk>);

impl Disks {
    /// Mounts them, before the agents start.
    fn mount(d: &Deployment) -> Result<Disks> {
        if let Some(why) = slow_disk::unavailable() {
            eprintln!("chaos: no slow disks here ({why})");
            return Ok(Disks(BTreeMap::new()));
        }
        let mut disks = BTreeMap::new();
        for site in SITES {
            let dir = d.dir().join(format!("data/agent-{site}"));
            disks.insert(site, SlowDisk::create(&d.dir().join(format!("disk-{site}.img")), &dir, 0)?);
        }
        Ok(Disks(disks))
    }

    /// Puts `site`'s agent, just (re)started, under its disk's throttle.
    fn admit(&mut self, d: &Deployment, site: &str) -> Result<()> {
        let pid = d.pid(&format!("agent-{site}"));
        match (self.0.get_mut(site), pid) {
            (Some(disk), Some(pid)) => disk.admit(pid),
            _ => Ok(()),
        }
    }
}

fn controller_key(d: &Deployment, site: &str) -> Result<String> {
    let c = d.plan.controllers.iter().find(|c| c.site == site).ok_or_else(|| anyhow!("no controller at {site}"))?;
    Ok(format!("controller-{}", c.id))
}

fn data_dir(d: &Deployment, site: &str) -> Result<std::path::PathBuf> {
    Ok(d.pg.as_ref().ok_or_else(|| anyhow!("no PostgreSQL"))?.member(site)?.dir.join("data"))
}

async fn inject(d: &mut Deployment, disks: &Disks, f: Fault, inj: &mut Injected) -> Result<()> {
    let agent = format!("agent-{}", f.site);
    let net = || d.net.as_ref().ok_or_else(|| anyhow!("the chaos suite runs in network namespaces"));
    match f.kind {
        FaultKind::KillController => {
            let key = controller_key(d, f.site)?;
            d.kill(&key)?;
            inj.killed.push(key);
        }
        FaultKind::PauseController => inj.paused.push(d.pause(&controller_key(d, f.site)?)?),
        FaultKind::KillAgent => {
            d.kill(&agent)?;
            inj.killed.push(agent);
        }
        FaultKind::PauseAgent => inj.paused.push(d.pause(&agent)?),
        // A server that an earlier fault left stopped (and nobody started yet) has nothing to
        // kill or freeze: the fault is a no-op, said in the run's output.
        FaultKind::KillPostgres => {
            if let Err(e) = kill_postgres(&data_dir(d, f.site)?) {
                eprintln!("chaos: {f:?} found nothing to kill: {e:#}");
            }
        }
        FaultKind::PausePostgres => match Frozen::freeze(&data_dir(d, f.site)?) {
            Ok(frozen) => inj.frozen.push(frozen),
            Err(e) => eprintln!("chaos: {f:?} found nothing to freeze: {e:#}"),
        },
        FaultKind::IsolateSite => {
            net()?.isolate(f.site, true)?;
            inj.cuts.push((f.site, f.kind));
        }
        FaultKind::CutControllerLink => {
            net()?.cut_controller_link(f.site, true)?;
            inj.cuts.push((f.site, f.kind));
        }
        FaultKind::CutAgentPath => {
            net()?.cut_agent_path(f.site, true)?;
            inj.cuts.push((f.site, f.kind));
        }
        FaultKind::WipeAgentState => {
            d.kill(&agent)?;
            for file in ["epoch", "lease"] {
                let path = d.dir().join(format!("data/{agent}/{file}"));
                if path.exists() {
                    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
                }
            }
            inj.killed.push(agent);
        }
        FaultKind::KillLeaderMidSwitchover => {
            // Asked for in the background: it may be refused (not ready, already primary), run,
            // or be cut short by the kill below; each is a case the brain must survive.
            let child = Command::new(bin("triadctl"))
                .args(["switchover", "--cluster", "customs", "--to", f.site])
                .env("TRIAD_CONFIG", d.plan.ctl_config_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting triadctl switchover")?;
            inj.switchovers.push(child);
            tokio::time::sleep(Duration::from_millis(300)).await;
            if let Ok(leader) = d.wait_leader(&[1, 2, 3], Duration::from_secs(5)).await {
                let key = format!("controller-{leader}");
                if !inj.killed.contains(&key) {
                    d.kill(&key)?;
                    inj.killed.push(key);
                }
            }
        }
        FaultKind::SlowDisk => match disks.0.get(f.site) {
            Some(disk) => {
                disk.set_write_iops(1)?;
                inj.slowed.push(f.site);
            }
            None => eprintln!("chaos: {f:?} is a no-op: no slow disks here"),
        },
    }
    Ok(())
}

async fn heal(d: &mut Deployment, disks: &mut Disks, inj: Injected) -> Result<()> {
    let Injected { paused, frozen, killed, cuts, switchovers, slowed } = inj;
    drop(paused);
    drop(frozen);
    for site in slowed {
        if let Some(disk) = disks.0.get(site) {
            disk.set_write_iops(0)?;
        }
    }
    if let Some(net) = d.net.as_ref() {
        for (site, kind) in cuts {
            match kind {
                FaultKind::IsolateSite => net.isolate(site, false)?,
                FaultKind::CutControllerLink => net.cut_controller_link(site, false)?,
                _ => net.cut_agent_path(site, false)?,
            }
        }
    }
    for key in killed {
        if d.running(&key) {
            continue;
        }
        match (key.strip_prefix("controller-"), key.strip_prefix("agent-")) {
            (Some(id), _) => d.start_controller(id.parse()?)?,
            (_, Some(site)) => {
                d.start_agent(site)?;
                disks.admit(d, site)?;
            }
            _ => return Err(anyhow!("cannot restart {key}")),
        }
    }
    for mut child in switchovers {
        // A switchover still waiting on its answer after the heal has said what it will.
        if child.try_wait()?.is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    Ok(())
}

/// The cluster has converged: the controllers name a primary that is the only writable member,
/// a synchronous standby is recorded, nothing is under way and no quorum is held.
async fn converged(d: &Deployment, conninfos: &[String]) -> Option<String> {
    let v = d.status().await.ok()?;
    let c = v.cluster_state.get("customs")?;
    if c.primary.is_empty() || c.synchronous.is_empty() || v.controllers.iter().any(|n| !n.quorum_hold.is_empty()) {
        return None;
    }
    let history = d.history().ok()?;
    if history.iter().any(|w| w["outcome"] == "under way") {
        return None;
    }
    let mut writable = Vec::new();
    for (site, ci) in SITES.iter().zip(conninfos) {
        if accepts_writes(ci).await {
            writable.push(*site);
        }
    }
    (writable == [c.primary.as_str()]).then(|| c.primary.clone())
}

/// Milliseconds since the Unix epoch, to compare with the times the history records.
fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The workflows still running at `healed_ms` or started after it, oldest first, as "kind
/// from→to: N ms after the heal for M ms: outcome".
fn after_heal(d: &Deployment, healed_ms: u64) -> Vec<String> {
    let Ok(history) = d.history() else { return vec!["(no history)".into()] };
    let mut out: Vec<(u64, String)> = history
        .iter()
        .filter(|w| w["finished_ms"].as_u64().is_none_or(|f| f == 0 || f >= healed_ms))
        .map(|w| {
            let started = w["started_ms"].as_u64().unwrap_or_default();
            let line = format!(
                "{} {}→{}: {:+} ms after the heal, for {} ms: {}",
                w["kind"].as_str().unwrap_or_default(),
                w["from"].as_str().unwrap_or_default(),
                w["to"].as_str().unwrap_or_default(),
                started as i64 - healed_ms as i64,
                w["duration_ms"].as_u64().unwrap_or_default(),
                w["outcome"].as_str().unwrap_or_default()
            );
            (started, line)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, line)| line).collect()
}

/// Runs the schedule of `seed` (`steps` steps) on a fresh deployment in namespaces and judges it.
/// An error is a failure of the harness (a process that cannot start), not a verdict.
pub async fn run(seed: u64, steps: usize) -> Result<ChaosReport> {
    let plan = schedule(seed, steps);
    eprintln!("chaos seed {seed}: {plan:?}");
    let mut d = Deployment::with_postgres_in_namespaces().await?;
    // Dropped before the deployment: its agents are moved out of the throttle first.
    let mut disks = Disks::mount(&d)?;
    d.start_all().await?;
    for site in SITES {
        disks.admit(&d, site)?;
    }
    d.wait_ready(true).await?;
    let conninfos = d.conninfos()?;
    let epoch0 = d.status().await?.cluster_state["customs"].epoch;
    let load = Workload::start(conninfos.clone(), 50).await?;
    let mut report = ChaosReport { seed, ..Default::default() };
    let mut healed = Instant::now();
    let mut healed_ms = wall_ms();
    for step in &plan {
        let mut inj = Injected::default();
        for f in &step.faults {
            *report.faults.entry(f.kind).or_default() += 1;
            if let Err(e) = inject(&mut d, &disks, *f, &mut inj).await {
                heal(&mut d, &mut disks, inj).await?;
                return Err(e.context(format!("injecting {f:?}")));
            }
        }
        // The hold is the fault's duration, part of the schedule: a sleep is what is meant.
        tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
        heal(&mut d, &mut disks, inj).await?;
        (healed, healed_ms) = (Instant::now(), wall_ms());
        tokio::time::sleep(Duration::from_millis(step.rest_ms)).await;
    }
    // Judged from the last heal: the last step's rest counts against the deadline.
    let left = CONVERGE.saturating_sub(healed.elapsed());
    let primary = wait_for("convergence", left, || converged(&d, &conninfos)).await;
    report.converged_in = primary.as_ref().ok().map(|_| healed.elapsed());
    if report.converged_in.is_none_or(|t| t > SLOW) {
        report.slow = after_heal(&d, healed_ms);
    }
    let acked = match load.finish().await {
        Ok(acked) => acked,
        Err(e) => {
            report.violations.push(format!("split brain: {e}"));
            Vec::new()
        }
    };
    report.writes_acked = acked.len();
    match primary {
        Ok(p) => {
            // Every acknowledged write reaches the final primary (it may trail a moment).
            if let Err(e) = d.wait_holds_all(&p, &acked, Duration::from_secs(10)).await {
                let missing = d.missing_on(&p, &acked).await.unwrap_or(usize::MAX);
                report.violations.push(format!("{missing} acknowledged writes missing on the primary {p}: {e}"));
            }
        }
        Err(e) => report.violations.push(format!("not converged within {CONVERGE:?} of the heal: {e}")),
    }
    explain_epochs(&d, epoch0, &mut report).await;
    explain_fences(&d, &mut report).await;
    if !report.violations.is_empty() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc", "agent-dr"])?;
    }
    Ok(report)
}

/// Every epoch change since the start is a finished failover or switchover in the history
/// (a rolled-forward rollback counts as its switchover's).
/// Every fence an agent counted is in the history: a workflow that started from or went to its
/// member (the leader restarting it, a failover away from it, a switchover or a rejoin).
async fn explain_fences(d: &Deployment, report: &mut ChaosReport) {
    let Ok(history) = d.history() else {
        return; // said by explain_epochs
    };
    for site in SITES {
        let Some(fences) = d.agent_metric_sum(site, "triad_agent_fences_total").await else {
            report.violations.push(format!("{site}'s agent's metrics unreadable after the run"));
            continue;
        };
        report.fences += fences as u64;
        let on_it = history.iter().any(|w| w["from"] == site || w["to"] == site);
        if fences > 0.0 && !on_it {
            report
                .violations
                .push(format!("{site}'s agent fenced {fences} times, and no workflow on {site} explains it"));
        }
    }
}

async fn explain_epochs(d: &Deployment, epoch0: u64, report: &mut ChaosReport) {
    let epoch = match d.status().await {
        Ok(v) => v.cluster_state.get("customs").map(|c| c.epoch).unwrap_or(0),
        Err(e) => {
            report.violations.push(format!("status unreadable after the run: {e}"));
            return;
        }
    };
    report.epoch_changes = epoch.saturating_sub(epoch0);
    let history = match d.history() {
        Ok(h) => h,
        Err(e) => {
            report.violations.push(format!("history unreadable after the run: {e}"));
            return;
        }
    };
    let role_changes = history
        .iter()
        .filter(|w| matches!(w["kind"].as_str(), Some("failover" | "switchover")))
        .filter(|w| w["outcome"].as_str().is_some_and(|o| o != "under way"))
        .count() as u64;
    // A switchover can move the epoch by up to three (forward, back, forward again): count
    // workflows, not bumps, and require one for any bump at all.
    if report.epoch_changes > 0 && role_changes == 0 {
        report
            .violations
            .push(format!("the epoch moved from {epoch0} to {epoch} with no failover or switchover in the history"));
    }
}
