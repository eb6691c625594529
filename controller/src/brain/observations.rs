//! Soft state: what agents told this controller (hello, heartbeats, load). Held in memory only,
//! never written to the log one heartbeat at a time; the brain turns it into decisions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::state::HostFacts;

/// What an agent said about itself when its stream opened.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentHelloInfo {
    pub site: String,
    pub host: String,
    pub version: String,
    pub facts: HostFacts,
    /// Where its failsafe service listens (empty: none).
    pub vouch_addr: String,
    /// Where its link probe echo answers (empty: none).
    pub probe_addr: String,
}

/// The latest from one agent.
#[derive(Debug, Clone)]
pub struct AgentObservation {
    pub hello: AgentHelloInfo,
    pub last_seen: Instant,
    pub last_seen_ms: u64,
    /// Open streams from this agent to this controller (normally 0 or 1).
    pub streams: u32,
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    /// The agent's latest observation of its database member, if it has one.
    pub db: Option<triad_proto::v1::DbStatus>,
    /// What its probes measured of the links it probes, as of its latest heartbeat.
    pub links: Vec<triad_proto::v1::LinkProbeReport>,
    /// What it read over SNMP of the devices its config names.
    pub snmp: Vec<triad_proto::v1::SnmpReport>,
    /// The latest results of the service checks its plan gives it.
    pub services: Vec<triad_proto::v1::ServiceCheckReport>,
}

#[cfg(test)]
impl AgentObservation {
    /// For unit tests: an agent at `site` last heard at `last_seen`, reporting `db`.
    pub(crate) fn for_test(site: &str, last_seen: Instant, db: Option<triad_proto::v1::DbStatus>) -> Self {
        AgentObservation {
            hello: AgentHelloInfo {
                site: site.into(),
                host: format!("{site}-host"),
                version: "test".into(),
                vouch_addr: String::new(),
                probe_addr: String::new(),
                facts: HostFacts::default(),
            },
            last_seen,
            last_seen_ms: 0,
            streams: 1,
            cpu_percent: 0.0,
            memory_used_bytes: 0,
            db,
            links: Vec::new(),
            snmp: Vec::new(),
            services: Vec::new(),
        }
    }
}

/// Observations of every agent that has talked to this controller since it started.
#[derive(Default)]
pub struct Observations {
    agents: Mutex<HashMap<String, AgentObservation>>,
}

impl Observations {
    /// An agent opened a stream and said hello.
    pub fn connected(&self, name: &str, hello: AgentHelloInfo, now_ms: u64) {
        let mut map = self.agents.lock().expect("observations lock poisoned");
        let entry = map.entry(name.to_string()).or_insert_with(|| AgentObservation {
            hello: hello.clone(),
            last_seen: Instant::now(),
            last_seen_ms: now_ms,
            streams: 0,
            cpu_percent: 0.0,
            memory_used_bytes: 0,
            db: None,
            links: Vec::new(),
            snmp: Vec::new(),
            services: Vec::new(),
        });
        entry.hello = hello;
        entry.streams += 1;
        entry.last_seen = Instant::now();
        entry.last_seen_ms = now_ms;
    }

    /// A heartbeat arrived.
    pub fn heartbeat(&self, name: &str, now_ms: u64, hb: triad_proto::v1::AgentHeartbeat) {
        let load = hb.load.unwrap_or_default();
        let mut map = self.agents.lock().expect("observations lock poisoned");
        if let Some(o) = map.get_mut(name) {
            o.last_seen = Instant::now();
            o.last_seen_ms = now_ms;
            o.cpu_percent = load.cpu_percent;
            o.memory_used_bytes = load.memory_used_bytes;
            o.db = hb.db;
            o.links = hb.links;
            o.snmp = hb.snmp;
            o.services = hb.services;
        }
    }

    /// A stream closed.
    pub fn disconnected(&self, name: &str) {
        let mut map = self.agents.lock().expect("observations lock poisoned");
        if let Some(o) = map.get_mut(name) {
            o.streams = o.streams.saturating_sub(1);
        }
    }

    /// The latest database report of `agent`, if it was heard within `fresh`. Copies only that
    /// agent's report, unlike [`Observations::snapshot`].
    /// Waits up to `timeout` for a report from `agent`, heard after `since`, that satisfies
    /// `ok` (an agent's reports from before a command still describe the member as it was).
    pub async fn wait_report(
        &self,
        agent: &str,
        since: Instant,
        timeout: std::time::Duration,
        ok: impl Fn(&triad_proto::v1::DbStatus) -> bool,
    ) -> bool {
        let deadline = since + timeout;
        loop {
            let seen = {
                let map = self.agents.lock().expect("observations lock poisoned");
                map.get(agent).filter(|o| o.last_seen > since).and_then(|o| o.db.as_ref()).is_some_and(&ok)
            };
            if seen {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub fn fresh_db(&self, agent: &str, fresh: std::time::Duration) -> Option<triad_proto::v1::DbStatus> {
        let map = self.agents.lock().expect("observations lock poisoned");
        map.get(agent).filter(|o| o.last_seen.elapsed() < fresh).and_then(|o| o.db.clone())
    }

    /// Where agent `name` said its failsafe service listens (empty: unknown or none).
    pub fn vouch_addr(&self, name: &str) -> String {
        let map = self.agents.lock().expect("observations lock poisoned");
        map.get(name).map(|o| o.hello.vouch_addr.clone()).unwrap_or_default()
    }

    /// Where each agent's link probe echo answers, for those that serve one.
    pub fn probe_addrs(&self) -> HashMap<String, String> {
        let map = self.agents.lock().expect("observations lock poisoned");
        map.iter()
            .filter(|(_, o)| !o.hello.probe_addr.is_empty())
            .map(|(n, o)| (n.clone(), o.hello.probe_addr.clone()))
            .collect()
    }

    /// A copy of every observation.
    pub fn snapshot(&self) -> HashMap<String, AgentObservation> {
        self.agents.lock().expect("observations lock poisoned").clone()
    }

    /// Agents with at least one open stream.
    pub fn connected_count(&self) -> usize {
        self.agents.lock().expect("observations lock poisoned").values().filter(|o| o.streams > 0).count()
    }
}
