//! Response shapes (the API's `User`, `PublicUser`, `Content`, …),
//! separate from the Diesel rows they are built from.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

use super::auth::Role;
use super::content_input::Status;
use crate::db::models::{
    ApiTokenRow, AuditRow, AuthorRow, ContentRow, RevisionRow, SessionRow, UserRow,
};

/// RFC 3339, UTC, always six fractional digits: `2026-11-22T10:04:05.123456Z`.
pub(crate) fn timestamp<S: Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

pub(crate) fn optional_timestamp<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => timestamp(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// The private view: only the user themself or an admin sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    /// E.164, e.g. `+2348012345678`.
    pub phone_number: String,
    pub country: String,
    pub state: String,
    /// `user` or `admin`.
    pub role: Role,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            role: Role::from_column(&row.role),
            name: row.name,
            email: row.email,
            phone_number: row.phone_number,
            country: row.country,
            state: row.state,
            created_at: row.created_at,
        }
    }
}

/// What everyone else sees of a user: no email, no phone number.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicUser {
    pub id: i64,
    pub name: String,
    pub country: String,
    pub state: String,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Content {
    pub id: i64,
    pub title: String,
    /// Absolute http(s) URL, or null.
    pub image: Option<String>,
    pub content: String,
    pub user_id: i64,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    pub status: Status,
    /// When a scheduled item becomes public; `null` unless it was scheduled.
    #[serde(serialize_with = "optional_timestamp")]
    pub publish_at: Option<DateTime<Utc>>,
    /// When it first became public; `null` before.
    #[serde(serialize_with = "optional_timestamp")]
    pub published_at: Option<DateTime<Utc>>,
    /// Unique; `GET /api/v1/content/slug/{slug}`.
    pub slug: String,
    /// Lower-case, at most 10.
    pub tags: Vec<String>,
    /// 1 on create, one more on every change.
    pub version: i64,
}

impl From<ContentRow> for Content {
    fn from(row: ContentRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            image: row.image,
            content: row.content,
            user_id: row.user_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            status: Status::from_column(&row.status),
            publish_at: row.publish_at,
            published_at: row.published_at,
            slug: row.slug,
            tags: row.tags,
            version: row.version,
        }
    }
}

/// A state of an item that a change replaced.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revision {
    pub version: i64,
    pub title: String,
    pub content: String,
    pub image: Option<String>,
    pub status: Status,
    #[serde(serialize_with = "optional_timestamp")]
    pub publish_at: Option<DateTime<Utc>>,
    pub slug: String,
    pub tags: Vec<String>,
    /// When this version was made.
    #[serde(serialize_with = "timestamp")]
    pub changed_at: DateTime<Utc>,
    /// Who made it: a user id, or `null` for the scheduler.
    pub changed_by: Option<i64>,
}

impl From<RevisionRow> for Revision {
    fn from(row: RevisionRow) -> Self {
        Self {
            version: row.version,
            title: row.title,
            content: row.content,
            image: row.image,
            status: Status::from_column(&row.status),
            publish_at: row.publish_at,
            slug: row.slug,
            tags: row.tags,
            changed_at: row.changed_at,
            changed_by: row.changed_by,
        }
    }
}

/// How many public items carry a tag.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub count: i64,
}

impl From<AuthorRow> for PublicUser {
    fn from(row: AuthorRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            country: row.country,
            state: row.state,
            created_at: row.created_at,
        }
    }
}

/// An item with its author's public view: the same bytes for every reader.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContentWithUser {
    #[serde(flatten)]
    pub content: Content,
    pub user: PublicUser,
}

/// A user (private view for self or admin, public view for everyone else)
/// with their newest items.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserWithContents {
    pub id: i64,
    pub name: String,
    /// Only in the private view (self or admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Only in the private view (self or admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    pub country: String,
    pub state: String,
    /// Only in the private view (self or admin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// Newest first, at most `contents_limit`.
    pub contents: Vec<Content>,
}

impl UserWithContents {
    pub fn new(row: UserRow, private: bool, contents: Vec<Content>) -> Self {
        let (email, phone_number, role) = if private {
            (
                Some(row.email),
                Some(row.phone_number),
                Some(Role::from_column(&row.role)),
            )
        } else {
            (None, None, None)
        };
        Self {
            id: row.id,
            name: row.name,
            email,
            phone_number,
            country: row.country,
            state: row.state,
            role,
            created_at: row.created_at,
            contents,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires (`JWT_TTL_SECONDS`).
    pub expires_in: u64,
    /// Opaque, single use: `POST /api/v1/token/refresh` exchanges it for a
    /// new pair.
    pub refresh_token: String,
    /// Seconds until the refresh token expires (`REFRESH_TTL_SECONDS`).
    pub refresh_expires_in: u64,
    pub user: User,
}

/// A live login session of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: i64,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// Marked at most once a minute.
    #[serde(serialize_with = "timestamp")]
    pub last_used_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// The session of the token this request was made with.
    pub current: bool,
}

impl Session {
    pub fn new(row: SessionRow, current_id: i64) -> Self {
        Self {
            current: current_id == row.id,
            id: row.id,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            user_agent: row.user_agent,
            ip: row.ip,
        }
    }
}

/// A machine token as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct MachineToken {
    pub id: i64,
    pub name: String,
    /// `content:read`, `content:write`.
    pub scopes: Vec<String>,
    /// `null`: never expires.
    #[serde(serialize_with = "optional_timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "optional_timestamp")]
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiTokenRow> for MachineToken {
    fn from(row: ApiTokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            scopes: row.scopes,
            expires_at: row.expires_at,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        }
    }
}

/// A machine token just created: the only time its secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedMachineToken {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<String>,
    /// `cat_…`: send as `Authorization: Bearer cat_…`. Not shown again.
    pub token: String,
    #[serde(serialize_with = "optional_timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

/// A security event; never a password, hash or token.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(serialize_with = "timestamp")]
    pub at: DateTime<Utc>,
    /// `login.succeeded`, `login.failed`, `logout`, `session.revoked`,
    /// `session.reuse_detected`, `password.changed`, `password.reset`,
    /// `role.changed`, `user.deleted`, `token.created`, `token.revoked`.
    pub action: String,
    pub actor_user_id: Option<i64>,
    pub target_user_id: Option<i64>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            at: row.at,
            action: row.action,
            actor_user_id: row.actor_user_id,
            target_user_id: row.target_user_id,
            ip: row.ip,
            request_id: row.request_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: &'static str,
    pub database: &'static str,
    /// `ok`, or `degraded` while Redis is unreachable, slow or not configured
    /// (reads then come from PostgreSQL).
    pub cache: &'static str,
    /// The in-process cache: `serving`, `joining` (no lease yet or lost:
    /// bypassed), or `off`.
    pub l1: &'static str,
}

/// Entries and bytes a cache layer holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayerUsage {
    pub entries: u64,
    pub bytes: u64,
}

/// Lookups a layer answered since this instance started.
#[derive(Debug, Serialize, ToSchema)]
pub struct LayerCounts {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
}

/// This instance's in-process cache.
#[derive(Debug, Serialize, ToSchema)]
pub struct L1Layer {
    /// This instance's id among the live instances.
    pub instance: String,
    /// Whether it holds its lease (only then is L1 served).
    pub serving: bool,
    pub lease_remaining_ms: u64,
    pub items: LayerUsage,
    pub listings: LayerUsage,
    #[serde(flatten)]
    pub counts: LayerCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedisLayer {
    /// `ok`, `degraded` (unreachable or slow: bypassed) or `off` (no `REDIS_URL`).
    pub state: &'static str,
    /// Every key and the memory of the whole Redis (all prefixes, every
    /// primary of a cluster); `null` while it does not answer.
    pub usage: Option<LayerUsage>,
    #[serde(flatten)]
    pub counts: LayerCounts,
}

/// An instance holding an L1 lease.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveInstance {
    pub instance: String,
    /// When its lease ends, by Redis' clock (ms since the Unix epoch).
    pub lease_expires_at_ms: i64,
}

/// `GET /api/v1/admin/cache`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CacheOverview {
    /// `null` when `L1_CACHE_BYTES=0` or without Redis.
    pub l1: Option<L1Layer>,
    pub redis: RedisLayer,
    pub live_instances: Vec<LiveInstance>,
}
