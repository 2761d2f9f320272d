//! Statements both backends run through sqlx's Any driver: written once with `$n`
//! placeholders in SQL both SQLite and Postgres accept.

pub mod commands;
pub mod counts;
pub mod digest;
pub mod enrollments;
pub mod hosts;
pub mod profiles;

use crate::error::ServerError;
use crate::model::UnknownValue;

/// A stored state or verb read back as its enum.
pub(crate) fn parsed<T>(text: String) -> Result<T, ServerError>
where
    T: std::str::FromStr<Err = UnknownValue>,
{
    text.parse()
        .map_err(|e: UnknownValue| ServerError::Storage(e.to_string()))
}
