//! `State::apply` for the agents and users tables, and the record of a refused call.

use super::updown;
use crate::state::{AgentRecord, Command, Proposal, Rejection, State};

impl State {
    pub(super) fn apply_agents_and_users(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::RegisterAgent { name, site, host, facts } => {
                let what = format!("register agent {name} site={site} host={host}");
                if !self.sites.is_empty() && !self.sites.contains_key(site) {
                    return (what, Err(Rejection::NotFound(format!("unknown site `{site}`"))));
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
                    None => (what, Err(Rejection::NotFound(format!("no agent named `{name}`")))),
                    Some(rec) if rec.up == *up => {
                        (what, Err(Rejection::Conflict(format!("agent `{name}` is already {}", updown(*up)))))
                    }
                    Some(rec) => {
                        rec.up = *up;
                        rec.since_ms = p.at_ms;
                        (what, Ok(format!("agent {name} {}", updown(*up))))
                    }
                }
            }
            Command::RecordRefusal { what, why } => {
                (format!("refused call: {what}"), Err(Rejection::NotAllowed(why.clone())))
            }
            Command::PutUser { name, role } => {
                let what = format!("put user {name} role={role}");
                if !role.is_user_role() {
                    return (what, Err(Rejection::NotAllowed(format!("`{role}` cannot be given to a user"))));
                }
                self.users.insert(name.clone(), *role);
                (what, Ok(format!("user {name} is {role}")))
            }
            Command::DeleteUser { name } => {
                let what = format!("delete user {name}");
                match self.users.remove(name) {
                    Some(_) => (what, Ok(format!("user {name} deleted"))),
                    None => (what, Err(Rejection::NotFound(format!("no user named `{name}`")))),
                }
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a agents and users command".into()))),
        }
    }
}
