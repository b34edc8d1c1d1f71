//! Account binding at enrollment: the agent sends an `sts:GetCallerIdentity` request it
//! signed with its own AWS credentials; the control plane relays exactly that request to
//! its configured STS endpoint — never with credentials of its own, never to an address
//! the agent chose — and compares the account STS answers with the tenant's registered one.
//!
//! Refused before anything is sent: another method, another action or extra parameters,
//! a request signed for another host than the configured endpoint, a missing SigV4
//! `Authorization`. Refused after: what STS refuses (a tampered or expired signature), an
//! answer without an account, another account. STS unreachable: enrollment fails as
//! unavailable (the agent retries) and nothing is stored.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tether_proto::v1 as pb;

/// The HTTP client that talks to STS: HTTPS through rustls with aws-lc-rs and the
/// system's roots (plain HTTP only for a test endpoint), no proxy, no redirects.
#[derive(Clone)]
pub struct StsClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StsClient")
    }
}

impl Default for StsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl StsClient {
    /// A client with the system's roots (none found: every HTTPS call fails, reported as
    /// STS unreachable).
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("no system CA roots for STS ({e}); HTTPS to STS will fail");
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| {
                        b.with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth()
                    });
                match config {
                    Ok(c) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(c),
                    Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(rustls::RootCertStore::empty())
                            .with_no_client_auth(),
                    ),
                }
            }
        };
        let connector = builder.https_or_http().enable_http1().build();
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// POSTs `body` with `headers` to `url`; (status, body text).
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(http::StatusCode, String), String> {
        let mut req = http::Request::post(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let bytes = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
            .map_err(|e| error_chain(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// The signed header that ties an identity to one enrollment token (its SHA-256, hex).
pub const ENROLLMENT_HEADER: &str = "x-tether-enrollment";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why an identity was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    /// The tenant binds agents to an account and the agent sent no identity.
    #[error(
        "this tenant binds agents to AWS account {0}: run the agent with AWS credentials of that account and --account-binding"
    )]
    Missing(String),
    /// Not a GetCallerIdentity request this control plane can relay.
    #[error("the signed AWS identity is not acceptable: {0}")]
    Malformed(String),
    /// STS refused the signed request.
    #[error("AWS STS refused the agent's signed identity: {0}")]
    Refused(String),
    /// The agent runs in another account.
    #[error("the agent's AWS account {found} is not this tenant's registered account {expected}")]
    WrongAccount {
        /// Registered.
        expected: String,
        /// Reported by STS.
        found: String,
    },
    /// STS could not be reached.
    #[error("cannot reach AWS STS at {endpoint} to verify the agent's AWS account: {detail}")]
    Unreachable {
        /// The configured endpoint.
        endpoint: String,
        /// What failed.
        detail: String,
    },
}

impl BindingError {
    /// The gRPC status the agent gets.
    pub fn status(&self) -> tonic::Status {
        match self {
            BindingError::Unreachable { .. } => tonic::Status::unavailable(self.to_string()),
            BindingError::Missing(_) => tonic::Status::failed_precondition(self.to_string()),
            _ => tonic::Status::permission_denied(self.to_string()),
        }
    }
}

fn authority(url: &str) -> Option<String> {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
}

/// Checks what can be checked without STS; returns the headers to forward.
fn check(
    req: &pb::SignedHttpRequest,
    endpoint: &str,
    token_hash: &str,
) -> Result<Vec<(String, String)>, BindingError> {
    let bad = |m: &str| Err(BindingError::Malformed(m.to_owned()));
    if req.method != "POST" {
        return bad("only a POST of sts:GetCallerIdentity is relayed");
    }
    let mut params: Vec<(String, String)> = serde_urlencoded::from_bytes(&req.body)
        .map_err(|_| BindingError::Malformed("the body is not a form".into()))?;
    params.sort();
    if params
        != [
            ("Action".to_owned(), "GetCallerIdentity".to_owned()),
            ("Version".to_owned(), "2011-06-15".to_owned()),
        ]
    {
        return bad("the body must be exactly Action=GetCallerIdentity&Version=2011-06-15");
    }
    match (authority(&req.url), authority(endpoint)) {
        (Some(signed), Some(ours)) if signed == ours => {}
        (signed, _) => {
            return Err(BindingError::Malformed(format!(
                "it was signed for {}, and this control plane verifies with {endpoint}",
                signed.unwrap_or_else(|| "an unreadable URL".into())
            )));
        }
    }
    if req
        .url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.query().map(str::to_owned))
        .is_some()
    {
        return bad("the URL must not carry parameters");
    }
    let auth = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| h.value.clone())
        .unwrap_or_default();
    if !auth.starts_with("AWS4-HMAC-SHA256 ") || !auth.contains("/sts/aws4_request") {
        return bad("it carries no SigV4 signature for STS");
    }
    // Forward the signature and exactly the headers it covers (the HTTP client sets
    // `host`, checked above, and `content-length` itself).
    let signed: Vec<String> = auth
        .split(", ")
        .find_map(|p| p.strip_prefix("SignedHeaders="))
        .map(|list| list.split(';').map(str::to_ascii_lowercase).collect())
        .unwrap_or_default();
    // Bound to this enrollment: the token's hash, under the signature.
    let bound = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(ENROLLMENT_HEADER))
        .is_some_and(|h| h.value == token_hash);
    if !bound || !signed.iter().any(|h| h == ENROLLMENT_HEADER) {
        return bad("it is not signed for this enrollment (x-tether-enrollment)");
    }
    let mut headers = vec![("authorization".to_owned(), auth.clone())];
    for h in &req.headers {
        let name = h.name.to_ascii_lowercase();
        let hop = [
            "host",
            "content-length",
            "connection",
            "transfer-encoding",
            "te",
            "upgrade",
        ]
        .contains(&name.as_str());
        if !hop && signed.contains(&name) && name != "authorization" {
            headers.push((name, h.value.clone()));
        }
    }
    Ok(headers)
}

/// The value of the first `<tag>` in an STS XML answer.
fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim().to_owned())
}

/// Relays the agent's signed request to STS at `endpoint` and checks the account.
pub async fn verify(
    http: &StsClient,
    endpoint: &str,
    expected_account: &str,
    token_hash: &str,
    req: Option<&pb::SignedHttpRequest>,
) -> Result<String, BindingError> {
    let req = req.ok_or_else(|| BindingError::Missing(expected_account.to_owned()))?;
    let headers = check(req, endpoint, token_hash)?;
    let (status, text) = http
        .post(endpoint, &headers, req.body.clone())
        .await
        .map_err(|detail| BindingError::Unreachable {
            endpoint: endpoint.to_owned(),
            detail,
        })?;
    if !status.is_success() {
        let code = xml_field(&text, "Code").unwrap_or_else(|| status.to_string());
        let message = xml_field(&text, "Message").unwrap_or_default();
        // STS down or throttling: try again later, this is not a refusal.
        if status.is_server_error() || code.contains("Throttl") {
            return Err(BindingError::Unreachable {
                endpoint: endpoint.to_owned(),
                detail: format!("{code}: {message}"),
            });
        }
        return Err(BindingError::Refused(
            format!("{code}: {message}")
                .trim_end_matches(": ")
                .to_owned(),
        ));
    }
    let account = xml_field(&text, "Account")
        .filter(|a| a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| BindingError::Refused("the answer names no account".into()))?;
    if account != expected_account {
        return Err(BindingError::WrongAccount {
            expected: expected_account.to_owned(),
            found: account,
        });
    }
    Ok(account)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

    fn req(body: &str, url: &str) -> pb::SignedHttpRequest {
        pb::SignedHttpRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![
                pb::HttpHeader {
                    name: "Authorization".into(),
                    value: "AWS4-HMAC-SHA256 Credential=AKID/20261126/us-east-1/sts/aws4_request, SignedHeaders=host;x-tether-enrollment, Signature=00".into(),
                },
                pb::HttpHeader {
                    name: "X-Tether-Enrollment".into(),
                    value: "abc".into(),
                },
            ],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn only_get_caller_identity_for_our_endpoint_is_relayed() {
        let ep = "https://sts.amazonaws.com";
        assert!(check(&req(BODY, "https://sts.amazonaws.com/"), ep, "abc").is_ok());
        for (body, url) in [
            (
                "Action=AssumeRole&Version=2011-06-15&RoleArn=x",
                "https://sts.amazonaws.com/",
            ),
            (
                "Action=GetCallerIdentity&Version=2011-06-15&X=1",
                "https://sts.amazonaws.com/",
            ),
            (BODY, "https://evil.example/"),
            (BODY, "http://169.254.169.254/"),
            (BODY, "https://sts.amazonaws.com/?Action=AssumeRole"),
        ] {
            assert!(check(&req(body, url), ep, "abc").is_err(), "{body} {url}");
        }
        let mut get = req(BODY, "https://sts.amazonaws.com/");
        get.method = "GET".into();
        assert!(check(&get, ep, "abc").is_err());
        let mut unsigned = req(BODY, "https://sts.amazonaws.com/");
        unsigned.headers.clear();
        assert!(check(&unsigned, ep, "abc").is_err());
        // Signed for another enrollment.
        assert!(check(&req(BODY, "https://sts.amazonaws.com/"), ep, "other").is_err());
    }

    #[test]
    fn sts_answers_are_read() {
        let ok = "<GetCallerIdentityResponse><GetCallerIdentityResult><UserId>A</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>";
        assert_eq!(xml_field(ok, "Account").as_deref(), Some("123456789012"));
        let err = "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error></ErrorResponse>";
        assert_eq!(
            xml_field(err, "Code").as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(xml_field(err, "Account"), None);
    }
}
