//! Manual failover on real PostgreSQL (DESIGN.md, "Security": dangerous operations need a second
//! approver): one operator requests, another approves, then the leader carries it out with the
//! automatic failover's safety (leases waited out, epoch first) plus what the decision adds.
//!
//! - Refused while the primary runs; a target outside the synchronous set refused unless the data
//!   loss is accepted; the requester cannot approve; with automatic failover off and dc lost, a
//!   second person's approval promotes ndc with nothing lost.
//! - Five voters (two witness controllers in other cities), the Raft leader in dc, and both sites
//!   of the city lost entirely (controllers, agents, databases) under writes: the three voters left
//!   elect a leader; promoting dr needs the loss accepted and the unreachable voucher attested
//!   dead; two people approve; the workflow reports its data-loss window; never two writers.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::workload::{kill_postgres, Workload};
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers; two at once on a
/// two-core machine starve Raft's heartbeats and stretch the timings, so these run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The request id `triadctl failover` printed.
fn request_id(out: &std::process::Output) -> Result<String> {
    let t = text(out);
    ensure!(out.status.success(), "failover request failed: {t}");
    let id = t.split("request ").nth(1).and_then(|r| r.split(',').next()).map(|s| s.trim().to_string());
    id.filter(|i| i.parse::<u64>().is_ok()).ok_or_else(|| anyhow::anyhow!("no request id in: {t}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_person_approves_the_failover_to_ndc_and_nothing_is_lost() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres().await?;
    d.tune_controllers(|c| c.failover.automatic = false)?;
    d.start_all().await?;
    d.wait_ready(false).await?;
    let failover = ["failover", "--cluster", "customs", "--to", "ndc", "--reason", "dc lost (test)"];

    // Refused while dc runs and its agent answers.
    let out = d.triadctl(&failover)?;
    ensure!(!out.status.success() && text(&out).contains("use `triadctl switchover`"), "{}", text(&out));

    let pg = d.pg.as_ref().unwrap();
    let conninfos = d.conninfos()?;
    let dc_data = pg.member("dc")?.dir.join("data");
    let load = Workload::start(conninfos, 50).await?;

    // dc's site is lost; automatic failover is off, so nothing happens on its own.
    d.kill("agent-dc")?;
    kill_postgres(&dc_data)?;
    d.kill("controller-1")?;
    // dr is not synchronous: refused unless the loss is accepted.
    let out = wait_for("the leader to see dc lost", Duration::from_secs(15), || async {
        let out = d.triadctl(&["failover", "--cluster", "customs", "--to", "dr", "--reason", "t"]).ok()?;
        (!text(&out).contains("is running")).then_some(out)
    })
    .await?;
    ensure!(!out.status.success() && text(&out).contains("is not synchronous"), "{}", text(&out));
    let v = d.status().await?;
    ensure!(v.cluster_state["customs"].epoch == 1, "something failed over on its own");

    let out = d.triadctl(&failover)?;
    let id = request_id(&out)?;
    let table = text(&d.triadctl(&["status"])?);
    ensure!(table.contains("REQUESTS TO APPROVE") && table.contains("pending"), "{table}");
    // The requester cannot approve their own request.
    let out = d.triadctl(&["approve", &id])?;
    ensure!(!out.status.success() && text(&out).contains("a second person"), "{}", text(&out));
    // Someone without a say cannot either.
    let out = d.triadctl_as("sam", "soc", &["approve", &id])?;
    ensure!(!out.status.success() && text(&out).contains("approving a failover needs"), "{}", text(&out));
    let out = d.triadctl_as("bob", "noc", &["approve", &id])?;
    ensure!(
        out.status.success() && text(&out).contains("completed: ndc is primary at epoch 2"),
        "{}: {}",
        out.status,
        text(&out)
    );

    load.more("writes on ndc", 50, Duration::from_secs(15)).await?;
    let acked = load.finish().await?;
    let missing = d.missing_on("ndc", &acked).await?;
    ensure!(missing == 0, "{missing} of {} acknowledged writes missing on ndc", acked.len());

    let (f, steps) = d.newest_workflow("failover")?;
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(names.starts_with(&["approved", "detected", "lease-ended", "promoted"]), "{f}");
    ensure!(f["requested_by"].as_str().is_some_and(|r| r.contains("admin") && r.contains("bob")), "{f}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn five_voters_the_city_lost_dr_is_promoted_with_the_data_loss_window_reported() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let mut d = Deployment::with_postgres_and_witnesses(&[("ctg", "chittagong"), ("khl", "khulna")]).await?;
    d.start_all().await?;
    d.wait_ready(false).await?;
    // The harder case: the leader dies with the city.
    d.make_leader(1).await?;
    d.wait_ready(false).await?;
    let v = d.status().await?;
    ensure!(v.city_loss.starts_with("survivable"), "{}", v.city_loss);
    let witnesses: Vec<u64> = v.controllers.iter().filter(|c| c.witness && c.voter).map(|c| c.id).collect();
    ensure!(witnesses == [4, 5], "witnesses: {witnesses:?}");
    let pg = d.pg.as_ref().unwrap();
    let (dc_data, ndc_data) = (pg.member("dc")?.dir.join("data"), pg.member("ndc")?.dir.join("data"));
    let load = Workload::start(d.conninfos()?, 50).await?;

    // An earthquake: both sites of the city, controllers, agents and databases, all at once.
    for key in ["agent-dc", "agent-ndc", "controller-1", "controller-2"] {
        d.kill(key)?;
    }
    kill_postgres(&dc_data)?;
    kill_postgres(&ndc_data)?;
    // Three voters of five are left: dr's and the two witnesses.
    d.wait_leader(&[3, 4, 5], Duration::from_secs(15)).await?;
    let dr = ["failover", "--cluster", "customs", "--to", "dr", "--reason", "city lost", "--accept-data-loss"];
    // Once the leader has recorded both agents down (not merely a heartbeat late)...
    wait_for("dc's and ndc's agents recorded down", Duration::from_secs(20), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().filter(|m| m.name != "dr").all(|m| !m.agent_up).then_some(())
    })
    .await?;
    // ...ndc, which vouched for dc and cannot be asked to stop, makes it refused unless attested dead.
    let out = d.triadctl(&dr)?;
    ensure!(!out.status.success() && text(&out).contains("attesting `ndc` dead"), "{}", text(&out));
    let mut attested = dr.to_vec();
    attested.extend(["--attest-dead", "dc,ndc"]);
    let id = request_id(&d.triadctl(&attested)?)?;
    let out = d.triadctl_as("bob", "admin", &["approve", &id])?;
    ensure!(out.status.success() && text(&out).contains("completed: dr is primary at epoch 2"), "{}", text(&out));
    load.more("writes on dr", 50, Duration::from_secs(15)).await?;
    // Fails if two members were ever writable at once; losing writes is what was accepted.
    let acked = load.finish().await?;
    let missing = d.missing_on("dr", &acked).await?;
    eprintln!("{missing} of {} acknowledged writes not on dr (asynchronous)", acked.len());

    let (f, steps) = d.newest_workflow("failover")?;
    let step = |name: &str| steps.iter().find(|(n, _)| n == name).map(|(_, note)| note.clone()).unwrap_or_default();
    let loss = step("data-loss-window");
    ensure!(loss.starts_with("up to ") && loss.contains("bytes of WAL"), "{f}");
    let vouchers = step("vouchers-acked");
    ensure!(vouchers.contains("waited") && vouchers.contains("last vouch"), "{f}");
    eprintln!("data-loss window: {loss}");
    Ok(())
}
