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

    pub fn length(chars: &std::ops::RangeInclusive<usize>) -> Self {
        Self::new(
            "length",
            format!(
                "ensure this value has between {} and {} characters",
                chars.start(),
                chars.end()
            ),
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

    /// A field's value, left in place.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.object.get(field)
    }

    /// Records a rule broken by a field the caller checked itself.
    pub fn reject(&mut self, field: &str, rule: Rule) {
        self.fail(field, rule);
    }

    fn fail(&mut self, field: &str, rule: Rule) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            code: rule.code,
            message: rule.message,
        });
    }

    /// The field's value; a text PostgreSQL cannot store (U+0000) fails
    /// here, before any rule of the field runs.
    fn take(&mut self, field: &str) -> Option<Raw> {
        match self.take_any(field)? {
            Raw::Text(text) if text.contains('\0') => {
                self.fail(
                    field,
                    Rule::new("characters", "must not contain the NUL character"),
                );
                None
            }
            raw => Some(raw),
        }
    }

    fn take_any(&mut self, field: &str) -> Option<Raw> {
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
        let raw = self.take(field)?;
        self.required_raw(field, raw, parse)
    }

    /// Like `required`, but any text is passed on, even one PostgreSQL
    /// cannot store: for credentials that are compared, never stored.
    pub fn required_any_text<T>(
        &mut self,
        field: &str,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Option<T> {
        let raw = self.take_any(field)?;
        self.required_raw(field, raw, parse)
    }

    fn required_raw<T>(
        &mut self,
        field: &str,
        raw: Raw,
        parse: impl FnOnce(String) -> Result<T, Rule>,
    ) -> Option<T> {
        match raw {
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
            Raw::Number(number) => match integer(&number).filter(|id| *id > 0) {
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

    /// Reports an explicit `null` for a field that may be absent but whose
    /// type is not nullable (read next with `optional_bool` or
    /// `optional_list`, which take `null` for absent).
    pub fn refuse_null(&mut self, field: &str) {
        if self.object.get(field) == Some(&Value::Null) {
            self.object.remove(field);
            self.fail(field, Rule::new("not_null", "field may not be null"));
        }
    }

    /// An optional boolean; absent or null is `None`.
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.object.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(value)) => Some(value),
            Some(_) => {
                self.fail(field, Rule::new("type", "value is not a valid boolean"));
                None
            }
        }
    }

    /// A required array of strings, each read by `parse`; the first
    /// broken rule is reported for the field.
    pub fn required_list<T>(
        &mut self,
        field: &str,
        parse: impl Fn(String) -> Result<T, Rule>,
    ) -> Option<Vec<T>> {
        match self.object.remove(field) {
            None | Some(Value::Null) => {
                self.fail(field, Rule::new("required", "field required"));
                None
            }
            Some(value) => self.list(field, value, parse),
        }
    }

    /// An optional array of strings, each read by `parse`; absent or null
    /// is `None`.
    pub fn optional_list<T>(
        &mut self,
        field: &str,
        parse: impl Fn(String) -> Result<T, Rule>,
    ) -> Option<Vec<T>> {
        match self.object.remove(field) {
            None | Some(Value::Null) => None,
            Some(value) => self.list(field, value, parse),
        }
    }

    fn list<T>(
        &mut self,
        field: &str,
        value: Value,
        parse: impl Fn(String) -> Result<T, Rule>,
    ) -> Option<Vec<T>> {
        let Value::Array(values) = value else {
            self.fail(field, Rule::new("type", "value is not a valid list"));
            return None;
        };
        let mut parsed = Vec::with_capacity(values.len());
        for value in values {
            let rule = match value {
                Value::String(text) if text.contains('\0') => {
                    Rule::new("characters", "must not contain the NUL character")
                }
                Value::String(text) => match parse(text) {
                    Ok(item) => {
                        parsed.push(item);
                        continue;
                    }
                    Err(rule) => rule,
                },
                _ => Rule::new("type", "every entry must be a string"),
            };
            self.fail(field, rule);
            return None;
        }
        Some(parsed)
    }

    /// A query parameter that may be repeated: all its values, in order.
    pub fn repeated(&mut self, field: &str) -> Option<Vec<String>> {
        let values = match self.object.remove(field)? {
            Value::String(text) => vec![text],
            Value::Array(items) => items
                .into_iter()
                .filter_map(|item| match item {
                    Value::String(text) => Some(text),
                    _ => None,
                })
                .collect(),
            _ => {
                self.fail(field, Rule::new("type", "value is not a valid string"));
                return None;
            }
        };
        if values.iter().any(|value| value.contains('\0')) {
            self.fail(
                field,
                Rule::new("characters", "must not contain the NUL character"),
            );
            return None;
        }
        Some(values)
    }

    /// An optional integer within `range`; absent or null is `None`.
    pub fn optional_integer(
        &mut self,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let outside = || {
            Rule::new(
                "range",
                format!(
                    "ensure this value is an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        };
        match self.object.remove(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(number)) => match integer(&number).filter(|n| range.contains(n)) {
                Some(n) => Some(n),
                None => {
                    self.fail(field, outside());
                    None
                }
            },
            Some(_) => {
                self.fail(field, Rule::new("type", "value is not a valid integer"));
                None
            }
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

/// A JSON number that is an integer in JSON Schema's sense (`7` or `7.0`)
/// and fits in an `i64`.
fn integer(number: &serde_json::Number) -> Option<i64> {
    // 2^63 is exact as a float; every integral float below it converts exactly.
    const BEYOND_I64: f64 = 9_223_372_036_854_775_808.0;
    number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|value| value.fract() == 0.0 && value.abs() < BEYOND_I64)
            .map(|value| value as i64)
    })
}

/// A non-negative integer in a query string or path: ASCII digits, with
/// an all-zero fraction allowed (`7.0` is an integer to JSON Schema), no
/// sign, spaces or exponent, within `i64`.
pub fn digits(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(fraction) || fraction.bytes().any(|b| b != b'0') {
        return None;
    }
    whole.parse().ok()
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
        assert!(f
            .required("c", |_| Err::<(), _>(Rule::length(&(2..=5))))
            .is_none());
        let AppError::Validation(errors) = f.finish().unwrap_err() else {
            panic!("not a validation error")
        };
        let codes: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(codes, [("a", "type"), ("b", "required"), ("c", "length")]);
    }

    #[test]
    fn text_postgresql_cannot_store_is_refused_before_any_rule() {
        let mut f = fields(json!({"a": "x\0y", "b": "p\0w", "c": null}));
        assert!(f.required("a", Ok).is_none());
        assert_eq!(f.required_any_text("b", Ok).as_deref(), Some("p\0w"));
        assert_eq!(f.nullable("c", Ok), Patch::Clear);
        let AppError::Validation(errors) = f.finish().unwrap_err() else {
            panic!("not a validation error")
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code),
            ("a", "characters")
        );
    }

    #[test]
    fn ids_are_integers_in_the_json_schema_sense() {
        let mut f =
            fields(json!({"a": 7, "b": 7.0, "c": 7.5, "d": 9223372036854775808u64, "e": -1}));
        assert_eq!(f.optional_id("a"), Some(7));
        assert_eq!(f.optional_id("b"), Some(7));
        for field in ["c", "d", "e"] {
            assert_eq!(f.optional_id(field), None, "{field}");
        }
        let AppError::Validation(errors) = f.finish().unwrap_err() else {
            panic!("not a validation error")
        };
        assert_eq!(errors.len(), 3);
    }

    #[test]
    fn query_integers_are_plain_digits() {
        assert_eq!(digits("42"), Some(42));
        assert_eq!(digits("007"), Some(7));
        assert_eq!(digits("7.00"), Some(7));
        for bad in [
            "",
            "+5",
            " 5",
            "-1",
            "1e3",
            "5.5",
            "5.",
            ".0",
            "9223372036854775808",
        ] {
            assert_eq!(digits(bad), None, "{bad}");
        }
    }

    #[test]
    fn nullable_distinguishes_absent_null_and_value() {
        let mut f = fields(json!({"b": null, "c": "v"}));
        assert_eq!(f.nullable("a", Ok), Patch::Keep);
        assert_eq!(f.nullable("b", Ok), Patch::Clear);
        assert_eq!(f.nullable("c", Ok), Patch::Set("v".to_owned()));
        assert!(f.finish().is_ok());
    }
}
