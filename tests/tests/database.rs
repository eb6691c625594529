//! Database members watched by their agents: roles, positions, lag and synchronous state reach
//! `triadctl status`, the agents' metrics, and the `/primary` and `/replica` health endpoints.

use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::{wait_for, Deployment, LocalDb};

#[tokio::test(flavor = "multi_thread")]
async fn simulated_members_are_observed_and_routed() -> Result<()> {
    let mut d = Deployment::with_db(LocalDb::Simulated)?;
    // dr's agent finds an epoch file it cannot read: fenced until the leader confirms the epoch.
    let dr_state = d.dir().join("data/agent-dr");
    std::fs::create_dir_all(&dr_state)?;
    std::fs::write(dr_state.join("epoch"), "triad-epoch v1\nepoch 3\ncheck 4\n")?;
    d.start_all().await?;
    let v = wait_for("three observed members", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let m = v.clusters.get("customs")?;
        (m.len() == 3 && m.iter().all(|m| m.healthy && m.driver == "simulated")).then_some(v)
    })
    .await?;
    let members = &v.clusters["customs"];
    let role = |n: &str| members.iter().find(|m| m.name == n).map(|m| m.role.clone()).unwrap_or_default();
    ensure!(role("dc") == "primary" && role("ndc") == "standby" && role("dr") == "standby", "{members:?}");
    ensure!(members.iter().all(|m| m.lag_bytes.is_some()), "lag is known for every member");
    wait_for("the simulated cluster adopted", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.epoch == 1 && c.primary == "dc").then_some(())
    })
    .await?;
    // The leader's target state reaches the agents; each persists epoch 1 before accepting it,
    // dr too: its unreadable epoch file is replaced by the epoch the leader read after a quorum
    // round (the target state says so). Only the primary writes the canary.
    wait_for("agents at epoch 1, dr's epoch confirmed, the canary written on dc", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let m = &v.clusters["customs"];
        let get = |n: &str| m.iter().find(|x| x.name == n);
        let ok = get("dc")?.agent_epoch == Some(1)
            && get("ndc")?.agent_epoch == Some(1)
            && get("dr")?.agent_epoch == Some(1)
            && get("dc")?.canary_seq > 0;
        ok.then_some(())
    })
    .await?;
    let epoch_file = std::fs::read_to_string(d.dir().join("data/agent-dc/epoch"))?;
    ensure!(epoch_file.contains("epoch 1"), "{epoch_file}");
    let dr_file = std::fs::read_to_string(dr_state.join("epoch"))?;
    ensure!(dr_file.contains("epoch 1\ncheck 1"), "dr's file written again: {dr_file}");
    let table = d.triadctl(&["status"])?;
    let table = String::from_utf8_lossy(&table.stdout);
    ensure!(table.contains("primary") && table.contains("standby"), "{table}");

    // The health endpoints route writers: only dc answers /primary.
    for a in &d.plan.agents {
        let (p, _) = Deployment::http_get(&a.http_addr, "/primary").await?;
        let (r, _) = Deployment::http_get(&a.http_addr, "/replica").await?;
        if a.site == "dc" {
            ensure!(p == 200 && r == 503, "dc: /primary {p}, /replica {r}");
        } else {
            ensure!(p == 503 && r == 200, "{}: /primary {p}, /replica {r}", a.site);
        }
        let (_, metrics) = Deployment::http_get(&a.http_addr, "/metrics").await?;
        ensure!(metrics.contains("triad_db_up{cluster=\"customs\",member=\""), "db metrics on {}", a.name);
    }

    // A member whose agent stops is no longer shown as healthy.
    d.signal("agent-dr", nix::sys::signal::Signal::SIGTERM)?;
    wait_for("dr shown as unknown", Duration::from_secs(15), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().any(|m| m.name == "dr" && !m.healthy && m.role == "unknown").then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn real_postgres_members_are_observed_with_their_replication_state() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    d.start_all().await?;
    let v = wait_for("dc primary, ndc synchronous, dr asynchronous", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        let m = v.clusters.get("customs")?;
        let get = |n: &str| m.iter().find(|x| x.name == n);
        let ok = get("dc")?.role == "primary"
            && get("ndc")?.role == "standby"
            && get("ndc")?.sync_state == "sync"
            && get("dr")?.role == "standby"
            && get("dr")?.sync_state == "async"
            && m.iter().all(|x| x.healthy && x.driver == "postgres" && x.timeline == 1);
        ok.then_some(v)
    })
    .await?;
    ensure!(v.clusters["customs"].iter().all(|m| m.position > 0));
    // Positions written as PostgreSQL writes LSNs (the driver says its positions are bytes), and
    // each standby's lag known in time as well as in bytes.
    for m in &v.clusters["customs"] {
        let lsn = format!("{:X}/{:X}", m.position >> 32, m.position & 0xffff_ffff);
        ensure!(m.written_position == lsn, "{}: position {:?}, LSN {lsn}", m.name, m.written_position);
        ensure!(
            m.lag_seconds.is_some() && m.lag_bytes.is_some(),
            "{}: lag {:?} / {:?}",
            m.name,
            m.lag_seconds,
            m.lag_bytes
        );
    }

    // Writes on the primary reach both standbys, and the positions follow.
    let dc = d.pg_connect("dc").await;
    if dc.is_err() {
        d.diagnose(&["agent-dc", "controller-1", "controller-2", "controller-3"])?;
    }
    let dc = dc?;
    let before = v.clusters["customs"].iter().find(|m| m.name == "dc").unwrap().position;
    for _ in 0..20 {
        dc.execute("INSERT INTO orders (note) VALUES ('test')", &[]).await?;
    }
    let count: i64 = dc.query_one("SELECT count(*) FROM orders", &[]).await?.get(0);
    for standby in ["ndc", "dr"] {
        let c = d.pg_connect(standby).await?;
        wait_for(&format!("{standby} to replay the rows"), Duration::from_secs(10), || async {
            let n: i64 = c.query_one("SELECT count(*) FROM orders", &[]).await.ok()?.get(0);
            (n == count).then_some(())
        })
        .await?;
    }
    wait_for("positions past the writes, lag back to zero", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let m = &v.clusters["customs"];
        (m.iter().all(|x| x.position > before) && m.iter().all(|x| x.lag_bytes == Some(0))).then_some(())
    })
    .await?;
    let dc_http = d.plan.agents.iter().find(|a| a.site == "dc").unwrap().http_addr.clone();
    let ndc_http = d.plan.agents.iter().find(|a| a.site == "ndc").unwrap().http_addr.clone();
    ensure!(Deployment::http_get(&dc_http, "/primary").await?.0 == 200);
    ensure!(Deployment::http_get(&ndc_http, "/primary").await?.0 == 503);
    ensure!(Deployment::http_get(&ndc_http, "/replica").await?.0 == 200);

    // The running cluster is adopted: its primary and synchronous standby are committed at
    // epoch 1, and the synchronous standby is the one that vouches.
    wait_for("the cluster adopted at epoch 1", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        (c.epoch == 1 && c.primary == "dc" && c.synchronous == ["ndc"] && c.vouch == ["ndc"]).then_some(())
    })
    .await?;

    // Every agent persisted epoch 1; the primary's canary reaches both standbys through
    // replication, and its age there is the replication delay as the database sees it.
    let first = wait_for("the canary on every member", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        let m = v.clusters.get("customs")?.clone();
        m.iter()
            .all(|x| x.agent_epoch == Some(1) && x.canary_seq > 0 && (0.0..2.0).contains(&x.canary_age_seconds))
            .then_some(m.iter().map(|x| x.canary_seq).min().unwrap_or(0))
    })
    .await?;
    wait_for("the canary advancing", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().all(|x| x.canary_seq > first + 5).then_some(())
    })
    .await?;
    let dr = d.pg_connect("dr").await?;
    let row = dr.query_one("SELECT epoch, origin FROM triad.canary WHERE id = 1", &[]).await?;
    ensure!(row.get::<_, i64>(0) == 1 && row.get::<_, String>(1) == "dc");

    // Maintenance mode, through triadctl, recorded and audited. It turns automatic failover off,
    // so it is a request until a second person approves it.
    let out = d.triadctl(&["pause", "--cluster", "customs", "--reason", "patching ndc"])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success() && said.contains("a second person"), "{said}{}", String::from_utf8_lossy(&out.stderr));
    let id = said.split_whitespace().nth(1).map(|s| s.trim_end_matches(':').to_string()).unwrap_or_default();
    ensure!(!d.status().await?.cluster_state["customs"].paused, "paused before anyone approved");
    let out = d.triadctl(&["approve", &id])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("a second person"));
    let out = d.triadctl_as("bob", "noc", &["approve", &id])?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success() && said.contains("automatic failover off"), "{said}");
    // Status may come from a follower a heartbeat behind: wait for it to apply the change.
    wait_for("paused", Duration::from_secs(5), || async {
        d.status().await.ok()?.cluster_state.get("customs")?.paused.then_some(())
    })
    .await?;
    let table = String::from_utf8_lossy(&d.triadctl(&["status"])?.stdout).into_owned();
    ensure!(table.contains("PAUSED") && table.contains("epoch 1"), "{table}");
    let out = d.triadctl(&["pause", "--cluster", "nosuch"])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    let out = d.triadctl(&["resume", "--cluster", "customs"])?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("resumed", Duration::from_secs(5), || async {
        (!d.status().await.ok()?.cluster_state.get("customs")?.paused).then_some(())
    })
    .await?;
    let audit = String::from_utf8_lossy(&d.triadctl(&["audit"])?.stdout).into_owned();
    ensure!(
        audit.contains("request pause of customs: ok")
            && audit.contains(&format!("approve request {id}: ok"))
            && audit.contains("resume cluster customs")
            && audit.contains("adopt cluster customs"),
        "{audit}"
    );

    // The primary stopped: its agent reports it down, and /primary stops routing to it.
    d.pg.as_ref().unwrap().stop("dc", "immediate")?;
    wait_for("dc reported down", Duration::from_secs(10), || async {
        let v = d.status().await.ok()?;
        v.clusters["customs"].iter().any(|m| m.name == "dc" && m.role == "down" && !m.healthy).then_some(())
    })
    .await?;
    ensure!(Deployment::http_get(&dc_http, "/primary").await?.0 == 503);
    Ok(())
}
