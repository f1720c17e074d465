//! `If-Match` on writes: the tag a writer last saw, compared with
//! the resource's current tag while the write holds its row lock, so that
//! of two writers holding the same tag exactly one wins.

use actix_web::http::header::HeaderValue;

use super::AppError;

/// What a write's `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match`.
    Absent,
    /// `If-Match: *`: the resource exists.
    Exists,
    /// The write applies only if one of these strong tags is current.
    OneOf(Vec<String>),
}

impl Precondition {
    /// `Ok` if the write may proceed on a resource whose tag `current`
    /// computes (only when a tag is named); `changed` is the 412 to answer
    /// otherwise.
    pub fn check(
        &self,
        current: impl FnOnce() -> Result<HeaderValue, AppError>,
        required: bool,
        changed: impl FnOnce() -> AppError,
    ) -> Result<(), AppError> {
        match self {
            Precondition::Absent if required => Err(AppError::PreconditionRequired),
            Precondition::Absent | Precondition::Exists => Ok(()),
            Precondition::OneOf(tags) => {
                let current = current()?;
                let current = current.to_str().unwrap_or_default();
                if tags.iter().any(|tag| tag == current) {
                    Ok(())
                } else {
                    Err(changed())
                }
            }
        }
    }
}
