//! `State::apply` for the controllers' tables: the seed, sites, the Raft membership as recorded, and the
//! quorum checks of a leader that was cut off (`brain/continuity.rs`).

use crate::state::{Command, DbCluster, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_controllers(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::Seed(seed) => {
                let what = format!(
                    "seed {} sites, {} controllers, {} clusters",
                    seed.sites.len(),
                    seed.controllers.len(),
                    seed.clusters.len()
                );
                if self.seeded {
                    return (what, Err(Rejection::Conflict("the state is already seeded".into())));
                }
                self.seeded = true;
                for s in &seed.sites {
                    self.sites.insert(s.name.clone(), s.clone());
                }
                for c in &seed.controllers {
                    self.controllers.entry(c.id).or_insert_with(|| c.clone());
                }
                for c in &seed.clusters {
                    self.clusters.insert(c.name.clone(), DbCluster::clone(c));
                }
                // The config was validated at start, so a link refused here is a fault: said
                // in the answer (and the audit), never dropped silently.
                let mut refused = Vec::new();
                for l in &seed.links {
                    if let Err(e) = self.put_link(Role::System, l, p.at_ms) {
                        refused.push(format!("link {}: {e}", l.name));
                    }
                }
                for s in &seed.services {
                    if let Err(e) = self.put_service(Role::System, s, p.at_ms) {
                        refused.push(format!("service {}: {e}", s.name));
                    }
                }
                for d in &seed.drills {
                    if let Err(e) = self.put_drill_plan(Role::System, d) {
                        refused.push(format!("drill plan {}: {e}", d.name));
                    }
                }
                if !refused.is_empty() {
                    return (what, Ok(format!("seeded, but {}", refused.join("; "))));
                }
                (what, Ok("seeded".into()))
            }
            Command::PutSite(site) => {
                let what = format!("put site {} city={}", site.name, site.city);
                match self.sites.get(&site.name) {
                    Some(old) if old.city != site.city => (
                        what,
                        Err(Rejection::Conflict(format!("site `{}` is recorded in city `{}`", site.name, old.city))),
                    ),
                    Some(_) => (what, Ok(format!("site {} already recorded", site.name))),
                    None => {
                        self.sites.insert(site.name.clone(), site.clone());
                        (what, Ok(format!("site {} recorded in city {}", site.name, site.city)))
                    }
                }
            }
            Command::PutController(rec) => {
                let what = format!("put controller {} site={} addr={}", rec.id, rec.site, rec.grpc_addr);
                if !self.sites.is_empty() && !self.sites.contains_key(&rec.site) {
                    return (what, Err(Rejection::NotFound(format!("unknown site `{}`", rec.site))));
                }
                if let Some(other) = self.controllers.values().find(|c| c.id != rec.id && c.grpc_addr == rec.grpc_addr)
                {
                    return (
                        what,
                        Err(Rejection::Conflict(format!("controller {} already uses {}", other.id, rec.grpc_addr))),
                    );
                }
                self.controllers.insert(rec.id, rec.clone());
                // Added back on purpose (with a wiped store): no longer cut off.
                self.cut_off.remove(&rec.id);
                (what, Ok(format!("controller {} recorded", rec.id)))
            }
            Command::SetControllerVoter { id, voter } => {
                let what = format!("set controller {id} voter={voter}");
                match self.controllers.get_mut(id) {
                    None => (what, Err(Rejection::NotFound(format!("no controller with id {id}")))),
                    Some(rec) => {
                        rec.voter = *voter;
                        (what, Ok(format!("controller {id} voter={voter}")))
                    }
                }
            }
            Command::DeleteController { id } => {
                let what = format!("delete controller {id}");
                match self.controllers.remove(id) {
                    Some(_) => (what, Ok(format!("controller {id} deleted"))),
                    None => (what, Err(Rejection::NotFound(format!("no controller with id {id}")))),
                }
            }
            Command::QuorumCheck { term } => (
                format!("quorum check by the leader at term {term}"),
                Ok("every voter is to acknowledge this entry".into()),
            ),
            Command::ConfirmQuorum { term, reason } => {
                let what = format!("confirm the quorum of the leader at term {term}: {reason}");
                if reason.trim().is_empty() {
                    return (what, Err(Rejection::Invalid("a reason is required".into())));
                }
                self.quorum_confirmed_term = self.quorum_confirmed_term.max(*term);
                (what, Ok(format!("the leader at term {term} may grant leases and change roles")))
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a controllers command".into()))),
        }
    }
}
