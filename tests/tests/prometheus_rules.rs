//! The NOC's alerting rules (`deploy/prometheus/rules.yml`): `promtool check rules` accepts them,
//! `promtool test rules` passes their unit tests (`rules.test.yml`), and those tests have, for
//! every alert, a case where it fires and a case where it does not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

fn promtool(args: &[&str]) -> Result<String> {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(prometheus_dir())
        .output()
        .context("promtool (Debian's prometheus package; scripts/prereqs.sh installs it)")?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    ensure!(out.status.success(), "promtool {}: {said}", args.join(" "));
    Ok(said)
}

/// The alert names a rule file defines.
fn alerts_defined(rules: &str) -> BTreeSet<String> {
    rules.lines().filter_map(|l| l.trim().strip_prefix("- alert:")).map(|n| n.trim().to_string()).collect()
}

/// For each alert the unit tests name: (has a case where it fires, has one where it does not).
fn cases(tests: &str) -> BTreeMap<String, (bool, bool)> {
    let mut out: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut lines = tests.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let (Some(rest), Some(name)) = (line.strip_prefix("exp_alerts:"), current.take()) {
            let entry = out.entry(name).or_default();
            if rest.trim() == "[]" {
                entry.1 = true;
            } else if lines.peek().is_some_and(|next| next.starts_with("- exp_labels:")) {
                entry.0 = true;
            }
        }
    }
    out
}

#[test]
fn the_rules_are_valid_and_their_unit_tests_pass() -> Result<()> {
    let said = promtool(&["check", "rules", "rules.yml"])?;
    ensure!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&["test", "rules", "rules.test.yml"])?;
    ensure!(said.contains("SUCCESS"), "{said}");
    Ok(())
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case() -> Result<()> {
    let rules = std::fs::read_to_string(prometheus_dir().join("rules.yml"))?;
    let tests = std::fs::read_to_string(prometheus_dir().join("rules.test.yml"))?;
    let defined = alerts_defined(&rules);
    // What the issue asks the NOC be woken for, each by at least one alert.
    for needed in [
        "TriadNoQuorum",
        "TriadCityLossLeavesNoQuorum",
        "TriadPrimaryLost",
        "TriadFailoverBlocked",
        "TriadReplicationLagHigh",
        "TriadSynchronousStandbyLost",
        "TriadLinkDown",
        "TriadLinkDegraded",
        "TriadCanaryStale",
        "TriadDrillOverdue",
        "TriadCertificateExpiring",
        "TriadControllerDiskFilling",
    ] {
        ensure!(defined.contains(needed), "no alert {needed} in rules.yml: {defined:?}");
    }
    let cases = cases(&tests);
    for alert in &defined {
        let (fires, quiet) = cases.get(alert).copied().unwrap_or_default();
        ensure!(fires, "rules.test.yml has no case where {alert} fires");
        ensure!(quiet, "rules.test.yml has no case where {alert} stays quiet");
    }
    Ok(())
}

#[test]
fn the_case_reader_tells_firing_from_quiet() {
    let t = "- eval_time: 1m\n  alertname: A\n  exp_alerts: []\n- eval_time: 2m\n  alertname: B\n  exp_alerts:\n    - exp_labels:\n        severity: critical\n";
    let c = cases(t);
    assert_eq!(c.get("A"), Some(&(false, true)));
    assert_eq!(c.get("B"), Some(&(true, false)));
}
