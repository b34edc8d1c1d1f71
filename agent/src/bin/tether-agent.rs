//! `tether-agent run`: parses flags (or `TETHER_*` variables), runs the library, and
//! turns a fatal error into one line and an exit code.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// mimalloc returns freed memory to the OS; glibc's per-thread arenas let the agent's RSS
/// creep up under large transient allocations (big `/v1/query` answers), which looks like
/// growth with telemetry volume even though the spool keeps records on disk.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tether_agent::Config;
use tether_agent::retry::RetryPolicy;

#[derive(Parser)]
#[command(
    name = "tether-agent",
    version,
    about = "The Tether agent (runs in the customer VPC)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll if needed, then hold the session to the control plane.
    Run(Box<RunArgs>),
    /// Print every field this agent can send to the control plane, with its class
    /// (identity, status, metrics, query metadata, redacted text), as derived from the
    /// protocol: JSON, or a Markdown table with --markdown.
    EgressManifest {
        /// A Markdown table instead of JSON.
        #[arg(long)]
        markdown: bool,
    },
    /// Check, with the flags of `run`, each step the agent depends on (DNS, TCP or the
    /// proxy, TLS, its certificate, a session round trip, the clock, the Kubernetes API and
    /// each permission, CloudWatch and STS when configured): one line each, PASS, FAIL or
    /// SKIP, with what to do. Exits 0 when nothing failed, 1 otherwise.
    Doctor(Box<DoctorArgs>),
    /// Diagnostic bundles the control plane asked for: list them, read one exactly as it
    /// would be sent, and send it (nothing is sent before `approve`).
    Support {
        #[command(subcommand)]
        what: Support,
    },
    /// Approve, in the VPC, a change the guardrail policy holds for local approval.
    Approve {
        #[command(subcommand)]
        what: Approve,
    },
}

#[derive(Subcommand)]
enum Support {
    /// The requests, with their status, expiry, reason and the bundle's files.
    List {
        /// The agent's state directory.
        #[arg(long, env = "TETHER_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// The bundle of a request, exactly as it would be sent (JSON).
    Show {
        /// The request id (`sr-…`).
        id: String,
        /// The agent's state directory.
        #[arg(long, env = "TETHER_STATE_DIR")]
        state_dir: PathBuf,
    },
    /// Let the running agent send the bundle of a request, before it expires.
    Approve {
        /// The request id (`sr-…`).
        id: String,
        /// The agent's state directory.
        #[arg(long, env = "TETHER_STATE_DIR")]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum Approve {
    /// Let the agent delete a cluster the control plane deleted (with `deletes =
    /// "local-approval"` in the policy file).
    Delete {
        /// The cluster.
        cluster: String,
        /// The agent's state directory.
        #[arg(long, env = "TETHER_STATE_DIR")]
        state_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct DoctorArgs {
    #[command(flatten)]
    run: RunArgs,
    /// The report as JSON (`{"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}`).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The control plane's gRPC endpoint, https://HOST:PORT; or several replicas' endpoints
    /// separated by commas (the agent starts at a random one and moves to the next after a
    /// failure or a Goodbye).
    #[arg(long, env = "TETHER_CONTROL_PLANE")]
    control_plane: String,
    /// The control plane's CA certificate (its ca.pem).
    #[arg(long, env = "TETHER_CA_FILE", required_unless_present = "ca_pem")]
    ca_file: Option<PathBuf>,
    /// The control plane's CA certificate as PEM text (instead of --ca-file; written to
    /// the state dir).
    #[arg(long, env = "TETHER_CA_PEM", hide_env_values = true)]
    ca_pem: Option<String>,
    /// EKS cluster name, when the agent runs outside the cluster (ECS Fargate): it then
    /// authenticates with EKS tokens made from its IAM role.
    #[arg(
        long,
        env = "TETHER_EKS_CLUSTER",
        requires = "eks_endpoint",
        conflicts_with = "kubeconfig"
    )]
    eks_cluster: Option<String>,
    /// The EKS API server URL.
    #[arg(long, env = "TETHER_EKS_ENDPOINT")]
    eks_endpoint: Option<String>,
    /// The EKS cluster's CA (base64 of PEM, as EKS reports it).
    #[arg(long, env = "TETHER_EKS_CA_DATA", default_value = "")]
    eks_ca_data: String,
    /// Where the agent keeps its key and certificate.
    #[arg(long, env = "TETHER_STATE_DIR")]
    state_dir: PathBuf,
    /// One-time bootstrap token (used only when the state dir holds no certificate).
    #[arg(long, env = "TETHER_ENROLLMENT_TOKEN", hide_env_values = true)]
    enrollment_token: Option<String>,
    /// Refuse to enroll into any compute plane but this one.
    #[arg(long, env = "TETHER_COMPUTE_PLANE")]
    compute_plane: Option<String>,
    /// First reconnect backoff interval.
    #[arg(long, env = "TETHER_BACKOFF_INITIAL", default_value = "1s", value_parser = humantime::parse_duration)]
    backoff_initial: std::time::Duration,
    /// Cap of the reconnect backoff interval.
    #[arg(long, env = "TETHER_BACKOFF_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    backoff_max: std::time::Duration,
    /// Kubeconfig of the cluster to run Presto in (default: in-cluster config when in a pod).
    #[arg(long, env = "TETHER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the Presto clusters.
    #[arg(long, env = "TETHER_NAMESPACE", default_value = "tether")]
    namespace: String,
    /// Full resync period of the reconciler.
    #[arg(long, env = "TETHER_RESYNC_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    resync_interval: std::time::Duration,
    /// Drain budget of a leaving Presto worker: how long its running tasks may take to
    /// finish before the kubelet kills it (it also sets `shutdown.grace-period`, at most 30 s).
    #[arg(long, env = "TETHER_DRAIN_GRACE", default_value = "120s", value_parser = humantime::parse_duration)]
    drain_grace: std::time::Duration,
    /// IAM role the Presto and metastore pods assume (EKS IRSA): annotated on their
    /// ServiceAccounts. The CloudFormation install sets it; the agent's own role never
    /// reaches the data lake.
    #[arg(long, env = "TETHER_PRESTO_ROLE_ARN", value_parser = presto_role_arn)]
    presto_role_arn: Option<String>,
    /// Secrets Manager endpoint for catalog credentials given as ARNs (default: the
    /// regional endpoint of the ARN's region).
    #[arg(long, env = "TETHER_SECRETS_MANAGER_ENDPOINT")]
    secrets_manager_endpoint: Option<String>,
    /// How often a catalog secret in Secrets Manager is read again (a new version rolls
    /// the workers).
    #[arg(long, env = "TETHER_SECRET_REFRESH", default_value = "60s", value_parser = humantime::parse_duration)]
    secret_refresh: std::time::Duration,
    /// Which endpoints of the attached catalogs the agent checks by connecting to them
    /// (reported as CatalogReachable): all, aws (Glue and S3 only: the agent's network is not
    /// the Presto pods'), off.
    #[arg(long, env = "TETHER_CATALOG_CHECKS", value_enum, default_value = "all")]
    catalog_checks: tether_agent::reach::CatalogChecks,
    /// PostgreSQL `host:port` for the built-in metastore's tables (the CloudFormation
    /// install's RDS instance); with --metastore-db-secret-arn.
    #[arg(long, env = "TETHER_METASTORE_DB_ENDPOINT", requires = "metastore_db_secret_arn", value_parser = host_port)]
    metastore_db_endpoint: Option<String>,
    /// Secrets Manager secret (JSON username and password; RDS manages and rotates it) of
    /// the metastore database; the agent keeps the Secret tether-metastore-db in sync.
    #[arg(
        long,
        env = "TETHER_METASTORE_DB_SECRET_ARN",
        requires = "metastore_db_endpoint"
    )]
    metastore_db_secret_arn: Option<String>,
    /// Lifetime of the coordinator certificates the agent issues when Presto access asks for
    /// password authentication (renewed two thirds of the way through; a renewal restarts
    /// the coordinator, which reads its keystore only at start).
    #[arg(long, env = "TETHER_PRESTO_CERT_VALIDITY", default_value = "90d", value_parser = humantime::parse_duration)]
    presto_cert_validity: std::time::Duration,
    /// CIDRs, besides the cluster's own pods, that may reach a password-protected
    /// coordinator's plain HTTP port, which trusts X-Presto-User: the API server's
    /// addresses when the agent reads coordinators through its service proxy
    /// (comma-separated).
    #[arg(long, env = "TETHER_COORDINATOR_HTTP_CIDRS", value_delimiter = ',')]
    coordinator_http_cidr: Vec<ipnet::IpNet>,
    /// How often the catalog endpoints are checked (and on every desired-state change).
    #[arg(long, env = "TETHER_CATALOG_CHECK_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    catalog_check_interval: std::time::Duration,
    /// How to reach the Presto coordinators: in-cluster DNS, or the API server's service proxy.
    #[arg(
        long,
        env = "TETHER_COORDINATOR_ACCESS",
        value_enum,
        default_value = "dns"
    )]
    coordinator_access: tether_agent::collect::CoordinatorAccess,
    /// The coordinator URL reported as each cluster's endpoint; placeholders {cluster},
    /// {service}, {namespace}, {port} (e.g. https://presto-{cluster}.data.example.com).
    #[arg(
        long,
        env = "TETHER_ENDPOINT_TEMPLATE",
        default_value = tether_agent::reconcile::EndpointTemplate::DEFAULT,
        value_parser = tether_agent::reconcile::EndpointTemplate::parse
    )]
    endpoint_template: tether_agent::reconcile::EndpointTemplate,
    /// Prove the agent's AWS account at enrollment: sign sts:GetCallerIdentity with the
    /// agent's AWS credentials (default chain) for the control plane to relay to STS.
    #[arg(long, env = "TETHER_ACCOUNT_BINDING")]
    account_binding: bool,
    /// STS endpoint to sign for; must be the control plane's --sts-endpoint.
    #[arg(
        long,
        env = "TETHER_STS_ENDPOINT",
        default_value = "https://sts.amazonaws.com"
    )]
    sts_endpoint: String,
    /// AWS region for signing (default: the environment's, else us-east-1).
    #[arg(long, env = "TETHER_AWS_REGION")]
    aws_region: Option<String>,
    /// How often each coordinator is scraped for metrics and finished queries.
    #[arg(long, env = "TETHER_SCRAPE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    scrape_interval: std::time::Duration,
    /// Bound of the on-disk telemetry spool, e.g. 256Mi.
    #[arg(long, env = "TETHER_SPOOL_MAX", default_value = "256Mi", value_parser = parse_bytes)]
    spool_max: u64,
    /// Ship the agent's own logs to this CloudWatch Logs log group (in the customer's account).
    #[arg(long, env = "TETHER_CLOUDWATCH_LOG_GROUP")]
    cloudwatch_log_group: Option<String>,
    /// Log stream name (default: agent-HOSTNAME).
    #[arg(long, env = "TETHER_CLOUDWATCH_LOG_STREAM")]
    cloudwatch_log_stream: Option<String>,
    /// CloudWatch Logs endpoint override (e.g. a VPC endpoint, or moto in tests).
    #[arg(long, env = "TETHER_CLOUDWATCH_ENDPOINT")]
    cloudwatch_endpoint: Option<String>,
    /// AWS region of the log group (default: from the environment).
    #[arg(long, env = "TETHER_CLOUDWATCH_REGION")]
    cloudwatch_region: Option<String>,
    /// The customer's guardrail policy (TOML): limits on what the control plane may ask
    /// for, read at start and whenever it changes. See docs/security.md.
    #[arg(long, env = "TETHER_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Serve Prometheus /metrics on this address (e.g. 0.0.0.0:9464).
    #[arg(long, env = "TETHER_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, env = "TETHER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// `tether-agent egress-manifest`: prints the manifest; the exit code. A closed stdout
/// (`| head`) is not an error.
fn egress_manifest(markdown: bool) -> i32 {
    use std::io::Write;
    let text = tether_agent::egress::manifest()
        .map_err(|e| e.to_string())
        .and_then(|m| {
            if markdown {
                Ok(tether_agent::egress::markdown(&m))
            } else {
                serde_json::to_string_pretty(&m)
                    .map(|t| t + "\n")
                    .map_err(|e| e.to_string())
            }
        });
    match text {
        Ok(text) => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Ok(()) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (args, doctor) = match Cli::parse().command {
        Command::Run(args) => (*args, None),
        Command::Doctor(d) => {
            let d = *d;
            (d.run, Some(d.json))
        }
        Command::EgressManifest { markdown } => std::process::exit(egress_manifest(markdown)),
        Command::Support { what } => {
            let (out, code) = match what {
                Support::List { state_dir } => {
                    (Ok(tether_agent::support::list_text(&state_dir)), 0)
                }
                Support::Show { id, state_dir } => {
                    (tether_agent::support::show(&state_dir, &id), 0)
                }
                Support::Approve { id, state_dir } => (
                    tether_agent::support::approve(&state_dir, &id).map(|t| t + "\n"),
                    0,
                ),
            };
            match out {
                Ok(text) => {
                    use std::io::Write;
                    let _ = std::io::stdout().lock().write_all(text.as_bytes());
                    std::process::exit(code)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    std::process::exit(1)
                }
            }
        }
        Command::Approve {
            what: Approve::Delete { cluster, state_dir },
        } => match tether_agent::guardrails::approve_delete(&state_dir, &cluster) {
            Ok(()) => {
                println!("approved: the agent deletes cluster {cluster} within a few seconds");
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1)
            }
        },
    };
    let cloudwatch = args.cloudwatch_log_group.as_ref().map(|group| {
        tether_agent::cloudwatch::CloudWatchConfig {
            log_group: group.clone(),
            log_stream: args
                .cloudwatch_log_stream
                .clone()
                .unwrap_or_else(default_stream),
            endpoint_url: args.cloudwatch_endpoint.clone(),
            region: args.cloudwatch_region.clone(),
            ..Default::default()
        }
    });
    if let Some(json) = doctor {
        // The report is the output; logs only for what goes wrong.
        tether_shared::logging::init_with(&args.log_format, None);
        let config = match build_config(args, None, cloudwatch) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        };
        let report = tether_agent::doctor::run(&config).await;
        std::process::exit(tether_agent::doctor::print(&report, json));
    }
    let shipper = match cloudwatch.clone() {
        Some(config) => match tether_agent::cloudwatch::LogShipper::start(config).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    // The recent log lines a support bundle carries, and CloudWatch when configured.
    let extra: tether_shared::logging::ExtraLayer = match shipper.clone() {
        Some(s) => Box::new(tracing_subscriber::Layer::and_then(
            tether_agent::support::log_layer(),
            tether_agent::cloudwatch::layer(s),
        )),
        None => Box::new(tether_agent::support::log_layer()),
    };
    let extra = Some(extra);
    tether_shared::logging::init_with(&args.log_format, extra);
    let config = match build_config(args, shipper.clone(), cloudwatch) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let result = tether_agent::run(config, shutdown_signal()).await;
    if let Err(e) = &result {
        tracing::error!("{e}");
        eprintln!("error: {e}");
    }
    tether_agent::audit::flush(std::time::Duration::from_secs(5)).await;
    if let Some(s) = shipper
        && let Err(e) = s.flush(std::time::Duration::from_secs(5)).await
    {
        eprintln!("warning: not every log line reached CloudWatch Logs: {e}");
    }
    if let Err(e) = result {
        std::process::exit(e.exit_code());
    }
}

/// The library's configuration from the flags of `run` (and `doctor`).
fn build_config(
    args: RunArgs,
    shipper: Option<tether_agent::cloudwatch::LogShipper>,
    cloudwatch: Option<tether_agent::cloudwatch::CloudWatchConfig>,
) -> Result<Config, String> {
    let ca_file = match (args.ca_file, &args.ca_pem) {
        (Some(f), _) => f,
        (None, Some(pem)) => {
            let path = args.state_dir.join("control-plane-ca.pem");
            let written = std::fs::create_dir_all(&args.state_dir)
                .and_then(|()| tether_shared::files::write_public(&path, pem.as_bytes()));
            if let Err(e) = written {
                return Err(format!("writing --ca-pem to {}: {e}", path.display()));
            }
            path
        }
        (None, None) => return Err("--ca-file or --ca-pem is required".into()),
    };
    let sts = tether_agent::aws_identity::StsSettings {
        endpoint: Some(args.sts_endpoint.clone()),
        region: args.aws_region.clone(),
        credentials: None,
    };
    let eks = args
        .eks_cluster
        .clone()
        .map(|cluster| tether_agent::eks::EksSettings {
            cluster,
            endpoint: args.eks_endpoint.clone().unwrap_or_default(),
            ca_data: args.eks_ca_data.clone(),
            sts: tether_agent::aws_identity::StsSettings {
                endpoint: None,
                ..sts.clone()
            },
        });
    Ok(Config {
        control_plane: args.control_plane,
        ca_file,
        state_dir: args.state_dir,
        enrollment_token: args.enrollment_token.filter(|t| !t.is_empty()),
        compute_plane_id: args.compute_plane.filter(|t| !t.is_empty()),
        retry: RetryPolicy {
            initial: args.backoff_initial,
            max: args.backoff_max,
        },
        kubeconfig: args.kubeconfig,
        namespace: args.namespace,
        resync_interval: args.resync_interval,
        drain_grace: args.drain_grace,
        presto_role_arn: args.presto_role_arn,
        metastore_db: args.metastore_db_endpoint.zip(args.metastore_db_secret_arn),
        presto_tls: tether_agent::reconcile::PrestoTlsSettings {
            validity: args.presto_cert_validity,
            coordinator_http_cidrs: args
                .coordinator_http_cidr
                .iter()
                .map(ToString::to_string)
                .collect(),
        },
        catalog_checks: args.catalog_checks,
        catalog_check_interval: args.catalog_check_interval,
        secrets: tether_agent::secrets::SecretsSettings {
            endpoint_url: args.secrets_manager_endpoint,
            region: args.aws_region.clone(),
            refresh: args.secret_refresh,
        },
        coordinator_access: args.coordinator_access,
        scrape_interval: args.scrape_interval,
        spool_max_bytes: args.spool_max,
        metrics_listen: args.metrics_listen,
        pod_logs: shipper,
        endpoint: args.endpoint_template,
        account_binding: args.account_binding.then_some(sts),
        eks,
        policy_file: args.policy_file,
        cloudwatch,
    })
}

fn default_stream() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    format!("agent-{}", if host.is_empty() { "unknown" } else { host })
}

/// `host:port` with a numeric port.
fn host_port(s: &str) -> Result<String, String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not host:port (e.g. db.example.com:5432)")),
    }
}

/// An IAM role ARN (`arn:<partition>:iam::<12 digits>:role/<path and name>`).
fn presto_role_arn(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":iam::"))
        .map(|(_, r)| r);
    match rest.and_then(|r| r.split_once(":role/")) {
        Some((account, name))
            if account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty() =>
        {
            Ok(s.to_owned())
        }
        _ => Err(format!(
            "{s:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"
        )),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    tether_shared::spec::memory_bytes(s)
        .ok_or_else(|| format!("{s:?} is not a size such as 256Mi or 1Gi"))
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
