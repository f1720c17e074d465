//! Sessions and their refresh tokens, machine tokens, password resets and
//! failed logins. Secrets arrive here already hashed.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use super::models::{
    ApiTokenRow, NewApiTokenRow, NewPasswordResetRow, NewSessionRow, SessionRow, UserRow,
};
use super::schema::{api_tokens, login_failures, password_resets, refresh_tokens, sessions, users};
use super::DbError;

/// A session (or machine token) is marked used at most this often: a write
/// on every authenticated request would double what each one costs.
fn touch_every() -> Duration {
    Duration::minutes(1)
}

/// Creates a session and its first refresh token.
pub fn create_session(
    conn: &mut PgConnection,
    new: &NewSessionRow,
    refresh_hash: &[u8],
) -> Result<SessionRow, DbError> {
    conn.transaction(|conn| {
        // Ended-by-expiry sessions of this user go when a new one starts.
        diesel::delete(
            sessions::table
                .filter(sessions::user_id.eq(new.user_id))
                .filter(sessions::expires_at.le(Utc::now())),
        )
        .execute(conn)?;
        let session = diesel::insert_into(sessions::table)
            .values(new)
            .returning(SessionRow::as_returning())
            .get_result(conn)?;
        diesel::insert_into(refresh_tokens::table)
            .values((
                refresh_tokens::token_hash.eq(refresh_hash),
                refresh_tokens::session_id.eq(session.id),
                refresh_tokens::expires_at.eq(new.expires_at),
            ))
            .execute(conn)?;
        Ok(session)
    })
}

/// The live sessions (not ended, not expired) among `ids`: each one's id,
/// user and that user's current role. One statically shaped statement (so
/// each connection prepares it once) for however many bearer checks share
/// it; the sessions last marked used over a minute ago are marked in a
/// second one.
pub fn live_sessions_of(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<(i64, i64, String)>, DbError> {
    let now = Utc::now();
    let found: Vec<(i64, i64, String, DateTime<Utc>)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq_any(ids))
        .filter(sessions::expires_at.gt(now))
        .select((
            sessions::id,
            sessions::user_id,
            users::role,
            sessions::last_used_at,
        ))
        .load(conn)?;
    let stale: Vec<i64> = found
        .iter()
        .filter(|(_, _, _, last_used_at)| *last_used_at < now - touch_every())
        .map(|(id, ..)| *id)
        .collect();
    if !stale.is_empty() {
        diesel::update(sessions::table.filter(sessions::id.eq_any(&stale)))
            .set(sessions::last_used_at.eq(now))
            .execute(conn)?;
    }
    Ok(found
        .into_iter()
        .map(|(id, user_id, role, _)| (id, user_id, role))
        .collect())
}

#[derive(Queryable)]
pub struct LiveMachineToken {
    pub id: i64,
    pub user_id: i64,
    pub scopes: Vec<String>,
    pub role: String,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The machine token with this hash while it lives (not revoked, not
/// expired), with its owner's current role.
pub fn live_machine_token(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<LiveMachineToken>, DbError> {
    let now = Utc::now();
    let found: Option<LiveMachineToken> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(token_hash))
        .filter(
            api_tokens::expires_at
                .is_null()
                .or(api_tokens::expires_at.gt(now)),
        )
        .select((
            api_tokens::id,
            api_tokens::user_id,
            api_tokens::scopes,
            users::role,
            api_tokens::last_used_at,
        ))
        .first(conn)
        .optional()?;
    if let Some(token) = &found {
        if token.last_used_at.is_none_or(|at| at < now - touch_every()) {
            diesel::update(api_tokens::table.find(token.id))
                .set(api_tokens::last_used_at.eq(now))
                .execute(conn)?;
        }
    }
    Ok(found)
}

/// What presenting a refresh token did.
pub enum Rotation {
    /// It was current: it is now used, `fresh` is current, and the session
    /// lives until `fresh` expires.
    Rotated {
        session: SessionRow,
        user: Box<UserRow>,
    },
    /// It had been used before: its session is ended.
    Reused { session_id: i64, user_id: i64 },
    /// Unknown, expired, or of an ended session.
    Invalid,
}

/// Exchanges a current refresh token for `fresh` in one transaction; the
/// row lock makes two concurrent presentations of one token a reuse.
pub fn rotate_refresh_token(
    conn: &mut PgConnection,
    presented: &[u8],
    fresh: &[u8],
    ttl: Duration,
) -> Result<Rotation, DbError> {
    conn.transaction(|conn| {
        let found: Option<(i64, DateTime<Utc>, Option<DateTime<Utc>>)> = refresh_tokens::table
            .find(presented)
            .select((
                refresh_tokens::session_id,
                refresh_tokens::expires_at,
                refresh_tokens::used_at,
            ))
            .for_update()
            .first(conn)
            .optional()?;
        let Some((session_id, expires_at, used_at)) = found else {
            return Ok(Rotation::Invalid);
        };
        let now = Utc::now();
        if used_at.is_some() {
            let ended: Option<i64> = diesel::delete(sessions::table.find(session_id))
                .returning(sessions::user_id)
                .get_result(conn)
                .optional()?;
            return Ok(ended.map_or(Rotation::Invalid, |user_id| Rotation::Reused {
                session_id,
                user_id,
            }));
        }
        if expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        diesel::update(refresh_tokens::table.find(presented))
            .set(refresh_tokens::used_at.eq(now))
            .execute(conn)?;
        // Used tokens are kept for reuse detection only while they could
        // still have been valid.
        diesel::delete(
            refresh_tokens::table
                .filter(refresh_tokens::session_id.eq(session_id))
                .filter(refresh_tokens::expires_at.le(now)),
        )
        .execute(conn)?;
        let expires_at = now + ttl;
        diesel::insert_into(refresh_tokens::table)
            .values((
                refresh_tokens::token_hash.eq(fresh),
                refresh_tokens::session_id.eq(session_id),
                refresh_tokens::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
        let session = diesel::update(sessions::table.find(session_id))
            .set((
                sessions::last_used_at.eq(now),
                sessions::expires_at.eq(expires_at),
            ))
            .returning(SessionRow::as_returning())
            .get_result(conn)?;
        let user = users::table
            .find(session.user_id)
            .select(UserRow::as_select())
            .first(conn)?;
        Ok(Rotation::Rotated {
            session,
            user: Box::new(user),
        })
    })
}

/// The user's live sessions, newest first.
pub fn live_sessions(conn: &mut PgConnection, user_id: i64) -> Result<Vec<SessionRow>, DbError> {
    Ok(sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(Utc::now()))
        .order(sessions::id.desc())
        .select(SessionRow::as_select())
        .load(conn)?)
}

/// Ends one of the user's sessions; `false` when there is no such session.
pub fn end_session(conn: &mut PgConnection, user_id: i64, id: i64) -> Result<bool, DbError> {
    let ended = diesel::delete(
        sessions::table
            .filter(sessions::id.eq(id))
            .filter(sessions::user_id.eq(user_id)),
    )
    .execute(conn)?;
    Ok(ended > 0)
}

/// Ends every session of the user but `keep`; how many ended.
pub fn end_sessions(
    conn: &mut PgConnection,
    user_id: i64,
    keep: Option<i64>,
) -> Result<usize, DbError> {
    let of_user = sessions::table.filter(sessions::user_id.eq(user_id));
    Ok(match keep {
        Some(keep) => diesel::delete(of_user.filter(sessions::id.ne(keep))).execute(conn)?,
        None => diesel::delete(of_user).execute(conn)?,
    })
}

pub fn insert_api_token(
    conn: &mut PgConnection,
    new: &NewApiTokenRow,
) -> Result<ApiTokenRow, DbError> {
    Ok(diesel::insert_into(api_tokens::table)
        .values(new)
        .returning(ApiTokenRow::as_returning())
        .get_result(conn)?)
}

/// The user's machine tokens (expired ones too, so they can be seen and
/// removed), newest first.
pub fn api_tokens_of(conn: &mut PgConnection, user_id: i64) -> Result<Vec<ApiTokenRow>, DbError> {
    Ok(api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .order(api_tokens::id.desc())
        .select(ApiTokenRow::as_select())
        .load(conn)?)
}

/// Revokes one of the user's machine tokens; `false` when there is none.
pub fn delete_api_token(conn: &mut PgConnection, user_id: i64, id: i64) -> Result<bool, DbError> {
    let deleted = diesel::delete(
        api_tokens::table
            .filter(api_tokens::id.eq(id))
            .filter(api_tokens::user_id.eq(user_id)),
    )
    .execute(conn)?;
    Ok(deleted > 0)
}

/// Reset mails sent to the user since `since`.
pub fn resets_since(
    conn: &mut PgConnection,
    user_id: i64,
    since: DateTime<Utc>,
) -> Result<i64, DbError> {
    Ok(password_resets::table
        .filter(password_resets::user_id.eq(user_id))
        .filter(password_resets::created_at.gt(since))
        .count()
        .get_result(conn)?)
}

/// Stores a reset token; the user's spent or expired tokens created before
/// `forget_before` go (those since then still count against the mail limit).
pub fn insert_password_reset(
    conn: &mut PgConnection,
    new: &NewPasswordResetRow,
    forget_before: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::delete(
        password_resets::table
            .filter(password_resets::user_id.eq(new.user_id))
            .filter(password_resets::created_at.lt(forget_before))
            .filter(
                password_resets::used_at
                    .is_not_null()
                    .or(password_resets::expires_at.le(Utc::now())),
            ),
    )
    .execute(conn)?;
    diesel::insert_into(password_resets::table)
        .values(new)
        .execute(conn)?;
    Ok(())
}

/// Spends a reset token if it is unused and unexpired: the user it was for.
pub fn spend_password_reset(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<i64>, DbError> {
    Ok(diesel::update(
        password_resets::table
            .filter(password_resets::token_hash.eq(token_hash))
            .filter(password_resets::used_at.is_null())
            .filter(password_resets::expires_at.gt(Utc::now())),
    )
    .set(password_resets::used_at.eq(Utc::now()))
    .returning(password_resets::user_id)
    .get_result(conn)
    .optional()?)
}

/// Every reset token of the user still open is closed (after a change of
/// password, an older mail must not set another one).
pub fn close_password_resets(conn: &mut PgConnection, user_id: i64) -> Result<(), DbError> {
    diesel::delete(
        password_resets::table
            .filter(password_resets::user_id.eq(user_id))
            .filter(password_resets::used_at.is_null()),
    )
    .execute(conn)?;
    Ok(())
}

/// Failed logins of one address since `since`, oldest first.
pub fn login_failures_since(
    conn: &mut PgConnection,
    email_hash: &[u8],
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, DbError> {
    Ok(login_failures::table
        .filter(login_failures::email_hash.eq(email_hash))
        .filter(login_failures::at.gt(since))
        .order(login_failures::at.asc())
        .select(login_failures::at)
        .load(conn)?)
}

/// Notes a failed login; every address's failures older than
/// `forget_before` are dropped (so addresses tried once stay bounded too).
pub fn record_login_failure(
    conn: &mut PgConnection,
    email_hash: &[u8],
    forget_before: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::delete(login_failures::table.filter(login_failures::at.le(forget_before)))
        .execute(conn)?;
    diesel::insert_into(login_failures::table)
        .values(login_failures::email_hash.eq(email_hash))
        .execute(conn)?;
    Ok(())
}

pub fn clear_login_failures(conn: &mut PgConnection, email_hash: &[u8]) -> Result<(), DbError> {
    diesel::delete(login_failures::table.filter(login_failures::email_hash.eq(email_hash)))
        .execute(conn)?;
    Ok(())
}
