//! The agent identity. The control plane writes it into every agent certificate as a URI
//! subject alternative name, `spiffe://tether/tenant/{tenant}/compute-plane/{cp}`, and reads
//! it back from the verified TLS client certificate. Nothing an agent sends in a message can
//! change it.

use std::fmt;

/// The trust domain of agent identities.
pub const TRUST_DOMAIN: &str = "tether";

/// Tenant and compute plane an agent certificate speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentIdentity {
    /// Tenant id.
    pub tenant_id: String,
    /// Compute plane id.
    pub compute_plane_id: String,
}

/// A URI SAN that is not an agent identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Tether agent identity URI: {0:?}")]
pub struct InvalidIdentity(pub String);

impl AgentIdentity {
    /// The URI SAN form.
    pub fn to_uri(&self) -> String {
        format!(
            "spiffe://{TRUST_DOMAIN}/tenant/{}/compute-plane/{}",
            self.tenant_id, self.compute_plane_id
        )
    }

    /// Parses the URI SAN form; ids must be non-empty and free of `/`.
    pub fn from_uri(uri: &str) -> Result<Self, InvalidIdentity> {
        let bad = || InvalidIdentity(uri.to_owned());
        let rest = uri
            .strip_prefix(&format!("spiffe://{TRUST_DOMAIN}/"))
            .ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["tenant", t, "compute-plane", cp] if valid_id(t) && valid_id(cp) => Ok(Self {
                tenant_id: (*t).to_owned(),
                compute_plane_id: (*cp).to_owned(),
            }),
            _ => Err(bad()),
        }
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl fmt::Display for AgentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {} / compute plane {}",
            self.tenant_id, self.compute_plane_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let id = AgentIdentity {
            tenant_id: "t1".into(),
            compute_plane_id: "cp-2".into(),
        };
        assert_eq!(AgentIdentity::from_uri(&id.to_uri()), Ok(id));
    }

    #[test]
    fn refuses_other_uris() {
        for u in [
            "spiffe://other/tenant/a/compute-plane/b",
            "spiffe://tether/tenant/a/compute-plane/b/extra",
            "spiffe://tether/tenant//compute-plane/b",
            "spiffe://tether/tenant/a/compute-plane/..",
            "https://tether/tenant/a/compute-plane/b",
        ] {
            assert!(AgentIdentity::from_uri(u).is_err(), "{u}");
        }
    }
}
