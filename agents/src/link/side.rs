//! The leader's commands that do not touch the database (issue 20): service hooks, service
//! checks on demand and balancer updates. They pass no database gate (an application host has no
//! database and no epoch file) and never wait behind a promote: each kind has its own lane.
//!
//! Hooks and balancer updates are still applied in (epoch, log index) order per cluster (DESIGN.md
//! point 1, the same rule as the database's commands): a pre-hook or a "take the old primary
//! out" sent by a leader that was since replaced must not run after the post-hook or the "put the
//! new one in" of the newer epoch. Each lane runs its commands one at a time, so that order holds
//! for what runs, not only for what is admitted. Checks change nothing and run at once.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::mpsc;
use triad_proto::v1::{agent_command::Kind, AgentCommand, AgentMessage};

use super::execute::{answer, CommandError, Order};
use crate::actions::{balancer, hook, ActionError};

/// Commands waiting in one lane; more and the newest is refused as busy.
const LANE_LEN: usize = 64;

type Queued = (AgentCommand, mpsc::Sender<AgentMessage>);

/// Where the streams put the commands [`is_side`] picks out.
#[derive(Clone)]
pub struct SideCommands {
    hooks: mpsc::Sender<Queued>,
    balancers: mpsc::Sender<Queued>,
    hooks_dir: PathBuf,
}

/// Whether `cmd` is one of this module's (else the database's queue takes it).
pub fn is_side(cmd: &AgentCommand) -> bool {
    matches!(cmd.kind, Some(Kind::RunHook(_) | Kind::RunCheck(_) | Kind::SetBalancer(_)))
}

impl SideCommands {
    /// Starts the lanes; hooks run only from `hooks_dir`.
    pub fn start(hooks_dir: PathBuf) -> Self {
        let (hooks, rx_hooks) = mpsc::channel(LANE_LEN);
        let (balancers, rx_balancers) = mpsc::channel(LANE_LEN);
        tokio::spawn(lane(rx_hooks, hooks_dir.clone()));
        tokio::spawn(lane(rx_balancers, hooks_dir.clone()));
        SideCommands { hooks, balancers, hooks_dir }
    }

    /// Queues `cmd` in its lane (a check runs at once); answers at once when the lane is full.
    pub(super) fn push(&self, cmd: AgentCommand, reply: mpsc::Sender<AgentMessage>) {
        let lane = match &cmd.kind {
            Some(Kind::RunHook(_)) => &self.hooks,
            Some(Kind::SetBalancer(_)) => &self.balancers,
            _ => {
                let dir = self.hooks_dir.clone();
                tokio::spawn(async move {
                    let id = cmd.id;
                    answer(&reply, id, run(&dir, cmd).await).await;
                });
                return;
            }
        };
        if let Err(mpsc::error::TrySendError::Full((cmd, reply)) | mpsc::error::TrySendError::Closed((cmd, reply))) =
            lane.try_send((cmd, reply))
        {
            let why = CommandError::Refused(format!("refused: {LANE_LEN} commands are already waiting"));
            tokio::spawn(async move { answer(&reply, cmd.id, Err(why)).await });
        }
    }
}

/// Runs one lane's commands one at a time, each cluster's in (epoch, log index) order.
async fn lane(mut rx: mpsc::Receiver<Queued>, hooks_dir: PathBuf) {
    let mut orders: HashMap<String, Order> = HashMap::new();
    while let Some((cmd, reply)) = rx.recv().await {
        let id = cmd.id;
        let outcome = match orders.entry(cmd.cluster.clone()).or_default().admit(cmd.epoch, cmd.log_index) {
            Ok(()) => run(&hooks_dir, cmd).await,
            Err(why) => Err(why),
        };
        answer(&reply, id, outcome).await;
    }
}

/// Carries out one side command.
async fn run(hooks_dir: &std::path::Path, cmd: AgentCommand) -> std::result::Result<(u64, String), CommandError> {
    let started = std::time::Instant::now();
    let what = match &cmd.kind {
        Some(Kind::RunHook(h)) => format!("{} hook of {}", h.phase, h.service),
        Some(Kind::RunCheck(c)) => format!("check of {}", c.check.as_ref().map(|c| c.service.as_str()).unwrap_or("?")),
        Some(Kind::SetBalancer(b)) => format!("balancer update on {}", b.socket),
        _ => "a command that is not a side command".into(),
    };
    let outcome: Result<String, ActionError> = match cmd.kind {
        Some(Kind::RunHook(h)) => hook::run(hooks_dir, &hook::Hook::from_command(&h)).await,
        Some(Kind::RunCheck(c)) => match c.check {
            Some(check) => check_once(&check).await,
            None => Err(ActionError::Refused("a check command with no check".into())),
        },
        Some(Kind::SetBalancer(b)) => balancer::apply(&b).await,
        _ => Err(ActionError::Refused("not a side command".into())),
    };
    let ms = started.elapsed().as_millis() as u64;
    match &outcome {
        Ok(detail) => tracing::info!(id = cmd.id, epoch = cmd.epoch, ms, "{what}: {detail}"),
        Err(e) => tracing::warn!(id = cmd.id, epoch = cmd.epoch, ms, "{what}: {e}"),
    }
    outcome.map(|detail| (0, detail)).map_err(|e| CommandError::Refused(e.to_string()))
}

/// One run of `check`, within its timeout.
async fn check_once(check: &triad_proto::v1::ServiceCheck) -> Result<String, ActionError> {
    let started = std::time::Instant::now();
    let timeout = std::time::Duration::from_millis(u64::from(check.timeout_ms.max(100)));
    match tokio::time::timeout(timeout, crate::probes::services::run(check)).await {
        Ok(Ok(())) => Ok(format!("{} answers ({} ms)", check.target, started.elapsed().as_millis())),
        Ok(Err(e)) => Err(ActionError::Hook(format!("{}: {e}", check.target))),
        Err(_) => Err(ActionError::Hook(format!("{}: no answer within {} ms", check.target, timeout.as_millis()))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use triad_proto::v1::{agent_message, RunHook};

    use super::*;

    fn hook(epoch: u64, log_index: u64, path: &str, cluster: &str) -> AgentCommand {
        let h = RunHook { service: "asycuda".into(), phase: "post".into(), path: path.into(), ..Default::default() };
        AgentCommand {
            id: epoch * 1000 + log_index,
            cluster: cluster.into(),
            epoch,
            log_index,
            kind: Some(Kind::RunHook(h)),
        }
    }

    async fn answer_of(rx: &mut mpsc::Receiver<AgentMessage>) -> triad_proto::v1::CommandResult {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an answer within 10 s") {
            Some(AgentMessage { msg: Some(agent_message::Msg::Result(r)) }) => r,
            other => panic!("not a result: {other:?}"),
        }
    }

    /// DESIGN.md point 1 for hooks: per cluster, one older than a hook already run is refused,
    /// never run after it; another cluster's order is its own. No database is needed.
    #[tokio::test]
    async fn hooks_run_in_epoch_order_per_cluster_on_any_agent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mark");
        let log = dir.path().join("ran");
        std::fs::write(&path, format!("#!/bin/sh\necho \"$TRIAD_PHASE\" >> {}\n", log.display())).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = path.display().to_string();
        let side = SideCommands::start(dir.path().to_path_buf());
        let (tx, mut rx) = mpsc::channel(8);
        side.push(hook(3, 30, &path, "customs"), tx.clone());
        assert!(answer_of(&mut rx).await.ok);
        side.push(hook(2, 50, &path, "customs"), tx.clone());
        let r = answer_of(&mut rx).await;
        assert!(!r.ok && r.detail.contains("older than one already applied"), "{r:?}");
        side.push(hook(1, 1, &path, "billing"), tx.clone());
        assert!(answer_of(&mut rx).await.ok, "another cluster keeps its own order");
        let ran = std::fs::read_to_string(&log).expect("the hook's trace");
        assert_eq!(ran.lines().count(), 2, "the stale hook never ran: {ran}");
    }
}
