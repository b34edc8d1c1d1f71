//! The one SQL lexer that [`redact_sql`](super::redact_sql) and
//! [`fingerprint`](super::fingerprint) read text with.
//!
//! It never fails: every input, however broken, splits into tokens that cover it exactly.
//! Wherever it cannot tell where a value ends (an unterminated string or quoted
//! identifier), the rest of the input is one [`Kind::Literal`]: fail closed.

/// What a token is, as far as redaction cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A run of ASCII whitespace.
    Whitespace,
    /// `-- …` to the end of the line, or `/* … */` (nested, possibly unterminated).
    Comment,
    /// A value: a string in any form (`'…'`, `E'…'`, `U&'…'`, `X'…'`, …), a number, or
    /// anything unterminated.
    Literal,
    /// A keyword or an unquoted identifier.
    Word,
    /// A terminated `"…"` or `` `…` `` identifier.
    QuotedIdent,
    /// One other character: an operator, punctuation, a `?` parameter.
    Other,
}

/// One token: its kind and the exact text it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
}

/// Splits SQL text into [`Token`]s.
pub(super) struct Lexer<'a> {
    rest: &'a str,
}

impl<'a> Lexer<'a> {
    pub fn new(sql: &'a str) -> Self {
        Self { rest: sql }
    }
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let (kind, len) = scan(self.rest)?;
        let (text, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(Token { kind, text })
    }
}

/// Typographic quotes that pasted SQL sometimes carries. Presto refuses them, but the
/// failed query text is still sent, so a span between them is treated as a value.
pub(super) const SMART_QUOTES: [char; 4] = ['\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}'];

/// Digits of a number: ASCII, plus any other Unicode digit (fail closed: Presto has no
/// such numbers, but a pasted value may).
pub(super) fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (!c.is_ascii() && c.is_alphabetic())
}

/// The kind and byte length of the token at the start of `s`, `None` at the end.
fn scan(s: &str) -> Option<(Kind, usize)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    let next = chars.next();
    let token = match c {
        c if c.is_ascii_whitespace() => {
            (Kind::Whitespace, len_while(s, |c| c.is_ascii_whitespace()))
        }
        '-' if next == Some('-') => (Kind::Comment, s.find(['\r', '\n']).unwrap_or(s.len())),
        '/' if next == Some('*') => (Kind::Comment, block_comment_len(s)),
        '\'' => (
            Kind::Literal,
            1 + quoted_len(&s[1..], '\'', false).unwrap_or(s.len() - 1),
        ),
        '"' | '`' => match quoted_len(&s[1..], c, false) {
            Some(len) => (Kind::QuotedIdent, 1 + len),
            None => (Kind::Literal, s.len()),
        },
        c if SMART_QUOTES.contains(&c) => {
            let body = &s[c.len_utf8()..];
            let end = body.find(SMART_QUOTES).map_or(body.len(), |i| {
                i + body[i..].chars().next().map_or(0, char::len_utf8)
            });
            (Kind::Literal, c.len_utf8() + end)
        }
        c if is_digit(c) => (Kind::Literal, number_len(s)),
        '.' if next.is_some_and(is_digit) => (Kind::Literal, number_len(s)),
        c if is_word_start(c) => word_or_prefixed_string(s),
        c => (Kind::Other, c.len_utf8()),
    };
    Some(token)
}

/// Byte length of the leading run of `s` whose characters satisfy `f`.
fn len_while(s: &str, f: impl Fn(char) -> bool) -> usize {
    s.find(|c| !f(c)).unwrap_or(s.len())
}

/// Length of a `/* … */` comment at the start of `s`, nesting counted; an unterminated
/// comment runs to the end.
fn block_comment_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    s.len()
}

/// Length of the body of a quoted token, closing quote included, after its opening
/// `quote`: a doubled quote stays inside, and with `backslash` so does `\` and the
/// character after it. `None` when the closing quote is missing.
fn quoted_len(body: &str, quote: char, backslash: bool) -> Option<usize> {
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == quote {
            if chars.peek().is_some_and(|&(_, n)| n == quote) {
                chars.next();
            } else {
                return Some(i + c.len_utf8());
            }
        }
    }
    None
}

/// Length of a number at the start of `s` (it starts with a digit or `.digit`): hex
/// `0x…`, or digits, a fraction and an exponent. Letters glued to its end (`10L`,
/// `1.5d`, `1e`) are taken with it: whatever they are, they are not an identifier.
fn number_len(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if b.len() > 1 && b[0] == b'0' && (b[1] | 0x20) == b'x' {
        i = 2;
    } else {
        let digits = |i: usize| i + len_while(&s[i..], |c| is_digit(c) || c == '_');
        i = digits(i);
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1);
        }
        if b.get(i).is_some_and(|&e| e | 0x20 == b'e') {
            let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
            if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
                i = digits(i + 1 + sign);
            }
        }
    }
    i + len_while(&s[i..], |c| is_word_char(c) || is_digit(c))
}

/// A word, or a string with a one-word prefix: `E'…'` (backslash escapes), `U&'…'`,
/// `X'…'`, `B'…'`, `N'…'`. The prefix is part of the literal, so it is redacted too.
fn word_or_prefixed_string(s: &str) -> (Kind, usize) {
    let word = len_while(s, is_word_char);
    let after = &s[word..];
    let prefix = match s.as_bytes() {
        [p, ..] if word == 1 => p.to_ascii_lowercase(),
        _ => 0,
    };
    let string = match prefix {
        b'e' if after.starts_with('\'') => Some((1, true)),
        b'x' | b'b' | b'n' if after.starts_with('\'') => Some((1, false)),
        b'u' if after.starts_with("&'") => Some((2, false)),
        _ => None,
    };
    match string {
        Some((open, backslash)) => {
            let body = &after[open..];
            let len = quoted_len(body, '\'', backslash).unwrap_or(body.len());
            (Kind::Literal, word + open + len)
        }
        None => (Kind::Word, word),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(sql: &str) -> Vec<(Kind, &str)> {
        Lexer::new(sql).map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn tokens_cover_the_input_exactly() {
        for sql in [
            "SELECT 'a''b', E'x\\'y' FROM \"t\"\"x\" -- c\n/* d */",
            "",
            "é'",
            "€1",
        ] {
            let joined: String = Lexer::new(sql).map(|t| t.text).collect();
            assert_eq!(joined, sql);
        }
    }

    #[test]
    fn splits_kinds() {
        use Kind::*;
        assert_eq!(
            lex("a<=1.5e3"),
            [(Word, "a"), (Other, "<"), (Other, "="), (Literal, "1.5e3")]
        );
        assert_eq!(lex("t2.x"), [(Word, "t2"), (Other, "."), (Word, "x")]);
        assert_eq!(lex("x'1F'"), [(Literal, "x'1F'")]);
        assert_eq!(lex("U&'\\0041'"), [(Literal, "U&'\\0041'")]);
        assert_eq!(
            lex("u &'a'"),
            [
                (Word, "u"),
                (Whitespace, " "),
                (Other, "&"),
                (Literal, "'a'")
            ]
        );
        assert_eq!(lex("DATE'x'"), [(Word, "DATE"), (Literal, "'x'")]);
        assert_eq!(lex("`a``b`"), [(QuotedIdent, "`a``b`")]);
        assert_eq!(
            lex("-- a\r\nb"),
            [(Comment, "-- a"), (Whitespace, "\r\n"), (Word, "b")]
        );
        assert_eq!(
            lex("/* /* */ x */y"),
            [(Comment, "/* /* */ x */"), (Word, "y")]
        );
    }

    #[test]
    fn numbers() {
        for n in [
            "1", "1.5", ".5", "1.", "1e10", "1.2E-3", "0xFF", "0X1f", "1_000", "10L", "1e", "1e+",
        ] {
            let toks = lex(n);
            // "1e+" is `1e` and an operator: the sign only belongs to a complete exponent.
            let expected = n.trim_end_matches('+');
            assert_eq!(toks[0], (Kind::Literal, expected), "{n}");
        }
    }

    #[test]
    fn unterminated_runs_to_the_end() {
        assert_eq!(lex("'abc"), [(Kind::Literal, "'abc")]);
        assert_eq!(lex("E'a\\'"), [(Kind::Literal, "E'a\\'")]);
        assert_eq!(lex("\"abc"), [(Kind::Literal, "\"abc")]);
        assert_eq!(lex("/* abc"), [(Kind::Comment, "/* abc")]);
        assert_eq!(lex("\u{2018}abc"), [(Kind::Literal, "\u{2018}abc")]);
    }
}
