//! What every handler of both servers shares.

use std::sync::Arc;
use std::time::Duration;

use crate::ca::Ca;
use crate::clock::Clock;
use crate::sessions::Registry;
use crate::store::Store;

/// Tunables of agent sessions.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Lifetime of agent certificates.
    pub agent_cert_ttl: Duration,
    /// How often agents heartbeat.
    pub heartbeat_interval: Duration,
    /// A session that sends nothing for this long is ended.
    pub idle_timeout: Duration,
    /// How long a new session may take to say Hello.
    pub hello_timeout: Duration,
    /// Session starts admitted per second (0: no limit); see [`crate::admission`].
    pub session_starts_per_second: u32,
    /// How long a session start may wait on its connection for its slot before it is
    /// told to come back later instead.
    pub admission_max_wait: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            agent_cert_ttl: Duration::from_secs(24 * 3600),
            heartbeat_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            hello_timeout: Duration::from_secs(10),
            session_starts_per_second: 2000,
            admission_max_wait: Duration::from_secs(2),
        }
    }
}

/// Shared state of the control plane.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The internal CA.
    pub ca: Arc<Ca>,
    /// Signs every desired-state document.
    pub signer: Arc<crate::signing::DesiredStateSigner>,
    /// Live sessions.
    pub sessions: Registry,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// Session tunables.
    pub settings: SessionSettings,
    /// What install instructions and templates name.
    pub install: InstallSettings,
    /// Account binding at enrollment.
    pub binding: BindingSettings,
    /// Paces session starts.
    pub admission: Arc<crate::admission::Admission>,
    /// This replica's place among the others.
    pub fleet: crate::fleet::Fleet,
    /// Session starts and ends, heartbeats and applied acks waiting to be written.
    pub presence: Arc<crate::presence::Presence>,
    /// The control plane's sealed secrets (identity providers' client secrets among them).
    pub secrets: crate::secrets::Secrets,
    /// Sign-in with identity providers.
    pub identity: IdentitySettings,
    /// The HTTP client for identity providers.
    pub oidc_http: reqwest::Client,
    /// Bounds on password sign-in attempts (this replica's).
    pub sign_in_limits: Arc<crate::identity::limits::SignInLimits>,
}

/// Sign-in with identity providers (see [`crate::identity`]).
#[derive(Debug, Clone, Default)]
pub struct IdentitySettings {
    /// The dashboard's address as browsers reach it (e.g. `https://cp.example.com`): the
    /// OIDC callback is `PUBLIC_URL/ui/oidc/callback`. `None`: taken from each request's
    /// `Host` (and `X-Forwarded-Proto`).
    pub public_url: Option<String>,
    /// The vendor's own provider for platform admins.
    pub platform_oidc: Option<PlatformOidc>,
    /// Providers may be plain HTTP on loopback (`--allow-loopback-identity-providers`: the
    /// sandbox and tests; never in production, where it would let a tenant point the
    /// control plane at its own local services).
    pub allow_loopback: bool,
}

/// `serve --platform-oidc-issuer … --platform-oidc-client-id … --platform-oidc-client-secret-file …`.
#[derive(Debug, Clone)]
pub struct PlatformOidc {
    /// Issuer.
    pub issuer: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (read from its file at start).
    pub client_secret: String,
    /// The groups claim.
    pub groups_claim: String,
    /// The group whose members are platform admins; nobody else may sign in.
    pub admin_group: String,
}

/// Where agents' signed AWS identities are verified.
#[derive(Debug, Clone, Default)]
pub struct BindingSettings {
    /// The STS endpoint, e.g. `https://sts.amazonaws.com`.
    pub sts_endpoint: String,
    /// Client for STS (TLS via rustls and aws-lc-rs, the system's roots).
    pub http: crate::account_binding::StsClient,
}

/// What the install path (CloudFormation template, instructions) tells customers.
#[derive(Debug, Clone, Default)]
pub struct InstallSettings {
    /// The gRPC endpoint agents dial, e.g. `https://cp.example:8443`.
    pub grpc_endpoint: String,
    /// The agent's container image.
    pub agent_image: String,
}
