//! `tether-agent doctor`: with the flags of `run`, checks each step the agent depends on,
//! in the order the agent takes them, and says for each PASS, FAIL or SKIP, why, and what
//! to do. It changes nothing: the session it opens is a probe (`Hello.probe`), which the
//! control plane answers and ends without superseding the running agent's session.

use std::net::ToSocketAddrs;
use std::time::Duration;

use http::Uri;
use hyper_util::client::proxy::matcher::Matcher;
use serde::Serialize;
use tether_proto::v1 as pb;
use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_shared::pki::CertificateInfo;
use tokio_stream::wrappers::ReceiverStream;

use crate::Config;
use crate::identity_store::{Credentials, StateDir};
use crate::transport::{self, ConnectError, TlsMaterial};

/// Longest one network check may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// More clock skew than this fails: certificates are issued valid from 60 s before now.
pub const MAX_SKEW: Duration = Duration::from_secs(30);
/// A server certificate expiring sooner than this is worth saying so.
const EXPIRY_WARNING: i64 = 14 * 86_400;

/// Every Kubernetes permission the agent uses, in its namespace: (API group, resource or
/// resource/subresource, verbs, one object's name). The same as the Role of
/// deploy/kubernetes/tether-agent.yaml (a test compares them).
pub const PERMISSIONS: &[(&str, &str, &[&str], Option<&str>)] = &[
    ("", "configmaps", ALL, None),
    ("", "services", ALL, None),
    ("", "serviceaccounts", ALL, None),
    ("apps", "deployments", ALL, None),
    ("autoscaling", "horizontalpodautoscalers", ALL, None),
    ("policy", "poddisruptionbudgets", ALL, None),
    ("networking.k8s.io", "networkpolicies", ALL, None),
    ("", "secrets", &["create", "patch", "delete"], None),
    ("", "secrets", &["get"], Some("tether-presto-ca")),
    ("", "pods", &["get", "list", "watch"], None),
    ("", "pods/log", &["get"], None),
    ("", "services/proxy", &["get"], None),
];
const ALL: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// What a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Works.
    Pass,
    /// Does not work: the agent cannot do its job until fixed.
    Fail,
    /// Not checked (not configured, or an earlier step failed).
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Which step, e.g. `tls`.
    pub name: String,
    /// PASS, FAIL or SKIP.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do (failures).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Whether nothing failed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: impl Into<String>, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: String::new(),
        });
        self.ok = !self.checks.iter().any(|c| c.status == Status::Fail);
    }

    fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.add(name, Status::Pass, detail);
    }

    fn skip(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.add(name, Status::Skip, detail);
    }

    fn fail(&mut self, name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(name, Status::Fail, detail);
        if let Some(c) = self.checks.last_mut() {
            c.fix = fix.into();
        }
    }

    /// The report as text: one line per check, the fix indented below a failure.
    pub fn text(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for c in &self.checks {
            let status = match c.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skip => "SKIP",
            };
            out.push_str(&format!("{status}  {:width$}  {}\n", c.name, c.detail));
            if !c.fix.is_empty() {
                out.push_str(&format!("      {:width$}  -> {}\n", "", c.fix));
            }
        }
        out.push_str(if self.ok {
            "all checks passed\n"
        } else {
            "some checks failed\n"
        });
        out
    }
}

/// Runs every check with the configuration `run` would use.
pub async fn run(config: &Config) -> Report {
    let mut r = Report {
        ok: true,
        checks: Vec::new(),
    };
    let roots = ca_file(&mut r, config);
    if let Some(path) = &config.policy_file {
        match crate::guardrails::Policy::load(path) {
            Ok(_) => r.pass(
                "policy-file",
                format!("{} is a valid policy", path.display()),
            ),
            Err(e) => r.fail(
                "policy-file",
                one_line(&e.to_string()),
                "fix the line named; `tether-agent run` refuses to start with it",
            ),
        }
    }
    let creds = certificate(&mut r, config);
    let endpoints = match transport::Endpoints::parse(&config.control_plane) {
        Ok(e) => e,
        Err(e) => {
            r.fail(
                "control-plane",
                e.to_string(),
                "give --control-plane as https://HOST:PORT",
            );
            return r;
        }
    };
    let matcher = Matcher::from_env();
    let several = endpoints.len() > 1;
    let mut reachable: Option<Uri> = None;
    for _ in 0..endpoints.len() {
        let uri = endpoints.current().clone();
        endpoints.advance();
        let suffix = if several {
            format!(" {}", authority(&uri))
        } else {
            String::new()
        };
        if network(&mut r, &uri, &matcher, &suffix).await
            && let Some(roots) = &roots
            && tls(&mut r, &uri, &matcher, roots, &suffix).await
            && reachable.is_none()
        {
            reachable = Some(uri);
        }
    }
    match (&reachable, &roots, &creds) {
        (Some(uri), Some(roots), Some(creds)) => session(&mut r, uri, roots, creds).await,
        (_, _, None) => {
            r.skip("session", "no certificate to open a session with");
            r.skip("clock", "needs a session");
        }
        _ => {
            r.skip(
                "session",
                "no control-plane endpoint passed the checks above",
            );
            r.skip("clock", "needs a session");
        }
    }
    kubernetes(&mut r, config).await;
    match &config.cloudwatch {
        Some(cw) => cloudwatch_check(&mut r, cw).await,
        None => r.skip("cloudwatch", "not configured (--cloudwatch-log-group)"),
    }
    match &config.account_binding {
        Some(sts) => sts_check(&mut r, sts).await,
        None => r.skip("sts", "not configured (--account-binding)"),
    }
    r
}

fn ca_file(
    r: &mut Report,
    config: &Config,
) -> Option<Vec<rustls_pki_types::CertificateDer<'static>>> {
    let path = config.ca_file.display().to_string();
    let fix = "point --ca-file at the control plane's ca.pem (from the dashboard's install page or the operator)";
    match std::fs::read(&config.ca_file) {
        Ok(pem) => match tether_shared::pki::certs_from_pem(&pem) {
            Ok(certs) if !certs.is_empty() => {
                r.pass("ca-file", format!("{path}: {} certificate(s)", certs.len()));
                Some(certs)
            }
            Ok(_) => {
                r.fail("ca-file", format!("{path} holds no certificate"), fix);
                None
            }
            Err(e) => {
                r.fail("ca-file", format!("{path}: {e}"), fix);
                None
            }
        },
        Err(e) => {
            r.fail("ca-file", format!("cannot read {path}: {e}"), fix);
            None
        }
    }
}

/// The agent's own certificate: present, matching its key, not expired.
fn certificate(r: &mut Report, config: &Config) -> Option<Credentials> {
    let enroll_again =
        "create an enrollment token (dashboard or API) and run the agent with --enrollment-token";
    let state = match StateDir::open(&config.state_dir) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                "certificate",
                e.to_string(),
                "check --state-dir and its permissions (0700, owned by the agent)",
            );
            return None;
        }
    };
    let creds = match state.load() {
        Ok(Some(c)) => c,
        Ok(None) if config.enrollment_token.is_some() => {
            r.skip(
                "certificate",
                format!(
                    "not enrolled yet ({} is missing): `run` enrolls with the given token",
                    state.identity_path().display()
                ),
            );
            return None;
        }
        Ok(None) => {
            r.fail(
                "certificate",
                format!(
                    "not enrolled: {} is missing",
                    state.identity_path().display()
                ),
                enroll_again,
            );
            return None;
        }
        Err(e) => {
            r.fail("certificate", e.to_string(), enroll_again);
            return None;
        }
    };
    let matches = rustls::crypto::aws_lc_rs::sign::any_supported_type(&creds.key)
        .map(|key| rustls::sign::CertifiedKey::new(creds.chain.clone(), key))
        .and_then(|ck| ck.keys_match());
    if let Err(e) = matches {
        r.fail(
            "certificate",
            format!(
                "{} does not hold the key of its certificate ({e})",
                state.identity_path().display()
            ),
            enroll_again,
        );
        return None;
    }
    let now = tether_shared::timestamps::now_unix_ms() / 1000;
    let when = |s: i64| tether_shared::timestamps::rfc3339_from_ms(s * 1000).unwrap_or_default();
    let cp = creds
        .info
        .identity
        .as_ref()
        .map(|i| i.compute_plane_id.clone())
        .unwrap_or_default();
    if creds.info.not_after <= now {
        r.fail(
            "certificate",
            format!(
                "serial {} of compute plane {cp} expired at {}",
                creds.info.serial,
                when(creds.info.not_after)
            ),
            format!("the agent was away longer than its certificate lives: {enroll_again}"),
        );
        return Some(creds);
    }
    r.pass(
        "certificate",
        format!(
            "serial {} of compute plane {cp}, matches its key, valid until {}",
            creds.info.serial,
            when(creds.info.not_after)
        ),
    );
    Some(creds)
}

/// A parser's message on one line: without the quoted source and its caret.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l
                    .split_once(" |")
                    .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// The host of a URL, without an IPv6 address's brackets.
fn host_of(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn authority(uri: &Uri) -> String {
    format!("{}:{}", host_of(uri), uri.port_u16().unwrap_or(443))
}

/// DNS and TCP, or the proxy's CONNECT. True when a TLS handshake can follow.
async fn network(r: &mut Report, uri: &Uri, matcher: &Matcher, suffix: &str) -> bool {
    let target = authority(uri);
    let host = host_of(uri);
    if let Some(proxy) = matcher.intercept(uri) {
        let p = proxy.uri();
        let proxy_name = format!("{}:{}", p.host().unwrap_or(""), p.port_u16().unwrap_or(80));
        r.skip(
            format!("dns{suffix}"),
            format!("{host} is resolved by the proxy {proxy_name}"),
        );
        return match tokio::time::timeout(STEP_TIMEOUT, transport::tcp_to(uri, matcher)).await {
            Ok(Ok(_)) => {
                r.pass(
                    format!("proxy{suffix}"),
                    format!("{proxy_name} tunnels CONNECT to {target}"),
                );
                true
            }
            Ok(Err(e)) => {
                let fix = match &e {
                    ConnectError::ProxyUnreachable { .. } => "check HTTPS_PROXY (host and port) and that the proxy runs and is reachable from here".to_owned(),
                    ConnectError::ProxyRefused { port, .. } => format!("allow CONNECT to {target} in the proxy (many allow only port 443: add port {port})"),
                    ConnectError::ProxyAuth { .. } => "put the proxy's user and password in HTTPS_PROXY (http://user:password@proxy:port)".to_owned(),
                    _ => "check the proxy's logs for this CONNECT".to_owned(),
                };
                r.fail(format!("proxy{suffix}"), e.to_string(), fix);
                false
            }
            Err(_) => {
                r.fail(
                    format!("proxy{suffix}"),
                    format!("no answer from {proxy_name} within {STEP_TIMEOUT:?}"),
                    "check HTTPS_PROXY and that outbound TCP to the proxy is allowed",
                );
                false
            }
        };
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        r.pass(format!("dns{suffix}"), format!("{host} is an address"));
    } else {
        let lookup = tokio::task::spawn_blocking({
            let target = target.clone();
            move || target.to_socket_addrs().map(|a| a.collect::<Vec<_>>())
        });
        match tokio::time::timeout(STEP_TIMEOUT, lookup).await {
            Ok(Ok(Ok(addrs))) if !addrs.is_empty() => {
                let list: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
                r.pass(
                    format!("dns{suffix}"),
                    format!("{host} resolves to {}", list.join(", ")),
                );
            }
            Ok(Ok(Ok(_))) => {
                r.fail(
                    format!("dns{suffix}"),
                    format!("{host} resolves to no address"),
                    "check the name in --control-plane and the VPC's DNS resolver",
                );
                return false;
            }
            Ok(Ok(Err(e))) => {
                r.fail(format!("dns{suffix}"), format!("cannot resolve {host}: {e}"), "check the name in --control-plane and the VPC's DNS resolver (or set HTTPS_PROXY if only the proxy resolves outside names)");
                return false;
            }
            _ => {
                r.fail(
                    format!("dns{suffix}"),
                    format!("no answer resolving {host} within {STEP_TIMEOUT:?}"),
                    "check the VPC's DNS resolver",
                );
                return false;
            }
        }
    }
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => {
            r.pass(format!("tcp{suffix}"), format!("connected to {target}"));
            true
        }
        Ok(Err(e)) => {
            r.fail(format!("tcp{suffix}"), format!("cannot connect to {target}: {e}"), "allow outbound TCP to this host and port (security group, network ACL, firewall), or set HTTPS_PROXY to go through a proxy");
            false
        }
        Err(_) => {
            r.fail(format!("tcp{suffix}"), format!("no answer from {target} within {STEP_TIMEOUT:?}"), "outbound TCP to this port is dropped: allow it, or set HTTPS_PROXY to go through a proxy");
            false
        }
    }
}

/// The server's chain against the CA file, its names, its expiry.
async fn tls(
    r: &mut Report,
    uri: &Uri,
    matcher: &Matcher,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    suffix: &str,
) -> bool {
    use rustls::{CertificateError as C, Error as E};
    let target = authority(uri);
    let name = format!("tls{suffix}");
    let config = match transport::new_client_config(&TlsMaterial {
        roots: roots.to_vec(),
        client: None,
    }) {
        Ok(c) => c,
        Err(e) => {
            r.fail(name, e, "point --ca-file at the control plane's ca.pem");
            return false;
        }
    };
    let host = host_of(uri);
    let Ok(server_name) = rustls_pki_types::ServerName::try_from(host.clone()) else {
        r.fail(
            name,
            format!("{host} is not a server name"),
            "give --control-plane as https://HOST:PORT",
        );
        return false;
    };
    let handshake = async {
        let tcp = transport::tcp_to(uri, matcher)
            .await
            .map_err(|e| e.to_string())?;
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|e| {
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(E::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => format!(
                        "the certificate of {target} is not signed by the CA in --ca-file ({e})"
                    ),
                    Some(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => format!(
                        "the certificate of {target} is not valid for the name {host} ({e})"
                    ),
                    Some(E::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => format!(
                        "the certificate of {target} has expired ({e})"
                    ),
                    Some(E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => format!(
                        "the certificate of {target} is not valid yet — or this machine's clock is behind ({e})"
                    ),
                    _ => format!("TLS handshake with {target} failed: {e}"),
                }
            })
    };
    match tokio::time::timeout(STEP_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => {
            let leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| CertificateInfo::from_der(c).ok());
            let now = tether_shared::timestamps::now_unix_ms() / 1000;
            let expiry = leaf
                .map(|l| {
                    let at = tether_shared::timestamps::rfc3339_from_ms(l.not_after * 1000)
                        .unwrap_or_default();
                    if l.not_after - now < EXPIRY_WARNING {
                        format!("; it expires soon, at {at}: tell the control plane's operator")
                    } else {
                        format!(", valid until {at}")
                    }
                })
                .unwrap_or_default();
            r.pass(
                name,
                format!("{target}: chain verified against --ca-file, valid for {host}{expiry}"),
            );
            true
        }
        Ok(Err(detail)) => {
            let fix = if detail.contains("not signed by the CA") {
                "use the CA of this control plane in --ca-file (a TLS-inspecting proxy also causes this: exempt the control plane from inspection)"
            } else if detail.contains("not valid for the name") {
                "use the name the control plane's certificate carries in --control-plane"
            } else if detail.contains("clock") {
                "set this machine's clock (NTP, chrony)"
            } else {
                "check --control-plane names the control plane's gRPC port"
            };
            r.fail(name, detail, fix);
            false
        }
        Err(_) => {
            r.fail(
                name,
                format!("no TLS handshake with {target} within {STEP_TIMEOUT:?}"),
                "check --control-plane names the control plane's gRPC port",
            );
            false
        }
    }
}

/// A probe session: Hello, Welcome, the server's clock.
async fn session(
    r: &mut Report,
    uri: &Uri,
    roots: &[rustls_pki_types::CertificateDer<'static>],
    creds: &Credentials,
) {
    let enroll_again =
        "create an enrollment token (dashboard or API) and run the agent with --enrollment-token";
    let tls = TlsMaterial {
        roots: roots.to_vec(),
        client: Some((creds.chain.clone(), creds.key.clone())),
    };
    let started = tokio::time::Instant::now();
    let attempt = async {
        let channel = transport::connect(uri, &tls)
            .await
            .map_err(|e| (e.to_string(), tonic::Code::Unavailable))?;
        let mut client = AgentControlClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let hello = pb::Hello {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            probe: true,
            certificate_serial: creds.info.serial.clone(),
            ..Default::default()
        };
        let _ = tx
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(hello)),
            })
            .await;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| (s.message().to_owned(), s.code()))?
            .into_inner();
        let first = inbound
            .message()
            .await
            .map_err(|s| (s.message().to_owned(), s.code()))?;
        drop(tx);
        Ok::<_, (String, tonic::Code)>(first)
    };
    let answer = tokio::time::timeout(STEP_TIMEOUT, attempt).await;
    let rtt = started.elapsed();
    let received = tether_shared::timestamps::now_unix_ms();
    match answer {
        Ok(Ok(Some(pb::ControlMessage {
            kind: Some(pb::control_message::Kind::Welcome(w)),
        }))) => {
            r.pass(
                "revocation",
                "the control plane accepts this agent's certificate",
            );
            r.pass(
                "session",
                format!("Hello answered by Welcome in {} ms", rtt.as_millis()),
            );
            let server = w.server_time_unix_ms + (rtt.as_millis() / 2) as i64;
            let skew_ms = received - server;
            let skew = Duration::from_millis(skew_ms.unsigned_abs());
            let side = if skew_ms > 0 { "ahead of" } else { "behind" };
            if skew > MAX_SKEW {
                r.fail(
                    "clock",
                    format!("this machine's clock is {:.1} s {side} the control plane's", skew.as_secs_f64()),
                    format!("set the clock (NTP, chrony; on AWS the Amazon Time Sync Service at 169.254.169.123): beyond 60 s, new certificates are not valid yet (allowed: {} s)", MAX_SKEW.as_secs()),
                );
            } else {
                r.pass(
                    "clock",
                    format!("{:.1} s {side} the control plane's", skew.as_secs_f64()),
                );
            }
        }
        Ok(Ok(Some(pb::ControlMessage {
            kind: Some(pb::control_message::Kind::Goodbye(g)),
        }))) => {
            r.pass(
                "revocation",
                "the control plane accepts this agent's certificate",
            );
            r.fail(
                "session",
                format!(
                    "the control plane ended the session at once: {} ({})",
                    g.reason, g.message
                ),
                "try again in a moment (the replica is stopping or busy)",
            );
            r.skip("clock", "needs a session");
        }
        Ok(Ok(_)) => {
            r.fail(
                "session",
                "the control plane closed the session without a Welcome",
                "check the control plane's logs",
            );
            r.skip("clock", "needs a session");
        }
        Ok(Err((message, tonic::Code::PermissionDenied))) => {
            r.fail(
                "revocation",
                format!("the control plane revoked this agent's certificate: {message}"),
                enroll_again,
            );
            r.skip("session", "the certificate is revoked");
            r.skip("clock", "needs a session");
        }
        Ok(Err((message, _))) => {
            r.skip("revocation", "needs a session");
            let fix = if message.contains("refused this agent's certificate") {
                enroll_again.to_owned()
            } else {
                "check the control plane's logs around this time".to_owned()
            };
            r.fail("session", message, fix);
            r.skip("clock", "needs a session");
        }
        Err(_) => {
            r.skip("revocation", "needs a session");
            r.fail(
                "session",
                format!("no Welcome within {STEP_TIMEOUT:?}"),
                "check the control plane's logs",
            );
            r.skip("clock", "needs a session");
        }
    }
}

/// The Kubernetes API: reachable, authenticated, and each permission the agent needs.
async fn kubernetes(r: &mut Report, config: &Config) {
    let client = match &config.eks {
        Some(e) => {
            let (_halt_tx, halt) = tokio::sync::watch::channel(false);
            crate::eks::client(e, &config.state_dir, halt)
                .await
                .map(Some)
        }
        None => crate::reconcile::client(config.kubeconfig.as_deref()).await,
    };
    let client = match client {
        Ok(Some(c)) => c,
        Ok(None) => {
            r.skip(
                "kubernetes",
                "no --kubeconfig and not in a pod: the agent applies nothing",
            );
            return;
        }
        Err(e) => {
            r.fail(
                "kubernetes",
                e,
                "check --kubeconfig (or the pod's service account)",
            );
            return;
        }
    };
    match tokio::time::timeout(STEP_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(v)) => r.pass(
            "kubernetes.api",
            format!("reachable, Kubernetes {}.{}", v.major, v.minor),
        ),
        Ok(Err(kube::Error::Api(s))) if s.code == 401 => {
            r.pass("kubernetes.api", "reachable");
            r.fail("kubernetes.auth", format!("not authenticated: {}", s.message), "check the credentials of --kubeconfig (or the service account token; on EKS the access entry of the agent's role)");
            return;
        }
        Ok(Err(e)) => {
            r.fail(
                "kubernetes.api",
                format!("cannot reach the Kubernetes API: {e}"),
                "check the API server address in --kubeconfig and that this machine may reach it",
            );
            return;
        }
        Err(_) => {
            r.fail(
                "kubernetes.api",
                format!("no answer from the Kubernetes API within {STEP_TIMEOUT:?}"),
                "check the API server address and the network path to it",
            );
            return;
        }
    }
    let api: kube::Api<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview> =
        kube::Api::all(client);
    let mut authenticated = false;
    let mut results = Vec::new();
    for (group, resource, verbs, name) in PERMISSIONS {
        let (res, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (*resource, None),
        };
        let mut missing = Vec::new();
        for verb in *verbs {
            let review = k8s_openapi::api::authorization::v1::SelfSubjectAccessReview {
                spec: k8s_openapi::api::authorization::v1::SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(
                        k8s_openapi::api::authorization::v1::ResourceAttributes {
                            namespace: Some(config.namespace.clone()),
                            group: Some((*group).to_owned()),
                            resource: Some(res.to_owned()),
                            subresource: sub.clone(),
                            verb: Some((*verb).to_owned()),
                            name: name.map(str::to_owned),
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                },
                ..Default::default()
            };
            match tokio::time::timeout(
                STEP_TIMEOUT,
                api.create(&kube::api::PostParams::default(), &review),
            )
            .await
            {
                Ok(Ok(answer)) => {
                    authenticated = true;
                    if !answer.status.is_some_and(|s| s.allowed) {
                        missing.push((*verb).to_owned());
                    }
                }
                Ok(Err(kube::Error::Api(s))) if s.code == 401 => {
                    r.fail(
                        "kubernetes.auth",
                        format!("not authenticated: {}", s.message),
                        "check the credentials of --kubeconfig (or the service account token)",
                    );
                    return;
                }
                Ok(Err(e)) => {
                    r.fail("kubernetes.auth", format!("cannot ask the API server for its permissions: {e}"), "the agent needs to create SelfSubjectAccessReviews (every authenticated user may by default)");
                    return;
                }
                Err(_) => {
                    r.fail(
                        "kubernetes.auth",
                        "no answer to a SelfSubjectAccessReview",
                        "check the API server",
                    );
                    return;
                }
            }
        }
        results.push((group, resource, verbs, name, missing));
    }
    if authenticated {
        r.pass("kubernetes.auth", "authenticated");
    }
    for (group, resource, verbs, name, missing) in results {
        let what = match (group.is_empty(), name) {
            (true, Some(n)) => format!("{resource} {n}"),
            (true, None) => (*resource).to_owned(),
            (false, _) => format!("{resource}.{group}"),
        };
        let check = format!("kubernetes.permission {what}");
        if missing.is_empty() {
            r.pass(
                check,
                format!("{} in namespace {}", verbs.join(", "), config.namespace),
            );
        } else {
            r.fail(
                check,
                format!("may not {} {what} in namespace {}", missing.join(", "), config.namespace),
                "grant it: apply the Role of deploy/kubernetes/tether-agent.yaml (or, on EKS, the install's access entry)",
            );
        }
    }
}

/// CloudWatch Logs with the call the agent's role is granted: creating the agent's own
/// stream, which exists once the agent ran (then the answer proves the permission and
/// changes nothing) and which `run` would create anyway.
async fn cloudwatch_check(r: &mut Report, cw: &crate::cloudwatch::CloudWatchConfig) {
    let (client, endpoint) = crate::cloudwatch::client::connect(cw).await;
    let (group, stream) = (&cw.log_group, &cw.log_stream);
    let call = client
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send();
    let fix = "check the agent's AWS credentials (task or pod role) and that it may call logs:CreateLogStream and logs:PutLogEvents on its log group; behind a proxy set HTTPS_PROXY";
    match tokio::time::timeout(STEP_TIMEOUT, call).await {
        Ok(Ok(_)) => r.pass(
            "cloudwatch",
            format!("log group {group} exists and the agent may write it: created its stream {stream} ({endpoint})"),
        ),
        Ok(Err(e)) if e.as_service_error().is_some_and(|s| s.is_resource_already_exists_exception()) => r.pass(
            "cloudwatch",
            format!("log group {group} exists and the agent may write its stream {stream} ({endpoint})"),
        ),
        Ok(Err(e)) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => r.fail(
            "cloudwatch",
            format!("log group {group} does not exist ({endpoint})"),
            "create it (the CloudFormation install does), or let the agent create it with logs:CreateLogGroup",
        ),
        Ok(Err(e)) => r.fail(
            "cloudwatch",
            format!("{endpoint}: {}", crate::transport::chain_to_string(&e)),
            fix,
        ),
        Err(_) => r.fail("cloudwatch", format!("no answer from {endpoint} within {STEP_TIMEOUT:?}"), "allow HTTPS to CloudWatch Logs (a VPC endpoint, or through HTTPS_PROXY)"),
    }
}

async fn sts_check(r: &mut Report, sts: &crate::aws_identity::StsSettings) {
    match tokio::time::timeout(STEP_TIMEOUT, crate::aws_identity::caller_identity(sts)).await {
        Ok(Ok((account, arn))) => r.pass("sts", format!("account {account} as {arn}")),
        Ok(Err(e)) => r.fail("sts", e, "check the agent's AWS credentials (its role) and the STS endpoint (--sts-endpoint); behind a proxy set HTTPS_PROXY"),
        Err(_) => r.fail("sts", format!("no answer from STS within {STEP_TIMEOUT:?}"), "allow HTTPS to STS (a VPC endpoint, or through HTTPS_PROXY)"),
    }
}

/// Prints the report (text or JSON) and returns the exit code: 0 when nothing failed.
pub fn print(report: &Report, json: bool) -> i32 {
    use std::io::Write;
    let text = if json {
        serde_json::to_string_pretty(report).unwrap_or_default() + "\n"
    } else {
        report.text()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if report.ok { 0 } else { 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_report_says_what_to_do_under_each_failure() {
        let mut r = Report::default();
        r.pass("dns", "cp resolves to 10.0.0.1");
        r.fail("tls", "not signed by the CA", "use the right --ca-file");
        r.skip("sts", "not configured");
        assert!(!r.ok);
        let text = r.text();
        assert!(text.contains("PASS  dns  cp resolves"), "{text}");
        assert!(text.contains("FAIL  tls  not signed"), "{text}");
        assert!(text.contains("-> use the right --ca-file"), "{text}");
        assert!(text.ends_with("some checks failed\n"), "{text}");
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["checks"][1]["status"], "FAIL");
        assert_eq!(json["ok"], false);
        assert!(json["checks"][0].get("fix").is_none());
    }

    #[test]
    fn a_parser_message_fits_one_line() {
        let e = "policy file p.toml: TOML parse error at line 3, column 25\n  |\n3 | a = [\"x\"]\n  |     ^^^\n\"x\": not a host name\n";
        assert_eq!(
            one_line(e),
            "policy file p.toml: TOML parse error at line 3, column 25: \"x\": not a host name"
        );
    }

    #[test]
    fn permissions_name_each_resource_once_per_object() {
        let mut seen = std::collections::BTreeSet::new();
        for (group, resource, verbs, name) in PERMISSIONS {
            assert!(!verbs.is_empty());
            assert!(seen.insert((group, resource, name)), "{resource} twice");
        }
    }
}
