//! Can the catalogs' sources be reached from here? For each catalog a cluster attaches, the
//! agent opens a TCP connection to every endpoint it names — the JDBC host and port, an
//! external metastore's Thrift address, the regional Glue and S3 endpoints (through the
//! HTTPS proxy when the environment names one, as Presto's AWS clients would go) — and
//! publishes the result per catalog; the reconciler reports it as the condition
//! `CatalogReachable` on each cluster that attaches the catalog. A wrong host or a missing
//! security-group rule then shows before a query fails.
//!
//! The check runs where the agent runs: in the cluster (manifest install) it sees what the
//! Presto pods see; on ECS Fargate (the CloudFormation install) it sees the VPC from the
//! agent's subnets, whose security group only lets HTTPS out, so JDBC and Thrift endpoints
//! are not checked there (`--catalog-checks aws`).

use std::collections::BTreeMap;
use std::time::Duration;

use hyper_util::client::proxy::matcher::Matcher;
use tether_shared::spec::{CatalogSpec, Connector};
use tokio::sync::watch;

use crate::desired::Desired;

/// One connection attempt's bound.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Which endpoints are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CatalogChecks {
    /// Every endpoint: JDBC, Thrift, Glue and S3.
    All,
    /// Only the AWS endpoints (Glue, S3): where the agent's network is not the pods'.
    Aws,
    /// None.
    Off,
}

/// Per catalog, `None` when every endpoint answered, else what did not.
pub type CatalogReach = BTreeMap<String, Option<String>>;

/// An address a catalog depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// What it is, for people: `JDBC`, `metastore`, `Glue`, `S3`.
    pub what: &'static str,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// An AWS endpoint (HTTPS, through the proxy if there is one).
    pub aws: bool,
}

/// `host[:port]` pairs of a JDBC or Thrift authority list (`a:1,b:2`, `[::1]:5432`); an
/// entry that cannot be read is passed over.
fn hosts(list: &str, default_port: u16) -> Vec<(String, u16)> {
    list.split(',')
        .filter_map(|h| authority(h, default_port))
        .collect()
}

/// One entry of an authority list: `host`, `host:port` or `[v6]:port`; `None` when it is
/// empty or its port is not a number.
pub(crate) fn authority(entry: &str, default_port: u16) -> Option<(String, u16)> {
    let h = entry.trim();
    if h.is_empty() {
        return None;
    }
    if let Some(rest) = h.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default_port);
        return Some((addr.to_owned(), port));
    }
    match h.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((h.to_owned(), default_port)),
    }
}

/// The endpoints of `catalog`; `region` is the agent's AWS region (for Glue without its
/// own). The built-in metastore (an in-cluster Service) is Kubernetes' to check.
pub fn endpoints(catalog: &CatalogSpec, region: &str) -> Vec<Endpoint> {
    let p = &catalog.properties;
    let mut out = Vec::new();
    match catalog.connector {
        Connector::Mysql | Connector::Postgresql => {
            let (scheme, port) = match catalog.connector {
                Connector::Mysql => ("jdbc:mysql://", 3306),
                _ => ("jdbc:postgresql://", 5432),
            };
            if let Some(rest) = p.get("connection-url").and_then(|u| u.strip_prefix(scheme)) {
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                for (host, port) in hosts(authority, port) {
                    out.push(Endpoint {
                        what: "JDBC",
                        host,
                        port,
                        aws: false,
                    });
                }
            }
        }
        Connector::Hive => {
            if p.get("hive.metastore").map(String::as_str) == Some("glue") {
                let region = p
                    .get("hive.metastore.glue.region")
                    .map_or(region, String::as_str);
                for (what, service) in [("Glue", "glue"), ("S3", "s3")] {
                    out.push(Endpoint {
                        what,
                        host: format!("{service}.{region}.amazonaws.com"),
                        port: 443,
                        aws: true,
                    });
                }
            } else if let Some(uris) = p.get("hive.metastore.uri") {
                let list: Vec<&str> = uris
                    .split(',')
                    .filter_map(|u| u.trim().strip_prefix("thrift://"))
                    .collect();
                for (host, port) in hosts(&list.join(","), 9083) {
                    out.push(Endpoint {
                        what: "metastore",
                        host,
                        port,
                        aws: false,
                    });
                }
            }
        }
    }
    out
}

/// Connects to `e` (through the proxy for AWS endpoints), within [`CONNECT_TIMEOUT`].
async fn check(e: &Endpoint, proxy: &Matcher) -> Result<(), String> {
    let attempt = async {
        if e.aws {
            let uri: http::Uri = format!("https://{}:{}", e.host, e.port)
                .parse()
                .map_err(|err| format!("{err}"))?;
            crate::transport::tcp_to(&uri, proxy)
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        } else {
            tokio::net::TcpStream::connect((e.host.as_str(), e.port))
                .await
                .map(drop)
                .map_err(|err| err.to_string())
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer within {} s (a security group or firewall dropping it?)",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Checks every attached catalog now, then every `interval` and on every desired-state
/// change, publishing on `out`, until `stop`.
pub async fn run(
    mode: CatalogChecks,
    interval: Duration,
    region: String,
    mut desired: watch::Receiver<Desired>,
    out: watch::Sender<CatalogReach>,
    mut stop: watch::Receiver<bool>,
) {
    if mode == CatalogChecks::Off || interval.is_zero() {
        return;
    }
    let proxy = Matcher::from_env();
    loop {
        let catalogs: Vec<(String, CatalogSpec)> = desired
            .borrow_and_update()
            .as_ref()
            .map(|d| {
                let attached: std::collections::BTreeSet<&String> =
                    d.clusters.values().flat_map(|c| &c.catalogs).collect();
                d.catalogs
                    .iter()
                    .filter(|(n, _)| attached.contains(n))
                    .map(|(n, c)| (n.clone(), c.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut result = CatalogReach::new();
        for (name, catalog) in &catalogs {
            let eps: Vec<Endpoint> = endpoints(catalog, &region)
                .into_iter()
                .filter(|e| mode == CatalogChecks::All || e.aws)
                .collect();
            if eps.is_empty() {
                continue;
            }
            let checks = eps.iter().map(|e| check(e, &proxy));
            let failed: Vec<String> = futures::future::join_all(checks)
                .await
                .into_iter()
                .zip(&eps)
                .filter_map(|(r, e)| {
                    r.err()
                        .map(|why| format!("{} {}:{}: {why}", e.what, e.host, e.port))
                })
                .collect();
            result.insert(
                name.clone(),
                (!failed.is_empty()).then(|| failed.join("; ")),
            );
        }
        out.send_if_modified(|r| {
            let changed = *r != result;
            if changed {
                for (name, why) in &result {
                    if let Some(why) = why {
                        tracing::warn!(catalog = name, "catalog endpoint unreachable: {why}");
                    }
                }
                *r = result;
            }
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            r = desired.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> CatalogSpec {
        serde_json::from_value(v).expect("catalog")
    }

    #[test]
    fn endpoints_of_each_connector() {
        let mysql = spec(serde_json::json!({"connector": "mysql",
            "properties": {"connection-url": "jdbc:mysql://db1:3307,db2/orders?useSSL=true"}}));
        let e: Vec<(String, u16)> = endpoints(&mysql, "us-east-1")
            .into_iter()
            .map(|e| (e.host, e.port))
            .collect();
        assert_eq!(e, [("db1".into(), 3307), ("db2".into(), 3306)]);
        let pg = spec(serde_json::json!({"connector": "postgresql",
            "properties": {"connection-url": "jdbc:postgresql://[fd00::5]:6543/app"}}));
        assert_eq!(endpoints(&pg, "x")[0].host, "fd00::5");
        assert_eq!(endpoints(&pg, "x")[0].port, 6543);
        let glue = spec(serde_json::json!({"connector": "hive",
            "properties": {"hive.metastore": "glue", "hive.metastore.glue.region": "eu-west-1"}}));
        let hosts: Vec<String> = endpoints(&glue, "us-east-1")
            .into_iter()
            .map(|e| e.host)
            .collect();
        assert_eq!(
            hosts,
            ["glue.eu-west-1.amazonaws.com", "s3.eu-west-1.amazonaws.com"]
        );
        let thrift = spec(serde_json::json!({"connector": "hive",
            "properties": {"hive.metastore.uri": "thrift://hms-a:9083,thrift://hms-b"}}));
        assert_eq!(endpoints(&thrift, "x").len(), 2);
        let built_in = spec(serde_json::json!({"connector": "hive", "properties": {}}));
        assert!(endpoints(&built_in, "x").is_empty());
    }
}
