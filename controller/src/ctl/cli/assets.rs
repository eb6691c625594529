//! `triadctl assets ...`: the IT asset register's subcommands and their dispatch to
//! `ctl/assets.rs`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use triad_proto::v1 as pb;

use super::{json, Output};
use crate::ctl::{assets, client};
use crate::Error;

/// `triadctl assets` alone lists them.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct AssetsArgs {
    #[command(subcommand)]
    cmd: Option<AssetsCmd>,
    #[command(flatten)]
    filter: Filter,
}

/// Which assets to list; empty: all.
#[derive(Args, Clone)]
pub(super) struct Filter {
    #[arg(long, default_value = "")]
    site: String,
    #[arg(long, default_value = "")]
    office: String,
    /// hardware, software, licence.
    #[arg(long, default_value = "")]
    kind: String,
    /// in-use, in-stock, in-repair, retired.
    #[arg(long, default_value = "")]
    status: String,
    /// Text in the tag, serial, model, vendor, assignee or host (any case).
    #[arg(long, default_value = "")]
    text: String,
    /// At most this many (default 1000).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

/// The fields of `assets put`; those given are set (and become yours: discovery leaves them).
#[derive(Args, Default)]
pub(super) struct Fields {
    /// hardware, software, licence (required for a new asset).
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    serial: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    vendor: Option<String>,
    #[arg(long)]
    site: Option<String>,
    #[arg(long)]
    office: Option<String>,
    #[arg(long)]
    assignee: Option<String>,
    /// in-use, in-stock, in-repair, retired.
    #[arg(long)]
    status: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    purchase_date: Option<String>,
    #[arg(long)]
    warranty_end: Option<String>,
    #[arg(long)]
    end_of_life: Option<String>,
    /// The host it is, or runs on.
    #[arg(long)]
    host: Option<String>,
    /// An address; repeat for several.
    #[arg(long = "address")]
    addresses: Vec<String>,
    /// Licences: how many seats.
    #[arg(long)]
    seats: Option<u32>,
    /// Licences: YYYY-MM-DD.
    #[arg(long)]
    expires: Option<String>,
}

// Parsed once per run: boxing the big variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(super) enum AssetsCmd {
    /// Assets, filtered.
    List(Filter),
    /// One asset with what was discovered of it, its seats, warnings and issue log.
    Show {
        tag: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Record an asset, or set fields of a recorded one.
    Put {
        tag: String,
        #[command(flatten)]
        fields: Fields,
    },
    /// Remove an asset from the register.
    Delete { tag: String },
    /// Import a CSV register: good rows in, bad rows reported with their line and why (exit 1).
    Import { file: PathBuf },
    /// The register as CSV (the same columns an import takes), to a file or standard output.
    Export { file: Option<PathBuf> },
    /// Assets by site, office, kind and status; licences by seats and expiry.
    Report {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// A host takes a seat of a licence (or, --release, gives it back).
    Seat {
        tag: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        release: bool,
    },
    /// The asset's issue log: open, comment, assign, close.
    #[command(subcommand)]
    Issue(IssueCmd),
}

#[derive(Subcommand)]
pub(super) enum IssueCmd {
    Open {
        tag: String,
        #[arg(long)]
        title: String,
    },
    Comment {
        tag: String,
        id: u64,
        #[arg(long)]
        text: String,
    },
    Assign {
        tag: String,
        id: u64,
        #[arg(long)]
        to: String,
    },
    Close {
        tag: String,
        id: u64,
        #[arg(long)]
        reason: String,
    },
}

/// The record and the names of the fields given.
fn record(tag: String, f: Fields) -> (pb::AssetRecord, Vec<String>) {
    let mut names = Vec::new();
    let mut take = |name: &str, v: Option<String>| {
        if v.is_some() {
            names.push(name.to_string());
        }
        v.unwrap_or_default()
    };
    let mut r = pb::AssetRecord {
        tag,
        kind: take("kind", f.kind),
        serial: take("serial", f.serial),
        model: take("model", f.model),
        vendor: take("vendor", f.vendor),
        site: take("site", f.site),
        office: take("office", f.office),
        assignee: take("assignee", f.assignee),
        status: take("status", f.status),
        purchase_date: take("purchase_date", f.purchase_date),
        warranty_end: take("warranty_end", f.warranty_end),
        end_of_life: take("end_of_life", f.end_of_life),
        host: take("host", f.host),
        expires: take("expires", f.expires),
        ..Default::default()
    };
    if !f.addresses.is_empty() {
        names.push("addresses".into());
        r.addresses = f.addresses;
    }
    if let Some(s) = f.seats {
        names.push("seats".into());
        r.seats = s;
    }
    (r, names)
}

async fn run_list(c: &client::Client, f: Filter) -> Result<(), Error> {
    let req = pb::ListAssetsRequest {
        site: f.site,
        office: f.office,
        kind: f.kind,
        status: f.status,
        text: f.text,
        limit: f.limit,
    };
    let (list, matched, stale) = assets::list(c, req).await?;
    match f.output {
        Output::Json => crate::outln!("{}", json(&list.iter().map(asset_json).collect::<Vec<_>>())),
        Output::Table => crate::out!("{}", assets::render_list(&list, matched, stale)),
    }
    Ok(())
}

/// An asset as JSON (the record's fields, dates as written).
fn asset_json(a: &pb::AssetRecord) -> serde_json::Value {
    serde_json::json!({
        "tag": a.tag, "kind": a.kind, "serial": a.serial, "model": a.model, "vendor": a.vendor,
        "site": a.site, "office": a.office, "assignee": a.assignee, "status": a.status,
        "purchase_date": a.purchase_date, "warranty_end": a.warranty_end, "end_of_life": a.end_of_life,
        "host": a.host, "addresses": a.addresses, "seats": a.seats, "seat_holders": a.seat_holders,
        "free_seats": a.free_seats, "expires": a.expires, "operator_set": a.operator_set,
        "discovered": a.discovered.as_ref().map(|d| serde_json::json!({
            "agent": d.agent, "host": d.host, "site": d.site, "at_ms": d.at_ms,
            "os": d.facts.as_ref().map(|f| f.os.clone()), "addresses": d.facts.as_ref().map(|f| f.addresses.clone()),
        })),
        "issues": a.issues.iter().map(|i| serde_json::json!({
            "id": i.id, "title": i.title, "state": i.state, "assignee": i.assignee,
            "notes": i.notes.iter().map(|n| (n.at_ms, n.actor.clone(), n.text.clone())).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "warned": a.warned,
    })
}

pub(super) async fn run_assets(c: &client::Client, args: AssetsArgs) -> Result<(), Error> {
    let Some(cmd) = args.cmd else { return run_list(c, args.filter).await };
    match cmd {
        AssetsCmd::List(f) => run_list(c, f).await?,
        AssetsCmd::Show { tag, output } => {
            let a = assets::show(c, &tag).await?;
            match output {
                Output::Json => crate::outln!("{}", json(&asset_json(&a))),
                Output::Table => crate::out!("{}", assets::render_show(&a)),
            }
        }
        AssetsCmd::Put { tag, fields } => {
            let (r, names) = record(tag, fields);
            crate::outln!("{}", assets::put(c, r, names).await?);
        }
        AssetsCmd::Delete { tag } => crate::outln!("{}", assets::delete(c, &tag).await?),
        AssetsCmd::Import { file } => {
            let csv = std::fs::read_to_string(&file)
                .map_err(|e| Error::InvalidArgument(format!("reading {}: {e}", file.display())))?;
            let r = assets::import(c, csv).await?;
            crate::out!("{}", assets::render_import(&r));
            if !r.rejected.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "{} rows of {} were rejected",
                    r.rejected.len(),
                    file.display()
                )));
            }
        }
        AssetsCmd::Export { file } => {
            let csv = assets::export(c).await?;
            match file {
                Some(f) => std::fs::write(&f, csv)
                    .map_err(|e| Error::InvalidArgument(format!("writing {}: {e}", f.display())))?,
                None => crate::out!("{csv}"),
            }
        }
        AssetsCmd::Report { output } => {
            let r = assets::report(c).await?;
            match output {
                Output::Json => crate::outln!(
                    "{}",
                    json(&serde_json::json!({
                        "today": r.today,
                        "groups": r.groups.iter().map(|g| serde_json::json!({
                            "site": g.site, "office": g.office, "kind": g.kind, "status": g.status, "count": g.count,
                        })).collect::<Vec<_>>(),
                        "licences": r.licences.iter().map(|l| serde_json::json!({
                            "tag": l.tag, "model": l.model, "vendor": l.vendor, "seats": l.seats, "used": l.used,
                            "free": l.free, "expires": l.expires, "days_left": (!l.expires.is_empty()).then_some(l.days_left),
                        })).collect::<Vec<_>>(),
                    }))
                ),
                Output::Table => crate::out!("{}", assets::render_report(&r)),
            }
        }
        AssetsCmd::Seat { tag, host, release } => crate::outln!("{}", assets::seat(c, &tag, &host, !release).await?),
        AssetsCmd::Issue(i) => {
            let said = match i {
                IssueCmd::Open { tag, title } => assets::issue(c, &tag, "open", 0, &title).await?,
                IssueCmd::Comment { tag, id, text } => assets::issue(c, &tag, "comment", id, &text).await?,
                IssueCmd::Assign { tag, id, to } => assets::issue(c, &tag, "assign", id, &to).await?,
                IssueCmd::Close { tag, id, reason } => assets::issue(c, &tag, "close", id, &reason).await?,
            };
            crate::outln!("{said}");
        }
    }
    Ok(())
}
