//! Unix-millisecond timestamps and their RFC 3339 form, the one place both planes convert
//! between the wire's `*_unix_ms` fields and the API's and Presto's date-time strings.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, Unix milliseconds.
pub fn now_unix_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 form of Unix milliseconds (`None` if out of range).
pub fn rfc3339_from_ms(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

/// Unix milliseconds of an RFC 3339 / ISO-8601 date-time (`None` if it does not parse).
pub fn ms_from_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = 1_736_847_615_902;
        let s = rfc3339_from_ms(ms).expect("in range");
        assert_eq!(ms_from_rfc3339(&s), Some(ms));
        assert_eq!(ms_from_rfc3339("2025-01-14T09:40:15.902Z"), Some(ms));
        assert_eq!(ms_from_rfc3339("not a date"), None);
        assert!(now_unix_ms() > ms);
    }
}
