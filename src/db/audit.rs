//! The audit log of security events: appended inside the transaction
//! of the change it records, read newest first.

use diesel::prelude::*;

use super::models::{AuditRow, NewAuditRow};
use super::schema::audit_events;
use super::DbError;

pub fn append(conn: &mut PgConnection, event: &NewAuditRow) -> Result<(), DbError> {
    diesel::insert_into(audit_events::table)
        .values(event)
        .execute(conn)?;
    Ok(())
}

/// One keyset page, newest first.
pub fn page_before(
    conn: &mut PgConnection,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditRow>, DbError> {
    let mut query = audit_events::table
        .select(AuditRow::as_select())
        .order(audit_events::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before_id) = before_id {
        query = query.filter(audit_events::id.lt(before_id));
    }
    Ok(query.load(conn)?)
}
