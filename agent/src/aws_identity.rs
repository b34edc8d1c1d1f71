//! The agent's AWS identity, proven without handing anyone a credential:
//!
//! - [`signed_identity`]: an `sts:GetCallerIdentity` request signed (SigV4, in headers) by
//!   aws-sdk-sts with the agent's own credentials, captured just before it would be sent.
//!   The agent puts it in `Enroll`; the control plane relays exactly that request to STS
//!   and learns the account from the answer (account binding). A header-signed POST rather
//!   than a presigned GET: the body is covered by the signature, and STS emulators
//!   (moto) route only such requests to STS.
//! - [`eks_token`]: the standard EKS bearer token, `k8s-aws-v1.` + base64url (no padding)
//!   of a presigned `GET https://sts.REGION.amazonaws.com/?Action=GetCallerIdentity&
//!   Version=2011-06-15` whose signature covers the `x-k8s-aws-id: CLUSTER` header, valid
//!   60 s for the presign (EKS accepts the token for 15 minutes), used when the agent runs
//!   outside the cluster (ECS Fargate).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_config::meta::region::RegionProviderChain;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use tether_proto::v1 as pb;

/// How the presigned part of an EKS token is valid (what `aws eks get-token` uses).
pub const EKS_PRESIGN_SECONDS: u64 = 60;
/// EKS accepts a token this long after it was made; refresh well before.
pub const EKS_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Where STS is.
#[derive(Debug, Clone, Default)]
pub struct StsSettings {
    /// Endpoint override, e.g. a VPC endpoint or a test server; default: the regional
    /// endpoint `https://sts.REGION.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Region; default: the environment's (`AWS_REGION`, profile, IMDS), else us-east-1.
    pub region: Option<String>,
    /// Static credentials `(access key id, secret access key)`; `None` uses the default
    /// chain (environment, ECS task role, web identity, profile, IMDS). For tests.
    pub credentials: Option<(String, String)>,
}

/// Failures to produce a signed identity.
#[derive(Debug, thiserror::Error)]
pub enum AwsIdentityError {
    /// No credentials in the default chain (environment, web identity, ECS task role,
    /// profile, IMDS).
    #[error("no AWS credentials for the agent: {0}")]
    Credentials(String),
    /// Signing failed.
    #[error("signing sts:GetCallerIdentity: {0}")]
    Signing(String),
}

async fn sdk_config(s: &StsSettings) -> SdkConfig {
    // The global endpoint takes only us-east-1 signatures.
    let global = s
        .endpoint
        .as_deref()
        .is_some_and(|e| e.trim_end_matches('/') == "https://sts.amazonaws.com");
    let explicit = s
        .region
        .clone()
        .or_else(|| global.then(|| "us-east-1".to_owned()));
    let region = RegionProviderChain::first_try(explicit.map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static("us-east-1"));
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some((id, secret)) = &s.credentials {
        loader = loader.credentials_provider(aws_sdk_sts::config::Credentials::new(
            id,
            secret,
            None,
            None,
            "tether-static",
        ));
    }
    loader.load().await
}

fn region_of(sdk: &SdkConfig) -> String {
    sdk.region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned())
}

/// The header that ties a signed identity to one enrollment: SHA-256 (hex) of the
/// enrollment token, covered by the signature, so a signed `GetCallerIdentity` made for
/// anything else cannot be replayed to enroll.
pub const ENROLLMENT_HEADER: &str = "x-tether-enrollment";

/// Adds the enrollment header before signing, keeps the signed request, and stops the
/// SDK from sending it.
#[derive(Debug, Default)]
struct Capture {
    slot: Arc<Mutex<Option<pb::SignedHttpRequest>>>,
    binding: Option<String>,
}

/// The error the capture aborts the call with; expected, not a failure.
#[derive(Debug)]
struct Captured;

impl std::fmt::Display for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("captured")
    }
}

impl std::error::Error for Captured {}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "TetherCaptureSignedRequest"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(b) = &self.binding {
            context
                .request_mut()
                .headers_mut()
                .insert(ENROLLMENT_HEADER, b.clone());
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let req = context.request();
        let signed = pb::SignedHttpRequest {
            method: req.method().to_owned(),
            url: req.uri().to_owned(),
            headers: req
                .headers()
                .iter()
                .map(|(name, value)| pb::HttpHeader {
                    name: name.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
            body: req.body().bytes().unwrap_or_default().to_vec(),
        };
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(signed);
        Err(Box::new(Captured))
    }
}

/// `sts:GetCallerIdentity` sent (for `tether-agent doctor`): the account and the ARN.
pub async fn caller_identity(s: &StsSettings) -> Result<(String, String), String> {
    let sdk = sdk_config(s).await;
    let mut b = aws_sdk_sts::config::Builder::from(&sdk);
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    let out = aws_sdk_sts::Client::from_conf(b.build())
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| aws_sdk_sts::error::DisplayErrorContext(&e).to_string())?;
    Ok((
        out.account().unwrap_or_default().to_owned(),
        out.arn().unwrap_or_default().to_owned(),
    ))
}

/// A signed `sts:GetCallerIdentity` request with the agent's own credentials (never sent
/// by the agent itself), bound to the enrollment token `token` ([`ENROLLMENT_HEADER`]).
pub async fn signed_identity(
    s: &StsSettings,
    token: &str,
) -> Result<pb::SignedHttpRequest, AwsIdentityError> {
    let sdk = sdk_config(s).await;
    let mut b = aws_sdk_sts::config::Builder::from(&sdk);
    if let Some(e) = &s.endpoint {
        b = b.endpoint_url(e);
    }
    let client = aws_sdk_sts::Client::from_conf(b.build());
    let slot = Arc::new(Mutex::new(None));
    let result = client
        .get_caller_identity()
        .customize()
        .interceptor(Capture {
            slot: slot.clone(),
            binding: Some(tether_shared::tokens::hash(token)),
        })
        .send()
        .await;
    let captured = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    match (captured, result) {
        (Some(req), _) => Ok(req),
        (None, Err(e)) => {
            // Before transmit, the only way to fail is identity (credentials) or signing.
            let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
            if detail.contains("credentials") || detail.contains("identity") {
                Err(AwsIdentityError::Credentials(detail))
            } else {
                Err(AwsIdentityError::Signing(detail))
            }
        }
        (None, Ok(_)) => Err(AwsIdentityError::Signing(
            "the request was sent before it could be captured".into(),
        )),
    }
}

/// An EKS bearer token for `cluster` and when it stops being accepted.
pub async fn eks_token(
    s: &StsSettings,
    cluster: &str,
) -> Result<(String, SystemTime), AwsIdentityError> {
    let sdk = sdk_config(s).await;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| AwsIdentityError::Credentials("no credentials provider".into()))?;
    let creds = aws_sdk_sts::config::ProvideCredentials::provide_credentials(&provider)
        .await
        .map_err(|e| AwsIdentityError::Credentials(e.to_string()))?;
    let region = region_of(&sdk);
    let now = SystemTime::now();
    let token = eks_token_with(&creds.into(), &region, s.endpoint.as_deref(), cluster, now)?;
    Ok((token, now + EKS_TOKEN_LIFETIME))
}

/// The token, from explicit inputs (deterministic for a given time).
pub fn eks_token_with(
    identity: &Identity,
    region: &str,
    endpoint: Option<&str>,
    cluster: &str,
    now: SystemTime,
) -> Result<String, AwsIdentityError> {
    let base = endpoint.map_or_else(
        || format!("https://sts.{region}.amazonaws.com"),
        |e| e.trim_end_matches('/').to_owned(),
    );
    let url = format!("{base}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(EKS_PRESIGN_SECONDS));
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| AwsIdentityError::Signing(e.to_string()))?
        .into();
    let headers = [("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| AwsIdentityError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| AwsIdentityError::Signing(e.to_string()))?
        .into_parts();
    let mut req = http::Request::get(&url)
        .header("x-k8s-aws-id", cluster)
        .body(())
        .map_err(|e| AwsIdentityError::Signing(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut req);
    let presigned = req.uri().to_string();
    Ok(format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)
    ))
}

/// The presigned URL inside an EKS token.
pub fn eks_token_url(token: &str) -> Option<String> {
    let b64 = token.strip_prefix("k8s-aws-v1.")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::config::Credentials;

    #[test]
    fn eks_tokens_have_the_documented_shape() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let t = eks_token_with(
            &creds.into(),
            "eu-west-1",
            None,
            "tether-cp1",
            SystemTime::now(),
        )
        .expect("token");
        assert!(t.starts_with("k8s-aws-v1."));
        assert!(
            !t.contains('=') && !t.contains('+') && !t.contains('/'),
            "{t}"
        );
        let url = eks_token_url(&t).expect("decodes");
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        for part in [
            "Action=GetCallerIdentity",
            "Version=2011-06-15",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "%2Feu-west-1%2Fsts%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
    }
}
