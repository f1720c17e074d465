//! The content fields of the contract (§3), each validated once, here.

use serde_json::{Map, Value};
use validator::ValidateUrl;

use super::error::AppError;
use super::rules::{self, BODY_CHARS, TITLE_CHARS, URL_MAX_CHARS};
use super::validation::{Fields, Patch, Rule};
use crate::db::models::ContentChanges;

pub fn parse_title(raw: String) -> Result<String, Rule> {
    if !rules::TITLE.matches(&raw) {
        return Err(Rule::length(&TITLE_CHARS));
    }
    Ok(raw.trim().to_owned())
}

/// Kept as written (not trimmed), but blank text does not count.
pub fn parse_body(raw: String) -> Result<String, Rule> {
    if !BODY_CHARS.contains(&raw.chars().count()) {
        return Err(Rule::length(&BODY_CHARS));
    }
    if !rules::NOT_BLANK.matches(&raw) {
        return Err(Rule::new("blank", "value must not be blank"));
    }
    Ok(raw)
}

/// The pattern decides; the URL parser is asked too, so that what is
/// stored is always a URL a browser can load.
pub fn parse_image(raw: String) -> Result<String, Rule> {
    let url = raw.trim();
    if raw.chars().count() > URL_MAX_CHARS || !rules::HTTP_URL.matches(&raw) || !url.validate_url()
    {
        return Err(Rule::new(
            "url",
            "value must be an absolute http(s) URL of at most 2048 characters",
        ));
    }
    Ok(url.to_owned())
}

#[derive(Debug)]
pub struct NewContent {
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    /// Whom to post as; `None` means the caller.
    pub user_id: Option<i64>,
}

impl NewContent {
    pub fn parse(body: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(body);
        let title = fields.required("title", parse_title);
        let content = fields.required("content", parse_body);
        let image = match fields.nullable("image", parse_image) {
            Patch::Set(url) => Some(url),
            Patch::Keep | Patch::Clear => None,
        };
        let user_id = fields.optional_id("user_id");
        fields.finish()?;
        match (title, content) {
            (Some(title), Some(content)) => Ok(Self {
                title,
                content,
                image,
                user_id,
            }),
            _ => unreachable!("Fields::finish reports every missing field"),
        }
    }
}

/// `PUT`/`PATCH /content/{id}`: absent fields are left alone; `image: null`
/// clears the image.
pub fn parse_content_changes(body: Map<String, Value>) -> Result<ContentChanges, AppError> {
    let mut fields = Fields::new(body);
    let changes = ContentChanges {
        title: fields.optional("title", parse_title),
        content: fields.optional("content", parse_body),
        image: match fields.nullable("image", parse_image) {
            Patch::Keep => None,
            Patch::Clear => Some(None),
            Patch::Set(url) => Some(Some(url)),
        },
    };
    fields.finish()?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_be_absolute_http_urls() {
        assert!(parse_image("https://example.com/a.png".into()).is_ok());
        assert!(parse_image("HTTP://example.com/a.png".into()).is_ok());
        for bad in [
            "ftp://x.io/a",
            "/relative.png",
            "example.com/a.png",
            "https://",
            "javascript:alert(1)",
        ] {
            assert!(parse_image(bad.into()).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(parse_image(long).is_err());
    }

    #[test]
    fn bodies_are_counted_in_characters_and_not_blank() {
        assert!(parse_body("ééééééééé".into()).is_err());
        assert!(parse_body("éééééééééé".into()).is_ok());
        assert_eq!(parse_body("           ".into()).unwrap_err().code, "blank");
    }
}
