//! A JSON body extractor whose errors are 400s that name the field (axum's own `Json`
//! answers 415/422 with text that does not).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// A request body that may be empty (`None`) or JSON for `T`.
#[derive(Debug)]
pub struct OptionalApiJson<T>(pub Option<T>);

async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(super::MAX_BODY_BYTES)
        } else {
            ApiError::BadRequest {
                message: format!("request body: {e}"),
                field: None,
            }
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse(&body(req, state).await?).map(ApiJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body(req, state).await?;
        // No body, or JSON `null` (the documented schema of an optional body is nullable),
        // means the defaults.
        let trimmed = bytes.trim_ascii();
        if trimmed.is_empty() || trimmed == b"null" {
            return Ok(OptionalApiJson(None));
        }
        parse(&bytes).map(|v| OptionalApiJson(Some(v)))
    }
}

/// Parses `bytes`, naming the field at fault in the error. Every request body is a JSON
/// object: serde would otherwise also read a struct from an array of its fields in order
/// (`["acme"]` as `{"name": "acme"}`), which the documented schemas do not allow.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::BadRequest {
                message: "the request body must be a JSON object".into(),
                field: None,
            });
        }
        None => {
            return Err(ApiError::BadRequest {
                message: "the request body is empty: a JSON object is required".into(),
                field: None,
            });
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // "missing field `x`" and "unknown field `x`" sit at the parent's path.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        let field = match (path.as_str(), named) {
            (".", Some(n)) => Some(n),
            (".", None) => None,
            (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p.to_owned()),
            (p, Some(n)) => Some(format!("{p}.{n}")),
            (p, None) => Some(p.to_owned()),
        };
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {message}")
        } else {
            message
        };
        match field {
            Some(f) => ApiError::field(&f, message),
            None => ApiError::BadRequest {
                message,
                field: None,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: Option<u32>,
    }

    fn field_of(body: &str) -> Option<String> {
        match parse::<T>(body.as_bytes()) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn names_the_field() {
        assert_eq!(field_of(r#"{"n": 1}"#).as_deref(), Some("name"));
        assert_eq!(field_of(r#"{"name": 5}"#).as_deref(), Some("name"));
        assert_eq!(
            field_of(r#"{"name": "a", "bogus": 1}"#).as_deref(),
            Some("bogus")
        );
        assert_eq!(field_of(r#"{"name": "a", "n": -1}"#).as_deref(), Some("n"));
        assert_eq!(field_of("not json"), None);
        assert_eq!(field_of(r#"["a", 1]"#), None, "an array is not an object");
        // Truncated input is blamed on the field being read.
        assert_eq!(field_of(r#"{"name": "#).as_deref(), Some("name"));
    }
}
