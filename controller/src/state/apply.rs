//! `State::apply`: pure and deterministic. It validates every command against the state it is
//! applied to, because two proposers can race: a refused command changes nothing and says why.

use super::{AgentRecord, AuditEntry, Command, DbCluster, Proposal, Response, Role, State, Workflow, WorkflowStep};

impl State {
    /// Applies one proposal carried by the log entry at `log_index`, appending the audit entries it
    /// produces to `audit`.
    pub fn apply(&mut self, log_index: u64, p: &Proposal, audit: &mut Vec<AuditEntry>) -> Response {
        if let Command::Batch(items) = &p.command {
            return Response::Batch(items.iter().map(|item| self.apply(log_index, item, audit)).collect());
        }
        let (what, result) = self.apply_one(log_index, p);
        let response = match result {
            Ok(msg) => Response::Ok(msg),
            Err(msg) => Response::Rejected(msg),
        };
        let outcome = match &response {
            Response::Rejected(why) => format!("rejected: {why}"),
            _ => "ok".to_string(),
        };
        self.audit_seq += 1;
        audit.push(AuditEntry {
            seq: self.audit_seq,
            log_index,
            at_ms: p.at_ms,
            actor: p.actor.name.clone(),
            role: p.actor.role,
            origin: p.actor.origin.clone(),
            action: format!("{what}: {outcome}"),
        });
        response
    }

    /// Returns a description of the command and its result.
    fn apply_one(&mut self, log_index: u64, p: &Proposal) -> (String, Result<String, String>) {
        match &p.command {
            Command::Seed(seed) => {
                let what = format!(
                    "seed {} sites, {} controllers, {} clusters",
                    seed.sites.len(),
                    seed.controllers.len(),
                    seed.clusters.len()
                );
                if self.seeded {
                    return (what, Err("the state is already seeded".into()));
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
                (what, Ok("seeded".into()))
            }
            Command::RegisterAgent { name, site, host, facts } => {
                let what = format!("register agent {name} site={site} host={host}");
                if !self.sites.is_empty() && !self.sites.contains_key(site) {
                    return (what, Err(format!("unknown site `{site}`")));
                }
                let rec = self.agents.entry(name.clone()).or_insert_with(|| AgentRecord {
                    name: name.clone(),
                    site: site.clone(),
                    host: host.clone(),
                    facts: facts.clone(),
                    up: false,
                    since_ms: p.at_ms,
                    registered_ms: p.at_ms,
                });
                rec.site = site.clone();
                rec.host = host.clone();
                rec.facts = facts.clone();
                if !rec.up {
                    rec.up = true;
                    rec.since_ms = p.at_ms;
                }
                (what, Ok(format!("agent {name} registered")))
            }
            Command::SetAgentUp { name, up, reason } => {
                let what = format!("mark agent {name} {} ({reason})", if *up { "up" } else { "down" });
                match self.agents.get_mut(name) {
                    None => (what, Err(format!("no agent named `{name}`"))),
                    Some(rec) if rec.up == *up => (what, Err(format!("agent `{name}` is already {}", updown(*up)))),
                    Some(rec) => {
                        rec.up = *up;
                        rec.since_ms = p.at_ms;
                        (what, Ok(format!("agent {name} {}", updown(*up))))
                    }
                }
            }
            Command::RecordRefusal { what, why } => (format!("refused call: {what}"), Err(why.clone())),
            Command::PutUser { name, role } => {
                let what = format!("put user {name} role={role}");
                if !role.is_user_role() {
                    return (what, Err(format!("`{role}` cannot be given to a user")));
                }
                self.users.insert(name.clone(), *role);
                (what, Ok(format!("user {name} is {role}")))
            }
            Command::DeleteUser { name } => {
                let what = format!("delete user {name}");
                match self.users.remove(name) {
                    Some(_) => (what, Ok(format!("user {name} deleted"))),
                    None => (what, Err(format!("no user named `{name}`"))),
                }
            }
            Command::PutSite(site) => {
                let what = format!("put site {} city={}", site.name, site.city);
                match self.sites.get(&site.name) {
                    Some(old) if old.city != site.city => {
                        (what, Err(format!("site `{}` is recorded in city `{}`", site.name, old.city)))
                    }
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
                    return (what, Err(format!("unknown site `{}`", rec.site)));
                }
                if let Some(other) = self.controllers.values().find(|c| c.id != rec.id && c.grpc_addr == rec.grpc_addr)
                {
                    return (what, Err(format!("controller {} already uses {}", other.id, rec.grpc_addr)));
                }
                self.controllers.insert(rec.id, rec.clone());
                // Added back on purpose (with a wiped store): no longer cut off.
                self.cut_off.remove(&rec.id);
                (what, Ok(format!("controller {} recorded", rec.id)))
            }
            Command::SetControllerVoter { id, voter } => {
                let what = format!("set controller {id} voter={voter}");
                match self.controllers.get_mut(id) {
                    None => (what, Err(format!("no controller with id {id}"))),
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
                    None => (what, Err(format!("no controller with id {id}"))),
                }
            }
            Command::AdoptCluster { cluster, primary, synchronous } => {
                let what =
                    format!("adopt cluster {cluster}: primary {primary}, synchronous [{}]", synchronous.join(", "));
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if c.epoch != 0 {
                    return (what, Err(format!("cluster `{cluster}` is already at epoch {}", c.epoch)));
                }
                if let Some(m) = std::iter::once(primary).chain(synchronous).find(|m| !c.members.contains_key(*m)) {
                    return (what, Err(format!("`{m}` is not a member of `{cluster}`")));
                }
                if synchronous.contains(primary) {
                    return (what, Err(format!("the primary `{primary}` cannot be its own synchronous standby")));
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
                    None => (what, Err(format!("no member `{member}` in `{cluster}`"))),
                }
            }
            Command::SetPaused { cluster, paused, reason } => {
                let what = format!("{} cluster {cluster} ({reason})", if *paused { "pause" } else { "resume" });
                if *paused && p.actor.role != Role::System {
                    return (what, Err("pausing turns automatic failover off: it needs a second approver".into()));
                }
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if c.paused == *paused {
                    return (
                        what,
                        Err(format!("cluster `{cluster}` is already {}", if *paused { "paused" } else { "running" })),
                    );
                }
                c.paused = *paused;
                (what, Ok(format!("cluster {cluster} {}", if *paused { "paused" } else { "resumed" })))
            }
            Command::StartWorkflow { cluster, kind, from, to } => {
                let what = format!("start {kind} of {cluster} from {from} to {to}");
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if c.epoch == 0 {
                    return (what, Err(format!("cluster `{cluster}` is not adopted yet")));
                }
                if c.paused {
                    return (what, Err(format!("cluster `{cluster}` is paused (maintenance)")));
                }
                if let Some(w) = c.workflow {
                    return (what, Err(format!("workflow {w} is still under way on `{cluster}`")));
                }
                if c.primary.as_deref() != Some(from.as_str()) {
                    return (what, Err(format!("`{from}` is not the primary of `{cluster}`")));
                }
                // A restart (of the primary its own fence stopped) is the one workflow on itself.
                if !c.members.contains_key(to) || (to == from) != (*kind == super::WorkflowKind::Restart) {
                    return (what, Err(format!("`{to}` is not another member of `{cluster}`")));
                }
                self.last_workflow_id += 1;
                let id = self.last_workflow_id;
                c.workflow = Some(id);
                self.workflows.insert(
                    id,
                    Workflow {
                        id,
                        kind: *kind,
                        cluster: cluster.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        requested_by: p.actor.name.clone(),
                        started_ms: p.at_ms,
                        steps: Vec::new(),
                        finished: None,
                    },
                );
                while self.workflows.len() > 1000 {
                    let Some(oldest) = self.workflows.keys().next().copied() else {
                        break;
                    };
                    if self.workflows[&oldest].finished.is_none() {
                        break;
                    }
                    self.workflows.remove(&oldest);
                }
                (what, Ok(format!("workflow {id}")))
            }
            Command::RecordStep { workflow, name, note } => {
                let what = format!("workflow {workflow}: {name} {note}");
                match self.workflows.get_mut(workflow) {
                    Some(w) if w.finished.is_none() => {
                        w.steps.push(WorkflowStep { name: name.clone(), at_ms: p.at_ms, note: note.clone() });
                        (what, Ok("recorded".into()))
                    }
                    Some(_) => (what, Err(format!("workflow {workflow} has ended"))),
                    None => (what, Err(format!("no workflow {workflow}"))),
                }
            }
            Command::SwitchPrimary { cluster, workflow, primary } => {
                let what = format!("switch primary of {cluster} to {primary} (workflow {workflow})");
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if c.workflow != Some(*workflow) {
                    return (what, Err(format!("workflow {workflow} is not the one under way on `{cluster}`")));
                }
                if !c.members.contains_key(primary) {
                    return (what, Err(format!("`{primary}` is not a member of `{cluster}`")));
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
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if let Some(m) = members.iter().find(|m| !c.members.contains_key(*m) || c.primary.as_ref() == Some(*m))
                {
                    return (what, Err(format!("`{m}` is not a standby of `{cluster}`")));
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
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if !c.synchronous.is_empty() {
                    return (what, Err(format!("`{cluster}` has a synchronous set: it is the vouch set")));
                }
                if let Some(m) = members.iter().find(|m| !c.members.contains_key(*m) || c.primary.as_ref() == Some(*m))
                {
                    return (what, Err(format!("`{m}` is not a standby of `{cluster}`")));
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
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                if c.strict {
                    return (what, Err(format!("`{cluster}` is strict: commits wait for its synchronous standby")));
                }
                if !c.synchronous.remove(member) {
                    return (what, Err(format!("`{member}` is not a synchronous standby of `{cluster}`")));
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
                    return (what, Err(format!("no cluster named `{cluster}`")));
                };
                c.failover_blocked = reason.clone();
                (what.clone(), Ok(what))
            }
            Command::FinishWorkflow { workflow, outcome } => {
                let what = format!("finish workflow {workflow}: {outcome}");
                let Some(w) = self.workflows.get_mut(workflow) else {
                    return (what, Err(format!("no workflow {workflow}")));
                };
                if w.finished.is_some() {
                    return (what, Err(format!("workflow {workflow} has already ended")));
                }
                w.finished = Some((p.at_ms, outcome.clone()));
                if let Some(c) = self.clusters.get_mut(&w.cluster) {
                    if c.workflow == Some(*workflow) {
                        c.workflow = None;
                    }
                }
                (what, Ok("finished".into()))
            }
            Command::RequestFailover { cluster, to, reason, accept_data_loss, attested_dead, ttl_ms } => {
                let what = format!("request failover of {cluster} to {to}");
                let r = self.request_failover(p, (cluster, to, reason), *accept_data_loss, attested_dead, *ttl_ms);
                (what, r)
            }
            Command::RequestPause { cluster, reason, ttl_ms } => {
                (format!("request pause of {cluster}"), self.request_pause(p, cluster, reason, *ttl_ms))
            }
            Command::Approve { id } => (format!("approve request {id}"), self.approve(p, *id)),
            Command::SetApprovalState { id, state } => {
                (format!("request {id}: {state}"), self.set_approval_state(*id, state))
            }
            Command::RecordBreakGlass(order) => {
                (format!("record break-glass order {}", order.id), self.record_break_glass(p, order))
            }
            Command::QuorumCheck { term } => (
                format!("quorum check by the leader at term {term}"),
                Ok("every voter is to acknowledge this entry".into()),
            ),
            Command::ConfirmQuorum { term, reason } => {
                let what = format!("confirm the quorum of the leader at term {term}: {reason}");
                if reason.trim().is_empty() {
                    return (what, Err("a reason is required".into()));
                }
                self.quorum_confirmed_term = self.quorum_confirmed_term.max(*term);
                (what, Ok(format!("the leader at term {term} may grant leases and change roles")))
            }
            // Handled in `apply` before reaching here.
            Command::Batch(_) => ("batch".into(), Err("nested batch".into())),
        }
    }
}

fn updown(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Actor, HostFacts, Role};

    fn prop(at_ms: u64, command: Command) -> Proposal {
        Proposal { at_ms, actor: Actor { name: "alice".into(), role: Role::Admin, origin: "test".into() }, command }
    }

    #[test]
    fn apply_is_deterministic_and_audited() {
        let cmds = [
            prop(1, Command::PutUser { name: "bob".into(), role: Role::Noc }),
            prop(
                2,
                Command::RegisterAgent {
                    name: "a1".into(),
                    site: "dc".into(),
                    host: "h".into(),
                    facts: HostFacts::default(),
                },
            ),
            prop(3, Command::SetAgentUp { name: "a1".into(), up: false, reason: "silent".into() }),
            prop(4, Command::DeleteUser { name: "nobody".into() }),
        ];
        let run = || {
            let mut s = State::default();
            let mut audit = Vec::new();
            let responses: Vec<_> =
                cmds.iter().enumerate().map(|(i, c)| s.apply(i as u64 + 1, c, &mut audit)).collect();
            (s, audit, responses)
        };
        let (a, audit_a, resp_a) = run();
        let (b, audit_b, resp_b) = run();
        assert_eq!(a, b);
        assert_eq!(audit_a, audit_b);
        assert_eq!(resp_a, resp_b);
        assert_eq!(audit_a.len(), 4);
        assert_eq!(a.users.get("bob"), Some(&Role::Noc));
        assert!(!a.agents["a1"].up);
        assert_eq!(a.agents["a1"].since_ms, 3);
        assert!(matches!(&resp_a[3], Response::Rejected(m) if m.contains("nobody")));
        assert!(audit_a[3].action.contains("rejected"));
    }

    #[test]
    fn rejected_commands_change_nothing_but_the_audit() {
        let mut s = State::default();
        let mut audit = Vec::new();
        s.apply(
            1,
            &prop(1, Command::Seed(crate::state::Seed { sites: vec![], controllers: vec![], clusters: vec![] })),
            &mut audit,
        );
        let before = s.clone();
        let r = s.apply(2, &prop(2, Command::PutUser { name: "x".into(), role: Role::Peer }), &mut audit);
        assert!(matches!(r, Response::Rejected(_)));
        let r2 = s.apply(
            3,
            &prop(3, Command::Seed(crate::state::Seed { sites: vec![], controllers: vec![], clusters: vec![] })),
            &mut audit,
        );
        assert!(matches!(r2, Response::Rejected(_)));
        assert_eq!(s.users, before.users);
        assert_eq!(s.audit_seq, before.audit_seq + 2);
    }

    #[test]
    fn batch_applies_each_item_in_order() {
        let mut s = State::default();
        let mut audit = Vec::new();
        let batch = prop(
            5,
            Command::Batch(vec![
                prop(5, Command::PutUser { name: "u".into(), role: Role::Soc }),
                prop(5, Command::PutUser { name: "u".into(), role: Role::Auditor }),
            ]),
        );
        let r = s.apply(7, &batch, &mut audit);
        assert!(matches!(r, Response::Batch(ref v) if v.len() == 2));
        assert_eq!(s.users["u"], Role::Auditor);
        assert_eq!(audit.iter().map(|a| a.log_index).collect::<Vec<_>>(), vec![7, 7]);
    }
}
