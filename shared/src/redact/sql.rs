//! Query text: [`redact_sql`] and [`fingerprint`].

use sha2::{Digest, Sha256};

use super::lexer::{Kind, Lexer};

/// Replaces every literal of `sql` with `?` and blanks every comment, keeping keywords,
/// identifiers (quoted or not), operators, parameters and whitespace as they are.
///
/// - strings in every form (`'…'`, `E'…'`, `U&'…'`, `X'…'`), prefix included → `?`;
/// - numbers (`42`, `1.5`, `.5`, `1.2E-3`, `0xFF`) → `?`; a sign stays: `-5` → `-?`;
/// - typed literals keep their type: `DATE '2024-01-02'` → `DATE ?`,
///   `INTERVAL '3' DAY` → `INTERVAL ? DAY`;
/// - comments keep their form, not their content: `-- ?` and `/* ? */`;
/// - anything unterminated (`'abc…`, `"abc…`) becomes one `?` up to the end.
///
/// Redacting twice changes nothing, and the output has no digit outside an identifier.
pub fn redact_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for token in Lexer::new(sql) {
        match token.kind {
            Kind::Literal => out.push('?'),
            Kind::Comment if token.text.starts_with("--") => out.push_str("-- ?"),
            Kind::Comment => out.push_str("/* ? */"),
            Kind::Whitespace | Kind::Word | Kind::QuotedIdent | Kind::Other => {
                out.push_str(token.text)
            }
        }
    }
    out
}

/// A stable identifier of a query's shape, for grouping queries that differ only in their
/// values: lower-case hex of the first 16 bytes of SHA-256 (32 characters).
///
/// The hashed text is the token sequence of `redacted_sql` joined by single spaces, with
/// comments and whitespace dropped, keywords and unquoted identifiers lower-cased, quoted
/// identifiers kept, and every literal as `?`. So `select A  from t where x=1` and
/// `SELECT a FROM t WHERE x = ?` have the same fingerprint; `x = -1` and `x = 1` do not.
///
/// Literals are replaced again here: given raw text by mistake, the fingerprint is still
/// the fingerprint of its redacted form and never a hash of a value (Presto's own
/// `queryHash` is, which makes low-entropy values brute-forceable).
pub fn fingerprint(redacted_sql: &str) -> String {
    let mut canonical = String::with_capacity(redacted_sql.len());
    for token in Lexer::new(redacted_sql) {
        if matches!(token.kind, Kind::Whitespace | Kind::Comment) {
            continue;
        }
        if !canonical.is_empty() {
            canonical.push(' ');
        }
        match token.kind {
            Kind::Literal => canonical.push('?'),
            Kind::Word => canonical.push_str(&token.text.to_lowercase()),
            _ => canonical.push_str(token.text),
        }
    }
    hex::encode(&Sha256::digest(canonical.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn redacts(sql: &str, expected: &str) {
        assert_eq!(redact_sql(sql), expected, "input: {sql}");
    }

    #[test]
    fn the_example_from_the_brief() {
        let sql = "SELECT * FROM users WHERE email = 'alice@example.com' \
                   AND card = 4111111111111111 AND d > DATE '2024-01-02'";
        let out = redact_sql(sql);
        assert_eq!(
            out,
            "SELECT * FROM users WHERE email = ? AND card = ? AND d > DATE ?"
        );
        for secret in ["alice", "4111", "2024"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
    }

    #[test]
    fn strings() {
        redacts("x = 'it''s'", "x = ?");
        redacts("x = ''", "x = ?");
        redacts("x = E'a\\'b'", "x = ?");
        redacts("x = e'it\\'s' AND y", "x = ? AND y");
        redacts("x = E'a\\\\' AND y = 1", "x = ? AND y = ?");
        redacts("x = U&'\\0041\\+01F600' UESCAPE '\\'", "x = ? UESCAPE ?");
        redacts("x = X'1F' OR x = x'ab'", "x = ? OR x = ?");
        redacts("x = '--not a comment'", "x = ?");
        redacts("x = '/* nor this */'", "x = ?");
        redacts("x = 'Zürich ✓ \n line two'", "x = ?");
        redacts("'a''b''c'", "?");
        redacts("'a' 'b'", "? ?");
    }

    #[test]
    fn prefixes_only_when_glued() {
        redacts("SELECT e 'x'", "SELECT e ?");
        redacts("SELECT cole'x'", "SELECT cole?");
        redacts("SELECT u&'x'", "SELECT ?");
        redacts("SELECT u & 'x'", "SELECT u & ?");
    }

    #[test]
    fn numbers() {
        redacts("a<5", "a<?");
        redacts("a>=-5", "a>=-?");
        redacts("1.5e3 + .5 - 1.2E-3 * 1e10 / 0x1F", "? + ? - ? * ? / ?");
        redacts("x IN (1,2,3)", "x IN (?,?,?)");
        redacts("LIMIT 10", "LIMIT ?");
        redacts("x = 10L OR x = 1.5d", "x = ? OR x = ?");
        redacts("x=1e-3", "x=?");
        redacts("x=1e-y", "x=?-y");
    }

    #[test]
    fn identifiers_with_digits_stay() {
        redacts(
            "SELECT col1, t2.x, _3 FROM s3.db9.t10",
            "SELECT col1, t2.x, _3 FROM s3.db9.t10",
        );
        redacts(
            "SELECT \"weird\"\"ident\", `back``tick1` FROM \"t 1\"",
            "SELECT \"weird\"\"ident\", `back``tick1` FROM \"t 1\"",
        );
    }

    #[test]
    fn typed_literals_keep_their_type() {
        redacts("DATE '2024-01-02'", "DATE ?");
        redacts("TIME '01:02:03.456'", "TIME ?");
        redacts("TIMESTAMP '2024-01-02 03:04:05 UTC'", "TIMESTAMP ?");
        redacts(
            "TIMESTAMP WITH TIME ZONE '2024-01-02 03:04:05 +01:00'",
            "TIMESTAMP WITH TIME ZONE ?",
        );
        redacts("now() - INTERVAL '3' DAY", "now() - INTERVAL ? DAY");
        redacts("INTERVAL '1-2' YEAR TO MONTH", "INTERVAL ? YEAR TO MONTH");
        redacts("DECIMAL '1.5'", "DECIMAL ?");
    }

    #[test]
    fn comments_lose_their_content() {
        redacts("SELECT 1 -- secret 42\nFROM t", "SELECT ? -- ?\nFROM t");
        redacts("SELECT /* 'x' */ a", "SELECT /* ? */ a");
        redacts("a/* /* nested */ 'x' */b", "a/* ? */b");
        redacts("a /* unterminated 'x", "a /* ? */");
        redacts("a -- to the end", "a -- ?");
        redacts("a---b", "a-- ?");
    }

    #[test]
    fn unterminated_fails_closed() {
        redacts("x = 'abc", "x = ?");
        redacts("x = 'abc'' AND y = 2", "x = ?");
        redacts("x = E'abc\\' AND y = 2", "x = ?");
        redacts("x = \"abc", "x = ?");
        redacts("x = `abc", "x = ?");
    }

    #[test]
    fn parameters_and_unicode_pass_through() {
        redacts("x = ? AND y = ?", "x = ? AND y = ?");
        redacts("SELECT naïve, 名前 FROM t", "SELECT naïve, 名前 FROM t");
        redacts("x = ‘alice’ OR y = “bob”", "x = ? OR y = ?");
        redacts("x = ４１１１", "x = ?");
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        for sql in [
            "a = 'x' -- c\n/* d",
            "E'\\'' \"q\"\"\" 1.e5",
            "x'",
            "/*/ 'a'",
        ] {
            let once = redact_sql(sql);
            assert_eq!(redact_sql(&once), once);
        }
    }

    #[test]
    fn fingerprint_is_32_hex_and_ignores_values_case_and_layout() {
        let a = fingerprint(&redact_sql("SELECT a FROM t WHERE x = 1 AND y = 'abc'"));
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        for same in [
            "select A from T where X = 42 and Y = E'zz'",
            "SELECT a\n  FROM t -- note\n WHERE x=1.5 AND y=DATE_X",
            "SELECT a /* c */ FROM t WHERE x = ? AND y = ?",
        ] {
            let same = same.replace("DATE_X", "'2024-01-01'");
            assert_eq!(fingerprint(&redact_sql(&same)), a, "{same}");
        }
    }

    #[test]
    fn fingerprint_differs_with_structure() {
        let base = fingerprint(&redact_sql("SELECT a FROM t WHERE x = 1"));
        for other in [
            "SELECT b FROM t WHERE x = 1",
            "SELECT a FROM t WHERE x > 1",
            "SELECT a FROM t WHERE x = 1 AND y = 2",
            "SELECT a FROM \"T\" WHERE x = 1",
            "SELECT a FROM t WHERE x = DATE '2024-01-01'",
            "SELECT a FROM t WHERE x = -1",
        ] {
            assert_ne!(fingerprint(&redact_sql(other)), base, "{other}");
        }
    }

    #[test]
    fn fingerprint_never_hashes_values() {
        let raw = "SELECT a FROM t WHERE card = 4111111111111111";
        assert_eq!(fingerprint(raw), fingerprint(&redact_sql(raw)));
        assert_eq!(fingerprint("x = 'a'"), fingerprint("x = 'b'"));
    }
}
