//! Controller membership on the leader (`triadctl cluster add/remove`): a controller joins as a
//! learner, catches up, then votes; no city may hold more than two voters (DESIGN.md point 10).

use std::collections::BTreeSet;

use openraft::{BasicNode, ChangeMembers, ServerState};
use tonic::{Request, Status};
use triad_proto::v1 as pb;

use super::control::ControlApi;
use super::not_leader;
use crate::config::{check_addr, check_name};
use crate::error::Error;
use crate::state::{crowded, voters_by_city, Command, ControllerRecord, Role, Site};

/// How long `cluster add` waits for a learner to catch up (less than triadctl's 30 s timeout, so
/// that the operator gets this explanation rather than a bare timeout).
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl<B: crate::brain::Requests> ControlApi<B> {
    pub(super) fn membership_reply(&self, message: String) -> pb::MembershipReply {
        let m = self.ctx.raft.metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
        let learners = m.membership_config.nodes().map(|(id, _)| *id).filter(|id| !voters.contains(id)).collect();
        pb::MembershipReply { voters: voters.into_iter().collect(), learners, message }
    }

    pub(super) async fn add_controller_inner(
        &self,
        req: Request<pb::AddControllerRequest>,
    ) -> Result<pb::MembershipReply, Status> {
        let caller = self.authorise(&req, &[Role::Admin], "adding a controller")?;
        let r = req.into_inner();
        let bad = |e: Error| match e {
            Error::ConfigKey { key, msg } => Status::invalid_argument(format!("{key}: {msg}")),
            other => Status::invalid_argument(other.to_string()),
        };
        if r.id == 0 {
            return Err(Status::invalid_argument("id must be a positive integer"));
        }
        check_name("--site", &r.site).map_err(bad)?;
        check_addr("--grpc-addr", &r.grpc_addr).map_err(bad)?;
        check_addr("--http-addr", &r.http_addr).map_err(bad)?;
        if !r.city.is_empty() {
            check_name("--city", &r.city).map_err(bad)?;
        }
        if !self.ctx.is_leader() {
            return Err(not_leader(&self.ctx));
        }
        let m = self.ctx.raft.metrics().borrow().clone();
        let new_site = self.city_check(&r, m.membership_config.voter_ids())?;
        let is_voter = m.membership_config.voter_ids().any(|id| id == r.id);
        let learner_addr = m.membership_config.nodes().find(|(id, _)| **id == r.id).map(|(_, n)| n.addr.clone());
        if is_voter {
            return Err(Status::already_exists(format!("controller {} is already a voter", r.id)));
        }
        match learner_addr {
            // A second `cluster add` for the same learner resumes an add that timed out.
            Some(addr) if addr != r.grpc_addr => {
                return Err(Status::already_exists(format!(
                    "controller {} is a learner at {addr}, not {}; remove it first",
                    r.id, r.grpc_addr
                )))
            }
            Some(_) => {}
            None => {
                if let Some(site) = new_site {
                    self.propose(&caller, Command::PutSite(site)).await?;
                }
                let rec = ControllerRecord {
                    id: r.id,
                    site: r.site.clone(),
                    grpc_addr: r.grpc_addr.clone(),
                    http_addr: r.http_addr.clone(),
                    voter: false,
                };
                self.propose(&caller, Command::PutController(rec)).await?;
                self.ctx
                    .raft
                    .add_learner(r.id, BasicNode::new(&r.grpc_addr), false)
                    .await
                    .map_err(|e| Status::unavailable(format!("adding controller {} as a learner: {e}", r.id)))?;
            }
        }
        self.wait_caught_up(r.id, &r.grpc_addr).await?;
        self.ctx
            .raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([r.id])), false)
            .await
            .map_err(|e| Status::unavailable(format!("promoting controller {} to voter: {e}", r.id)))?;
        self.propose(&caller, Command::SetControllerVoter { id: r.id, voter: true }).await?;
        Ok(self.membership_reply(format!("controller {} caught up and is a voter", r.id)))
    }

    /// Checks the new controller's city (DESIGN.md point 10): known for a known site, given for a
    /// new one, and holding at most two voters once it votes. Returns the site to record, if new.
    fn city_check(
        &self,
        r: &pb::AddControllerRequest,
        voters: impl Iterator<Item = u64>,
    ) -> Result<Option<Site>, Status> {
        let guard = self.ctx.state.read().expect("state lock poisoned");
        let state = &guard.state;
        let (city, new_site) = match state.sites.get(&r.site) {
            Some(s) if !r.city.is_empty() && r.city != state.city_of(&s.name) => {
                return Err(Status::invalid_argument(format!(
                    "site `{}` is in city `{}`, not `{}`",
                    r.site,
                    state.city_of(&s.name),
                    r.city
                )))
            }
            Some(s) => (state.city_of(&s.name).to_string(), None),
            None if state.sites.is_empty() => (r.site.clone(), None),
            None if r.city.is_empty() => {
                return Err(Status::invalid_argument(format!(
                    "site `{}` is new: give its --city, so that voters can be counted per city",
                    r.site
                )))
            }
            None => (
                r.city.clone(),
                Some(Site {
                    name: r.site.clone(),
                    description: format!("controller site in {}", r.city),
                    city: r.city.clone(),
                }),
            ),
        };
        let site_of = |id: u64| state.controllers.get(&id).map(|c| state.city_of(&c.site).to_string());
        let mut cities: Vec<(u64, String)> = voters
            .filter(|id| *id != r.id)
            .map(|id| (id, site_of(id).unwrap_or_else(|| format!("controller-{id}"))))
            .collect();
        cities.push((r.id, city));
        match crowded(&voters_by_city(cities)) {
            Some(why) => Err(Status::failed_precondition(why)),
            None => Ok(new_site),
        }
    }

    /// Waits until learner `id` holds the leader's log (within a few entries), or says clearly
    /// why not: a learner that never catches up must not become a voter.
    async fn wait_caught_up(&self, id: u64, addr: &str) -> Result<(), Status> {
        let deadline = std::time::Instant::now() + CATCH_UP_TIMEOUT;
        let mut rx = self.ctx.raft.metrics();
        loop {
            {
                let m = rx.borrow().clone();
                let last = m.last_log_index.unwrap_or(0);
                let matched =
                    m.replication.as_ref().and_then(|r| r.get(&id).copied().flatten()).map(|l| l.index).unwrap_or(0);
                if matched + 8 >= last && matched > 0 {
                    return Ok(());
                }
                if m.state != ServerState::Leader {
                    return Err(not_leader(&self.ctx));
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(Status::deadline_exceeded(format!(
                    "controller {id} was added as a learner but has not caught up within {} s: is it running at {addr} \
                     with `join = true`? Run the same `triadctl cluster add` again to resume, or \
                     `triadctl cluster remove --id {id}` to undo",
                    CATCH_UP_TIMEOUT.as_secs()
                )));
            }
        }
    }

    pub(super) async fn remove_controller_inner(
        &self,
        req: Request<pb::RemoveControllerRequest>,
    ) -> Result<pb::MembershipReply, Status> {
        let caller = self.authorise(&req, &[Role::Admin], "removing a controller")?;
        let id = req.into_inner().id;
        if !self.ctx.is_leader() {
            return Err(not_leader(&self.ctx));
        }
        let m = self.ctx.raft.metrics().borrow().clone();
        let voters: BTreeSet<u64> = m.membership_config.voter_ids().collect();
        let is_member = m.membership_config.nodes().any(|(n, _)| *n == id);
        if !is_member {
            return Err(Status::not_found(format!("controller {id} is not a member")));
        }
        if voters.len() == 1 && voters.contains(&id) {
            return Err(Status::failed_precondition("refusing to remove the last voter"));
        }
        let change = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // Record first, while this controller surely leads, then change the membership: a leader
        // that removes itself steps down and, no longer a member, may never learn who leads next,
        // so nothing could be recorded after the change. Restored if the change fails.
        let record = self.ctx.state.read().expect("state lock poisoned").state.controllers.get(&id).cloned();
        if record.is_some() {
            self.propose(&caller, Command::DeleteController { id }).await?;
        }
        if let Err(e) = self.ctx.raft.change_membership(change, false).await {
            if let Some(rec) = record {
                if let Err(restore) = self.propose(&caller, Command::PutController(rec)).await {
                    tracing::warn!(id, "could not restore the record of controller {id}: {}", restore.message());
                }
            }
            return Err(Status::unavailable(format!("removing controller {id}: {e}")));
        }
        Ok(self.membership_reply(format!("controller {id} removed")))
    }
}
