//! Reading and writing `metadata`, name validation and timestamps.

use rand::Rng;
use serde_json::{Map, Value};

use super::resources::ResourceType;
use super::status::ApiError;

/// `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.name`, or `""`.
pub(crate) fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.labels` (empty when absent).
pub(crate) fn labels(obj: &Value) -> Map<String, Value> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `metadata`, created when absent; `None` when the object is not a JSON object.
pub(crate) fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Sets `metadata.<field>`.
pub(crate) fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = metadata_mut(obj) {
        m.insert(field.to_owned(), value);
    }
}

/// Removes `metadata.<field>`.
pub(crate) fn remove_meta(obj: &mut Value, field: &str) -> Option<Value> {
    obj.get_mut("metadata")?.as_object_mut()?.remove(field)
}

/// The object as compared for "did this write change anything": without the fields the
/// server owns and bumps itself.
pub(crate) fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    for f in ["resourceVersion", "managedFields", "generation"] {
        remove_meta(&mut v, f);
    }
    v
}

/// Five random characters, as the API server appends them to `generateName`.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// Now, as the API server writes timestamps (RFC 3339, whole seconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Checks `name` as the API server does: a DNS-1123 label for namespaces and services, a
/// DNS-1123 subdomain otherwise; 422 `Invalid` if not.
pub(crate) fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let label = matches!(rt.plural, "namespaces" | "services");
    let ok = if label {
        is_dns1123_label(name)
    } else {
        is_dns1123_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let why = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
         and must start and end with an alphanumeric character"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
         or '.', and must start and end with an alphanumeric character"
    };
    Err(ApiError::invalid(rt, name, "metadata.name", name, why))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_subdomain("presto-worker.v1"));
        assert!(!is_dns1123_subdomain("Presto"));
        assert!(!is_dns1123_subdomain("-a"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(""));
    }
}
