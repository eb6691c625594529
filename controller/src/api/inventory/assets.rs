//! Assets in the `Inventory` service: records to and from the API, the list's filters, the
//! report, and the commands a put or an issue-log entry makes.

use std::collections::BTreeSet;

use tonic::Status;
use triad_proto::v1 as pb;

use crate::api::bounded_text;
use crate::inventory::report;
use crate::state::assets::{Asset, AssetField, AssetKind, AssetSpec, AssetStatus, Day, IssueAction};
use crate::state::{Command, State};

/// Most assets one list answers with.
const MAX_LIST: usize = 100_000;

fn invalid(msg: String) -> Status {
    Status::invalid_argument(msg)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// An asset as the API shows it (`detail`: with its issues, discovery and warnings).
pub fn record(a: &Asset, detail: bool) -> pb::AssetRecord {
    let s = &a.spec;
    let day = |d: Option<Day>| d.map(|d| d.to_string()).unwrap_or_default();
    let mut r = pb::AssetRecord {
        tag: s.tag.clone(),
        kind: s.kind.to_string(),
        serial: s.serial.clone(),
        model: s.model.clone(),
        vendor: s.vendor.clone(),
        site: s.site.clone(),
        office: s.office.clone(),
        assignee: s.assignee.clone(),
        status: s.status.to_string(),
        purchase_date: day(s.purchase_date),
        warranty_end: day(s.warranty_end),
        end_of_life: day(s.end_of_life),
        host: s.host.clone(),
        addresses: s.addresses.clone(),
        seats: s.seats,
        expires: day(s.expires),
        operator_set: a.operator_set.iter().map(|f| f.to_string()).collect(),
        seat_holders: a.seat_holders.iter().cloned().collect(),
        free_seats: a.free_seats(),
        created_ms: a.created_ms,
        updated_ms: a.updated_ms,
        ..Default::default()
    };
    if detail {
        r.discovered = a.discovered.as_ref().map(|d| pb::AssetDiscovered {
            agent: d.agent.clone(),
            host: d.host.clone(),
            site: d.site.clone(),
            facts: Some(crate::api::records::facts(&d.facts)),
            at_ms: d.at_ms,
        });
        r.issues = a
            .issues
            .iter()
            .map(|i| pb::AssetIssueRecord {
                id: i.id,
                title: i.title.clone(),
                state: i.state.to_string(),
                assignee: i.assignee.clone(),
                opened_ms: i.opened_ms,
                opened_by: i.opened_by.clone(),
                notes: i
                    .notes
                    .iter()
                    .map(|(at_ms, actor, text)| pb::AssetIssueNote {
                        at_ms: *at_ms,
                        actor: actor.clone(),
                        text: text.clone(),
                    })
                    .collect(),
            })
            .collect();
        r.warned = a.warned.iter().cloned().collect();
    }
    r
}

/// The assets matching `q`, in tag order, and how many matched in all.
pub fn list(state: &State, q: &pb::ListAssetsRequest) -> Result<(Vec<pb::AssetRecord>, u64), Status> {
    let kind: Option<AssetKind> = match q.kind.as_str() {
        "" => None,
        k => Some(k.parse().map_err(|_| invalid(format!("kind `{}`: one of {}", clip(k), AssetKind::names())))?),
    };
    let status: Option<AssetStatus> = match q.status.as_str() {
        "" => None,
        k => Some(k.parse().map_err(|_| invalid(format!("status `{}`: one of {}", clip(k), AssetStatus::names())))?),
    };
    let text = bounded_text("--text", &q.text, 200)?.to_lowercase();
    let limit = match q.limit {
        0 => 1000,
        n => (n as usize).min(MAX_LIST),
    };
    let matches = |a: &&Asset| {
        let s = &a.spec;
        (q.site.is_empty() || s.site == q.site)
            && (q.office.is_empty() || s.office == q.office)
            && kind.is_none_or(|k| s.kind == k)
            && status.is_none_or(|st| s.status == st)
            && (text.is_empty()
                || [&s.tag, &s.serial, &s.model, &s.vendor, &s.assignee, &s.host]
                    .iter()
                    .any(|f| f.to_lowercase().contains(&text)))
    };
    let all: Vec<&Asset> = state.assets.assets.values().filter(matches).collect();
    let matched = all.len() as u64;
    Ok((all.into_iter().take(limit).map(|a| record(a, false)).collect(), matched))
}

/// The command a put makes: the record and the fields it sets, checked.
pub fn put_command(r: pb::PutAssetRequest) -> Result<Command, Status> {
    let a = r.asset.ok_or_else(|| invalid("no asset given".into()))?;
    let mut fields = BTreeSet::new();
    for f in &r.fields {
        let field: AssetField =
            f.parse().map_err(|_| invalid(format!("field `{}`: one of {}", clip(f), AssetField::names())))?;
        fields.insert(field);
    }
    if fields.is_empty() {
        return Err(invalid("name the fields to set".into()));
    }
    let kind: AssetKind = match a.kind.as_str() {
        // Not changing the kind: any will do, it is not copied.
        "" if !fields.contains(&AssetField::Kind) => AssetKind::Hardware,
        k => k.parse().map_err(|_| invalid(format!("kind `{}`: one of {}", clip(k), AssetKind::names())))?,
    };
    let mut spec = AssetSpec::new(&bounded_text("the asset tag", &a.tag, 64)?, kind);
    if fields.contains(&AssetField::Status) {
        spec.status = a
            .status
            .parse()
            .map_err(|_| invalid(format!("status `{}`: one of {}", clip(&a.status), AssetStatus::names())))?;
    }
    let date = |name: &str, text: &str| -> Result<Option<Day>, Status> {
        match text.trim() {
            "" => Ok(None),
            t => t.parse().map(Some).map_err(|e| invalid(format!("{name}: {e}"))),
        }
    };
    spec.purchase_date = date("purchase_date", &a.purchase_date)?;
    spec.warranty_end = date("warranty_end", &a.warranty_end)?;
    spec.end_of_life = date("end_of_life", &a.end_of_life)?;
    spec.expires = date("expires", &a.expires)?;
    (spec.serial, spec.model, spec.vendor) = (a.serial, a.model, a.vendor);
    (spec.site, spec.office, spec.assignee, spec.host) = (a.site, a.office, a.assignee, a.host);
    spec.addresses = a.addresses;
    spec.seats = a.seats;
    Ok(Command::PutAsset { spec, fields })
}

/// The command an issue-log request makes.
pub fn issue_command(r: pb::AssetIssueRequest) -> Result<Command, Status> {
    let text = bounded_text("the text", &r.text, 2000)?;
    let action = match r.action.as_str() {
        "open" => IssueAction::Open { title: text },
        "comment" => IssueAction::Comment { id: r.id, text },
        "assign" => IssueAction::Assign { id: r.id, to: text },
        "close" => IssueAction::Close { id: r.id, reason: text },
        other => return Err(invalid(format!("action `{}`: open, comment, assign or close", clip(other)))),
    };
    Ok(Command::AssetIssue { tag: bounded_text("the asset tag", &r.tag, 64)?, action })
}

/// The register's report as of `now_ms`.
pub fn report(state: &State, now_ms: u64) -> pb::AssetReportReply {
    let today = Day::from_ms(now_ms);
    pb::AssetReportReply {
        groups: report::groups(&state.assets)
            .into_iter()
            .map(|g| pb::AssetGroup {
                site: g.site,
                office: g.office,
                kind: g.kind.to_string(),
                status: g.status.to_string(),
                count: g.count,
            })
            .collect(),
        licences: report::licences(&state.assets, today)
            .into_iter()
            .map(|l| pb::LicenceLine {
                tag: l.tag,
                model: l.model,
                vendor: l.vendor,
                seats: l.seats,
                used: l.used,
                free: l.free,
                expires: l.expires.map(|d| d.to_string()).unwrap_or_default(),
                days_left: l.days_left.unwrap_or(0),
            })
            .collect(),
        today: today.to_string(),
    }
}
