//! The command execution against a simulated member: a real command queue, epoch file and lease
//! file (in a temporary directory) and the `SimulatedDriver`, with the leader's side played by
//! the test: it sends target states, grants leases and commands, and reads the answers. The same
//! rules run on real processes in `tests/tests/agent_command_order.rs`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use triad_proto::v1::{agent_command, agent_message, AgentCommand, AgentMessage, Assignment, CommandResult};

use crate::drivers::{DatabaseDriver, SimulatedDriver};
use crate::link::{LinkParams, Links};
use crate::safety::{lease, target, vouch, watchdog};

/// One agent's command execution, with the leader played by the test.
struct Agent {
    params: Arc<LinkParams>,
    driver: Arc<SimulatedDriver>,
    answers: mpsc::Receiver<AgentMessage>,
    reply: mpsc::Sender<AgentMessage>,
    next_id: u64,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// The agent of member `ndc` of `customs`, a running standby, at epoch 0 with no lease.
    fn start() -> Agent {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut cfg: crate::config::AgentConfig =
            toml::from_str(include_str!("../../../../deploy/agent.example.toml")).expect("the example configuration");
        cfg.state_dir = dir.path().to_path_buf();
        cfg.lease.watchdog = "off".into();
        let driver = Arc::new(SimulatedDriver::new("customs", "ndc", false));
        let target = Arc::new(target::Target::open(&cfg.state_dir, Vec::new()).expect("the epoch file"));
        let lease = Arc::new(lease::Lease::open(&cfg.state_dir, false));
        let (commands, queued) = super::queue();
        let params = Arc::new(LinkParams {
            followed: Mutex::default(),
            tls: tonic::transport::ClientTlsConfig::new(),
            facts: Default::default(),
            load: Arc::new(RwLock::new(Default::default())),
            links: Arc::new(Links { status: Mutex::default() }),
            metrics: Arc::new(crate::metrics::AgentMetrics::new()),
            probes: crate::probes::Probes::new(Arc::new(crate::metrics::AgentMetrics::new()), &[]),
            db: Arc::new(RwLock::new(None)),
            target,
            lease,
            vouches: Arc::new(vouch::Vouches::new()),
            renew: tokio::sync::Notify::new(),
            commands,
            side: super::super::SideCommands::start(dir.path().join("hooks")),
            driver: Some(driver.clone() as Arc<dyn DatabaseDriver>),
            watchdog: watchdog::Watchdog::shared(&cfg.lease),
            cfg,
        });
        tokio::spawn(super::run(params.clone(), queued));
        let (reply, answers) = mpsc::channel(16);
        Agent { params, driver, answers, reply, next_id: 0, _dir: dir }
    }

    /// The leader's target state for this member at `epoch`: primary or standby.
    fn target(&self, epoch: u64, log_index: u64, role: &str) {
        let primary = if role == "primary" { "ndc" } else { "dc" };
        self.params.target.receive(Assignment {
            cluster: "customs".into(),
            member: "ndc".into(),
            epoch,
            log_index,
            role: role.into(),
            primary: primary.into(),
            vouch_hold_ms: 10,
            confirmed: true,
            ..Default::default()
        });
    }

    /// A lease at `epoch` granted now for `period_ms`.
    fn lease(&self, epoch: u64, period_ms: u64) {
        self.params.lease.granted(epoch, lease::boot_ms(), period_ms);
    }

    /// Sends `kind` at (`epoch`, `log_index`) and waits for its answer.
    async fn send(&mut self, epoch: u64, log_index: u64, kind: agent_command::Kind) -> CommandResult {
        self.next_id += 1;
        let cmd = AgentCommand { id: self.next_id, cluster: "customs".into(), epoch, log_index, kind: Some(kind) };
        self.params.commands.push(cmd, self.reply.clone());
        let answer = tokio::time::timeout(Duration::from_secs(20), self.answers.recv()).await;
        match answer.expect("an answer within 20 s") {
            Some(AgentMessage { msg: Some(agent_message::Msg::Result(r)) }) => {
                assert_eq!(r.id, self.next_id, "answers come in order");
                r
            }
            other => panic!("not a command result: {other:?}"),
        }
    }

    /// What the member's server runs as: `primary`, `standby` or `down`.
    async fn role(&self) -> String {
        self.driver.observe().await.role
    }
}

fn promote(hold_ms: u64) -> agent_command::Kind {
    agent_command::Kind::Promote(triad_proto::v1::Promote { vouch_hold_ms: hold_ms, ..Default::default() })
}

/// DESIGN.md point 1: a newly promoted member opens for writes only under a lease at its epoch.
#[tokio::test]
async fn a_promote_without_a_lease_at_its_epoch_is_refused_and_opens_nothing() {
    let mut agent = Agent::start();
    agent.target(2, 20, "primary");
    // A lease at the epoch before does not count.
    agent.lease(1, 60_000);
    let r = agent.send(2, 20, promote(10)).await;
    assert!(!r.ok && r.detail.contains("no lease at epoch 2"), "{r:?}");
    assert_eq!(agent.role().await, "standby");

    agent.lease(2, 60_000);
    let r = agent.send(2, 20, promote(10)).await;
    assert!(r.ok, "{r:?}");
    assert!(r.detail.contains("lease at epoch 2"), "{r:?}");
    assert_eq!(agent.role().await, "primary");
}

/// Issue 16, item 3: a promote whose epoch a newer one overtook during its waits does nothing.
#[tokio::test]
async fn a_promote_overtaken_by_a_newer_epoch_during_its_hold_does_nothing() {
    let mut agent = Agent::start();
    agent.target(2, 20, "primary");
    agent.lease(2, 60_000);
    let params = agent.params.clone();
    // During the hold (1 s), epoch 3 names dc primary again.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        params.target.receive(Assignment {
            cluster: "customs".into(),
            member: "ndc".into(),
            epoch: 3,
            log_index: 30,
            role: "standby".into(),
            primary: "dc".into(),
            vouch_hold_ms: 10,
            confirmed: true,
            ..Default::default()
        });
    });
    let r = agent.send(2, 20, promote(1000)).await;
    assert!(!r.ok && r.detail.contains("epoch 2 is no longer current"), "{r:?}");
    assert_eq!(agent.role().await, "standby");
}

/// Issue 16, item 3: commands apply in (epoch, log index) order; an older one than a command
/// already applied is refused, not run after it.
#[tokio::test]
async fn a_command_older_than_one_applied_is_refused_and_not_run() {
    let mut agent = Agent::start();
    agent.target(2, 20, "standby");
    let follow = agent_command::Kind::Follow(triad_proto::v1::Follow { primary_endpoint: "host=dc".into() });
    assert!(agent.send(2, 20, follow).await.ok);
    let stop = agent_command::Kind::StopStandby(Default::default());
    let r = agent.send(2, 15, stop.clone()).await;
    assert!(!r.ok && r.detail.contains("older than one already applied"), "{r:?}");
    assert_eq!(agent.role().await, "standby", "the older stop did not run");
    // An older epoch than the one persisted is refused by the epoch gate as well.
    agent.target(3, 30, "standby");
    let r = agent.send(2, 40, stop).await;
    assert!(!r.ok, "{r:?}");
    assert_eq!(agent.role().await, "standby");
}

/// DESIGN.md point 4: the lease is released to a failover only with the server stopped.
#[tokio::test]
async fn a_lease_is_released_only_with_the_server_stopped() {
    let mut agent = Agent::start();
    agent.target(2, 20, "standby");
    let release = agent_command::Kind::ReleaseLease(Default::default());
    let r = agent.send(2, 20, release.clone()).await;
    assert!(!r.ok && r.detail.contains("not confirmed stopped"), "{r:?}");
    let r = agent.send(2, 20, agent_command::Kind::StopStandby(Default::default())).await;
    assert!(r.ok, "{r:?}");
    let r = agent.send(2, 21, release).await;
    assert!(r.ok && r.detail.contains("released"), "{r:?}");
}
