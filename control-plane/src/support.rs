//! Support requests, the control plane's side: a request is stored, then sent to the
//! compute plane's agent (now, if its session is on this replica; other replicas are told;
//! and at every session start while it is open). The bundle arrives only after the
//! customer approved it in the VPC, before the request expires; it is kept as sent and
//! its arrival is written to the audit log.

use tether_proto::v1 as pb;

use crate::state::AppState;
use crate::store::{AuditEntry, AuditResult, StoreError, SupportRequestRow};

/// Most open requests per compute plane (each makes the agent gather a bundle).
pub const MAX_OPEN: usize = 5;
/// Most files in one bundle.
pub const MAX_FILES: usize = 64;
/// Most bytes of all files of one bundle (within one gRPC message).
pub const MAX_BUNDLE_BYTES: usize = 3 << 20;

/// The control message of a request.
fn message(r: &SupportRequestRow) -> pb::ControlMessage {
    pb::ControlMessage {
        kind: Some(pb::control_message::Kind::SupportRequest(
            pb::SupportRequest {
                id: r.id.clone(),
                reason: r.reason.clone(),
                requested_by: r.requested_by.clone(),
                expires_at_unix_ms: r.expires_at_ms,
            },
        )),
    }
}

/// Sends every open request of `cp` to its session, if this replica holds it.
pub async fn push_local(state: &AppState, cp: &str) {
    let Some(tx) = state.sessions.sender(cp) else {
        return;
    };
    let now = state.clock.now_ms();
    let open = match state.store.support_requests(cp).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(compute_plane = cp, error = %e, "cannot load support requests; not sending them");
            return;
        }
    };
    let messages: Vec<pb::ControlMessage> = open
        .iter()
        .filter(|r| is_open(r, now))
        .map(message)
        .collect();
    // Never wait for room in the session's queue here: a session start calls this before
    // it hands the agent the stream that drains the queue.
    tokio::spawn(async move {
        for m in messages {
            if tx.send(Box::new(m)).await.is_err() {
                return;
            }
        }
    });
}

/// Whether `row` is open: neither answered nor expired at `now_ms`.
pub fn is_open(row: &SupportRequestRow, now_ms: i64) -> bool {
    row.received_at_ms.is_none() && row.expires_at_ms > now_ms
}

/// After a new request: sends it here, and tells the other replicas.
pub async fn push(state: &AppState, cp: &str) {
    push_local(state, cp).await;
    state
        .fleet
        .publish(crate::fleet::Event::SupportRequested { cp: cp.to_owned() })
        .await;
}

/// Keeps a bundle the agent of `cp` sent, and audits it.
pub async fn receive(
    state: &AppState,
    tenant_id: &str,
    cp: &str,
    bundle: pb::SupportBundle,
) -> Result<(), tonic::Status> {
    if bundle.files.len() > MAX_FILES {
        return Err(tonic::Status::invalid_argument(format!(
            "a bundle has at most {MAX_FILES} files"
        )));
    }
    let bytes: usize = bundle
        .files
        .iter()
        .map(|f| f.name.len() + f.content.len())
        .sum();
    if bytes > MAX_BUNDLE_BYTES {
        return Err(tonic::Status::invalid_argument(format!(
            "a bundle has at most {MAX_BUNDLE_BYTES} bytes"
        )));
    }
    let files: Vec<serde_json::Value> = bundle
        .files
        .iter()
        .map(|f| serde_json::json!({"name": f.name, "content": f.content}))
        .collect();
    let text = serde_json::json!({ "files": files }).to_string();
    let now = state.clock.now_ms();
    let stored = state
        .store
        .record_support_bundle(cp, &bundle.request_id, &text, now)
        .await;
    let status: u16 = match &stored {
        Ok(()) => 200,
        Err(StoreError::NotFound(_)) => 404,
        Err(StoreError::Conflict(_)) => 409,
        Err(_) => 500,
    };
    let result = AuditResult::of_status(status);
    let entry = AuditEntry {
        id: 0,
        at_ms: now,
        token_id: None,
        role: Some("agent".into()),
        tenant_id: Some(tenant_id.to_owned()),
        action: "support bundle received".into(),
        target: format!(
            "/compute-planes/{cp}/support-requests/{}",
            bundle.request_id
        ),
        result,
        status,
        client_addr: String::new(),
        // The agent's gRPC API (the log's `via` is `api` or `dashboard`); `role` says who.
        via: "api".into(),
        user: None,
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(action = %entry.action, target = %entry.target, "AUDIT ENTRY NOT WRITTEN: {e}");
    }
    match stored {
        Ok(()) => {
            tracing::info!(compute_plane = cp, request = %bundle.request_id, files = bundle.files.len(), bytes, "support bundle received");
            Ok(())
        }
        Err(StoreError::NotFound(_)) => Err(tonic::Status::not_found(format!(
            "no support request {} of this compute plane",
            bundle.request_id
        ))),
        Err(StoreError::Conflict(m)) => Err(tonic::Status::failed_precondition(m)),
        Err(e) => Err(tonic::Status::internal(e.to_string())),
    }
}
