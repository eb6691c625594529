//! Snapshots: a follower that missed more than the log keeps catches up by installing a snapshot
//! streamed from the leader (state and audit history), and every node restarts from its own.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use triad_proto::v1::AuditRequest;
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_follower_installs_a_snapshot_and_restarts_from_it() -> Result<()> {
    let mut d = Deployment::new()?;
    // Snapshot every 100 entries, keeping only 100 behind: easy to fall off the log.
    d.tune_controllers(|c| c.raft.snapshot_every_entries = 100)?;
    d.start_controllers()?;
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    let lagger = [1, 2, 3].into_iter().find(|id| *id != leader).unwrap();
    d.kill(&format!("controller-{lagger}"))?;
    let mut want = BTreeSet::new();
    for i in 0..400 {
        let name = format!("u{i}");
        d.put_user(&name, "noc").await?;
        want.insert(name);
    }
    let snapshots = d.dir().join(format!("data/controller-{leader}/snapshots"));
    ensure!(
        std::fs::read_dir(&snapshots)?.flatten().any(|e| e.file_name().to_string_lossy().starts_with("snapshot-")),
        "the leader wrote a snapshot file"
    );
    d.start_controller(lagger)?;
    wait_for("the lagging follower to hold every user", Duration::from_secs(30), || async {
        let s = d.state_of(lagger).await?;
        let have: BTreeSet<String> = s.users.into_iter().map(|u| u.name).collect();
        want.is_subset(&have).then_some(())
    })
    .await?;
    let follower_snaps = d.dir().join(format!("data/controller-{lagger}/snapshots"));
    ensure!(
        std::fs::read_dir(&follower_snaps)?.flatten().any(|e| e.file_name().to_string_lossy().starts_with("snapshot-")),
        "the follower caught up through a snapshot"
    );
    // The audit history came with it, entry for entry.
    let on_leader = d.control(leader).await?.audit(AuditRequest { limit: 10_000 }).await?.into_inner().entries;
    wait_for("the follower's audit history", Duration::from_secs(10), || async {
        let mut c = d.control(lagger).await.ok()?;
        let mine = c.audit(AuditRequest { limit: 10_000 }).await.ok()?.into_inner().entries;
        on_leader.iter().all(|e| mine.iter().any(|m| m.seq == e.seq && m.action == e.action)).then_some(())
    })
    .await?;
    ensure!(on_leader.len() >= 400, "the audit log holds every write ({})", on_leader.len());

    // Every node restarts from its snapshot plus the log after it.
    for id in [1, 2, 3] {
        d.kill(&format!("controller-{id}"))?;
    }
    d.start_controllers()?;
    d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    for id in [1, 2, 3] {
        wait_for(&format!("controller {id} restored"), Duration::from_secs(20), || async {
            let have: BTreeSet<String> = d.state_of(id).await?.users.into_iter().map(|u| u.name).collect();
            want.is_subset(&have).then_some(())
        })
        .await?;
    }
    Ok(())
}
