//! Where applications find the primary, told by the recovery plan (`recovery_plan.rs`) at the
//! same moments as the balancers: a trait from the core, implemented by an edge (Kubernetes:
//! `crate::kubernetes`), so that the brain never speaks an API server's language and its
//! workflows are tested against a fake.
//!
//! Every write carries a [`RouteVersion`]: the epoch and the step. An edge must never let a write
//! with an older version overwrite a newer one (a leader that was replaced, still finishing the
//! role change of its day): the stale write is refused and changes nothing.

use std::fmt;

/// The step of a role change a route write belongs to, in the order they happen at one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteStep {
    /// The primary of this epoch put in (after its promotion).
    In = 1,
    /// The primary of this epoch taken out (before the next one is promoted).
    Out = 2,
    /// The primary of this epoch put back: the role change that took it out was rolled back
    /// before a new epoch (it outranks the take-out it undoes).
    Back = 3,
}

impl RouteStep {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStep::In => "in",
            RouteStep::Out => "out",
            RouteStep::Back => "back",
        }
    }

    pub fn parse(s: &str) -> Option<RouteStep> {
        match s {
            "in" => Some(RouteStep::In),
            "out" => Some(RouteStep::Out),
            "back" => Some(RouteStep::Back),
            _ => None,
        }
    }
}

/// The order of route writes: by epoch, then by step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteVersion {
    pub epoch: u64,
    pub step: RouteStep,
}

impl fmt::Display for RouteVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {} ({})", self.epoch, self.step.as_str())
    }
}

/// What a cluster's routes should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub cluster: String,
    pub version: RouteVersion,
    /// The member writers reach; `None` while it is taken out.
    pub primary: Option<String>,
    /// The site of the primary (of the one taken out, for [`RouteStep::Out`]).
    pub primary_site: String,
    /// The members readers reach.
    pub standbys: Vec<String>,
}

/// Why a route write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The target already holds a newer version: nothing was written.
    #[error("refused as stale: {what} holds {theirs}, newer than this write's {ours}")]
    Stale { what: String, ours: RouteVersion, theirs: RouteVersion },
    /// The API refused it or could not be reached, after the retries.
    #[error("{0}")]
    Api(String),
    /// The configuration does not cover it (no addresses for the cluster...).
    #[error("{0}")]
    Config(String),
}

/// An edge that points applications at a cluster's primary.
#[async_trait::async_trait]
pub trait Router: Send + Sync {
    /// A name for the workflow's record, e.g. `kubernetes`.
    fn name(&self) -> &str;
    /// The site it is recorded at (empty: none in particular).
    fn site(&self) -> &str {
        ""
    }
    /// Writes `route`; returns what it did (or would do, in a dry run).
    async fn apply(&self, route: &Route) -> Result<String, RouteError>;
}

/// What `c`'s routes say while no role change runs: its primary in at its epoch.
pub fn current_route(c: &crate::state::DbCluster) -> Option<Route> {
    let primary = c.primary.clone().filter(|_| c.epoch > 0)?;
    Some(Route {
        cluster: c.name.clone(),
        version: RouteVersion { epoch: c.epoch, step: RouteStep::In },
        primary_site: c.members.get(&primary).map(|m| m.site.clone()).unwrap_or_default(),
        standbys: c.members.keys().filter(|m| **m != primary).cloned().collect(),
        primary: Some(primary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_out_outranks_the_put_in_of_its_epoch_and_a_put_back_outranks_both() {
        let v = |epoch, step| RouteVersion { epoch, step };
        assert!(v(3, RouteStep::In) < v(3, RouteStep::Out));
        assert!(v(3, RouteStep::Out) < v(3, RouteStep::Back));
        assert!(v(3, RouteStep::Back) < v(4, RouteStep::In), "a new epoch outranks everything before it");
        for s in [RouteStep::In, RouteStep::Out, RouteStep::Back] {
            assert_eq!(RouteStep::parse(s.as_str()), Some(s));
        }
        assert_eq!(RouteStep::parse("sideways"), None);
    }
}
