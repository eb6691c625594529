//! `triadctl drill run|abort|report|history|summary`: drill runs, started on the leader,
//! followed step by step, stopped, and read back as reports and history.

use std::time::{Duration, Instant};

use serde::Serialize;
use triad_proto::v1 as pb;
use triad_proto::v1::drills_client::DrillsClient;
use triad_proto::words::format_utc;

use super::report::Report;
use super::{CheckLine, CheckReport};
use crate::ctl::client::Client;
use crate::error::{Error, Result};
use crate::state::drills::DrillRun;

/// What `drill run` got back: a run started, or the pre-checks that refused it.
#[derive(Debug, Clone, Serialize)]
pub struct RunStart {
    pub plan: String,
    pub started: bool,
    /// The run's id (0 when refused).
    pub id: u64,
    pub checks: Vec<CheckLine>,
}

/// `drill run PLAN`, asked of the leader.
pub async fn run(client: &Client, plan: &str, override_alerts: &str) -> Result<RunStart> {
    let req = pb::DrillRunRequest { plan: plan.into(), override_alerts: override_alerts.into() };
    let r = client
        .on_leader_of(DrillsClient::new, |mut c| {
            let req = req.clone();
            async move { c.run(req).await }
        })
        .await?;
    let checks = r
        .checks
        .into_iter()
        .map(|c| CheckLine { name: c.name, ok: c.ok, detail: c.detail, overridden: c.overridden })
        .collect();
    Ok(RunStart { plan: r.plan, started: r.started, id: r.id, checks })
}

/// The refusal's table: the pre-checks, as `drill check` shows them.
pub fn render_refusal(r: &RunStart) -> String {
    super::render_check(&CheckReport { plan: r.plan.clone(), passes: false, checks: r.checks.clone() })
}

/// `drill report ID`: the run as recorded (by any controller; a follower's may trail).
pub async fn report(client: &Client, id: u64) -> Result<Report> {
    let r = client.drills().await?.report(pb::DrillReportRequest { id }).await?.into_inner();
    let run: DrillRun = serde_json::from_str(&r.run_json)
        .map_err(|e| Error::InvalidArgument(format!("the controller's report of drill {id} does not read: {e}")))?;
    Ok(Report::of(run))
}

/// How often `--watch` looks, and how long it keeps trying when no controller answers.
const WATCH_EVERY: Duration = Duration::from_millis(300);
const WATCH_UNREACHABLE: Duration = Duration::from_secs(60);

/// Follows run `id` until it ends, handing each new line of progress to `say`; returns the
/// final report.
pub async fn watch(client: &Client, id: u64, say: &mut dyn FnMut(String)) -> Result<Report> {
    let mut seen = Progress::default();
    let mut unreachable_since: Option<Instant> = None;
    loop {
        match report(client, id).await {
            Ok(r) => {
                unreachable_since = None;
                for line in seen.news(&r.run) {
                    say(line);
                }
                if r.run.end.is_some() {
                    return Ok(r);
                }
            }
            // A leader change while the drill runs: the controllers answer again shortly.
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= WATCH_UNREACHABLE {
                    return Err(e);
                }
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// What `--watch` printed so far.
#[derive(Default)]
struct Progress {
    begun: usize,
    ended: usize,
    legs: usize,
    copy: bool,
    abort: bool,
}

impl Progress {
    fn news(&mut self, run: &DrillRun) -> Vec<String> {
        let at = |ms: u64| format!("+{:>6.1} s", ms.saturating_sub(run.started_ms) as f64 / 1000.0);
        let mut out = Vec::new();
        for (i, s) in run.steps.iter().enumerate() {
            if i >= self.begun {
                out.push(format!("{} {:<14} started  {}", at(s.started_ms), s.kind, s.note));
                self.begun = i + 1;
            }
            if let (true, Some(end), Some(ok)) = (i >= self.ended, s.ended_ms, s.ok) {
                let verdict = if ok { "ok" } else { "FAILED" };
                out.push(format!("{} {:<14} {verdict:<8} {}", at(end), s.kind, s.note));
                self.ended = i + 1;
            }
        }
        for l in run.legs.iter().skip(self.legs) {
            let ms = |v: Option<u64>| v.map_or("not measured".into(), |v| format!("{v} ms"));
            out.push(format!(
                "{} measured       {} → {}: write outage {}, RTO {}, data loss {}",
                at(l.started_ms),
                l.from,
                l.to,
                ms(l.write_outage_ms),
                ms(l.rto_ms),
                ms(l.data_loss_ms)
            ));
        }
        self.legs = run.legs.len();
        if let (false, Some(c)) = (self.copy, &run.copy) {
            let age = c.data_age_ms.map_or("unknown".into(), |ms| format!("{ms} ms"));
            out.push(format!(
                "{} measured       copy {} of {}: usable after {} ms, newest data {age} old",
                at(c.copied_at_ms),
                c.name,
                c.member,
                c.ready_ms
            ));
            self.copy = true;
        }
        if let (false, Some(a)) = (self.abort, &run.abort) {
            out.push(format!("{} abort asked by {}: {}", at(a.at_ms), a.by, a.reason));
            self.abort = true;
        }
        if let Some(e) = &run.end {
            let why = if e.why.is_empty() { String::new() } else { format!(": {}", e.why) };
            out.push(format!("{} drill {} {}{why}", at(e.at_ms), run.id, e.result.as_str().to_uppercase()));
        }
        out
    }
}

/// `drill abort ID --reason R`.
pub async fn abort(client: &Client, id: u64, reason: &str) -> Result<String> {
    let req = pb::DrillAbortRequest { id, reason: reason.into() };
    let r = client.drills().await?.abort(req).await?.into_inner();
    Ok(format!(
        "drill {id}: {} (log index {}); the move under way, if any, finishes or rolls back first",
        r.message, r.log_index
    ))
}

/// A run in `drill history`.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    pub id: u64,
    pub plan: String,
    pub kind: String,
    pub cluster: String,
    pub started_by: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    pub result: String,
    pub why: String,
    pub write_outage_ms: Option<u64>,
    pub rto_ms: Option<u64>,
    pub data_loss_ms: Option<u64>,
    pub step: String,
}

/// `drill history`: newest first, and whether a follower answered.
pub async fn history(client: &Client, plan: &str, limit: u32) -> Result<(Vec<HistoryLine>, bool)> {
    let req = pb::DrillHistoryRequest { plan: plan.into(), limit };
    let r = client.drills().await?.history(req).await?.into_inner();
    let ms = |v: i64| u64::try_from(v).ok();
    let lines = r
        .runs
        .into_iter()
        .map(|s| HistoryLine {
            id: s.id,
            plan: s.plan,
            kind: s.kind,
            cluster: s.cluster,
            started_by: s.started_by,
            started_ms: s.started_ms,
            ended_ms: (s.ended_ms > 0).then_some(s.ended_ms),
            result: s.result,
            why: s.why,
            write_outage_ms: ms(s.write_outage_ms),
            rto_ms: ms(s.rto_ms),
            data_loss_ms: ms(s.data_loss_ms),
            step: s.step,
        })
        .collect();
    Ok((lines, r.stale))
}

fn figure(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The table `drill history` prints.
pub fn render_history(lines: &[HistoryLine], stale: bool) -> String {
    if lines.is_empty() {
        return "no drill has run (triadctl drill run PLAN)\n".into();
    }
    let mut out = format!(
        "{:<5} {:<20} {:<21} {:<23} {:<8} {:>10} {:>8} {:>9}  {}\n",
        "ID", "PLAN", "KIND", "STARTED (UTC)", "RESULT", "OUTAGE_MS", "RTO_MS", "LOSS_MS", "BY / WHY"
    );
    for l in lines {
        let started = triad_proto::words::format_utc_bare(l.started_ms).unwrap_or_default();
        let why = if l.why.is_empty() { l.started_by.clone() } else { format!("{}: {}", l.started_by, l.why) };
        out += &format!(
            "{:<5} {:<20} {:<21} {:<23} {:<8} {:>10} {:>8} {:>9}  {why}\n",
            l.id,
            l.plan,
            l.kind,
            started,
            l.result,
            figure(l.write_outage_ms),
            figure(l.rto_ms),
            figure(l.data_loss_ms)
        );
    }
    if stale {
        out += "(answered by a follower from its applied state)\n";
    }
    out
}

/// One plan in the auditors' summary.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub plan: String,
    pub kind: String,
    pub runs: usize,
    pub passed: usize,
    pub failed: usize,
    pub aborted: usize,
    /// The last passed run: its id and when it ended.
    pub last_success: Option<(u64, u64)>,
    /// The write outage of the plan's last runs that measured one, oldest first.
    pub outage_trend_ms: Vec<u64>,
}

/// How many runs the outage trend shows.
const TREND: usize = 10;

/// `drill summary`: per plan, the last successful run and the trend of the write outage.
pub fn summarise(lines: &[HistoryLine]) -> Vec<PlanSummary> {
    let mut plans: std::collections::BTreeMap<&str, PlanSummary> = Default::default();
    // `lines` is newest first: walk it oldest first.
    for l in lines.iter().rev() {
        let s = plans.entry(&l.plan).or_insert_with(|| PlanSummary {
            plan: l.plan.clone(),
            kind: l.kind.clone(),
            runs: 0,
            passed: 0,
            failed: 0,
            aborted: 0,
            last_success: None,
            outage_trend_ms: Vec::new(),
        });
        s.runs += 1;
        match l.result.as_str() {
            "passed" => {
                s.passed += 1;
                s.last_success = Some((l.id, l.ended_ms.unwrap_or(l.started_ms)));
            }
            "failed" => s.failed += 1,
            "aborted" => s.aborted += 1,
            _ => {}
        }
        if let Some(o) = l.write_outage_ms {
            s.outage_trend_ms.push(o);
            if s.outage_trend_ms.len() > TREND {
                s.outage_trend_ms.remove(0);
            }
        }
    }
    plans.into_values().collect()
}

/// The table `drill summary` prints.
pub fn render_summary(plans: &[PlanSummary]) -> String {
    if plans.is_empty() {
        return "no drill has run (triadctl drill run PLAN)\n".into();
    }
    let mut out = format!(
        "{:<20} {:<21} {:>5} {:>7} {:>7} {:>8}  {:<32} {}\n",
        "PLAN", "KIND", "RUNS", "PASSED", "FAILED", "ABORTED", "LAST SUCCESS", "WRITE OUTAGE TREND (ms, oldest first)"
    );
    for p in plans {
        let last = p.last_success.map_or("never".into(), |(id, at)| format!("#{id} {}", format_utc(at)));
        let trend: Vec<String> = p.outage_trend_ms.iter().map(u64::to_string).collect();
        out += &format!(
            "{:<20} {:<21} {:>5} {:>7} {:>7} {:>8}  {:<32} {}\n",
            p.plan,
            p.kind,
            p.runs,
            p.passed,
            p.failed,
            p.aborted,
            last,
            trend.join(" ")
        );
    }
    out
}
