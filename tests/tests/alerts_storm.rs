//! Alert storms on real controllers (issue 17): 100,000 events repeating 1,000 alerts end as
//! 1,000 alerts with the right counts on every controller; the leader killed mid-storm loses no
//! accepted alert and no triage action; a restart of every controller keeps it all.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use futures::stream::{self, StreamExt};
use triad_tests::alerts::{generic_batch, Ingest};
use triad_tests::{wait_for, Deployment};

const WAIT: Duration = Duration::from_secs(60);

/// Counts by fingerprint on controller `id`, once it has applied `n` alerts passing `done` (a
/// follower applies what the leader committed a little later).
async fn counts_on(
    d: &Deployment,
    id: u64,
    n: usize,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> Result<BTreeMap<String, u64>> {
    let last = std::sync::Mutex::new(BTreeMap::new());
    let got = wait_for(&format!("{n} alerts on controller {id}"), WAIT, || async {
        let alerts = d.alerts_of(id).await?;
        let counts: BTreeMap<String, u64> = alerts.into_iter().map(|a| (a.fingerprint, a.count)).collect();
        *last.lock().expect("last") = counts.clone();
        (counts.len() == n && done(&counts)).then_some(counts)
    })
    .await;
    let last = last.into_inner().expect("last");
    got.map_err(|e| e.context(format!("last seen: {:?}", last.iter().take(5).collect::<Vec<_>>())))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_events_of_a_thousand_alerts_are_a_thousand_alerts() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    d.wait_leader(&d.founders(), WAIT).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let ingest = Arc::new(Ingest::new(&d)?);
    // 1,000 requests of 100 events, 16 at a time, spread over the three controllers.
    let ids = d.founders();
    let codes: Vec<u16> = stream::iter(0..1000usize)
        .map(|r| {
            let (ingest, token, id) = (ingest.clone(), token.clone(), ids[r % ids.len()]);
            async move { ingest.post(id, &token, generic_batch(r * 100, 100, 1000)).await.unwrap_or(0) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    ensure!(
        codes.iter().all(|c| *c == 202),
        "every request accepted: {:?}",
        codes.iter().filter(|c| **c != 202).count()
    );
    for id in d.founders() {
        let counts = counts_on(&d, id, 1000, |c| c.values().all(|n| *n >= 100)).await?;
        ensure!(
            counts.values().all(|c| *c == 100),
            "controller {id}: counts other than 100: {:?}",
            counts.iter().filter(|(_, c)| **c != 100).take(5).collect::<Vec<_>>()
        );
    }
    // The metric follows the replicated totals within a second.
    wait_for("99,000 repeats counted as deduplicated", WAIT, || async {
        let repeated = d.controller_metric(ids[0], "triad_alerts_ingested_total{outcome=\"repeated\"}").await;
        let new = d.controller_metric(ids[0], "triad_alerts_ingested_total{outcome=\"new\"}").await;
        (repeated == Some(99_000.0) && new == Some(1_000.0)).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_killed_mid_storm_loses_nothing_accepted_and_a_full_restart_keeps_it() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let ingest = Ingest::new(&d)?;
    let follower = d.founders().into_iter().find(|id| *id != leader).expect("a follower");
    // 300 requests of 20 events over 200 alerts, one after another into a follower; the leader
    // is killed after the 100th. A refused request is sent again, as Alertmanager would.
    let mut accepted: BTreeMap<String, u64> = BTreeMap::new();
    let mut retries = 0;
    for r in 0..300usize {
        if r == 100 {
            d.kill(&format!("controller-{leader}"))?;
        }
        let body = generic_batch(r * 20, 20, 200);
        let mut tries = 0;
        loop {
            match ingest.post(follower, &token, body.clone()).await {
                Ok(202) => break,
                other => {
                    tries += 1;
                    retries += 1;
                    ensure!(tries < 100, "request {r} never accepted: {other:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        for i in r * 20..r * 20 + 20 {
            *accepted.entry(format!("fp-{}", i % 200)).or_default() += 1;
        }
    }
    // A triage action after the change of leader, through the surviving follower.
    let survivors: Vec<u64> = d.founders().into_iter().filter(|id| *id != leader).collect();
    let new_leader = d.wait_leader(&survivors, WAIT).await?;
    let acked = ["1", "2", "3"];
    let out = d.triadctl(&["alerts", "ack", acked[0], acked[1], acked[2]])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A request that timed out and was sent again may have committed twice: at least.
    let all_in = |counts: &BTreeMap<String, u64>| accepted.iter().all(|(fp, n)| counts.get(fp).is_some_and(|c| c >= n));
    counts_on(&d, new_leader, 200, all_in).await?;

    // Every controller killed and started again: everything is still there.
    d.start_controller(leader)?;
    for id in d.founders() {
        d.kill(&format!("controller-{id}"))?;
    }
    d.start_controllers()?;
    let after = d.wait_leader(&d.founders(), WAIT).await?;
    for id in d.founders() {
        counts_on(&d, id, 200, all_in).await?;
    }
    let alerts = d.alerts_of(after).await.unwrap_or_default();
    for id in acked {
        let a = alerts.iter().find(|a| a.id.to_string() == id);
        ensure!(a.is_some_and(|a| a.status == "acknowledged"), "alert {id} after the restart: {a:?}");
    }
    eprintln!("{retries} requests sent again around the change of leader");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_accepted_without_a_quorum_are_committed_when_their_controller_starts_again() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&d.founders(), WAIT).await?;
    let token = d.add_alert_source("siem", "generic")?;
    let ingest = Ingest::new(&d)?;
    // With both followers gone nothing can be committed: what the leader accepts now is only in
    // its journal. 50 requests of 10 events over 20 alerts: each alert 25 times.
    for id in d.founders().into_iter().filter(|id| *id != leader) {
        d.kill(&format!("controller-{id}"))?;
    }
    for r in 0..50usize {
        let code = ingest.post(leader, &token, generic_batch(r * 10, 10, 20)).await?;
        ensure!(code == 202, "request {r}: {code}, not accepted into the journal");
    }
    // The controller that accepted them is killed before any could be committed.
    d.kill(&format!("controller-{leader}"))?;
    d.start_controllers()?;
    d.wait_leader(&d.founders(), WAIT).await?;
    for id in d.founders() {
        let counts = counts_on(&d, id, 20, |c| c.values().all(|n| *n >= 25)).await?;
        ensure!(counts.values().all(|n| *n == 25), "controller {id}: counted other than once: {counts:?}");
    }
    Ok(())
}
