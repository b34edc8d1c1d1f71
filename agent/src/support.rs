//! Support without access: the control plane asks for a diagnostic bundle
//! (`SupportRequest`); the agent prepares it at once — its recent log lines, the objects it
//! manages, pod summaries, its last report and a doctor report, redacted like telemetry
//! and never holding a Secret — and keeps it in `STATE_DIR/support/`, where the customer
//! reads it (`tether-agent support list|show`). Only after `tether-agent support approve
//! ID`, and before the request expires, is that same bundle sent (`SendSupportBundle`).
//! Each step is in the audit log.
//!
//! Files per request `ID`: `ID.request.json`, `ID.bundle.json` (exactly what is sent),
//! `ID.approved` (by the CLI), `ID.sent` or `ID.expired` (by the agent).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_proto::v1 as pb;
use tether_shared::redact::redact_message;
use tokio::sync::{mpsc, watch};

use crate::reconcile::kube_ops::Kube;
use crate::report::Report;

/// The directory inside the state dir.
pub const SUPPORT_DIR: &str = "support";
/// How often approvals and expiries are looked at.
const POLL: Duration = Duration::from_secs(2);
/// A failed send is tried again after this.
const RETRY: Duration = Duration::from_secs(15);
/// Log lines kept for a bundle.
const LOG_LINES: usize = 2000;
/// Bytes of log lines kept for a bundle.
const LOG_BYTES: usize = 1 << 20;
/// Most bytes of a bundle (the control plane takes up to 3 MiB): the log is shortened
/// first, then the objects, so that what the customer reviews is what can be sent.
const MAX_BUNDLE: usize = 5 << 19;

/// Shortens the largest parts until the bundle fits [`MAX_BUNDLE`]: the oldest log lines
/// go first, then the end of the object listing.
fn fit(files: &mut [File]) {
    let total = |f: &[File]| {
        f.iter()
            .map(|x| x.name.len() + x.content.len())
            .sum::<usize>()
    };
    for name in ["agent.log", "objects.json", "pods.json"] {
        let over = total(files).saturating_sub(MAX_BUNDLE);
        if over == 0 {
            return;
        }
        if let Some(f) = files.iter_mut().find(|f| f.name == name) {
            let mut cut = over.min(f.content.len()) + 64;
            cut = cut.min(f.content.len());
            if name == "agent.log" {
                while !f.content.is_char_boundary(cut) {
                    cut += 1;
                }
                f.content = format!(
                    "[{cut} bytes of older lines left out]\n{}",
                    &f.content[cut..]
                );
            } else {
                let mut keep = f.content.len() - cut;
                while !f.content.is_char_boundary(keep) {
                    keep -= 1;
                }
                f.content.truncate(keep);
                f.content
                    .push_str("\n[the rest left out: the bundle's size limit]");
            }
        }
    }
}

/// A request as kept in `ID.request.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Id.
    pub id: String,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Until when it may be sent (Unix ms).
    pub expires_at_unix_ms: i64,
    /// When the agent received it (Unix ms).
    pub received_at_unix_ms: i64,
}

/// A bundle as kept in `ID.bundle.json` and sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    /// The request.
    pub request_id: String,
    /// Its files.
    pub files: Vec<File>,
}

/// One file of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct File {
    /// Name.
    pub name: String,
    /// Content.
    pub content: String,
}

impl Bundle {
    /// Bytes of all files.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|f| f.content.len()).sum()
    }
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(SUPPORT_DIR)
}

fn path(state_dir: &Path, id: &str, ext: &str) -> PathBuf {
    dir(state_dir).join(format!("{id}.{ext}"))
}

/// Whether `id` is a request id the control plane makes (`sr-` and hex): it names files.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("sr-")
        .is_some_and(|h| !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

// --- the agent's recent log lines --------------------------------------------------------

/// The last [`LOG_LINES`] log lines of this process.
#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<String>,
    bytes: usize,
}

static RING: OnceLock<Arc<Mutex<Ring>>> = OnceLock::new();

fn ring() -> Arc<Mutex<Ring>> {
    RING.get_or_init(Arc::default).clone()
}

/// Where the log layer writes: one formatted event per `write_all`.
#[derive(Debug)]
pub struct RingWriter(Arc<Mutex<Ring>>);

impl std::io::Write for RingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).trim_end().to_owned();
        if line.is_empty() {
            return Ok(buf.len());
        }
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        r.bytes += line.len();
        r.lines.push_back(line);
        while r.lines.len() > LOG_LINES || r.bytes > LOG_BYTES {
            match r.lines.pop_front() {
                Some(old) => r.bytes -= old.len(),
                None => break,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tracing layer keeping the agent's recent log lines (plain text, no colours) for
/// support bundles.
pub fn log_layer() -> impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync {
    let ring = ring();
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || RingWriter(ring.clone()))
}

fn recent_logs() -> String {
    let r = ring();
    let r = r.lock().unwrap_or_else(|p| p.into_inner());
    r.lines
        .iter()
        .map(|l| redact_message(l))
        .collect::<Vec<_>>()
        .join("\n")
}

// --- receiving requests -------------------------------------------------------------------

static INBOX: OnceLock<mpsc::UnboundedSender<pb::SupportRequest>> = OnceLock::new();

/// Hands a request from the session to the running desk.
pub fn deliver(r: pb::SupportRequest) {
    match INBOX.get() {
        Some(tx) => {
            let _ = tx.send(r);
        }
        None => {
            tracing::warn!(request = %r.id, "support request received before the agent was ready; it comes again with the next session")
        }
    }
}

/// What a bundle is made from.
#[derive(Debug)]
pub struct Desk {
    /// The agent's configuration (for the doctor report, and to send).
    pub config: crate::Config,
    /// The compute plane.
    pub compute_plane_id: String,
    /// The Kubernetes API, if the agent applies.
    pub kube: Option<Kube>,
    /// The reconciler's latest report.
    pub report: watch::Receiver<Report>,
    /// Bundles sent whose `ID.sent` could not be written (not sent twice).
    pub sent: Mutex<std::collections::HashSet<String>>,
}

impl Desk {
    /// Takes requests from sessions and sends approved bundles until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if INBOX.set(tx).is_err() {
            tracing::error!("a second support desk in one process; requests go to the first");
            return;
        }
        let state_dir = self.config.state_dir.clone();
        if let Err(e) = std::fs::create_dir_all(dir(&state_dir)) {
            tracing::error!(
                "cannot create {}: {e}; support requests cannot be kept",
                dir(&state_dir).display()
            );
        }
        let mut tick = tokio::time::interval(POLL);
        let mut next_try: std::collections::HashMap<String, tokio::time::Instant> =
            Default::default();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(r) = rx.recv() => self.received(r).await,
                _ = tick.tick() => self.look(&mut next_try).await,
            }
        }
    }

    async fn received(&self, r: pb::SupportRequest) {
        let dir = &self.config.state_dir;
        if !valid_id(&r.id) {
            tracing::warn!(request = %r.id, "ignoring a support request with an invalid id");
            return;
        }
        if path(dir, &r.id, "request.json").exists() {
            return; // sent again at a session start: already here
        }
        let now = tether_shared::timestamps::now_unix_ms();
        let request = Request {
            id: r.id.clone(),
            reason: r
                .reason
                .chars()
                .filter(|c| !c.is_control())
                .take(500)
                .collect(),
            requested_by: r
                .requested_by
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect(),
            expires_at_unix_ms: r.expires_at_unix_ms,
            received_at_unix_ms: now,
        };
        let bundle = self.prepare(&request).await;
        let written = serde_json::to_vec_pretty(&bundle)
            .map_err(std::io::Error::other)
            .and_then(|b| tether_shared::files::write_private(&path(dir, &r.id, "bundle.json"), &b))
            .and_then(|()| serde_json::to_vec_pretty(&request).map_err(std::io::Error::other))
            .and_then(|b| {
                tether_shared::files::write_private(&path(dir, &r.id, "request.json"), &b)
            });
        if let Err(e) = written {
            tracing::error!(request = %r.id, "cannot keep the support request: {e}");
            return;
        }
        let names: Vec<&str> = bundle.files.iter().map(|f| f.name.as_str()).collect();
        crate::audit::record(
            "support.requested",
            serde_json::json!({
                "id": request.id, "reason": request.reason, "requested_by": request.requested_by,
                "expires_at": tether_shared::timestamps::rfc3339_from_ms(request.expires_at_unix_ms).unwrap_or_default(),
                "files": names, "bytes": bundle.bytes(),
            }),
        );
        tracing::warn!(
            request = %request.id, reason = %request.reason, by = %request.requested_by,
            "the control plane asks for a support bundle; nothing is sent until approved: review it with `tether-agent support show {}` and send it with `tether-agent support approve {}`",
            request.id, request.id
        );
    }

    /// The bundle: what the customer reviews and, once approved, what is sent.
    async fn prepare(&self, request: &Request) -> Bundle {
        let mut files = Vec::new();
        let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
        files.push(File {
            name: "request.json".into(),
            content: json(&serde_json::to_value(request).unwrap_or_default()),
        });
        let doctor = crate::doctor::run(&self.config).await;
        files.push(File {
            name: "doctor.txt".into(),
            content: doctor.text(),
        });
        files.push(File {
            name: "agent.log".into(),
            content: recent_logs(),
        });
        let report = self.report.borrow().clone();
        files.push(File {
            name: "report.json".into(),
            content: json(&report_json(&report)),
        });
        match &self.kube {
            Some(kube) => {
                files.push(File {
                    name: "objects.json".into(),
                    content: json(&objects(kube, &self.compute_plane_id).await),
                });
                files.push(File {
                    name: "pods.json".into(),
                    content: json(&pods(kube, &self.compute_plane_id).await),
                });
            }
            None => files.push(File {
                name: "kubernetes.txt".into(),
                content: "the agent has no Kubernetes API (no --kubeconfig, not in a pod)".into(),
            }),
        }
        fit(&mut files);
        Bundle {
            request_id: request.id.clone(),
            files,
        }
    }

    /// Sends what was approved; expires what was not in time.
    async fn look(&self, next_try: &mut std::collections::HashMap<String, tokio::time::Instant>) {
        let dir = &self.config.state_dir;
        let now = tether_shared::timestamps::now_unix_ms();
        for (request, state) in list(dir) {
            match state {
                State::Approved
                    if self
                        .sent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(&request.id) =>
                {
                    continue;
                }
                State::Approved | State::Waiting if request.expires_at_unix_ms <= now => {}
                State::Approved => {
                    if next_try
                        .get(&request.id)
                        .is_some_and(|t| *t > tokio::time::Instant::now())
                    {
                        continue;
                    }
                    match self.send(&request).await {
                        Ok(bytes) => {
                            let marked = tether_shared::files::write_private(
                                &path(dir, &request.id, "sent"),
                                tether_shared::timestamps::rfc3339_from_ms(now)
                                    .unwrap_or_default()
                                    .as_bytes(),
                            );
                            if let Err(e) = marked {
                                tracing::error!(request = %request.id, "the bundle was sent, but its .sent marker cannot be written: {e}");
                                self.sent
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(request.id.clone());
                            }
                            crate::audit::record(
                                "support.bundle_sent",
                                serde_json::json!({"id": request.id, "bytes": bytes}),
                            );
                            tracing::info!(request = %request.id, bytes, "support bundle sent");
                            next_try.remove(&request.id);
                        }
                        Err(Failure::Refused(why)) => {
                            let _ = tether_shared::files::write_private(
                                &path(dir, &request.id, "expired"),
                                why.as_bytes(),
                            );
                            crate::audit::record(
                                "support.bundle_refused",
                                serde_json::json!({"id": request.id, "message": why}),
                            );
                            tracing::warn!(request = %request.id, "the control plane refused the support bundle: {why}");
                        }
                        Err(Failure::Retry(why)) => {
                            tracing::warn!(request = %request.id, retry_in_s = RETRY.as_secs(), "cannot send the support bundle yet: {why}");
                            next_try
                                .insert(request.id.clone(), tokio::time::Instant::now() + RETRY);
                        }
                    }
                    continue;
                }
                _ => continue,
            }
            // Approved too late, or never: the bundle goes, the request stays listed.
            let _ = std::fs::remove_file(path(dir, &request.id, "bundle.json"));
            let _ =
                tether_shared::files::write_private(&path(dir, &request.id, "expired"), b"expired");
            crate::audit::record("support.expired", serde_json::json!({"id": request.id}));
            tracing::info!(request = %request.id, "support request expired before it was sent; its bundle is deleted");
        }
    }

    async fn send(&self, request: &Request) -> Result<usize, Failure> {
        let dir = &self.config.state_dir;
        let bundle: Bundle = std::fs::read(path(dir, &request.id, "bundle.json"))
            .map_err(|e| Failure::Refused(format!("the bundle is gone: {e}")))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| Failure::Refused(format!("the bundle is damaged: {e}")))
            })?;
        let creds = crate::identity_store::StateDir::open(dir)
            .ok()
            .and_then(|s| s.load().ok().flatten())
            .ok_or_else(|| Failure::Retry("no agent certificate".into()))?;
        let ca = std::fs::read(&self.config.ca_file).map_err(|e| Failure::Retry(e.to_string()))?;
        let roots =
            tether_shared::pki::certs_from_pem(&ca).map_err(|e| Failure::Retry(e.to_string()))?;
        let endpoints = crate::transport::Endpoints::parse(&self.config.control_plane)
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let tls = crate::transport::TlsMaterial {
            roots,
            client: Some((creds.chain.clone(), creds.key.clone())),
        };
        let bytes = bundle.bytes();
        let message = pb::SupportBundle {
            request_id: bundle.request_id,
            files: bundle
                .files
                .into_iter()
                .map(|f| pb::SupportFile {
                    name: f.name,
                    content: f.content,
                })
                .collect(),
        };
        let mut last = String::new();
        for _ in 0..endpoints.len() {
            let uri = endpoints.current().clone();
            endpoints.advance();
            let channel = match crate::transport::connect(&uri, &tls).await {
                Ok(c) => c,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            let mut client = pb::agent_control_client::AgentControlClient::new(channel)
                .max_encoding_message_size(tether_proto::MAX_MESSAGE_BYTES);
            return match client.send_support_bundle(message.clone()).await {
                Ok(_) => Ok(bytes),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::NotFound
                            | tonic::Code::FailedPrecondition
                            | tonic::Code::InvalidArgument
                            | tonic::Code::PermissionDenied
                    ) =>
                {
                    Err(Failure::Refused(s.message().to_owned()))
                }
                Err(s) => Err(Failure::Retry(s.message().to_owned())),
            };
        }
        Err(Failure::Retry(last))
    }
}

enum Failure {
    /// Will not work again.
    Refused(String),
    /// Try again later.
    Retry(String),
}

fn report_json(r: &Report) -> serde_json::Value {
    let cond = |c: &pb::ClusterCondition| {
        serde_json::json!({"cluster": c.cluster, "type": c.r#type, "status": c.status,
            "reason": c.reason, "message": redact_message(&c.message)})
    };
    serde_json::json!({
        "applied_generation": r.applied_generation,
        "conditions": r.conditions.iter().map(cond).collect::<Vec<_>>(),
        "clusters": r.clusters.iter().map(|s| serde_json::json!({
            "name": s.name, "phase": s.phase, "coordinator_ready": s.coordinator_ready,
            "ready_workers": s.ready_workers, "desired_workers": s.desired_workers,
            "observed_generation": s.observed_generation,
            "last_error": redact_message(&s.last_error),
            "conditions": s.conditions.iter().map(cond).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// The objects the agent manages for this compute plane (never a Secret: the agent does
/// not read them), without managed fields.
async fn objects(kube: &Kube, cp: &str) -> serde_json::Value {
    let selector = format!(
        "{},{}={cp}",
        crate::render::managed_selector(),
        crate::render::labels::COMPUTE_PLANE_LABEL
    );
    let mut out = serde_json::Map::new();
    for (api_version, kind, _, _) in crate::render::MANAGED_KINDS {
        if *kind == "Secret" {
            continue;
        }
        let value = match kube.list(api_version, kind, &selector).await {
            Ok(items) => serde_json::Value::Array(
                items
                    .into_iter()
                    .map(|mut o| {
                        o.metadata.managed_fields = None;
                        let mut v = serde_json::to_value(&o).unwrap_or_default();
                        if *kind == "ConfigMap" {
                            scrub_config_map(&mut v);
                        }
                        v
                    })
                    .collect(),
            ),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        out.insert(format!("{kind}s"), value);
    }
    serde_json::Value::Object(out)
}

/// Lines of configuration files whose key looks like a secret lose their value (the agent
/// never writes one there: secrets are `${ENV:…}` references; this holds for hand edits).
fn scrub_config_map(v: &mut serde_json::Value) {
    let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) else {
        return;
    };
    for value in data.values_mut() {
        let Some(text) = value.as_str() else { continue };
        let scrubbed: Vec<String> = text
            .lines()
            .map(|line| match line.split_once('=') {
                Some((k, _)) if looks_secret(k) => format!("{k}=<removed>"),
                _ => line.to_owned(),
            })
            .collect();
        *value = serde_json::Value::String(scrubbed.join("\n"));
    }
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "credential",
        "keytab",
        "access-key",
        "private",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// One line per pod: phase, node, and per container readiness, restarts and why it last
/// stopped.
async fn pods(kube: &Kube, cp: &str) -> serde_json::Value {
    use k8s_openapi::api::core::v1::Pod;
    let api: kube::Api<Pod> = kube::Api::namespaced(kube.client().clone(), kube.namespace());
    let selector = format!("{}={cp}", crate::render::labels::COMPUTE_PLANE_LABEL);
    match api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => serde_json::Value::Array(
            list.items
                .iter()
                .map(|p| {
                    let status = p.status.clone().unwrap_or_default();
                    let containers: Vec<serde_json::Value> = status
                        .container_statuses
                        .unwrap_or_default()
                        .iter()
                        .map(|c| {
                            let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                            serde_json::json!({
                                "name": c.name, "image": c.image, "ready": c.ready,
                                "restarts": c.restart_count,
                                "last_stopped": last.map(|t| serde_json::json!({
                                    "reason": t.reason, "exit_code": t.exit_code,
                                    "message": t.message.as_deref().map(redact_message),
                                })),
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": p.metadata.name, "phase": status.phase,
                        "node": p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        "started": status.start_time.map(|t| t.0.to_string()),
                        "containers": containers,
                    })
                })
                .collect(),
        ),
        Err(e) => serde_json::json!({"error": e.to_string()}),
    }
}

// --- the customer's side (the CLI) ---------------------------------------------------------

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Prepared, waiting for the customer.
    Waiting,
    /// Approved, being sent.
    Approved,
    /// Sent.
    Sent,
    /// Not sent in time (or refused by the control plane).
    Expired,
}

impl State {
    fn text(self) -> &'static str {
        match self {
            State::Waiting => "waiting for approval",
            State::Approved => "approved, sending",
            State::Sent => "sent",
            State::Expired => "expired",
        }
    }
}

/// The requests in the state dir, oldest first.
pub fn list(state_dir: &Path) -> Vec<(Request, State)> {
    let Ok(entries) = std::fs::read_dir(dir(state_dir)) else {
        return Vec::new();
    };
    let mut out: Vec<(Request, State)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".request.json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Request>(&b).ok())
        .filter(|r| valid_id(&r.id))
        .map(|r| {
            let state = if path(state_dir, &r.id, "sent").exists() {
                State::Sent
            } else if path(state_dir, &r.id, "expired").exists() {
                State::Expired
            } else if path(state_dir, &r.id, "approved").exists() {
                State::Approved
            } else {
                State::Waiting
            };
            (r, state)
        })
        .collect();
    out.sort_by_key(|(r, _)| r.received_at_unix_ms);
    out
}

/// `tether-agent support list`: a table of the requests.
pub fn list_text(state_dir: &Path) -> String {
    let requests = list(state_dir);
    if requests.is_empty() {
        return format!("no support requests in {}\n", state_dir.display());
    }
    let mut out = String::from("ID\tSTATUS\tEXPIRES\tREQUESTED BY\tREASON\tBUNDLE\n");
    for (r, state) in requests {
        let bundle = read_bundle(state_dir, &r.id)
            .map(|b| {
                let names: Vec<String> = b
                    .files
                    .iter()
                    .map(|f| format!("{} ({} B)", f.name, f.content.len()))
                    .collect();
                names.join(", ")
            })
            .unwrap_or_else(|_| "-".into());
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            r.id,
            state.text(),
            tether_shared::timestamps::rfc3339_from_ms(r.expires_at_unix_ms).unwrap_or_default(),
            r.requested_by,
            r.reason,
            bundle
        ));
    }
    out
}

fn read_bundle(state_dir: &Path, id: &str) -> Result<Bundle, String> {
    if !valid_id(id) {
        return Err(format!("{id:?} is not a support request id (sr-…)"));
    }
    let p = path(state_dir, id, "bundle.json");
    let bytes = std::fs::read(&p)
        .map_err(|e| format!("no bundle of {id} in {} ({e})", dir(state_dir).display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// `tether-agent support show ID`: the bundle exactly as it would be sent.
pub fn show(state_dir: &Path, id: &str) -> Result<String, String> {
    let b = read_bundle(state_dir, id)?;
    serde_json::to_string_pretty(&b)
        .map(|t| t + "\n")
        .map_err(|e| e.to_string())
}

/// `tether-agent support approve ID`: lets the running agent send the bundle.
pub fn approve(state_dir: &Path, id: &str) -> Result<String, String> {
    let Some((request, state)) = list(state_dir).into_iter().find(|(r, _)| r.id == id) else {
        return Err(format!(
            "no support request {id:?} in {} (see `tether-agent support list`)",
            dir(state_dir).display()
        ));
    };
    match state {
        State::Sent => return Err(format!("the bundle of {id} was sent already")),
        State::Expired => return Err(format!("{id} expired; ask for a new request")),
        State::Approved => return Err(format!("{id} is approved already")),
        State::Waiting => {}
    }
    if request.expires_at_unix_ms <= tether_shared::timestamps::now_unix_ms() {
        return Err(format!("{id} expired; ask for a new request"));
    }
    let bundle = read_bundle(state_dir, id)?;
    let by = std::env::var("USER").unwrap_or_default();
    tether_shared::files::write_private(&path(state_dir, id, "approved"), by.as_bytes())
        .map_err(|e| e.to_string())?;
    crate::audit::init(state_dir, crate::audit::DEFAULT_MAX_BYTES);
    crate::audit::record(
        "support.approved",
        serde_json::json!({"id": id, "by": by, "files": bundle.files.len(), "bytes": bundle.bytes()}),
    );
    Ok(format!(
        "approved: the agent sends the bundle of {id} ({} files, {} bytes) within a few seconds",
        bundle.files.len(),
        bundle.bytes()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_cannot_name_other_files() {
        assert!(valid_id("sr-0123abcd"));
        for bad in ["", "sr-", "../x", "sr-../../identity", "sr-12/34", "x-12"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_large_bundle_is_cut_to_what_can_be_sent_oldest_log_lines_first() {
        let line = "2026-12-03T14:00:00Z INFO tether_agent: reconciled é\n";
        let mut files = vec![
            File {
                name: "doctor.txt".into(),
                content: "PASS  dns".into(),
            },
            File {
                name: "agent.log".into(),
                content: line.repeat(2 * MAX_BUNDLE / line.len()),
            },
            File {
                name: "objects.json".into(),
                content: "x".repeat(MAX_BUNDLE / 2),
            },
        ];
        fit(&mut files);
        let total: usize = files.iter().map(|f| f.name.len() + f.content.len()).sum();
        assert!(total <= MAX_BUNDLE + 200, "{total}");
        assert_eq!(files[0].content, "PASS  dns", "small parts stay whole");
        assert!(files[1].content.starts_with('['), "the oldest lines went");
        assert!(
            files[1].content.ends_with("reconciled é\n"),
            "the newest stayed"
        );
        assert_eq!(
            files[2].content.len(),
            MAX_BUNDLE / 2,
            "enough was cut from the log"
        );
    }

    #[test]
    fn secret_looking_lines_of_config_files_lose_their_values() {
        let mut v = serde_json::json!({"data": {"sales.properties":
            "connector.name=postgresql\nconnection-password=hunter2\nconnection-user=app"}});
        scrub_config_map(&mut v);
        let text = v["data"]["sales.properties"].as_str().expect("text");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("connection-user=app"), "{text}");
    }
}
