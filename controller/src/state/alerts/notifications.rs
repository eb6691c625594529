//! Notifications: the leader's decision to tell someone about an alert (or to export an incident
//! to the helpdesk) is committed before anything is sent, once per alert opening, channel and
//! escalation level (a second proposal of the same decision is refused), and so is every
//! delivery's outcome. A new leader delivers what is still pending; a leader that dies after
//! sending but before recording the outcome makes its successor send again, so each delivery
//! carries the notification's id for the receiver to drop a repeat (`brain/notify`).

use serde::{Deserialize, Serialize};

use crate::state::{Proposal, Rejection, Role, State};

/// Notifications kept (the oldest finished ones go first).
const KEPT: usize = 10_000;

crate::named_enum! {
    /// Where a notification stands.
    pub enum NotifyState: "notification state" {
        /// Decided, not yet delivered: the leader delivers it at `next_attempt_ms`.
        Pending = "pending",
        Delivered = "delivered",
        /// Every attempt failed; shown in status and counted, for someone to look at.
        Failed = "failed",
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Subject {
    /// An alert, at one of its openings (its `opened_ms`).
    Alert { id: u64, opened_ms: u64 },
    /// An incident (exported to the helpdesk).
    Incident { id: u64 },
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Delivered; for an incident sent to the helpdesk, the ticket id it answered with.
    Delivered { ticket: Option<String> },
    /// Failed; tried again at `retry_at_ms`, or given up when `None`.
    Failed { error: String, retry_at_ms: Option<u64> },
}

/// A decision to notify, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: u64,
    pub subject: Subject,
    /// The configured channel's name.
    pub channel: String,
    /// The escalation level it is for (0: the alert opened).
    pub level: u32,
    pub created_ms: u64,
    pub state: NotifyState,
    pub attempts: u32,
    pub last_error: String,
    pub next_attempt_ms: u64,
    pub delivered_ms: Option<u64>,
}

impl State {
    pub(super) fn notify(
        &mut self,
        p: &Proposal,
        subject: Subject,
        channel: &str,
        level: u32,
    ) -> Result<String, Rejection> {
        if p.actor.role != Role::System {
            return Err(Rejection::NotAllowed("only the leader decides notifications".into()));
        }
        let book = &mut self.alerts;
        if book.notifications.values().any(|n| n.subject == subject && n.channel == channel && n.level == level) {
            return Err(Rejection::Conflict(format!("{subject:?} is already notified on {channel} at level {level}")));
        }
        match subject {
            Subject::Alert { id, .. } if !book.alerts.contains_key(&id) => {
                return Err(Rejection::NotFound(format!("no alert {id}")))
            }
            Subject::Incident { id } if !self.incidents.incidents.contains_key(&id) => {
                return Err(Rejection::NotFound(format!("no incident {id}")))
            }
            _ => {}
        }
        book.last_notification_id += 1;
        let id = book.last_notification_id;
        let n = Notification {
            id,
            subject,
            channel: channel.to_string(),
            level,
            created_ms: p.at_ms,
            state: NotifyState::Pending,
            attempts: 0,
            last_error: String::new(),
            next_attempt_ms: p.at_ms,
            delivered_ms: None,
        };
        book.notifications.insert(id, n);
        while book.notifications.len() > KEPT {
            let oldest_done = book.notifications.iter().find(|(_, n)| n.state != NotifyState::Pending).map(|(k, _)| *k);
            match oldest_done {
                Some(k) => book.notifications.remove(&k),
                None => break,
            };
        }
        if let Subject::Alert { id: alert, .. } = subject {
            if let Some(a) = book.alerts.get_mut(&alert) {
                a.note(p.at_ms, "triad", format!("notifying {channel} (level {level}, notification {id})"));
            }
        }
        Ok(format!("notification {id}"))
    }

    /// Records a delivery attempt: delivered (with the helpdesk's ticket id for an incident), or
    /// failed and retried at `retry_at_ms`, or given up (`None`).
    pub(super) fn notification_outcome(
        &mut self,
        p: &Proposal,
        id: u64,
        outcome: &Delivery,
    ) -> Result<String, Rejection> {
        if p.actor.role != Role::System {
            return Err(Rejection::NotAllowed("only the leader records deliveries".into()));
        }
        let n = self
            .alerts
            .notifications
            .get_mut(&id)
            .ok_or_else(|| Rejection::NotFound(format!("no notification {id}")))?;
        if n.state != NotifyState::Pending {
            return Err(Rejection::Conflict(format!("notification {id} is already {}", n.state)));
        }
        n.attempts += 1;
        let (channel, subject) = (n.channel.clone(), n.subject);
        match outcome {
            Delivery::Delivered { ticket } => {
                n.state = NotifyState::Delivered;
                n.delivered_ms = Some(p.at_ms);
                if let Subject::Alert { id: alert, .. } = subject {
                    if let Some(a) = self.alerts.alerts.get_mut(&alert) {
                        a.note(p.at_ms, "triad", format!("delivered to {channel} (notification {id})"));
                    }
                }
                if let (Subject::Incident { id: incident }, Some(t)) = (subject, ticket) {
                    if let Some(i) = self.incidents.incidents.get_mut(&incident) {
                        i.ticket = Some(t.clone());
                    }
                }
                Ok(format!("notification {id} delivered on {channel}"))
            }
            Delivery::Failed { error: why, retry_at_ms: retry } => {
                n.last_error = why.chars().take(500).collect();
                match retry {
                    Some(at) => n.next_attempt_ms = *at,
                    None => n.state = NotifyState::Failed,
                }
                Ok(format!("notification {id} on {channel} failed ({}): {why}", n.state))
            }
        }
    }
}
