//! End-to-end tests of the stand-in over HTTP: JSON shapes, workloads and retention, drain,
//! the client protocol (raw and through `presto-python-client`), and the Kubernetes service
//! proxy. Every test is bounded by [`bounded`].

mod endpoints;
mod python;
mod statement;
mod workload;

use std::future::Future;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;

use super::{PrestoOptions, PrestoStandIn};

/// Runs a test body, failing it after 60 s.
async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test timed out")
}

/// A stand-in on a free loopback port.
async fn start(opts: PrestoOptions) -> PrestoStandIn {
    PrestoStandIn::start(opts).await.expect("start stand-in")
}

/// A client that never goes through an environment proxy.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

/// `GET url` as JSON, asserting 200.
async fn get_json(url: &str) -> Value {
    let resp = http().get(url).send().await.expect("get");
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    resp.json().await.expect("json body")
}

/// The status of `GET url`.
async fn status(url: &str) -> u16 {
    http().get(url).send().await.expect("get").status().as_u16()
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("regex")
}

/// Asserts `v[key]` is a string matching `pattern`.
fn assert_matches(v: &Value, key: &str, pattern: &str) {
    let s = v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"));
    assert!(
        re(pattern).is_match(s),
        "{key} = {s:?} does not match {pattern}"
    );
}

const DURATION: &str = r"^\d+\.\d{2}(ns|us|ms|s|m|h|d)$";
const DATA_SIZE: &str = r"^\d+(\.\d{2})?(B|kB|MB|GB|TB|PB)$";
const DATE_TIME: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$";
const QUERY_ID: &str = r"^\d{8}_\d{6}_\d{5}_[a-z0-9]{5}$";

/// The value a failure message quotes, if it quotes one of the shapes the stand-in makes.
fn quoted_value(message: &str) -> Option<String> {
    let cast = re(r"^Cannot cast '(.*)' to INT$");
    let range = re(r"^Value (\S+) out of range$");
    cast.captures(message)
        .or_else(|| range.captures(message))
        .map(|c| c[1].to_owned())
}

/// True if `sql` contains `value` as a literal (strings compared with `''` escapes).
fn sql_contains(sql: &str, value: &str) -> bool {
    sql.contains(value) || sql.contains(&value.replace('\'', "''"))
}
