//! Rows as Diesel reads and writes them. Response shapes live in
//! `domain::views`, so a column can change without changing the API.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{
    api_tokens, audit_events, content_revisions, contents, password_resets, sessions, users,
};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub phone_number: String,
    pub country: String,
    pub state: String,
    pub role: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUserRow {
    pub name: String,
    pub email: String,
    pub phone_number: String,
    pub country: String,
    pub state: String,
    pub password_hash: String,
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub country: Option<String>,
    pub state: Option<String>,
}

impl UserChanges {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.email.is_none()
            && self.phone_number.is_none()
            && self.country.is_none()
            && self.state.is_none()
    }
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = contents, check_for_backend(diesel::pg::Pg))]
pub struct ContentRow {
    pub id: i64,
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: String,
    pub publish_at: Option<DateTime<Utc>>,
    pub published_at: Option<DateTime<Utc>>,
    pub slug: String,
    pub tags: Vec<String>,
    pub version: i64,
    pub updated_by: Option<i64>,
}

impl ContentRow {
    /// The editable fields of this version.
    pub fn state(&self) -> ContentState {
        ContentState {
            title: self.title.clone(),
            content: self.content.clone(),
            image: self.image.clone(),
            status: self.status.clone(),
            publish_at: self.publish_at,
            slug: self.slug.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// What an author decides of an item: every field a version and a
/// revision hold.
#[derive(Debug, Clone, PartialEq, Eq, AsChangeset)]
#[diesel(table_name = contents, treat_none_as_null = true)]
pub struct ContentState {
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub status: String,
    pub publish_at: Option<DateTime<Utc>>,
    pub slug: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = contents)]
pub struct NewContentRow {
    pub id: i64,
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub user_id: i64,
    pub status: String,
    pub publish_at: Option<DateTime<Utc>>,
    pub slug: String,
    pub tags: Vec<String>,
    pub updated_by: i64,
}

/// A state a change replaced: one revision of an item.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = content_revisions, check_for_backend(diesel::pg::Pg))]
pub struct RevisionRow {
    pub content_id: i64,
    pub version: i64,
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub status: String,
    pub publish_at: Option<DateTime<Utc>>,
    pub slug: String,
    pub tags: Vec<String>,
    pub changed_at: DateTime<Utc>,
    pub changed_by: Option<i64>,
}

impl RevisionRow {
    /// Version `row.version` as it is, kept before a change replaces it.
    pub fn of(row: &ContentRow) -> Self {
        Self {
            content_id: row.id,
            version: row.version,
            title: row.title.clone(),
            content: row.content.clone(),
            image: row.image.clone(),
            status: row.status.clone(),
            publish_at: row.publish_at,
            slug: row.slug.clone(),
            tags: row.tags.clone(),
            changed_at: row.updated_at,
            changed_by: row.updated_by,
        }
    }

    pub fn state(&self) -> ContentState {
        ContentState {
            title: self.title.clone(),
            content: self.content.clone(),
            image: self.image.clone(),
            status: self.status.clone(),
            publish_at: self.publish_at,
            slug: self.slug.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// The columns of a user that the public view shows.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct AuthorRow {
    pub id: i64,
    pub name: String,
    pub country: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

/// An item's author as a raw statement returns it beside the item's
/// columns (`author_name`, …; the id is the item's `user_id`).
#[derive(Debug, QueryableByName)]
pub struct AuthorColumns {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_country: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_state: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub author_created_at: DateTime<Utc>,
}

impl AuthorColumns {
    /// The author of the item `content`.
    pub fn of(&self, content: &ContentRow) -> AuthorRow {
        AuthorRow {
            id: content.user_id,
            name: self.author_name.clone(),
            country: self.author_country.clone(),
            state: self.author_state.clone(),
            created_at: self.author_created_at,
        }
    }
}

/// A listing row: the item, its author and (for searches) its rank.
#[derive(Debug, QueryableByName)]
pub struct ListingRow {
    #[diesel(embed)]
    pub content: ContentRow,
    #[diesel(embed)]
    pub author: AuthorColumns,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Float4>)]
    pub rank: Option<f32>,
}

impl ListingRow {
    pub fn author(&self) -> AuthorRow {
        self.author.of(&self.content)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSessionRow {
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens, check_for_backend(diesel::pg::Pg))]
pub struct ApiTokenRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct NewApiTokenRow {
    pub user_id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    pub token_hash: Vec<u8>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = password_resets)]
pub struct NewPasswordResetRow {
    pub token_hash: Vec<u8>,
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub actor_user_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditRow {
    pub action: &'static str,
    pub actor_user_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}
