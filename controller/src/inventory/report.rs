//! Reports on the asset register: assets counted by site, office, kind and status; licences by
//! seats used and by expiry, soonest first.

use std::collections::BTreeMap;

use crate::state::assets::{AssetBook, AssetKind, AssetStatus, Day};

/// One group of the register and how many assets are in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub site: String,
    pub office: String,
    pub kind: AssetKind,
    pub status: AssetStatus,
    pub count: u64,
}

/// A licence's seats and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub tag: String,
    pub model: String,
    pub vendor: String,
    pub seats: u32,
    pub used: u32,
    pub free: u32,
    pub expires: Option<Day>,
    /// From today (negative: passed).
    pub days_left: Option<i64>,
}

/// The register's groups, in (site, office, kind, status) order.
pub fn groups(book: &AssetBook) -> Vec<Group> {
    let mut counts: BTreeMap<(String, String, AssetKind, AssetStatus), u64> = BTreeMap::new();
    for a in book.assets.values() {
        let s = &a.spec;
        *counts.entry((s.site.clone(), s.office.clone(), s.kind, s.status)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((site, office, kind, status), count)| Group { site, office, kind, status, count })
        .collect()
}

/// The licences, soonest expiry first (those that do not expire last).
pub fn licences(book: &AssetBook, today: Day) -> Vec<Licence> {
    let mut out: Vec<Licence> = book
        .assets
        .values()
        .filter(|a| a.spec.kind == AssetKind::Licence)
        .map(|a| Licence {
            tag: a.spec.tag.clone(),
            model: a.spec.model.clone(),
            vendor: a.spec.vendor.clone(),
            seats: a.spec.seats,
            used: a.seat_holders.len() as u32,
            free: a.free_seats(),
            expires: a.spec.expires,
            days_left: a.spec.expires.map(|d| today.days_until(d)),
        })
        .collect();
    out.sort_by_key(|l| (l.days_left.is_none(), l.days_left, l.tag.clone()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::assets::{Asset, AssetSpec};

    fn asset(tag: &str, kind: AssetKind, site: &str, expires: Option<&str>, seats: u32, holders: &[&str]) -> Asset {
        let mut spec = AssetSpec::new(tag, kind);
        spec.site = site.into();
        spec.seats = seats;
        spec.expires = expires.map(|e| e.parse().unwrap());
        Asset {
            spec,
            operator_set: Default::default(),
            discovered: None,
            seat_holders: holders.iter().map(|h| h.to_string()).collect(),
            issues: vec![],
            warned: Default::default(),
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn groups_count_and_licences_sort_by_expiry() {
        let mut book = AssetBook::default();
        for a in [
            asset("A", AssetKind::Hardware, "dc", None, 0, &[]),
            asset("B", AssetKind::Hardware, "dc", None, 0, &[]),
            asset("C", AssetKind::Hardware, "ndc", None, 0, &[]),
            asset("L1", AssetKind::Licence, "dc", Some("2027-06-01"), 10, &["h1", "h2"]),
            asset("L2", AssetKind::Licence, "dc", Some("2027-01-01"), 2, &["h1", "h2"]),
            asset("L3", AssetKind::Licence, "dc", None, 5, &[]),
        ] {
            book.assets.insert(a.spec.tag.clone(), a);
        }
        let g = groups(&book);
        let dc_hw = g.iter().find(|g| g.site == "dc" && g.kind == AssetKind::Hardware).unwrap();
        assert_eq!(dc_hw.count, 2);
        assert_eq!(g.iter().map(|g| g.count).sum::<u64>(), 6);
        let l = licences(&book, "2026-12-07".parse().unwrap());
        let order: Vec<&str> = l.iter().map(|l| l.tag.as_str()).collect();
        assert_eq!(order, ["L2", "L1", "L3"]);
        assert_eq!((l[0].used, l[0].free, l[0].days_left), (2, 0, Some(25)));
    }
}
