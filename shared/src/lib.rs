//! Types and helpers both planes need.
//!
//! - [`files`]: owner-only, atomic writes of keys and tokens.
//! - [`logging`]: the log setup of every binary.
//! - [`names`]: DNS-1123 label validation for everything that becomes a name.
//! - [`identity`]: the agent identity carried in a certificate's URI SAN.
//! - [`spec`]: cluster and catalog specs, their validation, the desired state.
//! - [`status`]: what the agent observes of a cluster (phase, conditions).
//! - [`pki`]: PEM parsing and certificate facts (serial, expiry, identity).
//! - [`timestamps`]: Unix-ms timestamps and RFC 3339.
//! - [`tokens`]: bearer and bootstrap tokens, and their hashes.
//! - [`redact`]: SQL literal redaction, so query text and error messages carry no customer data.
#![forbid(unsafe_code)]

pub mod files;
pub mod identity;
pub mod logging;
pub mod names;
pub mod pki;
pub mod redact;
pub mod signing;
pub mod spec;
pub mod status;
pub mod timestamps;
pub mod tokens;

pub use identity::AgentIdentity;
