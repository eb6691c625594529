//! Incidents: alerts grouped with what the infrastructure was doing at the time and place they
//! concern. Applying a command that is an infrastructure event (an agent down, a failover, a
//! switchover, a rejoin, a fenced primary restarted, a primary lost) records it with the sites
//! and hosts it touches; an alert placed at one of those, seen from [`WINDOW_MS`] before the
//! event began to [`WINDOW_MS`] after it ended, joins the event's incident (made when its first
//! alert joins). So an analyst reads "this burst of database errors came during the failover at
//! 14:02". Later kinds of event (a link down, a drill) are recorded the same way.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::state::links::LinkState;
use crate::state::{Command, Proposal, State, WorkflowKind};

/// How far before an event's start and after its end an alert still belongs to it.
pub const WINDOW_MS: u64 = 5 * 60 * 1000;
/// Events kept (the oldest ended ones go first).
const EVENTS_KEPT: usize = 1000;
/// Alerts listed on one incident (more are counted).
const ALERTS_LISTED: usize = 10_000;

crate::named_enum! {
    /// What the infrastructure did.
    pub enum InfraKind: "infrastructure event" {
        AgentDown = "agent down",
        Failover = "failover",
        Switchover = "switchover",
        Rejoin = "rejoin",
        /// A primary its own agent fenced, started again.
        Fence = "fence",
        PrimaryLost = "primary lost",
        /// A link between two sites went down.
        LinkDown = "link down",
        /// A link between two sites became degraded (slow, lossy, busy).
        LinkDegraded = "link degraded",
    }
}

/// Something the infrastructure did, where and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfraEvent {
    pub id: u64,
    pub kind: InfraKind,
    pub summary: String,
    pub sites: BTreeSet<String>,
    pub hosts: BTreeSet<String>,
    pub started_ms: u64,
    /// `None` while under way.
    pub ended_ms: Option<u64>,
    /// The workflow it is, when it is one.
    pub workflow: Option<u64>,
    pub incident: Option<u64>,
    /// The link it is, when it is a link's.
    #[serde(default)]
    pub link: Option<String>,
}

impl InfraEvent {
    /// Whether an alert placed at `place` seen at `at_ms` falls within it: at one of its sites or
    /// hosts, or about its link.
    fn covers(&self, place: &super::Place, at_ms: u64) -> bool {
        let (site, host) = (&place.site, &place.host);
        let here = (!site.is_empty() && self.sites.contains(site))
            || (!host.is_empty() && self.hosts.contains(host))
            || (!place.link.is_empty() && self.link.as_ref() == Some(&place.link));
        let end = self.ended_ms.map_or(u64::MAX, |e| e.saturating_add(WINDOW_MS));
        here && self.started_ms.saturating_sub(WINDOW_MS) <= at_ms && at_ms <= end
    }
}

/// Alerts grouped with an infrastructure event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub id: u64,
    pub event: u64,
    /// e.g. `failover of customs dc→ndc at 2026-12-06 14:02:11 UTC`.
    pub title: String,
    pub opened_ms: u64,
    pub alerts: BTreeSet<u64>,
    /// Alerts beyond those listed.
    pub more: u64,
    /// The helpdesk ticket it was exported to, once recorded.
    pub ticket: Option<String>,
}

/// The infrastructure events and incidents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incidents {
    pub events: BTreeMap<u64, InfraEvent>,
    pub last_event_id: u64,
    pub incidents: BTreeMap<u64, Incident>,
    pub last_incident_id: u64,
}

fn hm(ms: u64) -> String {
    crate::alerts::timestamp::format_ms(ms)
        .replace('T', " ")
        .trim_end_matches('Z')
        .split('.')
        .next()
        .unwrap_or("")
        .to_string()
        + " UTC"
}

impl State {
    /// Records the infrastructure event an applied command was, if it was one.
    pub(in crate::state) fn note_infra_event(&mut self, p: &Proposal) {
        let (kind, summary, sites, hosts, workflow) = match &p.command {
            Command::SetAgentUp { name, up: false, reason } => {
                let Some(a) = self.agents.get(name) else { return };
                let summary = format!("agent {name} down ({reason})");
                (InfraKind::AgentDown, summary, vec![a.site.clone()], vec![a.host.clone()], None)
            }
            Command::StartWorkflow { cluster, kind, from, to } => {
                let kind = match kind {
                    WorkflowKind::Failover => InfraKind::Failover,
                    WorkflowKind::Switchover => InfraKind::Switchover,
                    WorkflowKind::Rejoin => InfraKind::Rejoin,
                    WorkflowKind::Restart => InfraKind::Fence,
                    WorkflowKind::Follow => return,
                };
                let Some(c) = self.clusters.get(cluster) else { return };
                let (sites, hosts) = self.member_places(cluster, &[from, to]);
                let summary = match kind {
                    InfraKind::Fence => format!("fenced primary {from} of {cluster} restarted"),
                    InfraKind::Rejoin => format!("rejoin of {to} to {cluster}"),
                    _ => format!("{kind} of {cluster} {from}→{to}"),
                };
                (kind, summary, sites, hosts, c.workflow)
            }
            Command::FinishWorkflow { workflow, .. } => {
                for e in self.incidents.events.values_mut().filter(|e| e.workflow == Some(*workflow)) {
                    e.ended_ms.get_or_insert(p.at_ms);
                }
                return;
            }
            Command::SetAgentUp { name, up: true, .. } => {
                let open = self
                    .incidents
                    .events
                    .values_mut()
                    .filter(|e| e.kind == InfraKind::AgentDown && e.ended_ms.is_none());
                for e in open.filter(|e| e.summary.starts_with(&format!("agent {name} down"))) {
                    e.ended_ms = Some(p.at_ms);
                }
                return;
            }
            Command::SetFailoverBlocked { cluster, reason } if reason.starts_with(crate::state::PRIMARY_LOST) => {
                let Some(primary) = self.clusters.get(cluster).and_then(|c| c.primary.clone()) else { return };
                let (sites, hosts) = self.member_places(cluster, &[&primary]);
                (InfraKind::PrimaryLost, format!("primary {primary} of {cluster} lost"), sites, hosts, None)
            }
            Command::SetLinkState { link, state, .. } => {
                let Some(l) = self.links.get(link) else { return };
                let kind = match state {
                    LinkState::Down => InfraKind::LinkDown,
                    LinkState::Degraded => InfraKind::LinkDegraded,
                    LinkState::Up => {
                        self.end_link_events(link, p.at_ms);
                        return;
                    }
                    LinkState::Unknown => return,
                };
                // Degraded then down is one outage: the event under way takes the worse kind.
                let open =
                    self.incidents.events.values_mut().find(|e| e.link.as_ref() == Some(link) && e.ended_ms.is_none());
                if let Some(e) = open {
                    if kind == InfraKind::LinkDown {
                        e.kind = kind;
                    }
                    return;
                }
                let summary = format!("{kind}: {} ({} {}–{})", l.spec.name, l.spec.kind, l.spec.a, l.spec.b);
                (kind, summary, vec![l.spec.a.clone(), l.spec.b.clone()], vec![], None)
            }
            _ => return,
        };
        let link = match &p.command {
            Command::SetLinkState { link, .. } => Some(link.clone()),
            _ => None,
        };
        let book = &mut self.incidents;
        book.last_event_id += 1;
        let id = book.last_event_id;
        let summary = format!("{summary} at {}", hm(p.at_ms));
        let event = InfraEvent {
            id,
            kind,
            summary,
            sites: sites.into_iter().filter(|s| !s.is_empty()).collect(),
            hosts: hosts.into_iter().filter(|h| !h.is_empty()).collect(),
            started_ms: p.at_ms,
            ended_ms: None,
            workflow,
            incident: None,
            link,
        };
        book.events.insert(id, event);
        while book.events.len() > EVENTS_KEPT {
            book.events.pop_first();
        }
        self.link_related(id, p.at_ms);
        // Alerts that came just before it belong to it too.
        let earlier: Vec<u64> = self
            .alerts
            .alerts
            .values()
            .filter(|a| !a.status.is_closed() && a.incident.is_none())
            .filter(|a| self.incidents.events[&id].covers(&a.place, a.last_seen_ms))
            .map(|a| a.id)
            .collect();
        for alert in earlier {
            self.join_incident(alert, id, p.at_ms);
        }
    }

    fn end_link_events(&mut self, link: &str, at_ms: u64) {
        let open =
            self.incidents.events.values_mut().filter(|e| e.link.as_deref() == Some(link) && e.ended_ms.is_none());
        for e in open {
            e.ended_ms = Some(at_ms);
        }
    }

    /// One outage is one incident: an event at the sites or hosts of another still under way (or
    /// ended within the window) shares that one's incident, so an agent found down during a
    /// failover of its site, or a failover following a primary lost, groups with it. A failover,
    /// switchover or primary lost joining is named in the incident's title.
    fn link_related(&mut self, id: u64, at_ms: u64) {
        let book = &self.incidents;
        let new = &book.events[&id];
        let related = book
            .events
            .values()
            .rev()
            .filter(|e| e.id != id)
            .filter(|e| e.ended_ms.is_none_or(|end| at_ms <= end.saturating_add(WINDOW_MS)))
            .find(|e| e.sites.iter().any(|s| new.sites.contains(s)) || e.hosts.iter().any(|h| new.hosts.contains(h)))
            .map(|e| e.id);
        let Some(related) = related else { return };
        let incident = self.incident_of(related, at_ms);
        let book = &mut self.incidents;
        let new = book.events.get_mut(&id).expect("just recorded");
        new.incident = Some(incident);
        if matches!(new.kind, InfraKind::Failover | InfraKind::Switchover | InfraKind::PrimaryLost) {
            let summary = new.summary.clone();
            if let Some(i) = book.incidents.get_mut(&incident) {
                i.title = format!("{}; {summary}", i.title).chars().take(400).collect();
            }
        }
    }

    /// The incident of event `event_id`, made (with no alerts yet) when it has none.
    fn incident_of(&mut self, event_id: u64, at_ms: u64) -> u64 {
        let book = &mut self.incidents;
        let event = book.events.get_mut(&event_id).expect("an event that exists");
        if let Some(i) = event.incident.filter(|i| book.incidents.contains_key(i)) {
            return i;
        }
        book.last_incident_id += 1;
        let i = book.last_incident_id;
        event.incident = Some(i);
        let incident = Incident {
            id: i,
            event: event_id,
            title: event.summary.clone(),
            opened_ms: at_ms,
            alerts: BTreeSet::new(),
            more: 0,
            ticket: None,
        };
        book.incidents.insert(i, incident);
        while book.incidents.len() > EVENTS_KEPT {
            book.incidents.pop_first();
        }
        i
    }

    /// The sites and hosts of `members` of `cluster` (through their agents).
    fn member_places(&self, cluster: &str, members: &[&String]) -> (Vec<String>, Vec<String>) {
        let Some(c) = self.clusters.get(cluster) else { return (vec![], vec![]) };
        let mut sites = Vec::new();
        let mut hosts = Vec::new();
        for m in members.iter().filter_map(|m| c.members.get(*m)) {
            sites.push(m.site.clone());
            if let Some(a) = self.agents.get(&m.agent) {
                hosts.push(a.host.clone());
            }
        }
        (sites, hosts)
    }

    /// Puts alert `alert_id` into the incident of the newest event covering it, if any.
    pub(super) fn correlate(&mut self, alert_id: u64, at_ms: u64) {
        let Some(a) = self.alerts.alerts.get(&alert_id) else { return };
        if a.incident.is_some() {
            return;
        }
        let place = a.place.clone();
        let event = self.incidents.events.values().rev().find(|e| e.covers(&place, at_ms)).map(|e| e.id);
        if let Some(event) = event {
            self.join_incident(alert_id, event, at_ms);
        }
    }

    fn join_incident(&mut self, alert_id: u64, event_id: u64, at_ms: u64) {
        if !self.incidents.events.contains_key(&event_id) {
            return;
        }
        let incident_id = self.incident_of(event_id, at_ms);
        let book = &mut self.incidents;
        let incident = book.incidents.get_mut(&incident_id).expect("just made or found");
        if incident.alerts.len() < ALERTS_LISTED {
            incident.alerts.insert(alert_id);
        } else {
            incident.more += 1;
        }
        let title = incident.title.clone();
        if let Some(a) = self.alerts.alerts.get_mut(&alert_id) {
            a.incident = Some(incident_id);
            a.note(at_ms, "triad", format!("grouped into incident {incident_id}: {title}"));
        }
    }
}
