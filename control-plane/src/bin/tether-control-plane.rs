//! `tether-control-plane serve`: parses flags, builds the config, runs the library.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tether_control_plane::fleet::FleetSettings;
use tether_control_plane::state::{IdentitySettings, PlatformOidc, SessionSettings};
use tether_control_plane::{Config, ControlPlane};

#[derive(Parser)]
#[command(
    name = "tether-control-plane",
    version,
    about = "The Tether SaaS control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API and the agents' gRPC endpoint.
    Serve(Box<ServeArgs>),
    /// Mint a new platform admin token for an existing database and print it.
    AdminToken(AdminTokenArgs),
    /// Replace the key that signs desired state; the old key signs a statement that
    /// introduces the new one, so agents follow without enrolling again. Restart every
    /// replica (one by one) afterwards: each signs with the new key once it starts.
    RotateSigningKey(AdminTokenArgs),
}

/// Where the control plane keeps its state: the same flags for `serve` and `admin-token`.
#[derive(clap::Args)]
struct StoreArgs {
    /// Holds the CA certificate (ca.pem), the platform admin token (admin-token) and, by
    /// default, the SQLite database and its secret key.
    #[arg(long, env = "TETHER_DATA_DIR")]
    data_dir: PathBuf,
    /// Database URL: postgres://… for several replicas (sqlx, TLS with rustls; e.g.
    /// ?sslmode=verify-full&sslrootcert=CA.pem), default SQLite in the data dir.
    #[arg(long, env = "TETHER_DATABASE")]
    database: Option<String>,
    /// The key that seals the control plane's secrets in the database: 32 random bytes,
    /// base64 (head -c 32 /dev/urandom | base64). Required with PostgreSQL, the same file
    /// on every replica; with SQLite, DATA_DIR/secret-key is created unless given.
    #[arg(long, env = "TETHER_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
}

#[derive(clap::Args)]
struct AdminTokenArgs {
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// REST API and dashboard address.
    #[arg(long, env = "TETHER_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Agents' gRPC (TLS) address.
    #[arg(long, env = "TETHER_GRPC_LISTEN", default_value = "127.0.0.1:8443")]
    grpc_listen: SocketAddr,
    /// The URL agents use to reach the gRPC endpoint; its host goes into the server certificate.
    #[arg(long, env = "TETHER_PUBLIC_GRPC_ENDPOINT")]
    public_grpc_endpoint: Option<String>,
    /// Extra DNS name or IP address for the gRPC server certificate (repeatable).
    #[arg(long = "tls-san", env = "TETHER_TLS_SANS", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// Lifetime of agent certificates, e.g. 24h, 20s.
    #[arg(long, env = "TETHER_AGENT_CERT_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    agent_cert_ttl: std::time::Duration,
    /// How often agents send heartbeats.
    #[arg(long, env = "TETHER_HEARTBEAT_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    heartbeat_interval: std::time::Duration,
    /// Session starts admitted per second (0: no limit). Beyond it, a start waits up to
    /// --admission-max-wait for its slot, or is told to come back at a later slot
    /// (Goodbye "overloaded" with retry_after), so a restart does not cause a stampede.
    #[arg(long, env = "TETHER_SESSION_STARTS_PER_SECOND", default_value_t = 2000)]
    session_starts_per_second: u32,
    /// How long a session start may wait on its connection for its slot.
    #[arg(long, env = "TETHER_ADMISSION_MAX_WAIT", default_value = "2s", value_parser = humantime::parse_duration)]
    admission_max_wait: std::time::Duration,
    /// How long telemetry (query log, metrics, events) is kept.
    #[arg(long, env = "TETHER_TELEMETRY_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    telemetry_retention: std::time::Duration,
    /// The AWS STS endpoint enrollment relays agents' signed identities to (account
    /// binding); agents must sign for the same host.
    #[arg(
        long,
        env = "TETHER_STS_ENDPOINT",
        default_value = "https://sts.amazonaws.com"
    )]
    sts_endpoint: String,
    /// This replica's name among the others on one database (shown in GET /replicas and
    /// as each agent's "replica"); default: host name and gRPC port.
    #[arg(long, env = "TETHER_REPLICA_NAME")]
    replica_name: Option<String>,
    /// How long a replica's lease holds without renewal: when a replica dies, the others
    /// mark its agents disconnected this long after its last renewal.
    #[arg(long, env = "TETHER_REPLICA_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    replica_lease: std::time::Duration,
    /// Sessions older than this (± 20 %) are ended with Goodbye "rebalance", so agents
    /// spread over the replicas again after a rolling restart; 0 turns it off.
    #[arg(long, env = "TETHER_MAX_SESSION_AGE", default_value = "6h", value_parser = humantime::parse_duration)]
    max_session_age: std::time::Duration,
    /// On SIGTERM, agents are told to come back spread over this long.
    #[arg(long, env = "TETHER_DRAIN_SPREAD", default_value = "5s", value_parser = humantime::parse_duration)]
    drain_spread: std::time::Duration,
    /// Log format.
    #[arg(long, env = "TETHER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// The dashboard's address as browsers reach it (e.g. https://cp.example.com); the
    /// OIDC callback registered at identity providers is PUBLIC_URL/ui/oidc/callback.
    /// Default: each request's Host.
    #[arg(long, env = "TETHER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Platform admins sign in through this OpenID Connect provider (the vendor's own).
    #[arg(long, env = "TETHER_PLATFORM_OIDC_ISSUER", requires_all = ["platform_oidc_client_id", "platform_oidc_client_secret_file", "platform_oidc_admin_group"])]
    platform_oidc_issuer: Option<String>,
    /// The platform provider's client id.
    #[arg(
        long,
        env = "TETHER_PLATFORM_OIDC_CLIENT_ID",
        requires = "platform_oidc_issuer"
    )]
    platform_oidc_client_id: Option<String>,
    /// Identity providers may be plain HTTP on a loopback address (a provider on the same
    /// machine: the sandbox, tests). Never in production.
    #[arg(long, env = "TETHER_ALLOW_LOOPBACK_IDENTITY_PROVIDERS")]
    allow_loopback_identity_providers: bool,
    /// A file holding the platform provider's client secret.
    #[arg(
        long,
        env = "TETHER_PLATFORM_OIDC_CLIENT_SECRET_FILE",
        requires = "platform_oidc_issuer"
    )]
    platform_oidc_client_secret_file: Option<std::path::PathBuf>,
    /// The claim listing the platform user's groups.
    #[arg(
        long,
        env = "TETHER_PLATFORM_OIDC_GROUPS_CLAIM",
        default_value = "groups"
    )]
    platform_oidc_groups_claim: String,
    /// Only members of this group are platform admins (required: a provider's other users
    /// must not become platform admins).
    #[arg(
        long,
        env = "TETHER_PLATFORM_OIDC_ADMIN_GROUP",
        requires = "platform_oidc_issuer"
    )]
    platform_oidc_admin_group: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::AdminToken(args) => return admin_token(args).await,
        Command::RotateSigningKey(args) => return rotate_signing_key(args).await,
    };
    tether_shared::logging::init(&args.log_format);
    if args.agent_cert_ttl < std::time::Duration::from_secs(3) {
        anyhow::bail!("--agent-cert-ttl must be at least 3s");
    }
    let session = SessionSettings {
        agent_cert_ttl: args.agent_cert_ttl,
        heartbeat_interval: args.heartbeat_interval,
        idle_timeout: (args.heartbeat_interval * 4).max(std::time::Duration::from_secs(10)),
        session_starts_per_second: args.session_starts_per_second,
        admission_max_wait: args.admission_max_wait,
        ..SessionSettings::default()
    };
    if args.replica_lease < std::time::Duration::from_secs(3) {
        anyhow::bail!("--replica-lease must be at least 3s");
    }
    let replica_name = match args.replica_name {
        Some(n) if n.trim().is_empty() || n.len() > 128 => {
            anyhow::bail!("--replica-name must be 1 to 128 characters")
        }
        Some(n) => n,
        None => format!("{}:{}", host_name(), args.grpc_listen.port()),
    };
    let fleet = FleetSettings {
        replica_name,
        lease: args.replica_lease,
        max_session_age: Some(args.max_session_age).filter(|a| !a.is_zero()),
        drain_spread: args.drain_spread,
    };
    let platform_oidc = match (
        args.platform_oidc_issuer,
        args.platform_oidc_client_id,
        args.platform_oidc_client_secret_file,
        args.platform_oidc_admin_group,
    ) {
        (Some(issuer), Some(client_id), Some(file), Some(admin_group)) => {
            tether_control_plane::identity::oidc::validate_issuer(
                &issuer,
                args.allow_loopback_identity_providers,
            )
            .map_err(|e| anyhow::anyhow!("--platform-oidc-issuer: {e}"))?;
            let secret = std::fs::read_to_string(&file)
                .with_context(|| format!("--platform-oidc-client-secret-file {}", file.display()))?
                .trim()
                .to_owned();
            if secret.is_empty() {
                anyhow::bail!(
                    "--platform-oidc-client-secret-file {} is empty",
                    file.display()
                );
            }
            Some(PlatformOidc {
                issuer,
                client_id,
                client_secret: secret,
                groups_claim: args.platform_oidc_groups_claim,
                admin_group,
            })
        }
        _ => None,
    };
    let public_url = args.public_url.map(|u| u.trim_end_matches('/').to_owned());
    if let Some(u) = &public_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        anyhow::bail!("--public-url must be an http(s):// URL, e.g. https://cp.example.com");
    }
    let data_dir = args.store.data_dir.clone();
    let config = Config {
        data_dir: args.store.data_dir,
        database: args.store.database,
        secret_key_file: args.store.secret_key_file,
        public_grpc_endpoint: args.public_grpc_endpoint,
        tls_sans: args.tls_sans,
        session,
        telemetry_retention: args.telemetry_retention,
        sts_endpoint: args.sts_endpoint,
        fleet,
        identity: IdentitySettings {
            public_url,
            platform_oidc,
            allow_loopback: args.allow_loopback_identity_providers,
        },
    };
    let cp = ControlPlane::open(config)
        .await
        .context("starting the control plane")?;
    let http = tokio::net::TcpListener::bind(args.http_listen)
        .await
        .with_context(|| format!("binding --http-listen {}", args.http_listen))?;
    let grpc = tokio::net::TcpListener::bind(args.grpc_listen)
        .await
        .with_context(|| format!("binding --grpc-listen {}", args.grpc_listen))?;
    tracing::info!(
        http = %http.local_addr()?, grpc = %grpc.local_addr()?,
        ca = %data_dir.join("ca.pem").display(),
        admin_token = %cp.admin_token_path().display(),
        "control plane listening"
    );
    cp.run(http, grpc, shutdown_signal()).await?;
    tracing::info!("control plane stopped");
    Ok(())
}

/// `admin-token`: prints a new platform admin token (and nothing else) on stdout.
/// The configuration of a one-off command on the store `args` names.
fn store_config(args: AdminTokenArgs) -> Config {
    Config {
        data_dir: args.store.data_dir,
        database: args.store.database,
        secret_key_file: args.store.secret_key_file,
        public_grpc_endpoint: None,
        tls_sans: vec![],
        sts_endpoint: String::new(),
        session: SessionSettings::default(),
        telemetry_retention: std::time::Duration::ZERO,
        fleet: FleetSettings::default(),
        identity: IdentitySettings::default(),
    }
}

async fn rotate_signing_key(args: AdminTokenArgs) -> anyhow::Result<()> {
    tether_shared::logging::init("text");
    let (old, new) = tether_control_plane::rotate_signing_key(&store_config(args))
        .await
        .context("rotating the desired-state signing key")?;
    println!("desired-state signing key {old} -> {new}; restart every replica to sign with it");
    Ok(())
}

async fn admin_token(args: AdminTokenArgs) -> anyhow::Result<()> {
    tether_shared::logging::init("text");
    let config = store_config(args);
    let token = tether_control_plane::mint_admin_token(&config)
        .await
        .context("minting a platform admin token")?;
    println!("{token}");
    Ok(())
}

/// The machine's host name (the default replica name), from the kernel.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
