//! Where an alert is: the one lookup that turns what a source says (a host name, an address, a
//! site label, a link's name or device) into what Triad knows: an agent and its host and site,
//! an asset of the register (its site, office and owner), a link. Every alert is placed here,
//! the same way, whatever its source.

use serde::{Deserialize, Serialize};

use super::IncomingAlert;
use crate::state::State;

/// An alert's place: the site, host and agent Triad tied it to (empty when it could not), and
/// how it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub site: String,
    pub host: String,
    pub address: String,
    /// The agent on that host, when one is registered.
    pub agent: String,
    /// How it was placed: `agent host`, `agent name`, `asset`, `link`, `site label`, or empty
    /// when it was not.
    pub by: String,
    /// The asset of the register it concerns, with its office and owner (assignee).
    #[serde(default)]
    pub asset: String,
    #[serde(default)]
    pub office: String,
    #[serde(default)]
    pub owner: String,
    /// The link it concerns: named in its `link` label, or one of the link's devices.
    #[serde(default)]
    pub link: String,
}

/// The part of a host name before the first dot, lower-cased: `db1.dc.customs.local` → `db1`.
fn short_host(host: &str) -> String {
    host.split('.').next().unwrap_or(host).to_ascii_lowercase()
}

impl State {
    /// Places an incoming alert: by its host (an agent's host or name, full or short), then by
    /// an asset (its host, tag or addresses), a link (its name in the `link` label, or one of
    /// its devices), and last by its site label when that names a known site.
    pub fn locate(&self, alert: &IncomingAlert) -> Place {
        let mut place = self.locate_by_agent(alert);
        self.locate_asset(alert, &mut place);
        self.locate_link(alert, &mut place);
        if place.site.is_empty() && !alert.site.is_empty() && self.sites.contains_key(&alert.site) {
            place.site = alert.site.clone();
            place.by = "site label".into();
        }
        place
    }

    fn locate_asset(&self, alert: &IncomingAlert, place: &mut Place) {
        let keys = [place.host.as_str(), alert.host.as_str(), alert.address.as_str()];
        let keys: Vec<&str> = keys.into_iter().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            return;
        }
        let found = self.assets.assets.values().find(|a| {
            keys.iter().any(|k| {
                a.spec.tag == *k
                    || (!a.spec.host.is_empty()
                        && (a.spec.host.eq_ignore_ascii_case(k) || short_host(&a.spec.host) == short_host(k)))
                    || a.spec.addresses.iter().any(|x| x == k)
            })
        });
        let Some(a) = found else { return };
        place.asset = a.spec.tag.clone();
        place.office = a.spec.office.clone();
        place.owner = a.spec.assignee.clone();
        if place.site.is_empty() && !a.spec.site.is_empty() {
            place.site = a.spec.site.clone();
            if place.host.is_empty() {
                place.host = a.spec.host.clone();
            }
            place.by = "asset".into();
        }
    }

    fn locate_link(&self, alert: &IncomingAlert, place: &mut Place) {
        let named = alert.labels.get("link").filter(|l| self.links.contains_key(*l)).cloned();
        let by_device = || {
            let keys = [alert.host.as_str(), alert.address.as_str()];
            self.links
                .values()
                .find(|l| {
                    l.spec.devices.iter().any(|d| keys.iter().any(|k| !k.is_empty() && d.eq_ignore_ascii_case(k)))
                })
                .map(|l| l.spec.name.clone())
        };
        let Some(link) = named.or_else(by_device) else { return };
        place.link = link.clone();
        if place.site.is_empty() {
            place.site = self.links[&link].spec.a.clone();
            place.by = "link".into();
        }
    }

    /// By an agent: its host or name, full or short.
    fn locate_by_agent(&self, alert: &IncomingAlert) -> Place {
        let mut place = Place { host: alert.host.clone(), address: alert.address.clone(), ..Place::default() };
        let wanted = [alert.host.as_str(), alert.address.as_str()];
        for wanted in wanted.into_iter().filter(|w| !w.is_empty()) {
            let short = short_host(wanted);
            for agent in self.agents.values() {
                let by = if agent.host.eq_ignore_ascii_case(wanted) || short_host(&agent.host) == short {
                    "agent host"
                } else if agent.name.eq_ignore_ascii_case(wanted) {
                    "agent name"
                } else {
                    continue;
                };
                place.site = agent.site.clone();
                place.agent = agent.name.clone();
                if place.host.is_empty() {
                    place.host = agent.host.clone();
                }
                place.by = by.into();
                return place;
            }
        }
        place
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::alerts::{Severity, SourceKind};
    use crate::state::{AgentRecord, HostFacts, Site};

    fn incoming(host: &str, site: &str) -> IncomingAlert {
        IncomingAlert {
            kind: SourceKind::Generic,
            fingerprint: "f".into(),
            severity: Severity::High,
            title: "t".into(),
            description: String::new(),
            labels: Default::default(),
            site: site.into(),
            host: host.into(),
            address: String::new(),
            at_ms: 1,
            resolved: false,
            occurrences: 1,
        }
    }

    fn state() -> State {
        let mut s = State::default();
        for name in ["dc", "ndc"] {
            s.sites.insert(name.into(), Site { name: name.into(), description: String::new(), city: name.into() });
        }
        s.agents.insert(
            "agent-dc".into(),
            AgentRecord {
                name: "agent-dc".into(),
                site: "dc".into(),
                host: "db1.dc.customs.local".into(),
                facts: HostFacts::default(),
                up: true,
                since_ms: 0,
                registered_ms: 0,
            },
        );
        s
    }

    #[test]
    fn an_alert_is_placed_by_host_then_by_site_label() {
        let s = state();
        let p = s.locate(&incoming("DB1", ""));
        assert_eq!((p.site.as_str(), p.agent.as_str(), p.by.as_str()), ("dc", "agent-dc", "agent host"));
        let p = s.locate(&incoming("agent-dc", ""));
        assert_eq!((p.site.as_str(), p.by.as_str()), ("dc", "agent name"));
        let p = s.locate(&incoming("fw9", "ndc"));
        assert_eq!((p.site.as_str(), p.agent.as_str(), p.by.as_str()), ("ndc", "", "site label"));
        let p = s.locate(&incoming("fw9", "atlantis"));
        assert_eq!((p.site.as_str(), p.by.as_str(), p.host.as_str()), ("", "", "fw9"));
    }
}
