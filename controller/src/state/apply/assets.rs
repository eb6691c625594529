//! `State::apply` for the asset register: records put by operators or imported, hosts the agents
//! discovered (never over an operator's field), licence seats, the issue log, and warnings
//! raised once per lead time as alerts in the queue.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::alerts::{IncomingAlert, Severity, SourceKind};
use crate::state::assets::{
    host_tag, tag_ok, warned_key, warning_fingerprint, Asset, AssetField, AssetIssue, AssetKind, AssetSpec,
    AssetStatus, Day, Discovered, IssueAction, IssueState, WarningKind, MAX_ASSETS,
};
use crate::state::{Command, HostFacts, Proposal, Rejection, Role, State};

/// Notes kept per issue, and issues kept per asset (the oldest closed ones go first).
const NOTES_KEPT: usize = 200;
const ISSUES_KEPT: usize = 200;

impl State {
    pub(super) fn apply_assets(&mut self, p: &Proposal) -> (String, Result<String, Rejection>) {
        let editor = || match p.actor.role {
            Role::Admin | Role::Noc => Ok(()),
            r => Err(Rejection::NotAllowed(format!("role {r} may not change the asset register"))),
        };
        let system = || match p.actor.role {
            Role::System => Ok(()),
            r => Err(Rejection::NotAllowed(format!("role {r} may not do what only the leader does"))),
        };
        match &p.command {
            Command::PutAsset { spec, fields } => {
                let what = format!("put asset {} ({})", spec.tag, names(fields));
                (what, editor().and_then(|_| self.put_asset(p.at_ms, spec, fields)))
            }
            Command::ImportAssets { rows } => {
                let what = format!("import {} assets", rows.len());
                (what, editor().and_then(|_| self.import_assets(p.at_ms, rows)))
            }
            Command::DeleteAsset { tag } => {
                let r = editor().and_then(|_| {
                    self.assets.assets.remove(tag).map(|_| "deleted".into()).ok_or_else(|| no_asset(tag))
                });
                (format!("delete asset {tag}"), r)
            }
            Command::DiscoverHost { agent, host, site, facts } => {
                let what = format!("discovered host {host} (agent {agent}, {site})");
                (what, system().and_then(|_| self.discover_host(p.at_ms, agent, host, site, facts)))
            }
            Command::SeatLicence { tag, host, hold } => {
                let what = format!("{} a seat of {tag} for {host}", if *hold { "take" } else { "give back" });
                (what, editor().and_then(|_| self.seat_licence(tag, host, *hold)))
            }
            Command::AssetIssue { tag, action } => {
                let what = format!("asset {tag}: issue {action:?}");
                (what, editor().and_then(|_| self.asset_issue(p, tag, action)))
            }
            Command::WarnAsset { tag, kind, lead_days, date } => {
                let what = format!("warn: asset {tag} {kind} {date} (lead {lead_days} days)");
                (what, system().and_then(|_| self.warn_asset(p.at_ms, tag, *kind, *lead_days, *date)))
            }
            other => (format!("{other:?}"), Err(Rejection::Invalid("not an assets command".into()))),
        }
    }

    /// Checks what an operator gives against the register and the sites.
    fn check_spec(&self, spec: &AssetSpec) -> Result<(), Rejection> {
        if !tag_ok(&spec.tag) {
            return Err(Rejection::Invalid(format!(
                "asset tag `{}`: 1 to 64 printable characters, no spaces, commas or quotes",
                spec.tag
            )));
        }
        if !spec.site.is_empty() && !self.sites.contains_key(&spec.site) {
            let known: Vec<&str> = self.sites.keys().map(String::as_str).collect();
            return Err(Rejection::NotFound(format!("no site `{}` (known: {})", spec.site, known.join(", "))));
        }
        let long = [&spec.serial, &spec.model, &spec.vendor, &spec.office, &spec.assignee, &spec.host];
        if long.iter().any(|t| t.chars().count() > 200) || spec.addresses.len() > 64 {
            return Err(Rejection::Invalid("a field over 200 characters, or over 64 addresses".into()));
        }
        Ok(())
    }

    fn put_asset(&mut self, at_ms: u64, spec: &AssetSpec, fields: &BTreeSet<AssetField>) -> Result<String, Rejection> {
        self.check_spec(spec)?;
        if let Some(a) = self.assets.assets.get_mut(&spec.tag) {
            for f in fields {
                a.spec.copy_field(spec, *f);
                a.operator_set.insert(*f);
            }
            a.updated_ms = at_ms;
            return Ok("changed".into());
        }
        match self.assets.assets.len() {
            n if n >= MAX_ASSETS => Err(full()),
            _ => {
                let mut record = AssetSpec::new(&spec.tag, spec.kind);
                for f in fields {
                    record.copy_field(spec, *f);
                }
                self.assets.assets.insert(spec.tag.clone(), new_asset(record, fields.clone(), at_ms));
                Ok("recorded".into())
            }
        }
    }

    /// Every row whole or not at all: each is checked before any is recorded.
    fn import_assets(&mut self, at_ms: u64, rows: &[AssetSpec]) -> Result<String, Rejection> {
        let mut seen = BTreeSet::new();
        for (i, row) in rows.iter().enumerate() {
            self.check_spec(row).map_err(|e| Rejection::Invalid(format!("row {}: {e}", i + 1)))?;
            if !seen.insert(&row.tag) {
                return Err(Rejection::Invalid(format!("row {}: tag `{}` twice in one import", i + 1, row.tag)));
            }
        }
        let new = rows.iter().filter(|r| !self.assets.assets.contains_key(&r.tag)).count();
        if self.assets.assets.len() + new > MAX_ASSETS {
            return Err(full());
        }
        for row in rows {
            self.put_asset(at_ms, row, &row.given())?;
        }
        Ok(format!("{} assets: {new} new, {} changed", rows.len(), rows.len() - new))
    }

    /// A host an agent reports: the asset that names it (by host, else `host:NAME`) is kept in
    /// step with it, every field an operator set left as it is; none yet: one is made.
    fn discover_host(
        &mut self,
        at_ms: u64,
        agent: &str,
        host: &str,
        site: &str,
        facts: &HostFacts,
    ) -> Result<String, Rejection> {
        let tag = match self.asset_of_host(host) {
            Some(t) => t,
            None if self.assets.assets.len() >= MAX_ASSETS => return Err(full()),
            None => {
                let tag = host_tag(host);
                let mut spec = AssetSpec::new(&tag, AssetKind::Hardware);
                spec.status = AssetStatus::InUse;
                self.assets.assets.insert(tag.clone(), new_asset(spec, BTreeSet::new(), at_ms));
                tag
            }
        };
        let a = self.assets.assets.get_mut(&tag).expect("found or made above");
        let mut seen = a.spec.clone();
        seen.host = host.to_string();
        seen.site = site.to_string();
        seen.addresses = facts.addresses.clone();
        for f in [AssetField::Host, AssetField::Site, AssetField::Addresses] {
            if !a.operator_set.contains(&f) {
                a.spec.copy_field(&seen, f);
            }
        }
        let d = Discovered {
            agent: agent.to_string(),
            host: host.to_string(),
            site: site.to_string(),
            facts: facts.clone(),
            at_ms,
        };
        a.discovered = Some(d);
        a.updated_ms = at_ms;
        Ok(format!("asset {tag}"))
    }

    /// The asset a host is: the one whose `host` names it, else `host:NAME`.
    pub fn asset_of_host(&self, host: &str) -> Option<String> {
        let named = self.assets.assets.values().find(|a| a.spec.host.eq_ignore_ascii_case(host));
        named.map(|a| a.spec.tag.clone()).or_else(|| {
            let tag = host_tag(host);
            self.assets.assets.contains_key(&tag).then_some(tag)
        })
    }

    fn seat_licence(&mut self, tag: &str, host: &str, hold: bool) -> Result<String, Rejection> {
        let a = self.assets.assets.get_mut(tag).ok_or_else(|| no_asset(tag))?;
        if a.spec.kind != AssetKind::Licence {
            return Err(Rejection::Invalid(format!("asset {tag} is {}, not a licence", a.spec.kind)));
        }
        if host.is_empty() || host.chars().count() > 200 {
            return Err(Rejection::Invalid("name the host (at most 200 characters)".into()));
        }
        if !hold {
            if !a.seat_holders.remove(host) {
                return Err(Rejection::Conflict(format!("{host} holds no seat of {tag}")));
            }
            // Exhausted again later is warned again.
            a.warned.retain(|w| !w.starts_with(WarningKind::SeatsExhausted.as_str()));
            return Ok(format!("{} of {} seats used", a.seat_holders.len(), a.spec.seats));
        }
        if a.seat_holders.contains(host) {
            return Err(Rejection::Conflict(format!("{host} already holds a seat of {tag}")));
        }
        if a.free_seats() == 0 {
            return Err(Rejection::Conflict(format!("every seat of {tag} is taken ({})", a.spec.seats)));
        }
        a.seat_holders.insert(host.to_string());
        Ok(format!("{} of {} seats used", a.seat_holders.len(), a.spec.seats))
    }

    fn asset_issue(&mut self, p: &Proposal, tag: &str, action: &IssueAction) -> Result<String, Rejection> {
        let text_ok = |t: &str| !t.trim().is_empty() && t.chars().count() <= 2000;
        let next_id = self.assets.last_issue_id + 1;
        let a = self.assets.assets.get_mut(tag).ok_or_else(|| no_asset(tag))?;
        let who = p.actor.name.clone();
        if let IssueAction::Open { title } = action {
            if !text_ok(title) {
                return Err(Rejection::Invalid("an issue needs a title (at most 2000 characters)".into()));
            }
            a.issues.push(AssetIssue {
                id: next_id,
                title: title.clone(),
                state: IssueState::Open,
                assignee: String::new(),
                opened_ms: p.at_ms,
                opened_by: who,
                notes: Vec::new(),
            });
            while a.issues.len() > ISSUES_KEPT {
                let Some(i) = a.issues.iter().position(|i| i.state == IssueState::Closed) else { break };
                a.issues.remove(i);
            }
            self.assets.last_issue_id = next_id;
            return Ok(format!("issue {next_id}"));
        }
        let (id, note) = match action {
            IssueAction::Comment { id, text } if text_ok(text) => (*id, format!("comment: {text}")),
            IssueAction::Assign { id, to } if text_ok(to) => (*id, format!("assigned to {to}")),
            IssueAction::Close { id, reason } if text_ok(reason) => (*id, format!("closed: {reason}")),
            _ => return Err(Rejection::Invalid("say what (at most 2000 characters)".into())),
        };
        let issue = a
            .issues
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| Rejection::NotFound(format!("no issue {id} on asset {tag}")))?;
        if issue.state == IssueState::Closed {
            return Err(Rejection::Conflict(format!("issue {id} is closed")));
        }
        match action {
            IssueAction::Assign { to, .. } => issue.assignee = to.clone(),
            IssueAction::Close { .. } => issue.state = IssueState::Closed,
            _ => {}
        }
        issue.notes.push((p.at_ms, who, note.clone()));
        if issue.notes.len() > NOTES_KEPT {
            issue.notes.remove(0);
        }
        Ok(note)
    }

    /// Raises warning `kind` about asset `tag` for `date` at lead time `lead_days`, once.
    fn warn_asset(
        &mut self,
        at_ms: u64,
        tag: &str,
        kind: WarningKind,
        lead_days: u32,
        date: Day,
    ) -> Result<String, Rejection> {
        let a = self.assets.assets.get_mut(tag).ok_or_else(|| no_asset(tag))?;
        let key = warned_key(kind, lead_days, date);
        if !a.warned.insert(key.clone()) {
            return Ok(format!("already warned ({key})"));
        }
        let spec = a.spec.clone();
        let days = Day::from_ms(at_ms).days_until(date);
        let (severity, when) = match kind {
            WarningKind::SeatsExhausted => (Severity::Medium, format!("all {} seats are taken", spec.seats)),
            _ if days < 0 => (Severity::High, format!("{date}, {} days ago", -days)),
            _ if days <= 7 => (Severity::High, format!("{date}, in {days} days")),
            _ if days <= 30 => (Severity::Medium, format!("{date}, in {days} days")),
            _ => (Severity::Low, format!("{date}, in {days} days")),
        };
        let title = format!("{} {}: {} {when}", spec.kind, spec.tag, warning_words(kind));
        let mut labels = BTreeMap::from([
            ("asset".to_string(), spec.tag.clone()),
            ("warning".to_string(), kind.to_string()),
            ("lead_days".to_string(), lead_days.to_string()),
        ]);
        if !spec.office.is_empty() {
            labels.insert("office".into(), spec.office.clone());
        }
        let alert = IncomingAlert {
            kind: SourceKind::Triad,
            fingerprint: warning_fingerprint(&spec.tag, kind),
            severity,
            title: title.clone(),
            description: format!(
                "{} {} {} (vendor {}, assignee {})",
                spec.kind, spec.tag, spec.model, spec.vendor, spec.assignee
            ),
            labels,
            site: spec.site.clone(),
            host: spec.host.clone(),
            address: String::new(),
            at_ms,
            resolved: false,
            occurrences: 1,
        };
        self.raise_own_alert(alert, &format!("warning: {title}"));
        Ok(title)
    }
}

fn warning_words(kind: WarningKind) -> &'static str {
    match kind {
        WarningKind::LicenceExpiry => "licence expires",
        WarningKind::WarrantyEnd => "warranty ends",
        WarningKind::EndOfLife => "end of life",
        WarningKind::SeatsExhausted => "seats exhausted",
    }
}

fn new_asset(spec: AssetSpec, operator_set: BTreeSet<AssetField>, at_ms: u64) -> Asset {
    Asset {
        spec,
        operator_set,
        discovered: None,
        seat_holders: BTreeSet::new(),
        issues: Vec::new(),
        warned: BTreeSet::new(),
        created_ms: at_ms,
        updated_ms: at_ms,
    }
}

fn no_asset(tag: &str) -> Rejection {
    Rejection::NotFound(format!("no asset `{tag}`"))
}

fn full() -> Rejection {
    Rejection::Conflict(format!("the register holds {MAX_ASSETS} assets already"))
}

fn names(fields: &BTreeSet<AssetField>) -> String {
    fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", ")
}
