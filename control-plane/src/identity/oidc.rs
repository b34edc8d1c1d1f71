//! OpenID Connect sign-in, the authorization code flow with PKCE (S256), `state` and
//! `nonce`, through the `openidconnect` crate: discovery, the token exchange, and the ID
//! token's verification (signature against the provider's JWKS, issuer, audience, expiry,
//! nonce). The provider's metadata and keys are fetched at each step, so a provider that
//! rotates its keys is followed at once.
//!
//! The person's groups come from the ID token's `groups_claim`, or, when the provider
//! keeps it out of the ID token (as many do once an access token is issued), from the
//! userinfo endpoint.

use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Person, SignInError};
use crate::api::error::ApiError;

/// The bound on each request to the provider.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Every claim of an ID token or userinfo answer, by name (the groups claim is the
/// provider's own).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AllClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, Value>,
}

impl AdditionalClaims for AllClaims {}

type Fields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<Fields, CoreTokenType>;
type Client = openidconnect::Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The HTTP client for providers: rustls with the system's roots, no redirects (the
/// OAuth 2.0 security BCP: a token endpoint that redirects is not followed), bounded.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("the identity providers' HTTP client: {e}"))
}

/// Whether `url` is plain HTTP on a loopback address.
fn http_loopback(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"]
        .iter()
        .any(|p| {
            url.strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
        })
}

/// An issuer URL an operator may configure: `https://`, or — only when the control plane
/// runs with `--allow-loopback-identity-providers` (the sandbox, tests) — `http://` on a
/// loopback address.
pub fn validate_issuer(issuer: &str, allow_loopback: bool) -> Result<(), ApiError> {
    if !(issuer.starts_with("https://") || (allow_loopback && http_loopback(issuer))) {
        return Err(ApiError::field(
            "issuer",
            "must be an https:// URL (the provider's issuer, as in its discovery document)",
        ));
    }
    if issuer.len() > 512 || issuer.contains(['?', '#', ' ']) {
        return Err(ApiError::field(
            "issuer",
            "must be a plain URL without query or fragment",
        ));
    }
    IssuerUrl::new(issuer.trim_end_matches('/').to_owned())
        .map_err(|e| ApiError::field("issuer", format!("is not a URL: {e}")))?;
    Ok(())
}

/// What one OIDC provider needs.
#[derive(Debug, Clone)]
pub struct Provider<'a> {
    /// Issuer.
    pub issuer: &'a str,
    /// Client id.
    pub client_id: &'a str,
    /// Client secret.
    pub client_secret: &'a str,
    /// The groups claim.
    pub groups_claim: &'a str,
    /// This control plane's callback, e.g. `https://cp.example.com/ui/oidc/callback/acme`.
    pub redirect_url: &'a str,
    /// Plain HTTP on loopback is allowed (`--allow-loopback-identity-providers`).
    pub allow_loopback: bool,
}

fn provider_error(issuer: &str, e: impl std::fmt::Display) -> SignInError {
    SignInError::Provider(format!(
        "The identity provider {issuer} cannot be used right now ({e}); try again later or ask your administrator."
    ))
}

async fn client(http: &reqwest::Client, p: &Provider<'_>) -> Result<Client, SignInError> {
    let issuer = IssuerUrl::new(p.issuer.to_owned()).map_err(|e| provider_error(p.issuer, e))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| provider_error(p.issuer, e))?;
    // The endpoints the discovery document names get the client secret, the code and the
    // access token: HTTPS only (loopback HTTP only where allowed).
    let endpoints = [
        Some(metadata.jwks_uri().url().as_str()),
        metadata.token_endpoint().map(|u| u.url().as_str()),
        metadata.userinfo_endpoint().map(|u| u.url().as_str()),
    ];
    for e in endpoints.into_iter().flatten() {
        if !(e.starts_with("https://") || (p.allow_loopback && http_loopback(e))) {
            return Err(provider_error(
                p.issuer,
                format!("its discovery document names a non-HTTPS endpoint {e}"),
            ));
        }
    }
    let redirect =
        RedirectUrl::new(p.redirect_url.to_owned()).map_err(|e| provider_error(p.issuer, e))?;
    Ok(Client::from_provider_metadata(
        metadata,
        ClientId::new(p.client_id.to_owned()),
        Some(ClientSecret::new(p.client_secret.to_owned())),
    )
    .set_redirect_uri(redirect))
}

/// A sign-in sent to the provider: the URL to redirect the browser to, and what the
/// callback needs (kept server-side under the `state`'s hash).
#[derive(Debug)]
pub struct Started {
    /// Where the browser goes.
    pub url: String,
    /// The `state` parameter.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// Starts a sign-in.
pub async fn start(http: &reqwest::Client, p: &Provider<'_>) -> Result<Started, SignInError> {
    let client = client(http, p).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    Ok(Started {
        url: url.to_string(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

/// Finishes a sign-in: exchanges the code (with the PKCE verifier and the client secret),
/// verifies the ID token, and reads who it is and their groups.
pub async fn finish(
    http: &reqwest::Client,
    p: &Provider<'_>,
    code: &str,
    nonce: &str,
    pkce_verifier: &str,
) -> Result<Person, SignInError> {
    let client = client(http, p).await?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| provider_error(p.issuer, e))?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| {
            // A used, expired or foreign code: the provider answers invalid_grant.
            SignInError::Invalid(format!(
                "The identity provider did not accept this sign-in ({e}). Start again from the sign-in page."
            ))
        })?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| SignInError::Invalid("The identity provider sent no ID token.".into()))?;
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &Nonce::new(nonce.to_owned()))
        .map_err(|e| {
            tracing::warn!(issuer = p.issuer, error = %e, "ID token refused");
            SignInError::Invalid(format!("The ID token did not verify ({e})."))
        })?;
    // The provider's subject is unique per issuer only.
    let subject = format!("{} {}", p.issuer, claims.subject().as_str());
    let mut groups = groups_of(&claims.additional_claims().claims, p.groups_claim);
    // An address the provider has not verified names nobody.
    let mut email = claims
        .email()
        .filter(|_| claims.email_verified() == Some(true))
        .map(|e| e.as_str().to_owned());
    let mut username = claims.preferred_username().map(|u| u.as_str().to_owned());
    if groups.is_none() {
        // Not in the ID token: ask the userinfo endpoint (for the same subject).
        if let Ok(req) = client.user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        ) {
            let info: Result<openidconnect::UserInfoClaims<AllClaims, CoreGenderClaim>, _> =
                req.request_async(http).await;
            match info {
                Ok(info) => {
                    groups = groups_of(&info.additional_claims().claims, p.groups_claim);
                    email = email.or_else(|| {
                        info.email()
                            .filter(|_| info.email_verified() == Some(true))
                            .map(|e| e.as_str().to_owned())
                    });
                    username = username
                        .or_else(|| info.preferred_username().map(|u| u.as_str().to_owned()));
                }
                Err(e) => {
                    tracing::warn!(issuer = p.issuer, error = %e, "userinfo request failed");
                }
            }
        }
    }
    Ok(Person {
        name: email
            .or(username)
            .unwrap_or_else(|| claims.subject().as_str().to_owned()),
        subject,
        groups: groups.unwrap_or_default(),
    })
}

/// The groups of a claim: a list of names, or one name.
fn groups_of(claims: &serde_json::Map<String, Value>, claim: &str) -> Option<Vec<String>> {
    match claims.get(claim)? {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_a_list_or_one_name() {
        let c: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "groups": ["analysts", 3, "ops"], "cognito:groups": "admins", "n": 1}))
        .unwrap_or_default();
        assert_eq!(
            groups_of(&c, "groups"),
            Some(vec!["analysts".to_owned(), "ops".to_owned()])
        );
        assert_eq!(
            groups_of(&c, "cognito:groups"),
            Some(vec!["admins".to_owned()])
        );
        assert_eq!(groups_of(&c, "n"), None);
        assert_eq!(groups_of(&c, "missing"), None);
    }

    #[test]
    fn issuers_must_be_https_or_loopback() {
        assert!(validate_issuer("https://login.example.com/tenant", false).is_ok());
        assert!(validate_issuer("http://127.0.0.1:9000", false).is_err());
        assert!(validate_issuer("http://127.0.0.1:9000", true).is_ok());
        assert!(validate_issuer("http://localhost", true).is_ok());
        assert!(validate_issuer("http://localhost.evil.com", true).is_err());
        assert!(validate_issuer("http://idp.example.com", true).is_err());
        assert!(validate_issuer("https://idp.example.com/?a=b", false).is_err());
    }
}
