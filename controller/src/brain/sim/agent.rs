//! A simulated agent: while its member is `linked` it holds a stream on the command bus and
//! carries out each command the way `triad-agent` does (`agents/src/link/execute.rs`): a command
//! at an epoch older than the one it persisted is refused, a newer epoch is persisted first, and
//! every command is idempotent. It answers at once where the real agent would wait (a promote's
//! hold and lease), except for `WaitReplayed`, which waits for replication as the real one does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use triad_proto::v1::{
    agent_command, controller_message, AgentCommand, CommandFailure, CommandResult, ControllerMessage,
};

use super::{SimRole, World, TICK};
use crate::brain::AgentHelloInfo;
use crate::context::{now_ms, Ctx};
use crate::state::HostFacts;

/// How the simulated agent's failure text begins when its driver says the member must be
/// re-created (the real agent sends the kind beside the text: `CommandFailure`).
const NEEDS_RECREATION: &str = "needs re-creation: ";

/// The name a test uses for a command kind (in `SimMember::refuses` and `received`).
pub(crate) fn kind_name(kind: &agent_command::Kind) -> &'static str {
    use agent_command::Kind;
    match kind {
        Kind::StopPrimary(_) => "stop_primary",
        Kind::Promote(_) => "promote",
        Kind::Rejoin(_) => "rejoin",
        Kind::SetSynchronous(_) => "set_synchronous",
        Kind::Restart(_) => "restart",
        Kind::Follow(_) => "follow",
        Kind::ReleaseLease(_) => "release_lease",
        Kind::StopStandby(_) => "stop_standby",
        Kind::WaitReplayed(_) => "wait_replayed",
        Kind::ValidateTarget(_) => "validate_target",
        Kind::RunHook(_) => "run_hook",
        Kind::RunCheck(_) => "run_check",
        Kind::SetBalancer(_) => "set_balancer",
        Kind::MakeCopy(_) => "make_copy",
        Kind::DestroyCopy(_) => "destroy_copy",
        Kind::FailPrimary(_) => "fail_primary",
    }
}

/// For a hook, check or balancer command, the name a test knows it by: `pre-hook asycuda`,
/// `post-hook asycuda`, `check asycuda`, `balancer maint customs-rw/dc` (`ready+up`: health forced).
fn side_action(kind: &agent_command::Kind) -> Option<String> {
    use agent_command::Kind;
    match kind {
        Kind::RunHook(h) => Some(format!("{}-hook {}", h.phase, h.service)),
        Kind::RunCheck(c) => Some(format!("check {}", c.check.as_ref().map(|c| c.service.as_str()).unwrap_or("?"))),
        Kind::MakeCopy(c) => Some(format!("make-copy {}", c.name)),
        Kind::DestroyCopy(c) => Some(format!("destroy-copy {}", c.name)),
        Kind::SetBalancer(b) => Some(
            b.servers
                .iter()
                .map(|s| {
                    let forced = if s.health == "up" { "+up" } else { "" };
                    format!("balancer {}{forced} {}/{}", s.state, s.backend, s.server)
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

/// Runs member `name`'s agent: a stream while linked, none while cut off.
pub(super) async fn run(ctx: Arc<Ctx>, world: Arc<Mutex<World>>, name: String) {
    let agent = world.lock().expect("world lock").members[&name].agent.clone();
    let linked = || world.lock().expect("world lock").members[&name].linked;
    loop {
        while !linked() {
            tokio::time::sleep(TICK).await;
        }
        let hello = AgentHelloInfo {
            site: name.clone(),
            host: format!("{name}-host"),
            version: "simulated".into(),
            facts: HostFacts::default(),
            vouch_addr: String::new(),
            probe_addr: String::new(),
        };
        ctx.obs.connected(&agent, hello, now_ms());
        let (tx, mut rx) = mpsc::channel(16);
        let token = ctx.bus.register(&agent, tx);
        while linked() {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = tokio::time::sleep(TICK) => continue,
            };
            let Some(Ok(ControllerMessage { msg: Some(controller_message::Msg::Command(cmd)) })) = msg else {
                continue;
            };
            let id = cmd.id;
            let result = match execute(&world, &name, cmd).await {
                Ok((detail, lsn)) => CommandResult { id, ok: true, detail, position: lsn, ..Default::default() },
                Err(detail) => {
                    let failure = match detail.starts_with(NEEDS_RECREATION) {
                        true => CommandFailure::NeedsRecreation,
                        false => CommandFailure::Unspecified,
                    };
                    CommandResult { id, ok: false, detail, position: 0, failure: failure as i32, ..Default::default() }
                }
            };
            // An agent cut off while it worked never gets its answer through.
            if linked() {
                ctx.bus.complete(result);
            }
        }
        ctx.bus.unregister(&agent, token);
        ctx.obs.disconnected(&agent);
    }
}

/// Carries out `cmd` on member `name`: its detail and position, or why it failed.
async fn execute(world: &Mutex<World>, name: &str, cmd: AgentCommand) -> Result<(String, u64), String> {
    let Some(kind) = cmd.kind else { return Err("a command with no kind".into()) };
    let kind_name = kind_name(&kind);
    if let Some(action) = side_action(&kind) {
        // Hooks, checks and balancer updates pass no database gate (`agents/src/link/side.rs`).
        let mut w = world.lock().expect("world lock");
        let failing = w.failing_actions.contains(&action);
        w.actions.push(format!("{action}@{name} e{}", cmd.epoch));
        return if failing { Err(format!("{action} failed (the test's)")) } else { Ok((format!("{action} done"), 0)) };
    }
    {
        let mut w = world.lock().expect("world lock");
        let m = w.members.get_mut(name).expect("a member of the simulation");
        m.received.push(kind_name);
        if cmd.epoch < m.epoch {
            return Err(format!("epoch {} is older than this agent's {}", cmd.epoch, m.epoch));
        }
        m.epoch = cmd.epoch;
        if m.refuses.contains(kind_name) {
            return Err(format!("{kind_name} refused by the test"));
        }
    }
    if let agent_command::Kind::WaitReplayed(wait) = &kind {
        let deadline = Instant::now() + Duration::from_millis(u64::from(wait.timeout_ms));
        loop {
            let at = world.lock().expect("world lock").members[name].lsn;
            if at >= wait.position {
                return Ok((format!("replayed {at:X}"), at));
            }
            if Instant::now() >= deadline {
                return Err(format!("at {at:X}, not at {:X}", wait.position));
            }
            tokio::time::sleep(TICK).await;
        }
    }
    let mut w = world.lock().expect("world lock");
    let m = w.members.get_mut(name).expect("a member of the simulation");
    use agent_command::Kind;
    match kind {
        Kind::StopPrimary(_) if m.role == SimRole::Primary => {
            m.running = false;
            Ok(("stopped".into(), m.lsn))
        }
        Kind::StopPrimary(_) => Err("not a primary".into()),
        Kind::Promote(p) if m.running => {
            (m.role, m.upstream, m.synchronous) = (SimRole::Primary, String::new(), p.synchronous);
            Ok(("promoted".into(), m.lsn))
        }
        Kind::Promote(_) => Err("the server is not running".into()),
        Kind::Rejoin(_) if m.needs_recreation => {
            Err(format!("{NEEDS_RECREATION}no flashback log reaches back to where {} diverged", m.name))
        }
        Kind::Rejoin(_) | Kind::Restart(_) if m.cannot_start => Err("the server could not start".into()),
        Kind::Rejoin(r) => {
            (m.role, m.upstream, m.running) = (SimRole::Standby, r.primary_endpoint, true);
            Ok(("rejoined, nothing discarded".into(), m.lsn))
        }
        Kind::Restart(_) if m.fenced_again > 0 => {
            // Started, then fenced again before it was seen running.
            m.fenced_again -= 1;
            m.fenced_ms += 1;
            m.fenced = Some("the lease ends in 450 ms (fenced again)".into());
            Ok(("started".into(), m.lsn))
        }
        Kind::Restart(_) => {
            m.running = true;
            Ok(("started".into(), m.lsn))
        }
        Kind::SetSynchronous(s) if m.writable() => {
            m.synchronous = s.names;
            Ok(("set".into(), m.lsn))
        }
        Kind::SetSynchronous(_) => Err("not a running primary".into()),
        Kind::Follow(_) if m.writable() => Err("refusing to repoint a server that runs as a primary".into()),
        Kind::Follow(f) => {
            m.upstream = f.primary_endpoint;
            Ok(("repointed".into(), m.lsn))
        }
        Kind::ReleaseLease(_) if m.running => Err("the server runs".into()),
        Kind::ReleaseLease(_) => Ok(("released".into(), m.lsn)),
        Kind::StopStandby(_) => {
            m.running = false;
            if m.role == SimRole::Standby {
                Ok(("stopped as a standby".into(), m.lsn))
            } else {
                Err("it had been promoted".into())
            }
        }
        Kind::WaitReplayed(_) => unreachable!("answered above"),
        Kind::ValidateTarget(_) if m.running && m.role == SimRole::Standby => Ok(("ready".into(), m.lsn)),
        Kind::ValidateTarget(_) => Err("not a running standby".into()),
        Kind::FailPrimary(_) if m.role == SimRole::Primary => {
            m.running = false;
            Ok(("stopped at once".into(), m.lsn))
        }
        Kind::FailPrimary(_) => Err("not the primary".into()),
        Kind::RunHook(_) | Kind::RunCheck(_) | Kind::SetBalancer(_) | Kind::MakeCopy(_) | Kind::DestroyCopy(_) => {
            unreachable!("answered above")
        }
    }
}
