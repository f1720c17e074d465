//! The content fields, each validated once, here.

use serde_json::{Map, Value};
use validator::ValidateUrl;

use super::error::AppError;
use chrono::{DateTime, Utc};

use super::rules::{
    self, BODY_CHARS, MAX_TAGS, SLUG_CHARS, TAG_MAX_CHARS, TITLE_CHARS, URL_MAX_CHARS,
};
use super::validation::{Fields, Patch, Rule};
use crate::db::contents::{PUBLISHED, SCHEDULED};

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

/// Where an item is in the editorial workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Published,
    Scheduled,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Draft, Status::Published, Status::Scheduled];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Published => PUBLISHED,
            Status::Scheduled => SCHEDULED,
        }
    }

    /// The stored value; the column's CHECK admits only these three.
    pub fn from_column(value: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .unwrap_or(Status::Draft)
    }

    fn parse(raw: String) -> Result<Self, Rule> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == raw)
            .ok_or_else(|| Rule::new("enum", "value must be one of draft, published, scheduled"))
    }
}

/// RFC 3339 with an offset; stored in UTC.
fn parse_time(raw: String) -> Result<DateTime<Utc>, Rule> {
    DateTime::parse_from_rfc3339(&raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            Rule::new(
                "datetime",
                "value must be an RFC 3339 timestamp, e.g. 2026-12-24T09:00:00Z",
            )
        })
}

/// A slug the client chose: already in the form a generated one has.
fn parse_slug(raw: String) -> Result<String, Rule> {
    if !SLUG_CHARS.contains(&raw.len()) || !rules::SLUG.matches(&raw) {
        return Err(Rule::new(
            "slug",
            "value must be 1–200 lower-case letters, digits and single inner hyphens",
        ));
    }
    Ok(raw)
}

/// Lower-case ASCII letters and digits, transliterated, every other run of
/// characters one `-`, cut to `max` characters; `None` if nothing is left.
fn slugify(text: &str, max: usize) -> Option<String> {
    let slug = slug::slugify(text);
    let cut = slug[..slug.len().min(max)].trim_end_matches('-');
    Some(cut.to_owned()).filter(|cut| !cut.is_empty())
}

/// The slug a title gives (before a number is added to make it unique).
pub fn slug_of_title(title: &str) -> String {
    // Room for `-{n}`; a title with nothing to transliterate gets a word.
    slugify(title, SLUG_CHARS.end() - 10).unwrap_or_else(|| "content".to_owned())
}

/// A tag normalised like a slug and cut to 50 characters; `None` if
/// nothing is left.
pub fn normalise_tag(raw: &str) -> Option<String> {
    slugify(raw, TAG_MAX_CHARS)
}

/// Tags normalised (`normalise_tag`); an entry with nothing left and
/// repeats are dropped, the first order kept.
pub fn normalise_tags(raw: Vec<String>) -> Vec<String> {
    let mut tags: Vec<String> = Vec::with_capacity(raw.len());
    for tag in raw.iter().filter_map(|tag| normalise_tag(tag)) {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

fn too_many_tags() -> Rule {
    Rule::new(
        "length",
        format!("ensure this list has at most {MAX_TAGS} entries"),
    )
}

fn read_tags(fields: &mut Fields) -> Option<Vec<String>> {
    let raw = fields.optional_list("tags", Ok)?;
    if raw.len() > MAX_TAGS {
        fields.reject("tags", too_many_tags());
        return None;
    }
    Some(normalise_tags(raw))
}

#[derive(Debug)]
pub struct NewContent {
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    /// Whom to post as; `None` means the caller.
    pub user_id: Option<i64>,
    pub status: Status,
    pub publish_at: Option<DateTime<Utc>>,
    /// `None`: made from the title.
    pub slug: Option<String>,
    pub tags: Vec<String>,
}

impl NewContent {
    pub fn parse(body: Map<String, Value>, now: DateTime<Utc>) -> Result<Self, AppError> {
        let mut fields = Fields::new(body);
        let title = fields.required("title", parse_title);
        let content = fields.required("content", parse_body);
        let image = match fields.nullable("image", parse_image) {
            Patch::Set(url) => Some(url),
            Patch::Keep | Patch::Clear => None,
        };
        let user_id = fields.optional_id("user_id");
        let status = fields.optional("status", Status::parse);
        let publish_at = match fields.nullable("publish_at", parse_time) {
            Patch::Set(at) => Some(at),
            Patch::Keep | Patch::Clear => None,
        };
        let slug = fields.optional("slug", parse_slug);
        let tags = read_tags(&mut fields).unwrap_or_default();
        let status = status.unwrap_or(Status::Published);
        if status == Status::Scheduled && publish_at.is_none() {
            fields.reject("publish_at", needs_publish_at());
        }
        fields.finish()?;
        // Kept on a draft as its planned date; of no use to a published item.
        let publish_at = publish_at.filter(|_| status != Status::Published);
        let (status, publish_at) = resolve_schedule(status, publish_at, now);
        match (title, content) {
            (Some(title), Some(content)) => Ok(Self {
                title,
                content,
                image,
                user_id,
                status,
                publish_at,
                slug,
                tags,
            }),
            _ => unreachable!("Fields::finish reports every missing field"),
        }
    }
}

/// The one rule that joins two fields of a body (the OpenAPI document
/// states it too): `scheduled` needs a `publish_at` that is not `null`.
fn needs_publish_at() -> Rule {
    Rule::new("required", "a scheduled item needs a publish_at")
}

/// What a status and `publish_at` come to at `now`: a scheduled item whose
/// time is not in the future is published at once, keeping that time (as
/// the scheduler does when it publishes one). Never an error: no answer
/// depends on the clock.
pub fn resolve_schedule(
    status: Status,
    publish_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (Status, Option<DateTime<Utc>>) {
    match (status, publish_at) {
        (Status::Scheduled, Some(at)) if at <= now => (Status::Published, Some(at)),
        other => other,
    }
}

/// `PUT`/`PATCH /content/{id}`: absent fields are left alone; `image: null`
/// clears the image, `tags: null` the tags.
#[derive(Debug, Default, Clone)]
pub struct ContentPatch {
    pub title: Option<String>,
    pub content: Option<String>,
    pub image: Option<Option<String>>,
    pub status: Option<Status>,
    pub publish_at: Option<Option<DateTime<Utc>>>,
    pub slug: Option<String>,
    pub tags: Option<Vec<String>>,
}

fn patch<T>(value: Patch<T>) -> Option<Option<T>> {
    match value {
        Patch::Keep => None,
        Patch::Clear => Some(None),
        Patch::Set(value) => Some(Some(value)),
    }
}

pub fn parse_content_changes(body: Map<String, Value>) -> Result<ContentPatch, AppError> {
    let mut fields = Fields::new(body);
    let tags_cleared = body_has_null(&fields, "tags");
    let changes = ContentPatch {
        title: fields.optional("title", parse_title),
        content: fields.optional("content", parse_body),
        image: patch(fields.nullable("image", parse_image)),
        status: fields.optional("status", Status::parse),
        publish_at: patch(fields.nullable("publish_at", parse_time)),
        slug: fields.optional("slug", parse_slug),
        tags: read_tags(&mut fields).or(tags_cleared.then(Vec::new)),
    };
    if changes.status == Some(Status::Scheduled) && changes.publish_at == Some(None) {
        fields.reject("publish_at", needs_publish_at());
    }
    fields.finish()?;
    Ok(changes)
}

fn body_has_null(fields: &Fields, field: &str) -> bool {
    fields.get(field).is_some_and(Value::is_null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn slugs_and_tags_are_lower_case_ascii() {
        assert_eq!(slug_of_title("Ọlá Jörg: Straße 2!"), "ola-jorg-strasse-2");
        assert_eq!(slug_of_title("???"), "content");
        assert!(slug_of_title(&"Ab ".repeat(100)).len() <= 190);
        assert!(!slug_of_title(&"Ab ".repeat(100)).ends_with('-'));
        assert_eq!(
            normalise_tags(vec![
                "Rust".into(),
                " rust ".into(),
                "!!".into(),
                "Web Dev".into()
            ]),
            ["rust", "web-dev"]
        );
        assert_eq!(normalise_tags(vec!["x".repeat(80)])[0].len(), TAG_MAX_CHARS);
        assert!(parse_slug("my-post-2".into()).is_ok());
        for bad in ["", "My-post", "a--b", "-a", "a-", "a b", &"a".repeat(201)] {
            assert!(parse_slug(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_schedule_that_has_come_publishes_at_once() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(5);
        let earlier = now - chrono::Duration::seconds(5);
        assert_eq!(
            resolve_schedule(Status::Scheduled, Some(later), now),
            (Status::Scheduled, Some(later))
        );
        assert_eq!(
            resolve_schedule(Status::Scheduled, Some(earlier), now),
            (Status::Published, Some(earlier))
        );
        assert_eq!(
            resolve_schedule(Status::Draft, Some(earlier), now),
            (Status::Draft, Some(earlier))
        );
    }

    #[test]
    fn publish_at_is_refused_only_when_scheduled_without_one() {
        let body = |value: Value| value.as_object().unwrap().clone();
        let base = json!({"title": "Valid title", "content": "A body of enough length."});
        let with = |extra: Value| {
            let mut all = body(base.clone());
            all.extend(body(extra));
            all
        };
        let now = Utc::now();
        let past = "2000-01-01T00:00:00Z";
        let draft =
            NewContent::parse(with(json!({"status": "draft", "publish_at": past})), now).unwrap();
        assert_eq!(
            (draft.status, draft.publish_at.is_some()),
            (Status::Draft, true)
        );
        let published = NewContent::parse(with(json!({"publish_at": past})), now).unwrap();
        assert_eq!(
            (published.status, published.publish_at),
            (Status::Published, None)
        );
        let due = NewContent::parse(
            with(json!({"status": "scheduled", "publish_at": past})),
            now,
        )
        .unwrap();
        assert_eq!(due.status, Status::Published);
        for unscheduled in [
            json!({"status": "scheduled"}),
            json!({"status": "scheduled", "publish_at": null}),
        ] {
            assert!(
                NewContent::parse(with(unscheduled.clone()), now).is_err(),
                "{unscheduled}"
            );
        }
        assert!(parse_content_changes(body(json!({"status": "scheduled"}))).is_ok());
        assert!(
            parse_content_changes(body(json!({"status": "scheduled", "publish_at": null})))
                .is_err()
        );
        assert!(
            parse_content_changes(body(json!({"status": "draft", "publish_at": null}))).is_ok()
        );
    }

    #[test]
    fn bodies_are_counted_in_characters_and_not_blank() {
        assert!(parse_body("ééééééééé".into()).is_err());
        assert!(parse_body("éééééééééé".into()).is_ok());
        assert_eq!(parse_body("           ".into()).unwrap_err().code, "blank");
    }
}
