//! The one mapping from API errors to HTTP responses:
//! `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An API error; the message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, naming the offending field when there is one.
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The JSON field, if one is to blame.
        field: Option<String>,
    },
    /// 413: the body is larger than the API reads.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    /// 401: no or unknown token.
    #[error("a valid API token is required (Authorization: Bearer TOKEN)")]
    Unauthorized,
    /// 403: the token's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404, also for what exists but belongs to another tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 500; details are logged, not sent.
    #[error("internal error")]
    Internal(String),
    /// 503: the database cannot be reached; retry later. Details are logged, not sent.
    #[error("the control plane's database is unavailable; retry shortly")]
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A 400 naming `field`.
    pub fn field(field: &str, message: impl std::fmt::Display) -> Self {
        ApiError::BadRequest {
            message: format!("{field}: {message}"),
            field: Some(field.to_owned()),
        }
    }
}

/// A spec that failed validation: a 400 naming its field.
impl From<tether_shared::spec::SpecError> for ApiError {
    fn from(e: tether_shared::spec::SpecError) -> Self {
        ApiError::BadRequest {
            message: e.to_string(),
            field: Some(e.field),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Every error's body: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `too_large`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `internal` or `unavailable`.
    pub code: String,
    /// For people.
    pub message: String,
    /// The request field at fault (`workers.count`, `catalogs[2]`), for a 400.
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "API request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "API request failed: database unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        let field = match &self {
            ApiError::BadRequest { field, .. } => field.clone(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
                field,
            },
        };
        (status, Json(body)).into_response()
    }
}
