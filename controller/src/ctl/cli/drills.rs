//! `triadctl drill ...`: drill plans and their pre-checks, and their dispatch to `ctl/drills.rs`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{json, Output};
use crate::ctl::{client, drills};
use crate::Error;

#[derive(Subcommand)]
pub enum DrillCmd {
    /// Every drill plan: its kind, cluster and target.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Define a plan, or change one, from a TOML file written like one `[[drills]]` entry of the
    /// controllers' config (name, kind, cluster, target, [targets], max_lag_ms, services).
    Put {
        /// The plan.
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a plan.
    Delete { name: String },
    /// A plan's pre-checks now: controller quorum, members up, the target's lag, links, no
    /// workflow running, not paused, no unresolved critical alert at the sites involved. Changes
    /// nothing; exits 1 when the drill would be refused.
    Check {
        /// The plan's name.
        plan: String,
        /// Let unresolved critical alerts at the sites involved pass, for this reason (recorded
        /// with the drill).
        #[arg(long, value_name = "REASON")]
        override_alerts: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

pub(super) async fn run_drill(c: &client::Client, cmd: DrillCmd) -> Result<(), Error> {
    match cmd {
        DrillCmd::List { output } => {
            let (lines, stale) = drills::list(c).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", drills::render_list(&lines, stale)),
            }
        }
        DrillCmd::Put { file } => crate::outln!("{}", drills::put(c, &file).await?),
        DrillCmd::Delete { name } => crate::outln!("{}", drills::delete(c, &name).await?),
        DrillCmd::Check { plan, override_alerts, output } => {
            if override_alerts.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(Error::InvalidArgument("--override-alerts needs a reason".into()));
            }
            let report = drills::check(c, &plan, override_alerts.as_deref().unwrap_or_default()).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&report)),
                Output::Table => crate::out!("{}", drills::render_check(&report)),
            }
            if !report.passes {
                let failed: Vec<&str> = report
                    .checks
                    .iter()
                    .filter(|c| !c.ok && c.overridden.is_empty())
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(Error::CheckFailed(format!(
                    "drill plan `{plan}` would be refused: {} failed",
                    failed.join(", ")
                )));
            }
        }
    }
    Ok(())
}
