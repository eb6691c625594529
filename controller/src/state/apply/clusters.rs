//! `State::apply` for the database clusters: adoption, roles and epochs, the synchronous and vouch
//! sets (DESIGN.md, "Safety of role changes"), maintenance and the detector's verdict.

use crate::state::{Command, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_clusters(&mut self, log_index: u64, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::AdoptCluster { cluster, primary, synchronous } => {
                let what =
                    format!("adopt cluster {cluster}: primary {primary}, synchronous [{}]", synchronous.join(", "));
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if c.epoch != 0 {
                    return (
                        what,
                        Err(Rejection::Conflict(format!("cluster `{cluster}` is already at epoch {}", c.epoch))),
                    );
                }
                if let Some(m) = std::iter::once(primary).chain(synchronous).find(|m| !c.members.contains_key(*m)) {
                    return (what, Err(Rejection::NotFound(format!("`{m}` is not a member of `{cluster}`"))));
                }
                if synchronous.contains(primary) {
                    return (
                        what,
                        Err(Rejection::Invalid(format!(
                            "the primary `{primary}` cannot be its own synchronous standby"
                        ))),
                    );
                }
                c.epoch = 1;
                c.epoch_index = log_index;
                c.primary = Some(primary.clone());
                c.synchronous = synchronous.iter().cloned().collect();
                c.vouch = c.synchronous.clone();
                c.want_synchronous = c.synchronous.clone();
                (what, Ok(format!("cluster {cluster} adopted at epoch 1")))
            }
            Command::SetMemberEndpoint { cluster, member, endpoint } => {
                let what = format!("set endpoint of {cluster}/{member} to `{endpoint}`");
                match self.clusters.get_mut(cluster).and_then(|c| c.members.get_mut(member)) {
                    Some(m) => {
                        m.endpoint = endpoint.clone();
                        (what, Ok("recorded".into()))
                    }
                    None => (what, Err(Rejection::NotFound(format!("no member `{member}` in `{cluster}`")))),
                }
            }
            Command::SetPaused { cluster, paused, reason } => {
                let what = format!("{} cluster {cluster} ({reason})", if *paused { "pause" } else { "resume" });
                if *paused && p.actor.role != Role::System {
                    return (
                        what,
                        Err(Rejection::NotAllowed(
                            "pausing turns automatic failover off: it needs a second approver".into(),
                        )),
                    );
                }
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if c.paused == *paused {
                    return (
                        what,
                        Err(Rejection::Conflict(format!(
                            "cluster `{cluster}` is already {}",
                            if *paused { "paused" } else { "running" }
                        ))),
                    );
                }
                c.paused = *paused;
                (what, Ok(format!("cluster {cluster} {}", if *paused { "paused" } else { "resumed" })))
            }
            Command::SwitchPrimary { cluster, workflow, primary } => {
                let what = format!("switch primary of {cluster} to {primary} (workflow {workflow})");
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if c.workflow != Some(*workflow) {
                    return (
                        what,
                        Err(Rejection::Conflict(format!(
                            "workflow {workflow} is not the one under way on `{cluster}`"
                        ))),
                    );
                }
                if !c.members.contains_key(primary) {
                    return (what, Err(Rejection::NotFound(format!("`{primary}` is not a member of `{cluster}`"))));
                }
                c.epoch = (c.epoch + 1).max(c.epoch_floor);
                c.epoch_index = log_index;
                // The roles swap: the old primary is wanted as a synchronous standby in the place
                // of the new one, and made one when it follows (reconfigure, confirm, record).
                if let Some(old) = c.primary.replace(primary.clone()) {
                    if c.want_synchronous.remove(primary) {
                        c.want_synchronous.insert(old);
                    }
                }
                c.synchronous.clear();
                c.vouch.clear();
                (what, Ok(format!("{cluster} epoch {}: primary {primary}", c.epoch)))
            }
            Command::SetSynchronous { cluster, members } => {
                let what = format!("set synchronous standbys of {cluster} to [{}]", members.join(", "));
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if let Some(m) = members.iter().find(|m| !c.members.contains_key(*m) || c.primary.as_ref() == Some(*m))
                {
                    return (what, Err(Rejection::Conflict(format!("`{m}` is not a standby of `{cluster}`"))));
                }
                c.synchronous = members.iter().cloned().collect();
                c.vouch = c.synchronous.clone();
                if !members.is_empty() {
                    c.want_synchronous = c.synchronous.clone();
                }
                (what, Ok("recorded".into()))
            }
            Command::SetVouch { cluster, members } => {
                let what = format!("set the vouchers of {cluster} to [{}]", members.join(", "));
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if !c.synchronous.is_empty() {
                    return (
                        what,
                        Err(Rejection::Conflict(format!("`{cluster}` has a synchronous set: it is the vouch set"))),
                    );
                }
                if let Some(m) = members.iter().find(|m| !c.members.contains_key(*m) || c.primary.as_ref() == Some(*m))
                {
                    return (what, Err(Rejection::Conflict(format!("`{m}` is not a standby of `{cluster}`"))));
                }
                // Adding a voucher only asks more of the primary's failsafe. Dropping one (here or
                // when a synchronous set replaces it) is safe too: every voucher waits out its own
                // last vouch before it promotes (agents/src/safety/vouch.rs), whatever the set says.
                c.vouch = members.iter().cloned().collect();
                (what, Ok("recorded".into()))
            }
            Command::DropSynchronous { cluster, member, reason } => {
                let what = format!("drop {member} from the synchronous standbys of {cluster} ({reason})");
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if c.strict {
                    return (
                        what,
                        Err(Rejection::Conflict(format!(
                            "`{cluster}` is strict: commits wait for its synchronous standby"
                        ))),
                    );
                }
                if !c.synchronous.remove(member) {
                    return (
                        what,
                        Err(Rejection::Conflict(format!("`{member}` is not a synchronous standby of `{cluster}`"))),
                    );
                }
                c.vouch.remove(member);
                (
                    what,
                    Ok(format!(
                        "{cluster} synchronous [{}]",
                        c.synchronous.iter().cloned().collect::<Vec<_>>().join(", ")
                    )),
                )
            }
            Command::SetFailoverBlocked { cluster, reason } => {
                let what = if reason.is_empty() {
                    format!("automatic failover of {cluster} possible again")
                } else {
                    format!("automatic failover of {cluster} blocked: {reason}")
                };
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                c.failover_blocked = reason.clone();
                (what.clone(), Ok(what))
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a clusters command".into()))),
        }
    }
}
