//! `triadctl drill ...`: drill plans, their pre-checks, runs and reports, and their dispatch to
//! `ctl/drills/`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{json, Output};
use crate::ctl::drills::{report, runs};
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
    /// Check a plan and, when every pre-check passes, run it on the leader: the steps of its
    /// kind, each recorded, the moves measured by the canary. Prints the run's id at once, or with
    /// --watch follows it step by step to its end (exit 1 unless it passed). A refused run
    /// changes nothing and exits 1 with the failed pre-checks.
    ///
    /// Example: triadctl drill run quarterly-ndc --watch
    Run {
        plan: String,
        /// Follow the run to its end, a line per step.
        #[arg(long)]
        watch: bool,
        /// Let unresolved critical alerts at the sites involved pass, for this reason.
        #[arg(long, value_name = "REASON")]
        override_alerts: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop a run: the move under way, if any, finishes or rolls back first; no new move
    /// starts. The cluster is left with one primary and its standbys following it
    /// (runbooks/drills.md#abort).
    ///
    /// Example: triadctl drill abort 7 --reason "customs release at 14:00"
    Abort {
        id: u64,
        /// Why (recorded in the report).
        #[arg(long)]
        reason: String,
    },
    /// A run's report: plan, who started it, pre-checks, steps, measured moves, services,
    /// targets with pass/fail, alerts raised meanwhile.
    ///
    /// Example: triadctl drill report 7 -o html > drill-7.html
    Report {
        id: u64,
        #[arg(short, long, value_enum, default_value = "text")]
        output: ReportFormat,
    },
    /// The runs, newest first, with their result and figures.
    History {
        /// Only this plan's runs.
        #[arg(long)]
        plan: Option<String>,
        /// The newest this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// For auditors: per plan, the runs and their results, the last successful one, and the
    /// trend of the write outage.
    Summary {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// The forms of a drill report.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Html,
    Md,
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
        DrillCmd::Run { plan, watch, override_alerts, output } => {
            if override_alerts.as_deref().is_some_and(|r| r.trim().is_empty()) {
                return Err(Error::InvalidArgument("--override-alerts needs a reason".into()));
            }
            run_and_watch(c, &plan, watch, override_alerts.as_deref().unwrap_or_default(), output).await?
        }
        DrillCmd::Abort { id, reason } => {
            if reason.trim().is_empty() {
                return Err(Error::InvalidArgument("--reason must say why".into()));
            }
            crate::outln!("{}", runs::abort(c, id, &reason).await?)
        }
        DrillCmd::Report { id, output } => {
            let r = runs::report(c, id).await?;
            match output {
                ReportFormat::Json => crate::outln!("{}", json(&r)),
                ReportFormat::Text => crate::out!("{}", report::text(&r)),
                ReportFormat::Md => crate::out!("{}", report::markdown(&r)),
                ReportFormat::Html => crate::out!("{}", report::html(&r)),
            }
        }
        DrillCmd::History { plan, limit, output } => {
            let (lines, stale) = runs::history(c, plan.as_deref().unwrap_or_default(), limit).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&lines)),
                Output::Table => crate::out!("{}", runs::render_history(&lines, stale)),
            }
        }
        DrillCmd::Summary { output } => {
            let (lines, _) = runs::history(c, "", 1_000).await?;
            let plans = runs::summarise(&lines);
            match output {
                Output::Json => crate::outln!("{}", json(&plans)),
                Output::Table => crate::out!("{}", runs::render_summary(&plans)),
            }
        }
    }
    Ok(())
}

/// `drill run`: refused (exit 1, the failed checks), started (its id), or followed to its end
/// (exit 1 unless it passed).
async fn run_and_watch(
    c: &client::Client,
    plan: &str,
    watch: bool,
    override_alerts: &str,
    output: Output,
) -> Result<(), Error> {
    let start = runs::run(c, plan, override_alerts).await?;
    if !start.started {
        match output {
            Output::Json => crate::outln!("{}", json(&start)),
            Output::Table => crate::out!("{}", runs::render_refusal(&start)),
        }
        let failed: Vec<&str> =
            start.checks.iter().filter(|c| !c.ok && c.overridden.is_empty()).map(|c| c.name.as_str()).collect();
        return Err(Error::CheckFailed(format!("drill plan `{plan}` refused: {} failed", failed.join(", "))));
    }
    if !watch {
        match output {
            Output::Json => crate::outln!("{}", json(&start)),
            Output::Table => crate::outln!(
                "drill {} of plan {plan} started; follow it with `triadctl drill report {}` (or run with --watch)",
                start.id,
                start.id
            ),
        }
        return Ok(());
    }
    if matches!(output, Output::Table) {
        crate::outln!("drill {} of plan {plan} started", start.id);
    }
    let mut say = |line: String| {
        if matches!(output, Output::Table) {
            crate::outln!("{line}");
        }
    };
    let r = runs::watch(c, start.id, &mut say).await?;
    if matches!(output, Output::Json) {
        crate::outln!("{}", json(&r));
    }
    if r.result != "passed" {
        let why = r.run.end.as_ref().map(|e| e.why.clone()).unwrap_or_default();
        return Err(Error::CheckFailed(format!("drill {} {}: {why}", start.id, r.result)));
    }
    Ok(())
}
