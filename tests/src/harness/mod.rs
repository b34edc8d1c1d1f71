//! The harness: processes, API client, waiting, the egress proxy, and PostgreSQL servers.

mod api;
pub mod fleet;
pub mod grpc;
pub mod moto;
pub mod netns;
pub mod oidc;
pub mod postgres;
pub mod presto_env;
mod procs;
pub mod relay;
pub mod slapd;
pub mod tinyproxy;
pub mod web;
pub mod webdriver;

pub use api::Api;
pub use procs::{AgentOptions, AgentProc, ControlPlaneOptions, ControlPlaneProc, bin_path, doctor};
pub use tinyproxy::Tinyproxy;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it yields `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Installs the one crypto provider; call first in every test.
pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A tenant with one compute plane, made through the API as an operator would.
#[derive(Debug, Clone)]
pub struct TenantFixture {
    /// Tenant id.
    pub tenant_id: String,
    /// Compute plane id.
    pub cp_id: String,
    /// A tenant admin token.
    pub admin_token: String,
}

impl TenantFixture {
    /// Creates tenant `name` with compute plane `prod` and an admin token.
    pub async fn create(api: &Api, name: &str) -> Self {
        Self::create_from(api, serde_json::json!({"name": name})).await
    }

    /// A tenant created with `body` (e.g. with an `aws_account_id`), its admin token and
    /// a compute plane.
    pub async fn create_from(api: &Api, body: serde_json::Value) -> Self {
        let t = api.ok_post("/tenants", &body).await;
        let tenant_id = t["id"].as_str().expect("tenant id").to_owned();
        let tok = api
            .ok_post(
                &format!("/tenants/{tenant_id}/tokens"),
                &serde_json::json!({"role": "admin"}),
            )
            .await;
        let admin_token = tok["token"].as_str().expect("token").to_owned();
        let cp = api
            .as_token(&admin_token)
            .ok_post(
                &format!("/tenants/{tenant_id}/compute-planes"),
                &serde_json::json!({"name": "prod", "region": "us-east-1"}),
            )
            .await;
        let cp_id = cp["id"].as_str().expect("cp id").to_owned();
        Self {
            tenant_id,
            cp_id,
            admin_token,
        }
    }

    /// A fresh enrollment token for the compute plane.
    pub async fn enrollment_token(&self, api: &Api, ttl_seconds: u64) -> String {
        let r = api
            .as_token(&self.admin_token)
            .ok_post(
                &format!("/compute-planes/{}/enrollment-tokens", self.cp_id),
                &serde_json::json!({"ttl_seconds": ttl_seconds}),
            )
            .await;
        r["token"].as_str().expect("enrollment token").to_owned()
    }

    /// Waits (up to `secs`) until the API shows the agent connected; returns the compute
    /// plane as shown then.
    pub async fn connected(&self, api: &Api, secs: u64) -> serde_json::Value {
        eventually(
            Duration::from_secs(secs),
            "agent connected in the API",
            || async {
                let cp = self.get(api).await;
                (cp["agent"]["connected"] == true).then_some(cp)
            },
        )
        .await
    }

    /// The compute plane as the API shows it.
    pub async fn get(&self, api: &Api) -> serde_json::Value {
        api.as_token(&self.admin_token)
            .ok_get(&format!("/compute-planes/{}", self.cp_id))
            .await
    }
}

/// The desired state an agent persisted in `state_dir`, as
/// `{"compute_plane_id", "generation", "state": {"clusters": {name: spec}, "catalogs": …}}`
/// (the file holds the signed document with each spec as its JSON text); `None` when
/// there is none or it does not parse.
pub fn read_persisted_desired_state(state_dir: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(state_dir.join("desired-state.json")).ok()?;
    let file: serde_json::Value = serde_json::from_str(&text).ok()?;
    let doc = &file["document"];
    let specs = |kind: &str| -> serde_json::Map<String, serde_json::Value> {
        doc[kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = s["name"].as_str()?.to_owned();
                let spec = serde_json::from_str(s["spec_json"].as_str()?).ok()?;
                Some((name, spec))
            })
            .collect()
    };
    Some(serde_json::json!({
        "compute_plane_id": file["compute_plane_id"],
        "generation": doc["generation"],
        "state": {
            "generation": doc["generation"],
            "clusters": specs("clusters"),
            "catalogs": specs("catalogs"),
            "settings": doc["settings"],
        },
    }))
}
