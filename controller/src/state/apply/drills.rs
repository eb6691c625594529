//! `State::apply` for drill plans: defined, changed and removed. A plan names a cluster and a
//! member that exist, and services that follow that cluster. Runs: `drill_runs.rs`.

use crate::state::drills::{DrillPlan, MAX_DRILL_PLANS};
use crate::state::{Command, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_drills(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::PutDrillPlan(plan) => (
                format!("put drill plan {} ({} of {} to {})", plan.name, plan.kind, plan.cluster, plan.target),
                self.put_drill_plan(p.actor.role, plan),
            ),
            Command::DeleteDrillPlan { name } => {
                (format!("delete drill plan {name}"), self.delete_drill_plan(p.actor.role, name))
            }
            _ => self.apply_drill_runs(p),
        }
    }

    pub(super) fn put_drill_plan(&mut self, role: Role, plan: &DrillPlan) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {role} may not define drill plans")));
        }
        plan.validate("drill").map_err(|e| Rejection::Invalid(e.to_string()))?;
        let Some(c) = self.clusters.get(&plan.cluster) else {
            let known: Vec<&str> = self.clusters.keys().map(String::as_str).collect();
            return Err(Rejection::NotFound(format!("no cluster `{}` (known: {})", plan.cluster, known.join(", "))));
        };
        if !c.members.contains_key(&plan.target) {
            let known: Vec<&str> = c.members.keys().map(String::as_str).collect();
            return Err(Rejection::NotFound(format!(
                "no member `{}` in `{}` (known: {})",
                plan.target,
                plan.cluster,
                known.join(", ")
            )));
        }
        for s in &plan.services {
            match self.services.get(s) {
                Some(found) if found.spec.cluster == plan.cluster => {}
                Some(found) => {
                    return Err(Rejection::Invalid(format!(
                        "service `{s}` follows `{}`, not `{}`",
                        found.spec.cluster, plan.cluster
                    )))
                }
                None => return Err(Rejection::NotFound(format!("no service `{s}`"))),
            }
        }
        if self.drill_plans.contains_key(&plan.name) {
            self.drill_plans.insert(plan.name.clone(), plan.clone());
            return Ok("changed".into());
        }
        if self.drill_plans.len() >= MAX_DRILL_PLANS {
            return Err(Rejection::Conflict(format!(
                "{MAX_DRILL_PLANS} drill plans are recorded already: delete one first"
            )));
        }
        self.drill_plans.insert(plan.name.clone(), plan.clone());
        Ok("recorded".into())
    }

    fn delete_drill_plan(&mut self, role: Role, name: &str) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc) {
            return Err(Rejection::NotAllowed(format!("role {role} may not delete drill plans")));
        }
        self.drill_plans
            .remove(name)
            .map(|_| "deleted".to_string())
            .ok_or_else(|| Rejection::NotFound(format!("no drill plan `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use crate::state::drills::{plan_for_test, DrillKind};
    use crate::state::{Actor, Command, DbCluster, Proposal, Response, Role, State};

    fn apply(s: &mut State, role: Role, command: Command) -> Response {
        let actor = Actor { name: "noc-1".into(), role, origin: "test".into() };
        s.apply(1, &Proposal { at_ms: 1_000, actor, command }, &mut Vec::new())
    }

    fn state() -> State {
        let mut s = State::default();
        s.clusters.insert("customs".into(), DbCluster::for_test(&["dc", "ndc", "dr"], "agent-"));
        s
    }

    #[test]
    fn a_plan_must_name_what_exists_and_only_admin_or_noc_may_define_it() {
        let mut s = state();
        let plan = plan_for_test("quarterly", DrillKind::SwitchoverRoundtrip, "ndc");
        let refused = [
            (Role::Soc, plan.clone()),
            (Role::Noc, crate::state::drills::DrillPlan { target: "mars".into(), ..plan.clone() }),
            (Role::Noc, crate::state::drills::DrillPlan { cluster: "nope".into(), ..plan.clone() }),
            (Role::Noc, crate::state::drills::DrillPlan { services: vec!["ghost".into()], ..plan.clone() }),
        ];
        for (role, p) in refused {
            assert!(matches!(apply(&mut s, role, Command::PutDrillPlan(p)), Response::Rejected(_)));
        }
        assert!(s.drill_plans.is_empty(), "refusals change nothing");
        assert!(matches!(apply(&mut s, Role::Noc, Command::PutDrillPlan(plan)), Response::Ok(_)));
        assert_eq!(s.drill_plans["quarterly"].target, "ndc");
        let delete = Command::DeleteDrillPlan { name: "quarterly".into() };
        assert!(matches!(apply(&mut s, Role::Auditor, delete.clone()), Response::Rejected(_)));
        assert!(matches!(apply(&mut s, Role::Admin, delete), Response::Ok(_)));
        assert!(s.drill_plans.is_empty());
    }
}
