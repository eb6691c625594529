//! Retention (leader only): proposes `Command::ArchiveAlerts` when closed alerts are due to leave
//! memory (`[alerts.retention]`), at most every minute (sooner with a short retention).

use std::sync::Arc;
use std::time::Duration;

use crate::context::{now_ms, Ctx};
use crate::state::{Actor, Command};

/// Runs for the life of the process; proposes only while this controller leads.
pub async fn run(ctx: Arc<Ctx>) {
    let r = ctx.cfg.alerts.retention.clone();
    let every = Duration::from_millis((r.keep_closed_ms / 4).clamp(1_000, 60_000));
    loop {
        tokio::time::sleep(every).await;
        if !ctx.is_leader() {
            continue;
        }
        let cutoff = now_ms().saturating_sub(r.keep_closed_ms);
        let due = {
            let g = ctx.state.read().expect("state lock poisoned");
            let closed: Vec<u64> = g.state.alerts.alerts.values().filter_map(|a| a.closed_ms).collect();
            closed.len() as u64 > r.max_closed_in_memory || closed.iter().any(|t| *t < cutoff)
        };
        if due {
            let command = Command::ArchiveAlerts { closed_before_ms: cutoff, keep_at_most: r.max_closed_in_memory };
            if let Err(e) = ctx.proposer.propose(ctx.proposal(Actor::system(ctx.id), command)).await {
                tracing::warn!("closed alerts not archived this round: {e}");
            }
        }
    }
}
