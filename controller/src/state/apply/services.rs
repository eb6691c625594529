//! `State::apply` for the services: defined, removed, and their health changes as the leader
//! judged them, each change raising or resolving the service's own alert.

use std::collections::BTreeMap;

use crate::state::alerts::{IncomingAlert, Severity};
use crate::state::services::{alert_fingerprint, RecoveryPhase, Service, ServiceHealth, ServiceSpec, MAX_SERVICES};
use crate::state::{Command, Proposal, Rejection, Role, State};

impl State {
    pub(super) fn apply_services(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        match &p.command {
            Command::PutService(spec) => (
                format!("put service {} ({} of {}, group {})", spec.name, spec.kind, spec.cluster, spec.group),
                self.put_service(p.actor.role, spec, p.at_ms),
            ),
            Command::DeleteService { name } => {
                (format!("delete service {name}"), self.delete_service(p.actor.role, name))
            }
            Command::SetServiceHealth { service, health, reason } => {
                (format!("service {service} {health}: {reason}"), self.set_service_health(p, service, *health, reason))
            }
            Command::RecordRecoveryStep { workflow, phase, subject, site, ok, note } => (
                format!("workflow {workflow}: {phase} {subject}@{site} {}: {note}", if *ok { "ok" } else { "failed" }),
                self.record_recovery_step(p, *workflow, *phase, subject, site, *ok, note),
            ),
            other => (format!("{other:?}"), Err(Rejection::Invalid("not a services command".into()))),
        }
    }

    /// Records a service, or changes a recorded one's definition (its health stays).
    pub(super) fn put_service(&mut self, role: Role, spec: &ServiceSpec, at_ms: u64) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc | Role::System) {
            return Err(Rejection::NotAllowed(format!("role {role} may not define services")));
        }
        spec.validate("service").map_err(|e| Rejection::Invalid(e.to_string()))?;
        if !self.clusters.contains_key(&spec.cluster) {
            let known: Vec<&str> = self.clusters.keys().map(String::as_str).collect();
            return Err(Rejection::NotFound(format!("no cluster `{}` (known: {})", spec.cluster, known.join(", "))));
        }
        if let Some(i) = spec.instances.iter().find(|i| !self.sites.contains_key(&i.site)) {
            let known: Vec<&str> = self.sites.keys().map(String::as_str).collect();
            return Err(Rejection::NotFound(format!("no site `{}` (known: {})", i.site, known.join(", "))));
        }
        if let Some(s) = self.services.get_mut(&spec.name) {
            s.spec = spec.clone();
            return Ok("changed".into());
        }
        if self.services.len() >= MAX_SERVICES {
            return Err(Rejection::Conflict(format!("{MAX_SERVICES} services are recorded already: delete one first")));
        }
        let service =
            Service { spec: spec.clone(), health: ServiceHealth::Unknown, since_ms: at_ms, reason: String::new() };
        self.services.insert(spec.name.clone(), service);
        Ok("recorded".into())
    }

    fn delete_service(&mut self, role: Role, name: &str) -> Result<String, Rejection> {
        if !matches!(role, Role::Admin | Role::Noc) {
            return Err(Rejection::NotAllowed(format!("role {role} may not delete services")));
        }
        self.services
            .remove(name)
            .map(|_| "deleted".into())
            .ok_or_else(|| Rejection::NotFound(format!("no service `{name}`")))
    }

    /// A health change the leader judged. Down or degraded raises the service's alert (high when
    /// down); up resolves it.
    fn set_service_health(
        &mut self,
        p: &Proposal,
        name: &str,
        health: ServiceHealth,
        reason: &str,
    ) -> Result<String, Rejection> {
        if p.actor.role != Role::System {
            return Err(Rejection::NotAllowed(format!("role {} may not set a service's health", p.actor.role)));
        }
        let service = self.services.get_mut(name).ok_or_else(|| Rejection::NotFound(format!("no service `{name}`")))?;
        if service.health == health {
            return Ok(format!("already {health}"));
        }
        let was = service.health;
        service.health = health;
        service.since_ms = p.at_ms;
        service.reason = reason.chars().take(500).collect();
        let spec = service.spec.clone();
        let severity = if health == ServiceHealth::Down { Severity::High } else { Severity::Medium };
        match health {
            ServiceHealth::Down | ServiceHealth::Degraded => {
                let note = format!("service {health}: {reason}");
                self.raise_own_alert(service_alert(&spec, severity, reason, p.at_ms, false), &note);
            }
            ServiceHealth::Up if matches!(was, ServiceHealth::Down | ServiceHealth::Degraded) => {
                let note = format!("service up: {reason}");
                self.raise_own_alert(service_alert(&spec, severity, reason, p.at_ms, true), &note);
            }
            _ => {}
        }
        Ok(format!("{was} → {health}"))
    }
}

impl State {
    /// A role change's step for a service or a balancer. A failed one is recorded under the
    /// step name `<phase>-failed` (what `FinishWorkflow` looks for: such a workflow is never
    /// "completed" without "with errors") and raises the subject's role-change alert, high,
    /// placed at `site` and naming the workflow.
    #[allow(clippy::too_many_arguments)]
    fn record_recovery_step(
        &mut self,
        p: &Proposal,
        workflow: u64,
        phase: RecoveryPhase,
        subject: &str,
        site: &str,
        ok: bool,
        note: &str,
    ) -> Result<String, Rejection> {
        let w =
            self.workflows.get_mut(&workflow).ok_or_else(|| Rejection::NotFound(format!("no workflow {workflow}")))?;
        if w.finished.is_some() {
            return Err(Rejection::Conflict(format!("workflow {workflow} has ended")));
        }
        let name = if ok { phase.to_string() } else { format!("{phase}{FAILED_SUFFIX}") };
        let note: String = format!("{subject}@{site}: {note}").chars().take(1000).collect();
        w.steps.push(crate::state::WorkflowStep { name, at_ms: p.at_ms, note: note.clone() });
        if ok {
            return Ok("recorded".into());
        }
        let (cluster, kind) = (w.cluster.clone(), w.kind);
        let mut labels = BTreeMap::new();
        labels.insert("subject".to_string(), subject.to_string());
        labels.insert("cluster".to_string(), cluster.clone());
        labels.insert("phase".to_string(), phase.to_string());
        labels.insert("workflow".to_string(), workflow.to_string());
        let alert = IncomingAlert {
            labels,
            site: site.to_string(),
            ..IncomingAlert::own(
                format!("role-change:{cluster}:{subject}:{phase}"),
                Severity::High,
                format!("{phase} of {subject} failed in the {kind} of {cluster}"),
                format!("workflow {workflow} ({kind} of {cluster}): {note}"),
                p.at_ms,
            )
        };
        self.raise_own_alert(alert, &format!("workflow {workflow}: {note}"));
        Ok("recorded, alert raised".into())
    }
}

use crate::state::services::FAILED_SUFFIX;

/// The failed recovery steps of `w`, as `phase subject@site: note`.
pub fn recovery_errors(w: &crate::state::Workflow) -> Vec<String> {
    w.steps
        .iter()
        .filter_map(|s| {
            let phase = s.name.strip_suffix(FAILED_SUFFIX)?;
            phase.parse::<RecoveryPhase>().ok().map(|_| format!("{phase} {}", s.note))
        })
        .collect()
}

/// The service's own alert, placed at its first instance's site.
fn service_alert(spec: &ServiceSpec, severity: Severity, reason: &str, at_ms: u64, resolved: bool) -> IncomingAlert {
    let mut labels = BTreeMap::new();
    labels.insert("service".to_string(), spec.name.clone());
    labels.insert("cluster".to_string(), spec.cluster.clone());
    labels.insert("kind".to_string(), spec.kind.to_string());
    labels.insert("group".to_string(), spec.group.to_string());
    let title = format!("service {} not healthy", spec.name);
    let description = format!("service {} (follows {}): {reason}", spec.name, spec.cluster);
    IncomingAlert {
        labels,
        site: spec.instances.first().map(|i| i.site.clone()).unwrap_or_default(),
        resolved,
        ..IncomingAlert::own(alert_fingerprint(&spec.name), severity, title, description, at_ms)
    }
}

#[cfg(test)]
mod tests {
    use crate::state::alerts::AlertStatus;
    use crate::state::links::TRIAD_SOURCE;
    use crate::state::services::{alert_fingerprint, ServiceHealth, ServiceInstance, ServiceKind, ServiceSpec};
    use crate::state::{Actor, Command, DbCluster, Proposal, Response, Role, Site, State};

    fn apply(s: &mut State, role: Role, command: Command) -> Response {
        let p = Proposal { at_ms: 1_000, actor: Actor { name: "nora".into(), role, origin: "test".into() }, command };
        s.apply(1, &p, &mut Vec::new())
    }

    fn state() -> State {
        let mut s = State::default();
        for site in ["dc", "ndc", "dr"] {
            s.sites.insert(site.into(), Site { name: site.into(), description: String::new(), city: site.into() });
        }
        s.clusters.insert("customs".into(), DbCluster::for_test(&["dc", "ndc", "dr"], "agent-"));
        s
    }

    fn spec(site: &str) -> ServiceSpec {
        ServiceSpec {
            name: "asycuda".into(),
            cluster: "customs".into(),
            kind: ServiceKind::Tcp,
            group: 1,
            instances: vec![ServiceInstance { site: site.into(), agent: "agent-dc".into(), target: "app:8080".into() }],
            query: String::new(),
            expect: String::new(),
            interval_ms: 5000,
            timeout_ms: 2000,
            pre_hook: String::new(),
            post_hook: String::new(),
            hook_timeout_ms: 30_000,
        }
    }

    #[test]
    fn a_service_is_recorded_only_at_known_sites_and_by_the_noc() {
        let mut s = state();
        assert!(matches!(apply(&mut s, Role::Soc, Command::PutService(spec("dc"))), Response::Rejected(_)));
        assert!(matches!(apply(&mut s, Role::Noc, Command::PutService(spec("mars"))), Response::Rejected(_)));
        assert!(s.services.is_empty(), "refusals change nothing");
        assert!(matches!(apply(&mut s, Role::Noc, Command::PutService(spec("dc"))), Response::Ok(_)));
        assert_eq!(s.services["asycuda"].health, ServiceHealth::Unknown);
    }

    #[test]
    fn going_down_raises_its_alert_and_coming_back_resolves_it() {
        let mut s = state();
        apply(&mut s, Role::Noc, Command::PutService(spec("dc")));
        let down = Command::SetServiceHealth {
            service: "asycuda".into(),
            health: ServiceHealth::Down,
            reason: "dc: connection refused".into(),
        };
        assert!(matches!(apply(&mut s, Role::Noc, down.clone()), Response::Rejected(_)), "only the leader judges");
        apply(&mut s, Role::System, down);
        let key = crate::state::alerts::fingerprint_key(TRIAD_SOURCE, &alert_fingerprint("asycuda"));
        let id = s.alerts.by_fingerprint[&key];
        assert_eq!(s.alerts.alerts[&id].status, AlertStatus::Open);
        let up =
            Command::SetServiceHealth { service: "asycuda".into(), health: ServiceHealth::Up, reason: "ok".into() };
        apply(&mut s, Role::System, up);
        assert!(s.alerts.alerts[&id].status.is_closed(), "resolved when it answers again");
    }
}
