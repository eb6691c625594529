//! The notifier (leader only): escalates unacknowledged alerts, commits the decision to notify
//! (`decide.rs`), then delivers what is pending (`deliver.rs`) and commits how each attempt went.
//! Failed deliveries are retried with back-off (2 s doubling to 5 min) and given up after
//! [`MAX_ATTEMPTS`], which status and `triad_alerts_notifications_total{outcome="failed"}` show.
//!
//! Across a change of leader: decisions and outcomes are in the log, so the new leader neither
//! decides twice nor forgets what is pending. A leader that dies between sending and recording
//! leaves the notification pending; its successor sends it again (at least once, never lost),
//! with the same id for the receiver to drop.

pub mod decide;
pub mod deliver;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::context::{now_ms, Ctx};
use crate::state::alerts::{Delivery, NotifyState};
use crate::state::{Actor, Command, Response};

/// Attempts before a notification is given up.
pub const MAX_ATTEMPTS: u32 = 8;
/// How often the notifier looks.
const TICK: Duration = Duration::from_millis(250);

/// When attempt `attempts` + 1 is made after a failure.
fn backoff_ms(attempts: u32) -> u64 {
    (2_000u64 << attempts.min(10)).min(300_000)
}

/// Runs for the life of the process; acts only while this controller leads.
pub async fn run(ctx: Arc<Ctx>) {
    let cfg = ctx.cfg.alerts.notify.clone();
    if cfg.channels.is_empty() {
        return;
    }
    let http = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("notifications are off: no HTTP client ({e})");
            return;
        }
    };
    let in_flight: Arc<Mutex<HashSet<u64>>> = Default::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !ctx.is_leader() {
            in_flight.lock().expect("in-flight lock").clear();
            continue;
        }
        let now = now_ms();
        let decisions = {
            let g = ctx.state.read().expect("state lock poisoned");
            let mut d = decide::escalations(&g.state, &cfg, now);
            d.extend(decide::notifications(&g.state, &cfg, now));
            d
        };
        for command in decisions {
            if let Err(e) = ctx.proposer.propose(ctx.proposal(Actor::system(ctx.id), command)).await {
                tracing::warn!("a notification decision was not committed: {e}");
                break;
            }
        }
        let due: Vec<_> = {
            let g = ctx.state.read().expect("state lock poisoned");
            let busy = in_flight.lock().expect("in-flight lock");
            g.state
                .alerts
                .notifications
                .values()
                .filter(|n| n.state == NotifyState::Pending && n.next_attempt_ms <= now && !busy.contains(&n.id))
                .map(|n| (n.clone(), deliver::message(n, &g.state)))
                .collect()
        };
        for (n, message) in due {
            let Some(channel) = cfg.channels.iter().find(|c| c.name == n.channel).cloned() else {
                // Its channel left the config: record that, once.
                record(
                    &ctx,
                    n.id,
                    Delivery::Failed { error: format!("no channel `{}` configured", n.channel), retry_at_ms: None },
                )
                .await;
                continue;
            };
            in_flight.lock().expect("in-flight lock").insert(n.id);
            let (ctx, http, in_flight) = (ctx.clone(), http.clone(), in_flight.clone());
            tokio::spawn(async move {
                let outcome = match message {
                    None => Err(deliver::DeliveryError::SubjectGone),
                    Some(m) => deliver::send(&http, &channel, &m).await,
                };
                let attempts = n.attempts + 1;
                let delivery = match outcome {
                    Ok(ticket) => {
                        ctx.metrics.notifications.with_label_values(&[&channel.name, "sent"]).inc();
                        Delivery::Delivered { ticket }
                    }
                    Err(error) => {
                        tracing::warn!(channel = %channel.name, notification = n.id, attempts, "delivery failed: {error}");
                        let retry_at_ms = (attempts < MAX_ATTEMPTS).then(|| now_ms() + backoff_ms(n.attempts));
                        if retry_at_ms.is_none() {
                            ctx.metrics.notifications.with_label_values(&[&channel.name, "failed"]).inc();
                        }
                        Delivery::Failed { error: error.to_string(), retry_at_ms }
                    }
                };
                record(&ctx, n.id, delivery).await;
                in_flight.lock().expect("in-flight lock").remove(&n.id);
            });
        }
    }
}

async fn record(ctx: &Ctx, id: u64, outcome: Delivery) {
    let proposal = ctx.proposal(Actor::system(ctx.id), Command::RecordDelivery { id, outcome });
    match ctx.proposer.propose(proposal).await {
        Ok(c) if matches!(c.response, Response::Ok(_)) => {}
        Ok(c) => tracing::info!(notification = id, "delivery not recorded: {:?}", c.response),
        Err(e) => tracing::warn!(notification = id, "delivery not recorded (the next leader sends it again): {e}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_to_five_minutes() {
        let b: Vec<u64> = (0..10).map(super::backoff_ms).collect();
        assert_eq!(&b[..4], &[2_000, 4_000, 8_000, 16_000]);
        assert_eq!(b[9], 300_000);
    }
}
