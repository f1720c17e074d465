//! The OpenAPI 3.1 document. The handlers' annotations give each operation
//! its summary and success responses; this module adds what the extractors
//! and the domain's rules decide, from the same constants and patterns the
//! validators use: request bodies, parameters with their constraints,
//! security, and every error an operation can answer.

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use super::extract::MAX_BODY_BYTES;
use super::problem::PROBLEM_CONTENT_TYPE;
use crate::domain::account_input::{TOKEN_DAYS, TOKEN_MAX_CHARS};
use crate::domain::auth::Scope;
use crate::domain::pagination::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::domain::rules::{
    self, BODY_CHARS, EMAIL_MAX_CHARS, MAX_TAGS, PASSWORD_CHARS, SEARCH_MAX_CHARS, SLUG_CHARS,
    STORABLE_TEXT, URL_MAX_CHARS,
};
use crate::domain::user_input::PhonePolicy;
use crate::domain::users::{DEFAULT_CONTENTS_LIMIT, MAX_CONTENTS_LIMIT};
use crate::domain::webhooks::input::EVENTS;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Content API",
        description = "Users, auth and cached content. Errors are RFC 9457 problem+json. \
            Text fields never hold U+0000 (PostgreSQL cannot store it): such input is a 422 \
            with code `characters`."
    ),
    paths(
        super::root::index,
        super::root::live,
        super::root::ready,
        super::metrics::metrics,
        super::users::signup,
        super::users::login,
        super::users::list,
        super::users::get,
        super::users::update,
        super::contents::create,
        super::contents::create_alias,
        super::contents::get,
        super::contents::get_by_slug,
        super::contents::list,
        super::contents::tags,
        super::contents::update,
        super::contents::delete,
        super::contents::revisions,
        super::contents::revision,
        super::contents::restore,
        super::admin::cache,
        super::admin::flush_cache,
        super::admin::audit,
        super::sessions::refresh,
        super::sessions::logout,
        super::sessions::list,
        super::sessions::end,
        super::accounts::change_password,
        super::accounts::request_reset,
        super::accounts::confirm_reset,
        super::accounts::set_role,
        super::accounts::delete_user,
        super::tokens::create,
        super::tokens::list,
        super::tokens::revoke,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get,
        super::webhooks::update,
        super::webhooks::delete,
        super::webhooks::deliveries,
        super::webhooks::redeliver,
    ),
    components(schemas(super::problem::Problem)),
    tags(
        (name = "users", description = "Accounts, login and profiles"),
        (name = "content", description = "Content items, listings, slugs, tags and revisions; public reads are cached"),
        (name = "sessions", description = "Refresh, logout and the session list"),
        (name = "tokens", description = "Machine tokens for scripts"),
        (name = "admin", description = "Cache administration and the audit log, admins only"),
        (name = "webhooks", description = "Webhooks and their deliveries, admins only: signed \
            (Standard Webhooks), retried for a day, never lost"),
        (name = "operations", description = "Service info, liveness and readiness"),
    )
)]
struct Annotated;

/// What an operation's extractors and use case can answer besides success.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trait {
    /// A JSON object body (`JsonObject`): 400, 413, 415, 422.
    Body(&'static str),
    /// The same, but the body may be left out (`OptionalJsonObject`).
    OptionalBody(&'static str),
    /// A bearer token is required (`Auth`): 401.
    Bearer,
    /// A bearer token may be sent and must then be valid (`MaybeAuth`): 401.
    OptionalBearer,
    /// An `{id}` path segment (`PathId`): 404 for anything but a positive id.
    PathId,
    /// A `{version}` path segment: 404 for anything but a positive number.
    PathVersion,
    /// A `{slug}` path segment: 404 for anything but a slug.
    PathSlug,
    /// A `{delivery_id}` path segment: 404 for anything but a positive id.
    PathDeliveryId,
    /// A write that honours `If-Match` (412, and 428 with `REQUIRE_IF_MATCH`),
    /// on the resource named here (`Content`, `User`).
    IfMatch(&'static str),
    /// Validated query parameters (`QueryParams`): 422.
    Query(&'static [Param]),
    /// Counted against a per-client budget: 429.
    RateLimited,
    /// Reads or writes PostgreSQL: 503 while it is unreachable, 500.
    Database,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    Limit,
    ContentCursor,
    UserCursor,
    UserId,
    Search,
    ContentsLimit,
    IfNoneMatch,
    AuditCursor,
    Status,
    Tag,
    Sort,
    RevisionCursor,
    DeliveryCursor,
}

struct Operation {
    /// Every method of `path` that shares this contract, each with its own
    /// `operationId` (stable: generated clients name their functions by it).
    methods: &'static [(&'static str, &'static str)],
    path: &'static str,
    traits: &'static [Trait],
    /// Statuses particular to the operation, or a more precise description
    /// of a shared one.
    specific: &'static [(u16, &'static str)],
}

use Param::*;
use Trait::*;

const CONTENT_LISTING: &[Param] = &[
    Limit,
    ContentCursor,
    UserId,
    Search,
    Status,
    Tag,
    Sort,
    IfNoneMatch,
];
const USER_LISTING: &[Param] = &[Limit, UserCursor, ContentsLimit];
const DUPLICATE: (u16, &str) = (
    400,
    "Malformed JSON, a repeated key or not an object; or `Email already registered` / \
     `Phone number already registered`",
);
const NOT_YOURS: (u16, &str) = (
    403,
    "Not the owner (and not an admin), or a machine token without `content:write`",
);
const NOT_VISIBLE: (u16, &str) = (
    404,
    "`Content with id {id} not found` (also an unpublished item of someone else)",
);
const HISTORY_NOT_YOURS: (u16, &str) = (
    403,
    "A published item that is not yours (and you are not an admin), or a machine token without \
     `content:read`",
);
const SLUG_TAKEN: (u16, &str) = (
    409,
    "`Slug already in use` (by this or any other item, ever)",
);
const SCHEDULE: (u16, &str) = (
    422,
    "Every invalid field, in `errors`; also `publish_at` when `status` is `scheduled` and the \
     body has no `publish_at` or a `null` one",
);
const SCHEDULE_CHANGE: (u16, &str) = (
    422,
    "Every invalid field, in `errors`; also `publish_at` when `status` is `scheduled` and \
     `publish_at` is `null`",
);
const CHANGE_CONFLICT: (u16, &str) = (
    409,
    "`Slug already in use` (by this or any other item, ever), or `Content with id {id} has no \
     publish_at to schedule it at` (`scheduled` asked for, and neither the body nor the item has \
     a `publish_at`)",
);
const NOT_ADMIN: (u16, &str) = (403, "Not an admin, or a machine token");
const WEBHOOK_NOT_FOUND: (u16, &str) = (404, "`Webhook with id {id} not found`");
const WEBHOOK_FIELDS: (u16, &str) = (
    422,
    "Every invalid field, in `errors`; a private, loopback or link-local `url` is one \
     (`private_address`) unless `WEBHOOK_ALLOW_PRIVATE=true`",
);
const SESSION_ONLY: (u16, &str) = (403, "A machine token: this needs a login session");

const OPERATIONS: &[Operation] = &[
    Operation {
        methods: &[("get", "getServiceInfo")],
        path: "/",
        traits: &[],
        specific: &[],
    },
    Operation {
        methods: &[("get", "checkLiveness")],
        path: "/health/live",
        traits: &[],
        specific: &[],
    },
    Operation {
        methods: &[("get", "checkReadiness")],
        path: "/health/ready",
        traits: &[Database],
        specific: &[(503, "PostgreSQL unreachable")],
    },
    Operation {
        methods: &[("get", "getMetrics")],
        path: "/metrics",
        traits: &[],
        specific: &[],
    },
    Operation {
        methods: &[("post", "signUpUser")],
        path: "/api/v1/signup",
        traits: &[Body("SignupRequest"), RateLimited, Database],
        specific: &[DUPLICATE],
    },
    Operation {
        methods: &[("post", "logInUser")],
        path: "/api/v1/login",
        traits: &[Body("LoginRequest"), RateLimited, Database],
        specific: &[
            (401, "`Invalid email or password`"),
            (
                429,
                "Rate limit hit, or 10 failed logins for this address within 15 minutes",
            ),
        ],
    },
    Operation {
        methods: &[("post", "refreshToken")],
        path: "/api/v1/token/refresh",
        traits: &[Body("RefreshRequest"), RateLimited, Database],
        specific: &[(
            401,
            "`Invalid or expired refresh token`; a used one also ends its session",
        )],
    },
    Operation {
        methods: &[("post", "logOutSession")],
        path: "/api/v1/logout",
        traits: &[Bearer, OptionalBody("LogoutRequest"), Database],
        specific: &[SESSION_ONLY],
    },
    Operation {
        methods: &[("get", "listSessions")],
        path: "/api/v1/sessions",
        traits: &[Bearer, Database],
        specific: &[SESSION_ONLY],
    },
    Operation {
        methods: &[("delete", "deleteSession")],
        path: "/api/v1/sessions/{id}",
        traits: &[Bearer, PathId, RateLimited, Database],
        specific: &[
            SESSION_ONLY,
            (404, "`Session with id {id} not found` (also another user's)"),
        ],
    },
    Operation {
        methods: &[("post", "changePassword")],
        path: "/api/v1/users/{id}/password",
        traits: &[
            Bearer,
            PathId,
            RateLimited,
            Body("PasswordChangeRequest"),
            Database,
        ],
        specific: &[
            (403, "Not this user (admins too), or a machine token"),
            (422, "Every invalid field, in `errors`; a wrong `current_password` is one"),
        ],
    },
    Operation {
        methods: &[("post", "requestPasswordReset")],
        path: "/api/v1/password-reset",
        traits: &[Body("PasswordResetRequest"), RateLimited, Database],
        specific: &[(
            503,
            "PostgreSQL unreachable (with `Retry-After`), or `Password reset is not configured` \
             (no `SMTP_URL`)",
        )],
    },
    Operation {
        methods: &[("post", "confirmPasswordReset")],
        path: "/api/v1/password-reset/confirm",
        traits: &[Body("PasswordResetConfirmRequest"), RateLimited, Database],
        specific: &[(
            400,
            "Malformed JSON, a repeated key or not an object; or `Reset token is invalid or expired`",
        )],
    },
    Operation {
        methods: &[("put", "setUserRole")],
        path: "/api/v1/users/{id}/role",
        traits: &[Bearer, PathId, RateLimited, Body("RoleRequest"), Database],
        specific: &[
            NOT_ADMIN,
            (404, "`User with id {id} not found`"),
            (409, "`The last admin cannot be demoted`"),
        ],
    },
    Operation {
        methods: &[("delete", "deleteUser")],
        path: "/api/v1/users/{id}",
        traits: &[Bearer, PathId, RateLimited, Database],
        specific: &[
            (403, "Not this user (and not an admin), or a machine token"),
            (404, "`User with id {id} not found`"),
            (409, "`The last admin cannot be deleted`"),
        ],
    },
    Operation {
        methods: &[("post", "createToken")],
        path: "/api/v1/tokens",
        traits: &[Bearer, RateLimited, Body("MachineTokenRequest"), Database],
        specific: &[SESSION_ONLY],
    },
    Operation {
        methods: &[("get", "listTokens")],
        path: "/api/v1/tokens",
        traits: &[Bearer, Database],
        specific: &[SESSION_ONLY],
    },
    Operation {
        methods: &[("delete", "revokeToken")],
        path: "/api/v1/tokens/{id}",
        traits: &[Bearer, PathId, RateLimited, Database],
        specific: &[
            SESSION_ONLY,
            (404, "`Token with id {id} not found` (also another user's)"),
        ],
    },
    Operation {
        methods: &[("get", "listAuditEvents")],
        path: "/api/v1/admin/audit",
        traits: &[Bearer, Query(&[Limit, AuditCursor]), Database],
        specific: &[NOT_ADMIN],
    },
    Operation {
        methods: &[("get", "listUsers")],
        path: "/api/v1/users",
        traits: &[OptionalBearer, Query(USER_LISTING), Database],
        specific: &[],
    },
    Operation {
        methods: &[("get", "getUser")],
        path: "/api/v1/users/{id}",
        traits: &[OptionalBearer, PathId, Query(&[ContentsLimit]), Database],
        specific: &[(404, "`User with id {id} not found`")],
    },
    Operation {
        methods: &[("put", "replaceUser"), ("patch", "updateUser")],
        path: "/api/v1/users/{id}",
        traits: &[
            Bearer,
            PathId,
            IfMatch("User"),
            RateLimited,
            Body("UserUpdateRequest"),
            Database,
        ],
        specific: &[
            DUPLICATE,
            (403, "Not this user (and not an admin), or a machine token"),
        ],
    },
    Operation {
        methods: &[("post", "postContent")],
        path: "/api/v1/post-content",
        traits: &[Bearer, RateLimited, Body("NewContentRequest"), Database],
        specific: &[
            (
                403,
                "`user_id` is not yours (and you are not an admin), or a machine token without \
                 `content:write`",
            ),
            (404, "An admin named an unknown `user_id`"),
            SLUG_TAKEN,
            SCHEDULE,
        ],
    },
    Operation {
        methods: &[("post", "createContent")],
        path: "/api/v1/content",
        traits: &[Bearer, RateLimited, Body("NewContentRequest"), Database],
        specific: &[
            (
                403,
                "`user_id` is not yours (and you are not an admin), or a machine token without \
                 `content:write`",
            ),
            (404, "An admin named an unknown `user_id`"),
            SLUG_TAKEN,
            SCHEDULE,
        ],
    },
    Operation {
        methods: &[("get", "listContent")],
        path: "/api/v1/content",
        traits: &[OptionalBearer, Query(CONTENT_LISTING), Database],
        specific: &[
            (
                401,
                "`status` other than `published` without a bearer token, or an invalid token",
            ),
            (
                403,
                "`status` other than `published` with a machine token without `content:read`",
            ),
        ],
    },
    Operation {
        methods: &[("get", "listTags")],
        path: "/api/v1/tags",
        traits: &[Query(&[IfNoneMatch]), Database],
        specific: &[],
    },
    Operation {
        methods: &[("get", "getContent")],
        path: "/api/v1/content/{id}",
        traits: &[OptionalBearer, PathId, Query(&[IfNoneMatch]), Database],
        specific: &[(
            404,
            "`Content with id {id} not found` (also an unpublished item of someone else)",
        )],
    },
    Operation {
        methods: &[("get", "getContentBySlug")],
        path: "/api/v1/content/slug/{slug}",
        traits: &[OptionalBearer, PathSlug, Query(&[IfNoneMatch]), Database],
        specific: &[(
            404,
            "`Content with slug {slug} not found` (also an unpublished item of someone else)",
        )],
    },
    Operation {
        methods: &[("put", "replaceContent"), ("patch", "updateContent")],
        path: "/api/v1/content/{id}",
        traits: &[
            Bearer,
            PathId,
            IfMatch("Content"),
            RateLimited,
            Body("ContentUpdateRequest"),
            Database,
        ],
        specific: &[NOT_YOURS, NOT_VISIBLE, CHANGE_CONFLICT, SCHEDULE_CHANGE],
    },
    Operation {
        methods: &[("delete", "deleteContent")],
        path: "/api/v1/content/{id}",
        traits: &[Bearer, PathId, IfMatch("Content"), RateLimited, Database],
        specific: &[NOT_YOURS, NOT_VISIBLE],
    },
    Operation {
        methods: &[("get", "listRevisions")],
        path: "/api/v1/content/{id}/revisions",
        traits: &[Bearer, PathId, Query(&[Limit, RevisionCursor]), Database],
        specific: &[HISTORY_NOT_YOURS, NOT_VISIBLE],
    },
    Operation {
        methods: &[("get", "getRevision")],
        path: "/api/v1/content/{id}/revisions/{version}",
        traits: &[Bearer, PathId, PathVersion, Database],
        specific: &[
            HISTORY_NOT_YOURS,
            (
                404,
                "`Content with id {id} not found`, or `Revision {version} of content with id {id} \
                 not found` (never kept, or pruned)",
            ),
        ],
    },
    Operation {
        methods: &[("post", "restoreRevision")],
        path: "/api/v1/content/{id}/revisions/{version}/restore",
        traits: &[Bearer, PathId, PathVersion, IfMatch("Content"), RateLimited, Database],
        specific: &[
            NOT_YOURS,
            (
                404,
                "`Content with id {id} not found`, or `Revision {version} of content with id {id} \
                 not found`",
            ),
        ],
    },
    Operation {
        methods: &[("get", "getCacheState")],
        path: "/api/v1/admin/cache",
        traits: &[Bearer, Database],
        specific: &[NOT_ADMIN],
    },
    Operation {
        methods: &[("post", "flushCache")],
        path: "/api/v1/admin/cache/flush",
        traits: &[Bearer, Database],
        specific: &[
            NOT_ADMIN,
            (
                503,
                "PostgreSQL unreachable, or Redis could not be flushed (unreachable or slow); retry",
            ),
        ],
    },
    Operation {
        methods: &[("post", "createWebhook")],
        path: "/api/v1/admin/webhooks",
        traits: &[Bearer, RateLimited, Body("WebhookRequest"), Database],
        specific: &[NOT_ADMIN, WEBHOOK_FIELDS],
    },
    Operation {
        methods: &[("get", "listWebhooks")],
        path: "/api/v1/admin/webhooks",
        traits: &[Bearer, Database],
        specific: &[NOT_ADMIN],
    },
    Operation {
        methods: &[("get", "getWebhook")],
        path: "/api/v1/admin/webhooks/{id}",
        traits: &[Bearer, PathId, Database],
        specific: &[NOT_ADMIN, WEBHOOK_NOT_FOUND],
    },
    Operation {
        methods: &[("patch", "updateWebhook")],
        path: "/api/v1/admin/webhooks/{id}",
        traits: &[Bearer, PathId, RateLimited, Body("WebhookUpdateRequest"), Database],
        specific: &[NOT_ADMIN, WEBHOOK_NOT_FOUND, WEBHOOK_FIELDS],
    },
    Operation {
        methods: &[("delete", "deleteWebhook")],
        path: "/api/v1/admin/webhooks/{id}",
        traits: &[Bearer, PathId, RateLimited, Database],
        specific: &[NOT_ADMIN, WEBHOOK_NOT_FOUND],
    },
    Operation {
        methods: &[("get", "listWebhookDeliveries")],
        path: "/api/v1/admin/webhooks/{id}/deliveries",
        traits: &[Bearer, PathId, Query(&[Limit, DeliveryCursor]), Database],
        specific: &[NOT_ADMIN, WEBHOOK_NOT_FOUND],
    },
    Operation {
        methods: &[("post", "redeliverWebhookDelivery")],
        path: "/api/v1/admin/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        traits: &[Bearer, PathId, PathDeliveryId, RateLimited, Database],
        specific: &[
            NOT_ADMIN,
            (
                404,
                "`Webhook with id {id} not found`, or `Delivery with id {delivery_id} of webhook \
                 {id} not found`",
            ),
            (409, "`Webhook with id {id} is not active`: an inactive webhook is sent nothing"),
        ],
    },
];

/// A webhook URL as the document states it: http(s), a host without user
/// info, no whitespace (what else is refused is in the description).
const WEBHOOK_URL: &str =
    r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=:\[\]-]+(?:[/?#][^\s]*)?$";
/// `whsec_` and the standard base64 of 24 to 64 bytes (the unused bits of
/// a padded end are zero, which the pattern does not say).
const WEBHOOK_SECRET: &str = r"^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/]{2}==)?)$";

/// The largest id: PostgreSQL `BIGSERIAL`.
const MAX_ID: i64 = i64::MAX;

fn parameter(param: Param) -> Value {
    let (name, location, description, schema) = match param {
        Limit => (
            "limit",
            "query",
            "Page size",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
        ),
        ContentCursor => (
            "cursor",
            "query",
            "From the previous page's `Link: rel=\"next\"`; opaque to clients. Any value of the \
             pattern is a position in the listing it is given to",
            json!({"type": "string", "pattern": rules::CONTENT_CURSOR.source}),
        ),
        UserCursor => (
            "cursor",
            "query",
            "From the previous page's `Link: rel=\"next\"`; opaque to clients",
            json!({"type": "string", "pattern": rules::ID_CURSOR.source}),
        ),
        UserId => (
            "user_id",
            "query",
            "Only this author's items",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
        ),
        Search => (
            "q",
            "query",
            "Full-text search over title and body (web search syntax), best match first; \
             whitespace is collapsed and case ignored, blank means no search",
            json!({"type": "string", "maxLength": SEARCH_MAX_CHARS, "pattern": STORABLE_TEXT}),
        ),
        ContentsLimit => (
            "contents_limit",
            "query",
            "How many of each user's newest items to embed",
            json!({"type": "integer", "minimum": 0, "maximum": MAX_CONTENTS_LIMIT, "default": DEFAULT_CONTENTS_LIMIT}),
        ),
        AuditCursor => (
            "cursor",
            "query",
            "From the previous page's `Link: rel=\"next\"`; opaque to clients",
            json!({"type": "string", "pattern": rules::ID_CURSOR.source}),
        ),
        Status => (
            "status",
            "query",
            "`published` (default, everyone's); `draft`, `scheduled` or `all`: your own items \
             (an admin's: everyone's), with a bearer token",
            json!({"type": "string", "enum": ["published", "draft", "scheduled", "all"], "default": "published"}),
        ),
        Tag => (
            "tag",
            "query",
            "Only items carrying this tag (normalised like a slug); repeat for items carrying \
             all of them",
            json!({"type": "array", "maxItems": MAX_TAGS, "items": {"type": "string", "pattern": STORABLE_TEXT}}),
        ),
        Sort => (
            "sort",
            "query",
            "`newest` (default; best match first with `q`), `oldest`, or `updated` (last changed \
             first)",
            json!({"type": "string", "enum": ["newest", "oldest", "updated"]}),
        ),
        DeliveryCursor => (
            "cursor",
            "query",
            "From the previous page's `Link: rel=\"next\"`; opaque to clients",
            json!({"type": "string", "pattern": rules::ID_CURSOR.source}),
        ),
        RevisionCursor => (
            "cursor",
            "query",
            "From the previous page's `Link: rel=\"next\"`: the last version seen",
            json!({"type": "string", "pattern": rules::ID_CURSOR.source}),
        ),
        IfNoneMatch => (
            "If-None-Match",
            "header",
            "An `ETag` of an earlier read: 304 if it is still current",
            json!({"type": "string"}),
        ),
    };
    let mut parameter = json!({"name": name, "in": location, "required": false, "description": description, "schema": schema});
    if param == Tag {
        parameter["style"] = json!("form");
        parameter["explode"] = json!(true);
    }
    parameter
}

fn if_match_parameter(resource: &str) -> Value {
    let what = if resource == "User" {
        "account"
    } else {
        "item"
    };
    json!({
        "name": "If-Match", "in": "header", "required": false,
        "description": format!("The {what}'s `ETag` (from a read or a write): the write applies \
            only if it is still current, else 412. Required (428) when `REQUIRE_IF_MATCH=true`"),
        "schema": {"type": "string"},
    })
}

fn version_parameter() -> Value {
    json!({
        "name": "version", "in": "path", "required": true,
        "description": "A version number; anything else is a route that does not exist (404)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    })
}

fn slug_parameter() -> Value {
    json!({
        "name": "slug", "in": "path", "required": true,
        "description": "A slug, current or old (an old one answers 301); anything else is a \
            route that does not exist (404)",
        "schema": {"type": "string", "minLength": SLUG_CHARS.start(), "maxLength": SLUG_CHARS.end(), "pattern": rules::SLUG.source},
    })
}

fn delivery_id_parameter() -> Value {
    json!({
        "name": "delivery_id", "in": "path", "required": true,
        "description": "A positive id; anything else is a route that does not exist (404)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    })
}

fn id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "A positive id; anything else is a route that does not exist (404)",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    })
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

fn with_header(mut response: Value, name: &str, description: &str) -> Value {
    response["headers"][name] =
        json!({"description": description, "required": true, "schema": {"type": "string"}});
    response
}

/// The shared error responses of an operation with these traits.
fn errors(traits: &[Trait]) -> Vec<(u16, Value)> {
    let mut out = vec![(
        405,
        with_header(
            problem("Another method than the path's (listed in `Allow`)"),
            "Allow",
            "The methods of this path",
        ),
    )];
    for item in traits {
        match item {
            Body(_) | OptionalBody(_) => out.extend([
                (
                    400,
                    problem("Malformed JSON, a repeated key, or not a JSON object"),
                ),
                (413, problem(&format!("Body over {MAX_BODY_BYTES} bytes"))),
                (415, problem("`Content-Type` is not JSON")),
                (422, problem("Every invalid field, in `errors`")),
            ]),
            Bearer | OptionalBearer => out.push((
                401,
                with_header(
                    problem("Missing, malformed, expired or forged bearer token"),
                    "WWW-Authenticate",
                    "`Bearer`",
                ),
            )),
            PathId | PathVersion | PathSlug | PathDeliveryId => out.push((
                404,
                problem("No such resource, or an id that is not positive"),
            )),
            IfMatch(resource) => out.extend([
                (
                    412,
                    problem(&format!(
                        "`If-Match` names a tag that is no longer current: `{resource} with id {{id}} has changed`"
                    )),
                ),
                (
                    428,
                    problem("No `If-Match`, and `REQUIRE_IF_MATCH=true`"),
                ),
            ]),
            Query(_) => out.push((422, problem("Every invalid parameter, in `errors`"))),
            RateLimited => out.push((
                429,
                with_header(
                    problem("Rate limit hit"),
                    "Retry-After",
                    "Seconds until the next request is allowed",
                ),
            )),
            Database => out.extend([
                (
                    503,
                    with_header(
                        problem("PostgreSQL unreachable"),
                        "Retry-After",
                        "Seconds to wait",
                    ),
                ),
                (
                    500,
                    problem("An unexpected error; it was logged, and nothing is revealed"),
                ),
            ]),
        }
    }
    out
}

fn trimmed_text(pattern: &str, description: &str) -> Value {
    json!({"type": "string", "pattern": pattern, "description": description})
}

/// The one rule joining two fields of a content body: with `status:
/// scheduled`, a `publish_at` that is not `null` (on create: present).
fn scheduled() -> Value {
    json!({"properties": {"status": {"const": "scheduled"}}, "required": ["status"]})
}

/// Request bodies, from the rules the domain's parsers check.
fn request_schemas(phones: &PhonePolicy) -> Map<String, Value> {
    let user_fields = json!({
        "name": {
            "type": "string",
            "pattern": rules::NAME.source,
            "allOf": [{"pattern": rules::HAS_LETTER.source}],
            "description": "Trimmed; 2–100 characters; at least one letter (any script)",
            "examples": ["Chloé Adé"],
        },
        "email": {
            "type": "string",
            "maxLength": EMAIL_MAX_CHARS,
            "pattern": rules::EMAIL.source,
            "description": "Trimmed; stored with the domain lower-cased; uniqueness ignores case",
            "examples": ["chloe@example.com"],
        },
        "phone_number": {
            "type": "string",
            "pattern": phones.patterns()[0],
            "allOf": [{"pattern": phones.patterns()[1]}],
            "description": "A valid number of an allowed region (at most 15 digits with the \
                country code), stored as E.164; national forms are read in the default region; \
                a space or dash may follow any digit",
            "examples": ["+2348012345678"],
        },
        "country": trimmed_text(&rules::PLACE.source, "Trimmed; 2–100 characters"),
        "state": trimmed_text(&rules::PLACE.source, "Trimmed; 2–100 characters"),
    });
    let mut signup_fields = user_fields.clone();
    signup_fields["password"] = json!({
        "type": "string",
        "minLength": PASSWORD_CHARS.start(),
        "maxLength": PASSWORD_CHARS.end(),
        "pattern": STORABLE_TEXT,
        "examples": ["correct horse battery"],
    });
    let mut content_fields = json!({
        "title": trimmed_text(&rules::TITLE.source, "Trimmed; 3–200 characters"),
        "content": {
            "type": "string",
            "minLength": BODY_CHARS.start(),
            "maxLength": BODY_CHARS.end(),
            "pattern": STORABLE_TEXT,
            "allOf": [{"pattern": rules::NOT_BLANK.source}],
            "description": "Kept as written; not blank",
        },
        "image": {
            "type": ["string", "null"],
            "maxLength": URL_MAX_CHARS,
            "pattern": rules::HTTP_URL.source,
            "description": "An absolute http(s) URL with a host name, trimmed; `null` clears it",
            "examples": ["https://example.com/a.png"],
        },
    });
    content_fields["status"] = json!({
        "type": "string",
        "enum": ["draft", "published", "scheduled"],
        "description": "Default `published` on create. `scheduled` needs a `publish_at`; one \
            that is not in the future publishes the item at once (`status` reads `published`)",
    });
    content_fields["publish_at"] = json!({
        "type": ["string", "null"],
        "format": "date-time",
        "description": "RFC 3339, any status: on a draft its planned date (kept, acted on once \
            the item is `scheduled`); on a scheduled item when it becomes public; ignored on a \
            published item",
    });
    content_fields["slug"] = json!({
        "type": "string",
        "minLength": SLUG_CHARS.start(),
        "maxLength": SLUG_CHARS.end(),
        "pattern": rules::SLUG.source,
        "description": "Unique, never reused; by default made from the title (409 if one you \
            choose is taken)",
    });
    content_fields["tags"] = json!({
        "type": ["array", "null"],
        "maxItems": MAX_TAGS,
        "items": {"type": "string", "pattern": STORABLE_TEXT},
        "description": "Normalised like slugs (lower-case ASCII, transliterated), cut to 50 \
            characters; empty ones and repeats dropped. `null`: none",
    });
    let mut new_content_fields = content_fields.clone();
    new_content_fields["user_id"] = json!({
        "type": ["integer", "null"],
        "minimum": 1,
        "maximum": MAX_ID,
        "description": "Defaults to the caller; only an admin may name another user",
    });
    let object = |properties: Value, required: &[&str], description: &str| json!({"type": "object", "properties": properties, "required": required, "description": description});
    let mut schemas = Map::new();
    schemas.insert(
        "SignupRequest".into(),
        object(
            signup_fields,
            &[
                "name",
                "email",
                "phone_number",
                "country",
                "state",
                "password",
            ],
            "A new account",
        ),
    );
    schemas.insert(
        "LoginRequest".into(),
        object(
            json!({"email": {"type": "string"}, "password": {"type": "string"}}),
            &["email", "password"],
            "Any strings: a wrong pair is a 401",
        ),
    );
    let new_password = json!({
        "type": "string",
        "minLength": PASSWORD_CHARS.start(),
        "maxLength": PASSWORD_CHARS.end(),
        "pattern": STORABLE_TEXT,
        "examples": ["a new password"],
    });
    let opaque_token = |description: &str| json!({"type": "string", "minLength": 1, "maxLength": TOKEN_MAX_CHARS, "description": description});
    schemas.insert(
        "RefreshRequest".into(),
        object(
            json!({"refresh_token": opaque_token("From the login (or the last refresh)")}),
            &["refresh_token"],
            "A refresh token: any string, an unknown one is a 401",
        ),
    );
    schemas.insert(
        "LogoutRequest".into(),
        object(
            json!({"all": {"type": ["boolean", "null"], "description": "End every session of yours (default: only this one)"}}),
            &[],
            "Optional: without a body only this session ends",
        ),
    );
    schemas.insert(
        "PasswordChangeRequest".into(),
        object(
            json!({"current_password": {"type": "string"}, "new_password": new_password}),
            &["current_password", "new_password"],
            "Your current password and the new one",
        ),
    );
    schemas.insert(
        "PasswordResetRequest".into(),
        object(
            json!({"email": {"type": "string", "description": "Any string: the answer is the same"}}),
            &["email"],
            "The address to mail a reset token to",
        ),
    );
    schemas.insert(
        "PasswordResetConfirmRequest".into(),
        object(
            json!({"token": opaque_token("From the mail"), "new_password": new_password}),
            &["token", "new_password"],
            "A mailed token and the new password",
        ),
    );
    schemas.insert(
        "RoleRequest".into(),
        object(
            json!({"role": {"type": "string", "enum": ["user", "admin"]}}),
            &["role"],
            "The new role",
        ),
    );
    schemas.insert(
        "MachineTokenRequest".into(),
        object(
            json!({
                "name": trimmed_text(&rules::TOKEN_NAME.source, "Trimmed; 1–100 characters"),
                "scopes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": Scope::ALL.map(Scope::name)},
                    "description": "What the token may do; repeats are ignored",
                },
                "expires_in_days": {
                    "type": ["integer", "null"],
                    "minimum": TOKEN_DAYS.start(),
                    "maximum": TOKEN_DAYS.end(),
                    "description": "`null` or absent: never expires",
                },
            }),
            &["name", "scopes"],
            "A new machine token",
        ),
    );
    let webhook_fields = json!({
        "url": {
            "type": "string",
            "maxLength": URL_MAX_CHARS,
            "pattern": WEBHOOK_URL,
            "description": "An absolute http(s) URL without user info. Private, loopback and \
                link-local targets (literal, `localhost`, or what the name resolves to at each \
                attempt) are refused unless `WEBHOOK_ALLOW_PRIVATE=true`; redirects are not followed",
            "examples": ["https://hooks.example.com/content"],
        },
        "events": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": EVENTS},
            "description": "What it is sent; repeats are ignored",
        },
        "secret": {
            "type": "string",
            "pattern": WEBHOOK_SECRET,
            "description": "`whsec_` + base64 of a 24–64 byte key; by default 32 random bytes",
        },
        "active": {
            "type": "boolean",
            "description": "Off: sent nothing, its pending deliveries fail (default on)",
        },
    });
    schemas.insert(
        "WebhookRequest".into(),
        object(webhook_fields.clone(), &["url", "events"], "A new webhook"),
    );
    schemas.insert(
        "WebhookUpdateRequest".into(),
        object(
            webhook_fields,
            &[],
            "Every field optional (absent = unchanged); switched on again, it is sent the \
             events that follow",
        ),
    );
    schemas.insert(
        "UserUpdateRequest".into(),
        object(
            user_fields,
            &[],
            "Every field optional (absent = unchanged); same rules as signup",
        ),
    );
    let mut new_content = object(new_content_fields, &["title", "content"], "A new item");
    new_content["if"] = scheduled();
    new_content["then"] =
        json!({"required": ["publish_at"], "properties": {"publish_at": {"type": "string"}}});
    schemas.insert("NewContentRequest".into(), new_content);
    let mut content_update = object(
        content_fields,
        &[],
        "Every field optional (absent = unchanged); `scheduled` without `publish_at` uses the \
         item's stored one",
    );
    content_update["if"] = scheduled();
    content_update["then"] = json!({"properties": {"publish_at": {"type": "string"}}});
    schemas.insert("ContentUpdateRequest".into(), content_update);
    schemas
}

/// The whole document, as served at `/api/v1/openapi.json`.
pub fn document(phones: &PhonePolicy) -> Value {
    let mut doc = serde_json::to_value(Annotated::openapi()).expect("the document serialises");
    // utoipa copies the crate's license, which Cargo.toml does not declare,
    // as `{"name": ""}`: openapi-generator refuses a document whose license
    // has no name, and there is no license to name.
    doc["info"]
        .as_object_mut()
        .expect("the derive emits info")
        .remove("license");
    doc["components"]["securitySchemes"]["bearer"] =
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"});
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the derive emits schemas");
    schemas.extend(request_schemas(phones));
    for (operation, method, operation_id) in OPERATIONS.iter().flat_map(|operation| {
        operation
            .methods
            .iter()
            .map(move |(method, operation_id)| (operation, method, operation_id))
    }) {
        let target = &mut doc["paths"][operation.path][method];
        assert!(
            target.is_object(),
            "{method} {} is annotated",
            operation.path
        );
        target["operationId"] = json!(operation_id);
        let mut parameters = Vec::new();
        for item in operation.traits {
            match item {
                Body(schema) | OptionalBody(schema) => {
                    target["requestBody"] = json!({
                        "required": matches!(item, Body(_)),
                        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}},
                    });
                }
                Bearer => target["security"] = json!([{"bearer": []}]),
                OptionalBearer => target["security"] = json!([{}, {"bearer": []}]),
                PathId => parameters.push(id_parameter()),
                PathVersion => parameters.push(version_parameter()),
                PathSlug => parameters.push(slug_parameter()),
                PathDeliveryId => parameters.push(delivery_id_parameter()),
                IfMatch(resource) => parameters.push(if_match_parameter(resource)),
                Query(params) => parameters.extend(params.iter().copied().map(parameter)),
                RateLimited | Database => {}
            }
        }
        if !parameters.is_empty() {
            target["parameters"] = Value::Array(parameters);
        }
        let responses = &mut target["responses"];
        for (status, response) in errors(operation.traits) {
            responses[status.to_string()] = response;
        }
        for (status, description) in operation.specific {
            let key = status.to_string();
            if responses[&key].is_null() {
                responses[&key] = problem(description);
            } else {
                responses[&key]["description"] = json!(description);
                // A 503 for a missing setting has no `Retry-After`: retrying
                // would not help.
                if *status == 503 && !responses[&key]["headers"]["Retry-After"].is_null() {
                    responses[&key]["headers"]["Retry-After"]["required"] = json!(false);
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nigeria() -> PhonePolicy {
        PhonePolicy::new(
            vec![phonenumber::country::Id::NG],
            phonenumber::country::Id::NG,
        )
    }

    #[test]
    fn every_annotated_operation_has_its_contract_and_no_other() {
        let doc = document(&nigeria());
        let mut annotated = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                annotated.push((method.clone(), path.clone()));
            }
        }
        let mut described: Vec<_> = OPERATIONS
            .iter()
            .flat_map(|op| {
                op.methods
                    .iter()
                    .map(|(method, _)| ((*method).to_owned(), op.path.to_owned()))
            })
            .collect();
        annotated.sort();
        described.sort();
        assert_eq!(annotated, described);
    }

    /// Generated clients name a function per `operationId`: a repeated one
    /// loses an operation (or types it with another's schemas).
    #[test]
    fn every_operation_has_its_own_lower_camel_case_operation_id() {
        let doc = document(&nigeria());
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap_or_default();
                assert!(
                    id.starts_with(|c: char| c.is_ascii_lowercase())
                        && id.chars().all(|c| c.is_ascii_alphanumeric())
                        && id.chars().any(|c| c.is_ascii_uppercase()),
                    "{method} {path}: {id:?} is not a verb and a noun in lowerCamelCase"
                );
                assert!(seen.insert(id.to_owned()), "{id} names two operations");
            }
        }
        assert_eq!(
            doc["paths"]["/api/v1/content/{id}"]["put"]["operationId"],
            "replaceContent"
        );
        assert_eq!(
            doc["paths"]["/api/v1/content/{id}"]["patch"]["operationId"],
            "updateContent"
        );
    }

    #[test]
    fn every_error_is_a_problem_and_every_pattern_compiles() {
        let doc = document(&nigeria());
        for item in doc["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            response["content"][PROBLEM_CONTENT_TYPE].is_object(),
                            "{status}"
                        );
                    }
                }
            }
        }
        let mut patterns = Vec::new();
        collect_patterns(&doc, &mut patterns);
        for source in &patterns {
            regex::Regex::new(source).unwrap();
        }
        let patterns = patterns.len();
        assert!(patterns >= 12, "{patterns} patterns");
    }

    fn collect_patterns(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, inner) in object {
                    match (key.as_str(), inner) {
                        ("pattern", Value::String(source)) => out.push(source.clone()),
                        _ => collect_patterns(inner, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect_patterns(item, out)),
            _ => {}
        }
    }
}
