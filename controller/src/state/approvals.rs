//! Operations that need a second person (DESIGN.md, "Security": manual failover, failover to
//! `dr`, disabling automatic failover): one operator requests, a different one approves, and only
//! then does it happen. A failover is then carried out by the leader; a pause (maintenance mode,
//! which turns automatic failover off) takes effect with the approval itself.
//! Requests and approvals are replicated like everything else, so a leader change neither loses
//! an approval nor runs an approved operation twice.

use serde::{Deserialize, Serialize};

use super::{ApprovalAction, ApprovalState, Proposal, Rejection, Role, State, WorkflowKind};

/// A manual failover or a pause waiting for, or carried out after, its second approver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: u64,
    pub action: ApprovalAction,
    pub cluster: String,
    /// The member to promote (a failover); empty for a pause.
    pub to: String,
    /// Why, as the requester wrote it.
    pub reason: String,
    /// The requester accepts losing acknowledged commits: the target is not in the synchronous
    /// set, and the data-loss window is measured and reported.
    pub accept_data_loss: bool,
    /// Members the requester attests are dead or fenced (their agents cannot be reached to
    /// acknowledge the new epoch, e.g. a whole city lost).
    pub attested_dead: Vec<String>,
    pub requested_by: String,
    pub requested_ms: u64,
    /// A request not approved by then lapses.
    pub expires_ms: u64,
    pub approved_by: Option<String>,
    pub state: ApprovalState,
}

impl Approval {
    /// A request by `p`'s actor, pending until `ttl_ms` from now; the id is given when recorded.
    fn pending(p: &Proposal, action: ApprovalAction, cluster: &str, reason: &str, ttl_ms: u64) -> Approval {
        Approval {
            id: 0,
            action,
            cluster: cluster.into(),
            to: String::new(),
            reason: reason.into(),
            accept_data_loss: false,
            attested_dead: Vec::new(),
            requested_by: p.actor.name.clone(),
            requested_ms: p.at_ms,
            expires_ms: p.at_ms + ttl_ms,
            approved_by: None,
            state: ApprovalState::Pending,
        }
    }
}

/// The step a switchover's rollback records while it waits for its target's agent
/// (`brain/rollback.rs`); a failover request may then resolve it ([`State::resolves_rollback`]).
pub const ROLLBACK_WAITING_STEP: &str = "waiting-for-target";

/// Roles that may request or approve a manual failover.
pub const APPROVER_ROLES: [Role; 2] = [Role::Admin, Role::Noc];

impl State {
    /// A manual failover request: checked against the state, recorded as `pending`.
    pub(super) fn request_failover(
        &mut self,
        p: &Proposal,
        (cluster, to, reason): (&str, &str, &str),
        accept_data_loss: bool,
        attested_dead: &[String],
        ttl_ms: u64,
    ) -> Result<String, Rejection> {
        if !APPROVER_ROLES.contains(&p.actor.role) {
            return Err(Rejection::NotAllowed(format!("role `{}` may not request a failover", p.actor.role)));
        }
        let c =
            self.clusters.get(cluster).ok_or_else(|| Rejection::NotFound(format!("no cluster named `{cluster}`")))?;
        if c.epoch == 0 {
            return Err(Rejection::Conflict(format!("cluster `{cluster}` is not adopted yet")));
        }
        // To the member named primary only to resolve a rollback waiting for a target lost for
        // good (it is then the rollback that acts, `brain/rollback.rs`).
        let resolving = self.resolves_rollback(cluster, to, accept_data_loss, attested_dead)?.is_some();
        if !c.members.contains_key(to) || (c.primary.as_deref() == Some(to) && !resolving) {
            return Err(Rejection::Conflict(format!("`{to}` is not a standby of `{cluster}`")));
        }
        if let Some(m) = attested_dead.iter().find(|m| !c.members.contains_key(*m) || *m == to) {
            return Err(Rejection::Invalid(format!(
                "`{m}` cannot be attested dead: it is not another member of `{cluster}`"
            )));
        }
        if !c.synchronous.contains(to) && !accept_data_loss {
            return Err(Rejection::Conflict(format!(
                "`{to}` is not a synchronous standby: it may lack acknowledged commits; request again accepting \
                 the data loss if that is the decision"
            )));
        }
        let mut a = Approval::pending(p, ApprovalAction::Failover, cluster, reason, ttl_ms);
        (a.to, a.accept_data_loss, a.attested_dead) = (to.to_string(), accept_data_loss, attested_dead.to_vec());
        self.record_request(a)
    }

    /// Which rollback a failover request to `to`, the member named primary, resolves: the
    /// rollback of a switchover away from `to` that waits for its target's agent
    /// (`brain/rollback.rs`), when the request attests the target dead and accepts the data loss.
    /// `Ok(None)`: no such rollback waits (an ordinary request); `Err`: one waits, and the request
    /// lacks what resolving it takes.
    pub fn resolves_rollback(
        &self,
        cluster: &str,
        to: &str,
        accept_data_loss: bool,
        attested_dead: &[String],
    ) -> Result<Option<u64>, Rejection> {
        let Some(c) = self.clusters.get(cluster) else { return Ok(None) };
        if c.primary.as_deref() != Some(to) {
            return Ok(None);
        }
        let waiting = c
            .workflow
            .and_then(|wf| self.workflows.get(&wf))
            .filter(|w| w.kind == WorkflowKind::Switchover && w.from == to)
            .filter(|w| w.steps.iter().any(|s| s.name == ROLLBACK_WAITING_STEP));
        let Some(w) = waiting else { return Ok(None) };
        if !attested_dead.contains(&w.to) || !accept_data_loss {
            return Err(Rejection::Conflict(format!(
                "the rollback of switchover {} waits for `{}`'s agent; to start `{to}` without it, request again with \
                 --attest-dead {} --accept-data-loss (what `{}` acknowledged after `{to}` stopped is lost)",
                w.id, w.to, w.to, w.to
            )));
        }
        Ok(Some(w.id))
    }

    /// A request to pause a cluster (maintenance mode: automatic failover off), recorded as
    /// `pending`; it takes effect when a second person approves it.
    pub(super) fn request_pause(
        &mut self,
        p: &Proposal,
        cluster: &str,
        reason: &str,
        ttl_ms: u64,
    ) -> Result<String, Rejection> {
        if !APPROVER_ROLES.contains(&p.actor.role) {
            return Err(Rejection::NotAllowed(format!("role `{}` may not request a pause", p.actor.role)));
        }
        let c =
            self.clusters.get(cluster).ok_or_else(|| Rejection::NotFound(format!("no cluster named `{cluster}`")))?;
        if c.paused {
            return Err(Rejection::Conflict(format!("cluster `{cluster}` is already paused")));
        }
        self.record_request(Approval::pending(p, ApprovalAction::Pause, cluster, reason, ttl_ms))
    }

    /// Records `a` under the next id, unless another request on its cluster is still open; keeps
    /// the newest 200.
    pub(super) fn record_request(&mut self, mut a: Approval) -> Result<String, Rejection> {
        if let Some(open) = self.approvals.values().find(|o| o.cluster == a.cluster && is_open(o, a.requested_ms)) {
            return Err(Rejection::Conflict(format!("request {} on `{}` is still {}", open.id, a.cluster, open.state)));
        }
        self.last_approval_id += 1;
        a.id = self.last_approval_id;
        self.approvals.insert(a.id, a);
        while self.approvals.len() > 200 {
            let Some(oldest) = self.approvals.keys().next().copied() else { break };
            self.approvals.remove(&oldest);
        }
        Ok(format!("request {}", self.last_approval_id))
    }

    /// The second person's approval: another identity, before the request lapses.
    pub(super) fn approve(&mut self, p: &Proposal, id: u64) -> Result<String, Rejection> {
        if !APPROVER_ROLES.contains(&p.actor.role) {
            return Err(Rejection::NotAllowed(format!("role `{}` may not approve a failover", p.actor.role)));
        }
        let a = self.approvals.get_mut(&id).ok_or_else(|| Rejection::NotFound(format!("no request {id}")))?;
        if a.state != ApprovalState::Pending {
            return Err(Rejection::Conflict(format!("request {id} is {}, not pending", a.state)));
        }
        if p.at_ms >= a.expires_ms {
            a.state = ApprovalState::Expired;
            return Err(Rejection::Conflict(format!("request {id} expired; request again")));
        }
        if a.requested_by == p.actor.name {
            return Err(Rejection::NotAllowed(format!(
                "`{}` requested {id}: a second person must approve it",
                p.actor.name
            )));
        }
        a.approved_by = Some(p.actor.name.clone());
        if a.action == ApprovalAction::Pause {
            // Takes effect now, in this entry: nothing is left for a leader to carry out.
            let cluster = a.cluster.clone();
            let done = match self.clusters.get_mut(&cluster) {
                Some(c) if c.paused => format!("completed: cluster {cluster} was already paused"),
                Some(c) => {
                    c.paused = true;
                    format!("completed: cluster {cluster} paused, automatic failover off")
                }
                None => format!("refused: no cluster named `{cluster}`"),
            };
            if let Some(a) = self.approvals.get_mut(&id) {
                a.state = ApprovalState::Ended(done.clone());
            }
            return Ok(format!("request {id} approved: {done}"));
        }
        a.state = ApprovalState::Approved;
        Ok(format!("request {id} approved"))
    }

    /// Cancelling (anyone allowed to approve), or the leader recording how far it got.
    pub(super) fn set_approval_state(&mut self, id: u64, state: &ApprovalState) -> Result<String, Rejection> {
        let a = self.approvals.get_mut(&id).ok_or_else(|| Rejection::NotFound(format!("no request {id}")))?;
        let allowed = match state {
            ApprovalState::Ended(how) if how.starts_with("cancelled") => {
                matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
            }
            // Claimed once: a new leader does not run it again (the workflow it started is
            // recovered like any other).
            ApprovalState::Started => a.state == ApprovalState::Approved,
            ApprovalState::Ended(_) => a.state.under_way(),
            ApprovalState::Pending | ApprovalState::Approved | ApprovalState::Expired => false,
        };
        if !allowed {
            return Err(Rejection::Conflict(format!("request {id} is {}; it cannot become {state}", a.state)));
        }
        a.state = state.clone();
        Ok(format!("request {id} {state}"))
    }
}

/// Pending or under way (not lapsed, not ended).
pub fn is_open(a: &Approval, now_ms: u64) -> bool {
    a.state.is_open(a.expires_ms, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Actor, Command, DbCluster, Response};

    fn as_(name: &str, role: Role, at_ms: u64, command: Command) -> Proposal {
        Proposal { at_ms, actor: Actor { name: name.into(), role, origin: "test".into() }, command }
    }

    fn state() -> State {
        let mut c = DbCluster::for_test(&["dc", "ndc", "dr"], "");
        (c.epoch, c.primary) = (1, Some("dc".into()));
        c.synchronous.insert("ndc".into());
        let mut s = State::default();
        s.clusters.insert("customs".into(), c);
        s
    }

    fn request(to: &str, accept: bool) -> Command {
        Command::RequestFailover {
            cluster: "customs".into(),
            to: to.into(),
            reason: "test".into(),
            accept_data_loss: accept,
            attested_dead: vec![],
            ttl_ms: 1000,
        }
    }

    fn apply(s: &mut State, p: Proposal) -> Response {
        s.apply(1, &p, &mut Vec::new())
    }

    #[test]
    fn a_request_needs_a_second_person_before_it_lapses() {
        let mut s = state();
        let refused = |r: Response, what: &str| matches!(r, Response::Rejected(m) if m.to_string().contains(what));
        assert!(refused(apply(&mut s, as_("sam", Role::Soc, 1, request("ndc", false))), "may not request"));
        assert!(refused(apply(&mut s, as_("alice", Role::Admin, 1, request("dr", false))), "not a synchronous"));
        assert!(refused(apply(&mut s, as_("alice", Role::Admin, 1, request("dc", false))), "not a standby"));
        assert_eq!(
            apply(&mut s, as_("alice", Role::Admin, 10, request("ndc", false))),
            Response::Ok("request 1".into())
        );
        assert!(refused(apply(&mut s, as_("carol", Role::Admin, 11, request("dr", true))), "still pending"));
        let approve = |who: &str, role, at| as_(who, role, at, Command::Approve { id: 1 });
        assert!(refused(apply(&mut s, approve("alice", Role::Admin, 20)), "second person"));
        assert!(refused(apply(&mut s, approve("sam", Role::Soc, 20)), "may not approve"));
        assert!(matches!(apply(&mut s, approve("bob", Role::Noc, 30)), Response::Ok(_)));
        assert_eq!(s.approvals[&1].approved_by.as_deref(), Some("bob"));
        // Claimed once; a second claim (a new leader) is refused.
        let claim = || {
            as_("controller-1", Role::System, 40, Command::SetApprovalState { id: 1, state: ApprovalState::Started })
        };
        assert!(matches!(apply(&mut s, claim()), Response::Ok(_)));
        assert!(refused(apply(&mut s, claim()), "cannot become started"));

        let done = as_(
            "controller-1",
            Role::System,
            45,
            Command::SetApprovalState { id: 1, state: ApprovalState::Ended("completed".into()) },
        );
        assert!(matches!(apply(&mut s, done), Response::Ok(_)));
        // Another one lapses unapproved.
        assert_eq!(apply(&mut s, as_("alice", Role::Admin, 50, request("dr", true))), Response::Ok("request 2".into()));
        let late = as_("bob", Role::Noc, 50 + 1000, Command::Approve { id: 2 });
        assert!(refused(apply(&mut s, late), "expired"));
        assert_eq!(s.approvals[&2].state, ApprovalState::Expired);
    }

    #[test]
    fn a_pause_takes_effect_only_with_a_second_persons_approval() {
        let mut s = state();
        let refused = |r: Response, what: &str| matches!(r, Response::Rejected(m) if m.to_string().contains(what));
        let direct = Command::SetPaused { cluster: "customs".into(), paused: true, reason: "t".into() };
        assert!(refused(apply(&mut s, as_("alice", Role::Admin, 1, direct)), "second approver"));
        let pause = || Command::RequestPause { cluster: "customs".into(), reason: "patching".into(), ttl_ms: 1000 };
        assert!(refused(apply(&mut s, as_("sam", Role::Soc, 1, pause())), "may not request"));
        assert_eq!(apply(&mut s, as_("alice", Role::Admin, 10, pause())), Response::Ok("request 1".into()));
        assert!(!s.clusters["customs"].paused, "a request alone pauses nothing");
        assert!(refused(apply(&mut s, as_("alice", Role::Admin, 20, Command::Approve { id: 1 })), "second person"));
        assert!(matches!(apply(&mut s, as_("bob", Role::Noc, 30, Command::Approve { id: 1 })), Response::Ok(_)));
        assert!(s.clusters["customs"].paused);
        assert!(s.approvals[&1].state.as_str().starts_with("completed"), "{}", s.approvals[&1].state);
        // Resuming (automatic failover back on) needs no second person; pausing again does.
        let resume = Command::SetPaused { cluster: "customs".into(), paused: false, reason: "done".into() };
        assert!(matches!(apply(&mut s, as_("alice", Role::Admin, 40, resume)), Response::Ok(_)));
        assert!(!s.clusters["customs"].paused);
        assert_eq!(apply(&mut s, as_("alice", Role::Admin, 50, pause())), Response::Ok("request 2".into()));
    }
}
