//! Rows as Diesel reads and writes them. Response shapes live in
//! `domain::views`, so a column can change without changing the API.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{api_tokens, audit_events, contents, password_resets, sessions, users};

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
}

#[derive(Debug, Insertable)]
#[diesel(table_name = contents)]
pub struct NewContentRow {
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub user_id: i64,
}

/// `None` leaves a column alone; `image: Some(None)` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = contents)]
pub struct ContentChanges {
    pub title: Option<String>,
    pub content: Option<String>,
    pub image: Option<Option<String>>,
}

impl ContentChanges {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.content.is_none() && self.image.is_none()
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

/// A listing row: the item, its author and (for searches) its rank.
#[derive(Debug, QueryableByName)]
pub struct ListingRow {
    #[diesel(embed)]
    pub content: ContentRow,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_country: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub author_state: String,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub author_created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Float4>)]
    pub rank: Option<f32>,
}

impl ListingRow {
    pub fn author(&self) -> AuthorRow {
        AuthorRow {
            id: self.content.user_id,
            name: self.author_name.clone(),
            country: self.author_country.clone(),
            state: self.author_state.clone(),
            created_at: self.author_created_at,
        }
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
