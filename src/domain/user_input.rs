//! The user fields of the contract (§2), each validated once, here.

use std::fmt;

use phonenumber::{country, Mode};
use serde_json::{Map, Value};
use validator::ValidateEmail;

use super::error::AppError;
use super::validation::{trimmed, Fields, Rule};
use crate::db::models::UserChanges;

/// Which phone numbers are accepted and how national forms are read.
#[derive(Debug, Clone)]
pub struct PhonePolicy {
    pub allowed: Vec<country::Id>,
    pub default_region: country::Id,
}

impl PhonePolicy {
    /// Parses, validates and formats as E.164.
    pub fn normalise(&self, raw: &str) -> Result<String, Rule> {
        let invalid = || Rule::new("phone", "Phone number is not a valid number");
        let number =
            phonenumber::parse(Some(self.default_region), raw.trim()).map_err(|_| invalid())?;
        if !number.is_valid() {
            return Err(invalid());
        }
        match number.country().id() {
            Some(region) if self.allowed.contains(&region) => {
                Ok(number.format().mode(Mode::E164).to_string())
            }
            region => Err(Rule::new(
                "phone_region",
                format!(
                    "Phone numbers from {} are not accepted",
                    region.map_or_else(|| "this region".to_owned(), |r| format!("{r:?}"))
                ),
            )),
        }
    }

    /// The first parse loads libphonenumber's metadata (slow); do it at
    /// startup, not in a client's request.
    pub fn warm_up(&self) {
        let _ = phonenumber::parse(Some(country::Id::NG), "+2348012345678");
    }
}

pub fn parse_name(raw: String) -> Result<String, Rule> {
    let name = trimmed(&raw, 2, 100)?;
    if !name.chars().any(char::is_alphabetic) {
        return Err(Rule::new("letter", "name must contain at least one letter"));
    }
    Ok(name)
}

/// Trims, checks the address and lower-cases the domain (the local part is
/// kept as typed; uniqueness ignores case on the whole address).
pub fn parse_email(raw: String) -> Result<String, Rule> {
    let invalid = || Rule::new("email", "value is not a valid email address");
    let email = raw.trim();
    if email.chars().count() > 254 || !email.validate_email() {
        return Err(invalid());
    }
    let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

pub fn parse_place(raw: String) -> Result<String, Rule> {
    trimmed(&raw, 2, 100)
}

/// A plain-text password: never printed, never serialised.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Rule> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(Rule::length(8, 128));
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
    /// Only presence is checked: a malformed email simply matches nobody,
    /// which answers 401 like any other wrong login.
    pub fn parse(body: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(body);
        let email = fields.required("email", |raw| Ok(raw.trim().to_owned()));
        let password = fields.required("password", Ok);
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
        PhonePolicy {
            allowed: vec![country::Id::NG],
            default_region: country::Id::NG,
        }
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
        for bad in ["", "no-at", "a@", "@x.io", "a b@x.io"] {
            assert!(parse_email(bad.into()).is_err(), "{bad}");
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
        let uk = PhonePolicy {
            allowed: vec![country::Id::NG, country::Id::GB],
            ..nigeria()
        };
        assert_eq!(uk.normalise("+44 7400 123456").unwrap(), "+447400123456");
    }

    #[test]
    fn passwords_are_redacted_in_debug_output() {
        let password = Password::parse("correct horse".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
        assert!(Password::parse("short".into()).is_err());
    }
}
