//! The shape of every text the service accepts, written once as a regular
//! expression that the validators check and the OpenAPI document publishes
//! as `pattern`, so a schema-driven client (or fuzzer) and the server agree
//! on every string by construction.
//!
//! The patterns use only syntax that reads the same in Rust's `regex`,
//! ECMA-262 with the `u` flag (what JSON Schema means) and Python's `re`:
//! explicit classes instead of `\s`, `\d` or `\w`, whose meaning differs
//! between those engines. None of them admits U+0000, which PostgreSQL text
//! cannot hold.

use std::ops::RangeInclusive;
use std::sync::LazyLock;

use regex::Regex;

/// Rust's `char::is_whitespace` (Unicode `White_Space`): what `str::trim`
/// removes.
const WHITESPACE: &str =
    r"\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// Any character PostgreSQL can store.
const STORABLE: &str = r"[^\u0000]";

/// A string PostgreSQL can store (no U+0000).
pub const STORABLE_TEXT: &str = r"^[^\u0000]*$";

/// A text that holds at least one character other than whitespace.
fn not_blank() -> String {
    format!(r"[^\u0000{WHITESPACE}]")
}

/// A text whose trimmed form has `chars` characters (at least two); any
/// whitespace around it is allowed (and trimmed away).
fn trimmed_length(chars: RangeInclusive<usize>) -> String {
    let (min, max) = (*chars.start(), *chars.end());
    assert!(
        min >= 1 && max >= min.max(2),
        "a trimmed rule has an inner part"
    );
    let inner = format!(
        "{STORABLE}{{{},{}}}{edge}",
        min.max(2) - 2,
        max - 2,
        edge = not_blank()
    );
    // One character is an edge alone; more are two edges around the rest.
    let rest = if min == 1 {
        format!("(?:{inner})?")
    } else {
        inner
    };
    format!(
        r"^[{WHITESPACE}]*{edge}{rest}[{WHITESPACE}]*$",
        edge = not_blank(),
    )
}

/// `inner`, with any whitespace around it (trimmed away).
pub fn padded(inner: &str) -> String {
    format!(r"^[{WHITESPACE}]*(?:{inner})[{WHITESPACE}]*$")
}

/// Trimmed lengths, in characters.
pub const NAME_CHARS: RangeInclusive<usize> = 2..=100;
pub const PLACE_CHARS: RangeInclusive<usize> = 2..=100;
pub const TITLE_CHARS: RangeInclusive<usize> = 3..=200;
pub const TOKEN_NAME_CHARS: RangeInclusive<usize> = 1..=100;

/// Unicode general category L spelled out as a class: `\p{L}` is read as
/// Latin letters only by some generators (schemathesis translates it so for
/// Python's `re`, which has no `\p`), which then call `李雷` letter-free.
/// BMP code points as `\uXXXX`, the others as themselves (the three engines
/// share no escape for them).
fn letter_class() -> String {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new()
        .parse(r"\p{L}")
        .expect("\\p{L} parses");
    let HirKind::Class(Class::Unicode(letters)) = hir.kind() else {
        unreachable!("\\p{{L}} is a Unicode class")
    };
    let spell = |c: char| {
        if (c as u32) <= 0xFFFF {
            format!(r"\u{:04X}", c as u32)
        } else {
            c.to_string()
        }
    };
    let mut class = String::from("[");
    for range in letters.ranges() {
        class.push_str(&spell(range.start()));
        if range.end() != range.start() {
            class.push('-');
            class.push_str(&spell(range.end()));
        }
    }
    class.push(']');
    class
}

/// One DNS label: letters, digits and inner hyphens, at most 63 characters.
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

/// The WHATWG "valid e-mail address" (what browsers check), with the
/// RFC 5321 limit of 64 characters before the `@`; whitespace around it is
/// trimmed. ASCII domains only: internationalised ones in their `xn--` form.
fn email() -> String {
    format!(
        r"^[{WHITESPACE}]*[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{LABEL}(?:\.{LABEL})*[{WHITESPACE}]*$"
    )
}

/// As sent, whitespace included.
pub const EMAIL_MAX_CHARS: usize = 254;

pub const PASSWORD_CHARS: RangeInclusive<usize> = 8..=128;

/// A content body, kept as written (not trimmed).
pub const BODY_CHARS: RangeInclusive<usize> = 10..=100_000;

/// A slug, in characters (ASCII: bytes too).
pub const SLUG_CHARS: RangeInclusive<usize> = 1..=200;
/// A tag, once normalised; longer ones are cut.
pub const TAG_MAX_CHARS: usize = 50;
/// Tags of one item, and `?tag=` filters of one listing.
pub const MAX_TAGS: usize = 10;

/// A search query as sent, before its whitespace is collapsed.
pub const SEARCH_MAX_CHARS: usize = 200;

/// An absolute `http`/`https` URL with a host name (no user info, no IP
/// literal) and an optional port, path, query and fragment of URL
/// characters; whitespace around it is trimmed. The last host label starts
/// with a letter, so that no host reads as an IPv4 address.
fn http_url() -> String {
    let port =
        "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    format!(
        r"^[{WHITESPACE}]*[Hh][Tt][Tt][Pp][Ss]?://(?:{LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?(?::{port})?(?:[/?#][A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*)?[{WHITESPACE}]*$"
    )
}

/// As sent, whitespace included.
pub const URL_MAX_CHARS: usize = 2048;

/// A compiled pattern: its source for the OpenAPI document, its regex for
/// the validators.
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl Pattern {
    pub fn new(source: String) -> Self {
        let regex = Regex::new(&source).expect("the patterns are valid regular expressions");
        Self { source, regex }
    }

    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

macro_rules! pattern {
    ($(#[$doc:meta])* $name:ident = $source:expr) => {
        $(#[$doc])*
        pub static $name: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(($source).to_string()));
    };
}

pattern!(NAME = trimmed_length(NAME_CHARS));
pattern!(
    /// At least one letter of any script (Unicode general category L).
    HAS_LETTER = letter_class()
);
pattern!(PLACE = trimmed_length(PLACE_CHARS));
pattern!(EMAIL = email());
pattern!(TITLE = trimmed_length(TITLE_CHARS));
pattern!(TOKEN_NAME = trimmed_length(TOKEN_NAME_CHARS));
pattern!(NOT_BLANK = not_blank());
pattern!(HTTP_URL = http_url());
pattern!(
    /// Keyset position in a content listing: `{position}.{id}`, where
    /// position is microseconds since 1970 (newest-first listings) or the
    /// bits of the search rank (searches). At most 16 digits keep every
    /// position a valid timestamp; ids stay below `i64::MAX`.
    CONTENT_CURSOR = r"^[0-9]{1,16}\.[1-9][0-9]{0,17}$"
);
pattern!(
    /// A slug a client chooses: lower-case ASCII letters and digits in runs
    /// joined by single hyphens (what a generated slug looks like).
    SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
);
pattern!(
    /// Keyset position in the user listing: the last id seen.
    ID_CURSOR = r"^[1-9][0-9]{0,17}$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_character_minimum_accepts_one_character() {
        let rule = &*TOKEN_NAME;
        for ok in ["a", " a ", "ab", &"x".repeat(100)] {
            assert!(rule.matches(ok), "{ok:?}");
        }
        for bad in ["", "   ", &"x".repeat(101), "a\0"] {
            assert!(!rule.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn trimmed_lengths_count_the_inner_characters() {
        let rule = &*NAME;
        for ok in [
            "ab",
            "  Ọlá ",
            "a b",
            "\u{3000}Jörg\u{2029}",
            &"x".repeat(100),
        ] {
            assert!(rule.matches(ok), "{ok:?}");
        }
        for bad in ["a", "  a  ", "", "a\0b", &"x".repeat(101), " \u{85} "] {
            assert!(!rule.matches(bad), "{bad:?}");
        }
        // The padding is exactly the whitespace str::trim removes: around one
        // character it leaves too short a name, any other character counts.
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let expected = c != '\0' && !c.is_whitespace();
            assert_eq!(
                rule.matches(&format!("{c}a{c}")),
                expected,
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn letters_are_unicode_letters() {
        for ok in ["Chloé", "李雷", "Ọlá", "a1"] {
            assert!(HAS_LETTER.matches(ok), "{ok}");
        }
        for bad in ["12345", "---", "²½Ⅻ", "\u{345}"] {
            assert!(!HAS_LETTER.matches(bad), "{bad}");
        }
        let letter = regex::Regex::new(r"\p{L}").unwrap();
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let text = c.to_string();
            assert_eq!(
                HAS_LETTER.matches(&text),
                letter.is_match(&text),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn emails_follow_the_whatwg_rule() {
        for ok in [
            "a@b",
            "Ann.B+tag@Example.COM",
            " x@y.io\t",
            &format!("{}@x.io", "l".repeat(64)),
        ] {
            assert!(EMAIL.matches(ok), "{ok}");
        }
        for bad in [
            "",
            "no-at",
            "a@",
            "@x.io",
            "a b@x.io",
            "a@-x.io",
            "a@x..io",
            "a@bücher.de",
            &format!("{}@x.io", "l".repeat(65)),
        ] {
            assert!(!EMAIL.matches(bad), "{bad}");
        }
    }

    #[test]
    fn urls_are_absolute_http_with_a_host_name() {
        for ok in [
            "https://example.com/a.png",
            "HTTP://example.com",
            "http://localhost:8080/x?y=1#z",
            " https://a.b/%20 ",
        ] {
            assert!(HTTP_URL.matches(ok), "{ok}");
            assert!(url_parses(ok.trim()), "{ok}");
        }
        for bad in [
            "ftp://x.io/a",
            "/relative.png",
            "https://",
            "javascript:alert(1)",
            "http://1.2.3.4/",
            "http://a.b:65536/",
            "http://a b/",
            "http://user@host/",
        ] {
            assert!(!HTTP_URL.matches(bad), "{bad}");
        }
    }

    fn url_parses(text: &str) -> bool {
        use validator::ValidateUrl;
        text.validate_url()
    }

    #[test]
    fn cursors_are_bounded_numbers() {
        assert!(CONTENT_CURSOR.matches("1795311370478880.9"));
        assert!(CONTENT_CURSOR.matches("0.1"));
        for bad in [
            "",
            "1.0",
            "12345678901234567.1",
            "1.1234567890123456789",
            "a.1",
            "1",
        ] {
            assert!(!CONTENT_CURSOR.matches(bad), "{bad}");
        }
        assert!(ID_CURSOR.matches("42"));
        for bad in ["0", "-1", "01", "1234567890123456789"] {
            assert!(!ID_CURSOR.matches(bad), "{bad}");
        }
    }
}
