//! `State::apply` for the workflows: started, stepped and finished, one per cluster at a time.

use crate::state::{Command, Proposal, Rejection, State, Workflow, WorkflowKind, WorkflowStep};

impl State {
    pub(super) fn apply_workflows(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::StartWorkflow { cluster, kind, from, to } => {
                let what = format!("start {kind} of {cluster} from {from} to {to}");
                let Some(c) = self.clusters.get_mut(cluster) else {
                    return (what, Err(Rejection::NotFound(format!("no cluster named `{cluster}`"))));
                };
                if c.epoch == 0 {
                    return (what, Err(Rejection::Conflict(format!("cluster `{cluster}` is not adopted yet"))));
                }
                if c.paused {
                    return (what, Err(Rejection::Conflict(format!("cluster `{cluster}` is paused (maintenance)"))));
                }
                if let Some(w) = c.workflow {
                    return (what, Err(Rejection::Conflict(format!("workflow {w} is still under way on `{cluster}`"))));
                }
                if c.primary.as_deref() != Some(from.as_str()) {
                    return (what, Err(Rejection::Conflict(format!("`{from}` is not the primary of `{cluster}`"))));
                }
                // A restart (of the primary its own fence stopped) is the one workflow on itself.
                if !c.members.contains_key(to) || (to == from) != (*kind == WorkflowKind::Restart) {
                    return (what, Err(Rejection::Conflict(format!("`{to}` is not another member of `{cluster}`"))));
                }
                // A planned move across a link that is not up waits (issue 18). Never a failover:
                // when the primary's site is lost, its links are down too.
                if *kind == WorkflowKind::Switchover {
                    let site = |m: &String| c.members.get(m).map(|m| m.site.clone()).unwrap_or_default();
                    if let Some(l) = crate::state::links::blocking_link(&self.links, cluster, &site(from), &site(to)) {
                        return (what, Err(crate::state::links::refusal(l, cluster)));
                    }
                }
                self.last_workflow_id += 1;
                let id = self.last_workflow_id;
                c.workflow = Some(id);
                self.workflows.insert(
                    id,
                    Workflow {
                        id,
                        kind: *kind,
                        cluster: cluster.clone(),
                        from: from.clone(),
                        to: to.clone(),
                        requested_by: p.actor.name.clone(),
                        started_ms: p.at_ms,
                        steps: Vec::new(),
                        finished: None,
                        write_outage_ms: None,
                        writes_resumed_ms: None,
                    },
                );
                while self.workflows.len() > 1000 {
                    let Some(oldest) = self.workflows.keys().next().copied() else {
                        break;
                    };
                    if self.workflows[&oldest].finished.is_none() {
                        break;
                    }
                    self.workflows.remove(&oldest);
                }
                (what, Ok(format!("workflow {id}")))
            }
            Command::RecordStep { workflow, name, note } => {
                let what = format!("workflow {workflow}: {name} {note}");
                match self.workflows.get_mut(workflow) {
                    Some(w) if w.finished.is_none() => {
                        w.steps.push(WorkflowStep { name: name.clone(), at_ms: p.at_ms, note: note.clone() });
                        (what, Ok("recorded".into()))
                    }
                    Some(_) => (what, Err(Rejection::Conflict(format!("workflow {workflow} has ended")))),
                    None => (what, Err(Rejection::NotFound(format!("no workflow {workflow}")))),
                }
            }
            Command::RecordWriteOutage { workflow, outage_ms } => {
                let what = format!("workflow {workflow}: write outage {outage_ms} ms");
                let Some(cluster) = self.workflows.get(workflow).map(|w| w.cluster.clone()) else {
                    return (what, Err(Rejection::NotFound(format!("no workflow {workflow}"))));
                };
                match self.clusters.get_mut(&cluster) {
                    Some(c) if c.workflow == Some(*workflow) => {
                        c.role_changes.last_write_outage_ms = Some(*outage_ms);
                        (what, Ok("recorded".into()))
                    }
                    Some(_) => (what, Err(Rejection::Conflict(format!("workflow {workflow} is not under way")))),
                    None => (what, Err(Rejection::NotFound(format!("no cluster `{cluster}`")))),
                }
            }
            Command::RecordCanaryMeasure { workflow, outage_ms, resumed_ms } => {
                let what =
                    format!("workflow {workflow}: write outage {outage_ms:?} ms, writes resumed at {resumed_ms:?}");
                let Some(w) = self.workflows.get_mut(workflow) else {
                    return (what, Err(Rejection::NotFound(format!("no workflow {workflow}"))));
                };
                if w.finished.is_some() {
                    return (what, Err(Rejection::Conflict(format!("workflow {workflow} has ended"))));
                }
                (w.write_outage_ms, w.writes_resumed_ms) = (*outage_ms, *resumed_ms);
                if let (Some(ms), Some(c)) = (outage_ms, self.clusters.get_mut(&w.cluster)) {
                    c.role_changes.last_write_outage_ms = Some(*ms);
                }
                (what, Ok("recorded".into()))
            }
            Command::FinishWorkflow { workflow, outcome } => {
                let what = format!("finish workflow {workflow}: {outcome}");
                let Some(w) = self.workflows.get_mut(workflow) else {
                    return (what, Err(Rejection::NotFound(format!("no workflow {workflow}"))));
                };
                if w.finished.is_some() {
                    return (what, Err(Rejection::Conflict(format!("workflow {workflow} has already ended"))));
                }
                // A role change whose services or balancers failed a step is never reported as
                // simply completed (issue 20): the state says so whatever the proposer wrote.
                let errors = super::services::recovery_errors(w);
                let outcome = match outcome.strip_prefix("completed") {
                    Some(rest) if !errors.is_empty() && !outcome.starts_with("completed with errors") => {
                        format!("completed with errors ({}){rest}", errors.join("; "))
                    }
                    _ => outcome.clone(),
                };
                w.finished = Some((p.at_ms, outcome));
                if let Some(c) = self.clusters.get_mut(&w.cluster) {
                    if c.workflow == Some(*workflow) {
                        c.workflow = None;
                    }
                }
                (what, Ok("finished".into()))
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a workflows command".into()))),
        }
    }
}
