//! The real `presto-python-client` (`prestodb`) against the stand-in. CI installs it with
//! `pip install presto-python-client`; without it this test fails and says so.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::{bounded, get_json, start};
use crate::standins::presto::PrestoOptions;

/// Runs a query that returns rows and one that fails, then prints what came back as JSON.
const SCRIPT: &str = r#"
import json, sys
import prestodb
host, port = sys.argv[1], int(sys.argv[2])
conn = prestodb.dbapi.connect(host=host, port=port, user='alice', catalog='hive', schema='default')
cur = conn.cursor()
cur.execute("SELECT 1 WHERE 'alice@example.com' = 'x'")
rows = cur.fetchall()
out = {"rows": rows, "columns": [d[0] for d in cur.description], "id": cur.stats["queryId"]}
try:
    cur = conn.cursor()
    cur.execute("SELECT 1 WHERE 'alice@example.com' = 'x' AND FAIL")
    cur.fetchall()
    out["error"] = None
except prestodb.exceptions.PrestoUserError as e:
    out["error"] = {"message": e.message, "name": e.error_name, "type": e.error_exception}
print(json.dumps(out))
"#;

/// Runs `python3` with `args`, never through an environment proxy.
async fn python(args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(args)
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("python3 timed out")
        .expect("python3 runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presto_python_client_fetches_rows_and_errors() {
    bounded(async {
        let probe = python(&["-c", "import prestodb"]).await;
        assert!(
            probe.status.success(),
            "presto-python-client is not installed (install it with \
             `pip install presto-python-client`): {}",
            String::from_utf8_lossy(&probe.stderr)
        );
        let p = start(PrestoOptions::default()).await;
        let port = p.addr().port().to_string();
        let out = python(&["-c", SCRIPT, "127.0.0.1", &port]).await;
        assert!(
            out.status.success(),
            "python client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json from the script");
        let rows = v["rows"].as_array().expect("rows");
        assert!(rows.len() >= 2, "{v}");
        assert_eq!(v["columns"][0], "_col0");
        let e = &v["error"];
        assert_eq!(e["name"], "INVALID_CAST_ARGUMENT", "{v}");
        assert_eq!(e["message"], "Cannot cast 'alice@example.com' to INT");

        let id = v["id"].as_str().expect("query id");
        let row = get_json(&format!("{}/v1/query/{id}", p.url())).await;
        assert_eq!(row["query"], "SELECT 1 WHERE 'alice@example.com' = 'x'");
        let s = &row["session"];
        assert_eq!(
            (&s["user"], &s["source"], &s["catalog"], &s["schema"]),
            (
                &Value::from("alice"),
                &Value::from("presto-python-client"),
                &Value::from("hive"),
                &Value::from("default")
            )
        );
        p.shutdown().await;
    })
    .await;
}
