//! How the agent reaches the control plane: TCP, directly or through an HTTP CONNECT
//! proxy taken from `HTTPS_PROXY`/`NO_PROXY` (hyper-util's matcher and tunnel), then TLS
//! (1.3 preferred, 1.2 minimum) with the operator's CA file, then HTTP/2 for tonic, with
//! keepalives well under an AWS NLB's 350 s idle timeout.
//!
//! Every failure comes back as a [`ConnectError`] whose message says which hop failed,
//! because that is what an installer behind a firewall needs to know.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};
use tower::Service;

/// HTTP/2 ping interval: far below the 350 s idle timeout of an AWS NLB and the usual
/// corporate proxy timeouts.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A ping unanswered this long means the connection is dead.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP + proxy + TLS must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which hop of a connection failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The control plane URL is unusable.
    #[error("invalid control plane URL {0:?}: use https://HOST:PORT")]
    BadUrl(String),
    /// The proxy itself could not be reached.
    #[error("cannot reach proxy {proxy}: {detail}")]
    ProxyUnreachable {
        /// Proxy URL (without credentials).
        proxy: String,
        /// Cause.
        detail: String,
    },
    /// The proxy answered the CONNECT with something other than 2xx.
    #[error(
        "proxy {proxy} refused CONNECT to {target} (the proxy must allow CONNECT to port {port})"
    )]
    ProxyRefused {
        /// Proxy URL.
        proxy: String,
        /// host:port asked for.
        target: String,
        /// Port asked for.
        port: u16,
    },
    /// The proxy asks for credentials.
    #[error("proxy {proxy} requires authentication: put user:password in HTTPS_PROXY")]
    ProxyAuth {
        /// Proxy URL.
        proxy: String,
    },
    /// Other proxy problems.
    #[error("proxy {proxy}: {detail}")]
    Proxy {
        /// Proxy URL.
        proxy: String,
        /// Cause.
        detail: String,
    },
    /// The control plane could not be reached directly.
    #[error("cannot reach control plane at {target}: {detail}")]
    Unreachable {
        /// host:port.
        target: String,
        /// Cause.
        detail: String,
    },
    /// The server's certificate is not from the CA in `--ca-file`.
    #[error(
        "TLS: the certificate of {target} is not signed by the CA in --ca-file ({detail}); check --ca-file and --control-plane"
    )]
    WrongCa {
        /// host:port.
        target: String,
        /// rustls' words.
        detail: String,
    },
    /// The control plane refused our client certificate.
    #[error("TLS: {target} refused this agent's certificate ({detail})")]
    CertificateRefused {
        /// host:port.
        target: String,
        /// rustls' words.
        detail: String,
    },
    /// Other TLS failures.
    #[error("TLS handshake with {target} failed: {detail}")]
    Tls {
        /// host:port.
        target: String,
        /// Cause.
        detail: String,
    },
    /// Anything else from the HTTP/2 layer.
    #[error("connection to {target}: {detail}")]
    Other {
        /// host:port.
        target: String,
        /// Cause.
        detail: String,
    },
}

/// TLS material for a connection.
#[derive(Clone)]
pub struct TlsMaterial {
    /// CA certificates the control plane must chain to.
    pub roots: Vec<CertificateDer<'static>>,
    /// Client certificate chain and key; `None` for enrollment.
    pub client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

/// The client configuration for `tls`, made once per set of TLS material and kept across
/// connections (each session dials anew): rustls resumes a TLS session only under the
/// configuration that received its ticket (the same verifier and client certificate), and
/// a resumed reconnect — to any replica — skips the certificate signatures of a full
/// handshake. New material (renewal, enrollment) gets a new configuration with no
/// tickets: a ticket carries the certificate it was issued under, and an old one must
/// not be presented again.
fn client_config(tls: &TlsMaterial) -> Result<Arc<rustls::ClientConfig>, String> {
    use std::sync::{LazyLock, Mutex};
    /// A configuration and the material it was made from.
    type Made = (Vec<u8>, Arc<rustls::ClientConfig>);
    /// Configurations by their material; a handful at most (enrollment, the identity).
    static CONFIGS: LazyLock<Mutex<Vec<Made>>> = LazyLock::new(|| Mutex::new(Vec::new()));
    const KEEP: usize = 4;
    let mut key = Vec::new();
    for cert in &tls.roots {
        key.extend_from_slice(cert.as_ref());
    }
    key.push(0);
    if let Some((chain, _)) = &tls.client {
        for cert in chain {
            key.extend_from_slice(cert.as_ref());
        }
    }
    let mut configs = CONFIGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, config)) = configs.iter().find(|(k, _)| *k == key) {
        return Ok(config.clone());
    }
    let config = new_client_config(tls)?;
    if configs.len() >= KEEP {
        configs.remove(0);
    }
    configs.push((key, config.clone()));
    Ok(config)
}

/// A new client configuration for `tls` (no cache): for a process that holds many
/// identities and keeps each one's configuration itself (the benchmark's simulated agents).
pub fn new_client_config(tls: &TlsMaterial) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in &tls.roots {
        roots
            .add(cert.clone())
            .map_err(|e| format!("CA certificate: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut config = match &tls.client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The control plane's endpoints: one URL (a DNS name behind a load balancer) or the
/// URLs of several replicas. The agent starts at a random one, so agents spread over the
/// replicas, and moves to the next after a failure or a `Goodbye`.
#[derive(Debug)]
pub struct Endpoints {
    urls: Vec<Uri>,
    current: std::sync::atomic::AtomicUsize,
}

impl Endpoints {
    /// Parses a comma-separated list of `https://host[:port]` URLs.
    pub fn parse(list: &str) -> Result<Self, ConnectError> {
        let urls = list
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(parse_control_plane_url)
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ConnectError::BadUrl(list.to_owned()));
        }
        let start = rand::random::<u32>() as usize % urls.len();
        Ok(Self {
            urls,
            current: start.into(),
        })
    }

    /// The endpoint to dial now.
    pub fn current(&self) -> &Uri {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        &self.urls[i % self.urls.len()]
    }

    /// Moves to the next endpoint (a no-op with one) and returns it.
    pub fn advance(&self) -> &Uri {
        if self.urls.len() > 1 {
            self.current
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(control_plane = %self.current(), "moving to the next control-plane endpoint");
        }
        self.current()
    }

    /// How many endpoints there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Never empty; for clippy.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
}

/// Parses `https://host[:port]`; plaintext is refused.
pub fn parse_control_plane_url(url: &str) -> Result<Uri, ConnectError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConnectError::BadUrl(url.to_owned()))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(ConnectError::BadUrl(url.to_owned()));
    }
    Ok(uri)
}

fn authority(uri: &Uri) -> (String, u16) {
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    (host, uri.port_u16().unwrap_or(443))
}

fn redact_userinfo(uri: &Uri) -> String {
    let (host, port) = authority(uri);
    format!("{}://{host}:{port}", uri.scheme_str().unwrap_or("http"))
}

/// Opens one TLS connection to `target` (an `https://` URI), through the proxy the
/// environment names for it, if any.
pub async fn dial(
    target: &Uri,
    proxy: &Matcher,
    tls: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let tcp = tcp_to(target, proxy).await?;
    let (host, port) = authority(target);
    let target_str = format!("{host}:{port}");
    let name =
        ServerName::try_from(host.clone()).map_err(|_| ConnectError::BadUrl(target.to_string()))?;
    TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| tls_error(&target_str, e))
}

/// A TCP connection to `target`'s host and port, tunnelled through the proxy the
/// environment names for it (HTTP CONNECT), if any.
pub async fn tcp_to(target: &Uri, proxy: &Matcher) -> Result<TcpStream, ConnectError> {
    let (host, port) = authority(target);
    let target_str = format!("{host}:{port}");
    let tcp = match proxy.intercept(target) {
        Some(intercept) => {
            let proxy_name = redact_userinfo(intercept.uri());
            let mut tunnel = Tunnel::new(intercept.uri().clone(), HttpConnector::new());
            if let Some(auth) = intercept.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            let io = tunnel
                .call(target.clone())
                .await
                .map_err(|e| tunnel_error(&proxy_name, &target_str, port, &e))?;
            tracing::debug!(proxy = %proxy_name, target = %target_str, "tunnel established");
            io.into_inner()
        }
        None => TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Unreachable {
                target: target_str.clone(),
                detail: e.to_string(),
            })?,
    };
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// hyper-util does not export its tunnel error type, so its kind is read from its
/// (stable, documented) display text.
fn tunnel_error(
    proxy: &str,
    target: &str,
    port: u16,
    e: &(dyn std::error::Error + 'static),
) -> ConnectError {
    let proxy = proxy.to_owned();
    let text = e.to_string();
    if text.ends_with("unsuccessful") {
        ConnectError::ProxyRefused {
            proxy,
            target: target.to_owned(),
            port,
        }
    } else if text.contains("authorization required") {
        ConnectError::ProxyAuth { proxy }
    } else if text.contains("underlying connection") {
        let detail = e.source().map(chain_to_string).unwrap_or(text);
        ConnectError::ProxyUnreachable { proxy, detail }
    } else {
        ConnectError::Proxy {
            proxy,
            detail: chain_to_string(e),
        }
    }
}

fn tls_error(target: &str, e: std::io::Error) -> ConnectError {
    let target = target.to_owned();
    let detail = e.to_string();
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(_)) => ConnectError::WrongCa { target, detail },
        Some(rustls::Error::AlertReceived(alert)) => {
            use rustls::AlertDescription as A;
            match alert {
                A::CertificateExpired
                | A::CertificateRevoked
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateRequired => ConnectError::CertificateRefused { target, detail },
                _ => ConnectError::Tls { target, detail },
            }
        }
        _ => ConnectError::Tls { target, detail },
    }
}

/// Connects a tonic channel to the control plane. The connection is made eagerly so that
/// errors surface here, classified.
pub async fn connect(control_plane: &Uri, tls: &TlsMaterial) -> Result<Channel, ConnectError> {
    let config = client_config(tls).map_err(|detail| ConnectError::Tls {
        target: control_plane.to_string(),
        detail,
    })?;
    connect_with(control_plane, config).await
}

/// [`connect`] with a client configuration the caller keeps (its TLS tickets included).
pub async fn connect_with(
    control_plane: &Uri,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, ConnectError> {
    let (host, port) = authority(control_plane);
    let target_str = format!("{host}:{port}");
    // tonic sees plain `http://`: TLS is done by our connector, which keeps the
    // handshake's errors and the proxy under our control.
    let inner_uri = format!(
        "http://{}",
        control_plane.authority().map(|a| a.as_str()).unwrap_or("")
    );
    let endpoint = Endpoint::from_shared(inner_uri)
        .map_err(|_| ConnectError::BadUrl(control_plane.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let matcher = Arc::new(Matcher::from_env());
    let target = control_plane.clone();
    let connector = tower::service_fn(move |_: Uri| {
        let matcher = matcher.clone();
        let config = config.clone();
        let target = target.clone();
        async move { dial(&target, &matcher, config).await.map(TokioIo::new) }
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| {
            // Walk the chain for our own classified error.
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = cur {
                if let Some(ce) = err.downcast_ref::<ConnectError>() {
                    return ce.clone();
                }
                cur = err.source();
            }
            let detail = chain_to_string(&e);
            if detail.contains("timed out") || detail.contains("deadline has elapsed") {
                ConnectError::Unreachable {
                    target: target_str.clone(),
                    detail: format!(
                        "no answer within {CONNECT_TIMEOUT:?} (is outbound TCP to this port allowed? \
                         if egress must go through a proxy, set HTTPS_PROXY)"
                    ),
                }
            } else {
                ConnectError::Other {
                    target: target_str.clone(),
                    detail,
                }
            }
        })
}

/// An error and its causes on one line.
pub fn chain_to_string(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}
