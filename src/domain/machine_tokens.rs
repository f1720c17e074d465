//! Machine tokens: credentials for scripts, with scopes and expiry,
//! shown once and stored as hashes; managed only from a login session.

use chrono::{Duration, Utc};

use super::account_input::NewMachineToken;
use super::audit::{self, Action, Client};
use super::auth::Principal;
use super::secrets;
use super::sessions::MACHINE_TOKEN_PREFIX;
use super::views::{CreatedMachineToken, MachineToken};
use super::{AppContext, AppError};
use crate::db::models::NewApiTokenRow;
use crate::db::{self, accounts};

pub async fn create(
    ctx: &AppContext,
    caller: Principal,
    input: NewMachineToken,
    client: Client,
) -> Result<CreatedMachineToken, AppError> {
    caller.require_session()?;
    let user_id = caller.user_id;
    let token = format!("{MACHINE_TOKEN_PREFIX}{}", secrets::fresh());
    let row = NewApiTokenRow {
        user_id,
        name: input.name,
        scopes: input.scopes.names(),
        token_hash: secrets::digest(&token),
        expires_at: input
            .expires_in_days
            .map(|days| Utc::now() + Duration::days(days)),
    };
    let created = audit::audited(ctx, move |conn| {
        let created = accounts::insert_api_token(conn, &row)?;
        let event = client.event(Action::TokenCreated, Some(user_id), Some(user_id));
        Ok((created, Some(event)))
    })
    .await?;
    Ok(CreatedMachineToken {
        id: created.id,
        name: created.name,
        scopes: created.scopes,
        token,
        expires_at: created.expires_at,
        created_at: created.created_at,
    })
}

/// The caller's tokens, newest first, without secrets.
pub async fn list(ctx: &AppContext, caller: Principal) -> Result<Vec<MachineToken>, AppError> {
    caller.require_session()?;
    let user_id = caller.user_id;
    let rows = db::interact(&ctx.pool, move |conn| {
        accounts::api_tokens_of(conn, user_id)
    })
    .await?;
    Ok(rows.into_iter().map(MachineToken::from).collect())
}

/// Revokes one of the caller's tokens: it is rejected from the next request on.
pub async fn revoke(
    ctx: &AppContext,
    caller: Principal,
    id: i64,
    client: Client,
) -> Result<(), AppError> {
    audit::remove_own(
        ctx,
        caller,
        client,
        Action::TokenRevoked,
        move |conn, user_id| accounts::delete_api_token(conn, user_id, id),
        AppError::NotFound(format!("Token with id {id} not found")),
    )
    .await
}
