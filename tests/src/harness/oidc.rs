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
        Self::try_start(
            client_id,
            client_secret,
            redirect_uri,
            accounts,
            id_token_claims,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`OidcProvider::start_with`], saying what is missing instead of panicking (the
    /// sandbox starts one when it can).
    pub async fn try_start(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        accounts: Value,
        id_token_claims: bool,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let config = dir.path().join("config.json");
        let body = json!({
            "port": port,
            "clients": [{"client_id": client_id, "client_secret": client_secret, "redirect_uris": [redirect_uri]}],
            "accounts": accounts,
            "id_token_claims": id_token_claims,
        });
        std::fs::write(&config, body.to_string()).map_err(|e| e.to_string())?;
        let log = dir.path().join("provider.log");
        let mut p = OidcProvider {
            child: spawn(&config, &log)?,
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            config,
            log,
            _dir: dir,
        };
        p.wait_ready().await?;
        Ok(p)
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(format!("oidc-provider exited ({st}): {}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("oidc-provider did not start: {}", self.log()))
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
        self.child = spawn(&self.config, &self.log).unwrap_or_else(|e| panic!("{e}"));
        self.wait_ready().await.unwrap_or_else(|e| panic!("{e}"));
    }
}

fn spawn(config: &PathBuf, log: &PathBuf) -> Result<Child, String> {
    let dir = provider_dir();
    if !dir.join("node_modules/oidc-provider").is_dir() {
        return Err("the oidc-provider npm package is not installed: `npm ci --prefix tests/oidc` (scripts/test does)".into());
    }
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(config)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("node (Node.js) is not on PATH: {e}"))
}

/// Drives the provider's development login (`login` with any password) and consent from
/// `start` (a dashboard URL that redirects to the provider) until the provider redirects
/// back to `callback`; returns that URL, not yet visited.
pub async fn sign_in_through(
    c: &mut super::web::WebClient,
    start: &str,
    login: &str,
    callback: &str,
) -> String {
    let mut a = c.follow(start, Some(callback)).await;
    for _ in 0..4 {
        if let Some(l) = &a.location
            && l.starts_with(callback)
        {
            return l.clone();
        }
        assert_eq!(a.status, reqwest::StatusCode::OK, "{}: {}", a.url, a.body);
        let (action, mut fields) = super::web::form_of(&a.url, &a.body);
        if a.body.contains("name=\"login\"") {
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "any".into()));
        }
        let posted = c.post(&action, &fields).await;
        // A redirect, or a page that moves on by itself (`<meta http-equiv="refresh">`).
        let next = posted
            .location
            .clone()
            .or_else(|| super::web::refresh_of(&posted.body))
            .unwrap_or_else(|| panic!("{}", posted.body));
        a = c.follow(&next, Some(callback)).await;
        if next.starts_with(callback) {
            return next;
        }
    }
    panic!("the provider did not send the browser back: {}", a.body);
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
