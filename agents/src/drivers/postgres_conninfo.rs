//! libpq connection strings, as far as the PostgreSQL driver needs to read them: which server
//! (host and port) a standby's upstream or a member's replication endpoint names, written in one
//! canonical form (`host:port`) so that the controller compares them for equality alone and
//! never reads a connection string (docs/oracle-data-guard.md, B1).

/// The server a `key=value` connection string names: `hostaddr` or else `host` (default
/// `localhost`), and `port` (default 5432). `None` when the string cannot be read (an unclosed
/// quote, a key without `=`, a port that is not a number).
pub fn server(conninfo: &str) -> Option<(String, u16)> {
    let pairs = pairs(conninfo)?;
    let get = |k: &str| pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let host = get("hostaddr").filter(|h| !h.is_empty()).or_else(|| get("host")).unwrap_or_else(|| "localhost".into());
    let port = match get("port") {
        Some(p) if !p.is_empty() => p.parse().ok()?,
        _ => 5432,
    };
    Some((host, port))
}

/// The server a connection string names as `host:port` (`[host]:port` when the host holds a
/// colon: an IPv6 address), the driver's canonical replication identity; `None` when unreadable.
pub fn server_id(conninfo: &str) -> Option<String> {
    let (host, port) = server(conninfo)?;
    Some(id(&host, port))
}

/// A server's canonical identity, as [`server_id`] writes it.
pub fn id(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The same connection string with `port` in place of its own (a dr-test's copy listens beside
/// its member); every value quoted. `None` when the string cannot be read.
pub fn with_port(conninfo: &str, port: u16) -> Option<String> {
    let mut pairs: Vec<(String, String)> = pairs(conninfo)?.into_iter().filter(|(k, _)| k != "port").collect();
    pairs.push(("port".into(), port.to_string()));
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    Some(pairs.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect::<Vec<_>>().join(" "))
}

/// The keyword/value pairs, values unquoted (`'...'` with `\'` and `\\` escapes).
fn pairs(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.peek().copied().filter(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| !c.is_whitespace()) {
                value.push(if c == '\\' { chars.nth(1)? } else { c });
                if c != '\\' {
                    chars.next();
                }
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_a_connection_string_names() {
        assert_eq!(server("host=10.1.2.3 port=5433 user=postgres"), Some(("10.1.2.3".into(), 5433)));
        assert_eq!(server("host = 'db one' application_name=dr"), Some(("db one".into(), 5432)));
        assert_eq!(server("hostaddr=127.0.0.1 host=db port=6000"), Some(("127.0.0.1".into(), 6000)));
        assert_eq!(server("user=x passfile='/a/b\\'c'"), Some(("localhost".into(), 5432)));
        assert_eq!(server(""), Some(("localhost".into(), 5432)));
        assert_eq!(server("host='unclosed"), None);
        assert_eq!(server("port=five"), None);
        assert_eq!(server("justaword"), None);
        let id = server_id("host=127.0.0.1 port=5433");
        assert_eq!(id.as_deref(), Some("127.0.0.1:5433"));
        assert_eq!(server_id("port=5433 host=127.0.0.1 application_name=dr sslmode=x"), id);
        assert_ne!(server_id("host=127.0.0.1 port=5434"), id);
        assert_eq!(server_id("host=::1 port=5433").as_deref(), Some("[::1]:5433"));
        assert_eq!(server_id("host='x"), None);
    }

    #[test]
    fn a_copy_is_reached_on_its_own_port() {
        let copy = with_port("host=127.0.0.1 port=5433 dbname=customs passfile='/a/b\\'c'", 5533).unwrap();
        assert_eq!(server(&copy), Some(("127.0.0.1".into(), 5533)));
        assert_eq!(copy, "host='127.0.0.1' dbname='customs' passfile='/a/b\\'c' port='5533'");
        assert_eq!(with_port("host='x", 1), None);
    }
}
