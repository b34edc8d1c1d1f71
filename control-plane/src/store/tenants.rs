//! Tenants and their API tokens.

use async_trait::async_trait;
use serde::Serialize;

use super::{Settings, StoreError};
use crate::authz::Role;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Settings of every compute plane of the tenant; a compute plane's own settings
    /// override them key by key.
    pub settings: Settings,
}

/// An API token as stored (the hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Id, shown in audit logs.
    pub id: String,
    /// `None` for the platform admin.
    pub tenant_id: Option<String>,
    /// Role.
    pub role: Role,
    /// The person it belongs to (`alice@example.com via oidc`): their dashboard session's
    /// token or a personal API token; `None` for a tenant's or the platform's own tokens.
    pub user: Option<String>,
    /// That person's user id.
    pub user_id: Option<String>,
    /// Unix seconds after which it no longer works; `None`: until revoked.
    pub expires_at: Option<i64>,
}

impl ApiToken {
    /// Whether it still works at `now` (Unix seconds).
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Tenants and API tokens.
#[async_trait]
pub trait TenantStore: Send + Sync + std::fmt::Debug + 'static {
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

    /// Stores a token hash with its role; `Conflict` if the hash is already stored.
    async fn create_api_token(
        &self,
        tenant_id: Option<&str>,
        role: Role,
        token_hash: &str,
        now: i64,
    ) -> Result<ApiToken, StoreError>;
    /// Looks a token up by its hash.
    async fn find_api_token(&self, token_hash: &str) -> Result<Option<ApiToken>, StoreError>;
    /// Creates the platform admin token with this hash if the database never had its
    /// first one, atomically (replicas starting together on a new database create one);
    /// true if this call created it.
    async fn bootstrap_platform_admin(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// The token with this id.
    async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiToken>, StoreError>;
}
