//! Bounding and cleaning what sources send, so that no field can grow the state without limit
//! and no control character reaches a terminal or a log.

use std::collections::BTreeMap;

use super::{MAX_LABELS, MAX_LABEL_NAME, MAX_LABEL_VALUE};

/// `s` without control characters (newlines and tabs become spaces), cut to at most `max`
/// bytes at a character boundary and marked with `…` when cut.
pub fn bounded(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.trim().chars() {
        let c = if c == '\n' || c == '\t' || c == '\r' { ' ' } else { c };
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > max.saturating_sub('…'.len_utf8()) {
            out.push('…');
            return out;
        }
        out.push(c);
    }
    out
}

/// Labels with names of reasonable length, values bounded, at most [`MAX_LABELS`] (the first
/// in name order).
pub fn clean_labels(labels: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in labels {
        let k = bounded(&k, MAX_LABEL_NAME + 8);
        if k.is_empty() || k.len() > MAX_LABEL_NAME {
            continue;
        }
        out.insert(k, bounded(&v, MAX_LABEL_VALUE));
    }
    while out.len() > MAX_LABELS {
        out.pop_last();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cleaned_and_bounded_at_a_char_boundary() {
        assert_eq!(bounded("  a\nb\u{7}c ", 100), "a bc");
        let cut = bounded(&"é".repeat(100), 11);
        assert!(cut.len() <= 11 && cut.ends_with('…'), "{cut}");
        assert_eq!(bounded("short", 11), "short");
    }

    #[test]
    fn labels_are_bounded_in_number_and_size() {
        let many = (0..100).map(|i| (format!("k{i:03}"), "v".repeat(5000)));
        let l = clean_labels(many.chain([("x".repeat(500), "v".into()), (String::new(), "v".into())]));
        assert_eq!(l.len(), MAX_LABELS);
        assert!(l.values().all(|v| v.len() <= MAX_LABEL_VALUE));
        assert!(l.keys().all(|k| k.len() <= MAX_LABEL_NAME && !k.is_empty()));
    }
}
