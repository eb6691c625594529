//! The parsers against the documented payloads in `tests/data/alerts`, against broken ones, and
//! against arbitrary bytes (property tests: an error or alerts, never a panic).

use proptest::prelude::*;

use super::*;

macro_rules! data {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/alerts/", $file))
    };
}

const NOW: u64 = 1_800_000_000_000;

#[test]
fn alertmanager_documented_payloads_parse() {
    let firing = alertmanager::parse(data!("alertmanager-firing.json"), NOW).unwrap();
    assert_eq!(firing.len(), 2);
    let lag = &firing[0];
    assert_eq!(lag.fingerprint, "8b3c2a1f0e9d7c65");
    assert_eq!(lag.severity, Severity::Critical);
    assert_eq!(lag.title, "Replication to ndc is 42 s behind");
    assert!(lag.description.starts_with("pg_stat_replication.replay_lag"));
    assert_eq!((lag.host.as_str(), lag.address.as_str(), lag.site.as_str()), ("10.1.0.11", "10.1.0.11", "dc"));
    assert_eq!(lag.at_ms, timestamp::parse_ms("2026-12-06T14:02:11.123Z").unwrap());
    assert_eq!(lag.labels["job"], "postgres");
    assert!(!lag.resolved);
    let disk = &firing[1];
    assert_eq!(
        (disk.severity, disk.host.as_str(), disk.address.as_str()),
        (Severity::Medium, "app1.dc.customs.local", "")
    );

    let resolved = alertmanager::parse(data!("alertmanager-resolved.json"), NOW).unwrap();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0].resolved);
    assert_eq!(resolved[0].fingerprint, lag.fingerprint, "the resolution names the same alert");
    assert_eq!(resolved[0].at_ms, timestamp::parse_ms("2026-12-06T14:09:41.5Z").unwrap());
}

#[test]
fn wazuh_documented_alerts_parse() {
    let sshd = wazuh::parse(data!("wazuh-sshd.json"), NOW).unwrap();
    let a = &sshd[0];
    assert_eq!((a.severity, a.title.as_str()), (Severity::Low, "sshd: Attempt to login using a non-existent user"));
    assert_eq!((a.host.as_str(), a.address.as_str()), ("centos", "10.0.2.15"));
    assert_eq!(a.at_ms, 1_589_294_466_012);
    assert_eq!(a.labels["rule_id"], "5710");
    assert_eq!(a.labels["srcip"], "10.0.2.2");
    assert_eq!(a.labels["mitre"], "T1110");
    assert_eq!(a.labels["rule_groups"], "syslog,sshd,invalid_login,authentication_failed");
    assert!(a.description.contains("Invalid user test"));
    // The same rule on the same agent from the same address: the same fingerprint.
    let again = wazuh::parse(data!("wazuh-sshd.json"), NOW + 5).unwrap();
    assert_eq!(again[0].fingerprint, a.fingerprint);

    let rootcheck = wazuh::parse(data!("wazuh-rootcheck.json"), NOW).unwrap();
    let r = &rootcheck[0];
    assert_eq!((r.severity, r.labels["rule_id"].as_str(), r.at_ms), (Severity::Info, "516", NOW));
    assert_ne!(r.fingerprint, a.fingerprint);
}

#[test]
fn the_generic_form_parses() {
    let g = generic::parse(data!("generic.json"), NOW).unwrap();
    assert_eq!(g.len(), 2);
    assert_eq!(
        (g[0].fingerprint.as_str(), g[0].severity, g[0].address.as_str()),
        ("ddos-uplink-1", Severity::High, "10.1.0.1")
    );
    assert_eq!(g[0].at_ms, timestamp::parse_ms("2026-12-06T14:02:00Z").unwrap());
    assert_eq!((g[1].severity, g[1].at_ms, g[1].host.as_str()), (Severity::Critical, NOW, "db1"));
    assert_eq!(g[1].fingerprint.len(), 32, "a digest when none is given");
}

#[test]
fn broken_payloads_name_what_is_wrong() {
    let cases: Vec<(Result<Vec<IncomingAlert>, ParseError>, &str)> = vec![
        (alertmanager::parse(b"{", NOW), "malformed JSON"),
        (alertmanager::parse(br#"{"version":"3","alerts":[]}"#, NOW), "field `version`: `3`"),
        (alertmanager::parse(br#"{"version":"4","alerts":[]}"#, NOW), "no alerts"),
        (
            alertmanager::parse(br#"{"version":"4","alerts":[{"status":"burning","labels":{"a":"b"}}]}"#, NOW),
            "alerts[0].status",
        ),
        (
            alertmanager::parse(br#"{"version":"4","alerts":[{"status":"firing"}]}"#, NOW),
            "missing field `alerts[0].labels`",
        ),
        (wazuh::parse(br#"{"rule":{"id":"1"}}"#, NOW), "missing field `[0].rule.level`"),
        (wazuh::parse(br#"{"rule":{"level":16,"id":"1"}}"#, NOW), "16 is not a Wazuh level"),
        (wazuh::parse(br#"{"rule":{"level":3}}"#, NOW), "missing field `[0].rule.id`"),
        (wazuh::parse(br#"[]"#, NOW), "no alerts"),
        (wazuh::parse(b"   ", NOW), "no alerts"),
        (generic::parse(br#"{"title":"t"}"#, NOW), "missing field `[0].severity`"),
        (generic::parse(br#"{"title":"t","severity":"urgent"}"#, NOW), "expected one of info, low"),
        (generic::parse(br#"{"title":"t","severity":"low","sevrity":"x"}"#, NOW), "unknown field `sevrity`"),
        (generic::parse(br#"{"title":"t","severity":"low","time":"noon"}"#, NOW), "not an RFC 3339 time"),
        (generic::parse(br#"{"title":"t","severity":"low","address":"10.0.0.300"}"#, NOW), "not an IP address"),
        (generic::parse(br#"{"title":" ","severity":"low"}"#, NOW), "missing field `[0].title`"),
    ];
    for (result, want) in cases {
        let err = result.expect_err(want).to_string();
        assert!(err.contains(want), "{err:?} should say {want:?}");
    }
    let many = format!("[{}]", vec![r#"{"title":"t","severity":"low"}"#; MAX_ALERTS_PER_REQUEST + 1].join(","));
    assert!(matches!(generic::parse(many.as_bytes(), NOW), Err(ParseError::TooMany { .. })));
}

#[test]
fn hostile_text_is_bounded_and_cleaned() {
    let body = format!(
        r#"{{"title":"{}\u001b[31m","severity":"low","labels":{{"{}":"x"}},"description":"{}"}}"#,
        "T".repeat(100_000),
        "k".repeat(1000),
        "d".repeat(100_000)
    );
    let a = &generic::parse(body.as_bytes(), NOW).unwrap()[0];
    assert!(a.title.len() <= MAX_TITLE && !a.title.contains('\u{1b}'));
    assert!(a.description.len() <= MAX_DESCRIPTION);
    assert!(a.labels.is_empty(), "an overlong label name is dropped");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = alertmanager::parse(&bytes, NOW);
        let _ = wazuh::parse(&bytes, NOW);
        let _ = generic::parse(&bytes, NOW);
    }

    #[test]
    fn truncated_documented_payloads_are_refused_cleanly(cut in 0usize..2000) {
        for (body, parse) in [
            (&data!("alertmanager-firing.json")[..], alertmanager::parse as fn(&[u8], u64) -> _),
            (&data!("wazuh-sshd.json")[..], wazuh::parse),
            (&data!("generic.json")[..], generic::parse),
        ] {
            let end = cut.min(body.len());
            let result = parse(&body[..end], NOW);
            if end < body.trim_ascii_end().len() {
                prop_assert!(result.is_err(), "a payload cut at {} of {} parsed", end, body.len());
            }
        }
    }

    #[test]
    fn generic_fields_of_any_text_stay_bounded(title in ".{1,2000}", host in ".{0,600}", v in ".{0,3000}") {
        let body = serde_json::json!({"title": title, "severity": "low", "host": host, "labels": {"k": v}});
        if let Ok(alerts) = generic::parse(body.to_string().as_bytes(), NOW) {
            let a = &alerts[0];
            prop_assert!(a.title.len() <= MAX_TITLE && a.host.len() <= 255);
            prop_assert!(a.labels.values().all(|v| v.len() <= MAX_LABEL_VALUE));
            prop_assert!(!a.title.chars().any(char::is_control));
        }
    }
}
