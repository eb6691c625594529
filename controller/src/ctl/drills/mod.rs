//! `triadctl drill ...`: drill plans (list, define, remove) and their pre-checks, which say, like
//! Data Guard's `VALIDATE DATABASE`, whether a drill could start now and why not; runs and their
//! reports are in `runs.rs` and `report.rs`.

pub mod report;
pub mod runs;

use serde::Serialize;
use triad_proto::v1 as pb;
use triad_proto::v1::drills_client::DrillsClient;

use super::client::Client;
use crate::error::Result;

/// A plan as `drill list -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLine {
    pub name: String,
    pub kind: String,
    pub cluster: String,
    pub target: String,
    /// The whole plan, as a `[[drills]]` entry.
    pub spec_toml: String,
}

/// Every plan, by name, and whether a follower answered.
pub async fn list(client: &Client) -> Result<(Vec<PlanLine>, bool)> {
    let r = client.drills().await?.list_plans(pb::ListDrillPlansRequest {}).await?.into_inner();
    let lines = r
        .plans
        .into_iter()
        .map(|p| PlanLine { name: p.name, kind: p.kind, cluster: p.cluster, target: p.target, spec_toml: p.spec_toml })
        .collect();
    Ok((lines, r.stale))
}

/// The table `drill list` prints.
pub fn render_list(lines: &[PlanLine], stale: bool) -> String {
    if lines.is_empty() {
        return "no drill plans defined (triadctl drill put --file PLAN.toml)\n".into();
    }
    let mut out = format!("{:<24} {:<22} {:<10} {}\n", "PLAN", "KIND", "CLUSTER", "TARGET");
    for p in lines {
        out += &format!("{:<24} {:<22} {:<10} {}\n", p.name, p.kind, p.cluster, p.target);
    }
    if stale {
        out += "(answered by a follower from its applied state)\n";
    }
    out
}

/// `drill put --file`: the plan as TOML, checked by the controllers.
pub async fn put(client: &Client, path: &std::path::Path) -> Result<String> {
    let spec_toml = super::services::read_definition(path)?;
    let r = client.drills().await?.put_plan(pb::PutDrillPlanRequest { spec_toml }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `drill delete`.
pub async fn delete(client: &Client, name: &str) -> Result<String> {
    let r = client.drills().await?.delete_plan(pb::DeleteDrillPlanRequest { name: name.into() }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// One pre-check as `drill check -o json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub overridden: String,
}

/// What `drill check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub plan: String,
    /// Every check passed or was overridden: the drill could start now.
    pub passes: bool,
    pub checks: Vec<CheckLine>,
}

/// `drill check PLAN`, asked of the leader.
pub async fn check(client: &Client, plan: &str, override_alerts: &str) -> Result<CheckReport> {
    let req = pb::DrillCheckRequest { plan: plan.into(), override_alerts: override_alerts.into() };
    let r = client
        .on_leader_of(DrillsClient::new, |mut c| {
            let req = req.clone();
            async move { c.check(req).await }
        })
        .await?;
    let checks = r
        .checks
        .into_iter()
        .map(|c| CheckLine { name: c.name, ok: c.ok, detail: c.detail, overridden: c.overridden })
        .collect();
    Ok(CheckReport { plan: r.plan, passes: r.passes, checks })
}

/// The table `drill check` prints.
pub fn render_check(r: &CheckReport) -> String {
    let mut out = format!("drill plan {}: pre-checks\n", r.plan);
    for c in &r.checks {
        let verdict = match (c.ok, c.overridden.is_empty()) {
            (true, _) => "ok",
            (false, false) => "OVERRIDDEN",
            (false, true) => "FAILED",
        };
        out += &format!("  {verdict:<10} {:<18} {}\n", c.name, c.detail);
        if !c.overridden.is_empty() {
            out += &format!("  {:<10} {:<18} {}\n", "", "", c.overridden);
        }
    }
    out += if r.passes {
        "the drill could start now\n"
    } else {
        "the drill would be refused: fix what FAILED (an unresolved critical alert may be overridden with \
         --override-alerts REASON)\n"
    };
    out
}
