//! Why a query fails: an `ErrorCode` and an `ExecutionFailureInfo` whose message quotes a
//! value from the query text, the way a cast or range failure in Presto quotes the offending
//! value. That is the customer data the agent's redactor must remove.

use serde::Serialize;

/// `com.facebook.presto.common.ErrorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct ErrorCode {
    pub code: i32,
    pub name: &'static str,
    /// The `ErrorType`: `USER_ERROR`, `INTERNAL_ERROR`, `INSUFFICIENT_RESOURCES`, `EXTERNAL`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub retriable: bool,
}

const fn user(code: i32, name: &'static str) -> ErrorCode {
    ErrorCode {
        code,
        name,
        kind: "USER_ERROR",
        retriable: false,
    }
}

/// `StandardErrorCode` entries the stand-in produces.
pub(crate) const USER_CANCELED: ErrorCode = user(3, "USER_CANCELED");
pub(crate) const PERMISSION_DENIED: ErrorCode = user(4, "PERMISSION_DENIED");
pub(crate) const INVALID_CAST_ARGUMENT: ErrorCode = user(9, "INVALID_CAST_ARGUMENT");
pub(crate) const NUMERIC_VALUE_OUT_OF_RANGE: ErrorCode = user(19, "NUMERIC_VALUE_OUT_OF_RANGE");
pub(crate) const ADMINISTRATIVELY_KILLED: ErrorCode = user(38, "ADMINISTRATIVELY_KILLED");
pub(crate) const EXCEEDED_GLOBAL_MEMORY_LIMIT: ErrorCode = ErrorCode {
    code: 0x0002_0001,
    name: "EXCEEDED_GLOBAL_MEMORY_LIMIT",
    kind: "INSUFFICIENT_RESOURCES",
    retriable: false,
};

/// `ErrorLocation` (always null here; present so the field is serialized).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorLocation {
    pub line_number: i32,
    pub column_number: i32,
}

/// `com.facebook.presto.execution.ExecutionFailureInfo`, as embedded in `/v1/query` rows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecutionFailureInfo {
    /// The exception class.
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub cause: Option<Box<ExecutionFailureInfo>>,
    pub suppressed: Vec<ExecutionFailureInfo>,
    pub stack: Vec<String>,
    pub error_location: Option<ErrorLocation>,
    pub error_code: Option<ErrorCode>,
    pub remote_host: Option<String>,
    pub error_cause: Option<String>,
}

/// The client protocol's `FailureInfo` (`QueryError.failureInfo`): the same tree without the
/// coordinator-side fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureInfo {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub cause: Option<Box<FailureInfo>>,
    pub suppressed: Vec<FailureInfo>,
    pub stack: Vec<String>,
    pub error_location: Option<ErrorLocation>,
}

impl From<&ExecutionFailureInfo> for FailureInfo {
    fn from(e: &ExecutionFailureInfo) -> Self {
        FailureInfo {
            kind: e.kind.clone(),
            message: e.message.clone(),
            cause: e.cause.as_deref().map(|c| Box::new(c.into())),
            suppressed: e.suppressed.iter().map(Into::into).collect(),
            stack: e.stack.clone(),
            error_location: e.error_location.clone(),
        }
    }
}

/// A query's failure: its code and the failure tree.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub code: ErrorCode,
    pub info: ExecutionFailureInfo,
}

const PRESTO_EXCEPTION: &str = "com.facebook.presto.spi.PrestoException";

fn frames(frames: &[&str]) -> Vec<String> {
    frames.iter().map(|f| (*f).to_owned()).collect()
}

fn info(
    kind: &str,
    message: String,
    code: Option<ErrorCode>,
    stack: Vec<String>,
) -> ExecutionFailureInfo {
    ExecutionFailureInfo {
        kind: kind.to_owned(),
        message,
        cause: None,
        suppressed: Vec::new(),
        stack,
        error_location: None,
        error_code: code,
        remote_host: None,
        error_cause: None,
    }
}

impl Failure {
    fn new(code: ErrorCode, kind: &str, message: String, stack: Vec<String>) -> Self {
        Failure {
            code,
            info: info(kind, message, Some(code), stack),
        }
    }

    /// A failure for `sql` that quotes one of its literals (number `pick` modulo their count,
    /// string literals first), or a memory failure for a query without literals.
    pub fn for_query(sql: &str, pick: u64) -> Self {
        let mut lits = literals(sql);
        lits.sort_by_key(|l| matches!(l, Literal::Num(_)));
        let Some(lit) = (!lits.is_empty()).then(|| &lits[(pick % lits.len() as u64) as usize])
        else {
            return Failure::new(
                EXCEEDED_GLOBAL_MEMORY_LIMIT,
                "com.facebook.presto.ExceededMemoryLimitException",
                "Query exceeded distributed user memory limit of 50GB".to_owned(),
                frames(&[
                    "com.facebook.presto.ExceededMemoryLimitException.exceededGlobalUserLimit(ExceededMemoryLimitException.java:40)",
                    "com.facebook.presto.memory.ClusterMemoryManager.enforceMemoryLimits(ClusterMemoryManager.java:287)",
                    "java.lang.Thread.run(Thread.java:829)",
                ]),
            );
        };
        match lit {
            Literal::Str(v) => Failure::new(
                INVALID_CAST_ARGUMENT,
                PRESTO_EXCEPTION,
                format!("Cannot cast '{v}' to INT"),
                frames(&[
                    "com.facebook.presto.type.VarcharOperators.castToInteger(VarcharOperators.java:162)",
                    "com.facebook.presto.$gen.PageProjectionWork_20250114_094015_42.evaluate(Unknown Source)",
                    "com.facebook.presto.operator.ScanFilterAndProjectOperator.processPageSource(ScanFilterAndProjectOperator.java:295)",
                    "java.lang.Thread.run(Thread.java:829)",
                ]),
            ),
            Literal::Num(v) => {
                let mut f = Failure::new(
                    NUMERIC_VALUE_OUT_OF_RANGE,
                    PRESTO_EXCEPTION,
                    format!("Value {v} out of range"),
                    frames(&[
                        "com.facebook.presto.type.BigintOperators.castToInteger(BigintOperators.java:211)",
                        "com.facebook.presto.operator.project.PageProcessor$ProjectSelectedPositions.processBatch(PageProcessor.java:331)",
                        "java.lang.Thread.run(Thread.java:829)",
                    ]),
                );
                // A cause that quotes the value too, so redaction must recurse.
                f.info.cause = Some(Box::new(info(
                    "java.lang.ArithmeticException",
                    format!("integer overflow: {v}"),
                    None,
                    frames(&["java.lang.Math.toIntExact(Math.java:1135)"]),
                )));
                f
            }
        }
    }

    /// A query an access check refused (`AccessDeniedException`; `message` starts with
    /// `Access Denied: `).
    pub fn access_denied(message: &str) -> Self {
        Failure::new(
            PERMISSION_DENIED,
            "com.facebook.presto.spi.security.AccessDeniedException",
            message.to_owned(),
            frames(&[
                "com.facebook.presto.spi.security.AccessDeniedException.denyCatalogAccess(AccessDeniedException.java:74)",
                "com.facebook.presto.security.AccessControlManager.checkCanSelectFromColumns(AccessControlManager.java:880)",
                "java.lang.Thread.run(Thread.java:829)",
            ]),
        )
    }

    /// A query canceled by its client.
    pub fn canceled() -> Self {
        Failure::new(
            USER_CANCELED,
            PRESTO_EXCEPTION,
            "Query was canceled".to_owned(),
            Vec::new(),
        )
    }

    /// A query killed through `PUT /v1/query/{id}/killed`.
    pub fn killed(message: &str) -> Self {
        let message = if message.is_empty() {
            "Query killed. No message provided.".to_owned()
        } else {
            format!("Query killed. Message: {message}")
        };
        Failure::new(
            ADMINISTRATIVELY_KILLED,
            PRESTO_EXCEPTION,
            message,
            Vec::new(),
        )
    }
}

/// A literal in SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    /// A string literal's value (`''` unescaped); DATE literals included.
    Str(String),
    /// A numeric literal as written.
    Num(String),
}

/// The literals of `sql`, in order: quoted strings and numbers that are not part of an
/// identifier. Double-quoted identifiers and comments are not literals.
pub(crate) fn literals(sql: &str) -> Vec<Literal> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut v = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        v.push('\'');
                        i += 2;
                        continue;
                    }
                    break;
                }
                v.push(chars[i]);
                i += 1;
            }
            out.push(Literal::Str(v));
            i += 1;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Literal::Num(chars[start..i].iter().collect()));
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_strings_and_numbers_but_not_identifiers() {
        let sql = "SELECT \"col1\", t2.x FROM hive2.t -- 99\nWHERE a = 'O''Brien' AND b > 2500.75 AND d = DATE '2024-01-01'";
        assert_eq!(
            literals(sql),
            vec![
                Literal::Str("O'Brien".into()),
                Literal::Num("2500.75".into()),
                Literal::Str("2024-01-01".into()),
            ]
        );
    }

    #[test]
    fn failures_quote_a_literal() {
        let sql = "SELECT 1 WHERE email = 'alice@example.com'";
        let cast = Failure::for_query(sql, 0);
        assert_eq!(cast.code, INVALID_CAST_ARGUMENT);
        assert_eq!(cast.info.message, "Cannot cast 'alice@example.com' to INT");
        let range = Failure::for_query(sql, 1);
        assert_eq!(range.info.message, "Value 1 out of range");
        assert_eq!(
            range.info.cause.as_ref().map(|c| c.message.as_str()),
            Some("integer overflow: 1")
        );
        let mem = Failure::for_query("SELECT * FROM t", 0);
        assert_eq!(mem.code.kind, "INSUFFICIENT_RESOURCES");
    }
}
