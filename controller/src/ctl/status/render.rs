//! `triadctl status` as a table: controllers, agents, the database clusters with their members
//! and the links carrying them, pending requests and users.

use super::{ApprovalView, ClusterView, MemberView, StatusView};
use crate::context::now_ms;

fn ago(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let d = now_ms().saturating_sub(ms);
    if d < 10_000 {
        format!("{:.1}s ago", d as f64 / 1000.0)
    } else if d < 120_000 {
        format!("{}s ago", d / 1000)
    } else {
        format!("{}m ago", d / 60_000)
    }
}

/// Renders the view as the table operators read.
pub fn render(v: &StatusView) -> String {
    let mut out = String::new();
    render_controllers(&mut out, v);
    render_agents(&mut out, v);
    render_clusters(&mut out, v);
    render_approvals(&mut out, v);
    render_users(&mut out, v);
    out
}

/// The controllers, the break-glass and quorum holds, what losing a city would do, the sites.
fn render_controllers(out: &mut String, v: &StatusView) {
    out.push_str(&format!(
        "CONTROLLERS (leader: {}; state from controller {}{})\n",
        if v.leader_id == 0 { "none".to_string() } else { v.leader_id.to_string() },
        v.answered_by,
        if v.stale { ", a follower: may lag slightly" } else { "" }
    ));
    out.push_str(&format!(
        "  {:<4} {:<6} {:<10} {:<22} {:<10} {:<12} {:<7} {:>6} {:>12} {:>12} {:>7}\n",
        "ID", "SITE", "CITY", "ADDRESS", "REACHABLE", "ROLE", "VOTER", "TERM", "LAST APPLIED", "COMMIT", "AGENTS"
    ));
    for c in &v.controllers {
        out.push_str(&format!(
            "  {:<4} {:<6} {:<10} {:<22} {:<10} {:<12} {:<7} {:>6} {:>12} {:>12} {:>7}\n",
            c.id,
            c.site,
            c.city,
            c.grpc_addr,
            if c.reachable { "yes" } else { "NO" },
            c.role,
            match (c.voter, c.witness) {
                (true, true) => "witness",
                (true, false) => "yes",
                (false, _) => "no",
            },
            c.term,
            c.last_applied,
            c.commit_index,
            c.connected_agents
        ));
    }
    for c in v.controllers.iter().filter(|c| !c.break_glass.is_empty()) {
        out.push_str(&format!("  BREAK-GLASS on controller {}: {}\n", c.id, c.break_glass));
    }
    for c in v.controllers.iter().filter(|c| !c.quorum_hold.is_empty()) {
        out.push_str(&format!("  !! QUORUM HELD by leader {}: {}\n", c.id, c.quorum_hold));
    }
    out.push_str(&format!("  city loss: {}\n", v.city_loss));
    if !v.sites.is_empty() {
        let sites: Vec<String> = v.sites.iter().map(|(n, d)| format!("{n} ({d})")).collect();
        out.push_str(&format!("\nSITES  {}\n", sites.join(", ")));
    }
}

/// The agents with their hosts.
fn render_agents(out: &mut String, v: &StatusView) {
    out.push_str("\nAGENTS\n");
    if v.agents.is_empty() {
        out.push_str("  (none registered yet)\n");
    } else {
        out.push_str(&format!(
            "  {:<16} {:<6} {:<20} {:<6} {:<12} {:<12} {}\n",
            "NAME", "SITE", "HOST", "STATE", "SINCE", "LAST SEEN", "HOST FACTS"
        ));
        for a in &v.agents {
            out.push_str(&format!(
                "  {:<16} {:<6} {:<20} {:<6} {:<12} {:<12} {}, {} cpus, {:.1} GiB\n",
                a.name,
                a.site,
                a.host,
                if a.up { "up" } else { "DOWN" },
                ago(a.since_ms),
                ago(a.last_seen_ms),
                a.os,
                a.cpus,
                a.memory_total_bytes as f64 / (1u64 << 30) as f64
            ));
        }
    }
}

/// Each database cluster: its epoch and sets, what blocks automatic failover, its members.
fn render_clusters(out: &mut String, v: &StatusView) {
    out.push_str(&format!(
        "\nDATABASE CLUSTERS (lease P {} ms, clock drift rho {}, margin m {} ms)\n",
        v.lease.period_ms, v.lease.clock_drift, v.lease.margin_ms
    ));
    if v.clusters.is_empty() {
        out.push_str("  (none configured)\n");
    }
    for (name, members) in &v.clusters {
        match v.cluster_state.get(name) {
            Some(c) if c.epoch > 0 => out.push_str(&format!(
                "  {name}  epoch {}  primary {}  synchronous [{}]  vouchers [{}]{}\n",
                c.epoch,
                c.primary,
                c.synchronous.join(", "),
                c.vouch.join(", "),
                if c.paused { "  PAUSED (maintenance)" } else { "" }
            )),
            Some(c) => out.push_str(&format!(
                "  {name}  not adopted yet (waiting to observe exactly one primary){}\n",
                if c.paused { "  PAUSED (maintenance)" } else { "" }
            )),
            None => out.push_str(&format!("  {name}\n")),
        }
        out.push_str(&format!(
            "    {:<8} {:<6} {:<10} {:<9} {:<6} {:>4} {:>16} {:>12} {:>10} {:>8} {:>7}  {}\n",
            "MEMBER", "SITE", "ROLE", "HEALTH", "SYNC", "TL", "POSITION", "LAG", "DELAY", "CANARY", "EPOCH", "AGENT"
        ));
        if let Some(c) = v.cluster_state.get(name).filter(|c| c.epoch > 0) {
            if c.failover_blocked.is_empty() {
                out.push_str("  automatic failover: ready\n");
            } else if c.failover_blocked.starts_with(crate::state::PRIMARY_LOST) {
                out.push_str(&format!("  !! {}\n", c.failover_blocked));
            } else {
                out.push_str(&format!("  !! automatic failover blocked: {}\n", c.failover_blocked));
            }
            if c.vouch.is_empty() {
                out.push_str(
                    "  !! failsafe off: no standby streams from the primary, so none vouches for it; losing the \
                     controllers' quorum fences it\n",
                );
            }
        }
        if let Some(c) = v.cluster_state.get(name) {
            let lost: Vec<&String> = c.want_synchronous.iter().filter(|m| !c.synchronous.contains(m)).collect();
            if !lost.is_empty() {
                let why: Vec<String> = lost.iter().map(|m| lost_behind(v, members, c, m)).collect();
                out.push_str(&format!(
                    "  !! synchronous standby lost: {} ({})\n",
                    why.join(", "),
                    if c.strict {
                        "strict: commits wait for it"
                    } else {
                        "relaxed: the primary commits asynchronously until it returns"
                    }
                ));
            }
        }
        render_cluster_links(out, v, name);
        for m in members {
            render_member(out, m);
        }
        render_cluster_services(out, v, name);
    }
}

/// The links carrying `cluster`'s replication, next to it: one line each, loud when not up.
fn render_cluster_links(out: &mut String, v: &StatusView, cluster: &str) {
    if !v.links_error.is_empty() {
        out.push_str(&format!("  links: could not be read ({})\n", v.links_error));
    }
    for l in v.links.iter().filter(|l| l.carries.iter().any(|c| c == cluster)) {
        let line = format!("link {} ({} {}–{}) {} since {}", l.name, l.kind, l.a, l.b, l.state, l.since);
        if l.state == "up" {
            out.push_str(&format!("  {line}\n"));
        } else {
            out.push_str(&format!("  !! {line}: {}; no switchover across it until it is up\n", l.reason));
        }
    }
}

/// The services that follow `cluster`, in recovery-group order: one line each, loud when not up.
fn render_cluster_services(out: &mut String, v: &StatusView, cluster: &str) {
    if !v.services_error.is_empty() {
        out.push_str(&format!(
            "  services: could not be read ({})
",
            v.services_error
        ));
    }
    for s in v.services.iter().filter(|s| s.cluster == cluster) {
        let line = format!("service {} (group {}, {}) {} since {}", s.name, s.group, s.kind, s.health, s.since);
        if s.health == "up" {
            out.push_str(&format!("  {line}\n"));
        } else {
            out.push_str(&format!("  !! {line}: {}\n", s.reason));
        }
    }
}

/// A lost synchronous standby, with the link that explains it when one does.
fn lost_behind(v: &StatusView, members: &[MemberView], c: &ClusterView, lost: &str) -> String {
    let site = |m: &str| members.iter().find(|x| x.name == m).map(|x| x.site.clone()).unwrap_or_default();
    let (from, to) = (site(&c.primary), site(lost));
    let joins = |l: &&crate::ctl::links::LinkLine| (l.a == from && l.b == to) || (l.a == to && l.b == from);
    match v.links.iter().filter(joins).find(|l| l.state != "up") {
        Some(l) => format!("{lost}, behind link {} which is {}", l.name, l.state),
        None => lost.to_string(),
    }
}

/// One member's line, and what is wrong with it or guards it.
fn render_member(out: &mut String, m: &MemberView) {
    // Bytes where the driver counts bytes, else the time the primary reports.
    let lag = match (m.lag_bytes, m.lag_seconds) {
        (Some(bytes), _) => format!("{bytes} B"),
        (None, Some(s)) => format!("{s:.1}s"),
        (None, None) => "-".into(),
    };
    let delay = if m.replay_delay_seconds < 0.0 { "-".to_string() } else { format!("{:.1}s", m.replay_delay_seconds) };
    let health = if m.healthy {
        "ok"
    } else if m.role == "unknown" {
        "unknown"
    } else {
        "DOWN"
    };
    let canary = if m.canary_age_seconds < 0.0 { "-".to_string() } else { format!("{:.2}s", m.canary_age_seconds) };
    let epoch = match m.agent_epoch {
        Some(e) => e.to_string(),
        None if m.role == "unknown" => "-".to_string(),
        None => "FENCED".to_string(),
    };
    out.push_str(&format!(
        "    {:<8} {:<6} {:<10} {:<9} {:<6} {:>4} {:>16} {:>12} {:>10} {:>8} {:>7}  {} ({})\n",
        m.name,
        m.site,
        m.role,
        health,
        if m.sync_state.is_empty() { "-" } else { m.sync_state.as_str() },
        m.timeline,
        if m.written_position.is_empty() { "-" } else { m.written_position.as_str() },
        lag,
        delay,
        canary,
        epoch,
        m.agent,
        if m.agent_up { "up" } else { "down" }
    ));
    if !m.error.is_empty() {
        out.push_str(&format!("      {}: {}\n", m.name, m.error));
    }
    if m.role == "primary" {
        let lease = if m.lease_remaining_ms < 0 {
            "NO LEASE".to_string()
        } else {
            format!("{:.1}s left", m.lease_remaining_ms as f64 / 1000.0)
        };
        let lease = if m.vouched_by.is_empty() {
            lease
        } else {
            format!("{lease} (FAILSAFE: vouched by {}, the controllers do not renew it)", m.vouched_by.join(", "))
        };
        out.push_str(&format!("      {}: lease {lease}; watchdog {}\n", m.name, m.watchdog));
    }
    if m.fenced_ms > 0 {
        out.push_str(&format!("      {}: FENCED {}: {}\n", m.name, ago(m.fenced_ms), m.fenced_reason));
    }
}

/// The requests a second person may approve.
fn render_approvals(out: &mut String, v: &StatusView) {
    let now = crate::context::now_ms();
    let open: Vec<&ApprovalView> = v
        .approvals
        .iter()
        .filter(|a| matches!(a.state.as_str(), "approved" | "started") || (a.state == "pending" && now < a.expires_ms))
        .collect();
    if !open.is_empty() {
        out.push_str("\nREQUESTS TO APPROVE (a second person approves: triadctl approve ID)\n");
        for a in open {
            if a.action == "pause" {
                out.push_str(&format!(
                    "  {}  pause {} (automatic failover off): requested by {} {}: \"{}\"; pending, lapses in {} s\n",
                    a.id,
                    a.cluster,
                    a.requested_by,
                    ago(a.requested_ms),
                    a.reason,
                    a.expires_ms.saturating_sub(now) / 1000
                ));
                continue;
            }
            let loss = if a.accept_data_loss { ", ACCEPTS DATA LOSS" } else { "" };
            let dead = if a.attested_dead.is_empty() {
                String::new()
            } else {
                format!(", attests dead: {}", a.attested_dead.join(", "))
            };
            let when = if a.state == "pending" {
                format!("pending, lapses in {} s", a.expires_ms.saturating_sub(now) / 1000)
            } else {
                format!("{} (approved by {})", a.state, a.approved_by)
            };
            out.push_str(&format!(
                "  {}  failover {} to {}{loss}{dead}: requested by {} {}: \"{}\"; {when}\n",
                a.id,
                a.cluster,
                a.to,
                a.requested_by,
                ago(a.requested_ms),
                a.reason
            ));
        }
    }
}

/// Role overrides.
fn render_users(out: &mut String, v: &StatusView) {
    if !v.users.is_empty() {
        out.push_str("\nUSERS (role overrides)\n");
        for (name, role) in &v.users {
            out.push_str(&format!("  {name:<16} {role}\n"));
        }
    }
}
