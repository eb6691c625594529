//! A drill's run and its report (issue 21): the pre-checks that let it start, each step with its
//! start, end and result, the measured legs (write outage, RTO, data-loss window), the services'
//! checks, and the verdict against the plan's targets. The state decides the verdict from what was
//! recorded, so a run that missed a target or was not measured can never be reported as passed.

use serde::{Deserialize, Serialize};

use super::{DrillKind, DrillPlan};

crate::named_enum! {
    /// What a pre-check looks at.
    pub enum CheckName: "drill pre-check" {
        /// Every voting controller acknowledges the leader and keeps up with its log.
        Quorum = "controller-quorum",
        /// Every member of the cluster reports its server up, at the cluster's epoch.
        MembersUp = "members-up",
        /// The target is close enough behind the primary (the plan's `max_lag_ms`).
        TargetLag = "target-lag",
        /// Every link that carries the cluster between the sites involved is up.
        Links = "links",
        /// No workflow runs on the cluster.
        NoWorkflow = "no-workflow",
        /// The cluster is not paused for maintenance.
        NotPaused = "not-paused",
        /// No unresolved critical alert concerns the sites involved (overridable with a reason).
        NoCriticalAlert = "no-critical-alert",
    }
}

/// One pre-check's verdict, as shown and as recorded with the run it let start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: CheckName,
    pub ok: bool,
    /// What was found, in words (why it failed, or what passed).
    pub detail: String,
    /// A failure the operator overrode, with their reason: it no longer refuses the drill.
    pub overridden: Option<String>,
}

impl Check {
    /// Whether it lets the drill start (passed, or overridden).
    pub fn passes(&self) -> bool {
        self.ok || self.overridden.is_some()
    }
}

crate::named_enum! {
    /// A step of a drill, in the order its kind runs them.
    pub enum DrillStepKind: "drill step" {
        /// The plan's application checks, before anything moves.
        ChecksBefore = "checks-before",
        /// The switchover to the plan's target.
        SwitchOver = "switchover",
        /// The application checks against the target as the primary.
        ChecksThere = "checks-there",
        /// The switchover back to the member that was the primary when the drill started.
        SwitchBack = "switch-back",
        /// The application checks once the original primary serves again.
        ChecksBack = "checks-back",
        /// dr-test: an isolated, writable copy of the target standby is made on its host.
        CopyMake = "copy-make",
        /// dr-test: the application's SQL checks against the copy.
        ChecksCopy = "checks-copy",
        /// dr-test: the copy is stopped and deleted (also after a failure or an abort).
        CopyDestroy = "copy-destroy",
        /// failover-rehearsal: the primary's server is stopped at once, as a lost site's would be.
        FailPrimary = "fail-primary",
        /// failover-rehearsal: the automatic failover, as the detector starts it.
        AwaitFailover = "failover",
        /// failover-rehearsal: the old primary rejoins as a standby, as it would after an outage.
        AwaitRejoin = "rejoin",
    }
}

impl DrillStepKind {
    /// The steps a drill of `kind` runs, in order.
    pub fn sequence(kind: DrillKind) -> &'static [DrillStepKind] {
        use DrillStepKind::*;
        match kind {
            DrillKind::SwitchoverRoundtrip => &[ChecksBefore, SwitchOver, ChecksThere, SwitchBack, ChecksBack],
            DrillKind::DrTest => &[ChecksBefore, CopyMake, ChecksCopy, CopyDestroy],
            DrillKind::FailoverRehearsal => {
                &[ChecksBefore, FailPrimary, AwaitFailover, AwaitRejoin, ChecksThere, SwitchBack, ChecksBack]
            }
        }
    }

    /// Whether the step's record is a leg: a move of the primary by a workflow.
    pub fn records_leg(self) -> bool {
        self.moves() || self == DrillStepKind::AwaitFailover
    }

    /// Whether it is a step of application checks.
    pub fn checks(self) -> bool {
        matches!(
            self,
            DrillStepKind::ChecksBefore
                | DrillStepKind::ChecksThere
                | DrillStepKind::ChecksBack
                | DrillStepKind::ChecksCopy
        )
    }

    /// Whether the step moves the primary (a recorded switchover workflow).
    pub fn moves(self) -> bool {
        matches!(self, DrillStepKind::SwitchOver | DrillStepKind::SwitchBack)
    }
}

crate::named_enum! {
    /// How a drill ended.
    pub enum DrillResult: "drill result" {
        /// Every step succeeded and every target was met, measured.
        Passed = "passed",
        /// A step failed, or a target was missed or not measured.
        Failed = "failed",
        /// Stopped by `triadctl drill abort`.
        Aborted = "aborted",
    }
}

crate::named_enum! {
    /// What a run is judged against.
    pub enum TargetName: "drill target" {
        /// The longest write outage of a move (canary: last write before it to first after).
        MaxWriteOutage = "max-write-outage",
        /// Recovery time: from a move's start to the database accepting writes again.
        Rto = "rto",
        /// Recovery point: the data a move lost, by age.
        Rpo = "rpo",
    }
}

/// One step of a run: begun, then ended with its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillStep {
    pub kind: DrillStepKind,
    pub started_ms: u64,
    /// When it ended, and whether it succeeded; `None` while it runs (or was left running by a
    /// leader that died: the next one resumes it).
    pub ended_ms: Option<u64>,
    pub ok: Option<bool>,
    /// What it did or found, in words.
    pub note: String,
}

/// One service's check at one step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceCheck {
    pub step: DrillStepKind,
    pub service: String,
    /// Its recovery group (1 first).
    pub group: u32,
    pub ok: bool,
    /// When it answered (or was given up on).
    pub at_ms: u64,
    pub detail: String,
}

/// One move of the primary in a run, as measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillLeg {
    pub step: DrillStepKind,
    /// The switchover workflow that carried it.
    pub workflow: u64,
    pub from: String,
    pub to: String,
    /// The workflow's start, and its outcome as recorded.
    pub started_ms: u64,
    pub outcome: String,
    /// Whether the primary moved (the workflow completed, possibly with errors, rather than
    /// rolling back).
    pub moved: bool,
    /// Canary: from the last row the old primary wrote to the first the new one wrote.
    pub write_outage_ms: Option<u64>,
    /// From `started_ms` to the new primary's first canary row.
    pub rto_ms: Option<u64>,
    /// The data lost, by age: 0 when the target held the old primary's final position before it
    /// was promoted (the workflow's `caught-up` step).
    pub data_loss_ms: Option<u64>,
    /// The services' checks the role change ran once the new primary served, with when each
    /// came back (ms after the promote).
    pub services_back: Vec<ServiceCheck>,
}

/// A dr-test's isolated copy, as measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrCopy {
    /// The member copied, and the copy's name on its host (`drill-7`).
    pub member: String,
    pub name: String,
    /// How to reach the copy (the driver's connection keywords, on its own port).
    pub endpoint: String,
    /// RTO: from the copy command's start to the copy accepting a write.
    pub ready_ms: u64,
    /// When its data was taken (ms since the Unix epoch).
    pub copied_at_ms: u64,
    /// RPO: how old the newest data in the copy was when it was taken (its newest canary row);
    /// `None` when the copy holds no canary.
    pub data_age_ms: Option<u64>,
    /// The agent's account of the steps.
    pub detail: String,
}

/// An alert raised while the run went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomaly {
    pub alert: u64,
    pub severity: String,
    pub title: String,
    pub site: String,
    pub at_ms: u64,
}

/// An operator's request to stop a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillAbort {
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillEnd {
    pub at_ms: u64,
    pub result: DrillResult,
    /// Why, in words: what failed or which target was missed; empty when it passed.
    pub why: String,
    /// The alerts raised between its start and its end (the first [`MAX_ANOMALIES`]).
    pub anomalies: Vec<Anomaly>,
    /// Where the cluster was left: its primary.
    pub primary: String,
}

/// A target's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub target: TargetName,
    pub limit_ms: u64,
    /// The worst of the run's legs; `None`: not measured (which fails the target).
    pub measured_ms: Option<u64>,
    pub pass: bool,
}

/// A drill run: what the report is made of. Bounded: [`MAX_STEPS`] steps, [`MAX_CHECKS`] checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRun {
    pub id: u64,
    /// The plan as it was when the run started.
    pub plan: DrillPlan,
    /// Who started it (a certificate's name, or the schedule).
    pub started_by: String,
    pub started_ms: u64,
    /// The primary when it started: a roundtrip returns there.
    pub origin: String,
    pub prechecks: Vec<Check>,
    pub steps: Vec<DrillStep>,
    pub legs: Vec<DrillLeg>,
    pub checks: Vec<ServiceCheck>,
    /// dr-test: the copy made.
    #[serde(default)]
    pub copy: Option<DrCopy>,
    pub abort: Option<DrillAbort>,
    pub end: Option<DrillEnd>,
}

/// Most steps, checks and anomalies one run records.
pub const MAX_STEPS: usize = 64;
pub const MAX_CHECKS: usize = 512;
pub const MAX_ANOMALIES: usize = 50;
/// Most runs the state keeps (the oldest finished ones go first).
pub const MAX_RUNS: usize = 1_000;

impl DrillRun {
    /// The worst of the legs by `f`; `None` when there is no leg or one was not measured.
    fn worst(&self, f: impl Fn(&DrillLeg) -> Option<u64>) -> Option<u64> {
        let moved: Vec<&DrillLeg> = self.legs.iter().filter(|l| l.moved).collect();
        if moved.is_empty() {
            return None;
        }
        moved.into_iter().map(f).try_fold(0, |worst, v| Some(worst.max(v?)))
    }

    /// The longest write outage of its moves.
    pub fn write_outage_ms(&self) -> Option<u64> {
        self.worst(|l| l.write_outage_ms)
    }

    /// The longest recovery time of its moves; a dr-test's: until its copy accepted a write.
    pub fn rto_ms(&self) -> Option<u64> {
        match self.plan.kind {
            DrillKind::DrTest => self.copy.as_ref().map(|c| c.ready_ms),
            _ => self.worst(|l| l.rto_ms),
        }
    }

    /// The largest data-loss window of its moves; a dr-test's: the age of its copy's newest data.
    pub fn data_loss_ms(&self) -> Option<u64> {
        match self.plan.kind {
            DrillKind::DrTest => self.copy.as_ref().and_then(|c| c.data_age_ms),
            _ => self.worst(|l| l.data_loss_ms),
        }
    }

    /// Each target the plan sets (0: none) against what was measured.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let t = &self.plan.targets;
        [
            (TargetName::MaxWriteOutage, t.max_write_outage_ms, self.write_outage_ms()),
            (TargetName::Rto, t.rto_ms, self.rto_ms()),
            // An RPO of 0 is a target too (a move must lose nothing): judged always, but for a
            // dr-test, whose copy of an asynchronous standby is always a little behind.
            (TargetName::Rpo, t.rpo_ms, self.data_loss_ms()),
        ]
        .into_iter()
        .filter(|(name, limit, _)| match self.plan.kind {
            // A dr-test moves nothing: production sees no write outage to judge.
            DrillKind::DrTest => *limit > 0 && *name != TargetName::MaxWriteOutage,
            _ => *limit > 0 || *name == TargetName::Rpo,
        })
        .map(|(target, limit_ms, measured_ms)| Verdict {
            target,
            limit_ms,
            measured_ms,
            pass: measured_ms.is_some_and(|m| m <= limit_ms),
        })
        .collect()
    }

    /// The step under way, if one is.
    pub fn open_step(&self) -> Option<&DrillStep> {
        self.steps.last().filter(|s| s.ended_ms.is_none())
    }

    /// How a run that reached its end (or was stopped) is judged: aborted when asked to stop,
    /// failed with the first failed step or missed target, else passed.
    pub fn judge(&self, failure: Option<&str>) -> (DrillResult, String) {
        if let Some(a) = &self.abort {
            return (DrillResult::Aborted, format!("aborted by {}: {}", a.by, a.reason));
        }
        if let Some(why) = failure {
            return (DrillResult::Failed, why.to_string());
        }
        if let Some(s) = self.steps.iter().find(|s| s.ok == Some(false)) {
            return (DrillResult::Failed, format!("step {} failed: {}", s.kind, s.note));
        }
        let done: Vec<DrillStepKind> = self.steps.iter().filter(|s| s.ok == Some(true)).map(|s| s.kind).collect();
        let due = DrillStepKind::sequence(self.plan.kind);
        if let Some(missing) = due.iter().find(|k| !done.contains(k)) {
            return (DrillResult::Failed, format!("step {missing} did not run"));
        }
        let missed: Vec<String> = self
            .verdicts()
            .into_iter()
            .filter(|v| !v.pass)
            .map(|v| match v.measured_ms {
                Some(m) => format!("{} {m} ms > {} ms", v.target, v.limit_ms),
                None => format!("{} not measured", v.target),
            })
            .collect();
        if !missed.is_empty() {
            return (DrillResult::Failed, format!("targets missed: {}", missed.join(", ")));
        }
        (DrillResult::Passed, String::new())
    }
}
