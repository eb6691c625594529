//! Automatic failover on real PostgreSQL: the primary site is lost — its agent, its database's
//! whole process tree and its controller SIGKILLed — under continuous writes. The synchronous
//! standby in ndc takes over once the old primary's lease has certainly ended; every acknowledged
//! write is on it; two members are never writable at once; dr follows the new primary. When the
//! lost site returns, its old primary rejoins as a standby (rewound) and becomes synchronous again.
//! The Raft leader is in the lost site.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::workload::{kill_postgres, Workload};
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn primary_site_lost_ndc_takes_over_and_nothing_is_lost() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    // Adopted, ndc synchronous, the primary under lease, and failover ready (nothing blocks it).
    d.wait_ready(true).await?;
    let table = String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout).into_owned();
    ensure!(table.contains("automatic failover: ready") && table.contains("lease P 1500 ms"), "{table}");

    let pg = d.pg.as_ref().unwrap();
    let conninfos = d.conninfos()?;
    let dc_data = pg.member("dc")?.dir.join("data");
    let load = Workload::start(conninfos, 50).await?;

    // The Raft leader is moved into dc first, so that it dies with the site: the next leader
    // cannot know what it granted and waits 2P(1+rho)+m after its election (the case where the
    // leader survives is tests/tests/partition.rs).
    d.make_leader(1).await?;
    // The primary site is lost: agent, database and controller, all at once.
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(5)).await?;
    ensure!(leader == 1, "controller {leader} leads, not dc's");
    let lost_at = Instant::now();
    d.kill("agent-dc")?;
    kill_postgres(&dc_data)?;
    d.kill("controller-1")?;
    eprintln!("site dc lost (the Raft leader was controller {leader})");

    d.wait_primary("ndc", 2, &["controller-2", "controller-3", "agent-ndc"]).await?;
    eprintln!("ndc is primary {} ms after the site was lost", lost_at.elapsed().as_millis());
    load.more("writes on ndc", 50, Duration::from_secs(15)).await?;
    // dr follows the new primary.
    wait_for("dr streaming from ndc", Duration::from_secs(20), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().any(|m| m.name == "dr" && m.sync_state == "async").then_some(())
    })
    .await?;

    // Every lease round since ran without controller 1; the new leader does not log an error
    // for each one.
    let new_leader = d.wait_leader(&[2, 3], Duration::from_secs(5)).await?;
    let log = d.log_tail(&format!("controller-{new_leader}"), 5000);
    let noise = log.lines().filter(|l| l.contains("timeout while confirming leadership")).count();
    ensure!(noise == 0, "controller {new_leader} logged {noise} lease-round errors for the lost voter");

    // The lost site returns: its controller and agent. The agent does not start PostgreSQL on its
    // own; the leader has it rewound and started as a standby of ndc, then synchronous again.
    d.start_controller(1)?;
    d.start_agent("dc")?;
    d.wait_synchronous_again("dc", Duration::from_secs(150)).await?;

    let acked = load.finish().await?;
    for member in ["ndc", "dc"] {
        d.wait_holds_all(member, &acked, Duration::from_secs(15)).await?;
    }
    eprintln!("{} acknowledged writes, none lost", acked.len());

    // The history tells what happened and who decided: the controller, with each step.
    let out = d.triadctl(&["history", "--cluster", "customs", "-o", "json"])?;
    let history: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let h = history.as_array().cloned().unwrap_or_default();
    let failover = h.iter().find(|w| w["kind"] == "failover").cloned().unwrap_or_default();
    ensure!(
        failover["outcome"].as_str().is_some_and(|o| o.starts_with("completed"))
            && failover["requested_by"].as_str().is_some_and(|r| r.starts_with("controller-"))
            && failover["from"] == "dc"
            && failover["to"] == "ndc",
        "{history}"
    );
    let steps: Vec<String> = failover["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x[0].as_str().map(String::from)).collect())
        .unwrap_or_default();
    ensure!(steps.starts_with(&["detected".into(), "lease-ended".into(), "promoted".into()]), "{steps:?}");
    let rejoin = h.iter().find(|w| w["kind"] == "rejoin").cloned().unwrap_or_default();
    ensure!(rejoin["outcome"].as_str().is_some_and(|o| o.starts_with("completed")), "{history}");
    // What the old primary discarded is reported: rewound (with the range saved and the
    // transactions in it listed), or nothing to rewind.
    let note = rejoin["steps"][0][2].as_str().unwrap_or_default();
    ensure!(note.starts_with("rewound: WAL from") || note.starts_with("no rewind required"), "{history}");
    Ok(())
}
