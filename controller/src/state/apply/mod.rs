//! `State::apply`: pure and deterministic. It validates every command against the state it is
//! applied to, because two proposers can race: a refused command changes nothing and says why.
//! One file per group of tables; this one dispatches, and applies the approvals (`approvals.rs`).

mod agents;
mod assets;
mod clusters;
mod controllers;
mod drill_runs;
mod drills;
mod links;
mod services;
mod workflows;

use super::{AuditEntry, Command, Proposal, Rejection, Response, State};

impl State {
    /// Applies one proposal carried by the log entry at `log_index`, appending the audit entries it
    /// produces to `audit`.
    pub fn apply(&mut self, log_index: u64, p: &Proposal, audit: &mut Vec<AuditEntry>) -> Response {
        if let Command::Batch(items) = &p.command {
            return Response::Batch(items.iter().map(|item| self.apply(log_index, item, audit)).collect());
        }
        if let Command::SiemSent { seq } = p.command {
            // Not audited: see the command.
            self.siem_sent_seq = self.siem_sent_seq.max(seq.min(self.audit_seq));
            return Response::Ok(format!("sent to the SIEM up to {}", self.siem_sent_seq));
        }
        let (what, result) = self.apply_one(log_index, p);
        if result.is_ok() {
            self.note_infra_event(p);
        }
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
    fn apply_one(&mut self, log_index: u64, p: &Proposal) -> (String, Result<String, Rejection>) {
        use Command::*;
        match &p.command {
            Seed(_)
            | PutSite(_)
            | PutController(_)
            | SetControllerVoter { .. }
            | DeleteController { .. }
            | QuorumCheck { .. }
            | ConfirmQuorum { .. } => self.apply_controllers(p),
            RegisterAgent { .. } | SetAgentUp { .. } | RecordRefusal { .. } | PutUser { .. } | DeleteUser { .. } => {
                self.apply_agents_and_users(p)
            }
            AdoptCluster { .. }
            | SetMemberEndpoint { .. }
            | SetPaused { .. }
            | SwitchPrimary { .. }
            | SetSynchronous { .. }
            | SetVouch { .. }
            | DropSynchronous { .. }
            | SetFailoverBlocked { .. } => self.apply_clusters(log_index, p),
            StartWorkflow { .. }
            | RecordStep { .. }
            | FinishWorkflow { .. }
            | RecordWriteOutage { .. }
            | RecordCanaryMeasure { .. } => self.apply_workflows(p),
            RequestFailover { cluster, to, reason, accept_data_loss, attested_dead, ttl_ms } => {
                let what = format!("request failover of {cluster} to {to}");
                let r = self.request_failover(p, (cluster, to, reason), *accept_data_loss, attested_dead, *ttl_ms);
                (what, r)
            }
            RequestPause { cluster, reason, ttl_ms } => {
                (format!("request pause of {cluster}"), self.request_pause(p, cluster, reason, *ttl_ms))
            }
            Approve { id } => (format!("approve request {id}"), self.approve(p, *id)),
            SetApprovalState { id, state } => (format!("request {id}: {state}"), self.set_approval_state(*id, state)),
            RecordBreakGlass(order) => {
                (format!("record break-glass order {}", order.id), self.record_break_glass(p, order))
            }
            IngestAlerts { .. }
            | IngestJournaled { .. }
            | TriageAlerts { .. }
            | PutSilence { .. }
            | ExpireSilence { .. }
            | PutIngestSource { .. }
            | DeleteIngestSource { .. }
            | Notify { .. }
            | ArchiveAlerts { .. }
            | RecordDelivery { .. } => self.apply_alerts(p),
            PutLink(_) | DeleteLink { .. } | SetLinkState { .. } => self.apply_links(p),
            PutService(_) | DeleteService { .. } | SetServiceHealth { .. } | RecordRecoveryStep { .. } => {
                self.apply_services(p)
            }
            PutDrillPlan(_)
            | DeleteDrillPlan { .. }
            | StartDrill { .. }
            | BeginDrillStep { .. }
            | EndDrillStep { .. }
            | RecordDrillLeg { .. }
            | RecordDrillChecks { .. }
            | AbortDrill { .. }
            | FinishDrill { .. }
            | RecordDrillCopy { .. } => self.apply_drills(p),
            PutAsset { .. }
            | ImportAssets { .. }
            | DeleteAsset { .. }
            | DiscoverHost { .. }
            | SeatLicence { .. }
            | AssetIssue { .. }
            | WarnAsset { .. } => self.apply_assets(p),
            // Handled in `apply` before reaching here.
            SiemSent { .. } => ("siem".into(), Err(Rejection::Invalid("handled before".into()))),
            Batch(_) => ("batch".into(), Err(Rejection::Invalid("nested batch".into()))),
        }
    }
}

pub(super) fn updown(up: bool) -> &'static str {
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
        assert!(matches!(&resp_a[3], Response::Rejected(m) if m.to_string().contains("nobody")));
        assert!(audit_a[3].action.contains("rejected"));
    }

    #[test]
    fn rejected_commands_change_nothing_but_the_audit() {
        let mut s = State::default();
        let mut audit = Vec::new();
        s.apply(
            1,
            &prop(
                1,
                Command::Seed(crate::state::Seed {
                    sites: vec![],
                    controllers: vec![],
                    clusters: vec![],
                    links: vec![],
                    services: vec![],
                    drills: vec![],
                }),
            ),
            &mut audit,
        );
        let before = s.clone();
        let r = s.apply(2, &prop(2, Command::PutUser { name: "x".into(), role: Role::Peer }), &mut audit);
        assert!(matches!(r, Response::Rejected(_)));
        let r2 = s.apply(
            3,
            &prop(
                3,
                Command::Seed(crate::state::Seed {
                    sites: vec![],
                    controllers: vec![],
                    clusters: vec![],
                    links: vec![],
                    services: vec![],
                    drills: vec![],
                }),
            ),
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
