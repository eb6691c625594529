//! The RFCs' and the CEF guide's own examples (`tests/data/alerts/syslog`), and hostile input.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

fn lines(file: &str) -> Vec<String> {
    let path = format!("{}/../tests/data/alerts/syslog/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).lines().map(String::from).collect()
}

const NOW: u64 = 1_796_569_993_835; // 2026-12-06
fn sender() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

#[test]
fn rfc5424_examples_parse() {
    let l = lines("rfc5424.txt");
    let m = message::parse(&l[0], NOW).unwrap();
    assert_eq!((m.facility, m.severity, m.rfc), (4, 2, 5424));
    assert_eq!(
        (m.hostname.as_str(), m.app_name.as_str(), m.procid.as_str(), m.msgid.as_str()),
        ("mymachine.example.com", "su", "", "ID47")
    );
    assert_eq!(m.msg, "'su root' failed for lonvick on /dev/pts/8", "the BOM is dropped");
    assert_eq!(m.at_ms, timestamp::parse_ms("2003-10-11T22:14:15.003Z"));
    let m = message::parse(&l[1], NOW).unwrap();
    assert_eq!((m.facility, m.severity, m.hostname.as_str(), m.procid.as_str()), (20, 5, "192.0.2.1", "8710"));
    assert_eq!(m.at_ms, timestamp::parse_ms("2003-08-24T12:14:15.000Z"));
    let m = message::parse(&l[2], NOW).unwrap();
    assert_eq!(m.structured["exampleSDID@32473.eventID"], "1011");
    assert_eq!(m.msg, "An application event log entry...");
    let m = message::parse(&l[3], NOW).unwrap();
    assert_eq!(m.structured["examplePriority@32473.class"], "high");
    assert_eq!(m.msg, "");

    let a = to_alert(&l[0], sender(), NOW).unwrap();
    assert_eq!(
        (a.severity, a.host.as_str(), a.address.as_str()),
        (Severity::Critical, "mymachine.example.com", "192.0.2.7")
    );
    assert_eq!(a.title, "su: 'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(a.labels["msgid"], "ID47");
    assert_eq!(to_alert(&l[0], sender(), NOW + 1).unwrap().fingerprint, a.fingerprint, "a repeat is the same alert");
    let a = to_alert(&l[3], sender(), NOW).unwrap();
    assert_eq!(a.title, "evntslog:", "a message with only structured data still names its app");
}

#[test]
fn rfc3164_examples_parse() {
    let l = lines("rfc3164.txt");
    let m = message::parse(&l[0], NOW).unwrap();
    assert_eq!((m.facility, m.severity, m.rfc), (4, 2, 3164));
    assert_eq!((m.hostname.as_str(), m.app_name.as_str()), ("mymachine", "su"));
    assert_eq!(m.msg, "'su root' failed for lonvick on /dev/pts/8");
    assert_eq!(m.at_ms, timestamp::parse_ms("2026-10-11T22:14:15Z"), "the receipt's year");
    let m = message::parse(&l[1], NOW).unwrap();
    assert_eq!((m.hostname.as_str(), m.app_name.as_str(), m.msg.as_str()), ("10.0.0.99", "", "Use the BFG!"));
    for odd in &l[2..] {
        let a = to_alert(odd, sender(), NOW).unwrap();
        assert!(!a.title.is_empty(), "{odd}");
    }
}

#[test]
fn cef_payloads_in_syslog_become_alerts() {
    for (i, cef) in lines("cef.txt").iter().enumerate() {
        let line = format!("<134>Dec  6 14:02:11 fw1 {cef}");
        let a = to_alert(&line, sender(), NOW).unwrap_or_else(|e| panic!("example {i}: {e}"));
        assert_eq!(a.host, "fw1");
        if i < 4 {
            assert_eq!(
                (a.severity, a.labels["cef_vendor"].as_str(), a.labels["src"].as_str()),
                (Severity::Critical, "security", "10.0.0.1")
            );
        }
    }
    let line = "<134>1 2026-12-06T14:02:11Z fw1 - - - - CEF:0|Fortinet|FortiGate|7.2|13056|SYN flood|7|src=203.0.113.9 dst=10.1.0.11 dvc=10.1.0.1 dvchost=edge-fw-1 rt=1796565731000";
    let a = to_alert(line, sender(), NOW).unwrap();
    assert_eq!(
        (a.title.as_str(), a.severity, a.host.as_str(), a.address.as_str()),
        ("SYN flood", Severity::High, "edge-fw-1", "10.1.0.1")
    );
    assert_eq!(a.at_ms, 1_796_565_731_000);
    let other_source = line.replace("src=203.0.113.9", "src=203.0.113.10");
    assert_ne!(to_alert(&other_source, sender(), NOW).unwrap().fingerprint, a.fingerprint);
}

#[test]
fn broken_lines_name_what_is_wrong() {
    for (line, want) in [
        ("no pri", "does not start with `<PRI>`"),
        ("<999>x", "syslog.pri"),
        ("<>x", "no `<PRI>`"),
        ("<13>1 yesterday host app - - - msg", "syslog.timestamp"),
        ("<13>1 - h a - - [id x=\"unclosed", "structured_data"),
        ("<13>1 - h a", "missing field"),
        ("<13>1 - h a - - - CEF:0|a|b|c|d|e|99|x=y", "cef.severity"),
        ("<13>", "syslog.msg"),
    ] {
        let err = to_alert(line, sender(), NOW).expect_err(line).to_string();
        assert!(err.contains(want), "{line}: {err}");
    }
    assert!(to_alert(&"x".repeat(MAX_MESSAGE + 1), sender(), NOW).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_lines_never_panic(line in ".{0,400}") {
        let _ = to_alert(&line, sender(), NOW);
        let _ = to_alert(&format!("<13>1 - h a - - {line}"), sender(), NOW);
        let _ = to_alert(&format!("<13>Dec  6 14:02:11 h {line}"), sender(), NOW);
        let _ = to_alert(&format!("<13>Dec  6 14:02:11 h CEF:0|{line}"), sender(), NOW);
    }

    #[test]
    fn cef_extension_values_round_trip(v in "[ -~]{1,60}") {
        let escaped = v.replace('\\', r"\\").replace('=', r"\=");
        let line = format!("<13>Dec  6 14:02:11 h CEF:0|v|p|1|sig|n|5|cs1={escaped} dst=10.0.0.1");
        let a = to_alert(&line, sender(), NOW).unwrap();
        let want = Some(v.trim()).filter(|v| !v.is_empty());
        prop_assert_eq!(a.labels.get("cs1").map(String::as_str), want);
    }
}
