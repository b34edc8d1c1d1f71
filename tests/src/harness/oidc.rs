//! The npm `oidc-provider` (a certified OpenID provider), started with
//! `tests/oidc/provider.mjs`: development login page (any password; the login name is the
//! account id), PKCE required, in-memory state.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A running provider.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    /// The issuer, `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// Its port.
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcProvider {
    /// Starts it with one client (`client_id`, `client_secret`, `redirect_uri`) and the
    /// accounts `{"alice": {"email": …, "groups": […]}}`.
    pub async fn start(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        accounts: Value,
    ) -> Self {
        Self::start_with(client_id, client_secret, redirect_uri, accounts, false).await
    }

    /// As [`OidcProvider::start`]; `id_token_claims` puts the groups in the ID token
    /// itself (else only userinfo has them, the provider's default).
    pub async fn start_with(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        accounts: Value,
        id_token_claims: bool,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config = dir.path().join("config.json");
        let body = json!({
            "port": port,
            "clients": [{"client_id": client_id, "client_secret": client_secret, "redirect_uris": [redirect_uri]}],
            "accounts": accounts,
            "id_token_claims": id_token_claims,
        });
        std::fs::write(&config, body.to_string()).expect("write config");
        let log = dir.path().join("provider.log");
        let mut p = OidcProvider {
            child: spawn(&config, &log),
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            config,
            log,
            _dir: dir,
        };
        p.wait_ready().await;
        p
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("oidc-provider exited ({st}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("oidc-provider did not start: {}", self.log());
    }

    /// Its output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Switches the failure mode: `normal`, `tamper`, `expired`.
    pub async fn set_mode(&self, mode: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/__test/mode", self.issuer))
            .body(mode.to_owned())
            .send()
            .await
            .expect("provider answers");
        assert!(r.status().is_success(), "set mode {mode}");
    }

    /// Stops it and starts it again on the same port (it makes new signing keys and
    /// forgets every code and session).
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&self.config, &self.log);
        self.wait_ready().await;
    }
}

fn spawn(config: &PathBuf, log: &PathBuf) -> Child {
    let dir = provider_dir();
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the oidc-provider npm package is not installed: `npm ci --prefix tests/oidc` (scripts/test does)"
    );
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(config)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("node (Node.js) on PATH")
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
