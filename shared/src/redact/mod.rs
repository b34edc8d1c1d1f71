//! Literal redaction: the query text and error messages that leave the customer's VPC
//! carry no customer data, only their shape, with every literal replaced by `?`.
//!
//! Presto's query records mix metadata with data: the text of a query holds the values in
//! its `WHERE` clause, and a failure message may quote a value read from a table row (see
//! the Presto reference, "Customer DATA vs metadata"). The agent applies the compute
//! plane's [`RedactionMode`] with [`apply`] before anything is sent; [`fingerprint`]
//! groups queries by shape.
//!
//! Why a hand-written lexer and not a SQL parser: redaction must work on every text Presto
//! records, including queries that failed *because* they do not parse, dialect extensions
//! a parser crate does not know, and truncated text. A lexer only has to find where each
//! literal starts and ends, and it never fails: whatever it is unsure of (an unterminated
//! string or quoted identifier) is redacted up to the end of the text. Fail closed.
//!
//! Quoted identifiers (`"…"`, `` `…` ``) are kept, as Presto reads them as names. A value
//! wrongly written in double quotes (`email = "alice@example.com"`) is therefore kept in
//! the query text; the resulting "cannot be resolved" message is redacted.

mod lexer;
mod message;
mod sql;

#[cfg(test)]
mod proptests;

pub use message::redact_message;
pub use sql::{fingerprint, redact_sql};

/// How much query text leaves the VPC, set per compute plane, applied in the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedactionMode {
    /// Query text with every literal replaced by `?` (the default).
    #[default]
    Redacted,
    /// The query text as written, literals included: only with the customer's consent.
    Full,
    /// No query text at all.
    None,
}

impl RedactionMode {
    /// The name used in configuration and JSON: `redacted`, `full` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redacted => "redacted",
            Self::Full => "full",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for RedactionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A redaction mode other than `redacted`, `full` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown redaction mode {0:?}: expected \"redacted\", \"full\" or \"none\"")]
pub struct UnknownRedactionMode(pub String);

impl std::str::FromStr for RedactionMode {
    type Err = UnknownRedactionMode;

    /// Parses `redacted`, `full` or `none`, in any case (they come from flags and
    /// environment variables).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Redacted, Self::Full, Self::None]
            .into_iter()
            .find(|mode| s.eq_ignore_ascii_case(mode.as_str()))
            .ok_or_else(|| UnknownRedactionMode(s.to_owned()))
    }
}

/// The query text that may leave the VPC under `mode`: redacted, as written, or none.
pub fn apply(mode: RedactionMode, sql: &str) -> Option<String> {
    match mode {
        RedactionMode::Redacted => Some(redact_sql(sql)),
        RedactionMode::Full => Some(sql.to_owned()),
        RedactionMode::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_serialize_lowercase() {
        for (mode, name) in [
            (RedactionMode::Redacted, "redacted"),
            (RedactionMode::Full, "full"),
            (RedactionMode::None, "none"),
        ] {
            assert_eq!(name.parse::<RedactionMode>(), Ok(mode));
            assert_eq!(name.to_uppercase().parse::<RedactionMode>(), Ok(mode));
            assert_eq!(mode.to_string(), name);
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<RedactionMode>(&json).unwrap(), mode);
        }
        assert_eq!(RedactionMode::default(), RedactionMode::Redacted);
        let err = "partial".parse::<RedactionMode>().unwrap_err();
        assert_eq!(err, UnknownRedactionMode("partial".into()));
        assert!(serde_json::from_str::<RedactionMode>("\"Full\"").is_err());
    }

    #[test]
    fn apply_follows_the_mode() {
        let sql = "SELECT * FROM t WHERE x = 'secret'";
        assert_eq!(
            apply(RedactionMode::Redacted, sql).as_deref(),
            Some("SELECT * FROM t WHERE x = ?")
        );
        assert_eq!(apply(RedactionMode::Full, sql).as_deref(), Some(sql));
        assert_eq!(apply(RedactionMode::None, sql), None);
    }
}
