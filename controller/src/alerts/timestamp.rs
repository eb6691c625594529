//! Times as sources write them, to milliseconds since the Unix epoch: RFC 3339 (Alertmanager,
//! generic, RFC 5424) and Wazuh's `2020-05-12T14:41:06.012+0000`. A time before 1970 (such as
//! Alertmanager's zero `endsAt`) or unreadable is `None`: the caller uses the receipt time.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::OffsetDateTime;

/// Milliseconds since the Unix epoch of an RFC 3339 time, or Wazuh's variant of ISO 8601.
pub fn parse_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let t = OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let wazuh = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
        );
        OffsetDateTime::parse(s, &wazuh).ok()
    })?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).ok().filter(|&ms| ms > 0)
}

/// RFC 3339 of `ms` since the Unix epoch, in UTC with milliseconds.
pub fn format_ms(ms: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.format(&f).unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_times_parse() {
        assert_eq!(parse_ms("2020-05-12T14:41:06.012+0000"), Some(1_589_294_466_012));
        assert_eq!(parse_ms("2020-05-12T14:41:06.012Z"), Some(1_589_294_466_012));
        assert_eq!(parse_ms("2020-05-12T16:41:06.012+02:00"), Some(1_589_294_466_012));
        assert_eq!(parse_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_ms("yesterday"), None);
        assert_eq!(format_ms(1_589_294_466_012), "2020-05-12T14:41:06.012Z");
    }
}
