//! `State::apply` for the database clusters: adoption, roles and epochs, the synchronous and vouch
//! sets (DESIGN.md, "Safety of role changes"), maintenance and the detector's verdict.

use std::collections::BTreeSet;

use crate::state::{Command, DbCluster, Proposal, Rejection, Role, State, WorkflowKind};

impl State {
    pub(super) fn apply_clusters(&mut self, log_index: u64, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::AdoptCluster { cluster, primary, synchronous } => (
                format!("adopt cluster {cluster}: primary {primary}, synchronous [{}]", synchronous.join(", ")),
                self.adopt(log_index, p.at_ms, cluster, primary, synchronous),
            ),
            Command::SetMemberEndpoint { cluster, member, endpoint, endpoint_id } => {
                let what = format!("set endpoint of {cluster}/{member} to `{endpoint}` (identity `{endpoint_id}`)");
                match self.clusters.get_mut(cluster).and_then(|c| c.members.get_mut(member)) {
                    Some(m) => {
                        m.endpoint = endpoint.clone();
                        m.endpoint_id = endpoint_id.clone();
                        (what, Ok("recorded".into()))
                    }
                    None => (what, Err(Rejection::NotFound(format!("no member `{member}` in `{cluster}`")))),
                }
            }
            Command::SetPaused { cluster, paused, reason } => (
                format!("{} cluster {cluster} ({reason})", if *paused { "pause" } else { "resume" }),
                self.set_paused(p.actor.role, cluster, *paused),
            ),
            Command::SwitchPrimary { cluster, workflow, primary } => (
                format!("switch primary of {cluster} to {primary} (workflow {workflow})"),
                self.switch_primary(log_index, p.at_ms, cluster, *workflow, primary),
            ),
            Command::SetSynchronous { cluster, members } => (
                format!("set synchronous standbys of {cluster} to [{}]", members.join(", ")),
                self.set_synchronous(cluster, members),
            ),
            Command::SetVouch { cluster, members } => {
                (format!("set the vouchers of {cluster} to [{}]", members.join(", ")), self.set_vouch(cluster, members))
            }
            Command::DropSynchronous { cluster, member, reason } => (
                format!("drop {member} from the synchronous standbys of {cluster} ({reason})"),
                self.drop_synchronous(cluster, member),
            ),
            Command::SetFailoverBlocked { cluster, reason } => {
                let what = if reason.is_empty() {
                    format!("automatic failover of {cluster} possible again")
                } else {
                    format!("automatic failover of {cluster} blocked: {reason}")
                };
                let result = self.cluster_mut(cluster).map(|c| {
                    c.failover_blocked = reason.clone();
                    what.clone()
                });
                (what, result)
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a clusters command".into()))),
        }
    }

    fn cluster_mut(&mut self, name: &str) -> Result<&mut DbCluster, Rejection> {
        self.clusters.get_mut(name).ok_or_else(|| Rejection::NotFound(format!("no cluster named `{name}`")))
    }

    /// Writes down a running cluster at epoch 1: its primary and synchronous standbys.
    fn adopt(
        &mut self,
        log_index: u64,
        at_ms: u64,
        cluster: &str,
        primary: &String,
        synchronous: &[String],
    ) -> Result<String, Rejection> {
        let c = self.cluster_mut(cluster)?;
        if c.epoch != 0 {
            return Err(Rejection::Conflict(format!("cluster `{cluster}` is already at epoch {}", c.epoch)));
        }
        if let Some(m) = std::iter::once(primary).chain(synchronous).find(|m| !c.members.contains_key(*m)) {
            return Err(Rejection::NotFound(format!("`{m}` is not a member of `{cluster}`")));
        }
        if synchronous.contains(primary) {
            return Err(Rejection::Invalid(format!("the primary `{primary}` cannot be its own synchronous standby")));
        }
        c.epoch = 1;
        c.epoch_index = log_index;
        c.primary = Some(primary.clone());
        c.synchronous = synchronous.iter().cloned().collect();
        c.vouch = c.synchronous.clone();
        c.want_synchronous = c.synchronous.clone();
        c.role_changes.primary_since_ms = at_ms;
        Ok(format!("cluster {cluster} adopted at epoch 1"))
    }

    /// Maintenance: pausing turns automatic failover off, so only the brain carries out an
    /// approved request to pause; anyone allowed may resume.
    fn set_paused(&mut self, role: Role, cluster: &str, paused: bool) -> Result<String, Rejection> {
        if paused && role != Role::System {
            return Err(Rejection::NotAllowed(
                "pausing turns automatic failover off: it needs a second approver".into(),
            ));
        }
        let c = self.cluster_mut(cluster)?;
        let now = if paused { "paused" } else { "running" };
        if c.paused == paused {
            return Err(Rejection::Conflict(format!("cluster `{cluster}` is already {now}")));
        }
        c.paused = paused;
        Ok(format!("cluster {cluster} {}", if paused { "paused" } else { "resumed" }))
    }

    /// The new epoch of a role change (point 1), for the workflow under way only.
    fn switch_primary(
        &mut self,
        log_index: u64,
        at_ms: u64,
        cluster: &str,
        workflow: u64,
        primary: &String,
    ) -> Result<String, Rejection> {
        let kind = self.workflows.get(&workflow).map(|w| w.kind);
        let c = self.cluster_mut(cluster)?;
        if c.workflow != Some(workflow) {
            return Err(Rejection::Conflict(format!("workflow {workflow} is not the one under way on `{cluster}`")));
        }
        if !c.members.contains_key(primary) {
            return Err(Rejection::NotFound(format!("`{primary}` is not a member of `{cluster}`")));
        }
        c.epoch = (c.epoch + 1).max(c.epoch_floor);
        c.epoch_index = log_index;
        // The roles swap: the old primary is wanted as a synchronous standby in the place of the
        // new one, and made one when it follows (reconfigure, confirm, record).
        if let Some(old) = c.primary.replace(primary.clone()) {
            if c.want_synchronous.remove(primary) {
                c.want_synchronous.insert(old);
            }
        }
        c.synchronous.clear();
        c.vouch.clear();
        let changes = &mut c.role_changes;
        changes.primary_since_ms = at_ms;
        changes.last_write_outage_ms = None;
        match kind {
            Some(WorkflowKind::Switchover) => changes.last_switchover_ms = at_ms,
            Some(WorkflowKind::Failover) => changes.last_failover_ms = at_ms,
            _ => {}
        }
        Ok(format!("{cluster} epoch {}: primary {primary}", c.epoch))
    }

    /// Records the synchronous set (added members were confirmed first, point 5); it is the
    /// vouch set too.
    fn set_synchronous(&mut self, cluster: &str, members: &[String]) -> Result<String, Rejection> {
        let c = self.cluster_mut(cluster)?;
        standbys_of(c, cluster, members)?;
        c.synchronous = members.iter().cloned().collect();
        c.vouch = c.synchronous.clone();
        if !members.is_empty() {
            c.want_synchronous = c.synchronous.clone();
        }
        Ok("recorded".into())
    }

    /// The vouch set of a cluster with no synchronous member (point 3).
    fn set_vouch(&mut self, cluster: &str, members: &[String]) -> Result<String, Rejection> {
        let c = self.cluster_mut(cluster)?;
        if !c.synchronous.is_empty() {
            return Err(Rejection::Conflict(format!("`{cluster}` has a synchronous set: it is the vouch set")));
        }
        standbys_of(c, cluster, members)?;
        // Adding a voucher only asks more of the primary's failsafe. Dropping one (here or when a
        // synchronous set replaces it) is safe too: every voucher waits out its own last vouch
        // before it promotes (agents/src/safety/vouch.rs), whatever the set says.
        c.vouch = members.iter().cloned().collect();
        Ok("recorded".into())
    }

    /// A synchronous standby lost in relaxed mode: recorded first, reconfigured after (point 5).
    fn drop_synchronous(&mut self, cluster: &str, member: &str) -> Result<String, Rejection> {
        let c = self.cluster_mut(cluster)?;
        if c.strict {
            return Err(Rejection::Conflict(format!(
                "`{cluster}` is strict: commits wait for its synchronous standby"
            )));
        }
        if !c.synchronous.remove(member) {
            return Err(Rejection::Conflict(format!("`{member}` is not a synchronous standby of `{cluster}`")));
        }
        c.vouch.remove(member);
        Ok(format!("{cluster} synchronous [{}]", joined(&c.synchronous)))
    }
}

/// Refuses `members` unless each is a member of `c` other than its primary.
fn standbys_of(c: &DbCluster, cluster: &str, members: &[String]) -> Result<(), Rejection> {
    match members.iter().find(|m| !c.members.contains_key(*m) || c.primary.as_ref() == Some(*m)) {
        Some(m) => Err(Rejection::Conflict(format!("`{m}` is not a standby of `{cluster}`"))),
        None => Ok(()),
    }
}

fn joined(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}
