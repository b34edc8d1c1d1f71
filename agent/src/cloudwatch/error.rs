//! One error type for the shipper, and the one place that turns SDK errors into it.

use std::time::Duration;

use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// What went wrong talking to CloudWatch Logs, phrased for an operator.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudWatchError {
    /// The credentials are valid but lack a permission (e.g. `logs:PutLogEvents`).
    #[error("CloudWatch Logs: access denied to log group {log_group} ({operation}): {detail}")]
    AccessDenied {
        /// The log group asked for.
        log_group: String,
        /// The API call refused.
        operation: &'static str,
        /// The service's message.
        detail: String,
    },
    /// The service does not accept the credentials (unknown key, bad signature, expired).
    #[error("CloudWatch Logs: the AWS credentials were refused ({operation}): {detail}")]
    InvalidCredentials {
        /// The API call refused.
        operation: &'static str,
        /// The service's message.
        detail: String,
    },
    /// No credentials could be found by the provider chain.
    #[error("CloudWatch Logs: no AWS credentials available: {detail}")]
    NoCredentials {
        /// What the provider chain said.
        detail: String,
    },
    /// Connecting or talking to the endpoint failed (DNS, refused, TLS, timeout).
    #[error("cannot reach CloudWatch Logs endpoint {endpoint}: {detail}")]
    Unreachable {
        /// The endpoint dialed.
        endpoint: String,
        /// The underlying error chain.
        detail: String,
    },
    /// The service asked us to slow down.
    #[error("CloudWatch Logs: throttled ({operation} on log group {log_group}): {detail}")]
    Throttled {
        /// The log group.
        log_group: String,
        /// The API call throttled.
        operation: &'static str,
        /// The service's message.
        detail: String,
    },
    /// Any other answer from the service.
    #[error("CloudWatch Logs: {operation} on log group {log_group} failed ({code}): {detail}")]
    Service {
        /// The log group.
        log_group: String,
        /// The API call that failed.
        operation: &'static str,
        /// The service's error code, or the HTTP status.
        code: String,
        /// The service's message.
        detail: String,
    },
    /// [`super::LogShipper::flush`] ran out of time with no error to blame.
    #[error("CloudWatch Logs: flush timed out after {timeout:?}; {pending} events still buffered")]
    FlushTimeout {
        /// The bound given to `flush`.
        timeout: Duration,
        /// Events not yet accepted.
        pending: usize,
    },
    /// The background flusher is gone (its tokio runtime shut down).
    #[error("CloudWatch Logs: the shipper is no longer running (its tokio runtime has stopped)")]
    Stopped,
    /// The configuration cannot work.
    #[error("invalid CloudWatch Logs configuration: {0}")]
    Config(String),
}

impl CloudWatchError {
    /// Errors that retrying will not fix without someone changing IAM, credentials or
    /// configuration. [`super::LogShipper::start`] returns these; the flusher still retries
    /// them (slowly), since the fix usually comes without restarting the agent.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            Self::AccessDenied { .. }
                | Self::InvalidCredentials { .. }
                | Self::NoCredentials { .. }
                | Self::Config(_)
        )
    }
}

/// What an error is about, for its message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub operation: &'static str,
    pub log_group: &'a str,
    pub endpoint: &'a str,
}

/// Classifies any SDK error of any CloudWatch Logs operation.
pub(crate) fn classify<E>(err: &SdkError<E>, cx: Context<'_>) -> CloudWatchError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let chain = || DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            // Some front ends (and stand-ins such as moto) answer in the XML error shape of
            // the query protocol, which the JSON deserializer cannot read.
            let xml = service
                .raw()
                .body()
                .bytes()
                .and_then(|b| std::str::from_utf8(b).ok());
            let code = e
                .code()
                .map(str::to_owned)
                .or_else(|| xml.and_then(|x| xml_value(x, "Code")))
                .unwrap_or_else(|| format!("HTTP {status}"));
            let detail = e
                .message()
                .map(str::to_owned)
                .or_else(|| xml.and_then(|x| xml_value(x, "Message")))
                .unwrap_or_else(chain);
            from_code(&code, status, detail, cx)
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            CloudWatchError::Unreachable {
                endpoint: cx.endpoint.to_owned(),
                detail: chain(),
            }
        }
        SdkError::TimeoutError(_) => CloudWatchError::Unreachable {
            endpoint: cx.endpoint.to_owned(),
            detail: format!("timed out: {}", chain()),
        },
        _ => {
            let detail = chain();
            // Identity resolution fails before anything is sent; its message is the only
            // sign of it.
            if detail.contains("credentials") && detail.contains("load") {
                CloudWatchError::NoCredentials { detail }
            } else if matches!(err, SdkError::DispatchFailure(_)) {
                CloudWatchError::Unreachable {
                    endpoint: cx.endpoint.to_owned(),
                    detail,
                }
            } else {
                CloudWatchError::Service {
                    log_group: cx.log_group.to_owned(),
                    operation: cx.operation,
                    code: "unexpected response".into(),
                    detail,
                }
            }
        }
    }
}

fn from_code(code: &str, status: u16, detail: String, cx: Context<'_>) -> CloudWatchError {
    let log_group = cx.log_group.to_owned();
    let operation = cx.operation;
    match code {
        "AccessDeniedException" | "AccessDenied" => CloudWatchError::AccessDenied {
            log_group,
            operation,
            detail,
        },
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "ExpiredToken" => CloudWatchError::InvalidCredentials { operation, detail },
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded" => CloudWatchError::Throttled {
            log_group,
            operation,
            detail,
        },
        // CloudWatch Logs answers 403 only for authentication and authorization.
        _ if status == 403 => CloudWatchError::AccessDenied {
            log_group,
            operation,
            detail: format!("HTTP 403 {code}: {detail}"),
        },
        _ if status == 429 => CloudWatchError::Throttled {
            log_group,
            operation,
            detail,
        },
        _ => CloudWatchError::Service {
            log_group,
            operation,
            code: code.to_owned(),
            detail,
        },
    }
}

/// The text of the first `<tag>…</tag>` in `xml`.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find("</")?;
    Some(xml[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::error::ConnectorError;
    use aws_sdk_cloudwatchlogs::operation::put_log_events::PutLogEventsError;

    const CX: Context<'static> = Context {
        operation: "PutLogEvents",
        log_group: "/tether/cp-1",
        endpoint: "https://logs.eu-west-1.amazonaws.com",
    };

    fn code(code: &str, status: u16) -> CloudWatchError {
        from_code(code, status, "the message".into(), CX)
    }

    #[test]
    fn service_codes_map_to_clear_messages() {
        let denied = code("AccessDeniedException", 400);
        assert_eq!(
            denied.to_string(),
            "CloudWatch Logs: access denied to log group /tether/cp-1 (PutLogEvents): the message"
        );
        assert!(denied.needs_operator());
        for c in [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
        ] {
            assert!(
                matches!(code(c, 400), CloudWatchError::InvalidCredentials { .. }),
                "{c}"
            );
        }
        assert!(matches!(
            code("ThrottlingException", 400),
            CloudWatchError::Throttled { .. }
        ));
        assert!(matches!(
            code("Whatever", 429),
            CloudWatchError::Throttled { .. }
        ));
        assert!(matches!(
            code("HTTP 403", 403),
            CloudWatchError::AccessDenied { .. }
        ));
        let unavailable = code("ServiceUnavailableException", 503);
        assert!(!unavailable.needs_operator());
        assert!(
            unavailable
                .to_string()
                .contains("(ServiceUnavailableException)")
        );
    }

    #[test]
    fn connection_failures_name_the_endpoint() {
        let refused: SdkError<PutLogEventsError> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        let e = classify(&refused, CX);
        assert!(matches!(e, CloudWatchError::Unreachable { .. }));
        assert!(
            e.to_string().starts_with(
                "cannot reach CloudWatch Logs endpoint https://logs.eu-west-1.amazonaws.com: "
            ),
            "{e}"
        );
        assert!(!e.needs_operator());
        let slow: SdkError<PutLogEventsError> = SdkError::timeout_error("took too long");
        assert!(matches!(
            classify(&slow, CX),
            CloudWatchError::Unreachable { .. }
        ));
    }

    #[test]
    fn xml_error_bodies_are_read() {
        let body = "<ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                    <Message>not authorized</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_value(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_value(body, "Message").as_deref(),
            Some("not authorized")
        );
        assert_eq!(xml_value(body, "Missing"), None);
    }
}
