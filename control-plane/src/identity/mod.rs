//! People: a tenant's identity provider (OpenID Connect or LDAP), how a person's groups
//! map to a role, and the users who signed in.
//!
//! - [`ProviderConfig`] is what `PUT /tenants/{t}/identity-provider` takes, validated like
//!   every spec (a 400 naming the field); its secrets (the OIDC client secret, the LDAP
//!   service bind's password) are sealed with the control plane's key-encryption key
//!   ([`crate::secrets`]) and never shown again;
//! - [`oidc`] runs the authorization code flow with PKCE, `state` and `nonce` (the
//!   `openidconnect` crate verifies the ID token against the provider's JWKS);
//! - [`ldap`] binds as the user over TLS and searches the user's groups (`ldap3`);
//! - a person's role comes from [`RoleMapping::role_of`] at every sign-in: a user removed
//!   from every mapped group cannot sign in again, and a session lasts at most
//!   [`SESSION_MS`].

pub mod ldap;
pub mod limits;
pub mod oidc;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::authz::Role;

/// How long a person's dashboard session lasts (then they sign in again, and their role
/// is read from the provider again).
pub const SESSION_MS: i64 = 8 * 3600 * 1000;
/// How long a pending OIDC sign-in (its `state`, `nonce` and PKCE verifier) is kept.
pub const LOGIN_STATE_MS: i64 = 10 * 60 * 1000;
/// The longest a personal API token may live.
pub const MAX_PERSONAL_TOKEN_DAYS: u32 = 90;

/// How a person signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// OpenID Connect.
    Oidc,
    /// LDAP.
    Ldap,
}

impl Via {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Oidc => "oidc",
            Via::Ldap => "ldap",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "oidc" => Some(Via::Oidc),
            "ldap" => Some(Via::Ldap),
            _ => None,
        }
    }
}

/// Group → role. A person gets the highest role of their mapped groups; none, and the
/// sign-in is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleMapping(pub BTreeMap<String, Role>);

/// Documented as what it accepts: group names to `admin`, `operator` or `viewer`.
impl utoipa::PartialSchema for RoleMapping {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
        let role = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["admin", "operator", "viewer"]));
        ObjectBuilder::new()
            .additional_properties(Some(AdditionalProperties::RefOr(role.into())))
            .description(Some(
                "Group → role; a person gets the highest role of their groups",
            ))
            .into()
    }
}

impl utoipa::ToSchema for RoleMapping {}

impl RoleMapping {
    /// The role of someone in `groups`, compared exactly; for LDAP (`dns`) a group's DN
    /// also matches by its `cn` (so `cn=analysts,ou=groups,…` matches a mapping of
    /// `analysts`; the search is confined to `group_base_dn`).
    pub fn role_of(&self, groups: &[String], dns: bool) -> Option<Role> {
        let mut best: Option<Role> = None;
        for g in groups {
            let short = if dns { ldap::cn_of(g) } else { None };
            for key in [Some(g.as_str()), short.as_deref()].into_iter().flatten() {
                if let Some(&r) = self.0.get(key)
                    && best.is_none_or(|b| r.at_least(b))
                {
                    best = Some(r);
                }
            }
        }
        best
    }

    fn validate(&self, field: &str) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Err(ApiError::field(
                field,
                "map at least one group to a role (admin, operator or viewer)",
            ));
        }
        if self.0.len() > 100 {
            return Err(ApiError::field(field, "at most 100 groups"));
        }
        for (g, r) in &self.0 {
            let f = format!("{field}.{g}");
            if g.trim().is_empty() || g.len() > 512 {
                return Err(ApiError::field(field, "a group name is empty or too long"));
            }
            if *r == Role::PlatformAdmin {
                return Err(ApiError::field(
                    &f,
                    "must be admin, operator or viewer (a tenant's people cannot be platform admins)",
                ));
            }
        }
        Ok(())
    }
}

/// `PUT /tenants/{t}/identity-provider` (secrets included; they are sealed on the way in).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderInput {
    /// Any OpenID Connect provider, by discovery.
    Oidc {
        /// The issuer URL (discovery at `ISSUER/.well-known/openid-configuration`).
        issuer: String,
        /// The client registered for Tether.
        client_id: String,
        /// Its secret; may be left out to keep the stored one.
        client_secret: Option<String>,
        /// The ID token claim (or userinfo claim) that lists the person's groups.
        #[serde(default = "default_groups_claim")]
        groups_claim: String,
        /// Group → role.
        role_mapping: RoleMapping,
    },
    /// An LDAP directory.
    Ldap(Box<LdapInput>),
}

/// The LDAP variant of [`ProviderInput`].
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapInput {
    /// `ldaps://host:port` or `ldap://host:port` with `start_tls`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// The directory's CA (PEM); the system's roots when absent.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The user's DN, `{username}` standing for what they typed (escaped).
    pub user_dn_template: String,
    /// Where groups are searched.
    pub group_base_dn: String,
    /// Which groups are the user's; `{user_dn}` and `{username}` are replaced (escaped).
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// A service account that searches the groups (optional: else the user's own bind).
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Its password; may be left out to keep the stored one.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// Group → role.
    pub role_mapping: RoleMapping,
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_group_filter() -> String {
    "(member={user_dn})".into()
}

/// A stored identity provider: its configuration without secrets (what `GET` shows).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderConfig {
    /// OpenID Connect.
    Oidc {
        /// Issuer.
        issuer: String,
        /// Client id.
        client_id: String,
        /// The groups claim.
        groups_claim: String,
        /// Group → role.
        role_mapping: RoleMapping,
    },
    /// LDAP.
    Ldap(LdapConfig),
}

/// The LDAP variant of [`ProviderConfig`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LdapConfig {
    /// URL.
    pub url: String,
    /// StartTLS on an `ldap://` URL.
    pub start_tls: bool,
    /// The directory's CA (PEM).
    pub ca_pem: Option<String>,
    /// The user's DN template.
    pub user_dn_template: String,
    /// Group search base.
    pub group_base_dn: String,
    /// Group search filter template.
    pub group_filter: String,
    /// The service bind DN, if any.
    pub bind_dn: Option<String>,
    /// Group → role.
    pub role_mapping: RoleMapping,
}

impl ProviderConfig {
    /// How people sign in with it.
    pub fn via(&self) -> Via {
        match self {
            ProviderConfig::Oidc { .. } => Via::Oidc,
            ProviderConfig::Ldap(_) => Via::Ldap,
        }
    }

    /// Whether it needs a secret: an OIDC client secret, or an LDAP service password when
    /// a service account searches the groups.
    pub fn needs_secret(&self) -> bool {
        match self {
            ProviderConfig::Oidc { .. } => true,
            ProviderConfig::Ldap(l) => l.bind_dn.is_some(),
        }
    }

    /// Whether a stored secret may be kept for `new`: it goes to the same place (issuer and
    /// client, or directory and service account). Otherwise whoever changes the endpoint
    /// must give the secret again — else they could send the stored one to a server of
    /// theirs.
    pub fn same_endpoint(&self, new: &ProviderConfig) -> bool {
        match (self, new) {
            (
                ProviderConfig::Oidc {
                    issuer, client_id, ..
                },
                ProviderConfig::Oidc {
                    issuer: i,
                    client_id: c,
                    ..
                },
            ) => issuer == i && client_id == c,
            (ProviderConfig::Ldap(a), ProviderConfig::Ldap(b)) => {
                a.url == b.url && a.bind_dn == b.bind_dn && a.start_tls == b.start_tls
            }
            _ => false,
        }
    }

    /// The role mapping.
    pub fn role_mapping(&self) -> &RoleMapping {
        match self {
            ProviderConfig::Oidc { role_mapping, .. } => role_mapping,
            ProviderConfig::Ldap(l) => &l.role_mapping,
        }
    }

    /// What `GET` answers: the configuration and whether a secret is stored.
    pub fn public_view(&self, secret_set: bool) -> ProviderView {
        match self.clone() {
            ProviderConfig::Oidc {
                issuer,
                client_id,
                groups_claim,
                role_mapping,
            } => ProviderView::Oidc {
                issuer,
                client_id,
                groups_claim,
                role_mapping,
                client_secret_set: secret_set,
            },
            ProviderConfig::Ldap(config) => ProviderView::Ldap(Box::new(LdapView {
                config,
                bind_password_set: secret_set,
            })),
        }
    }
}

/// A tenant's identity provider as the API shows it: never its secret, only whether one is
/// stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ProviderView {
    /// OpenID Connect.
    Oidc {
        /// Issuer.
        issuer: String,
        /// Client id.
        client_id: String,
        /// The groups claim.
        groups_claim: String,
        /// Group → role.
        role_mapping: RoleMapping,
        /// A client secret is stored (sealed).
        client_secret_set: bool,
    },
    /// LDAP.
    Ldap(Box<LdapView>),
}

/// The LDAP variant of [`ProviderView`]: the stored configuration and whether a service
/// password is stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LdapView {
    /// The configuration.
    #[serde(flatten)]
    pub config: LdapConfig,
    /// A service password is stored (sealed).
    pub bind_password_set: bool,
}

/// The name of a tenant's sealed identity-provider secret.
pub fn secret_name(tenant_id: &str) -> String {
    format!("identity-provider/{tenant_id}")
}

/// The platform's own provider: its secret's name.
pub const PLATFORM_SECRET: &str = "identity-provider/platform";

impl ProviderInput {
    /// Validates the input; `has_secret` says whether a secret is already stored (so it
    /// may be left out). Returns the configuration to store and the new secret, if one was
    /// given.
    pub fn validate(
        self,
        has_secret: bool,
        allow_loopback: bool,
    ) -> Result<(ProviderConfig, Option<String>), ApiError> {
        match self {
            ProviderInput::Oidc {
                issuer,
                client_id,
                client_secret,
                groups_claim,
                role_mapping,
            } => {
                oidc::validate_issuer(&issuer, allow_loopback)?;
                if client_id.trim().is_empty() || client_id.len() > 256 {
                    return Err(ApiError::field("client_id", "must be 1 to 256 characters"));
                }
                let secret = match client_secret {
                    Some(s) if s.is_empty() || s.len() > 1024 => {
                        return Err(ApiError::field(
                            "client_secret",
                            "must be 1 to 1024 characters",
                        ));
                    }
                    Some(s) => Some(s),
                    None if has_secret => None,
                    None => {
                        return Err(ApiError::field(
                            "client_secret",
                            "is required (the provider's secret for this client)",
                        ));
                    }
                };
                if groups_claim.trim().is_empty() || groups_claim.len() > 128 {
                    return Err(ApiError::field(
                        "groups_claim",
                        "must be 1 to 128 characters",
                    ));
                }
                role_mapping.validate("role_mapping")?;
                Ok((
                    ProviderConfig::Oidc {
                        // Exactly as given: the ID token's `iss` must equal it, character
                        // for character (OIDC Discovery §4.3), trailing slash included.
                        issuer,
                        client_id,
                        groups_claim,
                        role_mapping,
                    },
                    secret,
                ))
            }
            ProviderInput::Ldap(l) => {
                let l = *l;
                ldap::validate(&l)?;
                l.role_mapping.validate("role_mapping")?;
                let secret = match (&l.bind_dn, l.bind_password) {
                    (None, Some(_)) => {
                        return Err(ApiError::field(
                            "bind_password",
                            "is only used with bind_dn",
                        ));
                    }
                    (Some(_), Some(p)) if p.is_empty() || p.len() > 1024 => {
                        return Err(ApiError::field(
                            "bind_password",
                            "must be 1 to 1024 characters",
                        ));
                    }
                    (Some(_), Some(p)) => Some(p),
                    (Some(_), None) if !has_secret => {
                        return Err(ApiError::field("bind_password", "is required with bind_dn"));
                    }
                    _ => None,
                };
                Ok((
                    ProviderConfig::Ldap(LdapConfig {
                        url: l.url,
                        start_tls: l.start_tls,
                        ca_pem: l.ca_pem.filter(|c| !c.trim().is_empty()),
                        user_dn_template: l.user_dn_template,
                        group_base_dn: l.group_base_dn,
                        group_filter: l.group_filter,
                        bind_dn: l.bind_dn,
                        role_mapping: l.role_mapping,
                    }),
                    secret,
                ))
            }
        }
    }
}

/// Who signed in, as the provider says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The provider's stable id: the OIDC `sub`, the LDAP user's DN.
    pub subject: String,
    /// What audit entries and the users list show: the e-mail address or user name.
    pub name: String,
    /// Their groups.
    pub groups: Vec<String>,
}

/// Why a sign-in failed; each message is safe to show the person.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong user name or password (LDAP), or the provider said no.
    #[error("{0}")]
    Refused(String),
    /// The identity provider could not be reached or answered nonsense.
    #[error("{0}")]
    Provider(String),
    /// The sign-in request itself is invalid (unknown state, replayed, expired…).
    #[error("{0}")]
    Invalid(String),
}

/// PEM certificates: at least one, each parsable.
pub fn parse_ca_pem(
    field: &str,
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ApiError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> =
        rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(ApiError::field(field, "holds no PEM certificate")),
        Err(e) => Err(ApiError::field(
            field,
            format!("is not PEM certificates: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn mapping() -> RoleMapping {
        RoleMapping(
            [
                ("analysts".to_owned(), Role::Viewer),
                ("platform-team".to_owned(), Role::Admin),
                (
                    "cn=ops,ou=groups,dc=example,dc=com".to_owned(),
                    Role::Operator,
                ),
            ]
            .into(),
        )
    }

    #[test]
    fn the_highest_mapped_role_wins_and_no_group_is_no_role() {
        let m = mapping();
        assert_eq!(m.role_of(&["analysts".into()], false), Some(Role::Viewer));
        assert_eq!(
            m.role_of(&["analysts".into(), "platform-team".into()], false),
            Some(Role::Admin)
        );
        let dn = "cn=analysts,ou=groups,dc=example,dc=com".to_owned();
        assert_eq!(
            m.role_of(std::slice::from_ref(&dn), true),
            Some(Role::Viewer)
        );
        // Only LDAP group DNs match by their cn, and only a cn.
        assert_eq!(m.role_of(std::slice::from_ref(&dn), false), None);
        assert_eq!(
            m.role_of(&["uid=analysts,ou=people,dc=example,dc=com".into()], true),
            None
        );
        assert_eq!(
            m.role_of(&["cn=ops,ou=groups,dc=example,dc=com".into()], true),
            Some(Role::Operator)
        );
        assert_eq!(m.role_of(&["Analysts".into(), "other".into()], false), None);
        assert_eq!(m.role_of(&[], false), None);
    }

    fn oidc(v: Value) -> Result<(ProviderConfig, Option<String>), ApiError> {
        serde_json::from_value::<ProviderInput>(v)
            .map_err(|e| ApiError::BadRequest {
                message: e.to_string(),
                field: None,
            })?
            .validate(false, true)
    }

    fn field_of(r: Result<(ProviderConfig, Option<String>), ApiError>) -> Option<String> {
        match r {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn oidc_input_is_validated_field_by_field() {
        let ok = json!({"kind": "oidc", "issuer": "https://idp.example.com/", "client_id": "tether",
            "client_secret": "s3cret", "role_mapping": {"analysts": "viewer"}});
        let (cfg, secret) = oidc(ok.clone()).expect("valid");
        assert_eq!(secret.as_deref(), Some("s3cret"));
        let shown = serde_json::to_value(cfg.public_view(true)).expect("json");
        assert_eq!(shown["issuer"], "https://idp.example.com/");
        assert_eq!(shown["groups_claim"], "groups");
        assert_eq!(shown["client_secret_set"], true);
        assert!(!shown.to_string().contains("s3cret"));

        let mut bad = ok.clone();
        bad["issuer"] = json!("http://idp.example.com");
        assert_eq!(field_of(oidc(bad.clone())).as_deref(), Some("issuer"));
        bad["issuer"] = json!("http://127.0.0.1:9000");
        let strict =
            serde_json::from_value::<ProviderInput>(bad.clone()).map(|i| i.validate(false, false));
        assert!(matches!(strict, Ok(Err(ApiError::BadRequest { .. }))));
        bad["issuer"] = json!("http://idp.example.com");
        assert_eq!(field_of(oidc(bad)).as_deref(), Some("issuer"));
        let mut bad = ok.clone();
        bad["role_mapping"] = json!({"analysts": "platform_admin"});
        assert_eq!(
            field_of(oidc(bad)).as_deref(),
            Some("role_mapping.analysts")
        );
        let mut bad = ok.clone();
        bad["role_mapping"] = json!({});
        assert_eq!(field_of(oidc(bad)).as_deref(), Some("role_mapping"));
        let mut bad = ok.clone();
        bad.as_object_mut().map(|o| o.remove("client_secret"));
        assert_eq!(field_of(oidc(bad)).as_deref(), Some("client_secret"));
        // Loopback issuers may be plain HTTP (a provider on the same machine).
        let mut local = ok;
        local["issuer"] = json!("http://127.0.0.1:9000");
        assert!(oidc(local).is_ok());
    }
}
