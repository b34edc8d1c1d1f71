//! Label and field selectors, as in `?labelSelector=` and `?fieldSelector=`.

use serde_json::Value;

use super::meta;
use super::status::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`, joined by commas.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part).ok_or_else(|| {
                ApiError::bad_request(format!("unable to parse requirement: found '{part}'"))
            })?);
        }
        Ok(Self(reqs))
    }

    /// Whether `obj`'s labels satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = meta::labels(obj);
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_requirement(p: &str) -> Option<Requirement> {
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        return valid_key(k).then(|| Requirement::NotExists(k.to_owned()));
    }
    for (op, ctor) in [
        (
            "!=",
            Requirement::NotEq as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Eq),
        ("=", Requirement::Eq),
    ] {
        if let Some((k, v)) = p.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            return (valid_key(k) && valid_value(v)).then(|| ctor(k.to_owned(), v.to_owned()));
        }
    }
    if let Some((k, rest)) = p.split_once(char::is_whitespace) {
        let rest = rest.trim();
        let (notin, set) = if let Some(s) = rest.strip_prefix("notin") {
            (true, s)
        } else {
            (false, rest.strip_prefix("in")?)
        };
        let inner = set.trim().strip_prefix('(')?.strip_suffix(')')?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
        if !valid_key(k) || !values.iter().all(|v| valid_value(v)) {
            return None;
        }
        let k = k.to_owned();
        return Some(if notin {
            Requirement::NotIn(k, values)
        } else {
            Requirement::In(k, values)
        });
    }
    valid_key(p).then(|| Requirement::Exists(p.to_owned()))
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value` on dotted paths such
/// as `metadata.name`, joined by commas.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses a field selector.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            reqs.push((path.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(reqs))
    }

    /// Whether `obj` satisfies the selector (absent fields read as `""`).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, value)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let actual = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"metadata": {"name": "w", "namespace": "ns", "labels": {"app": "presto", "role": "worker"}}})
    }

    #[test]
    fn label_selectors() {
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&obj());
        assert!(m("app=presto,role==worker"));
        assert!(m("app,!missing"));
        assert!(m("role in (coordinator, worker)"));
        assert!(m("role notin (coordinator),app!=x"));
        assert!(!m("role in (coordinator)"));
        assert!(!m("app!=presto"));
        assert!(m(""));
        assert!(LabelSelector::parse("a=(b").is_err());
    }

    #[test]
    fn field_selectors() {
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches(&obj());
        assert!(m("metadata.name=w,metadata.namespace!=other"));
        assert!(!m("metadata.name==x"));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
