//! `triadctl cluster`, `triadctl user` and `triadctl audit`: membership, role overrides and the
//! audit trail.

use serde::Serialize;
use triad_proto::v1 as pb;

use super::client::Client;
use crate::error::Result;

/// `triadctl cluster add`: the new controller must already be running with `join = true`.
pub async fn cluster_add(client: &Client, req: pb::AddControllerRequest) -> Result<String> {
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.add_controller(req).await }
        })
        .await?;
    Ok(format!("{}\nvoters: {:?}  learners: {:?}", r.message, r.voters, r.learners))
}

/// `triadctl cluster remove`.
pub async fn cluster_remove(client: &Client, id: u64) -> Result<String> {
    let r =
        client.on_leader(|mut c| async move { c.remove_controller(pb::RemoveControllerRequest { id }).await }).await?;
    Ok(format!("{}\nvoters: {:?}  learners: {:?}", r.message, r.voters, r.learners))
}

/// `triadctl cluster confirm-quorum`.
pub async fn confirm_quorum(client: &Client, reason: &str) -> Result<String> {
    let req = pb::ConfirmQuorumRequest { reason: reason.into() };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.confirm_quorum(req).await }
        })
        .await?;
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `triadctl user put`.
pub async fn user_put(client: &Client, name: &str, role: &str) -> Result<String> {
    let req = pb::PutUserRequest { name: name.into(), role: role.into() };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.put_user(req).await }
        })
        .await?;
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `triadctl user delete`.
pub async fn user_delete(client: &Client, name: &str) -> Result<String> {
    let req = pb::DeleteUserRequest { name: name.into() };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.delete_user(req).await }
        })
        .await?;
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `triadctl pause` / `triadctl resume`.
pub async fn set_paused(client: &Client, cluster: &str, paused: bool, reason: &str) -> Result<String> {
    let req = pb::SetPausedRequest { cluster: cluster.into(), paused, reason: reason.into() };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.set_paused(req).await }
        })
        .await?;
    if paused {
        return Ok(format!(
            "{}: pausing `{cluster}` turns automatic failover off, so a second person (admin or noc) approves it \
             with `triadctl approve {}` within 10 minutes",
            r.message,
            r.message.trim_start_matches("request ")
        ));
    }
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `triadctl switchover`.
pub async fn switchover(client: &Client, cluster: &str, to: &str) -> Result<String> {
    let req = pb::SwitchoverRequest { cluster: cluster.into(), to: to.into() };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.switchover(req).await }
        })
        .await?;
    Ok(r.message)
}

/// Where writers go: the committed primary and how to reach it.
#[derive(Serialize, PartialEq, Clone)]
pub struct EndpointView {
    pub cluster: String,
    pub epoch: u64,
    pub primary: String,
    /// The primary's driver's connect string (PostgreSQL: libpq keywords, `host=... port=...`), as
    /// the primary's agent reports it.
    pub endpoint: String,
    pub paused: bool,
}

/// `triadctl endpoint`.
pub async fn endpoint(client: &Client, cluster: &str) -> Result<EndpointView> {
    endpoint_on(&mut client.reader().await?, cluster).await
}

/// The endpoint as the controller behind `c` has it (`--watch` keeps one connection).
pub async fn endpoint_on(
    c: &mut triad_proto::v1::control_client::ControlClient<tonic::transport::Channel>,
    cluster: &str,
) -> Result<EndpointView> {
    let state = c.state(pb::StateRequest {}).await?.into_inner();
    let cl = state
        .clusters
        .into_iter()
        .find(|c| c.name == cluster)
        .ok_or_else(|| crate::Error::InvalidArgument(format!("no cluster named `{cluster}`")))?;
    let endpoint = cl.members.iter().find(|m| m.name == cl.primary).map(|m| m.endpoint.clone()).unwrap_or_default();
    Ok(EndpointView { cluster: cl.name, epoch: cl.epoch, primary: cl.primary, endpoint, paused: cl.paused })
}

/// The endpoint as one line.
pub fn render_endpoint(v: &EndpointView) -> String {
    if v.primary.is_empty() {
        return format!("{}: no primary recorded yet (epoch {})", v.cluster, v.epoch);
    }
    format!(
        "{}: primary {} at {} (epoch {}){}",
        v.cluster,
        v.primary,
        if v.endpoint.is_empty() { "an unknown address" } else { &v.endpoint },
        v.epoch,
        if v.paused { " PAUSED" } else { "" }
    )
}

/// One workflow, for `triadctl history`.
#[derive(Serialize)]
pub struct HistoryLine {
    pub id: u64,
    pub kind: String,
    pub cluster: String,
    pub from: String,
    pub to: String,
    pub requested_by: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub duration_ms: u64,
    pub outcome: String,
    /// (step, milliseconds since the workflow started, note)
    pub steps: Vec<(String, u64, String)>,
}

/// `triadctl history`: newest first.
pub async fn history(client: &Client, cluster: &str) -> Result<Vec<HistoryLine>> {
    let mut c = client.reader().await?;
    let r = c.history(pb::HistoryRequest { cluster: cluster.into() }).await?.into_inner();
    Ok(r.workflows
        .into_iter()
        .map(|w| HistoryLine {
            duration_ms: w.finished_ms.saturating_sub(w.started_ms),
            steps: w.steps.into_iter().map(|s| (s.name, s.at_ms.saturating_sub(w.started_ms), s.note)).collect(),
            id: w.id,
            kind: w.kind,
            cluster: w.cluster,
            from: w.from,
            to: w.to,
            requested_by: w.requested_by,
            started_ms: w.started_ms,
            finished_ms: w.finished_ms,
            outcome: w.outcome,
        })
        .collect())
}

/// The history as text.
pub fn render_history(lines: &[HistoryLine]) -> String {
    if lines.is_empty() {
        return "no workflows yet\n".into();
    }
    let mut out = String::new();
    for w in lines {
        out.push_str(&format!(
            "#{} {} of {} from {} to {}, asked by {}, started {}: {}{}\n",
            w.id,
            w.kind,
            w.cluster,
            w.from,
            w.to,
            w.requested_by,
            when(w.started_ms),
            w.outcome,
            if w.finished_ms > 0 { format!(" after {} ms", w.duration_ms) } else { String::new() }
        ));
        for (name, at, note) in &w.steps {
            out.push_str(&format!("    +{at:>6} ms  {name:<12} {note}\n"));
        }
    }
    out
}

fn when(ms: u64) -> String {
    triad_proto::words::format_utc(ms)
}

/// One audit line, for `-o json`.
#[derive(Serialize)]
pub struct AuditLine {
    pub seq: u64,
    pub at_ms: u64,
    pub actor: String,
    pub role: String,
    pub origin: String,
    pub action: String,
    pub log_index: u64,
}

/// `triadctl audit`: newest first.
pub async fn audit(client: &Client, limit: u32) -> Result<Vec<AuditLine>> {
    let mut c = client.reader().await?;
    let r = c.audit(pb::AuditRequest { limit }).await?.into_inner();
    Ok(r.entries
        .into_iter()
        .map(|e| AuditLine {
            seq: e.seq,
            at_ms: e.at_ms,
            actor: e.actor,
            role: e.role,
            origin: e.origin,
            action: e.action,
            log_index: e.log_index,
        })
        .collect())
}

/// The audit lines as a table.
pub fn render_audit(lines: &[AuditLine]) -> String {
    let mut out = format!("{:>6} {:<24} {:<16} {:<8} {:<22} {}\n", "SEQ", "WHEN (UTC)", "WHO", "ROLE", "FROM", "WHAT");
    for l in lines {
        let when = triad_proto::words::format_utc_bare(l.at_ms).unwrap_or_else(|| l.at_ms.to_string());
        out.push_str(&format!(
            "{:>6} {:<24} {:<16} {:<8} {:<22} {}\n",
            l.seq, when, l.actor, l.role, l.origin, l.action
        ));
    }
    out
}
