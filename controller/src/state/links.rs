//! The network links between sites (the `dc`–`ndc` DWDM link, the WAN links to `dr`, the
//! backbone to the custom houses): what each is, what runs over it, and the state the leader
//! last judged it in from its agents' probes (`brain/links.rs`). Only definitions and state
//! transitions are recorded; probe figures are soft state on the controllers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Rejection;

crate::named_enum! {
    /// What kind of circuit a link is.
    pub enum LinkKind: "link kind" {
        /// Dense wavelength-division multiplexing: the dedicated fibre between `dc` and `ndc`.
        Dwdm = "dwdm",
        /// A provider's wide-area circuit (to `dr`, to the custom houses).
        Wan = "wan",
        /// A local network within a campus.
        Lan = "lan",
    }
}

crate::named_enum! {
    /// A link's state as the leader judged it from its probes.
    pub enum LinkState: "link state" {
        /// Not judged yet, or no probe report from either end: treated as not usable.
        Unknown = "unknown",
        Up = "up",
        /// Answers, but slower, lossier or busier than its thresholds allow.
        Degraded = "degraded",
        /// No answer, a device reports the interface down, or loss past the down threshold.
        Down = "down",
    }
}

impl LinkState {
    /// How bad it is, for hysteresis: a worse state is entered quickly, a better one slowly.
    pub fn badness(self) -> u8 {
        match self {
            LinkState::Up => 0,
            LinkState::Degraded => 1,
            LinkState::Unknown => 2,
            LinkState::Down => 3,
        }
    }
}

/// When a link counts as degraded or down, and how long a state must hold before it is
/// recorded. Every field has a default suited to a metro DWDM link; WAN links want larger RTTs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkThresholds {
    /// Mean round-trip time over the probe window above which the link is degraded, in
    /// milliseconds (default 20).
    pub degraded_rtt_ms: f64,
    /// Loss over the probe window (the last 10 s) at or above which it is degraded, in percent
    /// (default 5).
    pub degraded_loss_percent: f64,
    /// Jitter (mean difference between successive round trips) above which it is degraded, in
    /// milliseconds (default 10).
    pub degraded_jitter_ms: f64,
    /// Utilisation of the busier direction, from SNMP, above which it is degraded, in percent
    /// (default 90; only where a device is polled).
    pub degraded_utilisation_percent: f64,
    /// Interface input errors per second, from SNMP, above which it is degraded (default 10).
    pub degraded_errors_per_second: f64,
    /// Loss at or above which it is down, in percent (default 50).
    pub down_loss_percent: f64,
    /// No probe answered for this long: down, in milliseconds (default 1500).
    pub down_silence_ms: u64,
    /// A worse state is recorded once it has held this long, in milliseconds (default 1000).
    pub worse_after_ms: u64,
    /// A better state is recorded once it has held this long, in milliseconds (default 5000):
    /// the hysteresis that keeps a flapping link from raising an alert each flap.
    pub better_after_ms: u64,
}

impl Default for LinkThresholds {
    fn default() -> Self {
        LinkThresholds {
            degraded_rtt_ms: 20.0,
            degraded_loss_percent: 5.0,
            degraded_jitter_ms: 10.0,
            degraded_utilisation_percent: 90.0,
            degraded_errors_per_second: 10.0,
            down_loss_percent: 50.0,
            down_silence_ms: 1500,
            worse_after_ms: 1000,
            better_after_ms: 5000,
        }
    }
}

impl LinkThresholds {
    /// Errors naming the field under `key` (e.g. `links[0].thresholds`).
    pub fn validate(&self, key: &str) -> Result<(), InvalidField> {
        let err = |field: &str, msg: String| InvalidField { key: format!("{key}.{field}"), msg };
        let finite = [
            ("degraded_rtt_ms", self.degraded_rtt_ms),
            ("degraded_loss_percent", self.degraded_loss_percent),
            ("degraded_jitter_ms", self.degraded_jitter_ms),
            ("degraded_utilisation_percent", self.degraded_utilisation_percent),
            ("degraded_errors_per_second", self.degraded_errors_per_second),
            ("down_loss_percent", self.down_loss_percent),
        ];
        for (name, v) in finite {
            if !v.is_finite() || v <= 0.0 {
                return Err(err(name, format!("must be a number above 0 (got {v})")));
            }
        }
        for (name, v) in [
            ("degraded_loss_percent", self.degraded_loss_percent),
            ("degraded_utilisation_percent", self.degraded_utilisation_percent),
            ("down_loss_percent", self.down_loss_percent),
        ] {
            if v > 100.0 {
                return Err(err(name, format!("a percentage, at most 100 (got {v})")));
            }
        }
        if self.down_loss_percent <= self.degraded_loss_percent {
            let msg = format!(
                "{} must be above degraded_loss_percent ({})",
                self.down_loss_percent, self.degraded_loss_percent
            );
            return Err(err("down_loss_percent", msg));
        }
        if !(100..=600_000).contains(&self.down_silence_ms) {
            return Err(err("down_silence_ms", format!("100 to 600000 (got {})", self.down_silence_ms)));
        }
        if self.worse_after_ms > 600_000 {
            return Err(err("worse_after_ms", format!("at most 600000 (got {})", self.worse_after_ms)));
        }
        if self.better_after_ms > 3_600_000 {
            return Err(err("better_after_ms", format!("at most 3600000 (got {})", self.better_after_ms)));
        }
        Ok(())
    }
}

/// What a link is: the part an operator configures (config `[[links]]` or `triadctl links put`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// Unique name, e.g. `dwdm-dc-ndc`: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// One end: a site (a data centre, a custom house, a witness site).
    pub a: String,
    /// The other end.
    pub b: String,
    /// `dwdm`, `wan` or `lan`.
    pub kind: LinkKind,
    /// Capacity in megabits per second (0: unknown); utilisation is reckoned against it.
    #[serde(default)]
    pub capacity_mbps: u64,
    /// Who provides the circuit.
    #[serde(default)]
    pub provider: String,
    /// The provider's circuit id, for the trouble ticket.
    #[serde(default)]
    pub circuit: String,
    /// The database clusters whose replication runs over it (e.g. `["customs"]`): while it is
    /// not up, a switchover between its ends is refused, and a synchronous standby lost behind
    /// it is explained by it.
    #[serde(default)]
    pub carries: BTreeSet<String>,
    /// The agent that probes from end `a` (empty: the first agent at that site, by name, that
    /// serves probes).
    #[serde(default)]
    pub a_agent: String,
    /// The agent that probes from end `b` (empty: chosen as for `a_agent`).
    #[serde(default)]
    pub b_agent: String,
    /// The network devices at its ends (addresses or host names, e.g. the DWDM muxes and the
    /// routers), so that an alert from one is tied to the link.
    #[serde(default)]
    pub devices: Vec<String>,
    /// How often each end probes the other, in milliseconds (default 200; 50 to 60000).
    #[serde(default = "default_probe_interval")]
    pub probe_interval_ms: u32,
    /// When it counts as degraded or down.
    #[serde(default)]
    pub thresholds: LinkThresholds,
}

fn default_probe_interval() -> u32 {
    200
}

/// Most links the state keeps (the six custom houses, three sites and their redundancy fit
/// many times over).
pub const MAX_LINKS: usize = 1000;

impl LinkSpec {
    /// Checks what does not depend on the rest of the state; errors name the field under `key`.
    pub fn validate(&self, key: &str) -> Result<(), InvalidField> {
        let err = |field: &str, msg: String| InvalidField { key: format!("{key}.{field}"), msg };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(err("name", format!("`{}`: 1 to 64 letters, digits, `-`, `_` or `.`", self.name)));
        }
        for (field, end) in [("a", &self.a), ("b", &self.b)] {
            if end.is_empty() {
                return Err(err(field, "both ends of a link are required".into()));
            }
        }
        if self.a == self.b {
            return Err(err("b", format!("a link joins two different sites (both ends are `{}`)", self.a)));
        }
        let texts = [
            ("provider", &self.provider),
            ("circuit", &self.circuit),
            ("a_agent", &self.a_agent),
            ("b_agent", &self.b_agent),
        ];
        for (field, text) in texts {
            if text.len() > 200 {
                return Err(err(field, "at most 200 bytes".into()));
            }
        }
        if self.devices.len() > 32 || self.devices.iter().any(|d| d.is_empty() || d.len() > 200) {
            return Err(err("devices", "at most 32, each 1 to 200 characters".into()));
        }
        if !(50..=60_000).contains(&self.probe_interval_ms) {
            return Err(err("probe_interval_ms", format!("50 to 60000 (got {})", self.probe_interval_ms)));
        }
        self.thresholds.validate(&format!("{key}.thresholds"))
    }

    /// Whether it joins sites `x` and `y` (either way round).
    pub fn joins(&self, x: &str, y: &str) -> bool {
        (self.a == x && self.b == y) || (self.a == y && self.b == x)
    }
}

/// A field of a link's definition that is wrong: its key (e.g. `links[0].b`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {msg}")]
pub struct InvalidField {
    pub key: String,
    pub msg: String,
}

/// A link with its recorded state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub spec: LinkSpec,
    pub state: LinkState,
    /// When `state` was recorded (proposer's clock, ms since the Unix epoch).
    pub since_ms: u64,
    /// Why, in words (e.g. `loss 100% over 2.0 s from dc`), empty while unknown.
    pub reason: String,
}

/// The links, by name.
pub type Links = BTreeMap<String, Link>;

/// The fingerprint of a link's own alert: one per link, resolved when it is up again.
pub fn alert_fingerprint(link: &str) -> String {
    format!("link/{link}")
}

/// The name under which Triad's own alerts (links, later assets) are recorded.
pub const TRIAD_SOURCE: &str = "triad";

/// Why a switchover between `from_site` and `to_site` of `cluster` must wait: a link carrying
/// its replication between those sites is not up (issue 18: "a switchover across it is refused
/// with that reason"). A link whose state is unknown counts as not up: a guard without an
/// observation takes the safe side.
pub fn blocking_link<'a>(links: &'a Links, cluster: &str, from_site: &str, to_site: &str) -> Option<&'a Link> {
    links
        .values()
        .filter(|l| l.spec.carries.contains(cluster) && l.spec.joins(from_site, to_site))
        .find(|l| l.state != LinkState::Up)
}

/// A refusal naming the link.
pub fn refusal(link: &Link, cluster: &str) -> Rejection {
    let since = if link.reason.is_empty() { String::new() } else { format!(": {}", link.reason) };
    Rejection::Conflict(format!(
        "link `{}` ({} {}–{}), which carries the replication of `{cluster}`, is {}{since}",
        link.spec.name, link.spec.kind, link.spec.a, link.spec.b, link.state
    ))
}
