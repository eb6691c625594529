//! Membership at run time: a controller joins as a learner, catches up and votes; the leader
//! removes itself, hands over, and no longer counts toward the quorum. A third voter in one city
//! is refused (DESIGN.md point 10); a witness at a new site in another city is recorded with it.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment};

#[tokio::test(flavor = "multi_thread")]
async fn added_controller_catches_up_and_votes_removed_one_leaves_the_quorum() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_controllers()?;
    d.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await?;
    for i in 0..10 {
        d.put_user(&format!("early-{i}"), "noc").await?;
    }

    // Controller 4 joins through triadctl, the way an operator adds one: in dc it would be the
    // third voter in dc's and ndc's city, which is refused before anything changes.
    let joiner = d.plan_joiner(4, "ctg", "chittagong")?;
    d.plan.controllers.push(joiner.clone());
    let add = |d: &Deployment, site: &'static str, city: &'static str| {
        let mut args = vec!["cluster", "add", "--id", "4", "--site", site];
        if !city.is_empty() {
            args.extend(["--city", city]);
        }
        args.extend(["--grpc-addr", &joiner.grpc_addr, "--http-addr", &joiner.http_addr]);
        d.triadctl(&args)
    };
    let out = add(&d, "dc", "")?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success() && err.contains("city `dhaka` would hold 3 of 4 voters"), "{err}");
    let out = add(&d, "ctg", "")?;
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(!out.status.success() && err.contains("give its --city"), "{err}");
    ensure!(d.node_status(1).await.is_some_and(|s| s.learners.is_empty()), "a refused add left a learner");
    d.start_controller(4)?;
    let out = add(&d, "ctg", "chittagong")?;
    ensure!(out.status.success(), "cluster add failed: {}", String::from_utf8_lossy(&out.stderr));
    let v = d.status().await?;
    let c4 = v.controllers.iter().find(|c| c.id == 4).cloned();
    ensure!(c4.as_ref().is_some_and(|c| c.city == "chittagong" && c.witness), "controller 4: {c4:?}");
    let s4 = wait_for("controller 4 to be a voter with the data", Duration::from_secs(20), || async {
        let st = d.node_status(4).await?;
        let users = d.state_of(4).await?.users.len();
        (st.voters.contains(&4) && users >= 10).then_some(st)
    })
    .await?;
    ensure!(s4.voters.len() == 4, "voters: {:?}", s4.voters);
    // The record follows on every controller (controller 4 applies it a moment after the leader).
    wait_for("controller 4 recorded as a voter", Duration::from_secs(10), || async {
        let rec = d.state_of(4).await?.controllers.into_iter().find(|c| c.id == 4)?;
        rec.voter.then_some(())
    })
    .await?;

    // Agents configured before controller 4 existed learn of it and open a stream to it, so that
    // it hears them if it becomes the leader.
    for site in ["dc", "ndc", "dr"] {
        d.start_agent(site)?;
    }
    wait_for("every agent streaming to controller 4", Duration::from_secs(20), || async {
        (d.node_status(4).await?.connected_agents == 3).then_some(())
    })
    .await?;

    // Remove the leader itself, the hard case: it must hand over and its removal must still be
    // recorded (by the next leader) rather than hang on an entry it can no longer commit.
    let removed = d.wait_leader(&[1, 2, 3, 4], Duration::from_secs(10)).await?;
    let id = removed.to_string();
    let out = d.triadctl(&["cluster", "remove", "--id", &id])?;
    ensure!(out.status.success(), "cluster remove failed: {}", String::from_utf8_lossy(&out.stderr));
    let rest: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|i| *i != removed).collect();
    wait_for("the removed leader out of the voters", Duration::from_secs(20), || async {
        let st = d.node_status(rest[0]).await?;
        (st.voters == rest).then_some(())
    })
    .await?;
    wait_for("its record deleted", Duration::from_secs(20), || async {
        (!d.state_of(rest[0]).await?.controllers.iter().any(|c| c.id == removed)).then_some(())
    })
    .await?;

    // With the removed one and one more dead, the two left are a majority of the three voters
    // (they would not be of four): writes still commit, so the removed one no longer counts.
    let other = rest[0];
    let alive: Vec<u64> = rest[1..].to_vec();
    d.kill(&format!("controller-{removed}"))?;
    d.kill(&format!("controller-{other}"))?;
    d.wait_leader(&alive, Duration::from_secs(30)).await?;
    d.put_user("after-removal", "soc").await?;
    wait_for("the write on a surviving controller", Duration::from_secs(10), || async {
        d.state_of(alive[0]).await?.users.iter().any(|u| u.name == "after-removal").then_some(())
    })
    .await?;
    Ok(())
}
