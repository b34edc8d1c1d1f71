//! Fuzzes the literal redactor with arbitrary text: it must never panic, redacting must
//! be idempotent, and a marked value must never survive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_shared::redact::{fingerprint, redact_message, redact_sql};

const MARKER: &str = "SECRET123";

fuzz_target!(|data: &[u8]| {
    // Every input becomes text (invalid bytes as U+FFFD), so no input is wasted.
    let text = String::from_utf8_lossy(data);

    let sql = redact_sql(&text);
    assert_eq!(redact_sql(&sql), sql, "redacting twice changed {text:?}");
    assert_eq!(
        fingerprint(&text),
        fingerprint(&sql),
        "fingerprint saw a value"
    );

    // Redaction is local: a value in front of any text becomes `?` (its type keyword and
    // comment markers stay) and the text after it is redacted exactly as on its own.
    for (marked, redacted) in [
        (format!("'{MARKER}' "), "? "),
        (format!("E'{MARKER}\\'' "), "? "),
        (format!("U&'{MARKER}' "), "? "),
        (format!("DATE '{MARKER}' "), "DATE ? "),
        (format!("/* {MARKER} */ "), "/* ? */ "),
        (format!("-- {MARKER}\n"), "-- ?\n"),
    ] {
        assert_eq!(redact_sql(&(marked + &text)), format!("{redacted}{sql}"));
    }
    // Text that cannot open a string, quoted identifier or comment ends at the top level,
    // so a value after it is redacted too.
    let opens = [
        '\'', '"', '`', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}',
    ];
    if !text.contains(opens) && !text.contains("--") && !text.contains("/*") {
        let out = redact_sql(&format!("{text}\n'{MARKER}'\n{text}"));
        assert_eq!(out, format!("{sql}\n?\n{sql}"));
    }

    // Messages: no digit survives anywhere, so neither does the marker.
    let msg = redact_message(&text);
    assert!(!msg.bytes().any(|b| b.is_ascii_digit()), "digit in {msg:?}");
    let msg = redact_message(&format!("{text}'{MARKER}'"));
    assert!(!msg.contains(MARKER), "{MARKER} survived in {msg:?}");
});
