//! Compute planes and the identities of their agents: enrollment tokens, certificates,
//! revocation.

use async_trait::async_trait;
use tether_shared::status::Condition;

use super::StoreError;

/// A compute plane and what is known of its agent.
#[derive(Debug, Clone, PartialEq)]
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
    /// Conditions of that ack, as the agent reported them.
    pub applied_conditions: Vec<Condition>,
    /// Telemetry records the agent reported dropped (spool full).
    pub telemetry_dropped: u64,
    /// The same, per class.
    pub telemetry_dropped_by_class: super::DroppedRecords,
}

/// What the control plane knows of a compute plane's agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// The control-plane replica holding the live (or last) session.
    pub replica: Option<String>,
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

/// Compute planes, enrollment and agent certificates.
#[async_trait]
pub trait ComputePlaneStore: Send + Sync + std::fmt::Debug + 'static {
    /// Creates a compute plane; `Conflict` if the tenant already has one of that name,
    /// `NotFound` if there is no such tenant.
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
}
