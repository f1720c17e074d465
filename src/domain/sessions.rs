//! Login sessions: login, refresh with rotation and reuse detection,
//! logout, the session list, and the check every authenticated request
//! makes.
//!
//! An access token (JWT) names its session; the session lives in
//! PostgreSQL, so ending it (on any instance) makes the token fail at its
//! next request everywhere. Anonymous requests never reach this module.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::audit::{self, Action, Client};
use super::auth::{Credential, Principal, Role, Scopes};
use super::batch::{self, Batcher};
use super::secrets;
use super::user_input::Login;
use super::views::{LoginResponse, Session};
use super::{AppContext, AppError};
use crate::db;
use crate::db::accounts::{self, Rotation};
use crate::db::models::{NewSessionRow, UserRow};
use crate::db::DbPool;

/// Machine tokens start with this; anything else is an access token.
pub const MACHINE_TOKEN_PREFIX: &str = "cat_";

/// 10 failed logins for one address within 15 minutes lock it for 15 minutes.
const THROTTLE_FAILURES: usize = 10;
const THROTTLE_WINDOW_MINUTES: i64 = 15;

fn throttle_window() -> Duration {
    Duration::minutes(THROTTLE_WINDOW_MINUTES)
}

/// Who the bearer credential says the caller is, as PostgreSQL has it now:
/// a live session (or machine token) and the user's current role.
pub async fn authenticate(ctx: &AppContext, bearer: &str) -> Result<Principal, AppError> {
    if bearer.starts_with(MACHINE_TOKEN_PREFIX) {
        let hash = secrets::digest(bearer);
        let token = db::interact(&ctx.pool, move |conn| {
            accounts::live_machine_token(conn, &hash)
        })
        .await?
        .ok_or_else(AppError::invalid_token)?;
        return Ok(Principal {
            user_id: token.user_id,
            role: Role::from_column(&token.role),
            credential: Credential::Machine {
                token_id: token.id,
                scopes: Scopes::from_names(&token.scopes),
            },
        });
    }
    let claims = ctx.tokens.verify(bearer)?;
    let role = ctx
        .session_checks
        .load((claims.session_id, claims.user_id))
        .await?
        .ok_or_else(AppError::invalid_token)?;
    Ok(Principal {
        user_id: claims.user_id,
        role: Role::from_column(&role),
        credential: Credential::Session {
            session_id: claims.session_id,
        },
    })
}

/// Bearer checks of access tokens, keyed by `(session, user)`: the user's
/// current role while the session lives. They are asked of the primary
/// (an ended session must fail at once) and share statements under load
/// (`batch.rs`): a check sent after a logout was answered still sees it.
pub type SessionChecks = Batcher<(i64, i64), Option<String>>;

pub fn batched_checks(pool: DbPool) -> Arc<SessionChecks> {
    Batcher::shared(move |keys: Vec<(i64, i64)>| {
        let pool = pool.clone();
        async move {
            let ids = batch::distinct(keys.iter().map(|(session, _)| *session));
            let live: HashMap<i64, (i64, String)> =
                db::interact(&pool, move |conn| accounts::live_sessions_of(conn, &ids))
                    .await?
                    .into_iter()
                    .map(|(session, user, role)| (session, (user, role)))
                    .collect();
            Ok(keys
                .into_iter()
                .map(|(session, user)| {
                    live.get(&session)
                        .filter(|(owner, _)| *owner == user)
                        .map(|(_, role)| role.clone())
                })
                .collect())
        }
    })
}

/// When the address is locked: a run of `THROTTLE_FAILURES` failures within
/// one window locks it for a window from the last of them. `failures` are
/// oldest first.
fn locked_until(failures: &[DateTime<Utc>], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    failures
        .windows(THROTTLE_FAILURES)
        .filter(|run| run[THROTTLE_FAILURES - 1] - run[0] <= throttle_window())
        .map(|run| run[THROTTLE_FAILURES - 1] + throttle_window())
        .max()
        .filter(|until| *until > now)
}

fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = (until - now).num_milliseconds().max(0) as u64;
    millis.div_ceil(1000).max(1)
}

/// The throttle's key: the address as login compares it (whole address,
/// case-insensitive), hashed so a mistyped address is not kept in the clear.
fn email_key(email: &str) -> Vec<u8> {
    secrets::digest(&email.to_lowercase())
}

pub async fn login(
    ctx: &AppContext,
    input: Login,
    client: Client,
) -> Result<LoginResponse, AppError> {
    let key = email_key(&input.email);
    let now = Utc::now();
    // A lock can start one window ago from a run that began two windows ago.
    let remembered_since = now - throttle_window() * 2;
    let (failures, found) = {
        let (key, email) = (key.clone(), input.email);
        db::interact(&ctx.pool, move |conn| {
            let failures = accounts::login_failures_since(conn, &key, remembered_since)?;
            Ok((failures, db::users::find_by_email(conn, &email)?))
        })
        .await?
    };
    if let Some(until) = locked_until(&failures, now) {
        return Err(AppError::RateLimited {
            retry_after_seconds: seconds_until(until, now),
        });
    }
    let hash = found.as_ref().map_or_else(
        || ctx.dummy_password_hash.clone(),
        |user| user.password_hash.clone(),
    );
    let password_matches = ctx.passwords.verify(input.password, hash).await?;
    match found {
        Some(user) if password_matches => {
            let refresh_token = secrets::fresh();
            let new_session = NewSessionRow {
                user_id: user.id,
                expires_at: now + refresh_ttl(ctx),
                user_agent: client.user_agent.clone(),
                ip: client.ip.clone(),
            };
            let event = client.event(Action::LoginSucceeded, Some(user.id), Some(user.id));
            let refresh_hash = secrets::digest(&refresh_token);
            let session = audit::audited(ctx, move |conn| {
                accounts::clear_login_failures(conn, &key)?;
                let session = accounts::create_session(conn, &new_session, &refresh_hash)?;
                Ok((session, Some(event)))
            })
            .await?;
            session_response(ctx, user, session.id, refresh_token)
        }
        found => {
            let event = client.event(Action::LoginFailed, None, found.map(|user| user.id));
            audit::audited(ctx, move |conn| {
                accounts::record_login_failure(conn, &key, remembered_since)?;
                Ok(((), Some(event)))
            })
            .await?;
            Err(AppError::Unauthorized("Invalid email or password".into()))
        }
    }
}

fn refresh_ttl(ctx: &AppContext) -> Duration {
    Duration::seconds(ctx.accounts.refresh_ttl_seconds as i64)
}

fn session_response(
    ctx: &AppContext,
    user: UserRow,
    session_id: i64,
    refresh_token: String,
) -> Result<LoginResponse, AppError> {
    let access_token = ctx
        .tokens
        .issue(user.id, Role::from_column(&user.role), session_id)?;
    Ok(LoginResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ctx.tokens.ttl_seconds,
        refresh_token,
        refresh_expires_in: ctx.accounts.refresh_ttl_seconds,
        user: user.into(),
    })
}

fn invalid_refresh_token() -> AppError {
    AppError::Unauthorized("Invalid or expired refresh token".into())
}

/// `POST /token/refresh`: a new pair for a current refresh token. A used
/// one ends its whole session (it was copied: whoever holds the other copy
/// must log in again).
pub async fn refresh(
    ctx: &AppContext,
    presented: String,
    client: Client,
) -> Result<LoginResponse, AppError> {
    let presented_hash = secrets::digest(&presented);
    let refresh_token = secrets::fresh();
    let fresh_hash = secrets::digest(&refresh_token);
    let ttl = refresh_ttl(ctx);
    let rotation = audit::audited(ctx, move |conn| {
        let rotation = accounts::rotate_refresh_token(conn, &presented_hash, &fresh_hash, ttl)?;
        let event = match &rotation {
            Rotation::Reused { user_id, .. } => {
                Some(client.event(Action::SessionReuseDetected, None, Some(*user_id)))
            }
            _ => None,
        };
        Ok((rotation, event))
    })
    .await?;
    match rotation {
        Rotation::Rotated { session, user } => {
            session_response(ctx, *user, session.id, refresh_token)
        }
        Rotation::Reused {
            session_id,
            user_id,
        } => {
            tracing::warn!(
                session_id,
                user_id,
                "a used refresh token was presented again: session ended"
            );
            Err(invalid_refresh_token())
        }
        Rotation::Invalid => Err(invalid_refresh_token()),
    }
}

/// `POST /logout`: ends the caller's session, or all of them.
pub async fn logout(
    ctx: &AppContext,
    caller: Principal,
    all: bool,
    client: Client,
) -> Result<(), AppError> {
    let current = caller.require_session()?;
    let user_id = caller.user_id;
    audit::audited(ctx, move |conn| {
        if all {
            accounts::end_sessions(conn, user_id, None)?;
        } else {
            accounts::end_session(conn, user_id, current)?;
        }
        let event = client.event(Action::Logout, Some(user_id), Some(user_id));
        Ok(((), Some(event)))
    })
    .await?;
    Ok(())
}

/// `GET /sessions`: the caller's live sessions, newest first.
pub async fn list(ctx: &AppContext, caller: Principal) -> Result<Vec<Session>, AppError> {
    let current = caller.require_session()?;
    let user_id = caller.user_id;
    let rows = db::interact(&ctx.pool, move |conn| {
        accounts::live_sessions(conn, user_id)
    })
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Session::new(row, current))
        .collect())
}

/// `DELETE /sessions/{id}`: one of the caller's own sessions (another
/// user's is as absent as one that never existed).
pub async fn end(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    client: Client,
) -> Result<(), AppError> {
    audit::remove_own(
        ctx,
        caller,
        client,
        Action::SessionRevoked,
        move |conn, user_id| accounts::end_session(conn, user_id, id),
        AppError::NotFound(format!("Session with id {id} not found")),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap()
    }

    #[test]
    fn ten_failures_within_a_window_lock_for_a_window() {
        let nine: Vec<_> = (0..9).map(at).collect();
        assert_eq!(locked_until(&nine, at(9)), None);
        let ten: Vec<_> = (0..10).map(at).collect();
        assert_eq!(locked_until(&ten, at(10)), Some(at(9 + 15)));
        assert_eq!(locked_until(&ten, at(24)), None, "the lock has passed");
        let spread: Vec<_> = (0..10).map(|n| at(n * 2)).collect();
        assert_eq!(locked_until(&spread, at(19)), None, "18 minutes apart");
        assert_eq!(seconds_until(at(1), at(0)), 60);
    }
}
