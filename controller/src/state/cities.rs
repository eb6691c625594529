//! Cities: the sites one disaster takes together (DESIGN.md point 10). `dc` and `ndc` share a city,
//! so an earthquake there removes both their controllers; whether the voters left are still a
//! quorum decides whether anyone can fail over to `dr` that day. Witness controllers (voters with
//! no database) in other cities are how a deployment keeps that quorum: five voters, at most two
//! per city.

use std::collections::BTreeMap;

use super::State;

/// The most voters one city may hold. With five voters, losing any one city then leaves three,
/// a quorum; with three voters (the reference deployment) a city holding two still loses it,
/// which [`CityLoss`] reports.
pub const MAX_VOTERS_PER_CITY: usize = 2;

/// The voters of each city, from (controller id, city) pairs.
pub fn voters_by_city<S: AsRef<str>>(voters: impl IntoIterator<Item = (u64, S)>) -> BTreeMap<String, Vec<u64>> {
    let mut by_city: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (id, city) in voters {
        by_city.entry(city.as_ref().to_string()).or_default().push(id);
    }
    by_city
}

/// A city holding more than [`MAX_VOTERS_PER_CITY`] voters, if any: the refusal to give.
pub fn crowded(by_city: &BTreeMap<String, Vec<u64>>) -> Option<String> {
    let (city, ids) = by_city.iter().find(|(_, ids)| ids.len() > MAX_VOTERS_PER_CITY)?;
    let total: usize = by_city.values().map(Vec::len).sum();
    Some(format!(
        "city `{city}` would hold {} of {total} voters (controllers {}); at most {MAX_VOTERS_PER_CITY} voters per \
         city, so that losing one city can leave a quorum (add the controller elsewhere, or as a witness in \
         another city)",
        ids.len(),
        join(ids)
    ))
}

/// Whether the voters survive the loss of any one city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CityLoss {
    /// Any one city lost leaves a quorum.
    Survivable { voters: usize },
    /// Losing `city` (its voters `lost`) leaves `left` of `voters`, fewer than a quorum.
    NotSurvivable { city: String, lost: Vec<u64>, left: usize, voters: usize },
}

impl CityLoss {
    /// Judges `by_city` (see [`voters_by_city`]): the city whose loss leaves the fewest voters.
    pub fn judge(by_city: &BTreeMap<String, Vec<u64>>) -> CityLoss {
        let voters: usize = by_city.values().map(Vec::len).sum();
        let quorum = voters / 2 + 1;
        match by_city.iter().max_by_key(|(_, ids)| ids.len()) {
            Some((city, ids)) if voters - ids.len() < quorum => {
                CityLoss::NotSurvivable { city: city.clone(), lost: ids.clone(), left: voters - ids.len(), voters }
            }
            _ => CityLoss::Survivable { voters },
        }
    }

    /// One line for status.
    pub fn describe(&self) -> String {
        match self {
            CityLoss::Survivable { voters } => {
                format!("survivable: losing any one city leaves a quorum of the {voters} voters")
            }
            CityLoss::NotSurvivable { city, lost, left, voters } => format!(
                "NOT survivable: losing {city} (controllers {}) leaves {left} of {voters} voters, no quorum to fail \
                 over; add witness controllers in other cities (runbooks/controller-membership.md)",
                join(lost)
            ),
        }
    }
}

fn join(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

impl State {
    /// The city of `site`: as recorded, or the site itself when it is not recorded.
    pub fn city_of<'a>(&'a self, site: &'a str) -> &'a str {
        self.sites.get(site).map(|s| s.city.as_str()).filter(|c| !c.is_empty()).unwrap_or(site)
    }

    /// The recorded voters by city.
    pub fn voters_by_city(&self) -> BTreeMap<String, Vec<u64>> {
        voters_by_city(self.controllers.values().filter(|c| c.voter).map(|c| (c.id, self.city_of(&c.site))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cities(v: &[(u64, &'static str)]) -> BTreeMap<String, Vec<u64>> {
        voters_by_city(v.iter().copied())
    }

    #[test]
    fn three_sites_with_two_in_one_city_do_not_survive_its_loss() {
        let by = cities(&[(1, "dhaka"), (2, "dhaka"), (3, "dr")]);
        assert_eq!(crowded(&by), None);
        assert_eq!(
            CityLoss::judge(&by),
            CityLoss::NotSurvivable { city: "dhaka".into(), lost: vec![1, 2], left: 1, voters: 3 }
        );
        assert!(CityLoss::judge(&by).describe().contains("losing dhaka (controllers 1, 2) leaves 1 of 3"));
    }

    #[test]
    fn five_voters_two_per_city_survive_any_city() {
        let by = cities(&[(1, "dhaka"), (2, "dhaka"), (3, "dr"), (4, "ctg"), (5, "ctg")]);
        assert_eq!(crowded(&by), None);
        assert_eq!(CityLoss::judge(&by), CityLoss::Survivable { voters: 5 });
    }

    #[test]
    fn a_third_voter_in_a_city_is_crowded() {
        let by = cities(&[(1, "dhaka"), (2, "dhaka"), (3, "dr"), (4, "dhaka")]);
        let why = crowded(&by).expect("three in dhaka");
        assert!(why.contains("city `dhaka` would hold 3 of 4 voters (controllers 1, 2, 4)"), "{why}");
    }

    #[test]
    fn no_voters_is_not_a_city_loss_problem() {
        assert_eq!(CityLoss::judge(&BTreeMap::new()), CityLoss::Survivable { voters: 0 });
    }
}
