//! Three real controllers: election, replication, `kill -9` of the leader, a full restart.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment};

const ALL: [u64; 3] = [1, 2, 3];

async fn users_on(d: &Deployment, id: u64) -> Option<BTreeSet<String>> {
    Some(d.state_of(id).await?.users.into_iter().map(|u| u.name).collect())
}

/// Waits until every controller in `ids` holds every user in `want`.
async fn wait_users(d: &Deployment, ids: &[u64], want: &BTreeSet<String>) -> Result<()> {
    for id in ids {
        wait_for(&format!("controller {id} to hold {} users", want.len()), Duration::from_secs(20), || async {
            let have = users_on(d, *id).await?;
            want.is_subset(&have).then_some(())
        })
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn three_controllers_elect_a_leader_and_a_commit_reaches_all() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let leader = d.wait_leader(&ALL, Duration::from_secs(30)).await?;
    ensure!(ALL.contains(&leader));
    // Write through a follower: it forwards to the leader.
    let follower = ALL.iter().copied().find(|id| *id != leader).unwrap();
    let mut c = d.control(follower).await?;
    let r = c.put_user(triad_proto::v1::PutUserRequest { name: "bob".into(), role: "noc".into() }).await?.into_inner();
    ensure!(r.log_index > 0, "a committed write has a log index");
    let want = BTreeSet::from(["bob".to_string()]);
    wait_users(&d, &ALL, &want).await?;
    // The seed from the configuration is applied everywhere too.
    for id in ALL {
        let s = d.state_of(id).await.unwrap();
        ensure!(
            s.clusters.iter().any(|c| c.name == "customs" && c.members.len() == 3),
            "controller {id} lacks the cluster"
        );
        ensure!(s.controllers.len() == 3 && s.sites.len() == 3);
    }
    // The write is in the replicated audit log, with who did it.
    let audit = d.control(leader).await?.audit(triad_proto::v1::AuditRequest { limit: 20 }).await?.into_inner();
    ensure!(
        audit
            .entries
            .iter()
            .any(|e| e.actor == "admin" && e.role == "admin" && e.action.contains("put user bob role=noc: ok")),
        "audit: {:?}",
        audit.entries
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_a_new_one_takes_over_nothing_is_lost_and_it_catches_up() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    let old = d.wait_leader(&ALL, Duration::from_secs(30)).await?;
    let mut want = BTreeSet::new();
    for i in 0..20 {
        let name = format!("before-{i}");
        d.put_user(&name, "soc").await?;
        want.insert(name);
    }
    d.kill(&format!("controller-{old}"))?;
    let killed_at = Instant::now();
    let rest: Vec<u64> = ALL.iter().copied().filter(|id| *id != old).collect();
    let new = d.wait_leader(&rest, Duration::from_secs(20)).await?;
    let took = killed_at.elapsed();
    ensure!(new != old);
    eprintln!("new leader {new} after {took:?}");
    // Nothing committed before the kill is lost, and the cluster keeps committing.
    wait_users(&d, &rest, &want).await?;
    for i in 0..10 {
        let name = format!("after-{i}");
        d.put_user(&name, "auditor").await?;
        want.insert(name);
    }
    // The killed controller restarts from its own disk and catches up.
    d.start_controller(old)?;
    wait_users(&d, &[old], &want).await?;
    let leader_applied = d.node_status(new).await.unwrap().last_applied;
    wait_for("the restarted controller to apply as far as the leader", Duration::from_secs(20), || async {
        (d.node_status(old).await?.last_applied >= leader_applied).then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn all_three_killed_and_restarted_keep_their_state() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    d.wait_leader(&ALL, Duration::from_secs(30)).await?;
    let mut want = BTreeSet::new();
    for i in 0..30 {
        let name = format!("u{i}");
        d.put_user(&name, "noc").await?;
        want.insert(name);
    }
    let audit_before =
        d.control(1).await?.audit(triad_proto::v1::AuditRequest { limit: 1000 }).await?.into_inner().entries;
    for id in ALL {
        d.kill(&format!("controller-{id}"))?;
    }
    d.start_controllers()?;
    d.wait_leader(&ALL, Duration::from_secs(30)).await?;
    wait_users(&d, &ALL, &want).await?;
    // The audit history survived too, entry for entry.
    let audit_after =
        d.control(1).await?.audit(triad_proto::v1::AuditRequest { limit: 1000 }).await?.into_inner().entries;
    for e in &audit_before {
        ensure!(audit_after.iter().any(|a| a.seq == e.seq && a.action == e.action), "audit entry {} lost", e.seq);
    }
    Ok(())
}
