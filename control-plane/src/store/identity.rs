//! People (see [`crate::identity`]): each tenant's identity provider, the users who
//! signed in, their tokens, and OIDC sign-ins under way.

use async_trait::async_trait;
use serde::Serialize;

use super::{ApiToken, StoreError};
use crate::authz::Role;
use crate::identity::{ProviderConfig, Via};

/// Where a user belongs: a tenant, or the platform (the vendor's staff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// A tenant, by id.
    Tenant(&'a str),
    /// The platform.
    Platform,
}

impl Scope<'_> {
    /// The stored `scope` column.
    pub fn key(&self) -> &str {
        match self {
            Scope::Tenant(t) => t,
            Scope::Platform => "platform",
        }
    }

    /// The stored `tenant_id` column.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Scope::Tenant(t) => Some(t),
            Scope::Platform => None,
        }
    }
}

/// A person who signed in at least once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Id.
    pub id: String,
    /// Their tenant; `None` for platform staff.
    pub tenant_id: Option<String>,
    /// How they sign in.
    pub via: Via,
    /// The provider's id for them (OIDC `sub`, LDAP DN).
    pub subject: String,
    /// E-mail address or user name.
    pub name: String,
    /// Their role at their last sign-in.
    pub role: Role,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_sign_in_at: i64,
}

/// An OIDC sign-in between the redirect and the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The tenant id, or `platform`.
    pub scope: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub pkce_verifier: String,
}

/// Identity providers, users and their tokens, pending sign-ins.
#[async_trait]
pub trait IdentityStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates or replaces the tenant's identity provider; `NotFound("tenant")` if there
    /// is no such tenant.
    async fn put_identity_provider(
        &self,
        tenant_id: &str,
        config: &ProviderConfig,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The tenant's identity provider.
    async fn identity_provider(
        &self,
        tenant_id: &str,
    ) -> Result<Option<ProviderConfig>, StoreError>;
    /// Removes it, and ends its people's sessions and personal tokens (they expire at
    /// `now`); false if there was none.
    async fn delete_identity_provider(&self, tenant_id: &str, now: i64)
    -> Result<bool, StoreError>;

    /// Records a sign-in: creates the user or updates their name and role, and returns
    /// them.
    async fn sign_in_user(
        &self,
        scope: Scope<'_>,
        via: Via,
        subject: &str,
        name: &str,
        role: Role,
        now: i64,
    ) -> Result<User, StoreError>;
    /// Ends (expires at `now`) every token of the user with this identity, if there is one:
    /// their sign-in was just refused (no mapped group any more), so their sessions and
    /// personal tokens must not outlive it. Returns how many tokens ended.
    async fn end_user_tokens(
        &self,
        scope: Scope<'_>,
        via: Via,
        subject: &str,
        now: i64,
    ) -> Result<u64, StoreError>;
    /// A tenant's users, by name.
    async fn list_users(&self, tenant_id: &str) -> Result<Vec<User>, StoreError>;
    /// One user.
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// Stores a token of the user's, with its role and expiry (Unix seconds).
    async fn create_user_token(
        &self,
        user: &User,
        role: Role,
        token_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<ApiToken, StoreError>;

    /// Keeps a pending OIDC sign-in under the hash of its `state` until `expires_ms`;
    /// expired ones are swept on the way.
    async fn put_pending_login(
        &self,
        state_hash: &str,
        login: &PendingLogin,
        now_ms: i64,
        expires_ms: i64,
    ) -> Result<(), StoreError>;
    /// Takes (removes and returns) the pending sign-in of this `state` hash if it has not
    /// expired: a `state` works once.
    async fn take_pending_login(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> Result<Option<PendingLogin>, StoreError>;
}
