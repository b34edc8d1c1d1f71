//! Who may do what: the roles of API tokens (and, later, of people). Authorisation is
//! decided by the API and the dashboard; the store only keeps the role a token was
//! created with.

use serde::{Deserialize, Serialize};

/// Roles, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Operates the SaaS itself: tenants.
    PlatformAdmin,
    /// A tenant's admin: tokens, compute planes, enrollment, revocation.
    Admin,
    /// Manages clusters and catalogs.
    Operator,
    /// Reads.
    Viewer,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "platform_admin" => Role::PlatformAdmin,
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// Whether this role may do what `needed` may.
    pub fn at_least(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Role::PlatformAdmin => 3,
            Role::Admin => 2,
            Role::Operator => 1,
            Role::Viewer => 0,
        }
    }
}
