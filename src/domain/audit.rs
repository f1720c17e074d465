//! The audit log: who did what to whom, from where. Events are
//! appended in the transaction of the change they record; nothing secret
//! is ever written.

use diesel::{Connection, PgConnection};

use super::auth::Principal;
use super::pagination::{self, BeforeQuery};
use super::users::Page;
use super::views::AuditEvent;
use super::{AppContext, AppError};
use crate::db::{self, models::NewAuditRow, DbError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    LoginSucceeded,
    LoginFailed,
    Logout,
    SessionRevoked,
    SessionReuseDetected,
    PasswordChanged,
    PasswordReset,
    RoleChanged,
    UserDeleted,
    TokenCreated,
    TokenRevoked,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::LoginSucceeded => "login.succeeded",
            Action::LoginFailed => "login.failed",
            Action::Logout => "logout",
            Action::SessionRevoked => "session.revoked",
            Action::SessionReuseDetected => "session.reuse_detected",
            Action::PasswordChanged => "password.changed",
            Action::PasswordReset => "password.reset",
            Action::RoleChanged => "role.changed",
            Action::UserDeleted => "user.deleted",
            Action::TokenCreated => "token.created",
            Action::TokenRevoked => "token.revoked",
        }
    }
}

/// Where a request came from, as sessions and the audit log record it.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Client {
    pub fn event(&self, action: Action, actor: Option<i64>, target: Option<i64>) -> NewAuditRow {
        NewAuditRow {
            action: action.name(),
            actor_user_id: actor,
            target_user_id: target,
            ip: self.ip.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// Runs `change` in one transaction with the event it reports, if any: an
/// event is recorded exactly when its change is.
pub async fn audited<T: Send + 'static>(
    ctx: &AppContext,
    change: impl FnOnce(&mut PgConnection) -> Result<(T, Option<NewAuditRow>), DbError> + Send + 'static,
) -> Result<T, AppError> {
    Ok(db::interact(&ctx.pool, move |conn| {
        conn.transaction(|conn| {
            let (outcome, event) = change(conn)?;
            if let Some(event) = event {
                db::audit::append(conn, &event)?;
            }
            Ok(outcome)
        })
    })
    .await?)
}

/// Removes one of the caller's own things (`remove` answers whether it was
/// there) with the `action` event; one that is not theirs, or not there,
/// is `missing`.
pub async fn remove_own(
    ctx: &AppContext,
    caller: Principal,
    client: Client,
    action: Action,
    remove: impl FnOnce(&mut PgConnection, i64) -> Result<bool, DbError> + Send + 'static,
    missing: AppError,
) -> Result<(), AppError> {
    caller.require_session()?;
    let user_id = caller.user_id;
    let removed = audited(ctx, move |conn| {
        let removed = remove(conn, user_id)?;
        Ok((
            removed,
            removed.then(|| client.event(action, Some(user_id), Some(user_id))),
        ))
    })
    .await?;
    if removed {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Newest first, for admins.
pub async fn page(
    ctx: &AppContext,
    caller: Principal,
    query: BeforeQuery,
) -> Result<Page<AuditEvent>, AppError> {
    caller.require_session()?;
    if !caller.is_admin() {
        return Err(AppError::Forbidden(
            "Only admins may read the audit log".into(),
        ));
    }
    let BeforeQuery { before, limit } = query;
    let rows = db::interact(&ctx.pool, move |conn| {
        db::audit::page_before(conn, before, limit + 1)
    })
    .await?;
    Ok(Page::of(
        rows,
        limit,
        |last| pagination::encode_id_cursor(last.id),
        AuditEvent::from,
    ))
}
