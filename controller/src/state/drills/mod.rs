//! Drill plans (issue 21): what an administration rehearses to prove, on the record, that it can
//! move the customs database between its data centres. A plan names its kind, the cluster and
//! member it moves, the targets a run is judged against and the services it checks; runs and
//! their reports are in `run.rs`.

use serde::{Deserialize, Serialize};

pub mod run;

pub use super::links::InvalidField;
pub use run::{
    Anomaly, Check, CheckName, DrCopy, DrillAbort, DrillEnd, DrillLeg, DrillResult, DrillRun, DrillStep, DrillStepKind,
    ServiceCheck, TargetName, Verdict,
};

crate::named_enum! {
    /// What a drill does.
    pub enum DrillKind: "drill kind" {
        /// Switch over to `target` and back, under live load (e.g. dc→ndc→dc).
        SwitchoverRoundtrip = "switchover-roundtrip",
        /// A non-disruptive test of the remote site: an isolated, writable copy of the `target`
        /// standby is made, checked and destroyed; production replication never stops.
        DrTest = "dr-test",
        /// A real, announced failover to `target` (the synchronous standby) in a maintenance
        /// window: the old primary is fenced and rejoined as in a real outage.
        FailoverRehearsal = "failover-rehearsal",
    }
}

/// What a run is judged against; 0 means "no target".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrillTargets {
    /// Recovery time objective: from the drill's move starting to the database (or the DR copy)
    /// accepting writes again, in milliseconds.
    pub rto_ms: u64,
    /// Recovery point objective: the most data (by age) the move may lose, in milliseconds; a
    /// switchover or a synchronous failover should lose none.
    pub rpo_ms: u64,
    /// The longest write outage the database's users may see, in milliseconds (measured by the
    /// canary writes).
    pub max_write_outage_ms: u64,
}

/// A drill plan as an operator configures it (config `[[drills]]`, or the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillPlan {
    /// Unique name, e.g. `quarterly-ndc`: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `switchover-roundtrip`, `dr-test` or `failover-rehearsal`.
    pub kind: DrillKind,
    /// The database cluster it moves.
    pub cluster: String,
    /// The member it moves to (switchover-roundtrip, failover-rehearsal) or copies (dr-test).
    pub target: String,
    /// `[drills.targets]`: what a run is judged against.
    #[serde(default)]
    pub targets: DrillTargets,
    /// Pre-check: how far behind the primary the target may be, in milliseconds (default 5000).
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    /// The services (`[[services]]` names) whose checks run before and after the move; empty:
    /// every service of the cluster.
    #[serde(default)]
    pub services: Vec<String>,
    /// A plan with no successful run within this many days raises an alert (0: never).
    #[serde(default)]
    pub required_every_days: u32,
    /// dr-test: the port the isolated copy listens on, on the target's host (0: the member's own
    /// port + 100).
    #[serde(default)]
    pub copy_port: u16,
}

fn default_max_lag_ms() -> u64 {
    5_000
}

/// Most plans the state keeps, and most services one names.
pub const MAX_DRILL_PLANS: usize = 100;
pub const MAX_PLAN_SERVICES: usize = 64;

impl DrillPlan {
    /// Checks what does not depend on the rest of the state; errors name the field under `key`.
    pub fn validate(&self, key: &str) -> Result<(), InvalidField> {
        let err = |field: &str, msg: String| Err(InvalidField { key: format!("{key}.{field}"), msg });
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !name_ok(&self.name) {
            return err("name", format!("`{}`: 1 to 64 letters, digits, `-`, `_` or `.`", self.name));
        }
        if !name_ok(&self.cluster) {
            return err("cluster", format!("`{}`: the database cluster it moves is required", self.cluster));
        }
        if !name_ok(&self.target) {
            return err("target", format!("`{}`: the member it moves to or copies is required", self.target));
        }
        let day_ms = 86_400_000;
        for (field, ms) in [
            ("targets.rto_ms", self.targets.rto_ms),
            ("targets.rpo_ms", self.targets.rpo_ms),
            ("targets.max_write_outage_ms", self.targets.max_write_outage_ms),
        ] {
            if ms > day_ms {
                return err(field, format!("{ms} ms is more than a day (0: no target)"));
            }
        }
        if !(1..=3_600_000).contains(&self.max_lag_ms) {
            return err("max_lag_ms", format!("1 to 3600000 (got {})", self.max_lag_ms));
        }
        if self.services.len() > MAX_PLAN_SERVICES {
            return err("services", format!("at most {MAX_PLAN_SERVICES} (got {})", self.services.len()));
        }
        if let Some((i, s)) = self.services.iter().enumerate().find(|(_, s)| !name_ok(s)) {
            return err(&format!("services[{i}]"), format!("`{s}` is not a service name"));
        }
        if self.copy_port != 0 && self.copy_port < 1024 {
            return err("copy_port", format!("0 (the member's port + 100) or 1024 to 65535 (got {})", self.copy_port));
        }
        if self.required_every_days > 3660 {
            return err("required_every_days", format!("0 to 3660 (got {})", self.required_every_days));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) fn plan_for_test(name: &str, kind: DrillKind, target: &str) -> DrillPlan {
    DrillPlan {
        name: name.into(),
        kind,
        cluster: "customs".into(),
        target: target.into(),
        targets: DrillTargets { rto_ms: 5_000, rpo_ms: 0, max_write_outage_ms: 2_000 },
        max_lag_ms: 5_000,
        services: Vec::new(),
        required_every_days: 90,
        copy_port: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_checked_field_by_field() {
        let good = plan_for_test("quarterly-ndc", DrillKind::SwitchoverRoundtrip, "ndc");
        assert_eq!(good.validate("drills[0]"), Ok(()));
        let cases: Vec<(DrillPlan, &str)> = vec![
            (DrillPlan { name: "bad name".into(), ..good.clone() }, "drills[0].name"),
            (DrillPlan { target: String::new(), ..good.clone() }, "drills[0].target"),
            (DrillPlan { max_lag_ms: 0, ..good.clone() }, "drills[0].max_lag_ms"),
            (
                DrillPlan { targets: DrillTargets { rto_ms: u64::MAX, ..good.targets.clone() }, ..good.clone() },
                "drills[0].targets.rto_ms",
            ),
            (DrillPlan { services: vec!["ok".into(), "no way".into()], ..good.clone() }, "drills[0].services[1]"),
            (DrillPlan { required_every_days: 10_000, ..good.clone() }, "drills[0].required_every_days"),
        ];
        for (plan, key) in cases {
            let e = plan.validate("drills[0]").expect_err(key);
            assert_eq!(e.key, key, "{}", e.msg);
        }
    }

    #[test]
    fn kinds_read_and_write_as_configured() {
        let toml = "name = \"dr\"\nkind = \"dr-test\"\ncluster = \"customs\"\ntarget = \"dr\"\n";
        let plan: DrillPlan = toml::from_str(toml).expect("a plan");
        assert_eq!((plan.kind, plan.max_lag_ms, plan.targets.rto_ms), (DrillKind::DrTest, 5_000, 0));
        let bad = toml.replace("dr-test", "fire-drill");
        let e = toml::from_str::<DrillPlan>(&bad).expect_err("an unknown kind");
        assert!(e.to_string().contains("fire-drill"), "{e}");
    }
}
