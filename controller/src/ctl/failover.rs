//! `triadctl failover`, `approve` and `cancel`: a manual failover is requested by one operator and
//! carried out by the leader once a second one approves (DESIGN.md, "Security").

use std::time::{Duration, Instant};

use triad_proto::v1 as pb;

use super::client::Client;
use crate::error::{Error, Result};

/// `triadctl failover`: records the request; prints how to approve it.
pub async fn request(
    client: &Client,
    cluster: &str,
    to: &str,
    reason: &str,
    accept_data_loss: bool,
    attested_dead: &[String],
) -> Result<String> {
    let req = pb::FailoverRequest {
        cluster: cluster.into(),
        to: to.into(),
        reason: reason.into(),
        accept_data_loss,
        attested_dead: attested_dead.to_vec(),
    };
    let r = client
        .on_leader(|mut c| {
            let req = req.clone();
            async move { c.request_failover(req).await }
        })
        .await?;
    let id = r.message.strip_prefix("request ").unwrap_or(&r.message).to_string();
    Ok(format!(
        "failover of {cluster} to {to}: request {id}, waiting for a second person's approval (10 minutes):\n  \
         triadctl approve {id}      (another admin or noc identity)\n  triadctl cancel {id}"
    ))
}

/// `triadctl approve`: approves, then follows the failover until it ends (at most `wait`).
pub async fn approve(client: &Client, id: u64, wait: Duration) -> Result<String> {
    let r = client.on_leader(|mut c| async move { c.approve(pb::ApprovalRequest { id }).await }).await?;
    let deadline = Instant::now() + wait;
    let mut shown = 0usize;
    let mut first = true;
    loop {
        let mut c = client.reader().await?;
        let state = c.state(pb::StateRequest {}).await?.into_inner();
        let a = state.approvals.iter().find(|a| a.id == id).cloned();
        let Some(a) = a else {
            return Err(Error::Unavailable(format!("request {id} vanished")));
        };
        if a.action == "pause" {
            // A pause takes effect with its approval.
            return Ok(r.message);
        }
        if std::mem::take(&mut first) {
            crate::outln!("request {id} approved; the leader carries it out");
        }
        // Progress: the steps of the newest failover of the cluster, as they are recorded.
        if let Ok(h) = c.history(pb::HistoryRequest { cluster: a.cluster.clone() }).await {
            let h = h.into_inner();
            if let Some(w) = h.workflows.iter().find(|w| w.kind == "failover" && w.started_ms >= a.requested_ms) {
                for s in w.steps.iter().skip(shown) {
                    crate::outln!("  {:<18} {}", s.name, s.note);
                }
                shown = shown.max(w.steps.len());
            }
        }
        if !matches!(a.state.as_str(), "approved" | "started") {
            return if a.state.starts_with("completed") {
                Ok(a.state)
            } else {
                Err(Error::Rejected(crate::state::Rejection::Conflict(format!("request {id}: {}", a.state))))
            };
        }
        if Instant::now() >= deadline {
            return Err(Error::Unavailable(format!(
                "request {id} is still {} after {} s; follow it with `triadctl history --cluster {}`",
                a.state,
                wait.as_secs(),
                a.cluster
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `triadctl cancel`.
pub async fn cancel(client: &Client, id: u64) -> Result<String> {
    let r = client.on_leader(|mut c| async move { c.cancel_approval(pb::ApprovalRequest { id }).await }).await?;
    Ok(r.message)
}

/// The controller a break-glass command goes to: the one named, or the first that answers.
async fn stranded_controller(
    client: &Client,
    controller: Option<&str>,
) -> Result<triad_proto::v1::control_client::ControlClient<tonic::transport::Channel>> {
    match controller {
        Some(addr) => client.control(addr).await,
        None => Ok(client.any().await?.1),
    }
}

/// `triadctl break-glass request`: records the order on the stranded controller.
pub async fn break_glass_request(
    client: &Client,
    controller: Option<&str>,
    cluster: &str,
    to: &str,
    attestation: &str,
) -> Result<String> {
    let mut c = stranded_controller(client, controller).await?;
    let req = pb::BreakGlassRequest { cluster: cluster.into(), to: to.into(), attestation: attestation.into() };
    Ok(c.break_glass(req).await?.into_inner().message)
}

/// `triadctl break-glass approve`: the second person's approval; the controller restarts.
pub async fn break_glass_approve(client: &Client, controller: Option<&str>, id: u64) -> Result<String> {
    let mut c = stranded_controller(client, controller).await?;
    Ok(c.approve_break_glass(pb::ApprovalRequest { id }).await?.into_inner().message)
}
