//! The client protocol over raw HTTP: submit, follow `nextUri`, fail, cancel.

use serde_json::{Value, json};

use super::{bounded, get_json, http, start};
use crate::standins::presto::PrestoOptions;

/// POSTs `sql` as alice from the CLI against hive.default.
async fn post(url: &str, sql: &str) -> Value {
    let resp = http()
        .post(format!("{url}/v1/statement"))
        .header("X-Presto-User", "alice")
        .header("X-Presto-Source", "presto-cli")
        .header("X-Presto-Catalog", "hive")
        .header("X-Presto-Schema", "default")
        .header("User-Agent", "StatementClientV1/0.293")
        .body(sql.to_owned())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json")
}

/// Follows `nextUri` until there is none; every response in order.
async fn follow(first: Value) -> Vec<Value> {
    let mut all = vec![first];
    while let Some(next) = all
        .last()
        .and_then(|r| r["nextUri"].as_str())
        .map(str::to_owned)
    {
        assert!(all.len() < 10, "too many pages");
        all.push(get_json(&next).await);
    }
    all
}

/// `PUT /v1/query/{id}/killed`; the status.
async fn kill(url: &str, id: &str) -> u16 {
    http()
        .put(format!("{url}/v1/query/{id}/killed"))
        .body("too slow")
        .send()
        .await
        .expect("kill")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_run_to_rows_or_errors() {
    bounded(async {
        let p = start(PrestoOptions::default()).await;
        let url = p.url();

        let anonymous = http()
            .post(format!("{url}/v1/statement"))
            .body("SELECT 1")
            .send()
            .await
            .expect("post");
        assert_eq!(anonymous.status().as_u16(), 400);
        assert!(
            anonymous
                .text()
                .await
                .is_ok_and(|t| t.contains("User must be set"))
        );

        let sql = "SELECT 1 WHERE 'alice@example.com' = 'x'";
        let pages = follow(post(&url, sql).await).await;
        let states: Vec<&str> = pages
            .iter()
            .filter_map(|r| r["stats"]["state"].as_str())
            .collect();
        assert_eq!(states, ["QUEUED", "RUNNING", "FINISHED"]);
        let first = &pages[0];
        let id = first["id"].as_str().expect("id");
        assert!(
            first["infoUri"]
                .as_str()
                .is_some_and(|u| u.starts_with(&url))
        );
        let next = first["nextUri"].as_str().expect("nextUri");
        assert!(next.starts_with(&format!("{url}/v1/statement/queued/{id}/1?slug=")));
        assert!(
            pages[1]["nextUri"]
                .as_str()
                .is_some_and(|u| u.contains("/executing/"))
        );
        assert!(first.get("data").is_none() && first.get("error").is_none());
        for k in ["queued", "scheduled"] {
            assert!(first["stats"][k].is_boolean());
        }
        for k in [
            "nodes",
            "totalSplits",
            "cpuTimeMillis",
            "elapsedTimeMillis",
            "processedRows",
            "peakMemoryBytes",
        ] {
            assert!(first["stats"][k].is_u64(), "{k}");
        }
        let last = pages.last().expect("last");
        assert_eq!(last["data"].as_array().map(Vec::len), Some(3));
        assert_eq!(last["columns"][0]["typeSignature"]["rawType"], "bigint");
        assert_eq!(last["columns"][0]["typeSignature"]["arguments"], json!([]));

        let row = get_json(&format!("{url}/v1/query/{id}")).await;
        assert_eq!(
            (&row["state"], &row["query"]),
            (&json!("FINISHED"), &json!(sql))
        );
        let s = &row["session"];
        assert_eq!(
            [
                &s["user"],
                &s["source"],
                &s["catalog"],
                &s["schema"],
                &s["userAgent"],
                &s["remoteUserAddress"]
            ],
            [
                &json!("alice"),
                &json!("presto-cli"),
                &json!("hive"),
                &json!("default"),
                &json!("StatementClientV1/0.293"),
                &json!("127.0.0.1")
            ]
        );

        let pages =
            follow(post(&url, "SELECT 1 WHERE 'alice@example.com' = 'x' AND FAIL").await).await;
        let last = pages.last().expect("last");
        assert_eq!(last["stats"]["state"], "FAILED");
        let e = &last["error"];
        assert_eq!(e["message"], "Cannot cast 'alice@example.com' to INT");
        assert_eq!(
            (&e["errorCode"], &e["errorName"], &e["errorType"]),
            (
                &json!(9),
                &json!("INVALID_CAST_ARGUMENT"),
                &json!("USER_ERROR")
            )
        );
        assert_eq!(
            e["failureInfo"]["type"],
            "com.facebook.presto.spi.PrestoException"
        );
        assert!(e["errorLocation"].is_null());

        // Cancel through nextUri, as the CLI does on Ctrl-C.
        let first = post(&url, "SELECT * FROM big").await;
        let next = first["nextUri"].as_str().expect("nextUri");
        let id = first["id"].as_str().expect("id");
        let bad = next.replace("slug=", "slug=nope");
        assert_eq!(
            http()
                .get(&bad)
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
            404
        );
        let del = http().delete(next).send().await.expect("delete");
        assert_eq!(del.status().as_u16(), 204);
        let row = get_json(&format!("{url}/v1/query/{id}")).await;
        assert_eq!(
            (&row["state"], &row["errorCode"]["name"]),
            (&json!("FAILED"), &json!("USER_CANCELED"))
        );

        // Kill through the query resource.
        let first = post(&url, "SELECT * FROM bigger").await;
        let id = first["id"].as_str().expect("id");
        assert_eq!(kill(&url, id).await, 200);
        assert_eq!(kill(&url, id).await, 409);
        assert_eq!(kill(&url, "20250101_000000_00009_zzzzz").await, 410);
        let row = get_json(&format!("{}/v1/query/{id}", p.url())).await;
        assert_eq!(
            row["failureInfo"]["message"],
            "Query killed. Message: too slow"
        );
        p.shutdown().await;
    })
    .await;
}
