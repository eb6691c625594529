//! The `Alerts` service: the SOC's queue. Reads answer from the local applied state (marked stale
//! on followers); every change is a command through the proposer, checked by role here and again
//! by the state, and recorded in the audit log (refusals too).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use triad_proto::v1 as pb;
use triad_proto::v1::alerts_server::Alerts;

use super::auth::{self, Caller};
use super::bounded_text;
use crate::context::Ctx;
use crate::state::alerts::{Alert, AlertStatus, Matcher, Severity, SourceKind, TriageAction};
use crate::state::{Command, Role};

/// Who may read the queue.
const ALERT_READERS: &[Role] = &[Role::Admin, Role::Noc, Role::Soc, Role::Auditor];
/// Who may triage and silence.
const TRIAGERS: &[Role] = &[Role::Admin, Role::Soc];
/// The most alerts one list answers with.
const MAX_LIST: usize = 10_000;

/// Serves the SOC.
pub struct AlertsApi {
    ctx: Arc<Ctx>,
}

impl AlertsApi {
    pub fn new(ctx: Arc<Ctx>) -> Self {
        AlertsApi { ctx }
    }

    fn authorise<T>(&self, req: &Request<T>, allowed: &[Role], what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require_recorded(&self.ctx, &caller, allowed, what)?;
        Ok(caller)
    }

    fn authorise_read<T>(&self, req: &Request<T>, what: &str) -> Result<Caller, Status> {
        let caller = auth::caller(req, &self.ctx.state)?;
        auth::require(&caller, ALERT_READERS, what)?;
        Ok(caller)
    }

    async fn propose(&self, caller: &Caller, command: Command) -> Result<Response<pb::MutationReply>, Status> {
        super::mutation(&self.ctx, caller, command).await
    }

    fn counted<T>(&self, method: &str, result: Result<T, Status>) -> Result<T, Status> {
        self.ctx.metrics.rpc(method, &result);
        result
    }
}

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// The triage action a request names.
fn triage_action(action: &str, text: String) -> Result<TriageAction, Status> {
    let text = bounded_text("the text", &text, 2000)?;
    Ok(match action {
        "acknowledge" | "ack" => TriageAction::Acknowledge,
        "assign" => TriageAction::Assign { to: text },
        "escalate" => TriageAction::Escalate { to_level: 0, reason: text },
        "comment" => TriageAction::Comment { text },
        "resolve" => TriageAction::Resolve { reason: text },
        "false-positive" => TriageAction::FalsePositive { reason: text },
        "reopen" => TriageAction::Reopen { reason: text },
        other => {
            return Err(invalid(format!(
                "action `{}`: one of acknowledge, assign, escalate, comment, resolve, false-positive, reopen",
                other.chars().take(40).collect::<String>()
            )))
        }
    })
}

/// Filters of a list request, checked.
struct Filter {
    status: Vec<AlertStatus>,
    min_severity: Option<Severity>,
    site: String,
    source: String,
    text: String,
    since_ms: u64,
    until_ms: u64,
}

impl Filter {
    fn from_request(r: &pb::ListAlertsRequest) -> Result<Filter, Status> {
        let mut status = Vec::new();
        for s in &r.status {
            match s.as_str() {
                "active" => status.extend([AlertStatus::Open, AlertStatus::Acknowledged]),
                s => status.push(
                    s.parse()
                        .map_err(|_| invalid(format!("--status `{s}`: one of active, {}", AlertStatus::names())))?,
                ),
            }
        }
        let min_severity = match r.min_severity.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| invalid(format!("--severity `{s}`: one of {}", Severity::names())))?),
        };
        Ok(Filter {
            status,
            min_severity,
            site: bounded_text("--site", &r.site, 64)?,
            source: bounded_text("--source", &r.source, 64)?,
            text: bounded_text("--text", &r.text, 200)?.to_lowercase(),
            since_ms: r.since_ms,
            until_ms: r.until_ms,
        })
    }

    fn matches(&self, a: &Alert) -> bool {
        let text_hit = || {
            let t = &self.text;
            a.title.to_lowercase().contains(t)
                || a.description.to_lowercase().contains(t)
                || a.place.host.to_lowercase().contains(t)
                || a.labels.values().any(|v| v.to_lowercase().contains(t))
        };
        (self.status.is_empty() || self.status.contains(&a.status))
            && self.min_severity.is_none_or(|s| a.severity >= s)
            && (self.site.is_empty() || a.place.site == self.site)
            && (self.source.is_empty() || a.source == self.source)
            && (self.since_ms == 0 || a.last_seen_ms >= self.since_ms)
            && (self.until_ms == 0 || a.last_seen_ms < self.until_ms)
            && (self.text.is_empty() || text_hit())
    }
}

/// An alert as the API shows it; its history only when asked.
pub fn alert_record(a: &Alert, with_history: bool, state: &crate::state::State) -> pb::AlertRecord {
    let incident_title =
        a.incident.and_then(|i| state.incidents.incidents.get(&i)).map(|i| i.title.clone()).unwrap_or_default();
    pb::AlertRecord {
        incident_title,
        id: a.id,
        source: a.source.clone(),
        kind: a.kind.to_string(),
        fingerprint: a.fingerprint.clone(),
        severity: a.severity.to_string(),
        title: a.title.clone(),
        description: a.description.clone(),
        labels: a.labels.clone().into_iter().collect(),
        site: a.place.site.clone(),
        host: a.place.host.clone(),
        address: a.place.address.clone(),
        agent: a.place.agent.clone(),
        placed_by: a.place.by.clone(),
        asset: a.place.asset.clone(),
        office: a.place.office.clone(),
        owner: a.place.owner.clone(),
        link: a.place.link.clone(),
        first_seen_ms: a.first_seen_ms,
        last_seen_ms: a.last_seen_ms,
        count: a.count,
        status: a.status.to_string(),
        assignee: a.assignee.clone().unwrap_or_default(),
        escalation: a.escalation,
        acknowledged_ms: a.acknowledged_ms.unwrap_or(0),
        closed_ms: a.closed_ms.unwrap_or(0),
        silenced_by: a.silenced_by.unwrap_or(0),
        incident: a.incident.unwrap_or(0),
        history: if with_history {
            a.history
                .iter()
                .map(|n| pb::AlertNote { at_ms: n.at_ms, actor: n.actor.clone(), text: n.text.clone() })
                .collect()
        } else {
            Vec::new()
        },
    }
}

#[tonic::async_trait]
impl Alerts for AlertsApi {
    async fn list_incidents(
        &self,
        req: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsReply>, Status> {
        let result = self.authorise_read(&req, "reading incidents").map(|_| {
            let limit = match req.get_ref().limit as usize {
                0 => 50,
                n => n.min(1000),
            };
            let g = self.ctx.state.read().expect("state lock poisoned");
            let book = &g.state.incidents;
            let incidents = book
                .incidents
                .values()
                .rev()
                .take(limit)
                .map(|i| {
                    let e = book.events.get(&i.event);
                    pb::IncidentRecord {
                        id: i.id,
                        title: i.title.clone(),
                        opened_ms: i.opened_ms,
                        alerts: i.alerts.iter().copied().collect(),
                        more: i.more,
                        ticket: i.ticket.clone().unwrap_or_default(),
                        event_kind: e.map(|e| e.kind.to_string()).unwrap_or_default(),
                        sites: e.map(|e| e.sites.iter().cloned().collect()).unwrap_or_default(),
                        started_ms: e.map(|e| e.started_ms).unwrap_or(0),
                        ended_ms: e.and_then(|e| e.ended_ms).unwrap_or(0),
                    }
                })
                .collect();
            Response::new(pb::ListIncidentsReply { incidents })
        });
        self.counted("Alerts/ListIncidents", result)
    }

    async fn put_source(&self, req: Request<pb::PutSourceRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin], "configuring alert sources")?;
            let r = req.into_inner();
            let kind: SourceKind = r.kind.parse().map_err(|_| {
                invalid(format!(
                    "--kind `{}`: one of alertmanager, wazuh, generic",
                    r.kind.chars().take(40).collect::<String>()
                ))
            })?;
            let name = bounded_text("the source name", &r.name, 64)?;
            let command = Command::PutIngestSource { name, kind, token_sha256: r.token_sha256, grace_ms: r.grace_ms };
            self.propose(&caller, command).await
        }
        .await;
        self.counted("Alerts/PutSource", result)
    }

    async fn delete_source(
        &self,
        req: Request<pb::DeleteSourceRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, &[Role::Admin], "configuring alert sources")?;
            let name = bounded_text("the source name", &req.into_inner().name, 64)?;
            self.propose(&caller, Command::DeleteIngestSource { name }).await
        }
        .await;
        self.counted("Alerts/DeleteSource", result)
    }

    async fn list_sources(
        &self,
        req: Request<pb::ListSourcesRequest>,
    ) -> Result<Response<pb::ListSourcesReply>, Status> {
        let result = self.authorise_read(&req, "listing alert sources").map(|_| {
            let now = crate::context::now_ms();
            let g = self.ctx.state.read().expect("state lock poisoned");
            let sources = g
                .state
                .alerts
                .sources
                .values()
                .map(|s| pb::SourceRecord {
                    name: s.name.clone(),
                    kind: s.kind.to_string(),
                    tokens: s.tokens.iter().filter(|t| t.expires_ms.is_none_or(|e| now < e)).count() as u32,
                    created_by: s.created_by.clone(),
                    created_ms: s.created_ms,
                })
                .collect();
            Response::new(pb::ListSourcesReply { sources })
        });
        self.counted("Alerts/ListSources", result)
    }

    async fn list(&self, req: Request<pb::ListAlertsRequest>) -> Result<Response<pb::ListAlertsReply>, Status> {
        let result = (|| {
            self.authorise_read(&req, "reading alerts")?;
            let r = req.get_ref();
            let filter = Filter::from_request(r)?;
            let limit = match r.limit as usize {
                0 => 100,
                n => n.min(MAX_LIST),
            };
            let g = self.ctx.state.read().expect("state lock poisoned");
            if r.archived {
                // Bounded: a filter over a long history reads at most this many alerts.
                let found = crate::raft::read_archived_alerts(&self.ctx.db, |a| filter.matches(a), limit, 200_000)
                    .map_err(|e| Status::internal(e.to_string()))?;
                return Ok(Response::new(pb::ListAlertsReply {
                    matched: found.len() as u64,
                    alerts: found.iter().map(|a| alert_record(a, false, &g.state)).collect(),
                    answered_by: self.ctx.id,
                    stale: !self.ctx.is_leader(),
                }));
            }
            let mut hits: Vec<&Alert> = g.state.alerts.alerts.values().filter(|a| filter.matches(a)).collect();
            let matched = hits.len() as u64;
            hits.sort_by_key(|a| std::cmp::Reverse((a.last_seen_ms, a.id)));
            Ok(Response::new(pb::ListAlertsReply {
                alerts: hits.into_iter().take(limit).map(|a| alert_record(a, false, &g.state)).collect(),
                matched,
                answered_by: self.ctx.id,
                stale: !self.ctx.is_leader(),
            }))
        })();
        self.counted("Alerts/List", result)
    }

    async fn get(&self, req: Request<pb::GetAlertRequest>) -> Result<Response<pb::AlertRecord>, Status> {
        let result = (|| {
            self.authorise_read(&req, "reading alerts")?;
            let id = req.get_ref().id;
            let g = self.ctx.state.read().expect("state lock poisoned");
            if let Some(a) = g.state.alerts.alerts.get(&id) {
                return Ok(Response::new(alert_record(a, true, &g.state)));
            }
            // Closed long ago: from the on-disk history.
            match crate::raft::read_archived_alert(&self.ctx.db, id).map_err(|e| Status::internal(e.to_string()))? {
                Some(a) => Ok(Response::new(alert_record(&a, true, &g.state))),
                None => Err(Status::not_found(format!("no alert {id}"))),
            }
        })();
        self.counted("Alerts/Get", result)
    }

    async fn triage(&self, req: Request<pb::TriageRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, TRIAGERS, "triaging alerts")?;
            let r = req.into_inner();
            let mut action = triage_action(&r.action, r.text)?;
            if let TriageAction::Escalate { to_level, .. } = &mut action {
                // One level above the highest of the alerts named: what "escalate" means to a person.
                let g = self.ctx.state.read().expect("state lock poisoned");
                let top = r.ids.iter().filter_map(|id| g.state.alerts.alerts.get(id)).map(|a| a.escalation).max();
                *to_level = top.unwrap_or(0) + 1;
            }
            self.propose(&caller, Command::TriageAlerts { ids: r.ids, action }).await
        }
        .await;
        self.counted("Alerts/Triage", result)
    }

    async fn put_silence(&self, req: Request<pb::PutSilenceRequest>) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, TRIAGERS, "silencing alerts")?;
            let r = req.into_inner();
            let matchers = r
                .matchers
                .iter()
                .map(|m| {
                    Matcher::parse(m).ok_or_else(|| {
                        invalid(format!(
                            "matcher `{}`: expected FIELD=VALUE or FIELD!=VALUE",
                            m.chars().take(80).collect::<String>()
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let reason = bounded_text("--reason", &r.reason, 500)?;
            let command = Command::PutSilence { matchers, starts_ms: r.starts_ms, ends_ms: r.ends_ms, reason };
            self.propose(&caller, command).await
        }
        .await;
        self.counted("Alerts/PutSilence", result)
    }

    async fn expire_silence(
        &self,
        req: Request<pb::ExpireSilenceRequest>,
    ) -> Result<Response<pb::MutationReply>, Status> {
        let result = async {
            let caller = self.authorise(&req, TRIAGERS, "expiring silences")?;
            self.propose(&caller, Command::ExpireSilence { id: req.into_inner().id }).await
        }
        .await;
        self.counted("Alerts/ExpireSilence", result)
    }

    async fn list_silences(
        &self,
        req: Request<pb::ListSilencesRequest>,
    ) -> Result<Response<pb::ListSilencesReply>, Status> {
        let result = self.authorise_read(&req, "listing silences").map(|_| {
            let g = self.ctx.state.read().expect("state lock poisoned");
            let silences = g
                .state
                .alerts
                .silences
                .values()
                .map(|s| pb::SilenceRecord {
                    id: s.id,
                    matchers: s.matchers.iter().map(Matcher::to_string).collect(),
                    starts_ms: s.starts_ms,
                    ends_ms: s.ends_ms,
                    reason: s.reason.clone(),
                    created_by: s.created_by.clone(),
                    expired_ms: s.expired_ms.unwrap_or(0),
                })
                .collect();
            Response::new(pb::ListSilencesReply { silences })
        });
        self.counted("Alerts/ListSilences", result)
    }
}
