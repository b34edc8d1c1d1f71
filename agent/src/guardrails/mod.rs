//! Customer guardrails: the customer's policy file ([`policy`]) stands between the signed
//! desired state and the reconciler. [`evaluate`] turns the document the control plane
//! sent into the *effective* state the reconciler applies: whatever exceeds the policy is
//! left as it was (a refused change keeps the cluster's current spec, a refused new cluster
//! or catalog is not created), each refusal becomes a `GuardrailRefused` condition naming
//! the rule and the value, and the rest of the document is applied.
//!
//! [`Guard`] runs it: at start (an invalid policy is a start-up error naming the line),
//! whenever a document is accepted, and every [`POLL`] to pick up a changed policy file
//! (one that does not parse keeps the previous policy, and says so), a local approval of a
//! delete, and a maintenance window opening. The effective state is kept in
//! `STATE_DIR/guarded-state.json`, so after a restart a held cluster stays as it was.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tether_proto::v1 as pb;
use tether_shared::redact::RedactionMode;
use tether_shared::spec::{CatalogSpec, ClusterSpec, DesiredState, Workers, cpu_millis};
use tokio::sync::watch;

pub use policy::{Deletes, Policy, PolicyError};

use crate::desired::Desired;

/// How often the policy file and the approvals are looked at.
pub const POLL: Duration = Duration::from_secs(2);
/// The effective state and the deletes waiting for approval.
pub const GUARDED_STATE_FILE: &str = "guarded-state.json";
/// Where `tether-agent approve` leaves approvals.
pub const APPROVALS_DIR: &str = "approvals";
/// The condition type of a refusal.
pub const CONDITION: &str = "GuardrailRefused";

/// One thing the policy did not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The cluster it concerns (empty: the compute plane as a whole).
    pub cluster: String,
    /// The policy key, e.g. `max_workers_per_cluster`.
    pub rule: &'static str,
    /// What the document asked for, e.g. `12`.
    pub value: String,
    /// For people: the limit and what happens instead.
    pub message: String,
}

impl Refusal {
    /// The condition reported upstream: reason is the rule in CamelCase, the message names
    /// rule, value and limit.
    pub fn condition(&self) -> pb::ClusterCondition {
        let reason: String = self
            .rule
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        pb::ClusterCondition {
            cluster: self.cluster.clone(),
            r#type: CONDITION.to_owned(),
            status: "True".to_owned(),
            reason,
            message: format!("{} ({}): {}", self.rule, self.value, self.message)
                .chars()
                .take(512)
                .collect(),
            last_transition_unix_ms: tether_shared::timestamps::now_unix_ms(),
        }
    }
}

/// What [`evaluate`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What the reconciler applies.
    pub effective: DesiredState,
    /// What was not let through.
    pub refusals: Vec<Refusal>,
    /// Clusters the document deleted that wait for a local approval.
    pub pending_deletes: Vec<String>,
    /// Approved deletes carried out by this outcome.
    pub approved_deletes: Vec<String>,
}

/// The most workers a cluster can run.
fn max_workers(w: &Workers) -> u32 {
    match *w {
        Workers::Fixed { count } => count,
        Workers::Autoscaling { max, .. } => max,
    }
}

/// The registry of an image reference, as a container runtime reads it: the first path
/// component when it looks like a host (has `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Whether changing `from` into `to` replaces pods: anything but the worker count changes
/// the pod templates or the configuration they mount. (So does a change of a catalog the
/// cluster attaches, or of the Presto access rules: those are held on their own.)
fn replaces_pods(from: &ClusterSpec, to: &ClusterSpec) -> bool {
    let mut same_count = from.clone();
    same_count.workers = to.workers;
    same_count != *to
}

/// A change held until a maintenance window opens.
fn window_refusal(cluster: &str, windows: &str, what: &str) -> Refusal {
    Refusal {
        cluster: cluster.to_owned(),
        rule: "maintenance_windows",
        value: windows.to_owned(),
        message: format!(
            "{what} replaces pods and waits for the next maintenance window; the cluster keeps its current spec (a new worker count is applied)"
        ),
    }
}

/// Checks what a cluster asks for on its own (not the total): the refusals that keep it
/// from being applied.
fn cluster_violations(p: &Policy, name: &str, spec: &ClusterSpec) -> Vec<Refusal> {
    let mut out = Vec::new();
    let refuse = |rule, value: String, message: String| Refusal {
        cluster: name.to_owned(),
        rule,
        value,
        message,
    };
    let workers = max_workers(&spec.workers);
    if let Some(max) = p.max_workers_per_cluster
        && workers > max
    {
        out.push(refuse(
            "max_workers_per_cluster",
            workers.to_string(),
            format!("{workers} workers exceed the limit of {max}"),
        ));
    }
    if let Some(max) = &p.max_worker_cpu
        && cpu_millis(&spec.worker.cpu).is_none_or(|m| m > max.millis)
    {
        out.push(refuse(
            "max_worker_cpu",
            spec.worker.cpu.clone(),
            format!(
                "worker CPU {} exceeds the limit of {}",
                spec.worker.cpu, max.text
            ),
        ));
    }
    if let Some(max) = &p.max_worker_memory
        && tether_shared::spec::memory_bytes(&spec.worker.memory).is_none_or(|b| b > max.bytes)
    {
        out.push(refuse(
            "max_worker_memory",
            spec.worker.memory.clone(),
            format!(
                "worker memory {} exceeds the limit of {}",
                spec.worker.memory, max.text
            ),
        ));
    }
    if let Some(allowed) = &p.allowed_presto_versions
        && !allowed.contains(&spec.presto_version)
    {
        out.push(refuse(
            "allowed_presto_versions",
            spec.presto_version.clone(),
            format!(
                "Presto {} is not among the allowed versions ({})",
                spec.presto_version,
                allowed.join(", ")
            ),
        ));
    }
    if let Some(allowed) = &p.allowed_image_registries {
        for image in crate::render::cluster_images(spec) {
            let registry = registry_of(&image);
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(registry)) {
                out.push(refuse(
                    "allowed_image_registries",
                    image.clone(),
                    format!(
                        "image {image} comes from {registry}, not an allowed registry ({})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
    }
    out
}

/// Checks a catalog: its connector and every host it points at.
fn catalog_violation(p: &Policy, name: &str, c: &CatalogSpec) -> Option<(&'static str, String)> {
    if let Some(allowed) = &p.allowed_connectors
        && !allowed.contains(&c.connector)
    {
        return Some((
            "allowed_connectors",
            format!(
                "catalog {name} uses the {} connector, which the policy does not allow",
                serde_json::to_value(c.connector)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Some(rules) = &p.allowed_catalog_hosts {
        let hosts = match catalog_hosts(c) {
            Ok(h) => h,
            Err(why) => {
                return Some((
                    "allowed_catalog_hosts",
                    format!("catalog {name}: {why}, so its host cannot be checked"),
                ));
            }
        };
        for (what, host) in hosts {
            if !rules.iter().any(|r| r.allows(&host)) {
                return Some((
                    "allowed_catalog_hosts",
                    format!("catalog {name} points at {what} {host}, not an allowed catalog host"),
                ));
            }
        }
    }
    None
}

/// Every host a catalog's properties point at: the JDBC URL's, an external metastore's,
/// a custom S3 endpoint's (Glue and the region's own S3, named by no property, are not
/// checked). A property that names a host this cannot read is an error: the check must
/// not pass what it could not see.
fn catalog_hosts(c: &CatalogSpec) -> Result<Vec<(&'static str, String)>, String> {
    use tether_shared::spec::Connector;
    let p = &c.properties;
    let mut out = Vec::new();
    // `host`, `host:port`, `[v6]:port`, one or a comma-separated list, read as the
    // reachability check reads them.
    let authorities = |what: &'static str, list: &str, out: &mut Vec<(&'static str, String)>| {
        for a in list.split(',') {
            match crate::reach::authority(a, 0) {
                Some((h, _)) if !h.is_empty() && !h.contains(['/', '@', '?', '#']) => {
                    out.push((what, h))
                }
                _ => {
                    return Err(format!(
                        "cannot read a host from {what} address {:?}",
                        a.trim()
                    ));
                }
            }
        }
        Ok(())
    };
    let strip_scheme = |v: &str, scheme: &str| -> Option<String> {
        let lower = v.to_ascii_lowercase();
        lower
            .starts_with(scheme)
            .then(|| v[scheme.len()..].to_owned())
    };
    match c.connector {
        Connector::Mysql | Connector::Postgresql => {
            let scheme = match c.connector {
                Connector::Mysql => "jdbc:mysql://",
                _ => "jdbc:postgresql://",
            };
            if let Some(url) = p.get("connection-url") {
                let rest = strip_scheme(url, scheme)
                    .ok_or_else(|| format!("connection-url does not start with {scheme}"))?;
                let authority = rest.split(['/', '?']).next().unwrap_or("");
                authorities("JDBC", authority, &mut out)?;
            }
        }
        Connector::Hive => {
            if let Some(uris) = p.get("hive.metastore.uri") {
                for u in uris.split(',').map(str::trim) {
                    let rest = strip_scheme(u, "thrift://")
                        .ok_or_else(|| format!("metastore URI {u:?} is not thrift://"))?;
                    let authority = rest.split('/').next().unwrap_or("");
                    authorities("metastore", authority, &mut out)?;
                }
            }
            if let Some(endpoint) = p.get("hive.s3.endpoint") {
                let rest = match endpoint.split_once("://") {
                    Some((_, r)) => r,
                    None => endpoint.as_str(),
                };
                let authority = rest.split('/').next().unwrap_or("");
                authorities("S3 endpoint", authority, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Turns `doc` into what may be applied, given the `previous` effective state and the
/// clusters whose delete was approved locally. Pure: the same inputs give the same outcome.
pub fn evaluate(
    p: &Policy,
    doc: &DesiredState,
    previous: &DesiredState,
    approved: &BTreeSet<String>,
    now_unix_ms: u64,
) -> Outcome {
    let in_window = p.in_window(now_unix_ms);
    let windows = p.windows_text();
    let mut refusals = Vec::new();

    // Catalogs: a refused one stays as it was (or is not created).
    let mut catalogs: BTreeMap<String, CatalogSpec> = BTreeMap::new();
    let mut refused_catalogs: BTreeMap<String, (&'static str, String)> = BTreeMap::new();
    let mut held_catalogs: BTreeSet<String> = BTreeSet::new();
    for (name, c) in &doc.catalogs {
        let before = previous.catalogs.get(name);
        if let Some(v) = catalog_violation(p, name, c) {
            refused_catalogs.insert(name.clone(), v);
            if let Some(b) = before {
                catalogs.insert(name.clone(), b.clone());
            }
        } else if !in_window && before.is_some_and(|b| b != c) {
            held_catalogs.insert(name.clone());
            catalogs.insert(name.clone(), before.cloned().unwrap_or_else(|| c.clone()));
        } else {
            catalogs.insert(name.clone(), c.clone());
        }
    }

    // Presto access: changes restart every coordinator.
    let has_running = !previous.clusters.is_empty();
    let access_held = !in_window && has_running && doc.presto_access != previous.presto_access;
    let presto_access = if access_held {
        previous.presto_access.clone()
    } else {
        doc.presto_access.clone()
    };

    // Clusters, each on its own; then the total, unchanged clusters counted first.
    let mut chosen: BTreeMap<String, ClusterSpec> = BTreeMap::new();
    let mut changed: Vec<(String, ClusterSpec)> = Vec::new();
    for (name, spec) in &doc.clusters {
        let before = previous.clusters.get(name);
        let mut blocked = cluster_violations(p, name, spec);
        for c in &spec.catalogs {
            if let Some((rule, why)) = refused_catalogs.get(c) {
                let kept = catalogs.contains_key(c);
                blocked.push(Refusal {
                    cluster: name.clone(),
                    rule,
                    value: c.clone(),
                    message: match kept {
                        true => format!("{why}; the catalog keeps its current definition"),
                        false => format!("{why}; the catalog is not created"),
                    },
                });
            }
        }
        let catalog_blocks = spec
            .catalogs
            .iter()
            .any(|c| refused_catalogs.contains_key(c) && !catalogs.contains_key(c));
        let own_blocks = blocked
            .iter()
            .any(|r| !matches!(r.rule, "allowed_connectors" | "allowed_catalog_hosts"));
        if own_blocks || catalog_blocks {
            let instead = match before {
                Some(_) => "the cluster keeps its current spec",
                None => "the cluster is not created",
            };
            for r in &mut blocked {
                if !matches!(r.rule, "allowed_connectors" | "allowed_catalog_hosts") {
                    r.message = format!("{}; {instead}", r.message);
                }
            }
            refusals.extend(blocked);
            if let Some(b) = before {
                chosen.insert(name.clone(), b.clone());
            }
            continue;
        }
        refusals.extend(blocked);
        let waits = spec.catalogs.iter().any(|c| held_catalogs.contains(c)) || access_held;
        match before {
            Some(b) if !in_window && replaces_pods(b, spec) => {
                // Only the worker count moves now; the rest waits for the window.
                let mut held = b.clone();
                held.workers = spec.workers;
                refusals.push(window_refusal(name, &windows, "the change"));
                changed.push((name.clone(), held));
            }
            Some(b) if b == spec => {
                if waits {
                    refusals.push(window_refusal(
                        name,
                        &windows,
                        "a change of its catalogs or of the Presto access rules",
                    ));
                }
                chosen.insert(name.clone(), spec.clone());
            }
            _ => changed.push((name.clone(), spec.clone())),
        }
    }
    // Deletes first: a cluster that waits for its approval keeps running, and counts.
    let mut pending_deletes = Vec::new();
    let mut approved_deletes = Vec::new();
    for (name, b) in &previous.clusters {
        if doc.clusters.contains_key(name) {
            continue;
        }
        match p.deletes {
            Deletes::LocalApproval if !approved.contains(name) => {
                pending_deletes.push(name.clone());
                refusals.push(Refusal {
                    cluster: name.clone(),
                    rule: "deletes",
                    value: "local-approval".into(),
                    message: format!(
                        "the control plane deleted this cluster; it keeps running until `tether-agent approve delete {name}` is run in the VPC"
                    ),
                });
                chosen.insert(name.clone(), b.clone());
            }
            Deletes::LocalApproval => approved_deletes.push(name.clone()),
            Deletes::Allow => {}
        }
    }

    // The total: what runs and stays (unchanged, refused, waiting for a delete) and the
    // current size of each changed cluster; then each change, in name order, by what it
    // adds. A change that would pass the limit is refused, so the limit holds.
    if let Some(max) = p.max_workers_total {
        let size = |s: &ClusterSpec| u64::from(max_workers(&s.workers));
        let mut total: u64 = chosen.values().map(size).sum::<u64>()
            + changed
                .iter()
                .filter_map(|(name, _)| previous.clusters.get(name))
                .map(size)
                .sum::<u64>();
        for (name, spec) in changed {
            let before = previous.clusters.get(&name);
            let now = before.map_or(0, size);
            let wants = size(&spec);
            let after = total - now + wants;
            if wants <= now || after <= u64::from(max) {
                total = after;
                chosen.insert(name, spec);
                continue;
            }
            refusals.push(Refusal {
                cluster: name.clone(),
                rule: "max_workers_total",
                value: after.to_string(),
                message: format!(
                    "all clusters together would run up to {after} workers, above the limit of {max}; {}",
                    match before {
                        Some(_) => "the cluster keeps its current spec",
                        None => "the cluster is not created",
                    }
                ),
            });
            if let Some(b) = before {
                chosen.insert(name, b.clone());
            }
        }
    } else {
        chosen.extend(changed);
    }

    // A cluster kept as it was may attach a catalog the document no longer has.
    for spec in chosen.values() {
        for c in &spec.catalogs {
            if !catalogs.contains_key(c)
                && let Some(b) = previous.catalogs.get(c)
            {
                catalogs.insert(c.clone(), b.clone());
            }
        }
    }

    // Query text: never more than the policy allows.
    let mut settings = doc.settings.clone();
    if let Some(max) = p.max_query_text {
        let key = crate::collect::REDACTION_SETTING;
        let asked: RedactionMode = settings
            .get(key)
            .and_then(|m| m.parse().ok())
            .unwrap_or_default();
        if policy::QueryText::rank(asked) > policy::QueryText::rank(max.mode()) {
            refusals.push(Refusal {
                cluster: String::new(),
                rule: "max_query_text",
                value: asked.as_str().into(),
                message: format!(
                    "the control plane asked for {asked} query text; the policy allows at most {}, which is what is sent",
                    max.mode()
                ),
            });
            settings.insert(key.to_owned(), max.mode().as_str().to_owned());
        }
    }

    Outcome {
        effective: DesiredState {
            generation: doc.generation,
            clusters: chosen,
            catalogs,
            settings,
            presto_access,
        },
        refusals,
        pending_deletes,
        approved_deletes,
    }
}

/// The effective state as kept on disk.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Kept {
    compute_plane_id: String,
    effective: DesiredState,
    #[serde(default)]
    pending_deletes: Vec<String>,
}

/// Reads `STATE_DIR/guarded-state.json`: the deletes waiting for approval, for
/// `tether-agent approve`.
pub fn pending_deletes(state_dir: &Path) -> Result<Vec<String>, String> {
    let path = state_dir.join(GUARDED_STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Kept>(&bytes)
            .map(|g| g.pending_deletes)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The file an approval of deleting `cluster` is left in.
pub fn approval_path(state_dir: &Path, cluster: &str) -> PathBuf {
    state_dir
        .join(APPROVALS_DIR)
        .join(format!("delete-{cluster}"))
}

/// Records the approval of deleting `cluster`; refuses when no such delete waits.
pub fn approve_delete(state_dir: &Path, cluster: &str) -> Result<(), String> {
    let pending = pending_deletes(state_dir)?;
    if !pending.iter().any(|p| p == cluster) {
        return Err(match pending.is_empty() {
            true => format!(
                "no delete is waiting for approval in {}",
                state_dir.display()
            ),
            false => format!(
                "no delete of cluster {cluster:?} is waiting for approval (waiting: {})",
                pending.join(", ")
            ),
        });
    }
    let path = approval_path(state_dir, cluster);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let body = serde_json::json!({
        "cluster": cluster,
        "approved_at": tether_shared::timestamps::rfc3339_from_ms(
            tether_shared::timestamps::now_unix_ms()).unwrap_or_default(),
        "by": std::env::var("USER").unwrap_or_default(),
    });
    tether_shared::files::write_private(&path, body.to_string().as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    crate::audit::init(state_dir, crate::audit::DEFAULT_MAX_BYTES);
    crate::audit::record(
        "delete.approved",
        serde_json::json!({"cluster": cluster, "by": body["by"]}),
    );
    Ok(())
}

/// The approvals left in the state dir.
fn read_approvals(state_dir: &Path) -> BTreeSet<String> {
    let Ok(dir) = std::fs::read_dir(state_dir.join(APPROVALS_DIR)) else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("delete-"))
                .map(str::to_owned)
        })
        .collect()
}

/// The running guard of one compute plane.
#[derive(Debug)]
pub struct Guard {
    path: PathBuf,
    state_dir: PathBuf,
    compute_plane_id: String,
    policy: Policy,
    policy_bytes: Vec<u8>,
    /// The bytes of a policy file that did not parse (said once).
    rejected: Option<Vec<u8>>,
    /// The policy file could not be read at the last look (said once).
    unreadable: bool,
    input: watch::Receiver<Desired>,
    output: watch::Sender<Desired>,
    conditions: watch::Sender<Vec<pb::ClusterCondition>>,
    previous: DesiredState,
    last: Option<Outcome>,
}

/// What the reconciler and the collector follow when a guard runs.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The effective state.
    pub desired: watch::Receiver<Desired>,
    /// The refusals, as conditions.
    pub conditions: watch::Receiver<Vec<pb::ClusterCondition>>,
}

impl Guard {
    /// Loads the policy (an error names the line) and the effective state kept in the state
    /// dir, and evaluates the document held now, so the reconciler never sees it unguarded.
    pub fn start(
        path: &Path,
        state_dir: &Path,
        compute_plane_id: &str,
        input: watch::Receiver<Desired>,
    ) -> Result<(Self, Guarded), PolicyError> {
        let (policy, policy_bytes) = Policy::load(path)?;
        tracing::info!(file = %path.display(), "guardrail policy loaded");
        crate::audit::record(
            "policy.loaded",
            serde_json::json!({"file": path.display().to_string()}),
        );
        let kept = std::fs::read(state_dir.join(GUARDED_STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
            .filter(|g| g.compute_plane_id == compute_plane_id);
        // Without a kept effective state (the first start with a policy), what runs is
        // the document last applied: a cluster the policy would refuse keeps running.
        let previous = match kept {
            Some(g) => g.effective,
            None => input.borrow().as_deref().cloned().unwrap_or_default(),
        };
        let (output, desired) = watch::channel(None);
        let (conditions, conditions_rx) = watch::channel(Vec::new());
        let mut guard = Self {
            path: path.to_owned(),
            state_dir: state_dir.to_owned(),
            compute_plane_id: compute_plane_id.to_owned(),
            policy,
            policy_bytes,
            rejected: None,
            unreadable: false,
            input,
            output,
            conditions,
            previous,
            last: None,
        };
        guard.step();
        Ok((
            guard,
            Guarded {
                desired,
                conditions: conditions_rx,
            },
        ))
    }

    /// Runs until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = self.input.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = tick.tick() => self.reload_policy(),
            }
            self.step();
        }
    }

    /// Reads the policy file again if it changed; one that does not parse keeps the
    /// previous policy.
    fn reload_policy(&mut self) {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) => {
                if !self.unreadable {
                    tracing::error!(file = %self.path.display(), "cannot read the policy file ({e}); keeping the previous policy");
                    crate::audit::record(
                        "policy.invalid",
                        serde_json::json!({"file": self.path.display().to_string(), "error": e.to_string()}),
                    );
                    self.unreadable = true;
                }
                return;
            }
        };
        self.unreadable = false;
        if bytes == self.policy_bytes {
            self.rejected = None;
            return;
        }
        if self.rejected.as_ref() == Some(&bytes) {
            return;
        }
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|e| format!("not UTF-8: {e}"))
            .and_then(Policy::parse);
        match parsed {
            Ok(p) => {
                tracing::info!(file = %self.path.display(), "guardrail policy changed; applying it");
                crate::audit::record(
                    "policy.loaded",
                    serde_json::json!({"file": self.path.display().to_string()}),
                );
                self.policy = p;
                self.policy_bytes = bytes;
                self.rejected = None;
            }
            Err(e) => {
                tracing::error!(file = %self.path.display(), "the changed policy file is invalid, keeping the previous policy: {e}");
                crate::audit::record(
                    "policy.invalid",
                    serde_json::json!({"file": self.path.display().to_string(), "error": e}),
                );
                self.rejected = Some(bytes);
            }
        }
    }

    /// Evaluates the document held now; publishes (and keeps) a changed outcome.
    fn step(&mut self) {
        let Some(doc) = self.input.borrow().clone() else {
            return;
        };
        let approved = read_approvals(&self.state_dir);
        let outcome = evaluate(
            &self.policy,
            &doc,
            &self.previous,
            &approved,
            tether_shared::timestamps::now_unix_ms().max(0) as u64,
        );
        if self.last.as_ref() == Some(&outcome) {
            return;
        }
        let kept = Kept {
            compute_plane_id: self.compute_plane_id.clone(),
            effective: outcome.effective.clone(),
            pending_deletes: outcome.pending_deletes.clone(),
        };
        let path = self.state_dir.join(GUARDED_STATE_FILE);
        let written = serde_json::to_vec_pretty(&kept)
            .map_err(std::io::Error::other)
            .and_then(|b| tether_shared::files::write_private(&path, &b));
        if let Err(e) = written {
            // Not kept: applying it anyway could lose a held cluster at the next start.
            tracing::error!(file = %path.display(), "cannot keep the guarded state ({e}); not applying generation {}", doc.generation);
            return;
        }
        let before: BTreeSet<(String, &str, String)> = self
            .last
            .iter()
            .flat_map(|o| o.refusals.iter())
            .map(|r| (r.cluster.clone(), r.rule, r.value.clone()))
            .collect();
        for r in &outcome.refusals {
            if !before.contains(&(r.cluster.clone(), r.rule, r.value.clone())) {
                tracing::warn!(cluster = %r.cluster, rule = r.rule, value = %r.value, generation = doc.generation, "guardrail refused: {}", r.message);
                crate::audit::record(
                    "guardrail.refused",
                    serde_json::json!({
                        "generation": doc.generation, "cluster": r.cluster,
                        "rule": r.rule, "value": r.value, "message": r.message,
                    }),
                );
            }
        }
        for name in &outcome.approved_deletes {
            tracing::info!(cluster = %name, "deleting the cluster: approved in the VPC");
            crate::audit::record(
                "guardrail.delete_approved",
                serde_json::json!({"generation": doc.generation, "cluster": name}),
            );
        }
        // Approvals are used once: a cluster created again and deleted again waits again.
        for name in approved {
            if !outcome.pending_deletes.contains(&name) {
                let file = approval_path(&self.state_dir, &name);
                if let Err(e) = std::fs::remove_file(&file)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::error!(file = %file.display(), "cannot remove a used approval ({e}): remove it by hand, or a later delete of {name} is approved by it; run `tether-agent approve` as the agent's user");
                }
            }
        }
        self.previous = outcome.effective.clone();
        self.conditions
            .send_replace(outcome.refusals.iter().map(Refusal::condition).collect());
        self.output
            .send_replace(Some(Arc::new(outcome.effective.clone())));
        self.last = Some(outcome);
    }
}

#[cfg(test)]
mod tests;
