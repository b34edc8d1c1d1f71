//! The audit log (append-only) and dashboard sessions.

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;
use super::tenants::ApiToken;

/// How a recorded action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// The person (`alice@example.com via oidc`) when the caller is one.
    pub user: Option<String>,
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

/// The audit log and dashboard sessions.
#[async_trait]
pub trait AuditStore: Send + Sync + std::fmt::Debug + 'static {
    /// Appends an entry; returns its id.
    async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError>;
    /// A page of entries, newest first, and the cursor of the next page.
    async fn audit_log(
        &self,
        f: &AuditFilter,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), StoreError>;
    /// Stores a session (by the hash of its id), deleting expired ones.
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
}
