//! The `Drills` service (issue 21): drill plans, defined and read; their pre-checks; runs,
//! started, aborted and reported. Plans and aborts are commands through the proposer, checked by
//! role here and again by the state, and audited; a pre-check and a run's start are asked of the
//! brain ([`Requests::check_drill`], [`Requests::start_drill`]) on the leader.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use triad_proto::v1 as pb;
use triad_proto::v1::drills_server::Drills;

use super::auth::{self, Caller, READERS};
use super::{bounded_text, not_leader};
use crate::brain::drills::{Override, Started};
use crate::brain::{Brain, RequestError, Requests};
use crate::context::Ctx;
use crate::state::drills::{Check, DrillPlan, DrillRun};
use crate::state::{Command, Role};

/// Who may define plans and run their pre-checks.
const OPERATORS: &[Role] = &[Role::Admin, Role::Noc];

/// The longest plan accepted, as TOML.
const MAX_PLAN_BYTES: usize = 16 * 1024;

/// Serves drill plans and their pre-checks, asking the brain `B` for the checks.
pub struct DrillsApi<B = Brain> {
    ctx: Arc<Ctx>,
    brain: B,
}

impl<B: Requests> DrillsApi<B> {
    pub fn new(ctx: Arc<Ctx>, brain: B) -> Self {
        DrillsApi { ctx, brain }
    }

    /// The caller, if it may act on plans (a refusal is audited).
    fn operator<T>(&self, req: &Request<T>, what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, OPERATORS, what)?;
        Ok(caller)
    }

    fn counted<T>(&self, method: &str, result: Result<T, Status>) -> Result<T, Status> {
        self.ctx.metrics.rpc(method, &result);
        result
    }
}

/// A plan from its TOML (one `[[drills]]` entry without the header), checked field by field.
pub fn plan_from_toml(text: &str) -> Result<DrillPlan, Status> {
    if text.len() > MAX_PLAN_BYTES {
        return Err(Status::invalid_argument(format!("a drill plan is at most {MAX_PLAN_BYTES} bytes")));
    }
    let plan: DrillPlan = toml::from_str(text).map_err(|e| Status::invalid_argument(format!("the drill plan: {e}")))?;
    plan.validate("drill").map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(plan)
}

fn plan_record(plan: &DrillPlan) -> pb::DrillPlanRecord {
    pb::DrillPlanRecord {
        name: plan.name.clone(),
        kind: plan.kind.to_string(),
        cluster: plan.cluster.clone(),
        target: plan.target.clone(),
        // A plan has only strings, numbers, lists and tables: it always serialises.
        spec_toml: toml::to_string(plan).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl<B: Requests> Drills for DrillsApi<B> {
    async fn list_plans(
        &self,
        req: Request<pb::ListDrillPlansRequest>,
    ) -> Result<Response<pb::ListDrillPlansReply>, Status> {
        let result =
            auth::caller(&req, &self.ctx.state).and_then(|c| auth::require(&c, READERS, "reading drill plans"));
        let result = result.map(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let plans = g.state.drill_plans.values().map(plan_record).collect();
            Response::new(pb::ListDrillPlansReply { answered_by: self.ctx.id, stale: !self.ctx.is_leader(), plans })
        });
        self.counted("Drills/ListPlans", result)
    }

    async fn put_plan(&self, req: Request<pb::PutDrillPlanRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.operator(&req, "defining drill plans")?;
            let plan = plan_from_toml(&req.into_inner().spec_toml)?;
            super::mutation(&self.ctx, &caller, Command::PutDrillPlan(plan)).await
        }
        .await;
        self.counted("Drills/PutPlan", result)
    }

    async fn delete_plan(
        &self,
        req: Request<pb::DeleteDrillPlanRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.operator(&req, "deleting drill plans")?;
            let name = bounded_text("the plan's name", &req.into_inner().name, 64)?;
            super::mutation(&self.ctx, &caller, Command::DeleteDrillPlan { name }).await
        }
        .await;
        self.counted("Drills/DeletePlan", result)
    }

    async fn check(&self, req: Request<pb::DrillCheckRequest>) -> Result<Response<pb::DrillCheckReply>, Status> {
        let result = (|| {
            let caller = self.operator(&req, "checking a drill")?;
            let r = req.get_ref();
            let plan = bounded_text("the plan's name", &r.plan, 64)?;
            let reason = bounded_text("--override-alerts", &r.override_alerts, 500)?;
            if !self.ctx.is_leader() {
                return Err(not_leader(&self.ctx));
            }
            let by = (!reason.is_empty()).then(|| Override { by: caller.actor().name, reason });
            let checks = match self.brain.check_drill(&plan, by.as_ref()) {
                Ok(checks) => checks,
                Err(RequestError::Refused(why)) => return Err(Status::failed_precondition(why)),
                Err(e) => return Err(Status::internal(e.to_string())),
            };
            let passes = checks.iter().all(|c| c.passes());
            let checks = checks.into_iter().map(precheck_record).collect();
            Ok(Response::new(pb::DrillCheckReply { answered_by: self.ctx.id, plan, passes, checks }))
        })();
        self.counted("Drills/Check", result)
    }

    async fn run(&self, req: Request<pb::DrillRunRequest>) -> Result<Response<pb::DrillRunReply>, Status> {
        let result = async {
            let caller = self.operator(&req, "running a drill")?;
            let r = req.get_ref();
            let plan = bounded_text("the plan's name", &r.plan, 64)?;
            let reason = bounded_text("--override-alerts", &r.override_alerts, 500)?;
            if !self.ctx.is_leader() {
                return Err(not_leader(&self.ctx));
            }
            let by = (!reason.is_empty()).then(|| Override { by: caller.actor().name, reason });
            let reply = |started, id, checks: Vec<Check>| pb::DrillRunReply {
                answered_by: self.ctx.id,
                plan: plan.clone(),
                started,
                id,
                checks: checks.into_iter().map(precheck_record).collect(),
            };
            match self.brain.start_drill(caller.actor(), plan.clone(), by).await {
                Ok(Started::Running(id)) => Ok(Response::new(reply(true, id, Vec::new()))),
                Ok(Started::Refused(checks)) => Ok(Response::new(reply(false, 0, checks))),
                Err(RequestError::Refused(why)) => Err(Status::failed_precondition(why)),
                Err(e) => Err(Status::internal(e.to_string())),
            }
        }
        .await;
        self.counted("Drills/Run", result)
    }

    async fn abort(&self, req: Request<pb::DrillAbortRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.operator(&req, "aborting a drill")?;
            let r = req.into_inner();
            let reason = bounded_text("the reason", &r.reason, 1_000)?;
            if reason.trim().is_empty() {
                return Err(Status::invalid_argument("an abort needs a reason (--reason)"));
            }
            super::mutation(&self.ctx, &caller, Command::AbortDrill { drill: r.id, reason }).await
        }
        .await;
        self.counted("Drills/Abort", result)
    }

    async fn report(&self, req: Request<pb::DrillReportRequest>) -> Result<Response<pb::DrillReportReply>, Status> {
        let result = auth::caller(&req, &self.ctx.state)
            .and_then(|c| auth::require(&c, READERS, "reading drill reports"))
            .and_then(|_| {
                let id = req.get_ref().id;
                let g = self.ctx.state.read().expect("state lock poisoned");
                let run = g.state.drill_runs.get(&id).ok_or_else(|| Status::not_found(format!("no drill {id}")))?;
                let run_json = serde_json::to_string(run).map_err(|e| Status::internal(format!("drill {id}: {e}")))?;
                Ok(Response::new(pb::DrillReportReply {
                    answered_by: self.ctx.id,
                    stale: !self.ctx.is_leader(),
                    run_json,
                }))
            });
        self.counted("Drills/Report", result)
    }

    async fn history(&self, req: Request<pb::DrillHistoryRequest>) -> Result<Response<pb::DrillHistoryReply>, Status> {
        let result = auth::caller(&req, &self.ctx.state)
            .and_then(|c| auth::require(&c, READERS, "reading drill history"))
            .and_then(|_| {
                let r = req.get_ref();
                let plan = bounded_text("--plan", &r.plan, 64)?;
                let limit = if r.limit == 0 { 50 } else { r.limit.min(1_000) } as usize;
                let g = self.ctx.state.read().expect("state lock poisoned");
                let runs = g
                    .state
                    .drill_runs
                    .values()
                    .rev()
                    .filter(|run| plan.is_empty() || run.plan.name == plan)
                    .take(limit)
                    .map(summary)
                    .collect();
                Ok(Response::new(pb::DrillHistoryReply {
                    answered_by: self.ctx.id,
                    stale: !self.ctx.is_leader(),
                    runs,
                }))
            });
        self.counted("Drills/History", result)
    }
}

fn precheck_record(c: Check) -> pb::DrillPrecheck {
    pb::DrillPrecheck {
        name: c.name.to_string(),
        ok: c.ok,
        detail: c.detail,
        overridden: c.overridden.unwrap_or_default(),
    }
}

/// A run in short, for the history.
pub fn summary(run: &DrillRun) -> pb::DrillRunSummary {
    let ms = |v: Option<u64>| v.map_or(-1, |v| v.min(i64::MAX as u64) as i64);
    pb::DrillRunSummary {
        id: run.id,
        plan: run.plan.name.clone(),
        kind: run.plan.kind.to_string(),
        cluster: run.plan.cluster.clone(),
        started_by: run.started_by.clone(),
        started_ms: run.started_ms,
        ended_ms: run.end.as_ref().map_or(0, |e| e.at_ms),
        result: run.end.as_ref().map_or("running".to_string(), |e| e.result.to_string()),
        why: run.end.as_ref().map(|e| e.why.clone()).unwrap_or_default(),
        write_outage_ms: ms(run.write_outage_ms()),
        rto_ms: ms(run.rto_ms()),
        data_loss_ms: ms(run.data_loss_ms()),
        step: run.steps.last().map(|s| s.kind.to_string()).unwrap_or_default(),
    }
}
