//! TelemetryStore: ingest (dedup by sequence number and query id), the query log, metric
//! samples, purge.

use std::collections::BTreeSet;
use std::sync::Arc;

use tether_control_plane::store::{DroppedRecords, QueryFilter, QueryRow, Store, TelemetryItem};

use crate::{assert_not_found, compute_plane, cp_now, tenant_with_cp};

/// A finished query record with every field set.
pub(crate) fn query_row(id: &str, cluster: &str, user: &str, end_ms: i64, text: &str) -> QueryRow {
    QueryRow {
        query_id: id.to_owned(),
        cluster: cluster.to_owned(),
        user: user.to_owned(),
        source: "presto-cli".to_owned(),
        catalog: "lake".to_owned(),
        schema: "sales".to_owned(),
        state: "FINISHED".to_owned(),
        error_type: String::new(),
        error_code: String::new(),
        error_message: String::new(),
        create_time_ms: end_ms - 1_500,
        end_time_ms: end_ms,
        queued_time_ms: 12,
        elapsed_time_ms: 1_500,
        cpu_time_ms: 2_750,
        peak_memory_bytes: 64 << 20,
        input_rows: 1_000_000,
        input_bytes: 5_000_000_000,
        output_rows: 42,
        query: text.to_owned(),
        fingerprint: format!("fp-{text}"),
    }
}

pub(crate) fn q(row: QueryRow) -> TelemetryItem {
    TelemetryItem::Query(Box::new(row))
}

pub(crate) fn metric(cluster: &str, name: &str, ts_ms: i64, value: f64) -> TelemetryItem {
    TelemetryItem::Metric {
        cluster: cluster.to_owned(),
        name: name.to_owned(),
        ts_ms,
        value,
    }
}

fn event(cluster: &str, ts_ms: i64) -> TelemetryItem {
    TelemetryItem::Event {
        cluster: cluster.to_owned(),
        kind: "Warning".to_owned(),
        reason: "BackOff".to_owned(),
        message: "Back-off restarting failed container presto-worker".to_owned(),
        ts_ms,
    }
}

pub(crate) fn filter() -> QueryFilter {
    QueryFilter {
        limit: 100,
        ..QueryFilter::default()
    }
}

/// Every query record matching `f`, paging with `f.limit`; checks that each page is at
/// most `limit` long and that no record comes twice.
pub(crate) async fn all_queries(store: &dyn Store, cp: &str, f: &QueryFilter) -> Vec<QueryRow> {
    let mut out: Vec<QueryRow> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut f = f.clone();
    for _ in 0..10_000 {
        let (page, next) = store.query_log(cp, &f).await.expect("query log");
        assert!(page.len() <= f.limit as usize, "page longer than the limit");
        for r in &page {
            assert!(
                seen.insert(r.query_id.clone()),
                "{} on two pages",
                r.query_id
            );
        }
        out.extend(page);
        match next {
            Some(c) => {
                assert_ne!(f.cursor, Some(c), "the cursor did not move");
                f.cursor = Some(c);
            }
            None => return out,
        }
    }
    panic!("query log never ended");
}

pub(crate) fn ids(rows: &[QueryRow]) -> Vec<&str> {
    rows.iter().map(|r| r.query_id.as_str()).collect()
}

/// The query ids matching `f`, newest first, all pages.
pub(crate) async fn matching(store: &dyn Store, cp: &str, f: QueryFilter) -> Vec<String> {
    ids(&all_queries(store, cp, &f).await)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

pub(crate) async fn samples(store: &dyn Store, cp: &str) -> Vec<(String, String, i64, f64)> {
    store
        .metric_samples(cp, None, None, i64::MIN / 2, i64::MAX / 2)
        .await
        .expect("metric samples")
}

/// A batch is stored once: sequence numbers at or below the mark and query ids already
/// stored are skipped; the answer is the new mark and how many were above the old one.
pub async fn ingest_is_idempotent_by_sequence_and_query_id(store: Arc<dyn Store>) {
    let (t, cp) = tenant_with_cp(&*store, "acme").await;
    let other = compute_plane(&*store, &t.id, "dev").await;
    assert_eq!(store.telemetry_state(&cp.id).await.expect("state"), (0, 0));
    let first = query_row("q1", "etl", "alice", 10_000, "SELECT 1");
    let batch = vec![
        (1, metric("etl", "cpu_seconds", 1_000, 0.5)),
        (2, q(first.clone())),
        (3, event("etl", 1_100)),
    ];
    assert_eq!(
        store
            .ingest(&cp.id, batch.clone(), 0.into())
            .await
            .expect("ingest"),
        (3, 3)
    );
    assert_eq!(store.telemetry_state(&cp.id).await.expect("state"), (3, 0));
    // The same batch again (the ack was lost): nothing new.
    assert_eq!(
        store.ingest(&cp.id, batch, 0.into()).await.expect("again"),
        (3, 0)
    );
    assert_eq!(matching(&*store, &cp.id, filter()).await, ["q1"]);
    assert_eq!(samples(&*store, &cp.id).await.len(), 1);

    // A resend below the mark with new records after it: only those count.
    let resend = vec![
        (
            2,
            q(query_row("q1", "etl", "alice", 10_000, "SELECT changed")),
        ),
        (3, metric("etl", "cpu_seconds", 1_000, 0.5)),
        (4, q(query_row("q2", "etl", "bob", 11_000, "SELECT 2"))),
        (5, metric("etl", "cpu_seconds", 2_000, 0.75)),
    ];
    assert_eq!(
        store
            .ingest(&cp.id, resend, 0.into())
            .await
            .expect("resend"),
        (5, 2)
    );
    assert_eq!(matching(&*store, &cp.id, filter()).await, ["q2", "q1"]);
    assert_eq!(
        samples(&*store, &cp.id).await,
        vec![
            ("etl".to_owned(), "cpu_seconds".to_owned(), 1_000, 0.5),
            ("etl".to_owned(), "cpu_seconds".to_owned(), 2_000, 0.75),
        ]
    );

    // One query id twice in a batch, and a stored one under a new sequence number: both
    // count as new records, each query is stored once, the first copy kept.
    let dup = vec![
        (6, q(query_row("q3", "etl", "alice", 12_000, "SELECT 3"))),
        (
            7,
            q(query_row("q3", "etl", "alice", 12_000, "SELECT 3 again")),
        ),
        (
            8,
            q(query_row("q1", "etl", "alice", 10_000, "SELECT 1 again")),
        ),
    ];
    assert_eq!(
        store.ingest(&cp.id, dup, 0.into()).await.expect("dup"),
        (8, 3)
    );
    let rows = all_queries(&*store, &cp.id, &filter()).await;
    assert_eq!(ids(&rows), ["q3", "q2", "q1"]);
    let text_of = |id: &str| {
        rows.iter()
            .find(|r| r.query_id == id)
            .map(|r| r.query.clone())
    };
    assert_eq!(text_of("q1").as_deref(), Some("SELECT 1"));
    assert_eq!(text_of("q3").as_deref(), Some("SELECT 3"));
    // Exactly as sent.
    assert_eq!(
        serde_json::to_value(rows.iter().find(|r| r.query_id == "q1").expect("q1")).expect("json"),
        serde_json::to_value(&first).expect("json")
    );

    // Gaps and disorder: the mark is the highest number seen; below it is old.
    let gap = vec![
        (21, metric("etl", "cpu_seconds", 3_000, 1.0)),
        (20, metric("etl", "cpu_seconds", 2_500, 1.0)),
    ];
    assert_eq!(
        store.ingest(&cp.id, gap, 0.into()).await.expect("gap"),
        (21, 2)
    );
    let late = vec![(15, metric("etl", "cpu_seconds", 2_200, 9.0))];
    assert_eq!(
        store.ingest(&cp.id, late, 0.into()).await.expect("late"),
        (21, 0)
    );
    assert_eq!(samples(&*store, &cp.id).await.len(), 4);

    // What the agent reports dropped.
    assert_eq!(
        store.ingest(&cp.id, vec![], 7.into()).await.expect("empty"),
        (21, 0)
    );
    assert_eq!(store.telemetry_state(&cp.id).await.expect("state"), (21, 7));
    assert_eq!(cp_now(&*store, &cp.id).await.telemetry_dropped, 7);
    // Per class, running totals: a late batch with smaller counts lowers nothing.
    let by_class = DroppedRecords {
        total: 16,
        events: 1,
        metrics: 3,
        query_records: 12,
    };
    store
        .ingest(&cp.id, vec![], by_class)
        .await
        .expect("classes");
    let late = DroppedRecords {
        total: 9,
        events: 0,
        metrics: 4,
        query_records: 5,
    };
    store
        .ingest(&cp.id, vec![], late)
        .await
        .expect("late counts");
    let now = cp_now(&*store, &cp.id).await;
    assert_eq!(
        now.telemetry_dropped_by_class,
        DroppedRecords {
            metrics: 4,
            ..by_class
        }
    );
    assert_eq!(now.telemetry_dropped, 16);

    // Another compute plane has its own mark and its own query ids.
    assert_eq!(
        store.telemetry_state(&other.id).await.expect("state"),
        (0, 0)
    );
    let theirs = vec![(
        1,
        q(query_row("q1", "adhoc", "carol", 20_000, "SELECT 'theirs'")),
    )];
    assert_eq!(
        store
            .ingest(&other.id, theirs, 0.into())
            .await
            .expect("other"),
        (1, 1)
    );
    let rows = all_queries(&*store, &other.id, &filter()).await;
    assert_eq!(ids(&rows), ["q1"]);
    assert_eq!(rows[0].query, "SELECT 'theirs'");
    assert_eq!(
        all_queries(&*store, &cp.id, &filter()).await.len(),
        3,
        "the first compute plane is untouched"
    );
    assert!(samples(&*store, &other.id).await.is_empty());
}

/// A batch far larger than any one statement holds lands whole, each record once.
pub async fn large_batch_lands_exactly_once(store: Arc<dyn Store>) {
    const QUERIES: usize = 3_200;
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let mut batch = Vec::new();
    let mut seq = 0u64;
    let (mut metrics, mut queries) = (0, 0);
    while queries < QUERIES {
        seq += 1;
        let item = match seq % 12 {
            0 => event("etl", seq as i64),
            1 => {
                metrics += 1;
                metric("etl", "cpu_seconds", seq as i64, seq as f64 / 4.0)
            }
            _ => {
                queries += 1;
                // Ends later the later it comes: "newest first" means one order.
                let text = format!("SELECT * FROM t WHERE id = {queries}");
                q(query_row(
                    &format!("q{queries:05}"),
                    "etl",
                    "alice",
                    1_000_000 + seq as i64,
                    &text,
                ))
            }
        };
        batch.push((seq, item));
    }
    let total = seq;
    assert!(total > 3_000);
    assert_eq!(
        store
            .ingest(&cp.id, batch.clone(), 0.into())
            .await
            .expect("big batch"),
        (total, total)
    );
    let f = QueryFilter {
        limit: 250,
        ..QueryFilter::default()
    };
    let rows = all_queries(&*store, &cp.id, &f).await;
    assert_eq!(rows.len(), QUERIES, "every query exactly once");
    let distinct: BTreeSet<&str> = rows.iter().map(|r| r.query_id.as_str()).collect();
    assert_eq!(distinct.len(), QUERIES);
    assert!(
        rows.windows(2).all(|w| w[0].end_time_ms > w[1].end_time_ms),
        "newest first across pages"
    );
    assert_eq!(rows[0].query_id, format!("q{QUERIES:05}"));
    assert_eq!(rows[QUERIES - 1].query_id, "q00001");
    let one = rows
        .iter()
        .find(|r| r.query_id == "q01234")
        .expect("q01234");
    assert_eq!(one.query, "SELECT * FROM t WHERE id = 1234");
    assert_eq!(samples(&*store, &cp.id).await.len(), metrics);

    // The whole batch again: nothing new, nothing doubled.
    assert_eq!(
        store.ingest(&cp.id, batch, 0.into()).await.expect("again"),
        (total, 0)
    );
    assert_eq!(all_queries(&*store, &cp.id, &f).await.len(), QUERIES);
    assert_eq!(samples(&*store, &cp.id).await.len(), metrics);
}

/// Purge deletes telemetry strictly older than the cut-off, of every compute plane, and
/// says how much; marks and usage stay.
pub async fn purge_deletes_only_older_telemetry(store: Arc<dyn Store>) {
    let (t, a) = tenant_with_cp(&*store, "acme").await;
    let b = compute_plane(&*store, &t.id, "dev").await;
    let (old, cut, new) = (1_000, 100_000, 200_000);
    let batch_a = vec![
        (1, q(query_row("old", "etl", "alice", old, "SELECT 1"))),
        (2, q(query_row("edge", "etl", "alice", cut, "SELECT 2"))),
        (3, q(query_row("new", "etl", "alice", new, "SELECT 3"))),
        (4, metric("etl", "cpu", old, 1.0)),
        (5, metric("etl", "cpu", cut, 2.0)),
        (6, metric("etl", "cpu", new, 3.0)),
        (7, event("etl", old)),
        (8, event("etl", new)),
        // Two ready workers for a minute: 120,000 node-ms of usage in hour 0.
        (9, metric("etl", "ready_workers", old, 2.0)),
        (10, metric("etl", "ready_workers", old + 60_000, 2.0)),
    ];
    let batch_b = vec![
        (1, q(query_row("old-b", "adhoc", "bob", old, "SELECT 4"))),
        (2, metric("adhoc", "cpu", old, 1.0)),
        (3, event("adhoc", old)),
        (4, event("adhoc", cut)),
    ];
    assert_eq!(
        store
            .ingest(&a.id, batch_a.clone(), 0.into())
            .await
            .expect("a"),
        (10, 10)
    );
    assert_eq!(
        store.ingest(&b.id, batch_b, 0.into()).await.expect("b"),
        (4, 4)
    );
    let usage_before = store.usage(&t.id, 0, 3_600_000).await.expect("usage");
    assert_eq!(usage_before.iter().map(|u| u.node_ms).sum::<i64>(), 120_000);

    // a: 1 query, 3 samples, 1 event; b: 1 query, 1 sample, 1 event.
    assert_eq!(store.purge_telemetry(cut).await.expect("purge"), 8);
    assert_eq!(matching(&*store, &a.id, filter()).await, ["new", "edge"]);
    assert!(matching(&*store, &b.id, filter()).await.is_empty());
    let left: Vec<i64> = samples(&*store, &a.id).await.iter().map(|s| s.2).collect();
    assert_eq!(left, [cut, new]);
    assert!(samples(&*store, &b.id).await.is_empty());
    assert_eq!(store.purge_telemetry(cut).await.expect("purge again"), 0);

    // The marks stay: a resend of purged records stores nothing again.
    assert_eq!(store.telemetry_state(&a.id).await.expect("state").0, 10);
    assert_eq!(
        store
            .ingest(&a.id, batch_a, 0.into())
            .await
            .expect("resend"),
        (10, 0)
    );
    assert_eq!(matching(&*store, &a.id, filter()).await, ["new", "edge"]);
    // Usage is billing: kept beyond telemetry retention.
    let usage_after = store.usage(&t.id, 0, 3_600_000).await.expect("usage");
    assert_eq!(usage_after.iter().map(|u| u.node_ms).sum::<i64>(), 120_000);
}

/// A purge of more rows than any one delete takes (10,000 samples, 5,001 queries) deletes
/// every one of them, counts them all, and keeps the newer.
pub async fn purge_of_many_rows_deletes_them_all(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let (old_samples, old_queries) = (10_000u64, 5_001u64);
    let cut = 1_000_000;
    let mut batch = Vec::new();
    for i in 0..old_samples {
        batch.push((i + 1, metric("etl", "cpu", i as i64, 1.0)));
    }
    for i in 0..old_queries {
        let id = format!("old-{i}");
        batch.push((
            old_samples + i + 1,
            q(query_row(&id, "etl", "alice", i as i64, "SELECT 1")),
        ));
    }
    let n = batch.len() as u64;
    batch.push((n + 1, metric("etl", "cpu", cut, 2.0)));
    batch.push((
        n + 2,
        q(query_row("new", "etl", "alice", cut + 1, "SELECT 2")),
    ));
    assert_eq!(
        store.ingest(&cp.id, batch, 0.into()).await.expect("ingest"),
        (n + 2, n + 2)
    );

    assert_eq!(
        store.purge_telemetry(cut).await.expect("purge"),
        old_samples + old_queries
    );
    assert_eq!(matching(&*store, &cp.id, filter()).await, ["new"]);
    assert_eq!(
        samples(&*store, &cp.id).await,
        vec![("etl".to_owned(), "cpu".to_owned(), cut, 2.0)]
    );
    assert_eq!(store.purge_telemetry(cut).await.expect("purge again"), 0);
}

/// Telemetry of a compute plane that does not exist.
pub async fn telemetry_of_missing_compute_plane_is_not_found(store: Arc<dyn Store>) {
    assert_not_found(
        store
            .ingest(
                "no-such-cp",
                vec![(1, metric("etl", "cpu", 1, 1.0))],
                0.into(),
            )
            .await,
        "ingest",
    );
    assert_not_found(store.telemetry_state("no-such-cp").await, "telemetry_state");
    assert!(samples(&*store, "no-such-cp").await.is_empty());
}
