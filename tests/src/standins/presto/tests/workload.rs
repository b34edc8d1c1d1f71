//! Workloads end every query, failures quote their queries, counters move, and retention
//! follows `query.max-history` and `query.min-expire-age`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::endpoints::{assert_basic_query_info, assert_failed};
use super::{bounded, get_json, http, start};
use crate::harness::eventually;
use crate::standins::presto::{PrestoOptions, Workload};

fn u64_of(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_ends_every_query_and_moves_the_counters() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let before = p.cluster_stats();
        assert_eq!(u64_of(&before, "totalInputRows"), 0);
        let w = p.start_workload(Workload {
            count: Some(200),
            per_second: 400.0,
            run_time: Duration::from_millis(300),
            fail_ratio: 0.3,
            ..Workload::default()
        });

        // While it runs, the cluster shows live queries.
        eventually(
            Duration::from_secs(5),
            "live queries in /v1/cluster",
            || async {
                let c = get_json(&format!("{}/v1/cluster", p.url())).await;
                let live = u64_of(&c, "runningQueries")
                    + u64_of(&c, "blockedQueries")
                    + u64_of(&c, "queuedQueries");
                (live > 0
                    && u64_of(&c, "runningDrivers") > 0
                    && c["reservedMemory"].as_f64() > Some(0.0))
                .then_some(())
            },
        )
        .await;
        eventually(Duration::from_secs(20), "the workload ends", || async {
            w.is_done().then_some(())
        })
        .await;

        assert_eq!(p.submitted(), 200);
        let ids = p.finished_ids();
        assert_eq!(ids.len(), 200);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200, "unique");
        assert_eq!(
            ids.iter().collect::<HashSet<_>>(),
            w.ids().iter().collect::<HashSet<_>>()
        );

        let rows = get_json(&format!("{}/v1/query", p.url())).await;
        let rows = rows.as_array().expect("array");
        assert_eq!(
            rows.len(),
            200,
            "max-history 100, but all ended < 15 min ago"
        );
        rows.iter().for_each(assert_basic_query_info);
        let failed: Vec<&Value> = rows.iter().filter(|r| r["state"] == "FAILED").collect();
        assert!(
            !failed.is_empty() && failed.len() < 200,
            "{} failed",
            failed.len()
        );
        failed.iter().for_each(|r| assert_failed(r));
        let codes: HashSet<&str> = failed
            .iter()
            .filter_map(|r| r["errorCode"]["name"].as_str())
            .collect();
        assert!(codes.contains("INVALID_CAST_ARGUMENT"), "{codes:?}");
        assert!(rows.iter().all(|r| r["session"]["user"] == "analyst"));

        let after = p.cluster_stats();
        for k in [
            "runningQueries",
            "blockedQueries",
            "queuedQueries",
            "runningDrivers",
            "runningTasks",
        ] {
            assert_eq!(u64_of(&after, k), 0, "{k}");
        }
        assert_eq!(after["reservedMemory"].as_f64(), Some(0.0));
        assert!(u64_of(&after, "totalInputRows") > 0);
        assert!(u64_of(&after, "totalInputBytes") > u64_of(&after, "totalInputRows"));
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_queries_expire_beyond_max_history() {
    bounded(async {
        let p = start(PrestoOptions {
            max_history: 10,
            min_expire_age: Duration::from_secs(1),
            ..PrestoOptions::default()
        })
        .await;
        let w = p.start_workload(Workload {
            count: Some(40),
            per_second: 400.0,
            run_time: Duration::from_millis(100),
            ..Workload::default()
        });
        eventually(Duration::from_secs(10), "the workload ends", || async {
            w.is_done().then_some(())
        })
        .await;
        let ids = p.finished_ids();
        assert_eq!(ids.len(), 40);

        let url = format!("{}/v1/query", p.url());
        let rows = eventually(Duration::from_secs(5), "ten queries left", || async {
            let rows = get_json(&url).await;
            (rows.as_array().map(Vec::len) == Some(10)).then_some(rows)
        })
        .await;
        let kept: HashSet<&str> = rows
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["queryId"].as_str())
            .collect();
        let last: HashSet<&str> = ids[30..].iter().map(String::as_str).collect();
        assert_eq!(kept, last, "the ten that ended last stay");
        let gone = http()
            .get(format!("{url}/{}", ids[0]))
            .send()
            .await
            .expect("get");
        assert_eq!(gone.status().as_u16(), 410);
        assert_eq!(p.finished_ids().len(), 40, "finished ids outlive retention");

        // Still ten after another expiry round.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(get_json(&url).await.as_array().map(Vec::len), Some(10));
        p.shutdown().await;
    })
    .await;
}
