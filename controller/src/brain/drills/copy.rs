//! A dr-test's isolated copy (issue 21), like SRM's test recovery: the target standby's agent
//! makes a writable copy of it on its own host (a base backup from the standby, started on its
//! own port, replicating to and from nobody: `agents/src/drivers/postgres_copy.rs`), the plan's
//! SQL checks run against the copy, and the copy is destroyed. Production is never touched:
//! the standby keeps streaming and stays a standby, and no role, epoch or setting changes.
//!
//! Measured: RTO is the agent's time from the command to the copy accepting a write; RPO is how
//! old the copy's newest data was when it was taken, from the newest canary row it holds.

use std::time::Duration;

use triad_proto::v1::{agent_command, DestroyCopy, MakeCopy, RunCheck};

use crate::brain::workflow::{command, propose, recorded_cluster};
use crate::brain::WorkflowResult;
use crate::context::Ctx;
use crate::state::drills::{DrCopy, DrillRun, DrillStepKind, ServiceCheck};
use crate::state::services::ServiceKind;
use crate::state::{Actor, Command};

/// How long a copy may take (a base backup of a large database takes a while), and the wait for
/// the agent's answer beyond it.
const MAKE_TIMEOUT: Duration = Duration::from_secs(600);
const ANSWER_MARGIN: Duration = Duration::from_secs(10);
/// A destroy is tried this many times, this far apart, before the step fails (and the runbook
/// says how to remove a copy by hand).
const DESTROY_ATTEMPTS: u32 = 3;
const DESTROY_RETRY: Duration = Duration::from_secs(2);

/// The copy's name on its host: one per run.
pub fn name(run: &DrillRun) -> String {
    format!("drill-{}", run.id)
}

/// The target member's agent.
fn target_agent(ctx: &Ctx, run: &DrillRun) -> WorkflowResult<(String, crate::state::DbCluster)> {
    let c = recorded_cluster(ctx, &run.plan.cluster)?;
    let agent = c.members.get(&run.plan.target).map(|m| m.agent.clone()).ok_or_else(|| {
        crate::brain::WorkflowError::gone(format!("`{}` is no longer a member of `{}`", run.plan.target, c.name))
    })?;
    Ok((agent, c))
}

/// Makes the copy and records it; the step's verdict and note.
pub async fn make(ctx: &Ctx, actor: &Actor, run: &DrillRun) -> WorkflowResult<(bool, String)> {
    let (agent, c) = target_agent(ctx, run)?;
    let order =
        MakeCopy { name: name(run), port: u32::from(run.plan.copy_port), timeout_ms: MAKE_TIMEOUT.as_millis() as u32 };
    let cmd = command(&c.name, c.epoch, c.epoch_index, agent_command::Kind::MakeCopy(order));
    let r = match ctx.bus.call(&agent, cmd, MAKE_TIMEOUT + ANSWER_MARGIN).await {
        Ok(r) => r,
        Err(e) => return Ok((false, format!("the copy of `{}` was not made: {e}", run.plan.target))),
    };
    let Some(report) = r.copy else {
        return Ok((false, format!("`{}`'s agent made no copy it could report ({})", run.plan.target, r.detail)));
    };
    let data_age_ms = report.canary.as_ref().map(|k| report.copied_at_ms.saturating_sub(k.written_ms));
    let copy = DrCopy {
        member: run.plan.target.clone(),
        name: name(run),
        endpoint: report.endpoint,
        ready_ms: report.ready_ms,
        copied_at_ms: report.copied_at_ms,
        data_age_ms,
        detail: report.detail.clone(),
    };
    let note = format!(
        "usable after {} ms; its newest data was {} old ({})",
        copy.ready_ms,
        data_age_ms.map_or("of unknown age (no canary)".into(), |ms| format!("{ms} ms")),
        report.detail
    );
    propose(ctx, actor, Command::RecordDrillCopy { drill: run.id, copy }).await?;
    Ok((true, note))
}

/// Stops and deletes the copy (a few attempts); the step's verdict and note.
pub async fn destroy(ctx: &Ctx, run: &DrillRun) -> (bool, String) {
    let mut last = String::new();
    for attempt in 1..=DESTROY_ATTEMPTS {
        let (agent, c) = match target_agent(ctx, run) {
            Ok(found) => found,
            Err(e) => return (false, e.to_string()),
        };
        let order = agent_command::Kind::DestroyCopy(DestroyCopy { name: name(run) });
        match ctx.bus.call(&agent, command(&c.name, c.epoch, c.epoch_index, order), MAKE_TIMEOUT).await {
            Ok(r) => return (true, r.detail),
            Err(e) => last = format!("attempt {attempt}: {e}"),
        }
        tokio::time::sleep(DESTROY_RETRY).await;
    }
    let how = format!("remove it by hand on `{}`'s host (runbooks/drills.md#a-copy-left-behind)", run.plan.target);
    (false, format!("the copy {} was not destroyed ({last}): {how}", name(run)))
}

/// The plan's SQL services' checks, run by the target's agent against the copy (its query as the
/// agent's own connection, in the member's database). HTTP and TCP services check the production
/// sites, not an isolated copy: recorded as not applicable. The copy has already accepted a
/// write (the agent's own probe) by the time these run.
pub async fn checks(ctx: &Ctx, run: &DrillRun) -> WorkflowResult<Vec<ServiceCheck>> {
    let Some(copy) = run.copy.clone() else {
        return Ok(Vec::new());
    };
    let (agent, c) = target_agent(ctx, run)?;
    let mut out = Vec::new();
    for spec in super::run::plan_services(ctx, run) {
        let check = |ok: bool, detail: String| ServiceCheck {
            step: DrillStepKind::ChecksCopy,
            service: spec.name.clone(),
            group: spec.group,
            ok,
            at_ms: crate::context::now_ms(),
            detail,
        };
        if spec.kind != ServiceKind::Sql {
            out.push(check(true, format!("not applicable: a {} check reaches the production sites", spec.kind)));
            continue;
        }
        let probe = triad_proto::v1::ServiceCheck {
            service: spec.name.clone(),
            kind: spec.kind.to_string(),
            target: copy.endpoint.clone(),
            query: spec.query.clone(),
            expect: spec.expect.clone(),
            interval_ms: spec.interval_ms,
            timeout_ms: spec.timeout_ms,
        };
        let cmd =
            command(&c.name, c.epoch, c.epoch_index, agent_command::Kind::RunCheck(RunCheck { check: Some(probe) }));
        let wait = Duration::from_millis(u64::from(spec.timeout_ms)) + ANSWER_MARGIN;
        let result = ctx.bus.call(&agent, cmd, wait).await;
        out.push(match result {
            Ok(r) => check(true, format!("on the copy: {}", r.detail)),
            Err(e) => check(false, format!("on the copy: {e}")),
        });
    }
    Ok(out)
}
