//! Support requests: the control plane asks a compute plane's agent for a diagnostic
//! bundle; the agent sends it only after the customer approved it in the VPC, before the
//! request expires. The bundle is kept as the agent sent it (JSON text).

use async_trait::async_trait;

use super::StoreError;

/// One support request and, once received, its bundle's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportRequestRow {
    /// Id (`sr-…`).
    pub id: String,
    /// Compute plane.
    pub compute_plane_id: String,
    /// Why it was asked for.
    pub reason: String,
    /// Who asked (token id, or the person).
    pub requested_by: String,
    /// When (Unix ms).
    pub requested_at_ms: i64,
    /// Until when the agent may send it (Unix ms).
    pub expires_at_ms: i64,
    /// When the bundle arrived (Unix ms).
    pub received_at_ms: Option<i64>,
    /// Bytes of the bundle received.
    pub bundle_bytes: Option<i64>,
}

/// Whether a request found as `(expires_at_ms, received_at_ms)` may take its bundle at
/// `now_ms` (the rule both backends apply inside their transaction).
pub(crate) fn may_take_bundle(
    found: Option<(i64, Option<i64>)>,
    id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    match found {
        None => Err(StoreError::NotFound("support request")),
        Some((_, Some(_))) => Err(StoreError::Conflict(format!(
            "support request {id} already has its bundle"
        ))),
        Some((expires, None)) if expires <= now_ms => Err(StoreError::Conflict(format!(
            "support request {id} expired"
        ))),
        Some(_) => Ok(()),
    }
}

/// Support requests and their bundles.
#[async_trait]
pub trait SupportStore: Send + Sync + std::fmt::Debug + 'static {
    /// Records a new request.
    async fn create_support_request(&self, r: &SupportRequestRow) -> Result<(), StoreError>;
    /// The compute plane's requests, newest first.
    async fn support_requests(&self, cp: &str) -> Result<Vec<SupportRequestRow>, StoreError>;
    /// Keeps a request's bundle: `NotFound` for an unknown request (or another compute
    /// plane's), `Conflict` when it expired or a bundle was already received.
    async fn record_support_bundle(
        &self,
        cp: &str,
        id: &str,
        bundle: &str,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// A received bundle (`None`: not received yet); `NotFound` for an unknown request.
    async fn support_bundle(&self, cp: &str, id: &str) -> Result<Option<String>, StoreError>;
}
