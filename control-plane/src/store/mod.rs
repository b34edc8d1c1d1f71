//! The store: everything the control plane keeps. One interface, [`Store`]; SQLite now
//! ([`sqlite::SqliteStore`]), PostgreSQL later for several replicas. Callers hold an
//! `Arc<dyn Store>` and never see SQL.

pub mod sqlite;
mod sqlite_audit;
mod sqlite_desired;
mod sqlite_telemetry;

use async_trait::async_trait;
use serde::Serialize;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The row the caller named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Roles of API tokens, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the SaaS itself: tenants.
    PlatformAdmin,
    /// A tenant's admin: tokens, compute planes, enrollment, revocation.
    Admin,
    /// Manages clusters and catalogs.
    Operator,
    /// Reads.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "platform_admin" => Role::PlatformAdmin,
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// Whether this role may do what `needed` may.
    pub fn at_least(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Role::PlatformAdmin => 3,
            Role::Admin => 2,
            Role::Operator => 1,
            Role::Viewer => 0,
        }
    }
}

/// A tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Unique DNS-1123 name.
    pub name: String,
    /// The AWS account the tenant's agents must run in, if registered.
    pub aws_account_id: Option<String>,
    /// Whether enrollment checks the agent's AWS account (when one is registered).
    pub account_binding: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Settings of every compute plane of the tenant (JSON object); a compute plane's
    /// own settings override them key by key.
    pub settings: String,
}

/// An API token as stored (the hash only).
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Id, shown in audit logs.
    pub id: String,
    /// `None` for the platform admin.
    pub tenant_id: Option<String>,
    /// Role.
    pub role: Role,
}

/// A compute plane and what is known of its agent.
#[derive(Debug, Clone)]
pub struct ComputePlane {
    /// Id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// DNS-1123 name, unique within the tenant.
    pub name: String,
    /// AWS region.
    pub region: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Agent state.
    pub agent: AgentState,
    /// Desired-state generation.
    pub generation: i64,
    /// The generation the agent last acked.
    pub applied_generation: i64,
    /// Conditions of that ack (JSON array, as the agent reported them).
    pub applied_conditions: String,
    /// Telemetry records the agent reported dropped (spool full).
    pub telemetry_dropped: u64,
}

/// What the control plane knows of a compute plane's agent.
#[derive(Debug, Clone, Default)]
pub struct AgentState {
    /// A session is live.
    pub connected: bool,
    /// Id of the live (or last) session.
    pub session_id: Option<String>,
    /// Unix seconds the live session started.
    pub connected_since: Option<i64>,
    /// Agent version from its Hello.
    pub version: Option<String>,
    /// Unix seconds of the last heartbeat.
    pub last_heartbeat: Option<i64>,
    /// The agent's address as seen by the control plane (its NAT or proxy).
    pub remote_addr: Option<String>,
    /// Serial of the newest certificate issued to the agent.
    pub certificate_serial: Option<String>,
    /// Its expiry, Unix seconds.
    pub certificate_expires_at: Option<i64>,
    /// Revoked: every certificate refused until the agent enrolls again.
    pub revoked: bool,
}

/// Why an enrollment token could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedeemError {
    /// No such token.
    Unknown,
    /// Already used once.
    Used,
    /// Past its expiry.
    Expired,
}

/// A certificate about to be recorded.
#[derive(Debug, Clone)]
pub struct NewCertificate {
    /// Serial, hex.
    pub serial: String,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A live session as recorded on connect.
#[derive(Debug, Clone)]
pub struct SessionStart {
    /// Session id.
    pub session_id: String,
    /// Unix seconds.
    pub at: i64,
    /// Agent version.
    pub version: String,
    /// Peer address.
    pub remote_addr: String,
}

/// What one compute plane's agent reported since the last write (see `crate::presence`).
#[derive(Debug, Clone)]
pub struct PresenceUpdate {
    /// Compute plane.
    pub compute_plane_id: String,
    /// A session started.
    pub connected: Option<SessionStart>,
    /// The latest heartbeat: session id and Unix seconds.
    pub heartbeat: Option<(String, i64)>,
    /// The highest generation applied, with its conditions (JSON array).
    pub applied: Option<(i64, String)>,
    /// This session ended.
    pub disconnected: Option<String>,
}

/// The control plane's persistent state. Implementations must make every method atomic.
#[async_trait]
pub trait Store:
    DesiredStateStore + TelemetryStore + AuditStore + Send + Sync + std::fmt::Debug + 'static
{
    /// Creates a tenant; `Conflict` if the name is taken.
    async fn create_tenant(
        &self,
        name: &str,
        aws_account_id: Option<&str>,
        account_binding: bool,
        now: i64,
    ) -> Result<Tenant, StoreError>;
    /// All tenants, by name.
    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// One tenant.
    async fn get_tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError>;

    /// Stores a token hash with its role.
    async fn create_api_token(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        token_hash: &str,
        now: i64,
    ) -> Result<ApiToken, StoreError>;
    /// Looks a token up by its hash.
    async fn find_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError>;

    /// Creates a compute plane; `Conflict` if the tenant already has one of that name.
    async fn create_compute_plane(
        &self,
        tenant_id: &str,
        name: &str,
        region: &str,
        now: i64,
    ) -> Result<ComputePlane, StoreError>;
    /// A tenant's compute planes, by name.
    async fn list_compute_planes(&self, tenant_id: &str) -> Result<Vec<ComputePlane>, StoreError>;
    /// One compute plane.
    async fn get_compute_plane(&self, id: &str) -> Result<Option<ComputePlane>, StoreError>;

    /// Stores an enrollment token hash for a compute plane.
    async fn create_enrollment_token(
        &self,
        compute_plane_id: &str,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<String, StoreError>;
    /// The compute plane a token would enroll into, without using it up.
    async fn peek_enrollment_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Result<ComputePlane, RedeemError>, StoreError>;
    /// Uses the token up and records the certificate issued for it, in one transaction;
    /// clears the compute plane's revoked flag.
    async fn redeem_enrollment_token(
        &self,
        token_hash: &str,
        cert: &NewCertificate,
        now: i64,
    ) -> Result<Result<(), RedeemError>, StoreError>;

    /// Records a renewed certificate for a compute plane.
    async fn record_certificate(
        &self,
        compute_plane_id: &str,
        cert: &NewCertificate,
    ) -> Result<(), StoreError>;
    /// Whether a certificate may open a session: issued to that compute plane, not
    /// revoked, and the compute plane not revoked.
    async fn certificate_allowed(
        &self,
        compute_plane_id: &str,
        serial: &str,
    ) -> Result<bool, StoreError>;
    /// Revokes every certificate of the compute plane's agent.
    async fn revoke_agent(&self, compute_plane_id: &str) -> Result<(), StoreError>;

    /// Records what agents reported, compute plane by compute plane, in one transaction:
    /// for each, its session start, heartbeat, applied generation and session end, in that
    /// order. A heartbeat or end of a session that is no longer current changes nothing.
    async fn record_presence(&self, updates: &[PresenceUpdate]) -> Result<(), StoreError>;
    /// On start of a single-replica control plane: no session survived the restart.
    async fn mark_all_disconnected(&self) -> Result<(), StoreError>;
}

/// A cluster row: spec, deletion mark, and the agent's last report.
#[derive(Debug, Clone)]
pub struct ClusterRow {
    /// Name.
    pub name: String,
    /// Validated spec JSON.
    pub spec: String,
    /// Compute-plane generation of its last change.
    pub generation: i64,
    /// Set while a DELETE waits for the agent.
    pub deleted_generation: Option<i64>,
    /// Last status JSON from the agent.
    pub status: Option<String>,
    /// Generation the agent last applied to it.
    pub observed_generation: i64,
}

/// A catalog row.
#[derive(Debug, Clone)]
pub struct CatalogRow {
    /// Name.
    pub name: String,
    /// Validated spec JSON.
    pub spec: String,
    /// Compute-plane generation of its last change.
    pub generation: i64,
}

/// The stored desired state of a compute plane.
#[derive(Debug, Clone, Default)]
pub struct StoredDesiredState {
    /// Current generation.
    pub generation: i64,
    /// Live (not deleted) clusters: name and spec JSON.
    pub clusters: Vec<(String, String)>,
    /// Catalogs: name and spec JSON.
    pub catalogs: Vec<(String, String)>,
    /// The compute plane's own settings (JSON object).
    pub settings: String,
    /// Its tenant's settings (JSON object), under the compute plane's own.
    pub tenant_settings: String,
}

/// Why a desired-state write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredStateConflict {
    /// The cluster attaches a catalog the compute plane does not have (index, name).
    UnknownCatalog(usize, String),
    /// The catalog is attached to these clusters.
    CatalogInUse(Vec<String>),
}

/// Desired state and the agent's reports about it. Every change bumps the compute plane's
/// generation in the same transaction.
#[async_trait]
pub trait DesiredStateStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or replaces a cluster; checks its catalogs exist. Returns the new generation.
    async fn put_cluster(
        &self,
        cp: &str,
        name: &str,
        spec: &str,
        catalogs: &[String],
        now: i64,
    ) -> Result<Result<i64, DesiredStateConflict>, StoreError>;
    /// Marks a cluster deleted; `None` if there is no such (live) cluster.
    async fn delete_cluster(
        &self,
        cp: &str,
        name: &str,
        now: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// One cluster, deleted-but-pending ones included.
    async fn get_cluster(&self, cp: &str, name: &str) -> Result<Option<ClusterRow>, StoreError>;
    /// All clusters of a compute plane, by name.
    async fn list_clusters(&self, cp: &str) -> Result<Vec<ClusterRow>, StoreError>;
    /// Creates or replaces a catalog. Returns the new generation.
    async fn put_catalog(
        &self,
        cp: &str,
        name: &str,
        spec: &str,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// Deletes an unattached catalog; `Ok(None)` if absent.
    async fn delete_catalog(
        &self,
        cp: &str,
        name: &str,
    ) -> Result<Result<Option<i64>, DesiredStateConflict>, StoreError>;
    /// One catalog.
    async fn get_catalog(&self, cp: &str, name: &str) -> Result<Option<CatalogRow>, StoreError>;
    /// All catalogs, by name.
    async fn list_catalogs(&self, cp: &str) -> Result<Vec<CatalogRow>, StoreError>;
    /// The whole desired state, as the agent receives it.
    async fn desired_state(&self, cp: &str) -> Result<StoredDesiredState, StoreError>;
    /// The agent applied `generation`; deletions up to it are done.
    async fn record_applied(
        &self,
        cp: &str,
        generation: i64,
        conditions: &str,
    ) -> Result<(), StoreError>;
    /// Replaces the compute plane's settings (JSON object). Returns the new generation.
    async fn put_settings(&self, cp: &str, settings: &str) -> Result<i64, StoreError>;
    /// Replaces the tenant's settings (JSON object) and bumps the generation of every
    /// compute plane of the tenant, in one transaction. Returns how many there are.
    async fn put_tenant_settings(&self, tenant: &str, settings: &str) -> Result<u64, StoreError>;
    /// The desired state of every compute plane of the tenant, read in one transaction
    /// with one query per table (a tenant-wide change reaches thousands at once).
    async fn tenant_desired_states(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError>;
    /// The agent's status of one cluster.
    async fn record_cluster_status(
        &self,
        cp: &str,
        name: &str,
        status: &str,
        observed_generation: i64,
    ) -> Result<(), StoreError>;
}

/// A stored query record: metadata only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryRow {
    /// Presto query id.
    pub query_id: String,
    /// Cluster name.
    pub cluster: String,
    /// User.
    pub user: String,
    /// Client source.
    pub source: String,
    /// Session catalog.
    pub catalog: String,
    /// Session schema.
    pub schema: String,
    /// FINISHED or FAILED.
    pub state: String,
    /// Error type, if failed.
    pub error_type: String,
    /// Error code name, if failed.
    pub error_code: String,
    /// Redacted error message.
    pub error_message: String,
    /// Unix ms.
    pub create_time_ms: i64,
    /// Unix ms.
    pub end_time_ms: i64,
    /// Queued ms.
    pub queued_time_ms: i64,
    /// Elapsed ms.
    pub elapsed_time_ms: i64,
    /// CPU ms.
    pub cpu_time_ms: i64,
    /// Peak memory.
    pub peak_memory_bytes: i64,
    /// Input rows.
    pub input_rows: i64,
    /// Input bytes.
    pub input_bytes: i64,
    /// Output rows.
    pub output_rows: i64,
    /// Query text as the agent sent it (redacted by default).
    pub query: String,
    /// Fingerprint of the redacted text.
    pub fingerprint: String,
}

/// One telemetry item to store.
#[derive(Debug, Clone)]
pub enum TelemetryItem {
    /// A metric sample.
    Metric {
        /// Cluster.
        cluster: String,
        /// Metric name.
        name: String,
        /// Unix ms.
        ts_ms: i64,
        /// Value.
        value: f64,
    },
    /// A finished query.
    Query(Box<QueryRow>),
    /// An event.
    Event {
        /// Cluster.
        cluster: String,
        /// Type.
        kind: String,
        /// Reason.
        reason: String,
        /// Message.
        message: String,
        /// Unix ms.
        ts_ms: i64,
    },
}

/// Filters of `GET /query-log`.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// Cluster.
    pub cluster: Option<String>,
    /// User.
    pub user: Option<String>,
    /// State.
    pub state: Option<String>,
    /// Ended at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Ended before (Unix ms).
    pub until_ms: Option<i64>,
    /// Substring of the (redacted) text.
    pub text: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Continue after this cursor (exclusive).
    pub cursor: Option<i64>,
}

/// Telemetry storage.
#[async_trait]
pub trait TelemetryStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores a batch in one transaction, skipping sequence numbers at or below the
    /// compute plane's high-water mark and query ids it already has. Returns the new
    /// high-water mark and how many records were new (above the old mark).
    async fn ingest(
        &self,
        cp: &str,
        items: Vec<(u64, TelemetryItem)>,
        dropped_total: u64,
    ) -> Result<(u64, u64), StoreError>;
    /// (high-water mark, records the agent reported dropped).
    async fn telemetry_state(&self, cp: &str) -> Result<(u64, u64), StoreError>;
    /// A page of query records, newest first, and the cursor of the next page.
    async fn query_log(
        &self,
        cp: &str,
        f: &QueryFilter,
    ) -> Result<(Vec<QueryRow>, Option<i64>), StoreError>;
    /// Samples of metric `name` (all clusters or one) between `since` and `until` (ms).
    async fn metric_samples(
        &self,
        cp: &str,
        name: Option<&str>,
        cluster: Option<&str>,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(String, String, i64, f64)>, StoreError>;
    /// Deletes telemetry older than `before_ms`; returns rows deleted.
    async fn purge_telemetry(&self, before_ms: i64) -> Result<u64, StoreError>;
}

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    /// 2xx.
    Ok,
    /// 401 or 403: not signed in, or the role may not.
    Denied,
    /// Other 4xx: bad input, not found, conflict.
    Rejected,
    /// 5xx.
    Error,
}

impl AuditResult {
    /// The result of an HTTP status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => AuditResult::Ok,
            401 | 403 => AuditResult::Denied,
            400..=499 => AuditResult::Rejected,
            _ => AuditResult::Error,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Ok => "ok",
            AuditResult::Denied => "denied",
            AuditResult::Rejected => "rejected",
            AuditResult::Error => "error",
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Position in the log (assigned on append).
    pub id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// The caller's token id; `None` when not authenticated.
    pub token_id: Option<String>,
    /// The caller's role.
    pub role: Option<String>,
    /// The tenant acted on (or the caller's); `None` for platform-level actions.
    pub tenant_id: Option<String>,
    /// What was done: `METHOD /route/{template}` or `sign-in`/`sign-out`.
    pub action: String,
    /// On what: the concrete path.
    pub target: String,
    /// How it ended.
    pub result: AuditResult,
    /// HTTP status.
    pub status: u16,
    /// The client's address.
    pub client_addr: String,
    /// `api` or `dashboard`.
    pub via: String,
}

/// Filters of `GET /audit-log`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's entries.
    pub tenant_id: Option<String>,
    /// Only this token's.
    pub token_id: Option<String>,
    /// Action contains this.
    pub action: Option<String>,
    /// Only this result.
    pub result: Option<AuditResult>,
    /// At or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Before (Unix ms).
    pub until_ms: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Entries with an id below this (newest first).
    pub cursor: Option<i64>,
}

/// A dashboard session.
#[derive(Debug, Clone)]
pub struct DashboardSession {
    /// The token the user signed in with.
    pub token: ApiToken,
    /// The session's CSRF token, embedded in every form.
    pub csrf: String,
    /// Expiry (Unix ms).
    pub expires_ms: i64,
}

/// Node time of one cluster in one hour.
#[derive(Debug, Clone, Serialize)]
pub struct UsageRow {
    /// Compute plane.
    pub compute_plane_id: String,
    /// Cluster.
    pub cluster: String,
    /// Start of the hour (Unix ms).
    pub hour_ms: i64,
    /// Node-milliseconds in that hour.
    pub node_ms: i64,
}

/// Audit log, dashboard sessions and usage.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends an entry; returns its id.
    async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError>;
    /// A page of entries, newest first, and the cursor of the next page.
    async fn audit_log(
        &self,
        f: &AuditFilter,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), StoreError>;
    /// The token with this id.
    async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Stores a session (by the hash of its id).
    async fn create_dashboard_session(
        &self,
        id_hash: &str,
        token_id: &str,
        csrf: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError>;
    /// The live session with this id hash (expired ones are `None`).
    async fn dashboard_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<DashboardSession>, StoreError>;
    /// Ends a session.
    async fn delete_dashboard_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Node time per cluster and hour of a tenant's compute planes in `[since, until)`.
    async fn usage(
        &self,
        tenant_id: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<UsageRow>, StoreError>;
}
