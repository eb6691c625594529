//! Every source's severity on Triad's one scale: `info`, `low`, `medium`, `high`, `critical`.
//!
//! | source | info | low | medium | high | critical |
//! |---|---|---|---|---|---|
//! | Wazuh `rule.level` (0-15) | 0-3 | 4-6 | 7-9 | 10-12 | 13-15 |
//! | CEF severity (0-10) | | 0-3 | 4-6 | 7-8 | 9-10 |
//! | CEF severity names | | Low | Medium | High | Very-High |
//! | syslog severity (0-7) | 6 info, 7 debug | 5 notice | 4 warning | 3 err | 0 emerg, 1 alert, 2 crit |
//! | Alertmanager `severity` label | info, informational, none | low, minor | warning, warn, medium | high, error, major | critical, page, emergency, fatal |
//! | generic `severity` | the scale's own names | | | | |
//!
//! An Alertmanager alert without a `severity` label, or with one not listed, is `medium` (its
//! label is kept, so a silence or a filter can still use it). CEF's `Unknown` is `medium`.
//! Anything else out of range is an error naming the field.

use super::Severity;

/// Wazuh's rule level, 0 to 15.
pub fn from_wazuh_level(level: i64) -> Option<Severity> {
    Some(match level {
        0..=3 => Severity::Info,
        4..=6 => Severity::Low,
        7..=9 => Severity::Medium,
        10..=12 => Severity::High,
        13..=15 => Severity::Critical,
        _ => return None,
    })
}

/// CEF's severity: 0 to 10, or one of its names (any case).
pub fn from_cef(value: &str) -> Option<Severity> {
    let v = value.trim();
    if let Ok(n) = v.parse::<u8>() {
        return Some(match n {
            0..=3 => Severity::Low,
            4..=6 => Severity::Medium,
            7..=8 => Severity::High,
            9..=10 => Severity::Critical,
            _ => return None,
        });
    }
    Some(match v.to_ascii_lowercase().as_str() {
        "low" => Severity::Low,
        "medium" | "unknown" => Severity::Medium,
        "high" => Severity::High,
        "very-high" | "very high" => Severity::Critical,
        _ => return None,
    })
}

/// Syslog's severity, 0 (emergency) to 7 (debug).
pub fn from_syslog(severity: u8) -> Severity {
    match severity {
        0..=2 => Severity::Critical,
        3 => Severity::High,
        4 => Severity::Medium,
        5 => Severity::Low,
        _ => Severity::Info,
    }
}

/// Alertmanager's `severity` label (any case); `medium` when absent or not listed.
pub fn from_alertmanager_label(label: Option<&str>) -> Severity {
    match label.map(|l| l.trim().to_ascii_lowercase()).as_deref() {
        Some("critical" | "page" | "emergency" | "fatal") => Severity::Critical,
        Some("high" | "error" | "major") => Severity::High,
        Some("low" | "minor") => Severity::Low,
        Some("info" | "informational" | "none") => Severity::Info,
        _ => Severity::Medium,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_mapping_holds_at_its_edges() {
        let wazuh: Vec<_> =
            [0, 3, 4, 6, 7, 9, 10, 12, 13, 15].into_iter().map(|l| from_wazuh_level(l).unwrap()).collect();
        use Severity::*;
        assert_eq!(wazuh, [Info, Info, Low, Low, Medium, Medium, High, High, Critical, Critical]);
        assert_eq!((from_wazuh_level(-1), from_wazuh_level(16)), (None, None));
        let cef: Vec<_> = ["0", "3", "4", "6", "7", "8", "9", "10"].into_iter().map(|v| from_cef(v).unwrap()).collect();
        assert_eq!(cef, [Low, Low, Medium, Medium, High, High, Critical, Critical]);
        assert_eq!(
            (from_cef("Very-High"), from_cef("unknown"), from_cef("11"), from_cef("x")),
            (Some(Critical), Some(Medium), None, None)
        );
        let syslog: Vec<_> = (0..8).map(from_syslog).collect();
        assert_eq!(syslog, [Critical, Critical, Critical, High, Medium, Low, Info, Info]);
        assert_eq!(from_alertmanager_label(Some("CRITICAL")), Critical);
        assert_eq!(from_alertmanager_label(Some("warning")), Medium);
        assert_eq!(from_alertmanager_label(None), Medium);
    }
}
