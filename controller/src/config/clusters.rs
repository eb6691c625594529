//! The database clusters and the links between the sites as configured: their types and their
//! validation (names once, known sites, known clusters, sane lag bounds).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{check_name, key_err, known_site, ControllerConfig};
use crate::error::Result;

/// A database cluster as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster name, e.g. `customs`.
    pub name: String,
    /// Its members.
    pub members: Vec<MemberConfig>,
    /// `relaxed` (default): when the synchronous standby is lost, Triad records that and lets the
    /// primary commit asynchronously (automatic failover is then off) until it returns. `strict`:
    /// commits wait for the synchronous standby, and a new primary waits from its first commit
    /// for the standby wanted synchronous in its place.
    #[serde(default = "default_sync_mode")]
    pub synchronous_mode: String,
    /// `[clusters.lag_bounds]`: the replication lag past which the NOC is told.
    #[serde(default)]
    pub lag_bounds: LagBounds,
    /// `[clusters.timeouts]`: how long the workflows wait for this cluster's agents.
    #[serde(default)]
    pub timeouts: WorkflowTimeouts,
}

fn default_sync_mode() -> String {
    "relaxed".into()
}

/// A database cluster member as configured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Member name; by convention the site's name.
    pub name: String,
    /// Site it runs in.
    pub site: String,
    /// Name of the agent on its host.
    pub agent: String,
}

/// The replication lag a standby may reach before the NOC is told (alert rules and dashboards
/// read these from the metrics `triad_db_lag_bound_bytes` and `triad_db_lag_bound_seconds`).
/// They decide nothing in Triad itself: a switchover has its own, stricter, catch-up test.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LagBounds {
    /// A synchronous standby's replay lag, bytes (default 16 MiB): it holds every commit, but
    /// one far behind in replay makes a failover slow.
    pub synchronous_bytes: u64,
    /// A synchronous standby's replay lag, seconds (default 5).
    pub synchronous_seconds: f64,
    /// An asynchronous standby's replay lag, bytes (default 1 GiB).
    pub asynchronous_bytes: u64,
    /// An asynchronous standby's replay lag, seconds (default 300): what a failover to it would
    /// lose at most, the recovery point objective of the remote site.
    pub asynchronous_seconds: f64,
}

impl Default for LagBounds {
    fn default() -> Self {
        LagBounds {
            synchronous_bytes: 16 << 20,
            synchronous_seconds: 5.0,
            asynchronous_bytes: 1 << 30,
            asynchronous_seconds: 300.0,
        }
    }
}

impl LagBounds {
    fn validate(&self, key: &str) -> Result<()> {
        for (field, bytes) in
            [("synchronous_bytes", self.synchronous_bytes), ("asynchronous_bytes", self.asynchronous_bytes)]
        {
            if bytes == 0 {
                return Err(key_err(format!("{key}.{field}"), "must be more than 0"));
            }
        }
        for (field, secs) in
            [("synchronous_seconds", self.synchronous_seconds), ("asynchronous_seconds", self.asynchronous_seconds)]
        {
            if !(secs.is_finite() && secs > 0.0) {
                return Err(key_err(format!("{key}.{field}"), format!("`{secs}` is not a positive number of seconds")));
            }
        }
        Ok(())
    }
}

/// How long the workflows wait for a cluster's agents, sized for its database. The defaults
/// suit PostgreSQL on a database of the demo's size; an Oracle `SHUTDOWN IMMEDIATE` that rolls
/// back long transactions, or a `REINSTATE DATABASE`, needs more (B7 of
/// docs/oracle-data-guard.md). A step that outlives its time fails and the workflow rolls back
/// or reports it, so too short a time costs a role change, never safety.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowTimeouts {
    /// One step of a workflow on one agent: stopping the primary, the target's catch-up, a
    /// restart, a repoint, a change of the synchronous set, the old primary's rejoin inside a
    /// switchover (milliseconds, default 30000).
    pub step_ms: u64,
    /// A rejoin of a stopped member on its own (rewind or copy), during which the cluster's
    /// workflow key is held (milliseconds, default 600000).
    pub rejoin_ms: u64,
    /// What a promotion itself is given beyond the vouch hold, the wait for a lease and the
    /// candidate's replay (milliseconds, default 20000).
    pub promote_floor_ms: u64,
}

impl Default for WorkflowTimeouts {
    fn default() -> Self {
        WorkflowTimeouts { step_ms: 30_000, rejoin_ms: 600_000, promote_floor_ms: 20_000 }
    }
}

impl WorkflowTimeouts {
    /// [`WorkflowTimeouts::step_ms`] as a duration.
    pub fn step(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.step_ms)
    }

    /// [`WorkflowTimeouts::rejoin_ms`] as a duration.
    pub fn rejoin(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.rejoin_ms)
    }

    /// [`WorkflowTimeouts::promote_floor_ms`] as a duration.
    pub fn promote_floor(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.promote_floor_ms)
    }

    fn validate(&self, key: &str) -> Result<()> {
        let within = |field: &str, ms: u64, min: u64, max: u64| {
            if (min..=max).contains(&ms) {
                Ok(())
            } else {
                Err(key_err(format!("{key}.{field}"), format!("{ms} ms is outside {min}..={max}")))
            }
        };
        within("step_ms", self.step_ms, 1_000, 3_600_000)?;
        within("rejoin_ms", self.rejoin_ms, self.step_ms, 86_400_000)?;
        within("promote_floor_ms", self.promote_floor_ms, 1_000, 3_600_000)
    }
}

impl ControllerConfig {
    /// The time budgets of cluster `name`'s workflows (the defaults for a cluster not configured).
    pub fn timeouts(&self, name: &str) -> WorkflowTimeouts {
        self.clusters.iter().find(|c| c.name == name).map(|c| c.timeouts.clone()).unwrap_or_default()
    }

    /// The database clusters: named once, a known synchronous mode, members named once at known
    /// sites.
    pub(super) fn validate_clusters(&self, sites: &BTreeSet<&str>) -> Result<()> {
        let mut cluster_names = BTreeSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            check_name(&format!("clusters[{i}].name"), &c.name)?;
            if !cluster_names.insert(c.name.as_str()) {
                return Err(key_err(format!("clusters[{i}].name"), format!("cluster `{}` is listed twice", c.name)));
            }
            if c.synchronous_mode != "relaxed" && c.synchronous_mode != "strict" {
                return Err(key_err(
                    format!("clusters[{i}].synchronous_mode"),
                    format!("`{}` is neither `relaxed` nor `strict`", c.synchronous_mode),
                ));
            }
            c.lag_bounds.validate(&format!("clusters[{i}].lag_bounds"))?;
            c.timeouts.validate(&format!("clusters[{i}].timeouts"))?;
            if c.members.is_empty() {
                return Err(key_err(format!("clusters[{i}].members"), "a cluster needs at least one member"));
            }
            let mut members = BTreeSet::new();
            for (j, m) in c.members.iter().enumerate() {
                let key = format!("clusters[{i}].members[{j}]");
                check_name(&format!("{key}.name"), &m.name)?;
                if !members.insert(m.name.as_str()) {
                    return Err(key_err(format!("{key}.name"), format!("member `{}` is listed twice", m.name)));
                }
                known_site(sites, format!("{key}.site"), &m.site)?;
                check_name(&format!("{key}.agent"), &m.agent)?;
            }
        }
        Ok(())
    }
    /// The links: valid definitions, named once, between configured sites, carrying configured
    /// clusters.
    pub(super) fn validate_links(&self, sites: &BTreeSet<&str>) -> Result<()> {
        let clusters: BTreeSet<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut names = BTreeSet::new();
        for (i, l) in self.links.iter().enumerate() {
            let key = format!("links[{i}]");
            l.validate(&key).map_err(|e| key_err(e.key, e.msg))?;
            if !names.insert(l.name.as_str()) {
                return Err(key_err(format!("{key}.name"), format!("link `{}` is listed twice", l.name)));
            }
            for (field, end) in [("a", &l.a), ("b", &l.b)] {
                if !sites.contains(end.as_str()) {
                    return Err(key_err(format!("{key}.{field}"), format!("site `{end}` is not among `sites`")));
                }
            }
            if let Some(c) = l.carries.iter().find(|c| !clusters.contains(c.as_str())) {
                return Err(key_err(format!("{key}.carries"), format!("`{c}` is not among `clusters`")));
            }
        }
        Ok(())
    }

    /// The services: valid definitions, named once, following configured clusters, running at
    /// configured sites.
    pub(super) fn validate_services(&self, sites: &BTreeSet<&str>) -> Result<()> {
        let clusters: BTreeSet<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut names = BTreeSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let key = format!("services[{i}]");
            s.validate(&key).map_err(|e| key_err(e.key, e.msg))?;
            if !names.insert(s.name.as_str()) {
                return Err(key_err(format!("{key}.name"), format!("service `{}` is listed twice", s.name)));
            }
            if !clusters.contains(s.cluster.as_str()) {
                return Err(key_err(format!("{key}.cluster"), format!("`{}` is not among `clusters`", s.cluster)));
            }
            for (j, inst) in s.instances.iter().enumerate() {
                known_site(sites, format!("{key}.instances[{j}].site"), &inst.site)?;
            }
        }
        Ok(())
    }

    /// The drill plans: named once, each moving a member of a configured cluster and checking
    /// services that follow that cluster.
    pub(super) fn validate_drills(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for (i, d) in self.drills.iter().enumerate() {
            let key = format!("drills[{i}]");
            d.validate(&key).map_err(|e| key_err(e.key, e.msg))?;
            if !names.insert(d.name.as_str()) {
                return Err(key_err(format!("{key}.name"), format!("drill plan `{}` is listed twice", d.name)));
            }
            let Some(c) = self.clusters.iter().find(|c| c.name == d.cluster) else {
                return Err(key_err(format!("{key}.cluster"), format!("`{}` is not among `clusters`", d.cluster)));
            };
            if !c.members.iter().any(|m| m.name == d.target) {
                return Err(key_err(
                    format!("{key}.target"),
                    format!("`{}` is not a member of `{}`", d.target, c.name),
                ));
            }
            for (j, s) in d.services.iter().enumerate() {
                if !self.services.iter().any(|x| x.name == *s && x.cluster == d.cluster) {
                    let why = format!("`{s}` is not among the `services` of `{}`", d.cluster);
                    return Err(key_err(format!("{key}.services[{j}]"), why));
                }
            }
        }
        Ok(())
    }
}
