//! A small block-style YAML writer for JSON values (the CloudFormation template).
//!
//! Written by hand: serde_yaml is archived and its forks are young; what is needed here is
//! only output, for values built in code. Strings are written plain when that is
//! unambiguous and as JSON strings (which are valid YAML double-quoted scalars) otherwise,
//! so the reader gets back exactly the value that was written.

use serde_json::Value;

/// `value` as a YAML document.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn write_map(out: &mut String, m: &serde_json::Map<String, Value>, level: usize) {
    for (k, v) in m {
        indent(out, level);
        out.push_str(&string(k));
        out.push(':');
        write_value(out, v, level + 2);
    }
}

fn write_seq(out: &mut String, a: &[Value], level: usize) {
    for v in a {
        indent(out, level);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // The first key on the dash's line, the rest aligned under it.
                let mut first = true;
                for (k, val) in m {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 2);
                    }
                    out.push_str(&string(k));
                    out.push(':');
                    write_value(out, val, level + 4);
                }
            }
            other => write_value(out, other, level + 2),
        }
    }
}

/// After `key:` or `-`: a scalar on the same line, or a block on the next ones.
fn write_value(out: &mut String, v: &Value, level: usize) {
    if is_block(v) {
        out.push('\n');
        match v {
            Value::Object(m) => write_map(out, m, level),
            Value::Array(a) => write_seq(out, a, level),
            _ => {}
        }
    } else {
        out.push(' ');
        out.push_str(&scalar(v));
        out.push('\n');
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Words YAML 1.1 readers take for booleans or null.
const RESERVED: [&str; 14] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", "none", "nan", "inf", ".inf",
];

/// A string as a plain scalar when that reads back as the same string, else JSON-quoted.
fn string(s: &str) -> String {
    let safe_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _./:$(){}*@+=,-".contains(c));
    // A leading digit may read as a number, a date or a time (YAML 1.1): quote those.
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '$');
    let looks_like_number = s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
        || s.chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '_');
    let plain = safe_chars
        && first_ok
        && !s.ends_with(' ')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !looks_like_number
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ambiguous_strings_are_quoted_and_plain_ones_are_not() {
        for (s, quoted) in [
            ("AWS::EC2::VPC", false),
            ("arn:${AWS::Partition}:iam::aws:policy/X", false),
            ("10.64.0.0/16", true),
            ("2012-10-17", true),
            ("/tether/x", false),
            ("1.31", true),
            ("443", true),
            ("true", true),
            ("No", true),
            ("", true),
            ("a: b", true),
            ("-----BEGIN CERTIFICATE-----\nMII", true),
            ("*", true),
            ("'quoted'", true),
            ("x #comment", true),
            ("12:30", true),
        ] {
            assert_eq!(string(s).starts_with('"'), quoted, "{s:?} -> {}", string(s));
        }
    }

    #[test]
    fn nesting_is_block_style() {
        let v = json!({"A": {"B": [1, {"C": "d", "E": ["f"]}], "G": {}}, "H": []});
        assert_eq!(
            to_string(&v),
            "A:\n  B:\n    - 1\n    - C: d\n      E:\n        - f\n  G: {}\nH: []\n"
        );
    }
}
