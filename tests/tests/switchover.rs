//! Planned switchover on real PostgreSQL, under continuous writes: dc → ndc and back, with every
//! acknowledged write still there afterwards and never two writable members at once.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{ensure, Result};
use triad_tests::workload::Workload;
use triad_tests::{wait_for, Deployment};

const MEMBERS: [&str; 3] = ["dc", "ndc", "dr"];

async fn switch(d: &Deployment, to: &str, epoch: u64, sync: &str) -> Result<()> {
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", to])?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        d.diagnose(&["controller-1", "controller-2", "controller-3", "agent-dc", "agent-ndc"])?;
    }
    ensure!(out.status.success(), "switchover to {to}: {}{text}", String::from_utf8_lossy(&out.stderr));
    ensure!(text.contains(&format!("epoch {epoch}")) && text.contains("completed"), "{text}");
    eprintln!("switchover to {to}:\n{text}");
    wait_for(&format!("{to} primary at epoch {epoch}, {sync} synchronous"), Duration::from_secs(20), || async {
        let v = d.status().await.ok()?;
        let c = v.cluster_state.get("customs")?;
        let m = &v.clusters["customs"];
        let role = |n: &str| m.iter().find(|x| x.name == n).map(|x| x.role.clone()).unwrap_or_default();
        let tl = |n: &str| m.iter().find(|x| x.name == n).map(|x| x.timeline).unwrap_or_default();
        // Each promotion starts a new timeline: 2 after the first switchover, 3 after the second.
        (c.epoch == epoch
            && c.primary == to
            && c.synchronous == [sync]
            && role(to) == "primary"
            && role(sync) == "standby"
            && tl(to) == epoch as u32
            && tl(sync) == epoch as u32
            // dr follows the new primary directly, asynchronously.
            && m.iter().any(|x| x.name == "dr" && x.sync_state == "async"))
        .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn switchover_and_back_under_writes_loses_nothing() -> Result<()> {
    let mut d = Deployment::with_postgres().await?;
    // A role-change hook on every agent records what it was told.
    let hooks = d.dir().join("hooks");
    std::fs::create_dir_all(&hooks)?;
    for site in MEMBERS {
        let path = d.plan.agent_config_path(&format!("agent-{site}"));
        let mut text = std::fs::read_to_string(&path)?;
        let script = format!("env | grep ^TRIAD_ | sort > {}/hook-$TRIAD_MEMBER-$TRIAD_EPOCH.env", hooks.display());
        // Into the `[hooks]` table the deployment writes (its `dir`): a second one would not parse.
        let hook = format!("[hooks]\non_role_change = [\"/bin/sh\", \"-c\", {script:?}]\n");
        anyhow::ensure!(text.contains("\n[hooks]\n"), "the agent config has a [hooks] table: {text}");
        text = text.replacen("\n[hooks]\n", &format!("\n{hook}"), 1);
        std::fs::write(&path, text)?;
    }
    d.start_all().await?;
    wait_for("the cluster adopted", Duration::from_secs(30), || async {
        let v = d.status().await.ok()?;
        (v.cluster_state.get("customs")?.epoch == 1).then_some(())
    })
    .await?;
    let pg = d.pg.as_ref().unwrap();
    let conninfos = d.conninfos()?;

    // A refused switchover changes nothing and says why.
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "dc"])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already the primary"));
    let out = d.triadctl(&["switchover", "--cluster", "customs", "--to", "nowhere"])?;
    ensure!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a member"));

    // Writers find the primary: `triadctl endpoint`, and `--watch` for every change.
    let dc_port = pg.member("dc")?.port;
    let out = d.triadctl(&["endpoint", "--cluster", "customs", "-o", "json"])?;
    let e: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        e["primary"] == "dc" && e["endpoint"].as_str().is_some_and(|s| s.contains(&format!("port={dc_port}"))),
        "{e}"
    );
    let watch_out = d.dir().join("endpoint-watch.out");
    let mut watcher = std::process::Command::new(triad_tests::bin("triadctl"))
        .args(["endpoint", "--cluster", "customs", "--watch"])
        .env("TRIAD_CONFIG", d.plan.ctl_config_path())
        .stdout(std::fs::File::create(&watch_out)?)
        .spawn()?;

    let load = Workload::start(conninfos.clone(), 20).await?;

    switch(&d, "ndc", 2, "dc").await?;
    load.more("writes on ndc", 20, Duration::from_secs(10)).await?;
    switch(&d, "dc", 3, "ndc").await?;
    load.more("writes on dc again", 20, Duration::from_secs(10)).await?;

    let acked = load.finish().await?;

    // Every acknowledged write is on the primary, and on its synchronous standby.
    for member in ["dc", "ndc"] {
        let client = d.pg_connect(member).await?;
        let have: BTreeSet<i64> =
            wait_for(&format!("{member} to hold every acknowledged write"), Duration::from_secs(10), || async {
                let rows = client.query("SELECT id FROM orders", &[]).await.ok()?;
                let have: BTreeSet<i64> = rows.iter().map(|r| r.get(0)).collect();
                acked.iter().all(|id| have.contains(id)).then_some(have)
            })
            .await?;
        ensure!(have.len() >= acked.len());
    }
    eprintln!("{} acknowledged writes, none lost", acked.len());

    // The watcher saw dc, then ndc, then dc again; it stops cleanly on SIGTERM.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(watcher.id() as i32), nix::sys::signal::Signal::SIGTERM)?;
    let status = watcher.wait()?;
    ensure!(status.success(), "endpoint --watch exit {status}");
    let lines: Vec<String> = std::fs::read_to_string(&watch_out)?.lines().map(String::from).collect();
    let primaries: Vec<&str> = lines.iter().filter_map(|l| l.split("primary ").nth(1)?.split(' ').next()).collect();
    ensure!(primaries == ["dc", "ndc", "dc"], "endpoint --watch printed {lines:?}");
    // Every agent ran its hook for each new epoch, with the new primary in its environment.
    for member in MEMBERS {
        let env2 = std::fs::read_to_string(hooks.join(format!("hook-{member}-2.env")))?;
        ensure!(env2.contains("TRIAD_PRIMARY=ndc") && env2.contains("TRIAD_EPOCH=2"), "{member}: {env2}");
        let env3 = std::fs::read_to_string(hooks.join(format!("hook-{member}-3.env")))?;
        ensure!(env3.contains("TRIAD_PRIMARY=dc") && env3.contains(&format!("port={dc_port}")), "{member}: {env3}");
    }

    // The history: two completed switchovers with their steps, audited with who asked.
    let h = d.history()?;
    let history = serde_json::Value::Array(h.clone());
    ensure!(h.len() == 2, "{history}");
    ensure!(
        h.iter().all(|w| w["outcome"] == "completed"
            && w["requested_by"] == "admin"
            && w["steps"].as_array().is_some_and(|s| s.len() >= 5)),
        "{history}"
    );
    ensure!(h[0]["to"] == "dc" && h[1]["to"] == "ndc", "newest first: {history}");
    // Each measured its write outage by the canary: the old primary's last row to the new one's first.
    let canary = |w: &serde_json::Value| -> Option<String> {
        let steps = w["steps"].as_array()?;
        steps.iter().find(|s| s[0] == "canary").and_then(|s| s[2].as_str().map(String::from))
    };
    ensure!(h.iter().all(|w| canary(w).is_some_and(|n| n.starts_with("write outage about "))), "{history}");
    let leader = d.wait_leader(&[1, 2, 3], Duration::from_secs(5)).await?;
    let http = d.plan.controllers.iter().find(|c| c.id == leader).unwrap().http_addr.clone();
    let (_, metrics) = Deployment::http_get(&http, "/metrics").await?;
    ensure!(metrics.contains("triad_workflows_total{kind=\"switchover\",outcome=\"completed\"} 2"), "workflow metrics");
    let audit = String::from_utf8_lossy(&d.triadctl(&["audit", "--limit", "200"])?.stdout).into_owned();
    ensure!(audit.contains("start switchover of customs from dc to ndc: ok"), "{audit}");
    ensure!(audit.contains("switch primary of customs to dc"), "{audit}");
    Ok(())
}
