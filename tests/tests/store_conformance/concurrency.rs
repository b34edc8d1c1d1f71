//! Concurrent writers: every method is atomic, and contention is the store's problem, not
//! the caller's (no "database is locked", no serialization failure leaks out).

use std::collections::BTreeSet;
use std::sync::Arc;

use tether_control_plane::store::{QueryFilter, Store};
use tether_shared::status::{ClusterStatus, Phase};

use crate::telemetry::{all_queries, metric, q, query_row};
use crate::{cluster, compute_plane, cp_now, glue_catalog, tenant_with_cp};

const TASKS: usize = 4;
const ITERATIONS: usize = 25;

/// 4 tasks × 25 rounds of put_cluster + record_cluster_status + record_applied on one
/// compute plane: none fails, each change gets its own generation, and the final
/// generation is one per change.
pub async fn concurrent_desired_state_writers_never_fail(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    assert_eq!(
        store
            .put_catalog(&cp.id, "lake", &glue_catalog("us-east-1"), 0)
            .await
            .expect("lake"),
        1
    );
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let cp = cp.id.clone();
            tokio::spawn(async move {
                let name = format!("cluster-{task}");
                let mut generations = Vec::new();
                for i in 0..ITERATIONS {
                    let spec = cluster(1 + i as u32, &["lake"]);
                    let g = store
                        .put_cluster(&cp, &name, &spec, i as i64)
                        .await
                        .unwrap_or_else(|e| panic!("{name} round {i}: put_cluster: {e}"))
                        .unwrap_or_else(|c| panic!("{name} round {i}: put_cluster: {c:?}"));
                    let status = ClusterStatus {
                        phase: Phase::Running,
                        coordinator_ready: true,
                        ready_workers: 1 + i as u32,
                        desired_workers: 1 + i as u32,
                        endpoint: Some(format!("http://{name}:8080")),
                        conditions: vec![],
                        last_error: None,
                    };
                    store
                        .record_cluster_status(&cp, &name, &status, g)
                        .await
                        .unwrap_or_else(|e| panic!("{name} round {i}: status: {e}"));
                    store
                        .record_applied(&cp, g, &[])
                        .await
                        .unwrap_or_else(|e| panic!("{name} round {i}: applied: {e}"));
                    generations.push(g);
                }
                (name, generations)
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in tasks {
        let (name, gens) = t.await.expect("writer task");
        assert!(
            gens.windows(2).all(|w| w[0] < w[1]),
            "{name}: generations of one writer grow: {gens:?}"
        );
        let row = store
            .get_cluster(&cp.id, &name)
            .await
            .expect("get")
            .expect("cluster");
        let last = *gens.last().expect("rounds");
        assert_eq!(row.generation, last, "{name}: stamped with its last change");
        assert_eq!(
            row.observed_generation, last,
            "{name}: observed its last change"
        );
        assert_eq!(row.spec, cluster(ITERATIONS as u32, &["lake"]));
        assert_eq!(
            row.status.map(|s| s.ready_workers),
            Some(ITERATIONS as u32),
            "{name}: the last status"
        );
        for g in gens {
            assert!(all.insert(g), "generation {g} handed out twice");
        }
    }
    let changes = (TASKS * ITERATIONS) as i64;
    assert_eq!(
        all,
        (2..=1 + changes).collect::<BTreeSet<_>>(),
        "one generation per change"
    );
    let now = cp_now(&*store, &cp.id).await;
    assert_eq!(now.generation, 1 + changes);
    assert_eq!(now.applied_generation, 1 + changes, "the highest ack wins");
    let d = store.desired_state(&cp.id).await.expect("desired");
    assert_eq!(d.generation, 1 + changes);
    assert_eq!(d.clusters.len(), TASKS);
}

/// 4 compute planes ingesting at once, each its own range of sequence numbers in several
/// batches: every record lands, on the right compute plane.
pub async fn concurrent_ingests_for_many_compute_planes_all_land(store: Arc<dyn Store>) {
    const BATCHES: u64 = 5;
    const PER_BATCH: u64 = 60;
    let (t, first) = tenant_with_cp(&*store, "acme").await;
    let mut cps = vec![first];
    for i in 1..TASKS {
        cps.push(compute_plane(&*store, &t.id, &format!("cp-{i}")).await);
    }
    let now = tether_shared::timestamps::now_unix_ms();
    let base_ts = now - now.rem_euclid(3_600_000) - 3_600_000;
    let tasks: Vec<_> = cps
        .iter()
        .enumerate()
        .map(|(n, cp)| {
            let store = store.clone();
            let cp = cp.id.clone();
            tokio::spawn(async move {
                // Disjoint ranges: compute plane n numbers from n * 10,000 + 1.
                let start = n as u64 * 10_000;
                for b in 0..BATCHES {
                    let batch = (1..=PER_BATCH)
                        .map(|i| {
                            let seq = start + b * PER_BATCH + i;
                            // Times within the last hours, whatever the range.
                            let ts = base_ts + (seq - start) as i64 * 1_000;
                            let item = if i % 3 == 0 {
                                // Usage accrues too, on every compute plane at once.
                                metric("etl", "ready_workers", ts, 2.0)
                            } else {
                                q(query_row(
                                    &format!("cp{n}-q{seq}"),
                                    "etl",
                                    "alice",
                                    ts,
                                    "SELECT 1",
                                ))
                            };
                            (seq, item)
                        })
                        .collect();
                    let (high, new) = store
                        .ingest(&cp, batch, 0.into())
                        .await
                        .unwrap_or_else(|e| panic!("cp {n} batch {b}: {e}"));
                    assert_eq!(high, start + (b + 1) * PER_BATCH, "cp {n} batch {b}");
                    assert_eq!(new, PER_BATCH, "cp {n} batch {b}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("ingest task");
    }
    let records = BATCHES * PER_BATCH;
    let queries = records - records / 3;
    for (n, cp) in cps.iter().enumerate() {
        let start = n as u64 * 10_000;
        assert_eq!(
            store.telemetry_state(&cp.id).await.expect("state"),
            (start + records, 0)
        );
        let f = QueryFilter {
            limit: 1000,
            ..QueryFilter::default()
        };
        let rows = all_queries(&*store, &cp.id, &f).await;
        assert_eq!(rows.len() as u64, queries, "cp {n}");
        let prefix = format!("cp{n}-");
        assert!(
            rows.iter().all(|r| r.query_id.starts_with(&prefix)),
            "cp {n} has only its own queries"
        );
        let samples = store
            .metric_samples(&cp.id, Some("ready_workers"), None, 0, i64::MAX / 2)
            .await
            .expect("samples");
        assert_eq!(samples.len() as u64, records / 3, "cp {n}");
    }
    // Each compute plane's samples 3 s apart, two workers: 6 s of node time per interval.
    let usage = store
        .usage(&t.id, base_ts - 3_600_000, base_ts + 3 * 3_600_000)
        .await
        .expect("usage");
    for (n, cp) in cps.iter().enumerate() {
        let node_ms: i64 = usage
            .iter()
            .filter(|u| u.compute_plane_id == cp.id)
            .map(|u| u.node_ms)
            .sum();
        let intervals = (records / 3 - 1) as i64;
        assert_eq!(node_ms, intervals * 3 * 1_000 * 2, "cp {n}");
    }
}
