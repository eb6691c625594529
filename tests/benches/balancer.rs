//! The write outage an application behind HAProxy sees on a switchover and on a failover, with
//! and without Triad's runtime-API push (issue 20, item 2's measure), beside the database's own
//! outage measured in the same trials. Debian's HAProxy with the shipped configuration and
//! Patroni's documented check settings (inter 3 s, fall 3, rise 2); real PostgreSQL 15.
//!
//! Per trial: a writer through HAProxy's writers' port and one writer straight to each of dc and
//! ndc, each inserting every ~5 ms and reconnecting at once. The database's outage is from the
//! old primary's last direct acknowledgement to the new primary's first; the application's is
//! the same through HAProxy; "behind" is the application's first write on the new primary after
//! the database's. Switchovers alternate dc → ndc → dc; failovers SIGKILL the primary's agent and
//! postmaster (the controllers stay), then bring them back (rejoined, synchronous) for the next.
//!
//! ```text
//! cargo bench --profile dev -p triad-tests --bench balancer \
//!   --config 'profile.dev.package.triad-controller.opt-level=2' \
//!   --config 'profile.dev.package.triad-proto.opt-level=2' \
//!   --config 'profile.dev.package.triad-agent.opt-level=2'
//! ```
//! `TRIAD_BENCH_SWITCHOVERS` (default 6) and `TRIAD_BENCH_FAILOVERS` (default 4) per mode.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use triad_tests::haproxy::{port_of, Acks, Checks, Haproxy, Plan, Writer};
use triad_tests::workload::{kill_postgres, pct};
use triad_tests::{wait_for, Deployment};

/// One trial's figures, in milliseconds.
struct Figures {
    db_outage: f64,
    app_outage: f64,
    behind: f64,
}

/// The outage seen by `acks` from the last write on `old` before `from` (or after it) to the
/// first on `new` after `from`.
fn outage(acks: &Acks, old: i32, new: i32, from: Instant) -> Option<(Instant, Instant)> {
    let first_new = acks.first_by(new, from)?;
    let last_old = acks.acks.iter().rev().find(|(t, p)| *p == old && *t < first_new).map(|(t, _)| *t)?;
    Some((last_old, first_new))
}

/// The figures of the role change from `old` to `new` begun at `from`, once the writer through
/// HAProxy writes on the new primary.
async fn measure(through: &Writer, direct: &[&Writer], old: i32, new: i32, from: Instant) -> Result<Figures> {
    wait_for("the writer through HAProxy writes on the new primary", Duration::from_secs(60), || async {
        through.acks().first_by(new, from).map(|_| ())
    })
    .await?;
    let mut all = Acks::default();
    for w in direct {
        all.acks.extend(w.acks().acks);
    }
    all.acks.sort_by_key(|(t, _)| *t);
    let (db_last, db_first) = outage(&all, old, new, from).context("direct writes on both members")?;
    let (app_last, app_first) = outage(&through.acks(), old, new, from).context("writes through HAProxy")?;
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_secs_f64() * 1e3;
    Ok(Figures {
        db_outage: ms(db_last, db_first),
        app_outage: ms(app_last, app_first),
        behind: ms(db_first, app_first),
    })
}

/// Runs the trials with the push (`push`) or without it; returns (kind, figures) per trial.
async fn mode(push: bool, switchovers: usize, failovers: usize) -> Result<Vec<(&'static str, Figures)>> {
    let mut d = Deployment::with_postgres().await?;
    let plan = Plan::new(&d)?;
    let balancer = plan.balancer("agent-dr", "dr");
    d.tune_controllers(|c| {
        c.failover.min_interval_ms = 1000;
        c.balancers = if push { vec![balancer.clone()] } else { Vec::new() };
    })?;
    d.start_all().await?;
    wait_for("adoption, failover ready", Duration::from_secs(60), || async {
        let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
        (c.synchronous == ["ndc"] && c.failover_blocked.is_empty()).then_some(())
    })
    .await?;
    let h = Haproxy::start(&d, plan, Checks::SHIPPED)?;
    h.settled(&d, "dc").await.with_context(|| h.log())?;
    let (dc, ndc) = (port_of(&d, "dc")?, port_of(&d, "ndc")?);
    let through = Writer::start(h.plan.rw);
    let (to_dc, to_ndc) = (Writer::start(u16::try_from(dc)?), Writer::start(u16::try_from(ndc)?));
    let mut out = Vec::new();
    let label = if push { "push" } else { "checks only" };
    let mut primary = "dc";
    for t in 0..switchovers + failovers {
        let (old, new) = if primary == "dc" { ("dc", "ndc") } else { ("ndc", "dc") };
        let (old_port, new_port) = (port_of(&d, old)?, port_of(&d, new)?);
        // Before each trial: HAProxy routes writers to the primary by its checks too, and the
        // standby to lose over is synchronous.
        h.settled(&d, old).await.with_context(|| h.log())?;
        wait_for("writes through HAProxy", Duration::from_secs(20), || async {
            let last = through.acks().acks.last().copied();
            last.filter(|(at, p)| *p == old_port && at.elapsed() < Duration::from_millis(200)).map(|_| ())
        })
        .await?;
        let kind = if t < switchovers { "switchover" } else { "failover" };
        let from = Instant::now();
        let epoch = d.status().await?.cluster_state["customs"].epoch;
        if kind == "switchover" {
            let run = d.triadctl(&["switchover", "--cluster", "customs", "--to", new])?;
            anyhow::ensure!(run.status.success(), "switchover: {}", String::from_utf8_lossy(&run.stderr));
        } else {
            let data = d.pg.as_ref().context("postgres")?.member(old)?.dir.join("data");
            d.kill(&format!("agent-{old}"))?;
            kill_postgres(&data)?;
            wait_for("the new primary", Duration::from_secs(60), || async {
                let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
                (c.epoch > epoch && c.primary == new).then_some(())
            })
            .await?;
        }
        let f = measure(&through, &[&to_dc, &to_ndc], old_port, new_port, from).await?;
        println!(
            "{:>12} {:>5} {:>11} {:>16.0} {:>19.0} {:>15.0}",
            label,
            t + 1,
            format!("{kind} {old}→{new}"),
            f.db_outage,
            f.app_outage,
            f.behind
        );
        out.push((kind, f));
        if kind == "failover" {
            d.start_agent(old)?;
        }
        wait_for("the old primary synchronous again", Duration::from_secs(180), || async {
            let c = d.status().await.ok()?.cluster_state.get("customs")?.clone();
            (c.synchronous == [old] && c.failover_blocked.is_empty()).then_some(())
        })
        .await?;
        wait_for("the role change ended", Duration::from_secs(60), || async {
            let (w, _) = d.newest_workflow(kind).ok()?;
            (w["outcome"] != "under way").then_some(())
        })
        .await?;
        primary = new;
    }
    for w in [through, to_dc, to_ndc] {
        w.finish().await;
    }
    Ok(out)
}

async fn run() -> Result<()> {
    let n = |var: &str, default: usize| std::env::var(var).ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let (switchovers, failovers) = (n("TRIAD_BENCH_SWITCHOVERS", 6), n("TRIAD_BENCH_FAILOVERS", 4));
    println!("Write outage behind HAProxy 2.6 (inter 3s, fall 3, rise 2), real PostgreSQL 15");
    println!(
        "{:>12} {:>5} {:>11} {:>16} {:>19} {:>15}",
        "mode", "trial", "change", "db outage ms", "app outage ms", "behind db ms"
    );
    let mut results = Vec::new();
    for push in [true, false] {
        results.push((push, mode(push, switchovers, failovers).await?));
    }
    println!();
    for (push, trials) in &results {
        for kind in ["switchover", "failover"] {
            let pick = |f: fn(&Figures) -> f64| -> Vec<f64> {
                trials.iter().filter(|(k, _)| *k == kind).map(|(_, x)| f(x)).collect()
            };
            let (mut db, mut app, mut behind) = (pick(|f| f.db_outage), pick(|f| f.app_outage), pick(|f| f.behind));
            if db.is_empty() {
                continue;
            }
            println!(
                "{:<12} {:<10} db outage p50 {:>6.0} ms | app outage p50 {:>6.0} max {:>6.0} ms | behind db p50 {:>6.0} max {:>6.0} ms ({} trials)",
                if *push { "push" } else { "checks only" },
                kind,
                pct(&mut db, 0.5),
                pct(&mut app.clone(), 0.5),
                pct(&mut app, 1.0),
                pct(&mut behind.clone(), 0.5),
                pct(&mut behind, 1.0),
                db.len()
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}
