//! `triadctl assets ...`: the IT asset register: list, show, put, delete, CSV import and export,
//! reports, licence seats and the issue log.

use triad_proto::v1 as pb;

use super::client::Client;
use crate::alerts::timestamp::format_ms;
use crate::error::Result;

/// `assets list`: the matching assets and how many matched, and whether a follower answered.
pub async fn list(client: &Client, req: pb::ListAssetsRequest) -> Result<(Vec<pb::AssetRecord>, u64, bool)> {
    let r = client.inventory().await?.list_assets(req).await?.into_inner();
    Ok((r.assets, r.matched, r.stale))
}

pub fn render_list(assets: &[pb::AssetRecord], matched: u64, stale: bool) -> String {
    let mut out = format!(
        "{:<18} {:<9} {:<10} {:<6} {:<14} {:<12} {:<20} {}\n",
        "TAG", "KIND", "STATUS", "SITE", "OFFICE", "ASSIGNEE", "MODEL", "HOST"
    );
    for a in assets {
        out += &format!(
            "{:<18} {:<9} {:<10} {:<6} {:<14} {:<12} {:<20} {}\n",
            a.tag, a.kind, a.status, a.site, a.office, a.assignee, a.model, a.host
        );
    }
    if (assets.len() as u64) < matched {
        out += &format!("({} of {matched} shown; --limit for more)\n", assets.len());
    }
    if stale {
        out += "(answered by a follower: may lag the leader by a moment)\n";
    }
    out
}

/// `assets show`.
pub async fn show(client: &Client, tag: &str) -> Result<pb::AssetRecord> {
    Ok(client.inventory().await?.get_asset(pb::GetAssetRequest { tag: tag.into() }).await?.into_inner())
}

pub fn render_show(a: &pb::AssetRecord) -> String {
    let mut out = format!("{} ({}, {})\n", a.tag, a.kind, a.status);
    let rows = [
        ("serial", &a.serial),
        ("model", &a.model),
        ("vendor", &a.vendor),
        ("site", &a.site),
        ("office", &a.office),
        ("assignee", &a.assignee),
        ("purchased", &a.purchase_date),
        ("warranty end", &a.warranty_end),
        ("end of life", &a.end_of_life),
        ("host", &a.host),
        ("expires", &a.expires),
    ];
    for (name, value) in rows.iter().filter(|(_, v)| !v.is_empty()) {
        out += &format!("  {name:<13} {value}\n");
    }
    if !a.addresses.is_empty() {
        out += &format!("  {:<13} {}\n", "addresses", a.addresses.join(" "));
    }
    if a.kind == "licence" {
        out +=
            &format!("  {:<13} {} of {} used: {}\n", "seats", a.seat_holders.len(), a.seats, a.seat_holders.join(", "));
    }
    out += &format!("  {:<13} {}\n", "set by people", a.operator_set.join(", "));
    if let Some(d) = &a.discovered {
        let f = d.facts.clone().unwrap_or_default();
        out += &format!(
            "  discovered by {} on {} at {}: {} ({}), {} CPUs, {} MiB memory, {} GiB disk\n",
            d.agent,
            d.host,
            format_ms(d.at_ms),
            f.os,
            f.kernel,
            f.cpus,
            f.memory_total_bytes >> 20,
            f.disk_total_bytes >> 30
        );
    }
    for w in &a.warned {
        out += &format!("  warned: {w}\n");
    }
    for i in &a.issues {
        out += &format!(
            "  issue {} [{}] {} (opened by {} {})\n",
            i.id,
            i.state,
            i.title,
            i.opened_by,
            format_ms(i.opened_ms)
        );
        for n in &i.notes {
            out += &format!("      {} {}: {}\n", format_ms(n.at_ms), n.actor, n.text);
        }
    }
    out
}

/// `assets put`: the record and the fields to set.
pub async fn put(client: &Client, asset: pb::AssetRecord, fields: Vec<String>) -> Result<String> {
    let r = client.inventory().await?.put_asset(pb::PutAssetRequest { asset: Some(asset), fields }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `assets delete`.
pub async fn delete(client: &Client, tag: &str) -> Result<String> {
    let r = client.inventory().await?.delete_asset(pb::DeleteAssetRequest { tag: tag.into() }).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `assets import`: the controllers' answer (rows imported, rows rejected with their lines).
pub async fn import(client: &Client, csv: String) -> Result<pb::ImportAssetsReply> {
    Ok(client.inventory().await?.import_assets(pb::ImportAssetsRequest { csv }).await?.into_inner())
}

pub fn render_import(r: &pb::ImportAssetsReply) -> String {
    let mut out = format!("imported {} rows: {}\n", r.imported, r.message);
    for row in &r.rejected {
        out += &format!("line {}: {}\n", row.line, row.reason);
    }
    if !r.rejected.is_empty() {
        out += &format!(
            "{} rows rejected: fix them and import the file again (imported rows are updated, not doubled)\n",
            r.rejected.len()
        );
    }
    out
}

/// `assets export`: the register as CSV.
pub async fn export(client: &Client) -> Result<String> {
    Ok(client.inventory().await?.export_assets(pb::ExportAssetsRequest {}).await?.into_inner().csv)
}

/// `assets report`.
pub async fn report(client: &Client) -> Result<pb::AssetReportReply> {
    Ok(client.inventory().await?.asset_report(pb::AssetReportRequest {}).await?.into_inner())
}

pub fn render_report(r: &pb::AssetReportReply) -> String {
    let mut out = format!(
        "ASSETS (as of {})\n{:<8} {:<16} {:<9} {:<10} {:>6}\n",
        r.today, "SITE", "OFFICE", "KIND", "STATUS", "COUNT"
    );
    for g in &r.groups {
        out += &format!("{:<8} {:<16} {:<9} {:<10} {:>6}\n", g.site, g.office, g.kind, g.status, g.count);
    }
    out += &format!(
        "\nLICENCES\n{:<18} {:<22} {:>5} {:>5} {:>5}  {:<10} {}\n",
        "TAG", "MODEL", "SEATS", "USED", "FREE", "EXPIRES", "DAYS LEFT"
    );
    for l in &r.licences {
        let left = if l.expires.is_empty() { "-".to_string() } else { l.days_left.to_string() };
        out += &format!(
            "{:<18} {:<22} {:>5} {:>5} {:>5}  {:<10} {left}\n",
            l.tag, l.model, l.seats, l.used, l.free, l.expires
        );
    }
    out
}

/// `assets seat`.
pub async fn seat(client: &Client, tag: &str, host: &str, hold: bool) -> Result<String> {
    let req = pb::SeatRequest { tag: tag.into(), host: host.into(), hold };
    let r = client.inventory().await?.seat(req).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}

/// `assets issue ...`.
pub async fn issue(client: &Client, tag: &str, action: &str, id: u64, text: &str) -> Result<String> {
    let req = pb::AssetIssueRequest { tag: tag.into(), action: action.into(), id, text: text.into() };
    let r = client.inventory().await?.asset_issue(req).await?.into_inner();
    Ok(format!("{} (log index {})", r.message, r.log_index))
}
