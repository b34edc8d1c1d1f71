//! The PutLogEvents rules as a pure function: which events go into which call.
//!
//! CloudWatch Logs refuses a whole call that breaks a structural rule (unsorted events,
//! more than 10,000 events, more than 1 MiB, a span over 24 hours), so [`plan`] never
//! produces one. Timestamps outside the accepted window are not a structural error — the
//! service accepts the call and silently rejects those events — so they are settled here
//! instead, where they can be counted:
//!
//! - **older than 14 days: dropped and counted** ([`Plan::too_old`]). Clamping them would
//!   file old lines at a time they did not happen, and they are past most retention
//!   settings anyway;
//! - **more than 2 hours in the future: clamped to now.** Such a line is real and recent
//!   as far as the agent can tell (a pod with a skewed clock); it is kept, and its own
//!   timestamp stays inside the JSON message.

use std::time::Duration;

/// Bytes CloudWatch adds to every event's UTF-8 message when sizing a call.
pub const EVENT_OVERHEAD: usize = 26;
/// At most this many events in one PutLogEvents call.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// At most this many bytes (messages plus [`EVENT_OVERHEAD`] each) in one call.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Longest message the service takes: 256 KiB including the per-event overhead.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD;
/// The events of one call must lie within this span.
pub const MAX_BATCH_SPAN: Duration = Duration::from_secs(24 * 60 * 60);
/// Events older than this are rejected by the service.
pub const MAX_AGE: Duration = Duration::from_secs(14 * 24 * 60 * 60);
/// Events further than this in the future are rejected by the service.
pub const MAX_FUTURE: Duration = Duration::from_secs(2 * 60 * 60);
/// Safety margin on both edges of the window: a planned call may wait in retries before
/// it is sent, and the service's clock is not ours.
pub const WINDOW_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Appended to a message cut to [`MAX_MESSAGE_BYTES`].
pub const TRUNCATION_MARKER: &str = "…[truncated by tether]";

/// One log event as CloudWatch takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The line, at most [`MAX_MESSAGE_BYTES`] once it went through [`LogEvent::new`].
    pub message: String,
}

impl LogEvent {
    /// An event whose message is truncated (with [`TRUNCATION_MARKER`]) to what the
    /// service accepts.
    pub fn new(timestamp_ms: i64, message: String) -> Self {
        Self {
            timestamp_ms,
            message: truncate(message),
        }
    }

    /// What this event counts towards [`MAX_BATCH_BYTES`].
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

/// Cuts `message` to at most [`MAX_MESSAGE_BYTES`] on a character boundary and marks it;
/// shorter messages come back unchanged.
pub fn truncate(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut cut = MAX_MESSAGE_BYTES - TRUNCATION_MARKER.len();
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(TRUNCATION_MARKER);
    message
}

/// The calls to make for a set of events.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Each a valid PutLogEvents call, sorted by timestamp, in ascending time order.
    pub batches: Vec<Vec<LogEvent>>,
    /// Events dropped because they are older than the service accepts.
    pub too_old: u64,
    /// Events whose future timestamp was clamped to `now`.
    pub clamped: u64,
}

/// Splits `events` into valid PutLogEvents calls, as of `now_ms`.
///
/// Events are sorted by timestamp; the sort is stable, so lines logged in the same
/// millisecond keep their order. A new call starts when the current one would exceed
/// [`MAX_BATCH_EVENTS`] or [`MAX_BATCH_BYTES`], or would span [`MAX_BATCH_SPAN`] or more.
pub fn plan(events: Vec<LogEvent>, now_ms: i64) -> Plan {
    let oldest = now_ms - millis(MAX_AGE) + millis(WINDOW_MARGIN);
    let newest = now_ms + millis(MAX_FUTURE) - millis(WINDOW_MARGIN);
    let mut out = Plan::default();
    let mut kept: Vec<LogEvent> = Vec::with_capacity(events.len());
    for mut event in events {
        if event.timestamp_ms < oldest {
            out.too_old += 1;
            continue;
        }
        if event.timestamp_ms > newest {
            event.timestamp_ms = now_ms;
            out.clamped += 1;
        }
        event.message = truncate(event.message);
        kept.push(event);
    }
    kept.sort_by_key(|e| e.timestamp_ms);

    let span = millis(MAX_BATCH_SPAN);
    let mut batch: Vec<LogEvent> = Vec::new();
    let mut bytes = 0;
    for event in kept {
        let full = batch.len() >= MAX_BATCH_EVENTS
            || bytes + event.size() > MAX_BATCH_BYTES
            || batch
                .first()
                .is_some_and(|first| event.timestamp_ms - first.timestamp_ms >= span);
        if full && !batch.is_empty() {
            out.batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += event.size();
        batch.push(event);
    }
    if !batch.is_empty() {
        out.batches.push(batch);
    }
    out
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const HOUR: i64 = 60 * 60 * 1000;

    fn ev(ts: i64, msg: &str) -> LogEvent {
        LogEvent::new(ts, msg.to_string())
    }

    fn assert_valid(plan: &Plan) {
        for b in &plan.batches {
            assert!(!b.is_empty());
            assert!(b.len() <= MAX_BATCH_EVENTS, "{} events", b.len());
            let bytes: usize = b.iter().map(LogEvent::size).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes} bytes");
            assert!(b.windows(2).all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
            let span = b.last().unwrap().timestamp_ms - b[0].timestamp_ms;
            assert!(span < 24 * HOUR, "span {span}");
            assert!(b.iter().all(|e| e.message.len() <= MAX_MESSAGE_BYTES));
        }
    }

    #[test]
    fn empty_input_plans_nothing() {
        assert_eq!(plan(vec![], NOW), Plan::default());
    }

    #[test]
    fn count_splits_at_10000() {
        let events: Vec<_> = (0..25_000).map(|i| ev(NOW - 25_000 + i, "x")).collect();
        let p = plan(events, NOW);
        assert_valid(&p);
        let sizes: Vec<_> = p.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
    }

    #[test]
    fn exactly_10000_is_one_call() {
        let events: Vec<_> = (0..10_000).map(|_| ev(NOW, "x")).collect();
        assert_eq!(plan(events, NOW).batches.len(), 1);
    }

    #[test]
    fn bytes_split_at_one_mebibyte_counting_overhead() {
        // 1000-byte messages count 1026 each: 1,048,576 / 1026 = 1022.004 → 1022 per call
        // (1,048,572 bytes); without the overhead 1048 would fit.
        let msg = "a".repeat(1000);
        let events: Vec<_> = (0..3000).map(|_| ev(NOW, &msg)).collect();
        let p = plan(events, NOW);
        assert_valid(&p);
        let sizes: Vec<_> = p.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1022, 1022, 956]);
    }

    #[test]
    fn a_call_may_fill_the_byte_limit_exactly() {
        // The largest message counts 256 KiB with its overhead: four fill 1 MiB exactly.
        let msg = "b".repeat(MAX_MESSAGE_BYTES);
        let events: Vec<_> = (0..5).map(|_| ev(NOW, &msg)).collect();
        let p = plan(events, NOW);
        assert_valid(&p);
        let sizes: Vec<_> = p.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 1]);
    }

    #[test]
    fn overhead_alone_can_split_tiny_events_by_bytes() {
        // Empty messages still count 26 bytes: never more than 10,000 of them though,
        // so the count rule wins (10,000 × 26 < 1 MiB).
        let events: Vec<_> = (0..10_001).map(|_| ev(NOW, "")).collect();
        let p = plan(events, NOW);
        assert_eq!(p.batches.len(), 2);
    }

    #[test]
    fn span_of_24_hours_splits() {
        let start = NOW - 13 * 24 * HOUR;
        let events = vec![
            ev(start, "a"),
            ev(start + 23 * HOUR, "b"),
            ev(start + 24 * HOUR - 1, "c"),
            ev(start + 24 * HOUR, "d"),
            ev(start + 47 * HOUR, "e"),
            ev(start + 72 * HOUR, "f"),
        ];
        let p = plan(events, NOW);
        assert_valid(&p);
        let msgs: Vec<Vec<&str>> = p
            .batches
            .iter()
            .map(|b| b.iter().map(|e| e.message.as_str()).collect())
            .collect();
        assert_eq!(msgs, vec![vec!["a", "b", "c"], vec!["d", "e"], vec!["f"]]);
    }

    #[test]
    fn events_are_sorted_and_ties_keep_their_order() {
        let events = vec![
            ev(NOW - 3, "third"),
            ev(NOW - 5, "first"),
            ev(NOW - 3, "fourth"),
            ev(NOW - 4, "second"),
            ev(NOW - 3, "fifth"),
        ];
        let p = plan(events, NOW);
        assert_valid(&p);
        let msgs: Vec<&str> = p.batches[0].iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs, ["first", "second", "third", "fourth", "fifth"]);
    }

    #[test]
    fn long_messages_are_truncated_with_a_marker_not_dropped() {
        let long = "z".repeat(300 * 1024);
        let p = plan(vec![ev(NOW, &long), ev(NOW, "short")], NOW);
        assert_valid(&p);
        let first = &p.batches[0][0];
        assert_eq!(first.message.len(), MAX_MESSAGE_BYTES);
        assert!(first.message.ends_with(TRUNCATION_MARKER));
        assert!(first.message.starts_with("zzz"));
        assert_eq!(p.batches[0][1].message, "short");
    }

    #[test]
    fn truncation_respects_utf8_boundaries() {
        // 4-byte characters: the cut must not split one.
        let long = "🦀".repeat(MAX_MESSAGE_BYTES / 4 + 10);
        let t = truncate(long);
        assert!(t.len() <= MAX_MESSAGE_BYTES);
        assert!(t.ends_with(TRUNCATION_MARKER));
        let body = &t[..t.len() - TRUNCATION_MARKER.len()];
        assert!(body.chars().all(|c| c == '🦀'));
        // A message exactly at the limit is untouched.
        let exact = "q".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(truncate(exact.clone()), exact);
    }

    #[test]
    fn truncation_also_applies_to_events_built_directly() {
        let raw = LogEvent {
            timestamp_ms: NOW,
            message: "y".repeat(MAX_MESSAGE_BYTES + 1),
        };
        let p = plan(vec![raw], NOW);
        assert_valid(&p);
        assert!(p.batches[0][0].message.ends_with(TRUNCATION_MARKER));
    }

    #[test]
    fn too_old_events_are_dropped_and_counted() {
        let fourteen_days = 14 * 24 * HOUR;
        let events = vec![
            ev(NOW - fourteen_days - 1, "ancient"),
            ev(NOW - fourteen_days + 1, "at the edge, inside the margin"),
            ev(-5, "negative"),
            ev(NOW - HOUR, "recent"),
        ];
        let p = plan(events, NOW);
        assert_valid(&p);
        assert_eq!(p.too_old, 3);
        assert_eq!(p.batches, vec![vec![ev(NOW - HOUR, "recent")]]);
    }

    #[test]
    fn future_events_are_clamped_to_now() {
        let events = vec![
            ev(NOW + 3 * HOUR, "from a fast clock"),
            ev(NOW + HOUR, "a little ahead, accepted as is"),
            ev(NOW - 1, "now-ish"),
        ];
        let p = plan(events, NOW);
        assert_valid(&p);
        assert_eq!(p.clamped, 1);
        assert_eq!(p.too_old, 0);
        let got: Vec<(i64, &str)> = p.batches[0]
            .iter()
            .map(|e| (e.timestamp_ms, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (NOW - 1, "now-ish"),
                (NOW, "from a fast clock"),
                (NOW + HOUR, "a little ahead, accepted as is"),
            ]
        );
    }

    #[test]
    fn all_rules_together_stay_valid() {
        // Mixed sizes, shuffled times over three days, some too old, some in the future.
        let mut events = Vec::new();
        let mut seed: u64 = 42;
        for i in 0..30_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ts = NOW - (seed >> 33) as i64 % (16 * 24 * HOUR) + 3 * HOUR;
            let len = if i % 1000 == 0 {
                200_000
            } else {
                (seed % 300) as usize
            };
            events.push(ev(ts, &"m".repeat(len)));
        }
        let total = events.len() as u64;
        let p = plan(events, NOW);
        assert_valid(&p);
        let kept: u64 = p.batches.iter().map(|b| b.len() as u64).sum();
        assert_eq!(kept + p.too_old, total);
        assert!(p.too_old > 0 && p.clamped > 0);
        // Calls come in ascending time order.
        let flat = p.batches.concat();
        assert!(
            flat.windows(2)
                .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
        );
    }
}
