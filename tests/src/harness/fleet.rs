//! Several control-plane replicas, real processes, on one real PostgreSQL database with
//! one secret key: what an operator runs behind a load balancer.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::postgres::PgServer;
use super::{Api, ControlPlaneOptions, ControlPlaneProc, eventually};

/// Flags that make replicas quick for tests: a short lease (a killed replica's sessions
/// are marked disconnected within it), a short drain, frequent heartbeats.
pub const TEST_REPLICA_ARGS: [&str; 6] = [
    "--replica-lease",
    "3s",
    "--drain-spread",
    "1s",
    "--heartbeat-interval",
    "1s",
];

/// Flags of a replica (besides the data dir and addresses).
pub fn replica_args(db_url: &str, key_file: &std::path::Path, name: &str) -> Vec<String> {
    [
        "--database",
        db_url,
        "--secret-key-file",
        &key_file.display().to_string(),
        "--replica-name",
        name,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Replicas on one database.
#[derive(Debug)]
pub struct Fleet {
    /// The replicas, `r1`, `r2`, … (a killed one stays in place, dead).
    pub replicas: Vec<ControlPlaneProc>,
    /// The database URL they share.
    pub db_url: String,
    /// The secret key file they share.
    pub key_file: PathBuf,
    /// The platform admin token (written by the first replica).
    pub admin_token: String,
    tmp: tempfile::TempDir,
}

impl Fleet {
    /// Starts `n` replicas on a fresh database of `pg`: the first alone (it creates the
    /// CA and the admin token), then the others together.
    pub async fn start(pg: &PgServer, n: usize, extra: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let key_file = tmp.path().join("secret-key");
        write_secret_key(&key_file);
        let db_url = pg.create_database().await;
        let mut fleet = Self {
            replicas: vec![],
            db_url,
            key_file,
            admin_token: String::new(),
            tmp,
        };
        let first = fleet.start_replica(1, extra).await;
        fleet.admin_token = first.admin_token();
        fleet.replicas.push(first);
        let rest = futures::future::join_all((2..=n).map(|i| fleet.start_replica(i, extra))).await;
        fleet.replicas.extend(rest);
        fleet
    }

    /// Starts replica `r{i}` (its own data dir), on ports outside the ephemeral range: a
    /// replica killed and started again on its address must find it free, and with tens of
    /// thousands of agents connecting from 127.0.0.1 an ephemeral port is soon some
    /// client's source port.
    pub async fn start_replica(&self, i: usize, extra: &[&str]) -> ControlPlaneProc {
        let mut args = replica_args(&self.db_url, &self.key_file, &format!("r{i}"));
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        ControlPlaneProc::start(ControlPlaneOptions {
            data_dir: Some(self.tmp.path().join(format!("r{i}"))),
            http_listen: format!("127.0.0.1:{}", port_below_ephemeral_range()),
            grpc_listen: format!("127.0.0.1:{}", port_below_ephemeral_range()),
            extra_args: args,
            ..ControlPlaneOptions::default()
        })
        .await
    }

    /// Replica `i`'s API (0-based) as the platform admin.
    pub fn api(&self, i: usize) -> Api {
        Api::new(&self.replicas[i].http, &self.admin_token)
    }

    /// The gRPC URLs of the replicas `which` (0-based), comma-separated, as an agent's
    /// `--control-plane`.
    pub fn urls(&self, which: &[usize]) -> String {
        which
            .iter()
            .map(|&i| self.replicas[i].grpc_url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until `api` shows the compute plane connected through replica `name`.
    pub async fn held_by(api: &Api, cp: &str, name: &str, secs: u64) -> Value {
        eventually(
            Duration::from_secs(secs),
            &format!("compute plane {cp} held by {name}"),
            || async {
                let (_, v) = api.get(&format!("/compute-planes/{cp}")).await;
                (v["agent"]["connected"] == true && v["agent"]["replica"] == name).then_some(v)
            },
        )
        .await
    }

    /// Which replica (`r1`, …) holds the compute plane's session, as `api` shows it.
    pub async fn holder(api: &Api, cp: &str, secs: u64) -> String {
        eventually(
            Duration::from_secs(secs),
            &format!("compute plane {cp} connected"),
            || async {
                let (_, v) = api.get(&format!("/compute-planes/{cp}")).await;
                if v["agent"]["connected"] != true {
                    return None;
                }
                v["agent"]["replica"].as_str().map(str::to_owned)
            },
        )
        .await
    }

    /// Index of replica `name` (`r1` is 0).
    pub fn index(name: &str) -> usize {
        name.trim_start_matches('r')
            .parse::<usize>()
            .map(|i| i - 1)
            .unwrap_or_else(|_| panic!("replica name {name}"))
    }
}

/// A free loopback port below the kernel's ephemeral range (where no client socket takes
/// its source port), or 0 (any) if none is found.
pub fn port_below_ephemeral_range() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let base = 10_000u16.min(low.saturating_sub(1000));
    for _ in 0..200 {
        let port = base + rand::random::<u16>() % (low - base).max(1);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    0
}

/// Writes a fresh key-encryption key (32 random bytes, base64) with mode 0600.
pub fn write_secret_key(path: &std::path::Path) {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    tether_shared::files::write_private(path, format!("{text}\n").as_bytes()).expect("secret key");
}
