//! IT assets (issue 18): hardware, software and licences by site and office, as the
//! administration's asset register keeps them, with the hosts the agents discover kept in step
//! (never over a field an operator set), licence seats, an issue log per asset, and the warnings
//! raised once per lead time before something expires.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

crate::named_enum! {
    /// What an asset is.
    pub enum AssetKind: "asset kind" {
        Hardware = "hardware",
        Software = "software",
        Licence = "licence",
    }
}

crate::named_enum! {
    /// Where an asset stands.
    pub enum AssetStatus: "asset status" {
        InUse = "in-use",
        InStock = "in-stock",
        InRepair = "in-repair",
        Retired = "retired",
    }
}

crate::named_enum! {
    /// The fields of an asset an operator can set (and discovery then leaves alone).
    pub enum AssetField: "asset field" {
        Kind = "kind",
        Serial = "serial",
        Model = "model",
        Vendor = "vendor",
        Site = "site",
        Office = "office",
        Assignee = "assignee",
        Status = "status",
        PurchaseDate = "purchase_date",
        WarrantyEnd = "warranty_end",
        EndOfLife = "end_of_life",
        Host = "host",
        Addresses = "addresses",
        Seats = "seats",
        Expires = "expires",
    }
}

crate::named_enum! {
    /// What an asset warning is about.
    pub enum WarningKind: "asset warning" {
        /// A licence's expiry date is within the lead time (or passed).
        LicenceExpiry = "licence-expiry",
        /// A warranty ends within the lead time.
        WarrantyEnd = "warranty-end",
        /// The end-of-life date is within the lead time, or passed.
        EndOfLife = "end-of-life",
        /// Every seat of a licence is taken.
        SeatsExhausted = "seats-exhausted",
    }
}

/// A calendar day (`YYYY-MM-DD`), kept as its Julian day number so that days compare and
/// subtract; stored and shown as the date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Day(i32);

/// A date that is not `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a date (YYYY-MM-DD)")]
pub struct BadDay(pub String);

impl Day {
    /// The day `ms` (since the Unix epoch, UTC) falls on.
    pub fn from_ms(ms: u64) -> Day {
        // 1970-01-01 is Julian day 2440588.
        Day(2_440_588 + (ms / 86_400_000) as i32)
    }

    /// Days from `self` to `later` (negative when `later` is earlier).
    pub fn days_until(self, later: Day) -> i64 {
        i64::from(later.0) - i64::from(self.0)
    }
}

impl std::str::FromStr for Day {
    type Err = BadDay;

    fn from_str(s: &str) -> Result<Day, BadDay> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(s.trim(), format).map(|d| Day(d.to_julian_day())).map_err(|_| BadDay(s.to_string()))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::Date::from_julian_day(self.0) {
            Ok(d) => write!(f, "{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
            Err(_) => write!(f, "julian-{}", self.0),
        }
    }
}

impl From<Day> for String {
    fn from(d: Day) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Day {
    type Error = BadDay;

    fn try_from(s: String) -> Result<Day, BadDay> {
        s.parse()
    }
}

/// An asset's register fields: what an operator or a CSV row gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetSpec {
    /// The asset tag: unique, e.g. `BD-CUS-000123`.
    pub tag: String,
    pub kind: AssetKind,
    pub serial: String,
    pub model: String,
    pub vendor: String,
    pub site: String,
    pub office: String,
    pub assignee: String,
    pub status: AssetStatus,
    pub purchase_date: Option<Day>,
    pub warranty_end: Option<Day>,
    pub end_of_life: Option<Day>,
    /// The host it is (hardware) or runs on (software): how alerts and agents find it.
    pub host: String,
    /// Its addresses, for placing alerts.
    pub addresses: Vec<String>,
    /// Licences: how many seats.
    pub seats: u32,
    /// Licences: when it expires.
    pub expires: Option<Day>,
}

impl AssetSpec {
    /// A blank record of `kind`, in stock.
    pub fn new(tag: &str, kind: AssetKind) -> AssetSpec {
        AssetSpec {
            tag: tag.into(),
            kind,
            serial: String::new(),
            model: String::new(),
            vendor: String::new(),
            site: String::new(),
            office: String::new(),
            assignee: String::new(),
            status: AssetStatus::InStock,
            purchase_date: None,
            warranty_end: None,
            end_of_life: None,
            host: String::new(),
            addresses: Vec::new(),
            seats: 0,
            expires: None,
        }
    }

    /// The fields that hold a value (those a CSV row or a put sets).
    pub fn given(&self) -> BTreeSet<AssetField> {
        use AssetField::*;
        let mut f = BTreeSet::from([Kind, Status]);
        for (field, set) in [
            (Serial, !self.serial.is_empty()),
            (Model, !self.model.is_empty()),
            (Vendor, !self.vendor.is_empty()),
            (Site, !self.site.is_empty()),
            (Office, !self.office.is_empty()),
            (Assignee, !self.assignee.is_empty()),
            (PurchaseDate, self.purchase_date.is_some()),
            (WarrantyEnd, self.warranty_end.is_some()),
            (EndOfLife, self.end_of_life.is_some()),
            (Host, !self.host.is_empty()),
            (Addresses, !self.addresses.is_empty()),
            (Seats, self.seats > 0),
            (Expires, self.expires.is_some()),
        ] {
            if set {
                f.insert(field);
            }
        }
        f
    }

    /// Copies `field` from `from`.
    pub fn copy_field(&mut self, from: &AssetSpec, field: AssetField) {
        use AssetField::*;
        match field {
            Kind => self.kind = from.kind,
            Serial => self.serial = from.serial.clone(),
            Model => self.model = from.model.clone(),
            Vendor => self.vendor = from.vendor.clone(),
            Site => self.site = from.site.clone(),
            Office => self.office = from.office.clone(),
            Assignee => self.assignee = from.assignee.clone(),
            Status => self.status = from.status,
            PurchaseDate => self.purchase_date = from.purchase_date,
            WarrantyEnd => self.warranty_end = from.warranty_end,
            EndOfLife => self.end_of_life = from.end_of_life,
            Host => self.host = from.host.clone(),
            Addresses => self.addresses = from.addresses.clone(),
            Seats => self.seats = from.seats,
            Expires => self.expires = from.expires,
        }
    }
}

/// What an agent discovered of its host (`sysinfo`), as last recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    pub agent: String,
    pub host: String,
    pub site: String,
    pub facts: super::HostFacts,
    pub at_ms: u64,
}

crate::named_enum! {
    /// An asset issue's state.
    pub enum IssueState: "issue state" {
        Open = "open",
        Closed = "closed",
    }
}

/// One entry of an asset's issue log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetIssue {
    pub id: u64,
    pub title: String,
    pub state: IssueState,
    pub assignee: String,
    pub opened_ms: u64,
    pub opened_by: String,
    /// Comments, assignments and closing, oldest first: (when, who, what).
    pub notes: Vec<(u64, String, String)>,
}

/// What is done to an asset's issue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IssueAction {
    Open { title: String },
    Comment { id: u64, text: String },
    Assign { id: u64, to: String },
    Close { id: u64, reason: String },
}

/// An asset with everything Triad keeps about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub spec: AssetSpec,
    /// The fields an operator set: discovery leaves them as they are.
    pub operator_set: BTreeSet<AssetField>,
    /// What the agent on this host last reported of it, for a discovered host.
    pub discovered: Option<Discovered>,
    /// Licences: the hosts holding a seat.
    pub seat_holders: BTreeSet<String>,
    pub issues: Vec<AssetIssue>,
    /// Warnings raised, each once: `kind/lead-days/date`.
    pub warned: BTreeSet<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Asset {
    /// Licences: seats neither held nor counted twice (0 when over-subscribed).
    pub fn free_seats(&self) -> u32 {
        self.spec.seats.saturating_sub(self.seat_holders.len() as u32)
    }
}

/// The assets, by tag, with the counter of issue ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetBook {
    pub assets: BTreeMap<String, Asset>,
    pub last_issue_id: u64,
}

/// Most assets the register keeps in memory (a national administration's register is in the
/// tens of thousands).
pub const MAX_ASSETS: usize = 200_000;

/// The tag a host the agents discover gets when no asset names it: `host:NAME`.
pub fn host_tag(host: &str) -> String {
    format!("host:{host}")
}

/// The key a warning is recorded under, once: `kind/lead-days/date`.
pub fn warned_key(kind: WarningKind, lead_days: u32, date: Day) -> String {
    format!("{kind}/{lead_days}/{date}")
}

/// The fingerprint of an asset warning's alert: one per asset and kind (a nearer lead time
/// raises the same alert again, its severity going up).
pub fn warning_fingerprint(tag: &str, kind: WarningKind) -> String {
    format!("asset/{tag}/{kind}")
}

/// A tag: 1 to 64 printable characters, no spaces or commas.
pub fn tag_ok(tag: &str) -> bool {
    !tag.is_empty() && tag.chars().count() <= 64 && tag.chars().all(|c| c.is_ascii_graphic() && c != ',' && c != '"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_compare_and_count() {
        let a: Day = "2026-12-07".parse().unwrap();
        let b: Day = "2027-01-06".parse().unwrap();
        assert_eq!(a.days_until(b), 30);
        assert_eq!(a.to_string(), "2026-12-07");
        assert_eq!(Day::from_ms(1_796_601_600_000), "2026-12-07".parse().unwrap());
        for bad in ["2026-13-01", "2026-02-30", "07/12/2026", "", "2026-1-1x"] {
            assert!(bad.parse::<Day>().is_err(), "{bad}");
        }
    }
}
