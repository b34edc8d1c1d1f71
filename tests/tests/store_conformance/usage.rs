//! UsageStore: node time per cluster and hour, accrued from the ready-pod samples ingest
//! stores.

use std::sync::Arc;

use tether_control_plane::store::{Store, UsageRow};

use crate::telemetry::metric;
use crate::{compute_plane, tenant_with_cp};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;

/// `(compute plane, cluster, hour, node_ms)`, sorted.
async fn usage(
    store: &dyn Store,
    tenant: &str,
    since: i64,
    until: i64,
) -> Vec<(String, String, i64, i64)> {
    let mut rows: Vec<_> = store
        .usage(tenant, since, until)
        .await
        .expect("usage")
        .into_iter()
        .map(
            |UsageRow {
                 compute_plane_id,
                 cluster,
                 hour_ms,
                 node_ms,
             }| { (compute_plane_id, cluster, hour_ms, node_ms) },
        )
        .collect();
    rows.sort();
    rows
}

/// Ready workers plus the ready coordinator, held from sample to sample, split at hours;
/// resends and replays add nothing; each tenant sees its own.
pub async fn usage_is_node_time_per_cluster_and_hour(store: Arc<dyn Store>) {
    let (t, cp) = tenant_with_cp(&*store, "acme").await;
    let cp2 = compute_plane(&*store, &t.id, "dev").await;
    let (other_t, other_cp) = tenant_with_cp(&*store, "globex").await;
    // An hour boundary two hours ago: samples must not be from the future.
    let now = tether_shared::timestamps::now_unix_ms();
    let h = now - now.rem_euclid(HOUR) - 2 * HOUR;

    let first = vec![
        (1, metric("etl", "ready_workers", h - 2 * MIN, 2.0)),
        (2, metric("etl", "coordinator_ready", h - 2 * MIN, 1.0)),
        (3, metric("etl", "cpu_seconds", h - MIN, 500.0)),
        (4, metric("etl", "ready_workers", h + 2 * MIN, 3.0)),
        (5, metric("etl", "coordinator_ready", h + 2 * MIN, 1.0)),
    ];
    let second = vec![
        (6, metric("etl", "ready_workers", h + 4 * MIN, 0.0)),
        (7, metric("etl", "coordinator_ready", h + 4 * MIN, 1.0)),
        (8, metric("adhoc", "ready_workers", h + 10 * MIN, 1.0)),
        (9, metric("adhoc", "coordinator_ready", h + 10 * MIN, 1.0)),
        (10, metric("adhoc", "ready_workers", h + 15 * MIN, 1.0)),
    ];
    store
        .ingest(&cp.id, first.clone(), 0.into())
        .await
        .expect("first");
    store
        .ingest(&cp.id, second.clone(), 0.into())
        .await
        .expect("second");
    store
        .ingest(
            &cp2.id,
            vec![
                (1, metric("etl", "ready_workers", h, 1.0)),
                (2, metric("etl", "ready_workers", h + MIN, 1.0)),
            ],
            0.into(),
        )
        .await
        .expect("cp2");
    // Another tenant's cluster of the same name.
    store
        .ingest(
            &other_cp.id,
            vec![
                (1, metric("etl", "ready_workers", h, 4.0)),
                (2, metric("etl", "ready_workers", h + 3 * MIN, 4.0)),
            ],
            0.into(),
        )
        .await
        .expect("other tenant");

    let row = |cp: &str, cluster: &str, hour: i64, node_ms: i64| {
        (cp.to_owned(), cluster.to_owned(), hour, node_ms)
    };
    let mut expected = vec![
        // 2 workers + 1 coordinator for the 2 minutes before the hour.
        row(&cp.id, "etl", h - HOUR, (2 + 1) * 2 * MIN),
        // 2 workers for 2 min, 3 for 2 min, the coordinator for 4 min.
        row(&cp.id, "etl", h, 2 * 2 * MIN + 3 * 2 * MIN + 4 * MIN),
        // One worker for 5 minutes; the coordinator's one sample starts its series only.
        row(&cp.id, "adhoc", h, 5 * MIN),
        row(&cp2.id, "etl", h, MIN),
    ];
    expected.sort();
    assert_eq!(usage(&*store, &t.id, h - HOUR, h + HOUR).await, expected);

    // Resent batches and replayed samples (new numbers, old times) add nothing.
    store.ingest(&cp.id, first, 0.into()).await.expect("resend");
    store
        .ingest(&cp.id, second, 0.into())
        .await
        .expect("resend");
    let replay = vec![
        (11, metric("etl", "ready_workers", h + 2 * MIN, 3.0)),
        (12, metric("etl", "coordinator_ready", h - 2 * MIN, 1.0)),
    ];
    assert_eq!(
        store
            .ingest(&cp.id, replay, 0.into())
            .await
            .expect("replay"),
        (12, 2)
    );
    assert_eq!(usage(&*store, &t.id, h - HOUR, h + HOUR).await, expected);

    // The window is [since, until) over hour starts.
    let only_h: Vec<_> = expected.iter().filter(|r| r.2 == h).cloned().collect();
    assert_eq!(usage(&*store, &t.id, h, h + HOUR).await, only_h);
    let before_h: Vec<_> = expected.iter().filter(|r| r.2 < h).cloned().collect();
    assert_eq!(usage(&*store, &t.id, h - HOUR, h).await, before_h);
    assert!(
        usage(&*store, &t.id, h + HOUR, h + 5 * HOUR)
            .await
            .is_empty()
    );

    assert_eq!(
        usage(&*store, &other_t.id, h - HOUR, h + HOUR).await,
        vec![row(&other_cp.id, "etl", h, 4 * 3 * MIN)],
        "the other tenant sees only its own"
    );
    assert!(
        usage(&*store, "no-such-tenant", h - HOUR, h + HOUR)
            .await
            .is_empty()
    );
}
