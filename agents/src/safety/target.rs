//! The target state the controllers assign to this host's database member, ordered by
//! (epoch, log index) and recorded in the epoch file before anything acts on it (DESIGN.md,
//! "Safety of role changes", point 1). Only what passed this gate drives the canary now, and the
//! promote and fence commands with the failover work.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use triad_proto::v1::Assignment;

use crate::safety::epoch::{Epoch, EpochStore};

/// The accepted target state and the epoch file behind it.
pub struct Target {
    /// Taken by whatever persists an epoch (a target state, a command's gate), for the whole of
    /// its check and fsync: one at a time, in order.
    epochs: Mutex<EpochStore>,
    /// The persisted epoch (`None`: unknown), set once it is durable. The guard reads this and
    /// `current` every tick; neither is held across an fsync, so a slow disk cannot make a tick
    /// late (issue 16, item 4).
    persisted: RwLock<Option<u64>>,
    current: RwLock<Option<Assignment>>,
    /// `hooks.on_role_change`: program and arguments.
    hook: Vec<String>,
}

/// Why a command's epoch was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// Older than the persisted epoch, or the epoch file is unreadable.
    #[error(transparent)]
    Refused(#[from] super::epoch::Refusal),
    /// A newer epoch could not be made durable: nothing may act on it.
    #[error("cannot persist epoch {epoch}: {source}")]
    Persist { epoch: u64, source: std::io::Error },
}

impl Target {
    /// Opens the epoch file in `state_dir` (created when missing).
    pub fn open(state_dir: &Path, hook: Vec<String>) -> std::io::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let store = EpochStore::open(&state_dir.join("epoch"));
        if let Epoch::Unknown(why) = store.epoch() {
            tracing::warn!("fenced: {why}");
        }
        let persisted = RwLock::new(known(store.epoch()));
        Ok(Target { epochs: Mutex::new(store), persisted, current: RwLock::new(None), hook })
    }

    /// Accepts `a` if it is not older than what was accepted; persists a higher epoch first.
    pub fn receive(&self, a: Assignment) {
        let mut epochs = self.epochs.lock().expect("epoch lock poisoned");
        // The way out of "fenced, epoch unknown" (DESIGN.md point 1): only a target state the
        // leader read after a quorum round carries the current epoch for certain. Every epoch
        // this agent could have recorded came from the controllers, so none is higher.
        if a.confirmed {
            if let Epoch::Unknown(why) = epochs.epoch().clone() {
                match epochs.confirm(a.epoch) {
                    Ok(()) => {
                        *self.persisted.write().expect("epoch lock poisoned") = known(epochs.epoch());
                        tracing::warn!(
                            epoch = a.epoch,
                            "the epoch file was unreadable ({why}); the leader confirmed epoch {} and it is recorded",
                            a.epoch
                        )
                    }
                    Err(e) => {
                        tracing::error!("cannot record the confirmed epoch {}: {e}; still fenced", a.epoch);
                        return;
                    }
                }
            }
        }
        if let Err(refusal) = epochs.check(a.epoch) {
            tracing::warn!(cluster = %a.cluster, epoch = a.epoch, "refused a target state: {refusal}");
            return;
        }
        // Every writer of `current` holds `epochs`, so what is read here stays true until the
        // write below; `current` itself is not held across the fsync.
        let older = self.current().is_some_and(|cur| (a.epoch, a.log_index) < (cur.epoch, cur.log_index));
        if older {
            tracing::debug!(epoch = a.epoch, index = a.log_index, "ignored an older target state");
            return;
        }
        // Durable before it counts: fsync of the file and of its directory.
        if let Err(e) = epochs.advance(a.epoch) {
            tracing::error!("cannot persist epoch {}: {e}; the target state is not accepted", a.epoch);
            return;
        }
        *self.persisted.write().expect("epoch lock poisoned") = known(epochs.epoch());
        let mut current = self.current.write().expect("target lock poisoned");
        if current.as_ref().map(|c| (c.epoch, &c.role, c.paused)) != Some((a.epoch, &a.role, a.paused)) {
            tracing::info!(cluster = %a.cluster, member = %a.member, epoch = a.epoch, role = %a.role, "target state accepted");
        }
        let changed = current.as_ref().is_some_and(|c| c.epoch != a.epoch && c.primary != a.primary);
        if changed {
            self.run_hook(&a);
        }
        *current = Some(a);
    }

    /// Runs `hooks.on_role_change` for the accepted target `a`, without waiting for it.
    fn run_hook(&self, a: &Assignment) {
        let Some((program, args)) = self.hook.split_first() else { return };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("TRIAD_CLUSTER", &a.cluster)
            .env("TRIAD_EPOCH", a.epoch.to_string())
            .env("TRIAD_PRIMARY", &a.primary)
            .env("TRIAD_PRIMARY_ENDPOINT", &a.primary_endpoint)
            .env("TRIAD_MEMBER", &a.member)
            .env("TRIAD_ROLE", &a.role)
            .stdin(std::process::Stdio::null());
        match cmd.spawn() {
            Ok(mut child) => {
                let program = program.clone();
                tokio::spawn(async move {
                    match child.wait().await {
                        Ok(s) if s.success() => tracing::info!("role-change hook `{program}` ran"),
                        Ok(s) => tracing::warn!("role-change hook `{program}` exited with {s}"),
                        Err(e) => tracing::warn!("role-change hook `{program}`: {e}"),
                    }
                });
            }
            Err(e) => tracing::warn!("cannot run the role-change hook `{program}`: {e}"),
        }
    }

    /// Gate for a command at `epoch`: refused if older than the persisted epoch or if the epoch
    /// file is unreadable; a higher epoch is persisted before the command may run.
    pub fn admit(&self, epoch: u64) -> Result<(), AdmitError> {
        let mut epochs = self.epochs.lock().expect("epoch lock poisoned");
        epochs.check(epoch)?;
        epochs.advance(epoch).map_err(|source| AdmitError::Persist { epoch, source })?;
        *self.persisted.write().expect("epoch lock poisoned") = known(epochs.epoch());
        Ok(())
    }

    /// The accepted target state.
    pub fn current(&self) -> Option<Assignment> {
        self.current.read().expect("target lock poisoned").clone()
    }

    /// The persisted epoch: `Some(n)`, or `None` when the epoch file is unreadable (fenced).
    pub fn epoch(&self) -> Option<u64> {
        *self.persisted.read().expect("epoch lock poisoned")
    }
}

/// The epoch, if known.
fn known(epoch: &Epoch) -> Option<u64> {
    match epoch {
        Epoch::Known(n) => Some(*n),
        Epoch::Unknown(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(epoch: u64, index: u64, role: &str) -> Assignment {
        Assignment {
            cluster: "c".into(),
            member: "m".into(),
            epoch,
            log_index: index,
            role: role.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_slow_epoch_write_never_holds_what_the_guard_reads() {
        let dir = tempfile::tempdir().unwrap();
        let t = std::sync::Arc::new(Target::open(dir.path(), vec![]).unwrap());
        t.receive(a(1, 10, "primary"));
        // A writer in the middle of its fsync holds the epoch store.
        let writing = t.epochs.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = t.clone();
        std::thread::spawn(move || tx.send((reader.epoch(), reader.current().map(|c| c.epoch))));
        let (epoch, current) =
            rx.recv_timeout(std::time::Duration::from_secs(5)).expect("the guard's reads waited for the disk");
        assert_eq!((epoch, current), (Some(1), Some(1)), "the guard's reads answer meanwhile");
        drop(writing);
    }

    #[test]
    fn newer_targets_win_older_are_refused_and_the_epoch_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::open(dir.path(), Vec::new()).unwrap();
        t.receive(a(2, 10, "primary"));
        t.receive(a(1, 50, "standby")); // older epoch: refused
        t.receive(a(2, 5, "standby")); // same epoch, older entry: ignored
        assert_eq!(t.current().map(|c| c.role), Some("primary".into()));
        assert_eq!(t.epoch(), Some(2));
        drop(t);
        let again = Target::open(dir.path(), Vec::new()).unwrap();
        assert_eq!(again.epoch(), Some(2), "the epoch survived a restart");
        again.receive(a(1, 99, "primary"));
        assert_eq!(again.current(), None, "a stale epoch is refused after a restart too");
    }

    #[test]
    fn an_unreadable_epoch_file_refuses_every_target_until_the_leader_confirms_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("epoch"), "not an epoch").unwrap();
        let t = Target::open(dir.path(), Vec::new()).unwrap();
        t.receive(a(5, 1, "primary"));
        assert_eq!(t.current(), None);
        assert_eq!(t.epoch(), None);
        // Read after a quorum round: the epoch is current, and the file is written again.
        t.receive(Assignment { confirmed: true, ..a(5, 1, "standby") });
        assert_eq!(t.epoch(), Some(5));
        assert_eq!(t.current().map(|c| c.role), Some("standby".into()));
        drop(t);
        assert_eq!(Target::open(dir.path(), Vec::new()).unwrap().epoch(), Some(5), "recorded on disk");
    }
}
