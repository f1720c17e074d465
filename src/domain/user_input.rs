//! The user fields of the API, each validated once, here.

use std::fmt;

use super::error::AppError;
use super::rules::{self, Pattern, EMAIL_MAX_CHARS, NAME_CHARS, PASSWORD_CHARS, PLACE_CHARS};
use super::validation::{Fields, Rule};
use crate::db::models::UserChanges;
use phonenumber::{country, Mode};
use serde_json::{Map, Value};

/// Which phone numbers are accepted and how national forms are read.
pub struct PhonePolicy {
    allowed: Vec<country::Id>,
    default_region: country::Id,
    /// The spellings accepted, published as the OpenAPI `pattern`.
    spelling: Pattern,
    /// E.164 holds at most 15 digits (some metadata allows longer ones).
    digits: Pattern,
}

/// The most digits of an E.164 number, country code included.
const E164_MAX_DIGITS: usize = 15;

/// What may stand between two digits of a number (one at a time).
const SEPARATOR: &str = "[ -]?";

impl PhonePolicy {
    /// For each allowed region its E.164 form (`+234…`), for the default
    /// region also its national forms (`0…`, or without the prefix), each
    /// built from libphonenumber's own patterns of the region's valid number
    /// types, with a space or dash allowed after every digit.
    pub fn new(allowed: Vec<country::Id>, default_region: country::Id) -> Self {
        let mut spellings = Vec::new();
        let mut lengths = Vec::new();
        for region in &allowed {
            let Some(metadata) = phonenumber::metadata::DATABASE.by_id(region.as_ref()) else {
                continue;
            };
            let code = metadata.country_code();
            let prefix = match (region == &default_region, metadata.national_prefix()) {
                (true, Some(national)) => {
                    format!(r"(?:\+{code}{SEPARATOR}|{national}{SEPARATOR})?")
                }
                (true, None) => format!(r"(?:\+{code}{SEPARATOR})?"),
                (false, _) => format!(r"\+{code}{SEPARATOR}"),
            };
            let national_digits = E164_MAX_DIGITS - code.to_string().len();
            spellings.push(format!("{prefix}{}", valid_national_numbers(metadata)));
            lengths.push(format!(
                "{prefix}(?:[0-9]{SEPARATOR}){{1,{national_digits}}}"
            ));
        }
        Self {
            allowed,
            default_region,
            spelling: Pattern::new(rules::padded(&spellings.join("|"))),
            digits: Pattern::new(rules::padded(&lengths.join("|"))),
        }
    }

    /// The sources of the patterns an accepted number matches, both.
    pub fn patterns(&self) -> [&str; 2] {
        [&self.spelling.source, &self.digits.source]
    }

    /// Parses, validates and formats as E.164. A valid number of a region
    /// that is not allowed is told apart from an invalid one.
    pub fn normalise(&self, raw: &str) -> Result<String, Rule> {
        let invalid = || Rule::new("phone", "Phone number is not a valid number");
        // The separators go first: the parser misreads some of them
        // (`+234706-3162858` overflows it).
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        let number =
            phonenumber::parse(Some(self.default_region), &compact).map_err(|_| invalid())?;
        if !number.is_valid() {
            return Err(invalid());
        }
        match number.country().id() {
            Some(region) if self.allowed.contains(&region) => {}
            region => {
                return Err(Rule::new(
                    "phone_region",
                    format!(
                        "Phone numbers from {} are not accepted",
                        region.map_or_else(|| "this region".to_owned(), |r| format!("{r:?}"))
                    ),
                ))
            }
        }
        // libphonenumber skips what it does not understand ("0801 234 5678 *"
        // is read); only the published spellings are accepted.
        if !self.spelling.matches(raw) || !self.digits.matches(raw) {
            return Err(invalid());
        }
        Ok(number.format().mode(Mode::E164).to_string())
    }

    /// The first parse loads libphonenumber's metadata (slow); do it at
    /// startup, not in a client's request.
    pub fn warm_up(&self) {
        let _ = phonenumber::parse(Some(country::Id::NG), "+2348012345678");
    }
}

/// The union of the region's number types that `is_valid` accepts, without
/// the metadata's layout whitespace and with `\d` spelled `[0-9]` (it means
/// every Unicode digit to some engines).
fn valid_national_numbers(metadata: &phonenumber::Metadata) -> String {
    let types = metadata.descriptors();
    let patterns: Vec<String> = [
        types.fixed_line(),
        types.mobile(),
        types.toll_free(),
        types.premium_rate(),
        types.shared_cost(),
        types.personal_number(),
        types.voip(),
        types.pager(),
        types.uan(),
        types.voicemail(),
    ]
    .into_iter()
    .flatten()
    .map(|descriptor| {
        let source: String = descriptor
            .national_number()
            .as_str()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        format!("(?:{})", with_separators(&source.replace(r"\d", "[0-9]")))
    })
    .collect();
    format!("(?:{})", patterns.join("|"))
}

/// Every digit atom of a libphonenumber pattern (a literal digit or a
/// class) followed by an optional `SEPARATOR`; quantifiers then repeat the
/// pair.
fn with_separators(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 3);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                let class: String = chars.by_ref().take_while(|&d| d != ']').collect();
                out.push_str(&format!("(?:[{class}]{SEPARATOR})"));
            }
            '{' => {
                let bounds: String = chars.by_ref().take_while(|&d| d != '}').collect();
                out.push_str(&format!("{{{bounds}}}"));
            }
            '0'..='9' => out.push_str(&format!("(?:{c}{SEPARATOR})")),
            other => out.push(other),
        }
    }
    out
}

pub fn parse_name(raw: String) -> Result<String, Rule> {
    if !rules::NAME.matches(&raw) {
        return Err(Rule::length(&NAME_CHARS));
    }
    if !rules::HAS_LETTER.matches(&raw) {
        return Err(Rule::new("letter", "name must contain at least one letter"));
    }
    Ok(raw.trim().to_owned())
}

/// Trims, checks the address and lower-cases the domain (the local part is
/// kept as typed; uniqueness ignores case on the whole address).
pub fn parse_email(raw: String) -> Result<String, Rule> {
    let invalid = || Rule::new("email", "value is not a valid email address");
    if raw.chars().count() > EMAIL_MAX_CHARS || !rules::EMAIL.matches(&raw) {
        return Err(invalid());
    }
    let (local, domain) = raw.trim().rsplit_once('@').ok_or_else(invalid)?;
    Ok(format!("{local}@{}", domain.to_ascii_lowercase()))
}

pub fn parse_place(raw: String) -> Result<String, Rule> {
    if !rules::PLACE.matches(&raw) {
        return Err(Rule::length(&PLACE_CHARS));
    }
    Ok(raw.trim().to_owned())
}

/// A plain-text password: never printed, never serialised.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Rule> {
        if !PASSWORD_CHARS.contains(&raw.chars().count()) {
            return Err(Rule::length(&PASSWORD_CHARS));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(**redacted**)")
    }
}

#[derive(Debug)]
pub struct Signup {
    pub name: String,
    pub email: String,
    pub phone_number: String,
    pub country: String,
    pub state: String,
    pub password: Password,
}

impl Signup {
    pub fn parse(body: Map<String, Value>, phones: &PhonePolicy) -> Result<Self, AppError> {
        let mut fields = Fields::new(body);
        let name = fields.required("name", parse_name);
        let email = fields.required("email", parse_email);
        let phone_number = fields.required("phone_number", |raw| phones.normalise(&raw));
        let country = fields.required("country", parse_place);
        let state = fields.required("state", parse_place);
        let password = fields.required("password", Password::parse);
        fields.finish()?;
        match (name, email, phone_number, country, state, password) {
            (
                Some(name),
                Some(email),
                Some(phone_number),
                Some(country),
                Some(state),
                Some(password),
            ) => Ok(Self {
                name,
                email,
                phone_number,
                country,
                state,
                password,
            }),
            _ => unreachable!("Fields::finish reports every missing field"),
        }
    }
}

#[derive(Debug)]
pub struct Login {
    pub email: String,
    pub password: String,
}

impl Login {
    /// Only presence is checked: a malformed email (even one PostgreSQL
    /// could not store) simply matches nobody, which answers 401 like any
    /// other wrong login.
    pub fn parse(body: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(body);
        let email = fields.required_any_text("email", |raw| Ok(raw.trim().to_owned()));
        let password = fields.required_any_text("password", Ok);
        fields.finish()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(Self { email, password }),
            _ => unreachable!("Fields::finish reports every missing field"),
        }
    }
}

/// `PUT`/`PATCH /users/{id}`: absent fields are left alone.
pub fn parse_user_changes(
    body: Map<String, Value>,
    phones: &PhonePolicy,
) -> Result<UserChanges, AppError> {
    let mut fields = Fields::new(body);
    let changes = UserChanges {
        name: fields.optional("name", parse_name),
        email: fields.optional("email", parse_email),
        phone_number: fields.optional("phone_number", |raw| phones.normalise(&raw)),
        country: fields.optional("country", parse_place),
        state: fields.optional("state", parse_place),
    };
    fields.finish()?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nigeria() -> PhonePolicy {
        PhonePolicy::new(vec![country::Id::NG], country::Id::NG)
    }

    #[test]
    fn names_need_a_letter_in_any_script() {
        for ok in ["Chloé", "Ọlá", "Jörg", "李雷", "  Ann  "] {
            assert!(parse_name(ok.into()).is_ok(), "{ok}");
        }
        for bad in ["12345", "---", "a", " ", &"x".repeat(101)] {
            assert!(parse_name(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_keep_the_local_part_and_lower_the_domain() {
        assert_eq!(
            parse_email(" Ann.B@Example.COM ".into()).unwrap(),
            "Ann.B@example.com"
        );
        // The address rule itself is tested with the pattern (rules.rs).
        for bad in ["no-at".to_owned(), format!("a@{}.io", "x".repeat(250))] {
            assert!(parse_email(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_become_e164_and_must_be_valid_and_allowed() {
        let policy = nigeria();
        assert_eq!(policy.normalise("0801 234 5678").unwrap(), "+2348012345678");
        assert_eq!(
            policy.normalise("+234 801 234 5678").unwrap(),
            "+2348012345678"
        );
        assert_eq!(policy.normalise("12").unwrap_err().code, "phone");
        assert_eq!(policy.normalise("+234 123").unwrap_err().code, "phone");
        assert_eq!(
            policy.normalise("+44 7400 123456").unwrap_err().code,
            "phone_region"
        );
        let uk = PhonePolicy::new(vec![country::Id::NG, country::Id::GB], country::Id::NG);
        assert_eq!(uk.normalise("+44 7400 123456").unwrap(), "+447400123456");
    }

    #[test]
    fn the_published_phone_patterns_admit_only_accepted_numbers() {
        let policy = nigeria();
        let [spelling, digits] = policy
            .patterns()
            .map(|source| regex::Regex::new(source).unwrap());
        let published = |number: &str| spelling.is_match(number) && digits.is_match(number);
        let metadata = phonenumber::metadata::DATABASE.by_id("NG").unwrap();
        let types = metadata.descriptors();
        let examples: Vec<&str> = [
            types.fixed_line(),
            types.mobile(),
            types.toll_free(),
            types.uan(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|descriptor| descriptor.example())
        .collect();
        assert_eq!(examples.len(), 4);
        for example in examples {
            let spaced: String = example.chars().flat_map(|d| [d, ' ']).collect();
            for form in [
                format!("+234{example}"),
                format!("0{example}"),
                format!(" {example} "),
                format!("+234 {spaced}"),
                format!("0-{}", spaced.trim_end().replace(' ', "-")),
                format!("+234{}-{}", &example[..3], &example[3..]),
            ] {
                assert!(published(&form), "{form}");
                assert!(policy.normalise(&form).is_ok(), "{form}");
            }
        }
        for other in [
            "+447400123456",
            "12",
            "+234123",
            "0801 234 5678 *",
            "+2340801234567",
            "0801  2345678",
        ] {
            assert!(!published(other), "{other}");
            assert!(policy.normalise(other).is_err(), "{other}");
        }
        // Every number the patterns admit is accepted, whatever its prefix.
        for prefix in 200..=999 {
            for tail in ["1234567", "12345678901"] {
                let number = format!("+234{prefix}{tail}");
                assert_eq!(
                    published(&number),
                    policy.normalise(&number).is_ok(),
                    "{number}"
                );
            }
        }
    }

    #[test]
    fn passwords_are_redacted_in_debug_output() {
        let password = Password::parse("correct horse".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
        assert!(Password::parse("short".into()).is_err());
    }
}
