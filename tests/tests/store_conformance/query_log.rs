//! TelemetryStore reads: the query log's filters and pages, metric samples by window.

use std::sync::Arc;

use tether_control_plane::store::{QueryFilter, QueryRow, Store};

use crate::telemetry::{all_queries, filter, ids, matching, metric, q, query_row};
use crate::{compute_plane, tenant_with_cp};

/// The query log's filters (cluster, user, state, time window, text) and its pages.
pub async fn query_log_filters_and_pages(store: Arc<dyn Store>) {
    let (_t, cp) = tenant_with_cp(&*store, "acme").await;
    let failed = |mut r: QueryRow| {
        r.state = "FAILED".into();
        r.error_type = "USER_ERROR".into();
        r.error_code = "SYNTAX_ERROR".into();
        r.error_message = "line 1:8: mismatched input".into();
        r
    };
    let rows = [
        query_row("q1", "etl", "alice", 1_000, "SELECT order_id FROM orders"),
        failed(query_row(
            "q2",
            "etl",
            "bob",
            2_000,
            "SELECT orderXid FROM orders",
        )),
        query_row("q3", "adhoc", "alice", 3_000, "SELECT 100% FROM dual"),
        query_row("q4", "adhoc", "carol", 4_000, "SELECT 1000 FROM dual"),
        failed(query_row(
            "q5",
            "etl",
            "alice",
            5_000,
            "select count(*) from lineitem",
        )),
        query_row("q6", "etl", "alice", 6_000, "SELECT count(*) FROM lineitem"),
    ];
    let batch = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i as u64 + 1, q(r.clone())))
        .collect();
    store.ingest(&cp.id, batch, 0.into()).await.expect("ingest");

    let f = |g: fn(&mut QueryFilter)| {
        let mut f = filter();
        g(&mut f);
        f
    };
    let cases: Vec<(&str, QueryFilter, Vec<&str>)> = vec![
        ("all", filter(), vec!["q6", "q5", "q4", "q3", "q2", "q1"]),
        (
            "cluster",
            f(|f| f.cluster = Some("etl".into())),
            vec!["q6", "q5", "q2", "q1"],
        ),
        (
            "user",
            f(|f| f.user = Some("alice".into())),
            vec!["q6", "q5", "q3", "q1"],
        ),
        (
            "state",
            f(|f| f.state = Some("FAILED".into())),
            vec!["q5", "q2"],
        ),
        (
            "since, inclusive",
            f(|f| f.since_ms = Some(3_000)),
            vec!["q6", "q5", "q4", "q3"],
        ),
        (
            "until, exclusive",
            f(|f| f.until_ms = Some(3_000)),
            vec!["q2", "q1"],
        ),
        (
            "window",
            f(|f| {
                f.since_ms = Some(2_000);
                f.until_ms = Some(5_000);
            }),
            vec!["q4", "q3", "q2"],
        ),
        (
            "text",
            f(|f| f.text = Some("count(*)".into())),
            vec!["q6", "q5"],
        ),
        (
            "text with _",
            f(|f| f.text = Some("order_id".into())),
            vec!["q1"],
        ),
        (
            "text with %",
            f(|f| f.text = Some("100%".into())),
            vec!["q3"],
        ),
        (
            "text nowhere",
            f(|f| f.text = Some("DROP TABLE".into())),
            vec![],
        ),
        (
            "no such user",
            f(|f| f.user = Some("mallory".into())),
            vec![],
        ),
        (
            "combined",
            f(|f| {
                f.cluster = Some("etl".into());
                f.user = Some("alice".into());
                f.state = Some("FINISHED".into());
            }),
            vec!["q6", "q1"],
        ),
    ];
    for (what, filter, expected) in cases {
        assert_eq!(matching(&*store, &cp.id, filter).await, expected, "{what}");
    }

    // Pages: the cursor continues after the last row; none after the last page.
    let paged = |limit: u32, cursor: Option<i64>, user: Option<&str>| {
        let store = store.clone();
        let f = QueryFilter {
            limit,
            cursor,
            user: user.map(str::to_owned),
            ..QueryFilter::default()
        };
        let cp = cp.id.clone();
        async move {
            let (rows, next) = store.query_log(&cp, &f).await.expect("page");
            (
                ids(&rows)
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                next,
            )
        }
    };
    let (p1, c1) = paged(2, None, None).await;
    assert_eq!(p1, ["q6", "q5"]);
    let c1 = c1.expect("more after the first page");
    let (p2, c2) = paged(2, Some(c1), None).await;
    assert_eq!(p2, ["q4", "q3"]);
    let (p3, c3) = paged(2, Some(c2.expect("more after the second page")), None).await;
    assert_eq!(p3, ["q2", "q1"]);
    assert_eq!(c3, None, "the last page has no cursor");
    // Exactly a page's worth of matches: no cursor to an empty page.
    let (p, c) = paged(4, None, Some("alice")).await;
    assert_eq!(p, ["q6", "q5", "q3", "q1"]);
    assert_eq!(c, None);
    let (p, c) = paged(3, None, Some("alice")).await;
    assert_eq!(p, ["q6", "q5", "q3"]);
    let (p, c) = paged(3, Some(c.expect("one more")), Some("alice")).await;
    assert_eq!(p, ["q1"]);
    assert_eq!(c, None);

    // Every field round-trips.
    let stored = all_queries(&*store, &cp.id, &filter()).await;
    for r in &rows {
        let got = stored
            .iter()
            .find(|s| s.query_id == r.query_id)
            .expect("stored");
        assert_eq!(
            serde_json::to_value(got).expect("json"),
            serde_json::to_value(r).expect("json"),
            "{}",
            r.query_id
        );
    }
}

/// Metric samples by name, cluster and window `[since, until)`, values exact.
pub async fn metric_samples_filter_by_name_cluster_and_window(store: Arc<dyn Store>) {
    let (t, cp) = tenant_with_cp(&*store, "acme").await;
    let other = compute_plane(&*store, &t.id, "dev").await;
    let batch = vec![
        (1, metric("etl", "cpu", 1_000, 0.1)),
        (2, metric("etl", "cpu", 2_000, 2.5)),
        (3, metric("adhoc", "cpu", 1_500, 123_456.789)),
        (4, metric("etl", "heap_bytes", 1_000, 1.5e10)),
        (5, metric("etl", "cpu", 2_999, -0.25)),
    ];
    store.ingest(&cp.id, batch, 0.into()).await.expect("ingest");
    store
        .ingest(
            &other.id,
            vec![(1, metric("etl", "cpu", 1_000, 7.0))],
            0.into(),
        )
        .await
        .expect("ingest other");

    let get =
        |name: Option<&'static str>, cluster: Option<&'static str>, since: i64, until: i64| {
            let store = store.clone();
            let cp = cp.id.clone();
            async move {
                let mut s = store
                    .metric_samples(&cp, name, cluster, since, until)
                    .await
                    .expect("samples");
                s.sort_by(|a, b| (&a.1, &a.0, a.2).cmp(&(&b.1, &b.0, b.2)));
                s
            }
        };
    let row =
        |cluster: &str, name: &str, ts: i64, v: f64| (cluster.to_owned(), name.to_owned(), ts, v);
    assert_eq!(
        get(Some("cpu"), None, 0, 10_000).await,
        vec![
            row("adhoc", "cpu", 1_500, 123_456.789),
            row("etl", "cpu", 1_000, 0.1),
            row("etl", "cpu", 2_000, 2.5),
            row("etl", "cpu", 2_999, -0.25),
        ]
    );
    assert_eq!(
        get(Some("cpu"), Some("etl"), 0, 10_000).await,
        vec![
            row("etl", "cpu", 1_000, 0.1),
            row("etl", "cpu", 2_000, 2.5),
            row("etl", "cpu", 2_999, -0.25),
        ]
    );
    assert_eq!(
        get(None, Some("etl"), 0, 10_000).await,
        vec![
            row("etl", "cpu", 1_000, 0.1),
            row("etl", "cpu", 2_000, 2.5),
            row("etl", "cpu", 2_999, -0.25),
            row("etl", "heap_bytes", 1_000, 1.5e10),
        ]
    );
    assert_eq!(
        get(None, None, 1_000, 2_000).await,
        vec![
            row("adhoc", "cpu", 1_500, 123_456.789),
            row("etl", "cpu", 1_000, 0.1),
            row("etl", "heap_bytes", 1_000, 1.5e10),
        ],
        "since is inclusive, until exclusive"
    );
    assert!(get(None, None, 2_000, 2_000).await.is_empty());
    assert!(get(Some("memory"), None, 0, 10_000).await.is_empty());
    assert!(get(Some("cpu"), Some("nope"), 0, 10_000).await.is_empty());
}
