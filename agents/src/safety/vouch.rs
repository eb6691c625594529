//! The failsafe (DESIGN.md, "Safety of role changes", point 3): a primary whose lease the
//! controllers cannot renew (two controllers down, its site's path to them cut) keeps writing
//! only while every member of its vouch set vouches for it, agent to agent over mutual TLS.
//!
//! The argument, on both sides:
//! - The primary's agent asks as soon as renewals are late (a heartbeat and a half without one),
//!   again after every answer while they stay late, and counts a round only when *all* vouchers
//!   said yes, for P from the moment the round's requests left, on its `CLOCK_BOOTTIME`: each
//!   vouch is a lease, and the guard fences when it lapses exactly as when a controllers' lease
//!   lapses.
//! - A voucher vouches only while its accepted target state still makes the asker the primary at
//!   the asked epoch, it is itself a standby in the vouch set, and its own server is not a
//!   primary. So once it has accepted a higher epoch (which the leader commits before any promote
//!   goes out) it vouches no more.
//! - Only the agent of the member the voucher's target state names as primary may ask.
//! - A voucher records the time of every vouch it grants, judging and recording under one lock
//!   that its promote's wait also takes, and promotes only P(1+rho)+m after the last one (and
//!   after its own start: a restarted agent forgot what it vouched). The asker's vouch ended P
//!   after a send that preceded that record, so by then it has fenced, whatever the two clocks'
//!   rates (rho) and the messages in flight (m). A refusal is not recorded: it gives no lease,
//!   and recording it would let any caller hold a promote back for ever. The hold comes with the
//!   promote command itself, so a voucher restarted moments ago waits it out too.
//!
//! The automatic failover promotes only members of the synchronous set, which is the vouch set,
//! so no other member can be promoted behind a vouching primary's back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};
use triad_proto::v1::vouch_client::VouchClient;
use triad_proto::v1::vouch_server::Vouch;
use triad_proto::v1::{Assignment, DbStatus, VouchReply, VouchRequest};

use crate::metrics::AgentMetrics;
use crate::safety::lease::{boot_ms, Lease};
use crate::safety::target::Target;

/// The voucher's memory: when it last vouched (or started), on `CLOCK_BOOTTIME`.
pub struct Vouches {
    last_boot_ms: Mutex<u64>,
}

impl Default for Vouches {
    fn default() -> Self {
        Self::new()
    }
}

impl Vouches {
    /// Starts as if it had just vouched: a restarted agent cannot know what it vouched before.
    pub fn new() -> Self {
        Vouches { last_boot_ms: Mutex::new(boot_ms()) }
    }

    /// Runs `judge` and records a vouch when it grants one, under the lock [`Self::hold_left_ms`]
    /// takes: a promote that reads the hold after this returned waits this vouch out, and one
    /// that read it before has already persisted its new epoch, which `judge` then refuses
    /// (the command's epoch is persisted before its wait). A refusal records nothing, so asking
    /// again and again (any agent's certificate may call) cannot hold a promote back.
    fn grant_if(&self, judge: impl FnOnce() -> Result<u64, VouchRefusal>) -> Result<u64, VouchRefusal> {
        let mut last = self.last_boot_ms.lock().expect("vouches lock poisoned");
        let granted = judge()?;
        *last = (*last).max(boot_ms());
        Ok(granted)
    }

    /// Milliseconds until this member may promote, given the hold P(1+rho)+m (0: now).
    pub fn hold_left_ms(&self, hold_ms: u64) -> u64 {
        let last = *self.last_boot_ms.lock().expect("vouches lock poisoned");
        (last + hold_ms).saturating_sub(boot_ms())
    }

    /// Waits out the hold before a promote: every primary this member vouched for has fenced by
    /// then. Re-reads the record, since a request judged just before the epoch moved still counts.
    pub async fn wait_clear(&self, hold_ms: u64) {
        let mut logged = false;
        loop {
            let left = self.hold_left_ms(hold_ms);
            if left == 0 {
                return;
            }
            if !logged {
                tracing::info!(wait_ms = left, "waiting out the last vouch (or this agent's start) before promoting");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(left.min(100))).await;
        }
    }
}

/// Why this member will not vouch; its text goes back to the asker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VouchRefusal {
    #[error("this agent holds no target state")]
    NoTarget,
    #[error("`{asker}` is not the agent of the primary (`{primary}`, on `{primary_agent}`); only it may ask")]
    NotThePrimarysAgent { asker: String, primary: String, primary_agent: String },
    #[error("this agent's epoch file is unreadable or behind its target state")]
    EpochBehind,
    #[error("this agent's member belongs to cluster `{ours}`, not `{asked}`")]
    OtherCluster { ours: String, asked: String },
    #[error("this member is at epoch {ours}, not {asked}")]
    OtherEpoch { ours: u64, asked: u64 },
    #[error("at epoch {epoch} the primary is `{primary}`, not `{asked}`")]
    OtherPrimary { epoch: u64, primary: String, asked: String },
    #[error("this member is a primary itself")]
    PrimaryItself,
    #[error("`{0}` is not in the vouch set")]
    NotInVouchSet(String),
    #[error("the controllers have not told this agent the lease period")]
    NoPeriod,
}

/// Why this member will not vouch for `r`; `Ok(P)` when it will.
/// `asker`: the agent named by the request's client certificate.
fn judge(
    t: Option<&Assignment>,
    persisted: Option<u64>,
    observed_role: &str,
    asker: &str,
    r: &VouchRequest,
) -> Result<u64, VouchRefusal> {
    let t = t.ok_or(VouchRefusal::NoTarget)?;
    if asker != t.primary_agent {
        return Err(VouchRefusal::NotThePrimarysAgent {
            asker: asker.into(),
            primary: t.primary.clone(),
            primary_agent: t.primary_agent.clone(),
        });
    }
    if persisted != Some(t.epoch) {
        return Err(VouchRefusal::EpochBehind);
    }
    if r.cluster != t.cluster {
        return Err(VouchRefusal::OtherCluster { ours: t.cluster.clone(), asked: r.cluster.clone() });
    }
    if r.epoch != t.epoch {
        return Err(VouchRefusal::OtherEpoch { ours: t.epoch, asked: r.epoch });
    }
    if r.primary != t.primary {
        return Err(VouchRefusal::OtherPrimary {
            epoch: t.epoch,
            primary: t.primary.clone(),
            asked: r.primary.clone(),
        });
    }
    if t.role == "primary" || observed_role == "primary" {
        return Err(VouchRefusal::PrimaryItself);
    }
    if !t.vouch.contains(&t.member) {
        return Err(VouchRefusal::NotInVouchSet(t.member.clone()));
    }
    if t.vouch_ms == 0 {
        return Err(VouchRefusal::NoPeriod);
    }
    Ok(t.vouch_ms)
}

/// The `Vouch` service a voucher's agent serves.
pub struct VouchService {
    pub target: Arc<Target>,
    pub db: Arc<RwLock<Option<DbStatus>>>,
    pub vouches: Arc<Vouches>,
    pub metrics: Arc<AgentMetrics>,
}

#[tonic::async_trait]
impl Vouch for VouchService {
    async fn vouch(&self, req: Request<VouchRequest>) -> Result<Response<VouchReply>, Status> {
        let der = req
            .peer_certs()
            .and_then(|c| c.first().cloned())
            .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
        let (name, role) =
            triad_proto::tls::identity_of(der.as_ref()).map_err(|e| Status::unauthenticated(e.to_string()))?;
        if role != "agent" {
            return Err(Status::permission_denied(format!("`{name}` has role `{role}`; only agents ask for vouches")));
        }
        let r = req.into_inner();
        let mut member = String::new();
        let judged = self.vouches.grant_if(|| {
            // Read under the record's lock (see `grant_if`).
            let t = self.target.current();
            let observed =
                self.db.read().expect("db lock poisoned").as_ref().map(|d| d.role.clone()).unwrap_or_default();
            member = t.as_ref().map(|t| t.member.clone()).unwrap_or_default();
            judge(t.as_ref(), self.target.epoch(), &observed, &name, &r)
        });
        let reply = match judged {
            Ok(ms) => {
                self.metrics.vouches.with_label_values(&["given"]).inc();
                tracing::debug!(asker = %name, primary = %r.primary, epoch = r.epoch, "vouched");
                VouchReply { member, vouched: true, vouch_ms: ms, refused: String::new() }
            }
            Err(why) => {
                self.metrics.vouches.with_label_values(&["refused"]).inc();
                tracing::info!(asker = %name, primary = %r.primary, epoch = r.epoch, "refused to vouch: {why}");
                VouchReply { member, vouched: false, vouch_ms: 0, refused: why.to_string() }
            }
        };
        Ok(Response::new(reply))
    }
}

/// The primary's side: asks the vouch set when the controllers' renewals are late.
pub struct Failsafe {
    pub lease: Arc<Lease>,
    pub target: Arc<Target>,
    pub tls: ClientTlsConfig,
    pub metrics: Arc<AgentMetrics>,
    /// The agent's heartbeat interval: the controllers renew the lease at this pace.
    pub heartbeat: Duration,
    /// How often the lease is looked at (the lease check interval).
    pub check: Duration,
    /// The guard fences with this much lease left; asking later is pointless.
    pub fence_lead_ms: u64,
}

/// Whether the primary's agent, with `left_ms` of its lease left, asks its vouchers now. The
/// controllers renew every heartbeat, so a healthy lease never has much less than P minus one
/// heartbeat left: a heartbeat and a half without a renewal means the controllers are not
/// renewing. Asking then leaves several rounds before the fence even when P is little more than
/// the fence lead plus a few heartbeats. Past the fence lead the guard has fenced, or is fencing:
/// asking is pointless.
fn should_ask(left_ms: i64, period_ms: u64, heartbeat_ms: u64, fence_lead_ms: u64) -> bool {
    let overdue = period_ms.saturating_sub(heartbeat_ms + heartbeat_ms / 2);
    left_ms <= overdue as i64 && left_ms > fence_lead_ms as i64
}

/// What one round came to.
#[derive(Debug, PartialEq)]
enum Round {
    /// Every voucher vouched, for this long (the shortest answer).
    Vouched(u64),
    /// Someone refused or could not be asked; the reasons by member.
    Failed { unreachable: bool, why: Vec<String> },
}

impl Failsafe {
    /// Runs forever.
    pub async fn run(self) {
        let mut channels: HashMap<String, Channel> = HashMap::new();
        let mut last_failure = String::new();
        loop {
            tokio::time::sleep(self.check).await;
            let Some(t) = self.target.current() else { continue };
            if t.role != "primary" || self.target.epoch() != Some(t.epoch) {
                continue;
            }
            let st = self.lease.snapshot();
            let left = st.remaining_ms(t.epoch, boot_ms());
            let period = st.period_ms.max(t.vouch_ms);
            if !st.armed || !should_ask(left, period, self.heartbeat.as_millis() as u64, self.fence_lead_ms) {
                continue;
            }
            let sent = boot_ms();
            let round = self.ask_all(&t, &mut channels).await;
            match round {
                Round::Vouched(ms) => {
                    self.metrics.failsafe_rounds.with_label_values(&["vouched"]).inc();
                    self.lease.vouched(t.epoch, sent, ms, t.vouch.clone());
                    last_failure.clear();
                }
                Round::Failed { unreachable, why } => {
                    let class = if unreachable { "unreachable" } else { "refused" };
                    self.metrics.failsafe_rounds.with_label_values(&[class]).inc();
                    let text = why.join("; ");
                    if text != last_failure {
                        tracing::error!(
                            epoch = t.epoch,
                            left_ms = left,
                            "failsafe: the vouch set does not vouch ({text}); the primary fences when its lease ends"
                        );
                        last_failure = text;
                    }
                }
            }
        }
    }

    async fn ask_all(&self, t: &Assignment, channels: &mut HashMap<String, Channel>) -> Round {
        if t.vouch.is_empty() {
            return Round::Failed { unreachable: false, why: vec!["the vouch set is empty".into()] };
        }
        // A round must end well within the time left before the fence.
        let timeout = Duration::from_millis((t.vouch_ms / 8).clamp(50, 300));
        let mut calls = Vec::new();
        let mut why = Vec::new();
        for m in &t.vouch {
            let addr = t.vouchers.iter().find(|v| &v.member == m).map(|v| v.addr.clone()).unwrap_or_default();
            if addr.is_empty() {
                why.push(format!("{m}: no failsafe address known (its agent's vouch_addr)"));
                continue;
            }
            let channel = match channels.get(&addr) {
                Some(c) => c.clone(),
                None => match Endpoint::from_shared(format!("https://{addr}"))
                    .and_then(|e| e.tls_config(self.tls.clone()))
                    .map(|e| e.connect_timeout(timeout).tcp_nodelay(true).connect_lazy())
                {
                    Ok(c) => {
                        channels.insert(addr.clone(), c.clone());
                        c
                    }
                    Err(e) => {
                        why.push(format!("{m}: bad address {addr}: {e}"));
                        continue;
                    }
                },
            };
            let req = VouchRequest { cluster: t.cluster.clone(), primary: t.member.clone(), epoch: t.epoch };
            let m = m.clone();
            calls.push(async move {
                let r = tokio::time::timeout(timeout, VouchClient::new(channel).vouch(req)).await;
                (m, r)
            });
        }
        let mut unreachable = !why.is_empty();
        let mut shortest = u64::MAX;
        for (m, r) in futures::future::join_all(calls).await {
            match r {
                Ok(Ok(reply)) => {
                    let reply = reply.into_inner();
                    if reply.vouched && reply.vouch_ms > 0 {
                        shortest = shortest.min(reply.vouch_ms);
                    } else {
                        why.push(format!("{m} refused: {}", reply.refused));
                    }
                }
                Ok(Err(status)) => {
                    unreachable = true;
                    why.push(format!("{m}: {}", status.message()));
                }
                Err(_) => {
                    unreachable = true;
                    why.push(format!("{m}: no answer within {} ms", timeout.as_millis()));
                }
            }
        }
        if why.is_empty() {
            Round::Vouched(shortest)
        } else {
            Round::Failed { unreachable, why }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby() -> Assignment {
        Assignment {
            cluster: "customs".into(),
            member: "ndc".into(),
            epoch: 4,
            role: "standby".into(),
            primary: "dc".into(),
            vouch: vec!["ndc".into()],
            vouch_ms: 2500,
            primary_agent: "agent-dc".into(),
            ..Default::default()
        }
    }

    fn ask(epoch: u64) -> VouchRequest {
        VouchRequest { cluster: "customs".into(), primary: "dc".into(), epoch }
    }

    #[test]
    fn a_standby_in_the_vouch_set_vouches_for_the_current_primary() {
        assert_eq!(judge(Some(&standby()), Some(4), "standby", "agent-dc", &ask(4)), Ok(2500));
    }

    #[test]
    fn the_primary_asks_once_renewals_are_a_heartbeat_and_a_half_late_and_before_the_fence() {
        // P 1100, heartbeats every 200 ms, fence 500 ms before the end.
        assert!(!should_ask(1100, 1100, 200, 500), "just renewed");
        assert!(!should_ask(880, 1100, 200, 500), "one heartbeat since the renewal: on time");
        assert!(should_ask(800, 1100, 200, 500), "a heartbeat and a half without a renewal");
        assert!(should_ask(501, 1100, 200, 500));
        assert!(!should_ask(500, 1100, 200, 500), "the guard fences now");
        assert!(!should_ask(-5, 1100, 200, 500), "lapsed");
        // A lease shorter than the heartbeats: never asks rather than underflow.
        assert!(!should_ask(100, 200, 200, 500));
    }

    #[test]
    fn every_reason_to_refuse() {
        let t = standby();
        assert!(judge(None, Some(4), "standby", "agent-dc", &ask(4)).is_err(), "no target state");
        assert!(judge(Some(&t), None, "standby", "agent-dc", &ask(4)).is_err(), "unreadable epoch file");
        assert!(
            judge(Some(&t), Some(4), "standby", "agent-dc", &ask(3)).unwrap_err().to_string().contains("epoch 4"),
            "stale asker"
        );
        let newer = Assignment { epoch: 5, primary: "ndc".into(), role: "primary".into(), ..standby() };
        assert!(judge(Some(&newer), Some(5), "standby", "agent-dc", &ask(4)).is_err(), "a higher epoch was accepted");
        assert_eq!(judge(Some(&t), Some(4), "primary", "agent-dc", &ask(4)), Err(VouchRefusal::PrimaryItself));
        let other = VouchRequest { primary: "dr".into(), ..ask(4) };
        assert!(judge(Some(&t), Some(4), "standby", "agent-dc", &other).unwrap_err().to_string().contains("not `dr`"));
        let outside = Assignment { vouch: vec![], ..standby() };
        assert!(matches!(
            judge(Some(&outside), Some(4), "standby", "agent-dc", &ask(4)),
            Err(VouchRefusal::NotInVouchSet(_))
        ));
        let stranger = judge(Some(&t), Some(4), "standby", "agent-dr", &ask(4)).unwrap_err().to_string();
        assert!(stranger.contains("only it may ask"), "another agent's certificate: {stranger}");
        let wrong = VouchRequest { cluster: "other".into(), ..ask(4) };
        assert!(judge(Some(&t), Some(4), "standby", "agent-dc", &wrong).is_err());
    }

    #[test]
    fn a_voucher_holds_its_promote_after_its_start_and_its_last_vouch() {
        let v = Vouches::new();
        assert!(v.hold_left_ms(10_000) > 9_000, "a fresh start counts as a vouch");
        assert_eq!(v.hold_left_ms(0), 0);
        let refused = Vouches { last_boot_ms: Mutex::new(0) };
        for _ in 0..100 {
            assert!(refused.grant_if(|| Err(VouchRefusal::NoTarget)).is_err());
        }
        assert_eq!(refused.hold_left_ms(5_000), 0, "refusals do not extend the hold");
        assert_eq!(refused.grant_if(|| Ok(1100)), Ok(1100));
        assert!(refused.hold_left_ms(5_000) > 4_000, "a vouch granted does");
    }
}
