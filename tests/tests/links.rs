//! Links between the sites (issue 18), on real processes: agents probe each other over a real
//! veth between network namespaces, and through a userspace relay that makes the path slow or
//! lossy (this kernel has no netem).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::Value;
use triad_controller::state::links::{LinkKind, LinkThresholds};
use triad_tests::links::link;
use triad_tests::relay::{Impairment, Relay};
use triad_tests::{wait_for, Deployment, LocalDb};

const DWDM: &str = "dwdm-dc-ndc";

/// Quicker than the defaults, so that the test does not wait out production's hysteresis.
fn quick() -> LinkThresholds {
    LinkThresholds { better_after_ms: 2_000, ..LinkThresholds::default() }
}

/// The open alerts Triad raised itself, as `triadctl alerts list -o json` prints them.
fn triad_alerts(d: &Deployment, status: &str) -> Result<Vec<serde_json::Value>> {
    let out = d.triadctl(&["alerts", "list", "--source", "triad", "--status", status, "-o", "json"])?;
    ensure!(out.status.success(), "alerts list: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_dwdm_link_goes_down_refuses_switchovers_and_comes_back() -> Result<()> {
    let mut d = Deployment::in_namespaces(LocalDb::Simulated)?;
    d.add_direct_link("dc", "ndc")?;
    d.set_links(vec![link(DWDM, "dc", "ndc", LinkKind::Dwdm, quick())])?;
    d.start_all().await?;
    let up = d.wait_link(DWDM, "up", Duration::from_secs(60)).await?;
    ensure!(up.ends.iter().all(|e| e.reporting && e.rtt_ms < 20.0), "both ends probe: {:?}", up.ends);
    wait_for("customs adopted", Duration::from_secs(60), || async {
        d.status().await.ok()?.cluster_state.get("customs").filter(|c| c.epoch > 0).map(|_| ())
    })
    .await?;

    // One end of the circuit goes down: the link is recorded down within its configured time
    // (1.5 s of silence, then 1 s held), with one alert.
    let cut = Instant::now();
    d.cut_direct_link("ndc", true)?;
    let down = d.wait_link(DWDM, "down", Duration::from_secs(20)).await?;
    println!("link recorded down {} ms after the cut: {}", cut.elapsed().as_millis(), down.reason);
    ensure!(down.reason.contains("no probe answered"), "why it is down: {}", down.reason);
    let open = wait_for("the link's alert", Duration::from_secs(10), || async {
        triad_alerts(&d, "active").ok().filter(|a| !a.is_empty())
    })
    .await?;
    ensure!(open.len() == 1, "one alert for the link, not {}: {open:?}", open.len());
    ensure!(open[0]["severity"] == "critical", "it carries the customs replication: {:?}", open[0]);
    ensure!(open[0]["title"].as_str().is_some_and(|t| t.contains(DWDM)), "{:?}", open[0]);

    // Status says so next to the cluster, and a switchover across it is refused with why.
    let status = d.triadctl(&["status"])?;
    let text = String::from_utf8_lossy(&status.stdout);
    ensure!(text.contains(&format!("!! link {DWDM}")) && text.contains("down"), "status:\n{text}");
    let switch = d.triadctl(&["switchover", "--cluster", "customs", "--to", "ndc"])?;
    let said = String::from_utf8_lossy(&switch.stderr).to_string() + &String::from_utf8_lossy(&switch.stdout);
    ensure!(!switch.status.success(), "a switchover across a down link must be refused: {said}");
    ensure!(said.contains(DWDM) && said.contains("down"), "the refusal names the link: {said}");
    let primary = d.status().await?.cluster_state["customs"].primary.clone();
    ensure!(primary == "dc", "nothing moved: the primary is {primary}");

    // Back up: recovered after it held up for better_after_ms; the alert resolved, none new.
    d.cut_direct_link("ndc", false)?;
    d.wait_link(DWDM, "up", Duration::from_secs(30)).await?;
    wait_for("the link's alert resolved", Duration::from_secs(10), || async {
        triad_alerts(&d, "active").ok().filter(|a| a.is_empty())
    })
    .await?;
    let resolved = triad_alerts(&d, "resolved")?;
    ensure!(resolved.len() == 1, "the same alert was resolved, none other raised: {resolved:?}");
    let json = d.links_json()?;
    ensure!(json.iter().any(|l| l["name"] == DWDM && l["state"] == "up"), "links -o json: {json:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_or_lossy_path_is_degraded_and_a_clean_one_recovers() -> Result<()> {
    let mut d = Deployment::new()?;
    // agent-dc probes agent-ndc through the relay; agent-ndc probes agent-dc directly.
    let ndc = d.probe_addr("ndc")?;
    let relay = Relay::start("127.0.0.1:0".parse()?, ndc.parse()?).await?;
    d.set_probe_addrs("ndc", &ndc, &relay.addr.to_string())?;
    d.set_links(vec![link(DWDM, "dc", "ndc", LinkKind::Dwdm, quick())])?;
    d.start_all().await?;
    d.wait_link(DWDM, "up", Duration::from_secs(60)).await?;

    // 30 ms each way: a 60 ms round trip against a 20 ms threshold.
    relay.set(Impairment { delay: Duration::from_millis(30), loss: 0.0 });
    let slow = d.wait_link(DWDM, "degraded", Duration::from_secs(30)).await?;
    ensure!(slow.reason.contains("rtt"), "degraded by its round trip: {}", slow.reason);
    let from_dc = wait_for("a round trip near 60 ms from dc", Duration::from_secs(20), || async {
        let links = d.links().await.ok()?;
        let end = links.into_iter().find(|l| l.name == DWDM)?.ends.into_iter().find(|e| e.site == "dc")?;
        (end.rtt_ms > 55.0).then_some(end.rtt_ms)
    })
    .await?;
    ensure!(from_dc < 120.0, "the probes measure the delay, not more: {from_dc:.1} ms");

    // No delay, 10% of datagrams lost each way (about 19% of round trips): degraded by loss,
    // not down (50%). The recorded reason stays the first one; the assessment says what now.
    relay.set(Impairment { delay: Duration::ZERO, loss: 0.1 });
    wait_for("assessed degraded by loss alone", Duration::from_secs(40), || async {
        let l = d.links().await.ok()?.into_iter().find(|l| l.name == DWDM)?;
        let now = &l.assessed_reason;
        (l.state == "degraded" && now.contains("loss") && !now.contains("rtt")).then_some(())
    })
    .await?;

    // A clean path again: up once it has held.
    relay.set(Impairment::default());
    d.wait_link(DWDM, "up", Duration::from_secs(40)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snmp_polls_a_real_snmpd_over_v2c_and_v3_and_reports_rates() -> Result<()> {
    use triad_tests::snmpd::{self, Snmpd};
    let mut d = Deployment::new()?;
    let agent = Snmpd::start(&d.dir().join("snmpd")).await?;
    d.set_links(vec![link(DWDM, "dc", "ndc", LinkKind::Dwdm, quick())])?;
    // dc polls the loopback interface by name over v2c; ndc by index over v3 (SHA, AES); dr
    // with a wrong community, which must say so and count for nothing against the link.
    let target = &agent.addr;
    d.append_agent_config(
        "dc",
        &format!(
            "\n[[snmp]]\nlink = \"{DWDM}\"\ntarget = \"{target}\"\nif_name = \"lo\"\ncommunity = \"{}\"\ninterval_ms = 1000\n",
            snmpd::COMMUNITY
        ),
    )?;
    d.append_agent_config(
        "ndc",
        &format!(
            "\n[[snmp]]\nlink = \"{DWDM}\"\ntarget = \"{target}\"\nif_index = 1\nversion = \"v3\"\nuser = \"{}\"\n\
             auth_protocol = \"sha\"\nauth_password = \"{}\"\nprivacy_protocol = \"aes\"\nprivacy_password = \"{}\"\n\
             interval_ms = 1000\n",
            snmpd::V3_USER,
            snmpd::V3_AUTH_PASSWORD,
            snmpd::V3_PRIV_PASSWORD
        ),
    )?;
    d.append_agent_config(
        "dr",
        &format!("\n[[snmp]]\nlink = \"{DWDM}\"\ntarget = \"{target}\"\nif_index = 1\ncommunity = \"wrong\"\ninterval_ms = 1000\n"),
    )?;
    d.start_all().await?;
    let json = wait_for("traffic counted by both good pollers", Duration::from_secs(60), || async {
        let links = d.links_json().ok()?;
        let l = links.into_iter().find(|l| l["name"] == DWDM)?;
        let snmp = l["snmp"].as_array()?;
        // Rates reckoned, and the traffic on lo counted (the agent's counters move every few
        // seconds: it caches them).
        let counted = |s: &&Value| s["error"].is_null() && s["in_bps"].as_f64().is_some_and(|v| v > 0.0);
        (snmp.iter().filter(counted).count() == 2).then_some(l)
    })
    .await?;
    let snmp = json["snmp"].as_array().expect("checked");
    for s in snmp.iter().filter(|s| s["error"].is_null()) {
        ensure!(s["if_index"] == 1 && s["oper_up"] == true, "lo is ifIndex 1 and up: {s}");
        ensure!(s["speed_bps"].as_f64().is_some_and(|v| v > 0.0), "ifHighSpeed read: {s}");
        ensure!(s["utilisation"].as_f64().is_some_and(|u| u > 0.0), "utilisation from bits/s and speed: {s}");
    }
    let bad: Vec<_> = snmp.iter().filter(|s| !s["error"].is_null()).collect();
    ensure!(bad.len() == 1, "the wrong community is reported as a failing poll: {snmp:?}");
    ensure!(json["state"] == "up", "a poll that fails is not held against the link: {json}");
    let leader = d.wait_leader(&d.founders(), Duration::from_secs(10)).await?;
    let http = d.plan.controllers.iter().find(|c| c.id == leader).expect("the leader").http_addr.clone();
    let bits = wait_for("the leader's link traffic metric", Duration::from_secs(10), || async {
        let (_, body) = Deployment::http_get(&http, "/metrics").await.ok()?;
        body.lines()
            .filter(|l| l.starts_with("triad_link_bytes_per_second{"))
            .filter(|l| l.contains(&format!("link=\"{DWDM}\"")) && l.contains("direction=\"in\""))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    })
    .await?;
    ensure!(bits > 0.0, "triad_link_bytes_per_second: {bits}");
    // The link, SNMP and asset series pass promtool, on the leader and on a probing agent.
    let agent_http = d.plan.agents.iter().find(|a| a.site == "dc").expect("agent-dc").http_addr.clone();
    for addr in [http, agent_http] {
        let (_, text) = Deployment::http_get(&addr, "/metrics").await?;
        ensure!(text.contains("triad_link_"), "link series on {addr}");
        let file = d.dir().join("metrics.txt");
        std::fs::write(&file, &text)?;
        let check = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file)?)
            .output()?;
        let said = String::from_utf8_lossy(&check.stdout).to_string() + &String::from_utf8_lossy(&check.stderr);
        ensure!(check.status.success(), "promtool check metrics on {addr}: {said}");
    }
    Ok(())
}
