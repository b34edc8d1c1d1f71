//! How airlift's Jackson module prints durations, data sizes and times, and Presto's query
//! ids: the scraper parses these strings, so they must look exactly like the real ones.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::macros::format_description;

/// An airlift `Duration`: `%.2f` in the most succinct unit (`"129.34ms"`, `"3.29m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct AirDuration(pub Duration);

/// An airlift `DataSize` made succinct: `"370MB"` when whole, else `"401.12MB"`; `"0B"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DataSize(pub u64);

/// A Joda `DateTime` as Jackson prints it: ISO-8601 with millis, UTC (`"…T09:40:15.902Z"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime(pub SystemTime);

impl DateTime {
    /// `1970-01-01T00:00:00.000Z`: how current versions print the end time of a query that
    /// has not ended.
    pub const EPOCH: DateTime = DateTime(UNIX_EPOCH);
}

/// Units of `java.util.concurrent.TimeUnit`, with airlift's suffixes and their size in ns.
const TIME_UNITS: [(&str, f64); 7] = [
    ("ns", 1.0),
    ("us", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
    ("d", 86400e9),
];

/// Formats `d` like airlift's `Duration.convertToMostSuccinctTimeUnit().toString()`.
pub(crate) fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos() as f64;
    let mut chosen = TIME_UNITS[0];
    for unit in TIME_UNITS {
        // airlift matches fuzzily because the units are not exact powers of each other.
        if nanos / unit.1 > 0.9999 {
            chosen = unit;
        } else {
            break;
        }
    }
    format!("{:.2}{}", nanos / chosen.1, chosen.0)
}

/// Formats `bytes` like airlift's `DataSize.succinctBytes(bytes).toString()` (1024-based).
pub(crate) fn format_data_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && value / 1024.0 >= 1.0 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{}{}", value as u64, UNITS[unit])
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// Formats `t` as Jackson prints a Joda `DateTime` in UTC.
pub(crate) fn format_date_time(t: SystemTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Milliseconds since the epoch (`SessionRepresentation.startTime`).
pub(crate) fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A `QueryId` as `QueryIdGenerator` makes them: `yyyyMMdd_HHmmss_NNNNN_<coordinator id>`.
pub(crate) fn query_id(t: SystemTime, counter: u64, coordinator_id: &str) -> String {
    let fmt = format_description!("[year][month][day]_[hour][minute][second]");
    let stamp = OffsetDateTime::from(t)
        .format(&fmt)
        .unwrap_or_else(|_| "19700101_000000".to_owned());
    format!("{stamp}_{:05}_{coordinator_id}", counter % 100_000)
}

impl Serialize for AirDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl Serialize for DataSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_data_size(self.0))
    }
}

impl Serialize for DateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_date_time(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_most_succinct_unit() {
        assert_eq!(format_duration(Duration::ZERO), "0.00ns");
        assert_eq!(format_duration(Duration::from_nanos(999)), "999.00ns");
        assert_eq!(format_duration(Duration::from_micros(129_340)), "129.34ms");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1.50s");
        assert_eq!(format_duration(Duration::from_secs(197)), "3.28m");
        assert_eq!(format_duration(Duration::from_secs(7_200)), "2.00h");
        assert_eq!(format_duration(Duration::from_secs(249_700)), "2.89d");
    }

    #[test]
    fn data_sizes_are_whole_or_two_decimals() {
        assert_eq!(format_data_size(0), "0B");
        assert_eq!(format_data_size(1023), "1023B");
        assert_eq!(format_data_size(370 * 1024 * 1024), "370MB");
        assert_eq!(format_data_size(1536), "1.50kB");
        assert_eq!(format_data_size(6 * 1024 * 1024 * 1024), "6GB");
    }

    #[test]
    fn times_and_ids_look_like_joda_and_presto() {
        let t = UNIX_EPOCH + Duration::from_millis(1_736_847_615_902);
        assert_eq!(format_date_time(t), "2025-01-14T09:40:15.902Z");
        assert_eq!(
            format_date_time(DateTime::EPOCH.0),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(query_id(t, 3, "x7k2p"), "20250114_094015_00003_x7k2p");
        assert_eq!(epoch_millis(t), 1_736_847_615_902);
    }
}
