//! The REST resources' JSON shapes, `/v1/query` filters, drain, and the service proxy.

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    DATA_SIZE, DATE_TIME, DURATION, QUERY_ID, assert_matches, bounded, get_json, http,
    quoted_value, sql_contains, start, status,
};
use crate::harness::eventually;
use crate::standins::kube::{KubeOptions, KubeStandIn};
use crate::standins::presto::PrestoOptions;

/// Asserts a `BasicQueryInfo` row has Presto's fields with Presto's types.
pub(super) fn assert_basic_query_info(row: &Value) {
    assert_matches(row, "queryId", QUERY_ID);
    let id = row["queryId"].as_str().unwrap_or_default();
    let state = row["state"].as_str().expect("state");
    assert!(
        ["QUEUED", "RUNNING", "FINISHED", "FAILED"].contains(&state),
        "{state}"
    );
    assert_eq!(row["resourceGroupId"], json!(["global"]));
    assert_eq!(row["memoryPool"], "general");
    assert!(row["scheduled"].is_boolean());
    assert!(
        row["self"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("/v1/query/{id}")))
    );
    assert!(row["query"].is_string());
    assert_matches(row, "queryHash", r"^[0-9a-f]{1,16}$");
    assert_eq!(row["queryType"], "SELECT");
    assert_eq!(row["warnings"], json!([]));
    assert!(row["preparedQuery"].is_null());

    let s = &row["session"];
    assert_eq!(s["queryId"], id);
    assert!(s["user"].is_string());
    assert!(s["principal"].is_null());
    assert!(s["transactionId"].is_null());
    assert_eq!(s["timeZoneKey"], 0);
    assert_eq!(s["locale"], "en_US");
    assert!(s["startTime"].is_i64());
    assert_eq!(s["clientTags"], json!([]));
    for k in [
        "systemProperties",
        "catalogProperties",
        "preparedStatements",
        "roles",
    ] {
        assert!(s[k].is_object(), "session.{k}");
    }
    for k in [
        "source",
        "catalog",
        "schema",
        "remoteUserAddress",
        "userAgent",
    ] {
        assert!(s[k].is_string() || s[k].is_null(), "session.{k}");
    }

    let q = &row["queryStats"];
    for k in ["createTime", "endTime"] {
        assert_matches(q, k, DATE_TIME);
    }
    let done = ["FINISHED", "FAILED"].contains(&state);
    assert_eq!(
        q["endTime"] == "1970-01-01T00:00:00.000Z",
        !done,
        "endTime of a {state} query"
    );
    for k in [
        "queuedTime",
        "elapsedTime",
        "executionTime",
        "analysisTime",
        "waitingForPrerequisitesTime",
        "totalCpuTime",
        "totalScheduledTime",
    ] {
        assert_matches(q, k, DURATION);
    }
    for k in [
        "rawInputDataSize",
        "userMemoryReservation",
        "totalMemoryReservation",
        "peakUserMemoryReservation",
        "peakTotalMemoryReservation",
        "peakTaskTotalMemoryReservation",
        "peakNodeTotalMemoryReservation",
        "totalAllocation",
    ] {
        assert_matches(q, k, DATA_SIZE);
    }
    for k in [
        "totalDrivers",
        "queuedDrivers",
        "runningDrivers",
        "completedDrivers",
        "runningTasks",
        "rawInputPositions",
    ] {
        assert!(q[k].is_u64(), "queryStats.{k} = {}", q[k]);
    }
    assert!(q["cumulativeUserMemory"].is_f64());
    assert!(q["cumulativeTotalMemory"].is_f64());
    assert!(q["fullyBlocked"].is_boolean());
    assert!(q["blockedReasons"].is_array());
    assert!(q["progressPercentage"].is_null() || q["progressPercentage"].is_f64());

    if state == "FAILED" {
        assert_failed(row);
    } else {
        for k in ["errorType", "errorCode", "failureInfo"] {
            assert!(row[k].is_null(), "{k} of a {state} query");
        }
    }
}

/// Asserts a FAILED row carries an error code and a failure that quotes its query.
pub(super) fn assert_failed(row: &Value) {
    let code = &row["errorCode"];
    assert!(code["code"].is_i64() && code["name"].is_string() && code["retriable"].is_boolean());
    assert_eq!(row["errorType"], code["type"]);
    let f = &row["failureInfo"];
    assert!(f["type"].is_string());
    assert!(
        f["stack"]
            .as_array()
            .is_some_and(|s| s.iter().all(Value::is_string))
    );
    assert_eq!(f["errorCode"], *code);
    let message = f["message"].as_str().expect("message");
    if code["name"] != "USER_CANCELED" {
        let value = quoted_value(message).unwrap_or_else(|| panic!("no value in {message}"));
        let sql = row["query"].as_str().unwrap_or_default();
        assert!(sql_contains(sql, &value), "{value} is not from {sql}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_in_prestos_json_shapes() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let url = p.url();

        let info = get_json(&format!("{url}/v1/info")).await;
        assert_eq!(info["nodeVersion"], json!({"version": "0.293"}));
        assert_eq!(info["environment"], "tether");
        assert_eq!(
            (&info["coordinator"], &info["starting"]),
            (&json!(true), &json!(false))
        );
        assert_matches(&info, "uptime", super::DURATION);

        let done = p.submit(
            "alice",
            Some("presto-cli"),
            Some("hive"),
            Some("default"),
            "SELECT 1",
        );
        let failed = p.submit(
            "bob",
            None,
            None,
            None,
            "SELECT CAST(email AS INT) FROM t WHERE email = 'alice@example.com' -- fail",
        );
        let queued = p.submit("carol", None, None, None, "SELECT 2");
        let rows = get_json(&format!("{url}/v1/query")).await;
        let rows = rows.as_array().expect("array");
        assert_eq!(rows.len(), 3);
        rows.iter().for_each(assert_basic_query_info);
        let row = rows
            .iter()
            .find(|r| r["queryId"] == queued.as_str())
            .expect("row");
        assert_eq!(row["state"], "QUEUED");
        assert!(row["queryStats"]["progressPercentage"].is_null());

        eventually(Duration::from_secs(5), "all three queries end", || async {
            (p.finished_ids().len() == 3).then_some(())
        })
        .await;
        let rows = get_json(&format!("{url}/v1/query")).await;
        rows.as_array()
            .expect("array")
            .iter()
            .for_each(assert_basic_query_info);
        let failed_rows = get_json(&format!("{url}/v1/query?state=failed")).await;
        assert_eq!(failed_rows.as_array().map(Vec::len), Some(1));
        let f = &failed_rows[0];
        assert_eq!(f["queryId"], failed.as_str());
        assert_eq!(f["errorCode"]["name"], "INVALID_CAST_ARGUMENT");
        assert_eq!(
            f["failureInfo"]["message"],
            "Cannot cast 'alice@example.com' to INT"
        );
        assert_eq!(f["session"]["user"], "bob");
        let ok = get_json(&format!("{url}/v1/query?state=FINISHED")).await;
        let ok = ok.as_array().expect("array");
        assert!(ok.iter().all(|r| r["state"] == "FINISHED") && !ok.is_empty());
        let s = &ok
            .iter()
            .find(|r| r["queryId"] == done.as_str())
            .expect("done")["session"];
        assert_eq!(
            (&s["user"], &s["source"], &s["catalog"], &s["schema"]),
            (
                &json!("alice"),
                &json!("presto-cli"),
                &json!("hive"),
                &json!("default")
            )
        );

        let detail = get_json(&format!("{url}/v1/query/{done}")).await;
        assert_basic_query_info(&detail);
        assert!(detail["outputStage"].is_null() && detail["inputs"].is_array());
        assert_eq!(detail["queryStats"]["totalTasks"], 5);

        let cluster = get_json(&format!("{url}/v1/cluster")).await;
        for k in [
            "runningQueries",
            "blockedQueries",
            "queuedQueries",
            "activeWorkers",
            "runningDrivers",
            "runningTasks",
            "totalInputRows",
            "totalInputBytes",
            "totalCpuTimeSecs",
            "adjustedQueueSize",
        ] {
            assert!(cluster[k].is_u64(), "{k} = {}", cluster[k]);
        }
        assert!(cluster["reservedMemory"].is_f64());
        assert_eq!(cluster["activeWorkers"], 2);
        assert_eq!(cluster, p.cluster_stats());

        let nodes = get_json(&format!("{url}/v1/node")).await;
        let nodes = nodes.as_array().expect("array");
        assert_eq!(nodes.len(), 2);
        for n in nodes {
            assert!(n["uri"].as_str().is_some_and(|u| u.starts_with("http://")));
            assert_matches(n, "age", super::DURATION);
            assert_matches(n, "lastRequestTime", super::DATE_TIME);
            assert_matches(n, "lastResponseTime", super::DATE_TIME);
            for k in [
                "recentRequests",
                "recentFailures",
                "recentSuccesses",
                "recentFailureRatio",
            ] {
                assert!(n[k].is_f64(), "{k}");
            }
            assert!(n["lastFailureInfo"].is_null());
            assert_eq!(n["recentFailuresByType"], json!({}));
        }
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_list_filters_and_limits() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let url = p.url();
        for i in 0..4 {
            p.submit("alice", None, None, None, &format!("SELECT {i}"));
        }
        assert_eq!(status(&format!("{url}/v1/query?limit=0")).await, 400);
        assert_eq!(status(&format!("{url}/v1/query?limit=-3")).await, 400);
        assert_eq!(status(&format!("{url}/v1/query?state=BOGUS")).await, 400);
        assert_eq!(
            status(&format!("{url}/v1/query/20250101_000000_00001_abcde")).await,
            410
        );
        let two = get_json(&format!("{}/v1/query?limit=2", p.url())).await;
        let two = two.as_array().expect("array");
        assert_eq!(two.len(), 2);
        // Sorted by state, then creation time, when the limit cuts the list.
        let rank = |r: &Value| {
            let order = ["RUNNING", "QUEUED", "FAILED", "FINISHED"];
            let state = order.iter().position(|s| r["state"] == *s);
            (
                state,
                r["queryStats"]["createTime"].as_str().map(str::to_owned),
            )
        };
        assert!(rank(&two[0]) <= rank(&two[1]), "{two:?}");
        assert_eq!(
            get_json(&format!("{}/v1/query?limit=9", p.url()))
                .await
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        let planning = get_json(&format!("{}/v1/query?state=planning", p.url())).await;
        assert_eq!(planning, json!([]));
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_one_way() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let state = format!("{}/v1/info/state", p.url());
        let put = |body: &'static str| {
            let state = state.clone();
            async move {
                http()
                    .put(&state)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("put")
            }
        };
        assert_eq!(get_json(&state).await, "ACTIVE");
        assert_eq!(put("\"INACTIVE\"").await.status().as_u16(), 200);
        assert_eq!(get_json(&state).await, "INACTIVE");
        assert_eq!(put("\"ACTIVE\"").await.status().as_u16(), 200);

        let resp = put("\"SHUTTING_DOWN\"").await;
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .is_ok_and(|c| c.starts_with("text/plain"))
        );
        assert_eq!(get_json(&state).await, "SHUTTING_DOWN");
        assert_eq!(p.node_state(), "SHUTTING_DOWN");
        assert_eq!(put("\"ACTIVE\"").await.status().as_u16(), 400);
        assert_eq!(put("\"INACTIVE\"").await.status().as_u16(), 400);
        assert_eq!(put("\"BOGUS\"").await.status().as_u16(), 400);
        assert_eq!(put("SHUTTING_DOWN").await.status().as_u16(), 400);
        let no_type = http()
            .put(&state)
            .body("\"SHUTTING_DOWN\"")
            .send()
            .await
            .expect("put");
        assert_eq!(no_type.status().as_u16(), 415);
        assert_eq!(get_json(&state).await, "SHUTTING_DOWN");
        p.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_proxy_reaches_the_coordinator() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let k = KubeStandIn::start(KubeOptions::default())
            .await
            .expect("kube stand-in");
        let services = format!("{}/api/v1/namespaces/tether/services", k.url());
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "analytics", "namespace": "tether"},
            "spec": {"selector": {"app": "presto"}, "ports": [{"name": "http", "port": 8080}]},
        });
        let created = http()
            .post(&services)
            .json(&svc)
            .send()
            .await
            .expect("create");
        assert_eq!(created.status().as_u16(), 201);
        k.register_service_backend("tether", "analytics", p.addr());

        let proxy = format!("{services}/analytics:8080/proxy");
        let info = get_json(&format!("{proxy}/v1/info")).await;
        assert_eq!(info["nodeVersion"]["version"], "0.293");
        assert_eq!(info["coordinator"], true);

        p.submit("alice", None, None, None, "SELECT 1");
        let rows = get_json(&format!("{proxy}/v1/query?limit=5")).await;
        assert_eq!(rows.as_array().map(Vec::len), Some(1));
        let drain = http()
            .put(format!("{proxy}/v1/info/state"))
            .header("content-type", "application/json")
            .body("\"SHUTTING_DOWN\"")
            .send()
            .await
            .expect("drain");
        assert_eq!(drain.status().as_u16(), 200);
        assert_eq!(
            get_json(&format!("{proxy}/v1/info/state")).await,
            "SHUTTING_DOWN"
        );
        k.shutdown().await;
        p.shutdown().await;
    })
    .await;
}
