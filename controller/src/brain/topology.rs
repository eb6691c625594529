//! Adoption of a running database cluster: when a configured cluster has no epoch yet and its
//! agents report exactly one primary, the leader records that primary and the standbys it
//! replicates to synchronously, at epoch 1. Nothing is promoted or fenced here: this only writes
//! down what already is, so that every later role change has an epoch to bump.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::AgentObservation;
use crate::state::{Command, State};

/// The adoption commands the observations justify.
pub fn decide(state: &State, obs: &HashMap<String, AgentObservation>, now: Instant, fresh: Duration) -> Vec<Command> {
    let mut out = Vec::new();
    // Endpoints follow what the agents report (they are configuration, kept where writers can
    // read them consistently).
    for c in state.clusters.values() {
        for m in c.members.values() {
            let reported = obs
                .get(&m.agent)
                .filter(|o| now.saturating_duration_since(o.last_seen) < fresh)
                .and_then(|o| o.db.as_ref())
                .filter(|d| d.cluster == c.name && d.member == m.name && !d.endpoint.is_empty())
                .map(|d| (d.endpoint.clone(), d.endpoint_id.clone()));
            let changed = |(e, id): &(String, String)| {
                (*e != m.endpoint || *id != m.endpoint_id) && e.len() <= 200 && id.len() <= 200
            };
            if let Some((endpoint, endpoint_id)) = reported.filter(changed) {
                out.push(Command::SetMemberEndpoint {
                    cluster: c.name.clone(),
                    member: m.name.clone(),
                    endpoint,
                    endpoint_id,
                });
            }
        }
    }
    for c in state.clusters.values().filter(|c| c.epoch == 0 && !c.paused) {
        // Every member must be freshly observed: an unheard member might be a second primary.
        let mut seen = Vec::new();
        for m in c.members.values() {
            let db = obs
                .get(&m.agent)
                .filter(|o| now.saturating_duration_since(o.last_seen) < fresh)
                .and_then(|o| o.db.as_ref())
                .filter(|d| d.cluster == c.name && d.member == m.name);
            match db {
                Some(d) => seen.push(d),
                None => break,
            }
        }
        if seen.len() != c.members.len() {
            continue;
        }
        let primaries: Vec<_> = seen.iter().filter(|d| d.up && d.role == "primary").collect();
        let [primary] = primaries[..] else { continue };
        let synchronous = primary
            .replicas
            .iter()
            .filter(|r| {
                triad_proto::replica::synchronous(r) && c.members.contains_key(&r.name) && r.name != primary.member
            })
            .map(|r| r.name.clone())
            .collect();
        out.push(Command::AdoptCluster { cluster: c.name.clone(), primary: primary.member.clone(), synchronous });
    }
    out
}

#[cfg(test)]
mod tests {
    use triad_proto::v1::{DbStatus, ReplicaStatus};

    use super::*;
    use crate::state::DbCluster;

    fn state() -> State {
        let mut s = State::default();
        s.clusters.insert("customs".into(), DbCluster::for_test(&["dc", "ndc", "dr"], "agent-"));
        s
    }

    fn obs(member: &str, role: &str, replicas: &[(&str, &str)], now: Instant) -> (String, AgentObservation) {
        (
            format!("agent-{member}"),
            AgentObservation::for_test(
                member,
                now,
                Some(DbStatus {
                    cluster: "customs".into(),
                    member: member.into(),
                    up: true,
                    role: role.into(),
                    replicas: replicas
                        .iter()
                        .map(|(n, s)| ReplicaStatus {
                            name: n.to_string(),
                            sync_state: s.to_string(),
                            synchronous: *s == "sync",
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
            ),
        )
    }

    #[test]
    fn adopts_the_single_primary_and_its_synchronous_standby() {
        let now = Instant::now();
        let o = HashMap::from([
            obs("dc", "primary", &[("ndc", "sync"), ("dr", "async")], now),
            obs("ndc", "standby", &[], now),
            obs("dr", "standby", &[], now),
        ]);
        let cmds = decide(&state(), &o, now, Duration::from_secs(3));
        assert_eq!(
            cmds,
            vec![Command::AdoptCluster {
                cluster: "customs".into(),
                primary: "dc".into(),
                synchronous: vec!["ndc".into()]
            }]
        );
    }

    #[test]
    fn never_adopts_two_primaries_or_an_unheard_member() {
        let now = Instant::now();
        let two = HashMap::from([
            obs("dc", "primary", &[], now),
            obs("ndc", "primary", &[], now),
            obs("dr", "standby", &[], now),
        ]);
        assert!(decide(&state(), &two, now, Duration::from_secs(3)).is_empty());
        let missing = HashMap::from([obs("dc", "primary", &[], now), obs("ndc", "standby", &[], now)]);
        assert!(decide(&state(), &missing, now, Duration::from_secs(3)).is_empty());
        let mut adopted = state();
        adopted.clusters.get_mut("customs").unwrap().epoch = 1;
        let fine = HashMap::from([
            obs("dc", "primary", &[], now),
            obs("ndc", "standby", &[], now),
            obs("dr", "standby", &[], now),
        ]);
        assert!(decide(&adopted, &fine, now, Duration::from_secs(3)).is_empty(), "adopted once only");
    }
}
