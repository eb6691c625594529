//! The IT asset register (issue 18), on real processes: hosts the agents discover become
//! assets and keep what an operator set; a CSV register imports its good rows, reports its bad
//! ones by line and exports back unchanged; expiry warnings fire once at their lead time; an
//! alert about an asset's host is placed on the asset.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use triad_tests::{wait_for, Deployment, LocalDb};

fn assets(d: &Deployment) -> Result<Vec<Value>> {
    let out = d.triadctl(&["assets", "-o", "json"])?;
    ensure!(out.status.success(), "assets: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn asset(d: &Deployment, tag: &str) -> Option<Value> {
    let out = d.triadctl(&["assets", "show", tag, "-o", "json"]).ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok())?
}

fn ok(out: std::process::Output) -> Result<String> {
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "triadctl failed: {text}");
    Ok(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_discovered_host_is_an_asset_and_keeps_what_an_operator_set() -> Result<()> {
    let mut d = Deployment::in_namespaces(LocalDb::None)?;
    d.start_all().await?;
    let found = wait_for("agent-dc's host in the register", Duration::from_secs(60), || async {
        asset(&d, "host:dc-host").filter(|a| a["discovered"]["agent"] == "agent-dc")
    })
    .await?;
    ensure!(found["site"] == "dc" && found["status"] == "in-use", "{found}");
    let addresses = found["addresses"].as_array().cloned().unwrap_or_default();
    ensure!(!addresses.is_empty(), "its addresses (sysinfo) are recorded: {found}");
    ensure!(assets(&d)?.len() == 3, "one asset per host");

    // The operator says where it really is and whose it is.
    ok(d.triadctl(&["assets", "put", "host:dc-host", "--site", "ndc", "--assignee", "ops-team"])?)?;
    // The host changes (one more address) and its agent reports it again from a restart.
    let added = d.net.as_ref().expect("namespaces").add_host_address("dc", 77)?;
    d.kill("agent-dc")?;
    d.start_agent("dc")?;
    let after = wait_for("the new address in the register", Duration::from_secs(60), || async {
        asset(&d, "host:dc-host").filter(|a| a["addresses"].as_array().is_some_and(|x| x.iter().any(|v| v == &added)))
    })
    .await?;
    ensure!(after["site"] == "ndc" && after["assignee"] == "ops-team", "the operator's fields stay: {after}");
    let set: Vec<&str> = after["operator_set"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(set.contains(&"site") && set.contains(&"assignee"), "marked as the operator's: {set:?}");
    Ok(())
}

const REGISTER: &str = "\
tag,kind,serial,model,vendor,site,office,assignee,status,purchase_date,warranty_end,end_of_life,host,addresses,seats,expires
HW-1,hardware,SN1,R740,Dell,dc,Server room,ops,in-use,2023-01-10,2031-01-10,2032-01-01,db-hw-1,10.9.0.5,,
HW-2,hardware,SN2,R740,Dell,dc,,,in-stock,2023-13-10,,,,,,
SW-1,software,,Triad,Customs,dr,,,in-use,,,,,,,
HW-1,hardware,SN9,R750,Dell,ndc,,,in-use,,,,,,,
HW-3,hardware,SN3,R740,Dell,mars,,,in-use,,,,,,,
HW-4,hardware,SN4
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csv_register_imports_good_rows_reports_bad_ones_and_exports_unchanged() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_all().await?;
    let file = d.dir().join("register.csv");
    std::fs::write(&file, REGISTER)?;
    let out = d.triadctl(&["assets", "import", file.to_str().expect("utf-8 path")])?;
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(!out.status.success(), "rows were rejected: the exit status says so: {said}");
    ensure!(said.contains("imported 2 rows"), "{said}");
    for (line, why) in [(3, "purchase_date"), (5, "already on line 2"), (6, "mars"), (7, "3 fields")] {
        ensure!(
            said.lines().any(|l| l.starts_with(&format!("line {line}:")) && l.contains(why)),
            "line {line} ({why}): {said}"
        );
    }
    let hw1 = asset(&d, "HW-1").expect("HW-1 imported");
    ensure!(hw1["serial"] == "SN1" && hw1["site"] == "dc", "the first HW-1, whole, not the duplicate: {hw1}");
    ensure!(asset(&d, "HW-2").is_none() && asset(&d, "HW-3").is_none() && asset(&d, "HW-4").is_none(), "no bad row in");
    // The export imports back unchanged.
    let first = d.dir().join("export-1.csv");
    ok(d.triadctl(&["assets", "export", first.to_str().expect("utf-8")])?)?;
    let again = d.triadctl(&["assets", "import", first.to_str().expect("utf-8")])?;
    ok(again)?;
    let second = d.dir().join("export-2.csv");
    ok(d.triadctl(&["assets", "export", second.to_str().expect("utf-8")])?)?;
    let (a, b) = (std::fs::read_to_string(&first)?, std::fs::read_to_string(&second)?);
    ensure!(a == b, "the export round-trips:\n{a}\n---\n{b}");
    ensure!(
        a.contains(
            "HW-1,hardware,SN1,R740,Dell,dc,Server room,ops,in-use,2023-01-10,2031-01-10,2032-01-01,db-hw-1,10.9.0.5,,"
        ),
        "{a}"
    );
    // A role that may not change the register is refused, and nothing changes.
    let out = d.triadctl_as("sam", "soc", &["assets", "delete", "HW-1"])?;
    ensure!(!out.status.success() && asset(&d, "HW-1").is_some(), "soc may not delete assets");
    let report = ok(d.triadctl(&["assets", "report"])?)?;
    ensure!(report.contains("hardware") && report.contains("LICENCES"), "{report}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_warnings_fire_once_and_alerts_land_on_their_asset() -> Result<()> {
    let mut d = Deployment::new()?;
    d.start_all().await?;
    let today = triad_controller::state::assets::Day::from_ms(triad_controller::context::now_ms());
    let in_days =
        |n: u64| triad_controller::state::assets::Day::from_ms(triad_controller::context::now_ms() + n * 86_400_000);
    let (ten, five) = (in_days(10).to_string(), in_days(5).to_string());
    // Ten days left: within the 30-day lead time (defaults 90, 30, 7), not the 7-day one.
    ok(d.triadctl(&[
        "assets",
        "put",
        "LIC-1",
        "--kind",
        "licence",
        "--site",
        "dc",
        "--seats",
        "1",
        "--expires",
        &ten,
    ])?)?;
    let warned = |tag: &'static str| {
        let d = &d;
        async move {
            let out = d.triadctl(&["alerts", "list", "--source", "triad", "--text", tag, "-o", "json"]).ok()?;
            let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
            (!list.is_empty()).then_some(list)
        }
    };
    let first = wait_for("the 30-day warning of LIC-1", Duration::from_secs(30), || warned("LIC-1")).await?;
    ensure!(first.len() == 1 && first[0]["severity"] == "medium", "{first:?}");
    // A second licence, warned later: the checks went on, and LIC-1 was not warned again.
    ok(d.triadctl(&["assets", "put", "LIC-2", "--kind", "licence", "--site", "dc", "--expires", &five])?)?;
    let second = wait_for("the 7-day warning of LIC-2", Duration::from_secs(30), || warned("LIC-2")).await?;
    ensure!(second[0]["severity"] == "high", "five days left: {second:?}");
    let lic1 = asset(&d, "LIC-1").expect("LIC-1");
    let keys: Vec<&str> = lic1["warned"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    ensure!(keys == [format!("licence-expiry/30/{ten}")], "once, at its lead time: {keys:?} (today {today})");
    let again = warned("LIC-1").await.unwrap_or_default();
    ensure!(again.len() == 1 && again[0]["count"] == 1, "one alert, one occurrence: {again:?}");
    // Its one seat taken: seats exhausted.
    ok(d.triadctl(&["assets", "seat", "LIC-1", "--host", "db1"])?)?;
    wait_for("seats exhausted", Duration::from_secs(30), || async {
        let lic = asset(&d, "LIC-1")?;
        lic["warned"]
            .as_array()?
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.starts_with("seats-exhausted")))
            .then_some(())
    })
    .await?;

    // An alert about an asset's host is placed on the asset: site, office, owner.
    ok(d.triadctl(&[
        "assets",
        "put",
        "HW-9",
        "--kind",
        "hardware",
        "--site",
        "ndc",
        "--office",
        "Room 2",
        "--assignee",
        "ops",
        "--host",
        "db-hw-9",
    ])?)?;
    let token = d.add_alert_source("monitor", "generic")?;
    let ingest = triad_tests::alerts::Ingest::new(&d)?;
    let body = r#"{"title":"disk failing","severity":"high","host":"db-hw-9.customs.local"}"#.to_string();
    ensure!(ingest.post(1, &token, body).await? == 202, "accepted");
    let placed = wait_for("the alert placed on HW-9", Duration::from_secs(30), || async {
        let out = d.triadctl(&["alerts", "list", "--text", "disk failing", "-o", "json"]).ok()?;
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        list.into_iter().next()
    })
    .await?;
    ensure!(placed["site"] == "ndc", "placed at the asset's site: {placed}");
    let id = placed["id"].as_u64().expect("an id").to_string();
    let shown = ok(d.triadctl(&["alerts", "show", &id])?)?;
    ensure!(
        shown.contains("HW-9") && shown.contains("Room 2") && shown.contains("ops"),
        "asset, office, owner: {shown}"
    );
    Ok(())
}
