//! Request bodies are read field by field from a JSON object so that every
//! broken rule is reported in one 422 (serde would stop at the first), and
//! so that "absent" and `null` stay distinct for partial updates.

use serde_json::{Map, Value};

use super::error::{AppError, FieldError};

/// A broken rule, before it is attached to a field name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub code: &'static str,
    pub message: String,
}

impl Rule {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn length(min: usize, max: usize) -> Self {
        Self::new(
            "length",
            format!("ensure this value has between {min} and {max} characters"),
        )
    }
}

/// What a partial update says about a nullable field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch<T> {
    Keep,
    Clear,
    Set(T),
}

pub struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

enum Raw {
    Absent,
    Null,
    Text(String),
    Number(serde_json::Number),
}

impl Fields {
    pub fn new(object: Map<String, Value>) -> Self {
        Self {
            object,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, rule: Rule) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            code: rule.code,
            message: rule.message,
        });
    }

    fn take(&mut self, field: &str) -> Option<Raw> {
        match self.object.remove(field) {
            None => Some(Raw::Absent),
            Some(Value::Null) => Some(Raw::Null),
            Some(Value::String(text)) => Some(Raw::Text(text)),
            Some(Value::Number(number)) => Some(Raw::Number(number)),
            Some(_) => {
                self.fail(field, Rule::new("type", "value is not a valid string"));
                None
            }
        }
    }

    fn not_a_string<T>(&mut self, field: &str) -> Option<T> {
        self.fail(field, Rule::new("type", "value is not a valid string"));
        None
    }

    fn check<T>(
        &mut self,
        field: &str,
        text: String,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Option<T> {
        parse(text).map_err(|rule| self.fail(field, rule)).ok()
    }

    /// A field that must be present and not null.
    pub fn required<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Option<T> {
        match self.take(field)? {
            Raw::Absent | Raw::Null => {
                self.fail(field, Rule::new("required", "field required"));
                None
            }
            Raw::Text(text) => self.check(field, text, parse),
            Raw::Number(_) => self.not_a_string(field),
        }
    }

    /// A field that may be absent (left alone) but not null.
    pub fn optional<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Option<T> {
        match self.take(field)? {
            Raw::Absent => None,
            Raw::Null => {
                self.fail(field, Rule::new("not_null", "field may not be null"));
                None
            }
            Raw::Text(text) => self.check(field, text, parse),
            Raw::Number(_) => self.not_a_string(field),
        }
    }

    /// An optional positive integer id (a JSON number); null means absent.
    pub fn optional_id(&mut self, field: &str) -> Option<i64> {
        match self.take(field)? {
            Raw::Absent | Raw::Null => None,
            Raw::Number(number) => match number.as_i64().filter(|id| *id > 0) {
                Some(id) => Some(id),
                None => {
                    self.fail(field, Rule::new("id", "value is not a positive integer id"));
                    None
                }
            },
            Raw::Text(_) => {
                self.fail(field, Rule::new("type", "value is not a valid integer"));
                None
            }
        }
    }

    /// A field that may be absent (left alone) or null (cleared).
    pub fn nullable<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Patch<T> {
        match self.take(field) {
            None | Some(Raw::Absent) => Patch::Keep,
            Some(Raw::Null) => Patch::Clear,
            Some(Raw::Text(text)) => self
                .check(field, text, parse)
                .map_or(Patch::Keep, Patch::Set),
            Some(Raw::Number(_)) => self.not_a_string(field).map_or(Patch::Keep, Patch::Set),
        }
    }

    /// Ends reading: `Err` with every recorded failure, if any.
    pub fn finish(self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.errors))
        }
    }
}

/// Trims and checks a length in characters (not bytes).
pub fn trimmed(text: &str, min: usize, max: usize) -> Result<String, Rule> {
    let trimmed = text.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        return Err(Rule::length(min, max));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Fields {
        Fields::new(value.as_object().unwrap().clone())
    }

    #[test]
    fn reports_every_broken_field() {
        let mut f = fields(json!({"a": 1, "c": "x"}));
        assert!(f.required("a", Ok).is_none());
        assert!(f.required("b", Ok).is_none());
        assert!(f.required("c", |t| trimmed(&t, 2, 5)).is_none());
        let AppError::Validation(errors) = f.finish().unwrap_err() else {
            panic!("not a validation error")
        };
        let codes: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(codes, [("a", "type"), ("b", "required"), ("c", "length")]);
    }

    #[test]
    fn nullable_distinguishes_absent_null_and_value() {
        let mut f = fields(json!({"b": null, "c": "v"}));
        assert_eq!(f.nullable("a", Ok), Patch::Keep);
        assert_eq!(f.nullable("b", Ok), Patch::Clear);
        assert_eq!(f.nullable("c", Ok), Patch::Set("v".to_owned()));
        assert!(f.finish().is_ok());
    }

    #[test]
    fn lengths_count_characters_after_trimming() {
        assert_eq!(trimmed("  Ọlá ", 2, 3).unwrap(), "Ọlá");
        assert!(trimmed("   a   ", 2, 3).is_err());
    }
}
