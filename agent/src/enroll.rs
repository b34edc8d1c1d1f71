//! Enrollment: a fresh key pair is made here, only its CSR goes to the control plane with
//! the one-time bootstrap token, and the returned certificate is stored beside the key.

use http::Uri;
use tether_proto::v1::EnrollRequest;
use tether_proto::v1::agent_control_client::AgentControlClient;
use tether_shared::pki;

use crate::error::AgentError;
use crate::identity_store::{Credentials, StateDir};
use crate::transport::{self, TlsMaterial};

/// The agent's version, as sent in Enroll and Hello.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Enrolls once. Transport failures are retryable; refusals are not.
pub async fn enroll(
    control_plane: &Uri,
    roots: &TlsMaterial,
    state: &StateDir,
    token: &str,
    expected_compute_plane_id: Option<&str>,
    account_binding: Option<&crate::aws_identity::StsSettings>,
) -> Result<Credentials, AgentError> {
    let aws_identity = match account_binding {
        Some(sts) => Some(
            crate::aws_identity::signed_identity(sts, token)
                .await
                .map_err(|e| AgentError::Config(format!("account binding: {e}")))?,
        ),
        None => None,
    };
    let (key_pem, csr_pem) =
        pki::key_and_csr("tether-agent").map_err(|e| AgentError::Config(e.to_string()))?;
    let channel = transport::connect(control_plane, roots).await?;
    let mut client = AgentControlClient::new(channel)
        .max_decoding_message_size(tether_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(tether_proto::MAX_MESSAGE_BYTES);
    let resp = client
        .enroll(EnrollRequest {
            bootstrap_token: token.to_owned(),
            csr_pem,
            agent_version: AGENT_VERSION.to_owned(),
            expected_compute_plane_id: expected_compute_plane_id.unwrap_or_default().to_owned(),
            aws_identity,
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::Unauthenticated
            | tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition => {
                AgentError::EnrollmentRefused(s.message().to_owned())
            }
            _ => AgentError::from(s),
        })?
        .into_inner();
    // The key that signs desired state, pinned before the certificate is saved: an agent
    // with a certificate always has the key to check what it is sent.
    let signing_key =
        tether_shared::signing::VerifyingKey::from_pem(&resp.desired_state_signing_key_pem)
            .map_err(|e| {
                AgentError::EnrollmentRefused(format!(
                    "the control plane sent no usable desired-state signing key ({e}); upgrade it"
                ))
            })?;
    crate::desired::pin_key(state.dir(), &signing_key)
        .map_err(|e| AgentError::Config(e.to_string()))?;
    let creds = state.save(&resp.certificate_pem, &key_pem)?;
    crate::audit::record(
        "enrolled",
        serde_json::json!({
            "compute_plane_id": creds.info.identity.as_ref().map(|i| i.compute_plane_id.clone()),
            "certificate_serial": creds.info.serial,
            "signing_key_id": signing_key.key_id(),
        }),
    );
    tracing::info!(
        serial = %creds.info.serial,
        compute_plane_id = creds.info.identity.as_ref().map(|i| i.compute_plane_id.as_str()).unwrap_or(""),
        expires_at = creds.info.not_after,
        signing_key_id = signing_key.key_id(),
        "enrolled"
    );
    Ok(creds)
}
