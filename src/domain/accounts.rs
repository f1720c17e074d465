//! Account lifecycle: password change and reset, roles, deletion.
//! Each change that must end sessions does so in its own transaction, so a
//! token of an ended session fails at its next request on every instance.

use std::sync::Arc;

use chrono::{Duration, Utc};

use super::account_input::{PasswordChange, ResetConfirmation};
use super::audit::{self, Action, Client};
use super::auth::{Principal, Role};
use super::invalidation;
use super::secrets;
use super::views::User;
use super::{AppContext, AppError, FieldError};
use crate::db::models::NewPasswordResetRow;
use crate::db::users::{Deletion, RoleChange};
use crate::db::{self, accounts};
use crate::mail::Mailer;

/// At most this many reset mails per account per throttle window; more
/// requests still answer 202 but send nothing.
const RESET_MAILS_PER_WINDOW: i64 = 3;
const RESET_WINDOW_MINUTES: i64 = 15;

/// The lifetimes of the account secrets and the mail they travel by.
pub struct AccountSettings {
    pub refresh_ttl_seconds: u64,
    pub password_reset_ttl_seconds: u64,
    pub mailer: Option<Arc<Mailer>>,
}

/// `POST /users/{id}/password` (self only): every other session ends.
pub async fn change_password(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    change: PasswordChange,
    client: Client,
) -> Result<(), AppError> {
    let current_session = caller.require_session()?;
    if caller.user_id != id {
        return Err(AppError::Forbidden(
            "Only the account's owner may change its password".into(),
        ));
    }
    let user = db::interact(&ctx.pool, move |conn| db::users::find(conn, id))
        .await?
        .ok_or_else(|| AppError::user_not_found(id))?;
    let current_matches = ctx
        .passwords
        .verify(change.current_password, user.password_hash)
        .await?;
    if !current_matches {
        return Err(AppError::Validation(vec![FieldError {
            field: "current_password".into(),
            code: "password",
            message: "the current password is not correct".into(),
        }]));
    }
    let hash = ctx
        .passwords
        .hash(change.new_password.expose().to_owned())
        .await?;
    audit::audited(ctx, move |conn| {
        db::users::set_password_hash(conn, id, &hash)?;
        accounts::end_sessions(conn, id, Some(current_session))?;
        accounts::close_password_resets(conn, id)?;
        let event = client.event(Action::PasswordChanged, Some(id), Some(id));
        Ok(((), Some(event)))
    })
    .await?;
    Ok(())
}

/// `POST /password-reset`: mails a single-use token when the address has
/// an account. The answer is the same either way, and the mail goes out
/// after it, so its time does not tell either.
pub async fn request_reset(
    ctx: &AppContext,
    email: String,
    client: Client,
) -> Result<(), AppError> {
    let Some(mailer) = ctx.accounts.mailer.clone() else {
        return Err(AppError::NotConfigured("Password reset is not configured"));
    };
    let ttl_seconds = ctx.accounts.password_reset_ttl_seconds;
    let token = secrets::fresh();
    let row_hash = secrets::digest(&token);
    let recipient = db::interact(&ctx.pool, move |conn| {
        let Some(user) = db::users::find_by_email(conn, &email)? else {
            return Ok(None);
        };
        let since = Utc::now() - Duration::minutes(RESET_WINDOW_MINUTES);
        if accounts::resets_since(conn, user.id, since)? >= RESET_MAILS_PER_WINDOW {
            tracing::warn!(user_id = user.id, request_id = ?client.request_id,
                "password reset mail limit reached: none sent");
            return Ok(None);
        }
        accounts::insert_password_reset(
            conn,
            &NewPasswordResetRow {
                token_hash: row_hash,
                user_id: user.id,
                expires_at: Utc::now() + Duration::seconds(ttl_seconds as i64),
            },
            since,
        )?;
        Ok(Some(user.email))
    })
    .await?;
    if let Some(to) = recipient {
        tokio::spawn(async move {
            let body = reset_mail(&token, ttl_seconds);
            if let Err(err) = mailer.send(&to, "Reset your password", body).await {
                tracing::error!(error = ?err, "sending a password reset mail failed");
            }
        });
    }
    Ok(())
}

fn reset_mail(token: &str, ttl_seconds: u64) -> String {
    let minutes = ttl_seconds.div_ceil(60);
    format!(
        "Someone asked to reset the password of your account.\n\n\
         To choose a new password, send this token with it to\n\
         POST /api/v1/password-reset/confirm within {minutes} minutes:\n\n\
         {token}\n\n\
         The token works once. If you did not ask for this, ignore this mail:\n\
         your password stays as it is.\n"
    )
}

/// `POST /password-reset/confirm`: a live token sets the password once and
/// ends every session of the account.
pub async fn confirm_reset(
    ctx: &AppContext,
    confirmation: ResetConfirmation,
    client: Client,
) -> Result<(), AppError> {
    let hash = ctx
        .passwords
        .hash(confirmation.new_password.expose().to_owned())
        .await?;
    let token_hash = secrets::digest(&confirmation.token);
    let reset = audit::audited(ctx, move |conn| {
        let Some(user_id) = accounts::spend_password_reset(conn, &token_hash)? else {
            return Ok((false, None));
        };
        db::users::set_password_hash(conn, user_id, &hash)?;
        accounts::end_sessions(conn, user_id, None)?;
        accounts::close_password_resets(conn, user_id)?;
        let event = client.event(Action::PasswordReset, None, Some(user_id));
        Ok((true, Some(event)))
    })
    .await?;
    if reset {
        Ok(())
    } else {
        Err(AppError::BadRequest(
            "Reset token is invalid or expired".into(),
        ))
    }
}

/// `PUT /users/{id}/role` (admins): the user's sessions end, so every token
/// they hold fails at its next request and their next login carries the
/// new role. Machine tokens stay, acting with the owner's current role.
pub async fn set_role(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    role: Role,
    client: Client,
) -> Result<User, AppError> {
    caller.require_session()?;
    if !caller.is_admin() {
        return Err(AppError::Forbidden("Only admins may change roles".into()));
    }
    let actor = caller.user_id;
    let change = audit::audited(ctx, move |conn| {
        let change = db::users::set_role(conn, id, role.column())?;
        let event = match &change {
            RoleChange::Done { changed: true, .. } => {
                accounts::end_sessions(conn, id, None)?;
                Some(client.event(Action::RoleChanged, Some(actor), Some(id)))
            }
            _ => None,
        };
        Ok((change, event))
    })
    .await?;
    match change {
        RoleChange::Done { user, changed } => {
            // The role shows in the private view, which replicas may serve.
            if changed {
                ctx.cache.announce_commit().await;
            }
            Ok((*user).into())
        }
        RoleChange::NotFound => Err(AppError::user_not_found(id)),
        RoleChange::LastAdmin => Err(AppError::Conflict(
            "The last admin cannot be demoted".into(),
        )),
    }
}

/// `DELETE /users/{id}` (self or admin): the user and everything of theirs
/// goes; every cached entry that showed them is invalidated before the
/// answer.
pub async fn delete_user(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    client: Client,
) -> Result<(), AppError> {
    caller.require_session()?;
    if !caller.may_act_for(id) {
        return Err(AppError::forbidden());
    }
    let actor = caller.user_id;
    let (deletion, recorded) = audit::audited(ctx, move |conn| {
        let deletion = db::users::delete(conn, id)?;
        let (recorded, event) = match &deletion {
            Deletion::Deleted { content_ids } => (
                Some(invalidation::record(conn, content_ids.clone())?),
                Some(client.event(Action::UserDeleted, Some(actor), Some(id))),
            ),
            _ => (None, None),
        };
        Ok(((deletion, recorded), event))
    })
    .await?;
    if let Some(recorded) = recorded {
        invalidation::complete(ctx, recorded).await;
    }
    match deletion {
        Deletion::Deleted { .. } => Ok(()),
        Deletion::NotFound => Err(AppError::user_not_found(id)),
        Deletion::LastAdmin => Err(AppError::Conflict(
            "The last admin cannot be deleted".into(),
        )),
    }
}
