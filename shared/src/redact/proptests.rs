//! Property tests: generated SQL whose literal values are distinctive, checked for any
//! surviving value; arbitrary text, checked for panics, digits and idempotence.
//!
//! Every generated string and comment contains `~`, which the generated code never
//! does, so a `~` in the output is a leak however the value was cut. Identifiers carry at
//! most one digit, so no run of two digits of a number can survive inside one.

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::lexer::{Kind, Lexer};
use super::{fingerprint, redact_message, redact_sql};

/// Keywords, and words that are string prefixes when glued to a quote.
const KEYWORDS: &str = "SELECT FROM WHERE AND OR NOT IN IS NULL LIKE BETWEEN CASE WHEN THEN \
    ELSE END GROUP BY ORDER LIMIT AS JOIN ON DATE TIMESTAMP INTERVAL DAY e x U b";
const OPERATORS: &[&str] = &[
    "=", "<", ">", "<=", "<>", "!=", "+", "-", "*", "/", "%", "(", ")", ",", ".", "||", ";", "?",
    "[", "]",
];
const QUOTED_IDENTS: &[&str] = &["\"weird\"\"ident\"", "\"Col 7\"", "`bt``x`", "\"a.b\""];
/// Characters of string values: quotes, escapes, comment starters, Unicode, digits.
const VALUE_CHARS: &str = "[a-zA-Z0-9'\"\\\\*/ \n\t%_é名😀-]{0,12}";
/// Characters of comments: no comment delimiters, no newline.
const COMMENT_CHARS: &str = "[a-zA-Z0-9'\" %_é名-]{0,12}";

/// A piece of generated SQL; `secret` is the value that must not survive redaction.
#[derive(Debug, Clone)]
struct Piece {
    text: String,
    secret: Option<String>,
    operator: bool,
}

fn code(text: impl Into<String>, operator: bool) -> Piece {
    Piece {
        text: text.into(),
        secret: None,
        operator,
    }
}

fn value(text: String, secret: String) -> Piece {
    Piece {
        text,
        secret: Some(secret),
        operator: false,
    }
}

/// A string value with the `~` marker somewhere in it.
fn marked() -> impl Strategy<Value = String> {
    (VALUE_CHARS, VALUE_CHARS).prop_map(|(a, b)| format!("{a}~{b}"))
}

fn string_literal() -> impl Strategy<Value = Piece> {
    let standard = marked().prop_map(|s| value(format!("'{}'", s.replace('\'', "''")), s));
    let escaped = (marked(), prop::bool::ANY).prop_map(|(s, lower)| {
        let body = s.replace('\\', "\\\\").replace('\'', "\\'");
        value(format!("{}'{body}'", if lower { 'e' } else { 'E' }), s)
    });
    let unicode = marked().prop_map(|s| value(format!("U&'{}'", s.replace('\'', "''")), s));
    let hex = "[0-9][0-9A-Fa-f]{2,11}".prop_map(|h| value(format!("X'{h}'"), h));
    prop_oneof![standard, escaped, unicode, hex]
}

fn number_literal() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "[1-9][0-9]{2,17}",
        "[0-9]{1,6}\\.[0-9]{1,6}",
        "\\.[0-9]{3,6}",
        "[0-9]{1,3}(\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,3}",
        "0[xX][0-9A-F]{2,8}",
    ]
    .prop_map(|n| value(n.clone(), n))
}

fn typed_literal() -> impl Strategy<Value = Piece> {
    let date =
        (1000..9999u32, 1..13u32, 1..29u32).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"));
    prop_oneof![
        date.clone().prop_map(|d| value(format!("DATE '{d}'"), d)),
        (date, 0..24u32, 0..60u32)
            .prop_map(|(d, h, m)| format!("{d} {h:02}:{m:02}:00.123"))
            .prop_map(|t| value(format!("TIMESTAMP '{t}'"), t)),
        "[1-9][0-9]{2,4}".prop_map(|n| value(format!("INTERVAL '{n}' DAY"), n)),
    ]
}

fn comment() -> impl Strategy<Value = Piece> {
    let marked = (COMMENT_CHARS, COMMENT_CHARS).prop_map(|(a, b)| format!("{a}~{b}"));
    prop_oneof![
        marked.clone().prop_map(|c| value(format!("--{c}\n"), c)),
        marked.prop_map(|c| value(format!("/*{c}*/"), c)),
    ]
}

fn literal() -> impl Strategy<Value = Piece> {
    prop_oneof![
        string_literal(),
        number_literal(),
        typed_literal(),
        comment()
    ]
}

fn keyword() -> impl Strategy<Value = Piece> {
    let words: Vec<&str> = KEYWORDS.split_whitespace().collect();
    prop::sample::select(words).prop_map(|k| code(k, false))
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        3 => keyword(),
        3 => "[a-z_][a-z_]{0,5}[0-9]?".prop_map(|i| code(i, false)),
        1 => prop::sample::select(QUOTED_IDENTS).prop_map(|q| code(q, false)),
        3 => prop::sample::select(OPERATORS).prop_map(|o| code(o, true)),
        4 => literal(),
    ]
}

/// Joins pieces with the chosen separators, but never glues two pieces that would lex
/// as one: only an operator and a non-operator may touch.
fn assemble(pieces: &[(Piece, usize)]) -> String {
    const SEPARATORS: [&str; 4] = ["", " ", "\n", " \t "];
    let mut sql = String::new();
    let mut prev: Option<&Piece> = None;
    for (piece, sep) in pieces {
        if let Some(prev) = prev {
            let sep = SEPARATORS[sep % SEPARATORS.len()];
            let touching_ok = prev.operator != piece.operator;
            sql.push_str(if sep.is_empty() && !touching_ok {
                " "
            } else {
                sep
            });
        }
        sql.push_str(&piece.text);
        prev = Some(piece);
    }
    sql
}

fn sql() -> impl Strategy<Value = Vec<(Piece, usize)>> {
    prop::collection::vec((piece(), 0..4usize), 1..40)
}

/// Every digit of `redacted` lies in an identifier, quoted or not.
fn digits_only_in_identifiers(redacted: &str) -> bool {
    Lexer::new(redacted).all(|t| {
        matches!(t.kind, Kind::Word | Kind::QuotedIdent)
            || !t.text.bytes().any(|b| b.is_ascii_digit())
    })
}

fn config() -> Config {
    Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_literal_value_survives(pieces in sql()) {
        let input = assemble(&pieces);
        let out = redact_sql(&input);
        prop_assert!(!out.contains('~'), "marker survived: {out:?}");
        for secret in pieces.iter().filter_map(|(p, _)| p.secret.as_deref()) {
            if secret.chars().count() >= 3 {
                prop_assert!(!out.contains(secret), "{secret:?} survived in {out:?}");
            }
        }
        prop_assert!(digits_only_in_identifiers(&out), "{out:?}");
    }

    #[test]
    fn arbitrary_text_never_panics_and_leaves_no_bare_digit(s in any::<String>()) {
        let out = redact_sql(&s);
        prop_assert!(digits_only_in_identifiers(&out), "{out:?}");
        prop_assert_eq!(redact_sql(&out), out.clone());
        prop_assert_eq!(fingerprint(&s), fingerprint(&out));
        prop_assert!(!redact_message(&s).chars().any(super::lexer::is_digit));
    }

    #[test]
    fn sql_like_text_never_panics_and_leaves_no_bare_digit(
        s in "[a-zA-Z0-9 \n'\"`/*\\\\.+&eExXuU_é名‘’“”４-]{0,64}",
    ) {
        let out = redact_sql(&s);
        prop_assert!(digits_only_in_identifiers(&out), "{out:?}");
        prop_assert_eq!(redact_sql(&out), out.clone());
        let msg = redact_message(&s);
        prop_assert!(!msg.chars().any(super::lexer::is_digit), "{msg:?}");
        let msg = redact_message(&format!("{s}'SECRET123'"));
        prop_assert!(!msg.contains("SECRET123"), "{msg:?}");
        // Redaction is local: a value in front of any text does not change how it reads.
        let marked = redact_sql(&format!("'SECRET123' {s}"));
        prop_assert_eq!(marked, format!("? {out}"));
    }
}

/// A query shape whose value and comment slots are filled twice with unrelated contents,
/// laid out and cased differently: the fingerprints must agree.
#[derive(Debug, Clone)]
enum Slot {
    Code(Piece),
    Value,
    Comment,
}

fn shape() -> impl Strategy<Value = Vec<Slot>> {
    let slot = prop_oneof![
        3 => piece().prop_filter("code only", |p| p.secret.is_none()).prop_map(Slot::Code),
        1 => Just(Slot::Value),
        1 => Just(Slot::Comment),
        1 => Just(Slot::Code(code("DATE", false))),
    ];
    prop::collection::vec(slot, 1..30)
}

/// The contents of one rendering: per slot, its text, whether to lower-case it if it is
/// code, and the whitespace after it.
type Filling = Vec<(String, bool, usize)>;

fn fill(shape: &[Slot]) -> impl Strategy<Value = Filling> + use<> {
    shape
        .iter()
        .map(|slot| {
            let text = match slot {
                Slot::Code(p) => Just(p.text.clone()).boxed(),
                Slot::Value => prop_oneof![string_literal(), number_literal()]
                    .prop_map(|p| p.text)
                    .boxed(),
                Slot::Comment => comment().prop_map(|p| p.text).boxed(),
            };
            (text, prop::bool::ANY, 0..3usize)
        })
        .collect::<Vec<_>>()
}

/// Renders a filling, with the extra identifier `zz_extra` before slot `extra`.
fn render(shape: &[Slot], filling: &Filling, extra: Option<usize>) -> String {
    const WHITESPACE: [&str; 3] = [" ", "\n", "  \t"];
    let mut sql = String::new();
    for (i, (slot, (text, lower, ws))) in shape.iter().zip(filling).enumerate() {
        if extra == Some(i) {
            sql.push_str("zz_extra ");
        }
        let quoted = text.starts_with(['"', '`']);
        match slot {
            Slot::Code(_) if *lower && !quoted => sql.push_str(&text.to_lowercase()),
            _ => sql.push_str(text),
        }
        sql.push_str(WHITESPACE[ws % WHITESPACE.len()]);
    }
    if extra.is_some_and(|e| e >= shape.len()) {
        sql.push_str("zz_extra");
    }
    sql
}

type Renderings = (Vec<Slot>, Filling, Filling);

fn fp(sql: &str) -> String {
    fingerprint(&redact_sql(sql))
}

fn two_fillings() -> impl Strategy<Value = Renderings> {
    shape().prop_flat_map(|shape| {
        let (a, b) = (fill(&shape), fill(&shape));
        (Just(shape), a, b)
    })
}

proptest! {
    #![proptest_config(Config { cases: 500, ..config() })]

    #[test]
    fn fingerprint_ignores_values_and_layout((shape, a, b) in two_fillings()) {
        let (a, b) = (render(&shape, &a, None), render(&shape, &b, None));
        prop_assert_eq!(fp(&a), fp(&b), "{:?} vs {:?}", a, b);
    }

    #[test]
    fn fingerprint_sees_structure((shape, a, b) in two_fillings(), at: prop::sample::Index) {
        let extra = at.index(shape.len() + 1);
        let (a, b) = (render(&shape, &a, None), render(&shape, &b, Some(extra)));
        prop_assert_ne!(fp(&a), fp(&b), "{:?} vs {:?}", a, b);
    }
}
