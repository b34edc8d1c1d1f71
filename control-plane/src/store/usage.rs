//! Usage metering: node time per cluster and hour, integrated from the ready-pod samples
//! the agent reports. The integration is one pure function, [`accrue`], that both
//! backends call inside their ingest transaction.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// Node time of one cluster in one hour.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    /// Compute plane.
    pub compute_plane_id: String,
    /// Cluster.
    pub cluster: String,
    /// Start of the hour (Unix ms).
    pub hour_ms: i64,
    /// Node-milliseconds in that hour.
    pub node_ms: i64,
}

/// Usage read by the API.
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Node time per cluster and hour of a tenant's compute planes in `[since, until)`.
    async fn usage(
        &self,
        tenant_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<UsageRow>, StoreError>;
}

/// The metric samples whose sum is a cluster's ready nodes.
pub const NODE_SERIES: [&str; 2] = ["ready_workers", "coordinator_ready"];
/// A gap between two samples longer than this is not billed beyond it: the agent was not
/// reporting, so the time is unknown.
const MAX_BILLED_GAP_MS: i64 = 5 * 60 * 1000;
const HOUR_MS: i64 = 3_600_000;
/// How far ahead of the control plane's clock a sample may be.
const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// More ready pods than any cluster has.
const MAX_NODES: f64 = 100_000.0;

/// What a new sample `(ts_ms, value)` of a node series adds, given the series' last
/// sample: the previous value held from its time until this one (at most
/// [`MAX_BILLED_GAP_MS`]), split at hour boundaries, as `(hour_ms, node_ms)`. `None` when
/// the sample must be ignored entirely (the cursor stays): it is a resend or reordered
/// (at or before the last one), from the future beyond clock skew, or an absurd value.
pub fn accrue(
    last: Option<(i64, f64)>,
    ts_ms: i64,
    value: f64,
    now_ms: i64,
) -> Option<Vec<(i64, i64)>> {
    // The agent runs in the customer's account: a sample from the future would freeze the
    // series (later samples are "older"), an absurd value would overflow. Neither counts.
    if ts_ms > now_ms + MAX_CLOCK_SKEW_MS || !(0.0..=MAX_NODES).contains(&value) {
        return None;
    }
    let mut out = Vec::new();
    if let Some((last_ms, last_value)) = last {
        if ts_ms <= last_ms {
            return None;
        }
        let nodes = last_value.max(0.0);
        let mut from = last_ms;
        let to = ts_ms.min(last_ms + MAX_BILLED_GAP_MS);
        while nodes > 0.0 && from < to {
            let hour = from - from.rem_euclid(HOUR_MS);
            let end = to.min(hour + HOUR_MS);
            out.push((hour, ((end - from) as f64 * nodes).round() as i64));
            from = end;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_time_is_split_at_hours_and_gaps_are_capped() {
        let now = 10 * HOUR_MS;
        // The first sample only starts the series.
        assert_eq!(accrue(None, HOUR_MS - 60_000, 2.0, now), Some(vec![]));
        // Two nodes for one minute either side of an hour boundary.
        assert_eq!(
            accrue(Some((HOUR_MS - 60_000, 2.0)), HOUR_MS + 60_000, 3.0, now),
            Some(vec![(0, 120_000), (HOUR_MS, 120_000)])
        );
        // A silence of an hour bills at most the cap.
        assert_eq!(
            accrue(Some((0, 1.0)), HOUR_MS, 1.0, now),
            Some(vec![(0, MAX_BILLED_GAP_MS)])
        );
        // Resends, the future and absurd values are ignored.
        assert_eq!(accrue(Some((5, 1.0)), 5, 1.0, now), None);
        assert_eq!(accrue(None, now + HOUR_MS, 1.0, now), None);
        assert_eq!(accrue(None, 0, -1.0, now), None);
        assert_eq!(accrue(None, 0, 1e9, now), None);
    }
}
