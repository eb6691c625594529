//! Agent liveness: from heartbeats (soft state) to committed up/down decisions.
//!
//! Only changes are proposed: an agent first heard, its facts changed, heartbeats resumed, or
//! heartbeats stopped for `agents.down_after_ms`. A new leader gives agents it has not heard from
//! the same grace from the moment it took over, since agents stream to every controller and a
//! silent one is one the new leader genuinely cannot hear.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::AgentObservation;
use crate::state::{Command, State};

/// The commands that bring `state` in line with `obs`.
pub fn decide(
    state: &State,
    obs: &HashMap<String, AgentObservation>,
    now: Instant,
    leader_since: Instant,
    down_after: Duration,
) -> Vec<Command> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = obs.keys().collect();
    names.sort();
    for name in names {
        let o = &obs[name];
        if now.saturating_duration_since(o.last_seen) >= down_after {
            continue;
        }
        match state.agents.get(name) {
            Some(rec) if rec.site == o.hello.site && rec.host == o.hello.host && rec.facts == o.hello.facts => {
                if !rec.up {
                    out.push(Command::SetAgentUp { name: name.clone(), up: true, reason: "heartbeats resumed".into() });
                }
            }
            _ => out.push(Command::RegisterAgent {
                name: name.clone(),
                site: o.hello.site.clone(),
                host: o.hello.host.clone(),
                facts: o.hello.facts.clone(),
            }),
        }
    }
    for rec in state.agents.values().filter(|a| a.up) {
        let silent_for = match obs.get(&rec.name) {
            Some(o) => now.saturating_duration_since(o.last_seen),
            None => now.saturating_duration_since(leader_since),
        };
        if silent_for >= down_after {
            out.push(Command::SetAgentUp {
                name: rec.name.clone(),
                up: false,
                reason: format!("no heartbeat for {} ms", silent_for.as_millis()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AgentRecord, HostFacts};

    fn obs(last_seen: Instant) -> AgentObservation {
        AgentObservation::for_test("dc", last_seen, None)
    }

    fn rec(up: bool) -> AgentRecord {
        AgentRecord {
            name: "a".into(),
            site: "dc".into(),
            host: "dc-host".into(),
            facts: HostFacts::default(),
            up,
            since_ms: 0,
            registered_ms: 0,
        }
    }

    #[test]
    fn new_agent_is_registered_then_left_alone() {
        let now = Instant::now();
        let d = Duration::from_secs(3);
        let mut state = State::default();
        let o = HashMap::from([("a".to_string(), obs(now))]);
        let cmds = decide(&state, &o, now, now, d);
        assert!(matches!(&cmds[..], [Command::RegisterAgent { name, .. }] if name == "a"));
        state.agents.insert("a".into(), rec(true));
        assert!(decide(&state, &o, now, now, d).is_empty());
    }

    #[test]
    fn silent_agent_goes_down_and_comes_back() {
        let start = Instant::now();
        let d = Duration::from_secs(3);
        let mut state = State::default();
        state.agents.insert("a".into(), rec(true));
        let o = HashMap::from([("a".to_string(), obs(start))]);
        assert!(decide(&state, &o, start + Duration::from_secs(2), start, d).is_empty());
        let cmds = decide(&state, &o, start + Duration::from_secs(4), start, d);
        assert!(matches!(&cmds[..], [Command::SetAgentUp { up: false, .. }]));
        state.agents.get_mut("a").unwrap().up = false;
        let fresh = HashMap::from([("a".to_string(), obs(start + Duration::from_secs(5)))]);
        let cmds = decide(&state, &fresh, start + Duration::from_secs(5), start, d);
        assert!(matches!(&cmds[..], [Command::SetAgentUp { up: true, .. }]));
    }

    #[test]
    fn new_leader_gives_unheard_agents_a_grace_period() {
        let t0 = Instant::now();
        let d = Duration::from_secs(3);
        let mut state = State::default();
        state.agents.insert("a".into(), rec(true));
        let none = HashMap::new();
        assert!(decide(&state, &none, t0 + Duration::from_secs(1), t0, d).is_empty());
        assert_eq!(decide(&state, &none, t0 + Duration::from_secs(3), t0, d).len(), 1);
    }
}
