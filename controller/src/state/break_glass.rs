//! Break-glass (DESIGN.md point 10): when a city is lost and even the witnesses are gone, the one
//! controller left (at `dr`) cannot reach a quorum, so nothing can be promoted the ordinary way.
//! Two people (a requester and a different approver, both `admin` or `noc`) and an attestation that
//! the other sites are dead or fenced let that controller rewrite its own store into a single-voter
//! cluster (see `raft::break_glass`). Once it leads that cluster it records the order here, which
//!
//! - cuts the other controllers off (their records go, and their Raft messages are refused until
//!   an operator adds them back with a wiped store: they could still hold the old quorum's log);
//! - raises the cluster's epoch floor far above anything the lost sites could have reached, so a
//!   member that returns sees an epoch it can never have been primary at and fences itself;
//! - turns the order into an approved manual failover to its target (data loss accepted, every
//!   other member attested dead), which the leader then carries out like any other: the old
//!   primary's leases waited out, the epoch first, the promote under a lease.
//!
//! This gives up the guarantees a quorum gives — the store may hold entries the lost quorum never
//! committed, and nothing proves the old sites are down — which is why it needs two people and a
//! written attestation, recorded in the replicated log once the controller leads again.

use serde::{Deserialize, Serialize};

use super::{Approval, ApprovalAction, ApprovalState, BreakGlassState, Proposal, Rejection, Role, State};

/// How far break-glass raises a cluster's epoch: far beyond any number of role changes the lost
/// sites could have made among themselves, had they survived cut off.
pub const EPOCH_JUMP: u64 = 1_000_000;

/// A break-glass order, as the stranded controller keeps it on its own disk until it leads again,
/// and then as recorded in the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakGlassOrder {
    /// Chosen by the controller that recorded the request (its wall clock in ms).
    pub id: u64,
    /// The controller that becomes the only voter.
    pub controller: u64,
    pub cluster: String,
    /// The member to promote.
    pub to: String,
    /// Why the other sites are dead or fenced, as the requester wrote it.
    pub attestation: String,
    /// The controllers cut off: every other member of the Raft membership when it was requested.
    pub cut_off: Vec<u64>,
    pub requested_by: String,
    pub requested_ms: u64,
    /// A request not approved by then lapses.
    pub expires_ms: u64,
    pub approved_by: Option<String>,
    pub approved_ms: u64,
    pub state: BreakGlassState,
}

/// Why a break-glass order cannot be approved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BreakGlassRefusal {
    #[error("break-glass request {id} is {state}, not pending")]
    NotPending { id: u64, state: BreakGlassState },
    #[error("break-glass request {id} expired; request again")]
    Expired { id: u64 },
    #[error("`{name}` requested break-glass {id}: a second person must approve it")]
    SamePerson { id: u64, name: String },
}

impl BreakGlassOrder {
    /// Whether it still stands at `now_ms`: a second request is refused while one does.
    pub fn is_open(&self, now_ms: u64) -> bool {
        match self.state {
            BreakGlassState::Pending => now_ms < self.expires_ms,
            BreakGlassState::Approved | BreakGlassState::Reseeded => true,
            BreakGlassState::Recorded | BreakGlassState::Expired | BreakGlassState::Refused(_) => false,
        }
    }

    /// The second person's approval by `by` at `now_ms`. A pending order past its time becomes
    /// [`BreakGlassState::Expired`] (and the refusal says so): the caller keeps it either way.
    pub fn approve(&mut self, by: &str, now_ms: u64) -> Result<(), BreakGlassRefusal> {
        let id = self.id;
        if self.state != BreakGlassState::Pending {
            return Err(BreakGlassRefusal::NotPending { id, state: self.state.clone() });
        }
        if now_ms >= self.expires_ms {
            self.state = BreakGlassState::Expired;
            return Err(BreakGlassRefusal::Expired { id });
        }
        if self.requested_by == by {
            return Err(BreakGlassRefusal::SamePerson { id, name: by.to_string() });
        }
        (self.approved_by, self.approved_ms, self.state) = (Some(by.to_string()), now_ms, BreakGlassState::Approved);
        Ok(())
    }
}

impl State {
    /// Records an order the stranded controller carried out on its store (see the module docs).
    /// Recording one twice (a leader that restarted before noting it had) changes nothing.
    pub(super) fn record_break_glass(&mut self, p: &Proposal, order: &BreakGlassOrder) -> Result<String, Rejection> {
        if p.actor.role != Role::System {
            return Err(Rejection::NotAllowed(
                "only the controller that carried out a break-glass order records it".into(),
            ));
        }
        if self.break_glass.contains_key(&order.id) {
            return Ok(format!("break-glass order {} was recorded already", order.id));
        }
        let approved_by =
            order.approved_by.clone().ok_or_else(|| Rejection::Invalid("the order has no approver".into()))?;
        if approved_by == order.requested_by {
            return Err(Rejection::NotAllowed("the order was approved by its own requester".into()));
        }
        let c = self
            .clusters
            .get(&order.cluster)
            .ok_or_else(|| Rejection::NotFound(format!("no cluster named `{}`", order.cluster)))?;
        if !c.members.contains_key(&order.to) {
            return Err(Rejection::NotFound(format!("`{}` is not a member of `{}`", order.to, order.cluster)));
        }
        let floor = c.epoch + EPOCH_JUMP;
        let attested_dead: Vec<String> = c.members.keys().filter(|m| **m != order.to).cloned().collect();
        let promote = c.primary.as_deref() != Some(order.to.as_str());
        // Requests made before the city was lost are moot: the order decides.
        for a in self.approvals.values_mut().filter(|a| a.cluster == order.cluster && super::is_open(a, p.at_ms)) {
            a.state = ApprovalState::Ended(format!("cancelled: superseded by break-glass order {}", order.id));
        }
        let recorded = if promote {
            let a = Approval {
                id: 0,
                action: ApprovalAction::Failover,
                cluster: order.cluster.clone(),
                to: order.to.clone(),
                reason: format!("break-glass order {}: {}", order.id, order.attestation),
                accept_data_loss: true,
                attested_dead,
                requested_by: order.requested_by.clone(),
                requested_ms: order.requested_ms,
                expires_ms: order.expires_ms,
                approved_by: Some(approved_by),
                // Both people have spoken: the leader carries it out as it finds it.
                state: ApprovalState::Approved,
            };
            format!("failover to `{}` approved as {}", order.to, self.record_request(a)?)
        } else {
            format!("`{}` is the primary already", order.to)
        };
        if let Some(c) = self.clusters.get_mut(&order.cluster) {
            c.epoch_floor = c.epoch_floor.max(floor);
        }
        for id in &order.cut_off {
            self.controllers.remove(id);
            self.cut_off.insert(*id);
        }
        self.break_glass.insert(order.id, order.clone());
        let summary = format!(
            "break-glass order {}: controller {} is the only voter (cut off: {:?})",
            order.id, order.controller, order.cut_off
        );
        Ok(format!("{summary}; {recorded}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Actor, Command, ControllerRecord, DbCluster, Response};

    fn state() -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "");
        (c.epoch, c.primary) = (3, Some("dc".into()));
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        for (id, site) in [(1, "dc"), (2, "ndc"), (3, "dr")] {
            let rec = ControllerRecord {
                id,
                site: site.into(),
                grpc_addr: format!("10.0.0.{id}:7000"),
                http_addr: String::new(),
                voter: true,
            };
            s.controllers.insert(id, rec);
        }
        s
    }

    fn order() -> BreakGlassOrder {
        BreakGlassOrder {
            id: 77,
            controller: 3,
            cluster: "customs".into(),
            to: "dr".into(),
            attestation: "dc and ndc destroyed".into(),
            cut_off: vec![1, 2],
            requested_by: "alice".into(),
            requested_ms: 10,
            expires_ms: 1000,
            approved_by: Some("bob".into()),
            approved_ms: 20,
            state: BreakGlassState::Reseeded,
        }
    }

    #[test]
    fn an_order_is_approved_once_by_a_second_person_before_it_expires() {
        let pending = BreakGlassOrder { state: BreakGlassState::Pending, approved_by: None, approved_ms: 0, ..order() };
        assert!(pending.is_open(999) && !pending.is_open(1000));
        let mut same = pending.clone();
        assert_eq!(same.approve("alice", 500), Err(BreakGlassRefusal::SamePerson { id: 77, name: "alice".into() }));
        assert_eq!(same, pending, "a refusal changes nothing");
        let mut late = pending.clone();
        assert_eq!(late.approve("bob", 1000), Err(BreakGlassRefusal::Expired { id: 77 }));
        assert_eq!(late.state, BreakGlassState::Expired);
        let mut ok = pending.clone();
        assert_eq!(ok.approve("bob", 500), Ok(()));
        assert_eq!(
            (ok.state.clone(), ok.approved_by.as_deref(), ok.approved_ms),
            (BreakGlassState::Approved, Some("bob"), 500)
        );
        assert!(ok.is_open(u64::MAX), "approved stands until recorded");
        let again = ok.clone().approve("carol", 600).unwrap_err();
        assert_eq!(again.to_string(), "break-glass request 77 is approved, not pending");
    }

    fn apply(s: &mut State, role: Role, command: Command) -> Response {
        let p = Proposal { at_ms: 30, actor: Actor { name: "x".into(), role, origin: "t".into() }, command };
        s.apply(9, &p, &mut Vec::new())
    }

    #[test]
    fn recording_an_order_cuts_off_controllers_raises_the_floor_and_approves_the_failover() {
        let mut s = state();
        let r = apply(&mut s, Role::Admin, Command::RecordBreakGlass(order()));
        assert!(matches!(r, Response::Rejected(ref m) if m.to_string().contains("only the controller")), "{r:?}");
        let r = apply(&mut s, Role::System, Command::RecordBreakGlass(order()));
        assert!(matches!(r, Response::Ok(ref m) if m.contains("approved as request 1")), "{r:?}");
        assert_eq!(s.controllers.keys().copied().collect::<Vec<_>>(), [3]);
        assert!(s.cut_off.contains(&1) && s.cut_off.contains(&2));
        assert_eq!(s.clusters["customs"].epoch_floor, 3 + EPOCH_JUMP);
        let a = &s.approvals[&1];
        assert_eq!((a.state.as_str(), a.to.as_str(), a.accept_data_loss), ("approved", "dr", true));
        assert_eq!(a.attested_dead, ["dc", "ndc"]);
        // Twice is once.
        let r = apply(&mut s, Role::System, Command::RecordBreakGlass(order()));
        assert!(matches!(r, Response::Ok(ref m) if m.contains("recorded already")), "{r:?}");
        assert_eq!(s.approvals.len(), 1);
    }

    #[test]
    fn an_order_approved_by_its_requester_or_naming_a_stranger_is_refused() {
        let mut s = state();
        let own = BreakGlassOrder { approved_by: Some("alice".into()), ..order() };
        let r = apply(&mut s, Role::System, Command::RecordBreakGlass(own));
        assert!(matches!(r, Response::Rejected(ref m) if m.to_string().contains("own requester")), "{r:?}");
        let stranger = BreakGlassOrder { to: "mars".into(), ..order() };
        let r = apply(&mut s, Role::System, Command::RecordBreakGlass(stranger));
        assert!(matches!(r, Response::Rejected(ref m) if m.to_string().contains("not a member")), "{r:?}");
        assert!(s.cut_off.is_empty() && s.controllers.len() == 3 && s.clusters["customs"].epoch_floor == 0);
    }
}
