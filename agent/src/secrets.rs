//! Catalog credentials by reference, resolved inside the VPC.
//!
//! A catalog whose `secret_ref` is a Secrets Manager ARN gets a Kubernetes Secret
//! `tether-catalog-<catalog>` (keys `username` and `password`) that the agent writes from
//! the secret's current value and rewrites when a new version appears (checked every
//! `refresh`); the worker pods roll when it changes (its version is part of their catalog
//! hash). The secret is a JSON object with `username` and `password` (the shape RDS and
//! the Secrets Manager console use), or a plain string: the password, with the user from
//! the catalog's `connection-user` property. For `k8s:NAME` the agent only checks the
//! Secret exists. What goes wrong becomes a condition on the clusters using the catalog;
//! the value itself never leaves this process except into the Kubernetes Secret, and is
//! never logged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

/// How the agent reaches Secrets Manager.
#[derive(Debug, Clone, Default)]
pub struct SecretsSettings {
    /// Endpoint override (tests: moto).
    pub endpoint_url: Option<String>,
    /// Region when the ARN names none; the ARN's own region comes first.
    pub region: Option<String>,
    /// How often a secret's current version is read again.
    pub refresh: Duration,
}

/// A resolved catalog credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Secrets Manager's version id (what the pods' roll follows).
    pub version: String,
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Why a reference could not be resolved: a condition reason and a message for people
/// (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// One CamelCase word: `AccessDenied`, `SecretNotFound`, `SecretShape`,
    /// `SecretsManagerUnreachable`, `SecretMissing`.
    pub reason: &'static str,
    /// What and what to do.
    pub message: String,
}

/// How long a failed read is answered from the cache before it is tried again.
pub const RETRY_FAILED: Duration = Duration::from_secs(30);

struct Cached {
    at: Instant,
    result: Result<Resolved, Unresolved>,
}

/// The agent's view of Secrets Manager: a client made on first use, and the last answer
/// per ARN.
pub struct CatalogSecrets {
    settings: SecretsSettings,
    clients: BTreeMap<String, Client>,
    cache: BTreeMap<String, Cached>,
}

impl std::fmt::Debug for CatalogSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSecrets")
            .field("secrets", &self.cache.len())
            .finish_non_exhaustive()
    }
}

/// The region part of a Secrets Manager ARN.
fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

impl CatalogSecrets {
    /// No secret read yet.
    pub fn new(settings: SecretsSettings) -> Self {
        Self {
            settings,
            clients: BTreeMap::new(),
            cache: BTreeMap::new(),
        }
    }

    async fn client(&mut self, arn: &str) -> Client {
        let region = arn_region(arn)
            .map(str::to_owned)
            .or_else(|| self.settings.region.clone())
            .unwrap_or_else(|| "us-east-1".to_owned());
        if let Some(c) = self.clients.get(&region) {
            return c.clone();
        }
        let provider = RegionProviderChain::first_try(Region::new(region.clone()));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(provider)
            // The reconciler retries on its own schedule; one attempt is bounded.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .build(),
            );
        if let Some(url) = &self.settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let client = Client::new(&loader.load().await);
        self.clients.insert(region, client.clone());
        client
    }

    /// The current value of `arn`, read again when the last read is older than the
    /// refresh interval; a failed read is tried again after [`RETRY_FAILED`], so a
    /// Secrets Manager that does not answer costs a reconcile pass one bounded attempt at
    /// most that often. `connection_user` is the catalog's `connection-user` property, the
    /// user of a plain-string secret (part of the cache key: two catalogs may share a
    /// secret with users of their own).
    pub async fn resolve(
        &mut self,
        arn: &str,
        connection_user: Option<&str>,
    ) -> Result<Resolved, Unresolved> {
        let key = format!("{arn}\n{}", connection_user.unwrap_or(""));
        if let Some(c) = self.cache.get(&key) {
            let fresh = match &c.result {
                Ok(_) => c.at.elapsed() < self.settings.refresh,
                Err(_) => c.at.elapsed() < RETRY_FAILED.min(self.settings.refresh),
            };
            if fresh {
                return c.result.clone();
            }
        }
        let client = self.client(arn).await;
        let result = fetch(&client, arn, connection_user).await;
        match (&result, self.cache.get(&key).map(|c| &c.result)) {
            (Ok(new), Some(Ok(old))) if new.version != old.version => {
                tracing::info!(
                    secret = arn,
                    version = new.version,
                    "catalog secret rotated"
                );
            }
            (Err(e), _) => {
                tracing::warn!(
                    secret = arn,
                    reason = e.reason,
                    "catalog secret: {}",
                    e.message
                );
            }
            _ => {}
        }
        self.cache.insert(
            key,
            Cached {
                at: Instant::now(),
                result: result.clone(),
            },
        );
        result
    }

    /// Forgets secrets no catalog refers to any more.
    pub fn retain(&mut self, arns: &std::collections::BTreeSet<String>) {
        self.cache
            .retain(|key, _| arns.contains(key.split('\n').next().unwrap_or("")));
    }
}

async fn fetch(
    client: &Client,
    arn: &str,
    connection_user: Option<&str>,
) -> Result<Resolved, Unresolved> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| classify(arn, e))?;
    let version = out.version_id().unwrap_or_default().to_owned();
    let Some(text) = out.secret_string() else {
        return Err(Unresolved {
            reason: "SecretShape",
            message: format!(
                "secret {arn} holds binary data; store a JSON object with \"username\" and \"password\", or the password as a string"
            ),
        });
    };
    parse(arn, text, connection_user).map(|(username, password)| Resolved {
        version,
        username,
        password,
    })
}

/// `(username, password)` from the secret's text.
fn parse(
    arn: &str,
    text: &str,
    connection_user: Option<&str>,
) -> Result<(String, String), Unresolved> {
    let shape = |what: &str| Unresolved {
        reason: "SecretShape",
        message: format!("secret {arn}: {what}"),
    };
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|_| {
            shape("looks like JSON but does not parse; store {\"username\": …, \"password\": …}")
        })?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        return match (field("username"), field("password")) {
            (Some(u), Some(p)) => Ok((u, p)),
            _ => Err(shape(
                "the JSON object needs string fields \"username\" and \"password\"",
            )),
        };
    }
    match connection_user {
        Some(user) if !user.is_empty() => Ok((user.to_owned(), text.to_owned())),
        _ => Err(shape(
            "a plain-string secret is the password; give the catalog a connection-user property, or store {\"username\": …, \"password\": …}",
        )),
    }
}

fn classify<E, R>(arn: &str, e: SdkError<E, R>) -> Unresolved
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            let (reason, what) = match code {
                "AccessDeniedException" => (
                    "AccessDenied",
                    "the agent's role may not read it (grant secretsmanager:GetSecretValue, e.g. by tagging the secret tether.io/managed-by=tether, and kms:Decrypt on its key if it has a customer key)",
                ),
                "ResourceNotFoundException" => (
                    "SecretNotFound",
                    "no such secret in this account and region",
                ),
                "DecryptionFailure" => (
                    "AccessDenied",
                    "Secrets Manager cannot decrypt it with the agent's permissions (kms:Decrypt)",
                ),
                _ => ("SecretsManagerError", "Secrets Manager refused the read"),
            };
            Unresolved {
                reason,
                message: format!("secret {arn}: {what} ({code})"),
            }
        }
        _ => Unresolved {
            reason: "SecretsManagerUnreachable",
            message: format!("secret {arn}: Secrets Manager did not answer: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_shapes() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db";
        assert_eq!(arn_region(arn), Some("eu-west-1"));
        assert_eq!(
            parse(
                arn,
                r#"{"username":"u","password":"p$\\x","host":"h"}"#,
                None
            ),
            Ok(("u".into(), "p$\\x".into()))
        );
        assert_eq!(
            parse(arn, "hunter2", Some("app")),
            Ok(("app".into(), "hunter2".into()))
        );
        let e = parse(arn, "hunter2", None).expect_err("no user");
        assert_eq!(e.reason, "SecretShape");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
        let e = parse(arn, r#"{"user":"u"}"#, None).expect_err("wrong keys");
        assert!(e.message.contains("\"username\""), "{}", e.message);
        let e = parse(arn, "{not json hunter2", None).expect_err("bad json");
        assert!(!e.message.contains("hunter2"), "{}", e.message);
    }
}
