//! User use cases: signup, login, reading and updating users.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::header::HeaderValue;
use serde_json::{Map, Value};

use super::auth::Principal;
use super::batch::{self, Batcher};
use super::invalidation;
use super::pagination::{self, DEFAULT_LIMIT, MAX_LIMIT};
use super::precondition::Precondition;
use super::reads::Reader;
use super::transaction::in_transaction;
use super::user_input::Signup;
use super::validation::Fields;
use super::views::{Content, User, UserWithContents};
use super::{AppContext, AppError};
use crate::cache::body::etag;
use crate::db::models::{ContentRow, NewUserRow, UserChanges};
use crate::db::users::UserSelection;
use crate::db::{self, models::UserRow};

pub const DEFAULT_CONTENTS_LIMIT: i64 = 20;
pub const MAX_CONTENTS_LIMIT: i64 = 100;

pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A keyset page from up to `limit + 1` rows read: the extra row only
    /// says that a next page exists, which starts after the last row kept.
    pub fn of<R>(
        mut rows: Vec<R>,
        limit: i64,
        cursor: impl FnOnce(&R) -> String,
        view: impl FnMut(R) -> T,
    ) -> Self {
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = rows.last().filter(|_| has_more).map(cursor);
        Self {
            items: rows.into_iter().map(view).collect(),
            next_cursor,
        }
    }
}

/// `?limit=&cursor=&contents_limit=` of `GET /users`.
pub struct UserListQuery {
    after_id: Option<i64>,
    limit: i64,
    pub contents_limit: i64,
}

impl UserListQuery {
    pub fn parse(params: Map<String, Value>) -> Result<Self, AppError> {
        let mut fields = Fields::new(params);
        let limit = fields.optional("limit", |raw| pagination::bounded(&raw, 1, MAX_LIMIT));
        let after_id = fields.optional("cursor", |raw| pagination::decode_id_cursor(&raw));
        let contents_limit = fields.optional("contents_limit", |raw| parse_contents_limit(&raw));
        fields.finish()?;
        Ok(Self {
            after_id,
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            contents_limit: contents_limit.unwrap_or(DEFAULT_CONTENTS_LIMIT),
        })
    }

    pub fn limit(&self) -> i64 {
        self.limit
    }
}

/// `?contents_limit=` of `GET /users/{id}`.
pub fn parse_contents_limit_param(params: Map<String, Value>) -> Result<i64, AppError> {
    let mut fields = Fields::new(params);
    let limit = fields.optional("contents_limit", |raw| parse_contents_limit(&raw));
    fields.finish()?;
    Ok(limit.unwrap_or(DEFAULT_CONTENTS_LIMIT))
}

fn parse_contents_limit(raw: &str) -> Result<i64, super::validation::Rule> {
    pagination::bounded(raw, 0, MAX_CONTENTS_LIMIT)
}

/// Email and phone are account data: a machine token (content scopes
/// only) sees the public view.
fn private_for(viewer: Option<Principal>, user_id: i64) -> bool {
    viewer.is_some_and(|viewer| viewer.session_id().is_some() && viewer.may_act_for(user_id))
}

pub async fn signup(ctx: &AppContext, input: Signup) -> Result<User, AppError> {
    let password_hash = ctx
        .passwords
        .hash(input.password.expose().to_owned())
        .await?;
    let new_user = NewUserRow {
        name: input.name,
        email: input.email,
        phone_number: input.phone_number,
        country: input.country,
        state: input.state,
        password_hash,
    };
    // The unique constraints decide duplicate races; see AppError's From<DbError>.
    let row = db::interact(&ctx.pool, move |conn| db::users::insert(conn, &new_user)).await?;
    ctx.cache.announce_commit().await;
    Ok(row.into())
}

fn with_contents(
    users: Vec<(UserRow, Vec<crate::db::models::ContentRow>)>,
    viewer: Option<Principal>,
) -> Vec<UserWithContents> {
    users
        .into_iter()
        .map(|(row, items)| {
            let private = private_for(viewer, row.id);
            let contents: Vec<Content> = items.into_iter().map(Content::from).collect();
            UserWithContents::new(row, private, contents)
        })
        .collect()
}

pub async fn list(
    ctx: &AppContext,
    viewer: Option<Principal>,
    query: UserListQuery,
) -> Result<Page<UserWithContents>, AppError> {
    let UserListQuery {
        after_id,
        limit,
        contents_limit,
    } = query;
    // One extra user tells whether a next page exists.
    let selection = UserSelection::Page {
        after: after_id.unwrap_or(0),
        limit: limit + 1,
    };
    let mut users = ctx
        .reader()
        .run(move |conn| db::users::with_newest_contents(conn, selection, contents_limit))
        .await?;
    let has_more = users.len() as i64 > limit;
    users.truncate(limit as usize);
    let next_cursor = match users.last() {
        Some((last, _)) if has_more => Some(pagination::encode_id_cursor(last.id)),
        _ => None,
    };
    Ok(Page {
        items: with_contents(users, viewer),
        next_cursor,
    })
}

/// A user read, with the account's tag when the caller sees the private
/// view (only they, or an admin, may write it).
pub struct UserRead {
    pub user: UserWithContents,
    pub etag: Option<HeaderValue>,
}

/// The strong tag of an account: the hash of its private `User` view, the
/// same on every instance. It names the account's fields, not the items a
/// read embeds (each item has its own tag), so a new item of theirs does
/// not fail a profile edit with 412.
fn account_tag(user: &User) -> Result<HeaderValue, AppError> {
    serde_json::to_vec(user)
        .map(|bytes| etag(&bytes))
        .map_err(|err| AppError::Internal(err.into()))
}

pub async fn get(
    ctx: &AppContext,
    viewer: Option<Principal>,
    id: i64,
    contents_limit: i64,
) -> Result<UserRead, AppError> {
    let found = ctx
        .user_reads
        .load((id, contents_limit))
        .await?
        .ok_or_else(|| AppError::user_not_found(id))?;
    let etag = if private_for(viewer, id) {
        Some(account_tag(&found.0.clone().into())?)
    } else {
        None
    };
    let user = with_contents(vec![found], viewer)
        .pop()
        .expect("one row in, one view out");
    Ok(UserRead { user, etag })
}

/// A user and their newest public items, as read.
type UserFound = (UserRow, Vec<ContentRow>);

/// `GET /users/{id}` reads, keyed by `(id, contents_limit)`.
pub type UserReads = Batcher<(i64, i64), Option<UserFound>>;

/// User reads that share statements under load (`batch.rs`): the users of
/// all of them by id, with as many items each as the most any of them asked
/// for, cut to each read's own `contents_limit`.
pub fn batched_reads(reader: Reader) -> Arc<UserReads> {
    Batcher::shared(move |keys: Vec<(i64, i64)>| {
        let reader = reader.clone();
        async move {
            let ids = batch::distinct(keys.iter().map(|(id, _)| *id));
            let per_user = keys.iter().map(|(_, limit)| *limit).max().unwrap_or(0);
            let rows = reader
                .run(move |conn| {
                    db::users::with_newest_contents(conn, UserSelection::Some(ids), per_user)
                })
                .await?;
            Ok(answer_each(keys, rows))
        }
    })
}

/// Each read's user (if found), moved out for the last read of an id and
/// copied for the others.
fn answer_each(keys: Vec<(i64, i64)>, rows: Vec<UserFound>) -> Vec<Option<UserFound>> {
    let mut found: HashMap<i64, (UserFound, usize)> =
        rows.into_iter().map(|row| (row.0.id, (row, 0))).collect();
    for (id, _) in &keys {
        if let Some((_, readers)) = found.get_mut(id) {
            *readers += 1;
        }
    }
    keys.into_iter()
        .map(|(id, limit)| {
            let last = {
                let (_, readers) = found.get_mut(&id)?;
                *readers -= 1;
                *readers == 0
            };
            let (user, mut items) = if last {
                found.remove(&id)?.0
            } else {
                found[&id].0.clone()
            };
            items.truncate(usize::try_from(limit).unwrap_or(0));
            Some((user, items))
        })
        .collect()
}

/// A changed account and its new tag.
pub struct UserWritten {
    pub user: User,
    pub etag: HeaderValue,
}

fn changed(id: i64) -> AppError {
    AppError::PreconditionFailed(format!("User with id {id} has changed"))
}

/// Applies `changes` if `If-Match` (when sent) still names the account's
/// tag: compared under the row lock, so of two writers holding the same
/// tag exactly one wins.
pub async fn update(
    ctx: &AppContext,
    principal: Principal,
    id: i64,
    changes: UserChanges,
    precondition: Precondition,
) -> Result<UserWritten, AppError> {
    principal.require_session()?;
    if !principal.may_act_for(id) {
        return Err(AppError::forbidden());
    }
    let required = ctx.editorial.require_if_match;
    let (row, recorded) = in_transaction(ctx, move |conn| {
        let Some(current) = db::users::lock(conn, id)? else {
            return Err(AppError::user_not_found(id).into());
        };
        precondition.check(
            || account_tag(&current.clone().into()),
            required,
            || changed(id),
        )?;
        if changes.is_empty() {
            return Ok((current, None));
        }
        let row = db::users::update(conn, id, &changes)?;
        // Cached items and listings embed the author's public view.
        let items = db::contents::ids_of_user(conn, id)?;
        Ok((row, Some(invalidation::record(conn, items)?)))
    })
    .await?;
    if let Some(recorded) = recorded {
        invalidation::complete(ctx, recorded).await;
    }
    let user = User::from(row);
    let etag = account_tag(&user)?;
    Ok(UserWritten { user, etag })
}
