//! The failsafe (DESIGN.md, "Safety of role changes", point 3) on real PostgreSQL and real
//! processes: with two of three controllers killed nothing can renew the primary's lease, yet the
//! primary keeps serving on its voucher's word (the synchronous standby's agent, asked over
//! mutual TLS) for many lease periods, and nothing is promoted. When the voucher is lost as well,
//! the primary fences before its last vouch could have expired. After the heal, the leader starts
//! the fenced primary again at the same epoch, and it holds every acknowledged write.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::workload::SingleWorkload;
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn the_primary_outlives_the_controllers_on_its_voucher_and_fences_without_it() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    let v = wait_for("dc under lease, ndc synchronous and vouching", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let dc = v.clusters["customs"].iter().find(|m| m.name == "dc")?.clone();
        (c.epoch == 1 && c.synchronous == ["ndc"] && c.vouch == ["ndc"] && dc.lease_remaining_ms > 0).then_some(v)
    })
    .await?;
    let (period, expiry) = (v.lease.period_ms, v.lease.period_ms + v.lease.margin_ms + v.lease.period_ms / 100);

    let conninfos = d.conninfos()?;
    let load = SingleWorkload::start(conninfos.clone(), 50).await?;

    // Two of three controllers killed, the leader among them: no quorum, no renewal.
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(5)).await?;
    let other = if leader == 1 { 2 } else { 1 };
    let lost = Instant::now();
    d.kill(&format!("controller-{leader}"))?;
    d.kill(&format!("controller-{other}"))?;
    eprintln!("controllers {leader} and {other} killed");
    d.wait_failsafe("dc").await?;
    // Three whole lease periods without the controllers: the primary goes on serving.
    let before = load.seen().acked.len();
    wait_for("three lease periods without a quorum", Duration::from_secs(30), || async {
        (lost.elapsed() > Duration::from_millis(3 * period)).then_some(())
    })
    .await?;
    {
        let s = load.seen();
        ensure!(s.errors == 0, "{} writes to dc failed while its voucher vouched", s.errors);
        ensure!(s.acked.len() > before + 100, "dc acknowledged only {} writes meanwhile", s.acked.len() - before);
    }
    ensure!(
        d.agent_metric("dc", r#"triad_agent_fences_total{reason="lease"}"#).await.unwrap_or(0.0) == 0.0,
        "dc fenced"
    );
    let given = d.agent_metric("ndc", r#"triad_agent_vouches_total{result="given"}"#).await.unwrap_or(0.0);
    ensure!(given >= 5.0, "ndc vouched {given} times");
    // The surviving controller shows it (a stale read, marked so).
    let asked = Instant::now();
    let text = String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout).into_owned();
    eprintln!("status from the surviving controller in {} ms", asked.elapsed().as_millis());
    ensure!(text.contains("FAILSAFE: vouched by ndc"), "{text}");

    // The voucher is lost as well: nothing vouches any more, and dc fences before its last vouch
    // (asked at the latest now) could have expired.
    let cut = Instant::now();
    d.kill("agent-ndc")?;
    // Fenced: the agent counted it, and the server stopped taking writes.
    let fenced = wait_for("dc fenced", Duration::from_secs(15), || async {
        let counted = d.agent_metric("dc", r#"triad_agent_fences_total{reason="lease"}"#).await? >= 1.0;
        (counted && load.seen().first_error.is_some()).then_some(())
    })
    .await;
    if fenced.is_err() {
        d.diagnose(&["agent-dc"])?;
    }
    fenced?;
    eprintln!("dc fenced {} ms after its voucher was lost", cut.elapsed().as_millis());
    {
        let s = load.seen();
        let last_ok = s.last_ok.expect("writes were acknowledged");
        ensure!(
            last_ok < cut + Duration::from_millis(expiry),
            "dc acknowledged a write {} ms after its voucher was lost (vouches last {period} ms)",
            last_ok.duration_since(cut).as_millis()
        );
        let first = s.first_error.map(|e| e.saturating_duration_since(lost).as_millis() as i64);
        ensure!(
            s.first_error.is_some_and(|e| e > cut),
            "writes failed before the voucher was lost: first at {first:?} ms after the quorum was lost, the voucher lost at {} ms",
            cut.duration_since(lost).as_millis()
        );
    }
    let open = tokio_postgres::connect(&conninfos[0], tokio_postgres::NoTls).await;
    ensure!(open.is_err(), "dc's server still accepts connections after the fence");

    // The heal: controllers and voucher return; a primary writes again and has every
    // acknowledged write (the synchronous standby had them all).
    d.start_controller(leader)?;
    d.start_controller(other)?;
    d.start_agent("ndc")?;
    let healed = wait_for("a primary under lease again", Duration::from_secs(90), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let p = v.clusters["customs"].iter().find(|m| m.name == c.primary)?.clone();
        if p.role != "primary" || p.lease_remaining_ms <= 0 {
            return None;
        }
        // Observations trail by an interval: ask the server itself.
        let client = d.pg_connect(&p.name).await.ok()?;
        let row = client.query_one("SELECT NOT pg_is_in_recovery()", &[]).await.ok()?;
        row.get::<_, bool>(0).then_some(p.name)
    })
    .await;
    if healed.is_err() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-ndc", "agent-dc"])?;
    }
    let primary = healed?;
    // dc was stopped by its own fence, not lost: the leader starts it again (a `restart`
    // workflow) before it could be judged lost, at the same epoch.
    let (w, _) = d.newest_workflow("restart")?;
    let epoch = d.status().await?.cluster_state["customs"].epoch;
    ensure!(primary == "dc" && epoch == 1, "{primary} is primary at epoch {epoch}, not dc at 1; {w}");
    ensure!(w["outcome"].as_str().is_some_and(|o| o.starts_with("completed: dc runs again")), "{w}");
    let acked: Vec<i64> = load.finish().await?.acked.into_iter().collect();
    let missing = d.missing_on(&primary, &acked).await?;
    ensure!(missing == 0, "{missing} of {} acknowledged writes are missing on {primary}", acked.len());
    eprintln!("{} acknowledged writes, all on the primary {primary} after the heal", acked.len());
    Ok(())
}

/// The failsafe after a role change (issue 16, item 5): dc's whole site is lost and ndc takes
/// over with no synchronous standby left, so no vouch set came with the new epoch. The standby
/// that streams from ndc (dr) is recorded as its voucher; then the controllers' quorum is lost
/// too, and ndc keeps serving on dr's word. Before, ndc had no voucher and fenced.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_the_new_primary_keeps_a_voucher_and_outlives_the_controllers() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    d.wait_ready(true).await?;
    let pg = d.pg.as_ref().expect("PostgreSQL");
    let dc_data = pg.member("dc")?.dir.join("data");
    let period = d.status().await?.lease.period_ms;

    d.kill("agent-dc")?;
    triad_tests::workload::kill_postgres(&dc_data)?;
    d.kill("controller-1")?;
    d.wait_primary("ndc", 2, &["controller-2", "controller-3", "agent-ndc", "agent-dr"]).await?;
    let vouched = wait_for("dr vouching for ndc", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.synchronous.is_empty() && c.vouch == ["dr"]).then_some(())
    })
    .await;
    if vouched.is_err() {
        d.diagnose(&["controller-2", "controller-3", "agent-ndc", "agent-dr"])?;
    }
    vouched?;
    let table = String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout).into_owned();
    ensure!(table.contains("vouchers [dr]") && !table.contains("failsafe off"), "{table}");

    let ndc = d.pg.as_ref().expect("PostgreSQL").member("ndc")?.conninfo("customs");
    let load = SingleWorkload::start(vec![ndc], 50).await?;
    let leader = d.wait_leader(&[2, 3], Duration::from_secs(5)).await?;
    let lost = Instant::now();
    d.kill(&format!("controller-{leader}"))?;
    d.wait_failsafe("ndc").await?;
    let before = load.seen().acked.len();
    wait_for("three lease periods without a quorum", Duration::from_secs(30), || async {
        (lost.elapsed() > Duration::from_millis(3 * period)).then_some(())
    })
    .await?;
    {
        let s = load.seen();
        ensure!(s.errors == 0, "{} writes to ndc failed while dr vouched", s.errors);
        ensure!(s.acked.len() > before + 100, "ndc acknowledged only {} writes meanwhile", s.acked.len() - before);
    }
    ensure!(
        d.agent_metric("ndc", r#"triad_agent_fences_total{reason="lease"}"#).await.unwrap_or(0.0) == 0.0,
        "ndc fenced"
    );
    load.finish().await?;
    Ok(())
}
