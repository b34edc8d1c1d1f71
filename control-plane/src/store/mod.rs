//! The store: everything the control plane keeps, split by concept, one trait each —
//! [`TenantStore`], [`ComputePlaneStore`], [`DesiredStateStore`], [`PresenceStore`],
//! [`TelemetryStore`], [`AuditStore`], [`UsageStore`], [`SecretStore`], [`ReplicaStore`] — and [`Store`], all of them
//! together. Two backends implement every trait: [`sqlite::SqliteStore`] (one process,
//! the default) and [`postgres::PgStore`] (several replicas). Rows go in and come out as
//! the types of `tether-shared` (specs, statuses), never as JSON text; callers hold an
//! `Arc<dyn Store>` and never see SQL. One conformance suite (`tests/tests/store_conformance.rs`)
//! runs the same test functions against both.

pub mod audit;
pub mod compute_planes;
pub mod desired;
pub mod identity;
pub mod postgres;
pub mod presence;
pub mod replicas;
mod rows;
pub mod secrets;
pub mod sqlite;
pub mod support;
pub mod telemetry;
pub mod tenants;
pub mod usage;

use std::collections::BTreeMap;

pub use audit::{AuditEntry, AuditFilter, AuditResult, AuditStore, DashboardSession};
pub use compute_planes::{
    AgentState, ComputePlane, ComputePlaneStore, NewCertificate, RedeemError,
};
pub use desired::{
    CatalogRow, ClusterRow, DesiredStateConflict, DesiredStateStore, StoredDesiredState,
};
pub use identity::{IdentityStore, PendingLogin, Scope, User};
pub use presence::{PresenceStore, PresenceUpdate, SessionStart, Superseded};
pub use replicas::{HeldSession, Replica, ReplicaStore};
pub use secrets::SecretStore;
pub use support::{SupportRequestRow, SupportStore};
pub use telemetry::{DroppedRecords, QueryFilter, QueryRow, TelemetryItem, TelemetryStore};
pub use tenants::{ApiToken, Tenant, TenantStore};
pub use usage::{UsageRow, UsageStore};

/// Settings sent to agents with the desired state (e.g. `query_text_redaction`).
pub type Settings = BTreeMap<String, String>;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The row the caller named does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A stored value no longer parses (e.g. written by a newer version).
    #[error("stored {what} {name:?} is unreadable: {message}")]
    Corrupt {
        /// `cluster`, `catalog`, `settings`, `status` …
        what: &'static str,
        /// Its name or owner.
        name: String,
        /// Parser message.
        message: String,
    },
    /// The database cannot be reached or refused to work (connection lost, pool timed
    /// out, shutting down): worth retrying, and the API says 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
            // PostgreSQL: class 08 (connection exception), 57P01..57P03 (admin shutdown,
            // crash shutdown, cannot connect now).
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

/// `Conflict(what)` for a unique violation, else the error as it is.
pub(crate) fn conflict_or(e: sqlx::Error, what: String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::from(e),
    }
}

/// `NotFound(parent)` for a foreign-key violation (the row refers to a missing parent),
/// else the error as it is.
pub(crate) fn missing_or(e: sqlx::Error, parent: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(parent),
        _ => StoreError::from(e),
    }
}

/// A typed value from its stored JSON, or [`StoreError::Corrupt`].
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
    what: &'static str,
    name: &str,
    json: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what,
        name: name.to_owned(),
        message: e.to_string(),
    })
}

/// The stored JSON of a typed value.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Specs, statuses and maps of strings: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A page of at most `limit` rows out of `limit + 1` fetched, and whether more follow.
pub(crate) fn page_of<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    (rows, more)
}

/// A new random id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The control plane's persistent state: every concept's store. Implementations make
/// every method atomic.
pub trait Store:
    TenantStore
    + ComputePlaneStore
    + DesiredStateStore
    + PresenceStore
    + TelemetryStore
    + AuditStore
    + UsageStore
    + SecretStore
    + ReplicaStore
    + IdentityStore
    + SupportStore
{
}

impl<T> Store for T where
    T: TenantStore
        + ComputePlaneStore
        + DesiredStateStore
        + PresenceStore
        + TelemetryStore
        + AuditStore
        + UsageStore
        + SecretStore
        + ReplicaStore
        + IdentityStore
        + SupportStore
{
}
