//! ArcSight's Common Event Format, as carried in a syslog message:
//! `CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension`.
//!
//! In the seven header fields a `|` is written `\|` and a `\` is written `\\`. The extension is
//! `key=value` pairs separated by spaces; a value runs to the space before the next `key=`, and
//! in it `\=`, `\\`, `\n` and `\r` stand for `=`, `\`, a newline and a carriage return.

use std::collections::BTreeMap;

use crate::alerts::ParseError;

/// A parsed CEF record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cef {
    pub version: String,
    pub vendor: String,
    pub product: String,
    pub device_version: String,
    pub signature_id: String,
    pub name: String,
    pub severity: String,
    pub extension: BTreeMap<String, String>,
}

/// Parses `CEF:...` (the text from `CEF:` on).
pub fn parse(text: &str) -> Result<Cef, ParseError> {
    let rest = text.strip_prefix("CEF:").ok_or_else(|| ParseError::invalid("cef", "does not start with `CEF:`"))?;
    let mut fields = Vec::with_capacity(7);
    let mut current = String::new();
    let mut chars = rest.char_indices();
    let mut ext_start = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('|' | '\\'))) => current.push(e),
                // A backslash before anything else is kept as it is.
                Some((_, other)) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut current));
                if fields.len() == 7 {
                    ext_start = Some(i + 1);
                    break;
                }
            }
            c => current.push(c),
        }
    }
    let Some(ext_start) = ext_start else {
        return Err(ParseError::invalid(
            "cef",
            format!("{} of the 7 header fields before the extension", fields.len()),
        ));
    };
    let mut f = fields.into_iter();
    let mut next = || f.next().unwrap_or_default();
    let cef = Cef {
        version: next(),
        vendor: next(),
        product: next(),
        device_version: next(),
        signature_id: next(),
        name: next(),
        severity: next(),
        extension: extension(&rest[ext_start..])?,
    };
    if cef.version.trim().parse::<u8>().is_err() {
        return Err(ParseError::invalid("cef.version", format!("`{}` is not a number", cef.version)));
    }
    Ok(cef)
}

/// Whether `key` is an extension key: letters, digits, `_`, `.`, `-`, `[`, `]`.
fn is_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_.-[]".contains(c))
}

/// The position of the next unescaped `=` in `s` (a backslash escapes the character after it,
/// another backslash included).
fn next_equals(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'=' => return Some(i),
            _ => {}
        }
    }
    None
}

fn unescape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('=') => out.push('='),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn extension(s: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut out = BTreeMap::new();
    let s = s.trim();
    if s.is_empty() {
        return Ok(out);
    }
    // Split at each unescaped `=`: what precedes it, after the last space, is the key; the
    // rest back to the previous key is the previous value.
    let mut key: Option<String> = None;
    let mut rest = s;
    loop {
        match next_equals(rest) {
            Some(eq) => {
                let before = &rest[..eq];
                let (value, next_key) = match key {
                    None => ("", before.trim()),
                    Some(_) => match before.rfind(' ') {
                        Some(sp) => (&before[..sp], before[sp + 1..].trim()),
                        None => {
                            return Err(ParseError::invalid("cef.extension", format!("no space before `{before}=`")))
                        }
                    },
                };
                if let Some(k) = key.take() {
                    out.insert(k, unescape_value(value));
                }
                if !is_key(next_key) {
                    return Err(ParseError::invalid(
                        "cef.extension",
                        format!("`{}` is not a key", crate::alerts::bounded(next_key, 40)),
                    ));
                }
                key = Some(next_key.to_string());
                rest = &rest[eq + 1..];
            }
            None => {
                match key {
                    Some(k) => out.insert(k, unescape_value(rest)),
                    None => return Err(ParseError::invalid("cef.extension", "no `key=value` in it")),
                };
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_examples_parse() {
        // The CEF specification's examples (header escapes, then extension escapes).
        let c = parse(r"CEF:0|security|threatmanager|1.0|100|detected a \| in message|10|src=10.0.0.1 act=blocked a | dst=1.1.1.1").unwrap();
        assert_eq!(c.name, "detected a | in message");
        assert_eq!(c.extension["act"], "blocked a |");
        let c = parse(r"CEF:0|security|threatmanager|1.0|100|detected a \\ in packet|10|src=10.0.0.1 act=blocked a \\ dst=1.1.1.1").unwrap();
        assert_eq!(c.name, r"detected a \ in packet");
        assert_eq!(c.extension["act"], r"blocked a \");
        let c = parse(r"CEF:0|security|threatmanager|1.0|100|detected a = in message|10|src=10.0.0.1 act=blocked a \= dst=1.1.1.1").unwrap();
        assert_eq!(c.extension["act"], "blocked a =");
        assert_eq!(c.extension["dst"], "1.1.1.1");
        let c = parse(r"CEF:0|ArcSight|ArcSight|2.4.1|machine:20|New alert|High|msg=line one\nline two\r spt=1232")
            .unwrap();
        assert_eq!(c.extension["msg"], "line one\nline two\r");
        assert_eq!(c.extension["spt"], "1232");
        assert_eq!((c.severity.as_str(), c.signature_id.as_str()), ("High", "machine:20"));
    }

    #[test]
    fn broken_records_are_refused() {
        assert!(parse("CEF:0|a|b|c").unwrap_err().to_string().contains("3 of the 7"));
        assert!(parse("CEF:x|a|b|c|d|e|5|").unwrap_err().to_string().contains("cef.version"));
        assert!(parse("CEF:0|a|b|c|d|e|5|noequals").is_err());
        assert!(parse("CEF:0|a|b|c|d|e|5|k=v b@d=v").is_err());
        assert_eq!(parse("CEF:0|a|b|c|d|e|5|k=v w key=v").unwrap().extension["k"], "v w");
        assert_eq!(parse("CEF:0|a|b|c|d|e|5|").unwrap().extension.len(), 0);
    }
}
