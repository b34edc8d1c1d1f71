//! The Kubernetes client for an EKS cluster when the agent runs outside it (ECS Fargate):
//! the API server's URL and CA come from the CloudFormation stack, and authentication is
//! the standard EKS token ([`crate::aws_identity::eks_token`]) made from the agent's own
//! IAM role. The token goes to a file in the state directory that kube-rs re-reads as it
//! expires (`token_file`); a task here rewrites the file every [`REFRESH`], well inside
//! the token's 15 minutes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use tokio::sync::watch;

use crate::aws_identity::{self, StsSettings};

/// How often the token is made again.
pub const REFRESH: Duration = Duration::from_secs(10 * 60);
/// The token file in the state directory.
pub const TOKEN_FILE: &str = "eks-token";

/// Where the cluster is.
#[derive(Debug, Clone)]
pub struct EksSettings {
    /// Cluster name (the `x-k8s-aws-id` the token is for).
    pub cluster: String,
    /// API server URL, e.g. `https://ABC.gr7.eu-west-1.eks.amazonaws.com`.
    pub endpoint: String,
    /// The cluster CA as EKS reports it: base64 of PEM. Empty: the system's roots.
    pub ca_data: String,
    /// STS (region, endpoint) for the token.
    pub sts: StsSettings,
}

async fn write_token(settings: &EksSettings, path: &Path) -> Result<(), String> {
    let (token, _) = aws_identity::eks_token(&settings.sts, &settings.cluster)
        .await
        .map_err(|e| format!("EKS token for cluster {}: {e}", settings.cluster))?;
    tether_shared::files::write_private(path, token.as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Makes the first token, starts the refresher (until `stop`), and returns the client.
pub async fn client(
    settings: &EksSettings,
    state_dir: &Path,
    stop: watch::Receiver<bool>,
) -> Result<kube::Client, String> {
    let path: PathBuf = state_dir.join(TOKEN_FILE);
    write_token(settings, &path).await?;
    let url = settings
        .endpoint
        .parse::<http::Uri>()
        .map_err(|e| format!("--eks-endpoint {:?}: {e}", settings.endpoint))?;
    let mut config = kube::Config::new(url);
    if !settings.ca_data.is_empty() {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(settings.ca_data.trim())
            .map_err(|e| format!("--eks-ca-data is not base64: {e}"))?;
        let certs =
            tether_shared::pki::certs_from_pem(&pem).map_err(|e| format!("--eks-ca-data: {e}"))?;
        config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
    }
    config.auth_info.token_file = Some(path.display().to_string());
    // As in `reconcile::client`: the callers retry on their own schedule.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| format!("EKS client: {e}"))?;
    let settings = settings.clone();
    tokio::spawn(async move {
        let mut stop = stop;
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFRESH) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // On failure the old token stays (valid for a few more minutes); try again soon.
            let mut delay = Duration::from_secs(5);
            while let Err(e) = write_token(&settings, &path).await {
                tracing::warn!("refreshing the EKS token: {e}");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::get;

    use super::*;

    #[tokio::test]
    async fn the_client_sends_the_eks_token() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let seen = Arc::new(Mutex::new(None::<String>));
        let record = seen.clone();
        let app = Router::new().route(
            "/version",
            get(move |h: HeaderMap| {
                let record = record.clone();
                async move {
                    *record.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    axum::Json(serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                        "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": ""}))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = EksSettings {
            cluster: "tether-cp1".into(),
            endpoint: format!("http://{addr}"),
            ca_data: String::new(),
            sts: StsSettings {
                endpoint: None,
                region: Some("eu-west-1".into()),
                credentials: Some(("AKIDEXAMPLE".into(), "secret".into())),
            },
        };
        let (_stop_tx, stop) = watch::channel(false);
        let client = client(&settings, dir.path(), stop).await.expect("client");
        client.apiserver_version().await.expect("GET /version");
        let auth = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .expect("an Authorization header");
        let token = auth.strip_prefix("Bearer ").expect("bearer");
        let url = aws_identity::eks_token_url(token).expect("an EKS token");
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity"),
            "{url}"
        );
        assert!(url.contains("x-k8s-aws-id"), "{url}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(TOKEN_FILE)).expect("token file"),
            token
        );
    }
}
