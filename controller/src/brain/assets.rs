//! The asset register's automation, leader only: the hosts the agents report kept in the register
//! (`discover`), and warnings raised at their lead times (`warnings`): a licence expiring, a
//! warranty ending, an end of life near or passed, every seat of a licence taken. Each warning
//! is proposed until the state records it, and the state records it once per kind, lead time and
//! date, so it is raised once whichever leader sees it first.

use crate::state::assets::{AssetKind, AssetStatus, Day, WarningKind};
use crate::state::{Command, State};

/// Most warnings proposed in one log entry; more wait for the next check (ten seconds later).
pub const WARNINGS_PER_ENTRY: usize = 1000;

/// The date the seats warning is recorded under: seats have no date of their own; a seat given
/// back clears the record, so the next exhaustion is warned again.
pub fn no_date() -> Day {
    Day::from_ms(0)
}

/// What to record of the hosts the agents report: each registered agent's host, where its asset
/// does not show it yet.
pub fn discover(state: &State) -> Vec<Command> {
    state
        .agents
        .values()
        .filter(|a| !a.host.is_empty())
        .filter(|a| {
            let asset = state.asset_of_host(&a.host).and_then(|t| state.assets.assets.get(&t));
            let seen = asset.and_then(|x| x.discovered.as_ref());
            !seen.is_some_and(|d| d.agent == a.name && d.host == a.host && d.site == a.site && d.facts == a.facts)
        })
        .map(|a| Command::DiscoverHost {
            agent: a.name.clone(),
            host: a.host.clone(),
            site: a.site.clone(),
            facts: a.facts.clone(),
        })
        .collect()
}

/// The nearest lead time a date `days` away has reached (0 once passed); `None` while it is
/// further than every lead time.
fn lead_reached(days: i64, leads: &[u32]) -> Option<u32> {
    if days < 0 {
        return Some(0);
    }
    leads.iter().copied().filter(|l| days <= i64::from(*l)).min()
}

/// The warnings due `today` that the state has not recorded yet.
pub fn warnings(state: &State, today: Day, leads: &[u32]) -> Vec<Command> {
    let mut out = Vec::new();
    for a in state.assets.assets.values().filter(|a| a.spec.status != AssetStatus::Retired) {
        let s = &a.spec;
        let licence = s.kind == AssetKind::Licence;
        let dated = [
            (WarningKind::LicenceExpiry, if licence { s.expires } else { None }),
            (WarningKind::WarrantyEnd, s.warranty_end),
            (WarningKind::EndOfLife, s.end_of_life),
        ];
        for (kind, date) in dated {
            let Some(date) = date else { continue };
            let Some(lead) = lead_reached(today.days_until(date), leads) else { continue };
            if !a.warned.contains(&crate::state::assets::warned_key(kind, lead, date)) {
                out.push(Command::WarnAsset { tag: s.tag.clone(), kind, lead_days: lead, date });
            }
        }
        let exhausted = licence && s.seats > 0 && a.free_seats() == 0;
        let key = crate::state::assets::warned_key(WarningKind::SeatsExhausted, 0, no_date());
        if exhausted && !a.warned.contains(&key) {
            out.push(Command::WarnAsset {
                tag: s.tag.clone(),
                kind: WarningKind::SeatsExhausted,
                lead_days: 0,
                date: no_date(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::assets::AssetSpec;
    use crate::state::{Actor, AgentRecord, HostFacts, Proposal, Response, Role, Site};

    fn apply(s: &mut State, at_ms: u64, role: Role, command: Command) -> Response {
        let p = Proposal { at_ms, actor: Actor { name: "nora".into(), role, origin: "t".into() }, command };
        s.apply(1, &p, &mut Vec::new())
    }

    fn day(s: &str) -> Day {
        s.parse().unwrap()
    }

    const DAY_MS: u64 = 86_400_000;

    fn ms_of(d: &str) -> u64 {
        (day("1970-01-01").days_until(day(d)) as u64) * DAY_MS
    }

    fn state() -> State {
        let mut s = State::default();
        s.sites.insert("dc".into(), Site { name: "dc".into(), description: String::new(), city: "dhaka".into() });
        s
    }

    #[test]
    fn a_licence_is_warned_once_per_lead_time_and_once_passed() {
        let mut s = state();
        let mut spec = AssetSpec::new("LIC-1", AssetKind::Licence);
        (spec.site, spec.seats, spec.expires, spec.status) =
            ("dc".into(), 5, Some(day("2027-03-01")), AssetStatus::InUse);
        let fields = spec.given();
        assert!(matches!(apply(&mut s, 1, Role::Noc, Command::PutAsset { spec, fields }), Response::Ok(_)));
        let leads = [90, 30, 7];
        // 100 days before: nothing yet.
        assert!(warnings(&s, day("2026-11-21"), &leads).is_empty());
        // 89 days before: the 90-day warning, once.
        let today = day("2026-12-02");
        let due = warnings(&s, today, &leads);
        assert!(matches!(&due[..], [Command::WarnAsset { lead_days: 90, .. }]), "{due:?}");
        for c in due {
            apply(&mut s, ms_of("2026-12-02"), Role::System, c);
        }
        assert!(warnings(&s, today, &leads).is_empty(), "raised once");
        assert!(warnings(&s, day("2027-01-20"), &leads).is_empty(), "still within 90, not yet 30");
        assert_eq!(s.alerts.alerts.len(), 1);
        // 30 days before: the 30-day one, the same alert raised again (severity up).
        let due = warnings(&s, day("2027-01-30"), &leads);
        assert!(matches!(&due[..], [Command::WarnAsset { lead_days: 30, .. }]), "{due:?}");
        for c in due {
            apply(&mut s, ms_of("2027-01-30"), Role::System, c);
        }
        assert_eq!(s.alerts.alerts.len(), 1, "one alert per asset and kind");
        // Passed: lead 0.
        let due = warnings(&s, day("2027-03-02"), &leads);
        assert!(matches!(&due[..], [Command::WarnAsset { lead_days: 0, .. }]), "{due:?}");
        // Renewed: nothing for the new date until its lead times come.
        let mut renewed = AssetSpec::new("LIC-1", AssetKind::Licence);
        renewed.expires = Some(day("2028-03-01"));
        let fields = [crate::state::assets::AssetField::Expires].into();
        apply(&mut s, 5, Role::Noc, Command::PutAsset { spec: renewed, fields });
        assert!(warnings(&s, day("2027-03-02"), &leads).is_empty());
    }

    #[test]
    fn seats_exhausted_is_warned_once_until_a_seat_is_given_back() {
        let mut s = state();
        let mut spec = AssetSpec::new("LIC-2", AssetKind::Licence);
        spec.seats = 2;
        let fields = spec.given();
        apply(&mut s, 1, Role::Admin, Command::PutAsset { spec, fields });
        for host in ["a", "b"] {
            let r = apply(
                &mut s,
                2,
                Role::Noc,
                Command::SeatLicence { tag: "LIC-2".into(), host: host.into(), hold: true },
            );
            assert!(matches!(r, Response::Ok(_)), "{r:?}");
        }
        let r = apply(&mut s, 3, Role::Noc, Command::SeatLicence { tag: "LIC-2".into(), host: "c".into(), hold: true });
        assert!(matches!(r, Response::Rejected(_)), "no third seat: {r:?}");
        let due = warnings(&s, day("2027-01-01"), &[30]);
        assert_eq!(due.len(), 1);
        for c in due {
            apply(&mut s, 4, Role::System, c);
        }
        assert!(warnings(&s, day("2027-01-01"), &[30]).is_empty(), "once");
        apply(&mut s, 5, Role::Noc, Command::SeatLicence { tag: "LIC-2".into(), host: "a".into(), hold: false });
        apply(&mut s, 6, Role::Noc, Command::SeatLicence { tag: "LIC-2".into(), host: "d".into(), hold: true });
        assert_eq!(warnings(&s, day("2027-01-01"), &[30]).len(), 1, "exhausted again: warned again");
    }

    #[test]
    fn a_discovered_host_becomes_an_asset_and_never_overwrites_an_operators_field() {
        let mut s = state();
        s.sites.insert("ndc".into(), Site { name: "ndc".into(), description: String::new(), city: "dhaka".into() });
        let facts =
            HostFacts { os: "Debian 12".into(), cpus: 8, addresses: vec!["10.0.0.5".into()], ..Default::default() };
        let agent = AgentRecord {
            name: "agent-dc".into(),
            site: "dc".into(),
            host: "db1".into(),
            facts: facts.clone(),
            up: true,
            since_ms: 0,
            registered_ms: 0,
        };
        s.agents.insert("agent-dc".into(), agent);
        for c in discover(&s) {
            assert!(matches!(apply(&mut s, 1, Role::System, c), Response::Ok(_)));
        }
        assert!(discover(&s).is_empty(), "in step");
        let a = &s.assets.assets["host:db1"];
        assert_eq!((a.spec.site.as_str(), a.spec.addresses.clone()), ("dc", vec!["10.0.0.5".to_string()]));
        // An operator moves it to ndc; the agent still says dc and a new address.
        let mut spec = a.spec.clone();
        spec.site = "ndc".into();
        let fields = [crate::state::assets::AssetField::Site].into();
        apply(&mut s, 2, Role::Noc, Command::PutAsset { spec, fields });
        s.agents.get_mut("agent-dc").unwrap().facts.addresses = vec!["10.0.0.6".into()];
        for c in discover(&s) {
            apply(&mut s, 3, Role::System, c);
        }
        let a = &s.assets.assets["host:db1"];
        assert_eq!(a.spec.site, "ndc", "the operator's field stays");
        assert_eq!(a.spec.addresses, vec!["10.0.0.6".to_string()], "the rest follows the host");
        assert_eq!(a.discovered.as_ref().unwrap().facts.os, "Debian 12");
        // Only the leader discovers.
        let c = Command::DiscoverHost {
            agent: "x".into(),
            host: "h".into(),
            site: "dc".into(),
            facts: HostFacts::default(),
        };
        assert!(matches!(apply(&mut s, 4, Role::Noc, c), Response::Rejected(_)));
    }
}
