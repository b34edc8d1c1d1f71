//! LDAP sign-in: a simple bind as the user, over TLS (LDAPS or StartTLS, the directory's
//! CA or the system's roots), then a search for the user's groups — with the user's own
//! bind, or a service bind when one is configured. Every step is bounded by
//! [`TIMEOUT`]: a directory that is down is a clear error, never a hang.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, dn_escape, ldap_escape};

use super::{LdapConfig, LdapInput, Person, SignInError};
use crate::api::error::ApiError;

/// The bound on connecting and on each LDAP operation.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// LDAP result code 49: wrong DN or password (RFC 4511 §4.1.9).
const INVALID_CREDENTIALS: u32 = 49;
/// At most this many groups are read.
const MAX_GROUPS: i32 = 500;

/// Checks the LDAP half of an identity-provider input.
pub fn validate(l: &LdapInput) -> Result<(), ApiError> {
    let url = l.url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        ApiError::field("url", "must be ldaps://HOST[:PORT] or ldap://HOST[:PORT]")
    })?;
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || host.len() > 255 || host.chars().any(char::is_whitespace) {
        return Err(ApiError::field("url", "names no host"));
    }
    match (scheme, l.start_tls) {
        ("ldaps", false) | ("ldap", true) => {}
        ("ldaps", true) => {
            return Err(ApiError::field(
                "start_tls",
                "an ldaps:// URL is TLS already; StartTLS is for ldap:// URLs",
            ));
        }
        ("ldap", false) => {
            return Err(ApiError::field(
                "url",
                "ldap:// without start_tls would send passwords in the clear: use ldaps:// or set start_tls",
            ));
        }
        _ => return Err(ApiError::field("url", "must be ldaps:// or ldap://")),
    }
    if let Some(pem) = l.ca_pem.as_deref().filter(|p| !p.trim().is_empty()) {
        super::parse_ca_pem("ca_pem", pem)?;
    }
    if l.user_dn_template.matches("{username}").count() != 1 || l.user_dn_template.len() > 1024 {
        return Err(ApiError::field(
            "user_dn_template",
            "must contain {username} once, e.g. uid={username},ou=people,dc=example,dc=com",
        ));
    }
    if l.group_base_dn.trim().is_empty() || l.group_base_dn.len() > 1024 {
        return Err(ApiError::field(
            "group_base_dn",
            "must name the DN groups are searched under",
        ));
    }
    let f = l.group_filter.trim();
    if !(f.starts_with('(') && f.ends_with(')'))
        || !(f.contains("{user_dn}") || f.contains("{username}"))
        || f.len() > 1024
    {
        return Err(ApiError::field(
            "group_filter",
            "must be a parenthesised LDAP filter naming {user_dn} or {username}, e.g. (member={user_dn})",
        ));
    }
    if let Some(dn) = &l.bind_dn
        && (dn.trim().is_empty() || dn.len() > 1024)
    {
        return Err(ApiError::field("bind_dn", "must be a DN"));
    }
    Ok(())
}

/// The value of a DN's first RDN when it is a `cn` (`cn=analysts,ou=groups` →
/// `analysts`); `None` for a plain name or another attribute.
pub fn cn_of(dn: &str) -> Option<String> {
    let (attr, rest) = dn.split_once('=')?;
    if !attr.trim().eq_ignore_ascii_case("cn") {
        return None;
    }
    let mut out = String::new();
    let mut escaped = false;
    for c in rest.chars() {
        match (escaped, c) {
            (true, c) => {
                out.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, ',' | '+') => break,
            (false, c) => out.push(c),
        }
    }
    let out = out.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// What a user typed, checked before it goes near the directory. An empty password is
/// refused here: LDAP treats a simple bind with a name and no password as an
/// *unauthenticated* bind that succeeds (RFC 4513 §5.1.2).
fn check_credentials(username: &str, password: &str) -> Result<(), SignInError> {
    if username.is_empty()
        || username.len() > 256
        || username.chars().any(char::is_control)
        || password.is_empty()
        || password.len() > 1024
    {
        return Err(SignInError::Refused("Wrong user name or password.".into()));
    }
    Ok(())
}

fn tls_config(cfg: &LdapConfig) -> Result<Arc<rustls::ClientConfig>, SignInError> {
    let mut roots = rustls::RootCertStore::empty();
    match cfg.ca_pem.as_deref() {
        Some(pem) => {
            let certs = super::parse_ca_pem("ca_pem", pem)
                .map_err(|e| SignInError::Provider(format!("the directory's CA: {e}")))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| SignInError::Provider(format!("the directory's CA: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

fn unreachable(cfg: &LdapConfig, e: impl std::fmt::Display) -> SignInError {
    // The cause (refused, timed out, TLS) is for the operator's log, not for whoever is
    // at the sign-in form.
    tracing::warn!(url = %cfg.url, error = %e, "LDAP directory unreachable");
    SignInError::Provider(
        "The directory cannot be reached right now; try again later or ask your administrator."
            .into(),
    )
}

/// Signs `username` in: bind as them (the template's DN), then read their groups.
pub async fn sign_in(
    cfg: &LdapConfig,
    service_password: Option<&str>,
    username: &str,
    password: &str,
) -> Result<Person, SignInError> {
    check_credentials(username, password)?;
    let user_dn = cfg
        .user_dn_template
        .replace("{username}", &dn_escape(username));
    let settings = LdapConnSettings::new()
        .set_conn_timeout(TIMEOUT)
        .set_starttls(cfg.start_tls)
        .set_config(tls_config(cfg)?);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, cfg.url.trim())
        .await
        .map_err(|e| unreachable(cfg, e))?;
    ldap3::drive!(conn);
    let bound = ldap
        .with_timeout(TIMEOUT)
        .simple_bind(&user_dn, password)
        .await
        .map_err(|e| unreachable(cfg, e))?;
    match bound.rc {
        0 => {}
        INVALID_CREDENTIALS => {
            let _ = ldap.unbind().await;
            return Err(SignInError::Refused("Wrong user name or password.".into()));
        }
        rc => {
            let _ = ldap.unbind().await;
            tracing::warn!(url = %cfg.url, rc, text = %bound.text, "LDAP bind refused");
            return Err(SignInError::Refused(format!(
                "The directory refused the sign-in (LDAP result {rc})."
            )));
        }
    }
    if let (Some(dn), Some(pw)) = (&cfg.bind_dn, service_password) {
        let r = ldap
            .with_timeout(TIMEOUT)
            .simple_bind(dn, pw)
            .await
            .map_err(|e| unreachable(cfg, e))?;
        if r.rc != 0 {
            let _ = ldap.unbind().await;
            return Err(SignInError::Provider(
                "The directory refused Tether's service account (bind_dn); ask your administrator to check it.".into(),
            ));
        }
    }
    let filter = cfg
        .group_filter
        .trim()
        .replace("{user_dn}", &ldap_escape(&user_dn))
        .replace("{username}", &ldap_escape(username));
    let found = ldap
        .with_timeout(TIMEOUT)
        .with_search_options(ldap3::SearchOptions::new().sizelimit(MAX_GROUPS))
        .search(&cfg.group_base_dn, Scope::Subtree, &filter, vec!["cn"])
        .await
        .map_err(|e| unreachable(cfg, e))?;
    let _ = ldap.unbind().await;
    // 4: size limit exceeded; the groups read so far still count.
    if found.1.rc != 0 && found.1.rc != 4 && found.1.rc != 32 {
        tracing::warn!(url = %cfg.url, rc = found.1.rc, text = %found.1.text, "LDAP group search refused");
        return Err(SignInError::Provider(format!(
            "The directory refused the group search (LDAP result {}).",
            found.1.rc
        )));
    }
    let groups = found
        .0
        .into_iter()
        .map(|e| SearchEntry::construct(e).dn)
        .collect();
    Ok(Person {
        subject: user_dn,
        name: username.to_owned(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> LdapInput {
        serde_json::from_value(serde_json::json!({
            "url": "ldaps://ldap.example.com:636",
            "user_dn_template": "uid={username},ou=people,dc=example,dc=com",
            "group_base_dn": "ou=groups,dc=example,dc=com",
            "role_mapping": {"analysts": "viewer"},
        }))
        .expect("input")
    }

    fn field(l: &LdapInput) -> Option<String> {
        match validate(l) {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400: {other:?}"),
        }
    }

    #[test]
    fn ldap_input_needs_tls_and_placeholders() {
        let ok = input();
        assert!(validate(&ok).is_ok());
        assert_eq!(ok.group_filter, "(member={user_dn})");
        let mut l = input();
        l.url = "ldap://ldap.example.com".into();
        assert_eq!(field(&l).as_deref(), Some("url"));
        l.start_tls = true;
        assert!(validate(&l).is_ok());
        let mut l = input();
        l.start_tls = true;
        assert_eq!(field(&l).as_deref(), Some("start_tls"));
        let mut l = input();
        l.url = "http://ldap.example.com".into();
        assert_eq!(field(&l).as_deref(), Some("url"));
        let mut l = input();
        l.user_dn_template = "uid=alice,dc=example".into();
        assert_eq!(field(&l).as_deref(), Some("user_dn_template"));
        let mut l = input();
        l.group_filter = "member={user_dn}".into();
        assert_eq!(field(&l).as_deref(), Some("group_filter"));
        let mut l = input();
        l.ca_pem = Some("not a certificate".into());
        assert_eq!(field(&l).as_deref(), Some("ca_pem"));
    }

    #[test]
    fn rdn_values_and_credentials() {
        assert_eq!(
            cn_of("cn=analysts,ou=groups,dc=example,dc=com").as_deref(),
            Some("analysts")
        );
        assert_eq!(cn_of("CN=a\\,b,ou=x").as_deref(), Some("a,b"));
        assert_eq!(cn_of("uid=analysts,ou=x"), None);
        assert_eq!(cn_of("analysts"), None);
        assert!(check_credentials("alice", "").is_err());
        assert!(check_credentials("", "pw").is_err());
        assert!(check_credentials("al\nice", "pw").is_err());
        assert!(check_credentials("alice", "pw").is_ok());
    }
}
