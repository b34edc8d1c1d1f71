//! Error messages: [`redact_message`].

use super::lexer::{SMART_QUOTES, is_digit};

/// English contractions: a `'` between a word and one of these (then a non-letter) is an
/// apostrophe (`doesn't`, `cluster's`), not the start of a quoted value.
const CONTRACTIONS: [&str; 7] = ["s", "t", "d", "m", "re", "ve", "ll"];

/// Replaces the values an error message may quote with `?`: every `'…'`, `"…"`,
/// `` `…` `` or typographic-quoted span, and every number, including digits inside words
/// (`id123` → `id?`) and positions (`line 1:8:` → `line ?:?:`).
///
/// Presto quotes values taken from table rows (`Cannot cast 'abc' to INT`) and echoes
/// identifiers (`Column 'emial' cannot be resolved`); both are redacted, since a message
/// cannot tell them apart. An unterminated quote redacts the rest of the message. A
/// value the message does not quote and that has no digit is not recognised and stays.
pub fn redact_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut prev: Option<char> = None;
    let mut rest = msg;
    while let Some(c) = rest.chars().next() {
        let after = &rest[c.len_utf8()..];
        let len = if is_digit(c) {
            number_len(rest)
        } else if is_apostrophe(prev, c, after) {
            0
        } else if matches!(c, '\'' | '"' | '`') {
            c.len_utf8() + closing(after, |q| q == c)
        } else if SMART_QUOTES.contains(&c) {
            c.len_utf8() + closing(after, |q| SMART_QUOTES.contains(&q))
        } else {
            0
        };
        if len == 0 {
            out.push(c);
            rest = after;
            prev = Some(c);
        } else {
            out.push('?');
            rest = &rest[len..];
            prev = Some('?');
        }
    }
    out
}

/// Length after an opening quote up to and including the closing one (a doubled quote
/// stays inside), or of the whole rest when there is none.
fn closing(body: &str, is_quote: impl Fn(char) -> bool) -> usize {
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if is_quote(c) {
            match chars.peek() {
                Some(&(_, n)) if n == c => {
                    chars.next();
                }
                _ => return i + c.len_utf8(),
            }
        }
    }
    body.len()
}

/// A number and whatever is glued to it: digits, `.`/`,` between digits, and letters
/// (`0xFF`, `1.5e3`, `10GB`, `1,234.5`).
fn number_len(s: &str) -> usize {
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let glued = c.is_alphanumeric() || c == '_';
        let separator = matches!(c, '.' | ',') && chars.peek().is_some_and(|&(_, n)| is_digit(n));
        if !glued && !separator {
            return i;
        }
    }
    s.len()
}

fn is_apostrophe(prev: Option<char>, c: char, after: &str) -> bool {
    if c != '\'' || !prev.is_some_and(char::is_alphabetic) {
        return false;
    }
    let word = after
        .find(|c: char| !c.is_alphanumeric())
        .unwrap_or(after.len());
    let follows = after[word..].chars().next();
    CONTRACTIONS.contains(&after[..word].to_ascii_lowercase().as_str())
        && !follows.is_some_and(|f| matches!(f, '\'' | '"' | '`') || SMART_QUOTES.contains(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn redacts(msg: &str, expected: &str) {
        assert_eq!(redact_message(msg), expected, "input: {msg}");
    }

    #[test]
    fn presto_messages() {
        redacts("Cannot cast 'abc' to INT", "Cannot cast ? to INT");
        redacts(
            "Value 4111111111111111 exceeds MAX_INT",
            "Value ? exceeds MAX_INT",
        );
        redacts(
            "line 1:8: Column 'emial' cannot be resolved",
            "line ?:?: Column ? cannot be resolved",
        );
        redacts(
            "line 3:14: mismatched input '\"x\"'. Expecting: <expression>",
            "line ?:?: mismatched input ?. Expecting: <expression>",
        );
        redacts(
            "Cannot cast VARCHAR(5) \"it\"\"s\" to DATE",
            "Cannot cast VARCHAR(?) ? to DATE",
        );
        redacts(
            "Query exceeded per-node memory limit of 1.5GB [Allocated: 2,048.25MB]",
            "Query exceeded per-node memory limit of ? [Allocated: ?]",
        );
    }

    #[test]
    fn digits_inside_words_and_hex() {
        redacts("id123 and 0xDEADBEEF and 1.2E-3", "id? and ? and ?-?");
        redacts("2024-01-02 03:04:05", "?-?-? ?:?:?");
        redacts("fullwidth ４１１１", "fullwidth ?");
    }

    #[test]
    fn unterminated_quote_redacts_the_rest() {
        redacts("Cannot cast 'it's' to INT", "Cannot cast ?s?");
        redacts("bad value: \"abc", "bad value: ?");
        redacts("bad ‘alice’ and “bob", "bad ? and ?");
    }

    #[test]
    fn apostrophes_in_prose_stay() {
        redacts(
            "The cluster's memory doesn't suffice, we'll retry",
            "The cluster's memory doesn't suffice, we'll retry",
        );
        redacts("Table 'a' isn't 'b'", "Table ? isn't ?");
        redacts("x'alice' y", "x? y");
        redacts("x's'", "x?");
    }
}
