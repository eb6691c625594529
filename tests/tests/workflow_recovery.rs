//! Workflows survive their leader: a switchover stopped between any two of its steps (a
//! failpoint after stopping writes, after the target caught up, after the new epoch, after the
//! promote, after the old primary rejoined; then the leader killed) is finished by the next
//! leader — rolled back before the new epoch was committed, rolled forward after — and never
//! leaves two writable primaries or loses a write. A promote that keeps failing after the new
//! epoch rolls the switchover back to the old primary, also when the leader dies mid-rollback.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::workload::Workload;
use triad_tests::{wait_for, Deployment};

/// Each test runs three controllers, three agents and three PostgreSQL servers; two at once on a
/// two-core machine starve Raft's heartbeats, so these run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts everything with the controllers' `failpoints` (`name=action;...`), waits for adoption
/// and starts the workload: a writer to whichever member takes writes, and the checker that fails
/// the test if two members were ever writable at once.
async fn deployment(failpoints: &str) -> Result<(Deployment, Workload)> {
    let mut d = Deployment::with_postgres().await?;
    d.controller_env.push(("FAILPOINTS".into(), failpoints.into()));
    d.controller_env.push(("TRIAD_TEST_FAILPOINTS".into(), "1".into()));
    d.start_all().await?;
    // Adopted, ndc synchronous, and dc serving under its lease: a switchover asked earlier could
    // find dc still settling after its start (once, already stopped uncleanly: likely a fence).
    d.wait_ready(false).await?;
    let load = Workload::start(d.conninfos()?, 50).await?;
    Ok((d, load))
}

/// A switchover stopped at `failpoint` (its leader returns there, as if it had died).
async fn setup(failpoint: &str) -> Result<(Deployment, Workload)> {
    let (d, load) = deployment(&format!("{failpoint}=return")).await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success() && err.contains("failpoint"), "the failpoint stopped the switchover: {err}");
    Ok((d, load))
}

async fn kill_leader(d: &mut Deployment) -> Result<u64> {
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(10)).await?;
    d.kill(&format!("controller-{leader}"))?;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    d.wait_leader(&rest, Duration::from_secs(20)).await
}

/// The audit log once it records the workflow's end (the end is recorded after the roles the
/// tests wait for, and a follower may answer a heartbeat behind).
async fn audit_after_the_end(d: &Deployment) -> Result<String> {
    let audit = || Some(String::from_utf8_lossy(&d.triadctl(&["audit", "--limit", "100"]).ok()?.stdout).into_owned());
    let ended = wait_for("the workflow's end in the audit log", Duration::from_secs(10), || async {
        let a = audit()?;
        a.contains("finish workflow 1").then_some(a)
    })
    .await;
    // On a timeout the assertions after show what the log holds.
    Ok(ended.unwrap_or_else(|_| audit().unwrap_or_default()))
}

/// Waits until the cluster is at `epoch` with `primary` running as the primary and `standby` as a
/// standby (also recorded synchronous when `synchronous`); on a timeout the logs are shown.
async fn settled(d: &Deployment, epoch: u64, primary: &str, standby: &str, synchronous: bool) -> Result<()> {
    let what = format!("{primary} primary at epoch {epoch}, {standby} its standby");
    let done = wait_for(&what, Duration::from_secs(60), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let m = &v.clusters["customs"];
        let role = |n: &str| m.iter().find(|x| x.name == n).map(|x| x.role.clone()).unwrap_or_default();
        (c.epoch == epoch
            && c.primary == primary
            && (!synchronous || c.synchronous == [standby])
            && role(primary) == "primary"
            && role(standby) == "standby")
            .then_some(())
    })
    .await;
    if done.is_err() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"])?;
    }
    done
}

/// Writes go on on `member` (`what`), and it holds every write acknowledged since the start.
async fn writes_go_on(d: &Deployment, load: Workload, member: &str, what: &str) -> Result<()> {
    load.more(what, 20, Duration::from_secs(15)).await?;
    let acked = load.finish().await?;
    ensure!(d.missing_on(member, &acked).await? == 0, "{member} lost acknowledged writes");
    Ok(())
}

/// Stopped at `failpoint`, before the new epoch: the old primary is stopped and nothing was
/// promoted. The next leader restarts it as primary at epoch 1.
async fn rolls_back(failpoint: &str) -> Result<()> {
    let (mut d, load) = setup(failpoint).await?;
    // No writable member at all meanwhile.
    wait_for("dc stopped", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().any(|m| m.name == "dc" && m.role == "down").then_some(())
    })
    .await?;
    let new = kill_leader(&mut d).await?;
    // The new leader restarted dc as primary at epoch 1.
    settled(&d, 1, "dc", "ndc", false).await?;
    let audit = audit_after_the_end(&d).await?;
    ensure!(audit.contains("rolled back") && audit.contains(&format!("controller {new} took over")), "{audit}");
    writes_go_on(&d, load, "dc", "writes on dc again").await?;
    Ok(())
}

/// Stopped at `failpoint`, after the new epoch: the next leader finishes the remaining steps
/// (promote, rejoin, synchronous again), each repeated harmlessly if it had run.
async fn rolls_forward(failpoint: &str) -> Result<()> {
    let (mut d, load) = setup(failpoint).await?;
    wait_for("epoch 2 committed with ndc primary", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.epoch == 2 && c.primary == "ndc").then_some(())
    })
    .await?;
    let new = kill_leader(&mut d).await?;
    // The new leader finished: ndc primary, dc its synchronous standby.
    settled(&d, 2, "ndc", "dc", true).await?;
    let audit = audit_after_the_end(&d).await?;
    ensure!(audit.contains(&format!("completed by controller {new} after a leader change")), "{audit}");
    writes_go_on(&d, load, "ndc", "writes on ndc").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_after_stopping_writes_rolls_back() -> Result<()> {
    let _serial = SERIAL.lock().await;
    rolls_back("switchover-after-stop-writes").await
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_after_the_target_caught_up_rolls_back() -> Result<()> {
    let _serial = SERIAL.lock().await;
    rolls_back("switchover-after-caught-up").await
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_after_the_new_epoch_rolls_forward() -> Result<()> {
    let _serial = SERIAL.lock().await;
    rolls_forward("switchover-after-new-epoch").await
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_after_the_promote_rolls_forward() -> Result<()> {
    let _serial = SERIAL.lock().await;
    rolls_forward("switchover-after-promote").await
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_after_the_old_primary_rejoined_rolls_forward() -> Result<()> {
    let _serial = SERIAL.lock().await;
    rolls_forward("switchover-after-rejoin").await
}

/// The promote after the new epoch fails once (the target's agent could be reconnecting): the
/// switchover retries it and completes, nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_promote_after_the_new_epoch_is_retried() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (d, load) = deployment("switchover-promote=1*return").await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    ensure!(out.status.success(), "the switchover failed: {}", String::from_utf8_lossy(&out.stderr));
    // triadctl may have been answered by the leader while a follower answers history.
    let ended = wait_for("the switchover's end in the history", Duration::from_secs(10), || async {
        let (w, steps) = d.newest_workflow("switchover").ok()?;
        (w["outcome"] != "under way").then_some((w, steps))
    })
    .await;
    let (w, steps) = match ended {
        Ok(found) => found,
        Err(_) => d.newest_workflow("switchover")?,
    };
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    let retry = names.iter().position(|n| *n == "promote-retry");
    let promoted = names.iter().position(|n| *n == "promoted");
    ensure!(retry.is_some() && promoted > retry, "{w}");
    ensure!(w["outcome"].as_str().is_some_and(|o| o.starts_with("completed")), "{w}");
    writes_go_on(&d, load, "ndc", "writes on ndc").await?;
    Ok(())
}

/// The target's promote fails every time after the new epoch (its agent unreachable, its server
/// broken): the switchover rolls back rather than leave no writable member. A newer epoch names
/// dc again, the target's leases at the epoch before end, ndc is stopped as a standby that never
/// promoted, dc starts again; nothing lost, never two writable members.
async fn rolled_back_after_the_new_epoch(d: &mut Deployment, load: Workload, resumed: bool) -> Result<()> {
    settled(d, 3, "dc", "ndc", true).await?;
    let (w, steps) = wait_for("the rollback in the history", Duration::from_secs(10), || async {
        let (w, steps) = d.newest_workflow("switchover").ok()?;
        (w["outcome"] != "under way").then_some((w, steps))
    })
    .await?;
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(
        w["outcome"].as_str().is_some_and(|o| o.starts_with("rolled back after the new epoch"))
            && names.contains(&"rolling-back")
            && names.contains(&"target-stopped")
            && !names.contains(&"promoted"),
        "{w}"
    );
    if resumed {
        ensure!(w["outcome"].as_str().is_some_and(|o| o.contains("switchover-promote")), "{w}");
    }
    writes_go_on(d, load, "dc", "writes on dc again").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_promote_failing_after_the_new_epoch_rolls_back_to_the_old_primary() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (mut d, load) = deployment("switchover-promote=3*return").await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success() && err.contains("rolled back after the new epoch"), "{err}");
    rolled_back_after_the_new_epoch(&mut d, load, false).await
}

/// The leader dies right after committing the epoch that names dc again: the next one finishes
/// the rollback (waiting out the target's leases from its own election).
#[tokio::test(flavor = "multi_thread")]
async fn leader_lost_while_rolling_back_after_the_new_epoch_finishes_it() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (mut d, load) = deployment("switchover-promote=3*return;switchover-after-rollback-epoch=return").await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success() && err.contains("failpoint"), "the failpoint stopped the rollback: {err}");
    kill_leader(&mut d).await?;
    rolled_back_after_the_new_epoch(&mut d, load, true).await
}

/// The promote ran but its answer was lost, three times (issue 16, item 7: a promote that
/// outlived the switchover's patience): the rollback finds ndc promoted when it stops it, so it
/// goes forward to ndc (epoch 4) rather than start dc and discard what ndc acknowledged, and
/// writes go on with nothing lost. Before: "no member is writable", with nothing left to run.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_that_finished_its_promotion_after_the_switchover_gave_up_is_rolled_forward_to() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (d, load) = deployment("switchover-promote-answer-lost=3*return").await?;
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(err.contains("completed (rolled forward)"), "{err}");
    settled(&d, 4, "ndc", "dc", true).await?;
    let (w, steps) = d.newest_workflow("switchover")?;
    let names: Vec<&str> = steps.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(names.contains(&"rolling-back") && names.contains(&"target-promoted"), "{w}");
    writes_go_on(&d, load, "ndc", "writes on ndc").await?;
    Ok(())
}

/// The target's agent is gone when the rollback must confirm the target stopped: nobody knows
/// whether it finished its promotion, so dc is not started (that could discard what ndc
/// acknowledged). The workflow stays open, status says what it waits for, and once ndc's agent is
/// back the rollback completes on its own. Before: it ended "no member is writable" for good.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_waits_for_the_targets_agent_and_completes_when_it_returns() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (mut d, load) = deployment("switchover-promote=3*return").await?;
    let switchover = switchover_to_ndc_until_a_promote_fails(&d).await?;
    d.kill("agent-ndc")?;
    let note = rollback_waiting_for_ndc(&d).await?;
    ensure!(note.contains("bring it back"), "{note}");
    let v = d.status().await?;
    ensure!(v.cluster_state["customs"].epoch == 3, "dc is named again at epoch 3");
    ensure!(v.clusters["customs"].iter().all(|m| m.role != "primary"), "nobody writable meanwhile");
    d.start_agent("ndc")?;
    settled(&d, 3, "dc", "ndc", true).await?;
    let (w, _) = d.newest_workflow("switchover")?;
    ensure!(w["outcome"].as_str().is_some_and(|o| o.starts_with("rolled back after the new epoch")), "{w}");
    let _ = switchover.join();
    writes_go_on(&d, load, "dc", "writes on dc again").await?;
    Ok(())
}

/// The target is lost for good while the rollback waits for its agent: two people decide to start
/// the old primary without its word (`triadctl failover --to dc --attest-dead ndc
/// --accept-data-loss`, then a second person's approval). The rollback carries it out: dc is the
/// primary again at the rollback's epoch, the history says who attested what. Before: the
/// rollback waited for ever, and a failover to dc was refused ("dc is the primary already").
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_waiting_for_a_target_lost_for_good_is_resolved_by_two_people() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let (mut d, load) = deployment("switchover-promote=3*return").await?;
    let switchover = switchover_to_ndc_until_a_promote_fails(&d).await?;
    // ndc's host is gone: its agent and its server.
    d.kill("agent-ndc")?;
    let ndc_data = d.pg.as_ref().expect("PostgreSQL").member("ndc")?.dir.join("data");
    triad_tests::workload::kill_postgres(&ndc_data)?;
    let note = rollback_waiting_for_ndc(&d).await?;
    ensure!(note.contains("--attest-dead ndc --accept-data-loss"), "status does not say what to do: {note}");

    // Without the attestation, the request says what it needs.
    let out = d.triadctl(&["failover", "--cluster", "customs", "--to", "dc", "--reason", "ndc destroyed"])?;
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    ensure!(!out.status.success() && text(&out).contains("--attest-dead ndc"), "{}", text(&out));
    let request = [
        "failover",
        "--cluster",
        "customs",
        "--to",
        "dc",
        "--attest-dead",
        "ndc",
        "--accept-data-loss",
        "--reason",
        "ndc's host destroyed (test)",
    ];
    let out = d.triadctl(&request)?;
    ensure!(out.status.success(), "{}", text(&out));
    let id = text(&out).split("request ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("").trim().to_string();
    let out = d.triadctl_as("bob", "noc", &["approve", &id])?;
    ensure!(out.status.success() && text(&out).contains("completed: rolled back"), "{}: {}", out.status, text(&out));

    settled_without(&d, 3, "dc").await?;
    let (w, steps) = d.newest_workflow("switchover")?;
    ensure!(steps.iter().any(|(n, _)| n == "target-attested-dead"), "{w}");
    ensure!(w["outcome"].as_str().is_some_and(|o| o.contains("attested dead")), "{w}");
    let _ = switchover.join();
    let writes = writes_go_on(&d, load, "dc", "writes on dc again").await;
    if writes.is_err() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc"])?;
    }
    writes
}

/// `primary` is the writable primary at `epoch` (its standby gone).
async fn settled_without(d: &Deployment, epoch: u64, primary: &str) -> Result<()> {
    let done = wait_for(&format!("{primary} primary at epoch {epoch}"), Duration::from_secs(60), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let role = v.clusters["customs"].iter().find(|x| x.name == primary).map(|x| x.role.clone())?;
        (c.epoch == epoch && c.primary == primary && role == "primary").then_some(())
    })
    .await;
    if done.is_err() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc"])?;
    }
    done
}

/// Starts a switchover to ndc in the background (its triadctl waits for the end) and returns once
/// its first promote failed.
async fn switchover_to_ndc_until_a_promote_fails(
    d: &Deployment,
) -> Result<std::thread::JoinHandle<std::io::Result<std::process::Output>>> {
    let ctl = triad_tests::bin("triadctl");
    let config = d.plan.ctl_config_path();
    let switchover = std::thread::spawn(move || {
        std::process::Command::new(ctl)
            .args(["switchover", "--cluster", "customs", "--to", "ndc"])
            .env("TRIAD_CONFIG", config)
            .output()
    });
    wait_for("the first failed promote", Duration::from_secs(20), || async {
        let (_, steps) = d.newest_workflow("switchover").ok()?;
        steps.iter().any(|(n, _)| n == "promote-retry").then_some(())
    })
    .await?;
    Ok(switchover)
}

/// Waits until the switchover's rollback waits for ndc's agent; returns the step's note.
async fn rollback_waiting_for_ndc(d: &Deployment) -> Result<String> {
    wait_for("the rollback waiting for ndc's agent", Duration::from_secs(60), || async {
        let (w, steps) = d.newest_workflow("switchover").ok()?;
        let waiting = steps.iter().find(|(n, _)| n == "waiting-for-target")?.1.clone();
        (w["outcome"] == "under way").then_some(waiting)
    })
    .await
}
