//! What can stop the agent, each with a one-line message an installer can act on.

use crate::identity_store::IdentityError;
use crate::transport::ConnectError;

/// A failure of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad flags or unreadable files.
    #[error("{0}")]
    Config(String),
    /// Nothing to authenticate with.
    #[error(
        "not enrolled: {0} holds no certificate and no --enrollment-token (TETHER_ENROLLMENT_TOKEN) was given"
    )]
    NotEnrolled(String),
    /// The control plane refused the enrollment.
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(String),
    /// The certificate was revoked.
    #[error(
        "certificate revoked by the control plane ({0}); create a new enrollment token and run again with --enrollment-token"
    )]
    Revoked(String),
    /// The control plane refused the agent's identity for another reason.
    #[error("the control plane refused this agent: {0}")]
    Refused(String),
    /// A connection failed (retried unless fatal elsewhere).
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// An RPC failed.
    #[error("control plane answered {code:?}: {message}")]
    Rpc {
        /// gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// State dir problems.
    #[error("{0}")]
    Identity(#[from] IdentityError),
}

impl AgentError {
    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, AgentError::Connect(_) | AgentError::Rpc { .. })
    }

    /// Process exit code for `main`.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Config(_) | AgentError::NotEnrolled(_) => 2,
            AgentError::EnrollmentRefused(_) => 3,
            AgentError::Revoked(_) | AgentError::Refused(_) => 4,
            _ => 1,
        }
    }
}

impl From<tonic::Status> for AgentError {
    fn from(s: tonic::Status) -> Self {
        AgentError::Rpc {
            code: s.code(),
            message: s.message().to_owned(),
        }
    }
}
