//! Desired state (clusters, catalogs, settings) and the agent's reports about it. Every
//! change bumps the compute plane's generation in the same transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tether_shared::spec::{CatalogSpec, ClusterSpec, PrestoAccess};
use tether_shared::status::{ClusterStatus, Condition};

use super::{Settings, StoreError};

/// A cluster row: spec, deletion mark, and the agent's last report.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    /// Name.
    pub name: String,
    /// Validated spec.
    pub spec: ClusterSpec,
    /// Compute-plane generation of its last change.
    pub generation: i64,
    /// Set while a DELETE waits for the agent.
    pub deleted_generation: Option<i64>,
    /// Last status from the agent.
    pub status: Option<ClusterStatus>,
    /// Generation the agent last applied to it.
    pub observed_generation: i64,
}

/// A catalog row.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRow {
    /// Name.
    pub name: String,
    /// Validated spec.
    pub spec: CatalogSpec,
    /// Compute-plane generation of its last change.
    pub generation: i64,
}

/// The stored desired state of a compute plane.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredDesiredState {
    /// Current generation.
    pub generation: i64,
    /// Live (not deleted) clusters by name.
    pub clusters: BTreeMap<String, ClusterSpec>,
    /// Catalogs by name.
    pub catalogs: BTreeMap<String, CatalogSpec>,
    /// The compute plane's own settings.
    pub settings: Settings,
    /// Its tenant's settings, under the compute plane's own.
    pub tenant_settings: Settings,
    /// Presto authentication and access rules, if set.
    pub presto_access: Option<PrestoAccess>,
}

/// Why a desired-state write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredStateConflict {
    /// The cluster attaches a catalog the compute plane does not have (index, name).
    UnknownCatalog(usize, String),
    /// The catalog is attached to these clusters.
    CatalogInUse(Vec<String>),
}

/// Desired state and the agent's reports about it.
#[async_trait]
pub trait DesiredStateStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or replaces a cluster; checks the catalogs it attaches exist. Returns the
    /// new generation. Like every write here, `NotFound` for a missing compute plane.
    async fn put_cluster(
        &self,
        cp: &str,
        name: &str,
        spec: &ClusterSpec,
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
        spec: &CatalogSpec,
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
    /// The agent applied `generation` (capped at the stored one: only what it can have
    /// seen; never lowered); deletions up to it are done. Its conditions replace the
    /// stored ones unless the ack is older than the applied generation.
    async fn record_applied(
        &self,
        cp: &str,
        generation: i64,
        conditions: &[Condition],
    ) -> Result<(), StoreError>;
    /// Replaces the compute plane's settings. Returns the new generation.
    async fn put_settings(&self, cp: &str, settings: &Settings) -> Result<i64, StoreError>;
    /// Sets (or with `None` removes) the compute plane's Presto access document. Returns
    /// the new generation.
    async fn put_presto_access(
        &self,
        cp: &str,
        access: Option<&PrestoAccess>,
    ) -> Result<i64, StoreError>;
    /// Replaces the tenant's settings and bumps the generation of every compute plane of
    /// the tenant, in one transaction. Returns how many there are.
    async fn put_tenant_settings(
        &self,
        tenant: &str,
        settings: &Settings,
    ) -> Result<u64, StoreError>;
    /// The desired state of every compute plane of the tenant, read in one transaction
    /// with one query per table (a tenant-wide change reaches thousands at once).
    async fn tenant_desired_states(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError>;
    /// Like [`DesiredStateStore::tenant_desired_states`], for those of `cps` only (a
    /// replica pushes a tenant-wide change to the sessions it holds). The default reads
    /// them all and keeps those.
    async fn tenant_desired_states_of(
        &self,
        tenant: &str,
        cps: &[String],
    ) -> Result<Vec<(String, StoredDesiredState)>, StoreError> {
        let wanted: std::collections::HashSet<&str> = cps.iter().map(String::as_str).collect();
        Ok(self
            .tenant_desired_states(tenant)
            .await?
            .into_iter()
            .filter(|(cp, _)| wanted.contains(cp.as_str()))
            .collect())
    }
    /// The agent's status of one cluster; `observed_generation` never goes down.
    async fn record_cluster_status(
        &self,
        cp: &str,
        name: &str,
        status: &ClusterStatus,
        observed_generation: i64,
    ) -> Result<(), StoreError>;
}
