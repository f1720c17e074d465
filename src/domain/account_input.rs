//! The request bodies of the account endpoints (sessions, passwords,
//! roles, machine tokens), each validated once, here.

use serde_json::{Map, Value};

use super::auth::{Role, Scope, Scopes};
use super::error::AppError;
use super::rules::TOKEN_NAME_CHARS;
use super::user_input::Password;
use super::validation::{Fields, Rule};

/// Longest accepted opaque token (ours are 43 characters; `cat_` adds 4).
pub const TOKEN_MAX_CHARS: usize = 256;
pub const TOKEN_DAYS: std::ops::RangeInclusive<i64> = 1..=365;

fn required<T>(field: Option<T>) -> T {
    field.expect("Fields::finish reports every missing field")
}

/// An opaque token as presented: compared by hash, never stored, so any
/// text of a sane length is passed on (a wrong one simply matches nothing).
fn opaque(raw: String) -> Result<String, Rule> {
    if raw.is_empty() || raw.chars().count() > TOKEN_MAX_CHARS {
        return Err(Rule::new(
            "length",
            format!("ensure this value has between 1 and {TOKEN_MAX_CHARS} characters"),
        ));
    }
    Ok(raw)
}

/// `POST /token/refresh`.
pub fn parse_refresh(body: Map<String, Value>) -> Result<String, AppError> {
    let mut fields = Fields::new(body);
    let token = fields.required_any_text("refresh_token", opaque);
    fields.finish()?;
    Ok(required(token))
}

/// `POST /logout`: `{"all": true}` ends every session of the caller.
pub fn parse_logout(body: Option<Map<String, Value>>) -> Result<bool, AppError> {
    let Some(body) = body else {
        return Ok(false);
    };
    let mut fields = Fields::new(body);
    let all = fields.optional_bool("all");
    fields.finish()?;
    Ok(all.unwrap_or(false))
}

pub struct PasswordChange {
    pub current_password: String,
    pub new_password: Password,
}

/// `POST /users/{id}/password`.
pub fn parse_password_change(body: Map<String, Value>) -> Result<PasswordChange, AppError> {
    let mut fields = Fields::new(body);
    let current_password = fields.required_any_text("current_password", Ok);
    let new_password = fields.required("new_password", Password::parse);
    fields.finish()?;
    Ok(PasswordChange {
        current_password: required(current_password),
        new_password: required(new_password),
    })
}

/// `POST /password-reset`: any address is accepted (an unknown or
/// malformed one simply receives no mail), so the answer tells nothing.
pub fn parse_reset_request(body: Map<String, Value>) -> Result<String, AppError> {
    let mut fields = Fields::new(body);
    let email = fields.required_any_text("email", |raw| Ok(raw.trim().to_owned()));
    fields.finish()?;
    Ok(required(email))
}

pub struct ResetConfirmation {
    pub token: String,
    pub new_password: Password,
}

/// `POST /password-reset/confirm`.
pub fn parse_reset_confirmation(body: Map<String, Value>) -> Result<ResetConfirmation, AppError> {
    let mut fields = Fields::new(body);
    let token = fields.required_any_text("token", opaque);
    let new_password = fields.required("new_password", Password::parse);
    fields.finish()?;
    Ok(ResetConfirmation {
        token: required(token),
        new_password: required(new_password),
    })
}

/// `PUT /users/{id}/role`.
pub fn parse_role(body: Map<String, Value>) -> Result<Role, AppError> {
    let mut fields = Fields::new(body);
    let role = fields.required("role", |raw| match raw.as_str() {
        "user" => Ok(Role::User),
        "admin" => Ok(Role::Admin),
        _ => Err(Rule::new("role", "value must be `user` or `admin`")),
    });
    fields.finish()?;
    Ok(required(role))
}

pub struct NewMachineToken {
    pub name: String,
    pub scopes: Scopes,
    /// `None`: never expires.
    pub expires_in_days: Option<i64>,
}

/// `POST /tokens`: a name, at least one known scope, 1–365 days or null.
pub fn parse_new_machine_token(body: Map<String, Value>) -> Result<NewMachineToken, AppError> {
    let mut fields = Fields::new(body);
    let name = fields.required("name", |raw| {
        let name = raw.trim().to_owned();
        if TOKEN_NAME_CHARS.contains(&name.chars().count()) {
            Ok(name)
        } else {
            Err(Rule::length(&TOKEN_NAME_CHARS))
        }
    });
    let scopes = fields.required_list("scopes", |raw| {
        Scope::from_name(&raw).ok_or_else(|| {
            Rule::new(
                "scope",
                "every scope must be `content:read` or `content:write`",
            )
        })
    });
    let scopes = match scopes {
        Some(scopes) if scopes.is_empty() => {
            fields.reject("scopes", Rule::new("length", "name at least one scope"));
            None
        }
        scopes => scopes.map(|scopes| {
            scopes
                .into_iter()
                .fold(Scopes::default(), |all, scope| all.with(scope))
        }),
    };
    let expires_in_days = fields.optional_integer("expires_in_days", TOKEN_DAYS);
    fields.finish()?;
    Ok(NewMachineToken {
        name: required(name),
        scopes: required(scopes),
        expires_in_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn machine_tokens_need_a_name_known_scopes_and_sane_days() {
        let token = parse_new_machine_token(object(json!({
            "name": " deploy ", "scopes": ["content:write", "content:write"], "expires_in_days": null
        })))
        .unwrap();
        assert_eq!(token.name, "deploy");
        assert_eq!(token.scopes.names(), ["content:write"]);
        assert_eq!(token.expires_in_days, None);
        for bad in [
            json!({"name": "x", "scopes": []}),
            json!({"name": "x", "scopes": ["admin"]}),
            json!({"name": "x", "scopes": "content:read"}),
            json!({"name": "", "scopes": ["content:read"]}),
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": 0}),
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": 366}),
            json!({"name": "x", "scopes": ["content:read"], "expires_in_days": "7"}),
        ] {
            assert!(
                parse_new_machine_token(object(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn logout_takes_no_body_or_all() {
        assert!(!parse_logout(None).unwrap());
        assert!(parse_logout(Some(object(json!({"all": true})))).unwrap());
        assert!(parse_logout(Some(object(json!({"all": "yes"})))).is_err());
    }
}
