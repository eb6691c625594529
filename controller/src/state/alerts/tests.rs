//! Unit tests of the alerts table's apply: deduplication, triage, silences.

use super::*;
use crate::state::{Actor, Command, Proposal, Rejection, Response, Role, State};

fn event(fp: &str, at_ms: u64, resolved: bool) -> IncomingAlert {
    IncomingAlert {
        kind: SourceKind::Alertmanager,
        fingerprint: fp.into(),
        severity: Severity::Critical,
        title: format!("alert {fp}"),
        description: String::new(),
        labels: [("alertname".to_string(), format!("A{fp}"))].into(),
        site: "dc".into(),
        host: "db1".into(),
        address: String::new(),
        at_ms,
        resolved,
        occurrences: 1,
    }
}

fn apply(s: &mut State, at_ms: u64, role: Role, command: Command) -> Response {
    let p = Proposal { at_ms, actor: Actor { name: "ana".into(), role, origin: "test".into() }, command };
    s.apply(at_ms, &p, &mut Vec::new())
}

fn ingest(s: &mut State, at_ms: u64, events: Vec<IncomingAlert>) -> Response {
    apply(s, at_ms, Role::System, Command::IngestAlerts { source: "prometheus".into(), events })
}

fn triage(s: &mut State, role: Role, ids: Vec<u64>, action: TriageAction) -> Response {
    apply(s, 50, role, Command::TriageAlerts { ids, action })
}

#[test]
fn repeats_are_counted_on_one_alert_per_fingerprint() {
    let mut s = State::default();
    for round in 0..10u64 {
        let events = (0..10).map(|i| event(&format!("f{i}"), 100 + round, false)).collect();
        ingest(&mut s, 100 + round, events);
    }
    assert_eq!(s.alerts.alerts.len(), 10);
    for a in s.alerts.alerts.values() {
        assert_eq!((a.count, a.first_seen_ms, a.last_seen_ms), (10, 100, 109), "{a:?}");
    }
    // Another source with the same fingerprint is another alert.
    let r = apply(
        &mut s,
        200,
        Role::System,
        Command::IngestAlerts { source: "wazuh".into(), events: vec![event("f0", 200, false)] },
    );
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("1 new")), "{r:?}");
    assert_eq!(s.alerts.alerts.len(), 11);
}

#[test]
fn a_resolved_report_resolves_and_a_new_firing_reopens() {
    let mut s = State::default();
    ingest(&mut s, 10, vec![event("a", 10, false)]);
    let r = ingest(&mut s, 20, vec![event("a", 20, true), event("never-seen", 20, true)]);
    assert!(matches!(r, Response::Ok(ref m) if m.contains("1 resolved, 1 ignored")), "{r:?}");
    assert_eq!(s.alerts.alerts[&1].status, AlertStatus::Resolved);
    assert_eq!(s.alerts.alerts[&1].closed_ms, Some(20));
    ingest(&mut s, 30, vec![event("a", 30, false)]);
    let a = &s.alerts.alerts[&1];
    assert_eq!((a.status, a.count, a.closed_ms), (AlertStatus::Open, 2, None));
    assert!(a.history.iter().any(|n| n.text.contains("reopened")));
    // A false positive stays closed however often it repeats.
    triage(&mut s, Role::Soc, vec![1], TriageAction::FalsePositive { reason: "scanner".into() });
    ingest(&mut s, 40, vec![event("a", 40, false)]);
    assert_eq!((s.alerts.alerts[&1].status, s.alerts.alerts[&1].count), (AlertStatus::FalsePositive, 3));
}

#[test]
fn triage_is_all_or_nothing_and_needs_the_role() {
    let mut s = State::default();
    ingest(&mut s, 10, vec![event("a", 10, false), event("b", 10, false)]);
    let before = s.alerts.clone();
    let r = triage(&mut s, Role::Soc, vec![1, 2, 99], TriageAction::Acknowledge);
    assert!(matches!(r, Response::Rejected(Rejection::NotFound(ref m)) if m.contains("99")), "{r:?}");
    let r = triage(&mut s, Role::Auditor, vec![1], TriageAction::Acknowledge);
    assert!(matches!(r, Response::Rejected(Rejection::NotAllowed(_))), "{r:?}");
    let r = triage(&mut s, Role::Soc, vec![1], TriageAction::Resolve { reason: " ".into() });
    assert!(matches!(r, Response::Rejected(Rejection::Invalid(_))), "{r:?}");
    assert_eq!(s.alerts, before, "refused triage changed nothing");

    let r = triage(&mut s, Role::Soc, vec![1, 2], TriageAction::Acknowledge);
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("2 of 2")), "{r:?}");
    let r = triage(&mut s, Role::Soc, vec![1, 2], TriageAction::Acknowledge);
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("0 of 2")), "{r:?}");
    assert_eq!(s.alerts.alerts[&1].acknowledged_ms, Some(50));
    triage(&mut s, Role::Soc, vec![2], TriageAction::Resolve { reason: "patched".into() });
    let r = triage(&mut s, Role::Soc, vec![1, 2], TriageAction::Assign { to: "bo".into() });
    assert!(matches!(r, Response::Rejected(Rejection::Conflict(ref m)) if m.contains("reopen")), "{r:?}");
    assert_eq!(s.alerts.alerts[&1].assignee, None);
    triage(&mut s, Role::Soc, vec![2], TriageAction::Reopen { reason: "came back".into() });
    triage(&mut s, Role::Soc, vec![1, 2], TriageAction::Assign { to: "bo".into() });
    assert!(s.alerts.alerts.values().all(|a| a.assignee.as_deref() == Some("bo")));
    assert_eq!(s.alerts.alerts[&2].status, AlertStatus::Acknowledged);
    let history: Vec<&str> = s.alerts.alerts[&2].history.iter().map(|n| n.text.as_str()).collect();
    assert_eq!(
        history,
        ["received (critical)", "acknowledge", "resolve: patched", "reopen: came back", "assign to bo"]
    );
}

#[test]
fn a_silence_mutes_what_opens_while_it_is_active() {
    let mut s = State::default();
    let site_dc = Matcher::parse("site=").unwrap();
    let host = Matcher::parse("host=db1").unwrap();
    let r = apply(
        &mut s,
        100,
        Role::Soc,
        Command::PutSilence {
            matchers: vec![host, site_dc],
            starts_ms: 100,
            ends_ms: 200,
            reason: "maintenance".into(),
        },
    );
    assert!(matches!(r, Response::Ok(_)), "{r:?}");
    ingest(&mut s, 150, vec![event("a", 150, false)]);
    assert_eq!(s.alerts.alerts[&1].silenced_by, Some(1));
    ingest(&mut s, 250, vec![event("b", 250, false)]);
    assert_eq!(s.alerts.alerts[&2].silenced_by, None, "ended at 200");
    let r = apply(&mut s, 260, Role::Noc, Command::ExpireSilence { id: 1 });
    assert!(matches!(r, Response::Rejected(Rejection::NotAllowed(_))), "{r:?}");
    let r = apply(
        &mut s,
        300,
        Role::Soc,
        Command::PutSilence { matchers: vec![], starts_ms: 300, ends_ms: 400, reason: "x".into() },
    );
    assert!(matches!(r, Response::Rejected(Rejection::Invalid(_))), "{r:?}");
}

#[test]
fn a_rotated_token_keeps_the_old_one_for_its_grace_period_only() {
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let put = |sha: &str, grace_ms| Command::PutIngestSource {
        name: "prometheus".into(),
        kind: SourceKind::Alertmanager,
        token_sha256: sha.into(),
        grace_ms,
    };
    let mut s = State::default();
    assert!(matches!(apply(&mut s, 10, Role::Soc, put(&a, 0)), Response::Rejected(Rejection::NotAllowed(_))));
    assert!(matches!(apply(&mut s, 10, Role::Admin, put("A1", 0)), Response::Rejected(Rejection::Invalid(_))));
    assert!(matches!(apply(&mut s, 10, Role::Admin, put(&a, 0)), Response::Ok(_)));
    assert_eq!(s.source_for_token(&a, 11).map(|s| s.name.as_str()), Some("prometheus"));
    apply(&mut s, 100, Role::Admin, put(&b, 50));
    assert!(s.source_for_token(&a, 149).is_some() && s.source_for_token(&a, 150).is_none());
    assert!(s.source_for_token(&b, 1_000_000).is_some());
    let wazuh = Command::PutIngestSource {
        name: "prometheus".into(),
        kind: SourceKind::Wazuh,
        token_sha256: a.clone(),
        grace_ms: 0,
    };
    assert!(matches!(apply(&mut s, 200, Role::Admin, wazuh), Response::Rejected(Rejection::Conflict(_))));
    let syslog = Command::PutIngestSource { name: "fw".into(), kind: SourceKind::Syslog, token_sha256: a, grace_ms: 0 };
    assert!(matches!(apply(&mut s, 200, Role::Admin, syslog), Response::Rejected(Rejection::Invalid(_))));
    apply(&mut s, 300, Role::Admin, Command::DeleteIngestSource { name: "prometheus".into() });
    assert!(s.source_for_token(&b, 301).is_none());
}

/// A state with sites dc and ndc, their agents, and cluster `customs` adopted with dc primary.
fn deployment() -> State {
    use crate::state::{AgentRecord, DbCluster, HostFacts, Site};
    let mut s = State::default();
    for site in ["dc", "ndc"] {
        s.sites.insert(site.into(), Site { name: site.into(), description: String::new(), city: site.into() });
        let agent = AgentRecord {
            name: format!("agent-{site}"),
            site: site.into(),
            host: format!("db-{site}"),
            facts: HostFacts::default(),
            up: true,
            since_ms: 0,
            registered_ms: 0,
        };
        s.agents.insert(agent.name.clone(), agent);
    }
    s.clusters.insert("customs".into(), DbCluster::for_test(&["dc", "ndc"], "agent-"));
    let adopt =
        Command::AdoptCluster { cluster: "customs".into(), primary: "dc".into(), synchronous: vec!["ndc".into()] };
    assert!(matches!(apply(&mut s, 1, Role::System, adopt), Response::Ok(_)));
    s
}

fn at(host: &str, fp: &str, at_ms: u64) -> IncomingAlert {
    IncomingAlert { host: host.into(), site: String::new(), ..event(fp, at_ms, false) }
}

#[test]
fn alerts_at_the_sites_of_a_failover_are_grouped_with_it() {
    let mut s = deployment();
    let minute = 60_000;
    // Before the failover (within the window), during it, elsewhere, and long after.
    ingest(&mut s, 100 * minute, vec![at("db-dc", "before", 100 * minute)]);
    let start = Command::StartWorkflow {
        cluster: "customs".into(),
        kind: crate::state::WorkflowKind::Failover,
        from: "dc".into(),
        to: "ndc".into(),
    };
    assert!(matches!(apply(&mut s, 102 * minute, Role::System, start), Response::Ok(_)));
    ingest(
        &mut s,
        103 * minute,
        vec![at("db-ndc", "during", 103 * minute), at("fw-elsewhere", "elsewhere", 103 * minute)],
    );
    let finish = Command::FinishWorkflow { workflow: 1, outcome: "completed".into() };
    apply(&mut s, 104 * minute, Role::System, finish);
    ingest(&mut s, 108 * minute, vec![at("db-dc", "just-after", 108 * minute)]);
    ingest(&mut s, 110 * minute, vec![at("db-dc", "long-after", 110 * minute)]);

    let incident_of = |fp: &str| s.alerts.alerts.values().find(|a| a.fingerprint == fp).and_then(|a| a.incident);
    assert_eq!(incident_of("before"), Some(1), "an alert just before the event joins it when it starts");
    assert_eq!(incident_of("during"), Some(1));
    assert_eq!(incident_of("just-after"), Some(1), "within the window after its end");
    assert_eq!(incident_of("elsewhere"), None, "not at its sites");
    assert_eq!(incident_of("long-after"), None, "past the window");
    let incident = &s.incidents.incidents[&1];
    assert!(incident.title.starts_with("failover of customs dc→ndc at "), "{}", incident.title);
    assert_eq!(incident.alerts.len(), 3);
    let a = s.alerts.alerts.values().find(|a| a.fingerprint == "during").unwrap();
    assert!(a.history.iter().any(|n| n.text.contains("grouped into incident 1: failover of customs")));
}

#[test]
fn an_agent_down_is_an_event_until_it_is_up_again() {
    let mut s = deployment();
    let down = Command::SetAgentUp { name: "agent-ndc".into(), up: false, reason: "silent".into() };
    apply(&mut s, 1_000, Role::System, down);
    ingest(&mut s, 2_000, vec![at("db-ndc", "x", 2_000)]);
    assert!(s.alerts.alerts[&1].incident.is_some());
    let up = Command::SetAgentUp { name: "agent-ndc".into(), up: true, reason: "heard".into() };
    apply(&mut s, 3_000, Role::System, up);
    assert_eq!(s.incidents.events[&1].ended_ms, Some(3_000));
    assert_eq!(s.incidents.events[&1].kind, InfraKind::AgentDown);
}

#[test]
fn closed_alerts_leave_memory_by_age_and_beyond_the_cap() {
    let mut s = State::default();
    ingest(&mut s, 10, (0..5).map(|i| event(&format!("f{i}"), 10, false)).collect());
    for (id, at) in [(1u64, 100u64), (2, 200), (3, 300), (4, 400)] {
        let p = Proposal {
            at_ms: at,
            actor: Actor { name: "ana".into(), role: Role::Soc, origin: "t".into() },
            command: Command::TriageAlerts { ids: vec![id], action: TriageAction::Resolve { reason: "done".into() } },
        };
        s.apply(at, &p, &mut Vec::new());
    }
    // Closed before 250: 1 and 2; of the rest closed, keep at most one: 3 goes too.
    let r = apply(&mut s, 500, Role::System, Command::ArchiveAlerts { closed_before_ms: 250, keep_at_most: 1 });
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("3 closed")), "{r:?}");
    let outbox: Vec<u64> = s.alerts.outbox.iter().map(|a| a.id).collect();
    assert_eq!(outbox, vec![1, 2, 3]);
    assert_eq!(s.alerts.alerts.keys().copied().collect::<Vec<_>>(), vec![4, 5], "the open one stays");
    assert_eq!(s.alerts.archived, 3);
    // A repeat of an archived alert's fingerprint opens a new alert.
    ingest(&mut s, 600, vec![event("f0", 600, false)]);
    assert_eq!(s.alerts.alerts.values().filter(|a| a.fingerprint == "f0").map(|a| a.id).collect::<Vec<_>>(), vec![6]);
}

#[test]
fn an_agent_down_during_a_failover_of_its_site_is_the_same_incident() {
    let mut s = deployment();
    let start = Command::StartWorkflow {
        cluster: "customs".into(),
        kind: crate::state::WorkflowKind::Failover,
        from: "dc".into(),
        to: "ndc".into(),
    };
    apply(&mut s, 1_000, Role::System, start);
    ingest(&mut s, 1_500, vec![at("db-dc", "during-failover", 1_500)]);
    let down = Command::SetAgentUp { name: "agent-dc".into(), up: false, reason: "silent".into() };
    apply(&mut s, 3_000, Role::System, down);
    ingest(&mut s, 3_500, vec![at("db-dc", "after-agent-down", 3_500)]);
    let incidents: Vec<Option<u64>> = s.alerts.alerts.values().map(|a| a.incident).collect();
    assert_eq!(incidents, vec![Some(1), Some(1)], "one outage, one incident");
    assert_eq!(s.incidents.incidents.len(), 1);
    assert!(s.incidents.incidents[&1].title.starts_with("failover of customs dc→ndc"));
}

fn journaled(s: &mut State, journal: u64, (first, last): (u64, u64), events: Vec<IncomingAlert>) -> Response {
    let sources = vec![SourceAlerts { source: "prometheus".into(), events }];
    apply(s, 100 + last, Role::System, Command::IngestJournaled { journal, first, last, sources })
}

#[test]
fn a_journal_batch_is_applied_once_and_an_overlap_is_refused() {
    let mut s = State::default();
    let r = journaled(&mut s, 7, (1, 3), vec![event("a", 10, false), event("b", 10, false)]);
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("2 new")), "{r:?}");
    // The same batch again (a retry, or a replay after a restart): nothing counts twice.
    let r = journaled(&mut s, 7, (1, 3), vec![event("a", 10, false), event("b", 10, false)]);
    assert!(matches!(r, Response::Ok(ref m) if m.contains("already recorded")), "{r:?}");
    assert_eq!(s.alerts.alerts.values().map(|a| a.count).sum::<u64>(), 2);
    // A batch straddling the mark would count events twice: refused, nothing changed.
    let r = journaled(&mut s, 7, (3, 5), vec![event("a", 11, false)]);
    assert!(matches!(r, Response::Rejected(Rejection::Conflict(_))), "{r:?}");
    assert_eq!(s.alerts.alerts.values().map(|a| a.count).sum::<u64>(), 2);
    // The next batch, and another journal's first, are applied.
    let r = journaled(&mut s, 7, (4, 4), vec![event("a", 12, false)]);
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("0 new, 1 repeated")), "{r:?}");
    let r = journaled(&mut s, 9, (1, 1), vec![event("c", 12, false)]);
    assert!(matches!(r, Response::Ok(ref m) if m.starts_with("1 new")), "{r:?}");
    assert_eq!(s.alerts.journals[&7].through, 4);
    assert_eq!(s.alerts.journals[&9].through, 1);
    let r = journaled(&mut s, 9, (3, 2), vec![]);
    assert!(matches!(r, Response::Rejected(Rejection::Invalid(_))), "{r:?}");
}
