//! Content writes: create, update, delete and restore content, each
//! in one transaction that locks the item, checks `If-Match` against the
//! item's current `ETag`, keeps the replaced state as a revision and writes
//! the next version; then the cache is invalidated (only when a public
//! representation changed), then the write is answered.

use actix_web::http::header::HeaderValue;
use chrono::{DateTime, Utc};
use diesel::PgConnection;

use super::auth::{Principal, Scope};
use super::content_input::{resolve_schedule, slug_of_title, ContentPatch, NewContent, Status};
use super::contents::{may_see_unpublished, representation, representation_of};
use super::invalidation;
use super::pagination::{self, BeforeQuery};
use super::precondition::Precondition;
use super::transaction::{in_transaction, Abort};
use super::users::Page;
use super::views::{Content, ContentWithUser, Revision};
use super::{AppContext, AppError};
use crate::cache::outbox::Recorded;
use crate::db::contents::PUBLISHED;
use crate::db::contents::{NewItem, NextVersion};
use crate::db::models::{AuthorRow, ContentRow, ContentState};
use crate::db::{self, DbError};

/// Editorial settings (`REVISIONS_KEPT`, `REQUIRE_IF_MATCH`).
#[derive(Debug, Clone, Copy)]
pub struct EditorialSettings {
    pub revisions_kept: i64,
    pub require_if_match: bool,
}

/// A write and the tag of the representation it left: the `ETag` a read
/// of the item now answers, usable in the next `If-Match`.
pub struct Written {
    pub content: Content,
    pub etag: HeaderValue,
}

fn slug_in_use() -> AppError {
    AppError::Conflict("Slug already in use".into())
}

fn changed(id: i64) -> AppError {
    AppError::PreconditionFailed(format!("Content with id {id} has changed"))
}

/// The write's answer: the item, and the tag of its representation
/// (serialised once, without copying the body).
fn written(row: ContentRow, author: AuthorRow) -> Result<Written, AppError> {
    let view = ContentWithUser {
        content: row.into(),
        user: author.into(),
    };
    let etag = representation_of(&view)?.etag;
    Ok(Written {
        content: view.content,
        etag,
    })
}

/// `POST /post-content`: as the caller, or (admins only) as another user.
/// One statement after the bearer check (see `db::contents::create`).
pub async fn create(
    ctx: &AppContext,
    caller: Principal,
    input: NewContent,
) -> Result<Written, AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    let owner = match input.user_id {
        None => caller.user_id,
        Some(id) if caller.may_act_for(id) => id,
        Some(_) => return Err(AppError::forbidden()),
    };
    let public = input.status == Status::Published;
    let created = db::interact(&ctx.pool, move |conn| {
        let (slug, slug_generated) = match &input.slug {
            Some(slug) => (slug.clone(), false),
            None => (slug_of_title(&input.title), true),
        };
        db::contents::create(
            conn,
            &NewItem {
                title: &input.title,
                content: &input.content,
                image: input.image.as_deref(),
                user_id: owner,
                status: input.status.as_str(),
                publish_at: input.publish_at,
                slug: &slug,
                slug_generated,
                tags: &input.tags,
                updated_by: caller.user_id,
                // A new public item shows in listings; it was in no item's entry.
                invalidates: public,
            },
        )
    })
    .await;
    let created = match created {
        Ok(Some(created)) => created,
        Ok(None) => return Err(slug_in_use()),
        Err(DbError::ForeignKeyViolation(_)) => return Err(AppError::user_not_found(owner)),
        Err(err) => return Err(err.into()),
    };
    match created.outbox_id {
        Some(id) => {
            let recorded = Recorded {
                id,
                items: Vec::new(),
            };
            invalidation::complete(ctx, recorded).await
        }
        None => {
            // A draft or a schedule: in no cache, but its owner may read
            // it back through a replica.
            ctx.cache.announce_commit().await;
            ctx.schedule_changed.notify_one();
        }
    }
    let author = created.author();
    written(created.content, author)
}

/// The item, locked, if `caller` may change it: 404 if it does not exist
/// for them (absent, or not public and not theirs), 403 if it is public
/// but not theirs. Then `If-Match` is checked against its current tag.
fn lock_for_change(
    conn: &mut PgConnection,
    caller: Principal,
    id: i64,
    precondition: &Precondition,
    require_if_match: bool,
) -> Result<(ContentRow, AuthorRow), Abort> {
    let found = db::contents::lock_with_author(conn, id)?;
    may_change(found, caller, id, precondition, require_if_match)
}

/// `found` (the item and its author, as read), if `caller` may change it
/// (see `lock_for_change`).
fn may_change(
    found: Option<(ContentRow, AuthorRow)>,
    caller: Principal,
    id: i64,
    precondition: &Precondition,
    require_if_match: bool,
) -> Result<(ContentRow, AuthorRow), Abort> {
    let Some((row, author)) = found else {
        return Err(AppError::content_not_found(id).into());
    };
    if !caller.may_act_for(row.user_id) {
        return Err(if row.status == PUBLISHED {
            AppError::forbidden()
        } else {
            AppError::content_not_found(id)
        }
        .into());
    }
    // Serialised only when `If-Match` names a tag to compare with.
    let current = || Ok(representation(row.clone(), author.clone())?.etag);
    precondition.check(current, require_if_match, || changed(id))?;
    Ok((row, author))
}

/// A PATCH that schedules an item with no time to schedule it at, in the
/// body or stored: it depends on the stored item, so it is a conflict.
fn nothing_to_schedule(id: i64) -> AppError {
    AppError::Conflict(format!(
        "Content with id {id} has no publish_at to schedule it at"
    ))
}

/// The state `patch` makes of item `id`'s `current` one at `now`. A draft
/// keeps its `publish_at` as its planned date; a published item ignores
/// one sent with the change (and one that becomes published drops its
/// plan); a schedule whose time has come publishes the item at once.
fn apply(
    patch: ContentPatch,
    current: &ContentState,
    id: i64,
    now: DateTime<Utc>,
) -> Result<ContentState, AppError> {
    let old_status = Status::from_column(&current.status);
    let status = patch.status.unwrap_or(old_status);
    let publish_at = match status {
        Status::Published if old_status == Status::Published => current.publish_at,
        Status::Published => None,
        Status::Draft | Status::Scheduled => patch.publish_at.unwrap_or(current.publish_at),
    };
    if status == Status::Scheduled && publish_at.is_none() {
        return Err(nothing_to_schedule(id));
    }
    let (status, publish_at) = resolve_schedule(status, publish_at, now);
    Ok(ContentState {
        title: patch.title.unwrap_or_else(|| current.title.clone()),
        content: patch.content.unwrap_or_else(|| current.content.clone()),
        image: patch.image.unwrap_or_else(|| current.image.clone()),
        status: status.as_str().to_owned(),
        publish_at,
        slug: patch.slug.unwrap_or_else(|| current.slug.clone()),
        tags: patch.tags.unwrap_or_else(|| current.tags.clone()),
    })
}

/// Inside a change's transaction: public reads are to be invalidated when
/// they showed the item or will.
fn record_change(
    conn: &mut PgConnection,
    id: i64,
    before: &ContentRow,
    after: Option<&ContentRow>,
) -> Result<Option<Recorded>, DbError> {
    let public = |row: &ContentRow| row.status == PUBLISHED;
    (public(before) || after.is_some_and(public))
        .then(|| invalidation::record(conn, vec![id]))
        .transpose()
}

/// After a change's commit: the invalidation it recorded (or, for a
/// change no cache held, its commit position: a draft read back from a
/// replica must show it); the scheduler hears of a new schedule.
async fn after_change(ctx: &AppContext, recorded: Option<Recorded>, after: Option<&ContentRow>) {
    match recorded {
        Some(recorded) => invalidation::complete(ctx, recorded).await,
        None => ctx.cache.announce_commit().await,
    }
    if after.is_some_and(|row| row.status == crate::db::contents::SCHEDULED) {
        ctx.schedule_changed.notify_one();
    }
}

/// How often a change is tried again when the item changed between its
/// read and its write, before the caller is told to retry later.
const CHANGE_ATTEMPTS: usize = 32;

/// Writes the next version of item `id` if `next` makes one of it: one
/// read (the item and its author; the rules and `If-Match` are checked on
/// it), then one statement that writes it only if it is still the version
/// read (`db::contents::write_next_version`), else the same again.
async fn change(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    precondition: Precondition,
    next: impl Fn(&mut PgConnection, &ContentRow) -> Result<Option<ContentState>, Abort>
        + Send
        + 'static,
) -> Result<Written, AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    let settings = ctx.editorial;
    let outcome = db::interact(&ctx.pool, move |conn| {
        for _ in 0..CHANGE_ATTEMPTS {
            let found = db::contents::find_with_author(conn, id)?;
            let attempt = may_change(found, caller, id, &precondition, settings.require_if_match)
                .and_then(|(row, author)| Ok((next(conn, &row)?, row, author)));
            let (state, row, author) = match attempt {
                Ok(found) => found,
                Err(Abort::Refused(refusal)) => return Ok(Err(refusal)),
                Err(Abort::Db(err)) => return Err(err),
            };
            let Some(state) = state else {
                return Ok(Ok((row, author, None)));
            };
            let next_version = db::contents::write_next_version(
                conn,
                &NextVersion {
                    id,
                    expected: row.version,
                    state: &state,
                    editor: caller.user_id,
                    revisions_kept: settings.revisions_kept,
                    // Public reads showed the item or will.
                    invalidates: row.status == PUBLISHED || state.status == PUBLISHED,
                },
            );
            match next_version {
                Ok(Some(new)) => {
                    let author = new.author();
                    let recorded = new.outbox_id.map(|record| Recorded {
                        id: record,
                        items: vec![id],
                    });
                    return Ok(Ok((new.content, author, Some(recorded))));
                }
                Ok(None) => continue,
                Err(DbError::UniqueViolation(constraint))
                    if constraint == db::contents::SLUG_UNIQUE =>
                {
                    return Ok(Err(slug_in_use()))
                }
                Err(err) => return Err(err),
            }
        }
        Err(DbError::Unavailable(format!(
            "content with id {id} kept changing while being written"
        )))
    })
    .await?;
    let (row, author, change) = outcome?;
    if let Some(recorded) = change {
        after_change(ctx, recorded, Some(&row)).await;
    }
    written(row, author)
}

pub async fn update(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    patch: ContentPatch,
    precondition: Precondition,
) -> Result<Written, AppError> {
    change(ctx, caller, id, precondition, move |_, row| {
        let current = row.state();
        let state = apply(patch.clone(), &current, id, Utc::now())?;
        Ok((state != current).then_some(state))
    })
    .await
}

pub async fn delete(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    precondition: Precondition,
) -> Result<(), AppError> {
    caller.require_scope(Scope::ContentWrite)?;
    let require = ctx.editorial.require_if_match;
    let recorded = in_transaction(ctx, move |conn| {
        let (row, _) = lock_for_change(conn, caller, id, &precondition, require)?;
        db::contents::delete(conn, id)?;
        Ok(record_change(conn, id, &row, None)?)
    })
    .await?;
    after_change(ctx, recorded, None).await;
    Ok(())
}

/// `POST /content/{id}/revisions/{version}/restore`: a new version whose
/// fields are that revision's.
pub async fn restore(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    version: i64,
    precondition: Precondition,
) -> Result<Written, AppError> {
    change(ctx, caller, id, precondition, move |conn, _| {
        let revision = db::contents::revision(conn, id, version)?
            .ok_or_else(|| revision_not_found(id, version))?;
        let mut state = revision.state();
        let status = Status::from_column(&state.status);
        let (status, publish_at) = resolve_schedule(status, state.publish_at, Utc::now());
        state.status = status.as_str().to_owned();
        state.publish_at = publish_at;
        Ok(Some(state))
    })
    .await
}

fn revision_not_found(id: i64, version: i64) -> AppError {
    AppError::NotFound(format!(
        "Revision {version} of content with id {id} not found"
    ))
}

/// Revisions are the owner's and admins': 404 where the item does not
/// exist for the caller, 403 where it is public but not theirs.
async fn authorise_history(ctx: &AppContext, caller: Principal, id: i64) -> Result<(), AppError> {
    let caller = caller.require_scope(Scope::ContentRead)?;
    let found = db::interact(&ctx.pool, move |conn| {
        db::contents::owner_and_status(conn, id)
    })
    .await?
    .ok_or_else(|| AppError::content_not_found(id))?;
    match found {
        (owner, _) if may_see_unpublished(caller, owner) => Ok(()),
        (_, status) if status == PUBLISHED => Err(AppError::forbidden()),
        _ => Err(AppError::content_not_found(id)),
    }
}

pub async fn revisions(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    query: BeforeQuery,
) -> Result<Page<Revision>, AppError> {
    authorise_history(ctx, caller, id).await?;
    let BeforeQuery {
        limit,
        before: before_version,
    } = query;
    let rows = ctx
        .reader()
        .run(move |conn| db::contents::revisions(conn, id, before_version, limit + 1))
        .await?;
    Ok(Page::of(
        rows,
        limit,
        |last| pagination::encode_id_cursor(last.version),
        Revision::from,
    ))
}

pub async fn revision(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    version: i64,
) -> Result<Revision, AppError> {
    authorise_history(ctx, caller, id).await?;
    ctx.reader()
        .run(move |conn| db::contents::revision(conn, id, version))
        .await?
        .map(Revision::from)
        .ok_or_else(|| revision_not_found(id, version))
}
