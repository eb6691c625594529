//! A role change's recovery plan (issue 20): what happens to the services that follow a database
//! cluster and to the balancers in front of it, step by step around the promotion, like the
//! steps of a disaster-recovery plan.
//!
//! - Before anyone is promoted, each service's pre-hook runs, recovery group by recovery group
//!   (group 1 first); one that fails aborts the role change while nothing has changed yet.
//! - Before the promotion, every balancer takes the old primary out of its writers' backend
//!   (and closes the sessions still open to it: after a site is lost, they would hang until TCP
//!   gives up).
//! - As soon as the new primary holds its lease (its promote answered), every balancer puts it
//!   in: its health forced up and its state ready, so a writer behind HAProxy reconnects at once
//!   instead of after `rise` checks. Then, group by group, each service's post-hooks (re-pointing
//!   it) and its checks (until it answers, bounded). A post-hook, check or balancer that fails
//!   raises an alert and the role change can only finish "completed with errors" (enforced by
//!   the state, `apply/services.rs`).
//!
//! Safety does not rest on any of this: the old primary is fenced or stopped by the workflow
//! itself (DESIGN.md points 1-4), so a balancer that was not told routes writers to a server that
//! refuses them. Hence a balancer or a hook never blocks a promotion, only a pre-hook that ran and
//! failed does. An instance whose agent has no stream to the leader (typically: its site is the
//! one lost) is skipped and recorded as skipped.
//!
//! Each command carries the cluster's epoch and log index, and agents apply hooks and balancer
//! updates in that order per cluster (`agents/src/link/side.rs`), so a stale "take out" from a
//! replaced leader never lands after a newer "put in".

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use triad_proto::v1::{agent_command, BalancerServer, RunCheck, RunHook, SetBalancer};

use super::router::{Route, RouteStep, RouteVersion};
use super::workflow::{command, fresh_db, propose};
use super::WorkflowResult;
use crate::config::balancers::BalancerConfig;
use crate::context::Ctx;
use crate::state::services::{RecoveryPhase, ServiceInstance, ServiceSpec};
use crate::state::{Actor, Command, DbCluster, WorkflowKind};

/// How long a service's checks may take to pass after its post-hooks, and the pause between two.
const CHECK_DEADLINE: Duration = Duration::from_secs(30);
const CHECK_RETRY: Duration = Duration::from_millis(250);
/// How long a balancer update may take at the agent.
const BALANCER_TIMEOUT: Duration = Duration::from_secs(10);
/// The time beyond a hook's own the leader waits for its answer.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// What balancer `b` is told once `primary` holds its lease in `c`: the primary in the writers
/// (its health forced up when `force`, so that it takes writers before `rise` checks pass) and out
/// of the readers, first; then every other member out of the writers and into the readers, where
/// their own checks (`/replica`) decide whether they serve (a member a previous role change took
/// out of the readers as the primary of its day comes back this way).
fn primary_in(b: &BalancerConfig, c: &DbCluster, primary: &str, force: bool) -> Vec<BalancerServer> {
    let server = |backend: String, member: &str, state: &str, health: &str, shutdown: bool| BalancerServer {
        backend,
        server: member.to_string(),
        state: state.into(),
        health: health.into(),
        shutdown_sessions: shutdown,
    };
    let (rw, ro) = (b.write_backend(), b.read_backend());
    let mut servers = vec![server(rw.clone(), primary, "ready", if force { "up" } else { "" }, false)];
    servers.extend(ro.clone().map(|ro| server(ro, primary, "maint", "", force)));
    for other in c.members.keys().filter(|m| m.as_str() != primary) {
        servers.push(server(rw.clone(), other, "maint", "", false));
        servers.extend(ro.clone().map(|ro| server(ro, other, "ready", "", false)));
    }
    servers
}

/// Once per cluster and epoch on this leader, while no role change runs on it: the balancers and
/// the router are told what the committed state says (the primary in, no health forced: the
/// checks decide). The routes and balancers are then right from the cluster's adoption, after a
/// role change that ended some other way than planned (rolled back at a new epoch, finished by
/// another leader) and after a leader change. Every write carries the epoch, so a stale one is
/// refused (agents' lanes, the router's versions); failures are logged and tried again at the
/// next epoch or leadership. `synced`: what was sent (cleared when leadership is lost).
pub fn sync_new(ctx: &Arc<Ctx>, synced: &mut std::collections::HashSet<(String, u64)>) {
    let due: Vec<DbCluster> = {
        let g = ctx.state.read().expect("state lock poisoned");
        g.state
            .clusters
            .values()
            .filter(|c| c.workflow.is_none() && c.epoch > 0 && c.primary.is_some())
            .filter(|c| !synced.contains(&(c.name.clone(), c.epoch)))
            .cloned()
            .collect()
    };
    for c in due {
        synced.insert((c.name.clone(), c.epoch));
        tokio::spawn(sync_cluster(ctx.clone(), c));
    }
}

async fn sync_cluster(ctx: Arc<Ctx>, c: DbCluster) {
    let Some(primary) = c.primary.clone() else { return };
    for b in ctx.cfg.balancers.iter().filter(|b| b.cluster == c.name && ctx.bus.has_stream(&b.agent)) {
        let set = SetBalancer { socket: b.socket.clone(), servers: primary_in(b, &c, &primary, false) };
        let cmd = command(&c.name, c.epoch, c.epoch_index, agent_command::Kind::SetBalancer(set));
        match ctx.bus.call(&b.agent, cmd, BALANCER_TIMEOUT).await {
            Ok(r) => tracing::info!(balancer = %b.name, epoch = c.epoch, "balancer synced: {}", r.detail),
            Err(e) => tracing::warn!(balancer = %b.name, epoch = c.epoch, "balancer not synced: {e}"),
        }
    }
    if let (Some(router), Some(route)) = (ctx.router.clone(), super::router::current_route(&c)) {
        match router.apply(&route).await {
            Ok(did) => tracing::info!(cluster = %c.name, "routes synced: {did}"),
            Err(e) => tracing::warn!(cluster = %c.name, "routes not synced: {e}"),
        }
    }
}

/// One role change of cluster `cluster` (workflow `wf`) from member `from` to member `to`.
pub(crate) struct RoleChange<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub actor: &'a Actor,
    pub wf: u64,
    pub kind: WorkflowKind,
    pub cluster: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// One step's result, before it is recorded.
struct Done {
    phase: RecoveryPhase,
    subject: String,
    site: String,
    outcome: Result<String, String>,
}

impl RoleChange<'_> {
    /// The cluster's services, by recovery group (ascending).
    fn groups(&self) -> BTreeMap<u32, Vec<ServiceSpec>> {
        let g = self.ctx.state.read().expect("state lock poisoned");
        let mut groups: BTreeMap<u32, Vec<ServiceSpec>> = BTreeMap::new();
        for s in g.state.services.values().filter(|s| s.spec.cluster == self.cluster) {
            groups.entry(s.spec.group).or_default().push(s.spec.clone());
        }
        groups
    }

    /// The configured balancers in front of this cluster.
    fn balancers(&self) -> Vec<BalancerConfig> {
        self.ctx.cfg.balancers.iter().filter(|b| b.cluster == self.cluster).cloned().collect()
    }

    /// Records `done` (a failure also raises its alert).
    async fn record(&self, done: Done) -> WorkflowResult<()> {
        let (ok, note) = match done.outcome {
            Ok(note) => (true, note),
            Err(note) => (false, note),
        };
        let cmd = Command::RecordRecoveryStep {
            workflow: self.wf,
            phase: done.phase,
            subject: done.subject,
            site: done.site,
            ok,
            note,
        };
        propose(self.ctx, self.actor, cmd).await.map(|_| ())
    }

    /// The environment a hook runs with.
    fn hook_env(&self, c: &DbCluster, spec: &ServiceSpec, inst: &ServiceInstance) -> HashMap<String, String> {
        let to_agent = c.members.get(self.to).map(|m| m.agent.as_str()).unwrap_or_default();
        let endpoint = fresh_db(self.ctx, to_agent).map(|d| d.endpoint).unwrap_or_default();
        HashMap::from([
            ("TRIAD_CLUSTER".to_string(), self.cluster.to_string()),
            ("TRIAD_EPOCH".to_string(), c.epoch.to_string()),
            ("TRIAD_WORKFLOW".to_string(), self.wf.to_string()),
            ("TRIAD_KIND".to_string(), self.kind.to_string()),
            ("TRIAD_FROM".to_string(), self.from.to_string()),
            ("TRIAD_TO".to_string(), self.to.to_string()),
            ("TRIAD_PRIMARY_ENDPOINT".to_string(), endpoint),
            ("TRIAD_SITE".to_string(), inst.site.clone()),
            ("TRIAD_GROUP".to_string(), spec.group.to_string()),
        ])
    }

    /// Runs `phase`'s hook of every instance of `services` at once (`c`: the cluster at the epoch
    /// the hooks carry); returns their results.
    async fn hooks(&self, c: &DbCluster, phase: RecoveryPhase, services: &[ServiceSpec]) -> Vec<Done> {
        let mut runs = Vec::new();
        for spec in services {
            let path = if phase == RecoveryPhase::PreHook { &spec.pre_hook } else { &spec.post_hook };
            if path.is_empty() {
                continue;
            }
            for inst in &spec.instances {
                let subject = spec.name.clone();
                let site = inst.site.clone();
                if !self.ctx.bus.has_stream(&inst.agent) {
                    let note = format!("skipped: {} has no stream to the leader", inst.agent);
                    runs.push(futures::future::Either::Left(async move {
                        Done { phase, subject, site, outcome: Ok(note) }
                    }));
                    continue;
                }
                let hook = RunHook {
                    service: spec.name.clone(),
                    phase: if phase == RecoveryPhase::PreHook { "pre" } else { "post" }.into(),
                    path: path.clone(),
                    timeout_ms: spec.hook_timeout_ms,
                    env: self.hook_env(c, spec, inst),
                };
                let cmd = command(self.cluster, c.epoch, c.epoch_index, agent_command::Kind::RunHook(hook));
                let wait = Duration::from_millis(u64::from(spec.hook_timeout_ms)) + ANSWER_MARGIN;
                let agent = inst.agent.clone();
                runs.push(futures::future::Either::Right(async move {
                    let t = Instant::now();
                    let outcome = match self.ctx.bus.call(&agent, cmd, wait).await {
                        Ok(r) => Ok(format!("{} ({} ms at the leader)", r.detail, t.elapsed().as_millis())),
                        Err(e) => Err(e.to_string()),
                    };
                    Done { phase, subject, site, outcome }
                }));
            }
        }
        join_all(runs).await
    }

    /// Before the promotion: every group's pre-hooks in order (`c` at the old epoch). `Err(why)`:
    /// one failed, and the role change must be aborted before anything changes.
    pub async fn pre_hooks(&self, c: &DbCluster) -> WorkflowResult<Result<(), String>> {
        for (group, services) in self.groups() {
            let mut failed = Vec::new();
            for done in self.hooks(c, RecoveryPhase::PreHook, &services).await {
                if let Err(e) = &done.outcome {
                    failed.push(format!("{}@{}: {e}", done.subject, done.site));
                }
                self.record(done).await?;
            }
            if !failed.is_empty() {
                return Ok(Err(format!("pre-hook of group {group} failed: {}", failed.join("; "))));
            }
        }
        Ok(Ok(()))
    }

    /// Sends `servers` to balancer `b` at `c`'s epoch, and records it under `phase`.
    async fn tell_balancer(
        &self,
        c: &DbCluster,
        b: &BalancerConfig,
        phase: RecoveryPhase,
        servers: Vec<BalancerServer>,
    ) -> WorkflowResult<()> {
        let outcome = if !self.ctx.bus.has_stream(&b.agent) {
            Ok(format!("skipped: {} has no stream to the leader", b.agent))
        } else {
            let set = SetBalancer { socket: b.socket.clone(), servers };
            let cmd = command(self.cluster, c.epoch, c.epoch_index, agent_command::Kind::SetBalancer(set));
            let t = Instant::now();
            match self.ctx.bus.call(&b.agent, cmd, BALANCER_TIMEOUT).await {
                Ok(r) => Ok(format!("{} in {} ms", r.detail, t.elapsed().as_millis())),
                Err(e) => Err(e.to_string()),
            }
        };
        self.record(Done { phase, subject: b.name.clone(), site: b.site.clone(), outcome }).await
    }

    /// Tells the router (Kubernetes), if one is configured, what the routes should say at
    /// `step` of `c`'s epoch, and records it under `phase`.
    async fn tell_router(&self, c: &DbCluster, phase: RecoveryPhase, step: RouteStep) -> WorkflowResult<()> {
        let Some(router) = self.ctx.router.clone() else { return Ok(()) };
        let primary = if step == RouteStep::Out { self.from } else { self.to };
        let route = Route {
            cluster: self.cluster.to_string(),
            version: RouteVersion { epoch: c.epoch, step },
            primary: (step != RouteStep::Out).then(|| primary.to_string()),
            primary_site: c.members.get(primary).map(|m| m.site.clone()).unwrap_or_default(),
            standbys: c.members.keys().filter(|m| m.as_str() != primary).cloned().collect(),
        };
        let t = Instant::now();
        let outcome = match router.apply(&route).await {
            Ok(did) => Ok(format!("{did} in {} ms", t.elapsed().as_millis())),
            Err(e) => Err(e.to_string()),
        };
        let (subject, site) = (router.name().to_string(), router.site().to_string());
        self.record(Done { phase, subject, site, outcome }).await
    }

    /// Before the promotion: every balancer takes the old primary out of its writers and closes
    /// its sessions (`c` at the old epoch); so does the router.
    pub async fn balancers_out(&self, c: &DbCluster) -> WorkflowResult<()> {
        for b in self.balancers() {
            let out = BalancerServer {
                backend: b.write_backend(),
                server: self.from.to_string(),
                state: "maint".into(),
                health: String::new(),
                shutdown_sessions: true,
            };
            self.tell_balancer(c, &b, RecoveryPhase::BalancerOut, vec![out]).await?;
        }
        self.tell_router(c, RecoveryPhase::BalancerOut, RouteStep::Out).await
    }

    /// A role change rolled back before its new epoch: the old primary (`to` here) is put back
    /// everywhere, outranking the take-out it undoes (`c` at the unchanged epoch).
    pub async fn balancers_back(&self, c: &DbCluster) -> WorkflowResult<()> {
        self.balancers_in_at(c, RouteStep::Back).await
    }

    /// Once the new primary holds its lease (`c` at the new epoch): every balancer puts it in
    /// its writers (health forced up, state ready) and out of its readers, first; then every
    /// other member out of the writers and back in the readers, where their own checks
    /// (`/replica`) decide whether they serve (a member a previous role change took out of the
    /// readers as the primary of its day comes back this way).
    pub async fn balancers_in(&self, c: &DbCluster) -> WorkflowResult<()> {
        self.balancers_in_at(c, RouteStep::In).await
    }

    async fn balancers_in_at(&self, c: &DbCluster, step: RouteStep) -> WorkflowResult<()> {
        for b in self.balancers() {
            let servers = primary_in(&b, c, self.to, true);
            self.tell_balancer(c, &b, RecoveryPhase::BalancerIn, servers).await?;
        }
        self.tell_router(c, RecoveryPhase::BalancerIn, step).await
    }

    /// After the promotion (`c` at the new epoch): group by group, the post-hooks, then the
    /// checks of the group's services until they pass (bounded).
    pub async fn post_hooks_and_checks(&self, c: &DbCluster) -> WorkflowResult<()> {
        for (_group, services) in self.groups() {
            for done in self.hooks(c, RecoveryPhase::PostHook, &services).await {
                self.record(done).await?;
            }
            let checks = services.iter().map(|s| self.check_until_up(c, s));
            for done in join_all(checks).await {
                self.record(done).await?;
            }
        }
        Ok(())
    }

    /// Runs `spec`'s check on each instance whose agent is connected until every one passes or
    /// [`CHECK_DEADLINE`] passes.
    async fn check_until_up(&self, c: &DbCluster, spec: &ServiceSpec) -> Done {
        let site = spec.instances.first().map(|i| i.site.clone()).unwrap_or_default();
        let outcome = check_service(self.ctx, c, spec, CHECK_DEADLINE).await;
        Done { phase: RecoveryPhase::Check, subject: spec.name.clone(), site, outcome }
    }
}

/// Runs `spec`'s check (at `c`'s epoch) on each instance whose agent is connected until every one
/// passes or `within` passes; says how long it took, or what still failed. Also a drill's
/// application checks (`brain/drills/run.rs`).
pub(crate) async fn check_service(
    ctx: &Ctx,
    c: &DbCluster,
    spec: &ServiceSpec,
    within: Duration,
) -> Result<String, String> {
    let t = Instant::now();
    let deadline = t + within;
    let reachable: Vec<&ServiceInstance> = spec.instances.iter().filter(|i| ctx.bus.has_stream(&i.agent)).collect();
    if reachable.is_empty() {
        return Err("no instance could be checked: none of their agents has a stream to the leader".into());
    }
    let mut failing: Vec<String>;
    loop {
        let runs = reachable.iter().map(|inst| async move {
            let check = triad_proto::v1::ServiceCheck {
                service: spec.name.clone(),
                kind: spec.kind.to_string(),
                target: inst.target.clone(),
                query: spec.query.clone(),
                expect: spec.expect.clone(),
                interval_ms: spec.interval_ms,
                timeout_ms: spec.timeout_ms,
            };
            let cmd = command(
                &c.name,
                c.epoch,
                c.epoch_index,
                agent_command::Kind::RunCheck(RunCheck { check: Some(check) }),
            );
            let wait = Duration::from_millis(u64::from(spec.timeout_ms)) + ANSWER_MARGIN;
            ctx.bus.call(&inst.agent, cmd, wait).await.map_err(|e| format!("{}: {e}", inst.site))
        });
        failing = join_all(runs).await.into_iter().filter_map(|r| r.err()).collect();
        if failing.is_empty() || Instant::now() + CHECK_RETRY >= deadline {
            break;
        }
        tokio::time::sleep(CHECK_RETRY).await;
    }
    let ms = t.elapsed().as_millis();
    let skipped = spec.instances.len() - reachable.len();
    let skipped = if skipped > 0 { format!(" ({skipped} skipped: no stream)") } else { String::new() };
    if failing.is_empty() {
        Ok(format!("{} of {} instances answer after {ms} ms{skipped}", reachable.len(), spec.instances.len()))
    } else {
        Err(format!("still failing after {ms} ms: {}{skipped}", failing.join("; ")))
    }
}
