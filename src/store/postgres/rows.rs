//! What the aggregates' SQL shares on PostgreSQL: mapping constraint failures, decoding
//! stored names and JSON, and the generic client bound every single step takes (a pooled
//! client alone, or a transaction).
//!
//! Holds no SQL of its own and knows no table; it never logs a value.

use serde::de::DeserializeOwned;
use tokio_postgres::error::SqlState;

use super::pg;
use crate::store::StoreError;
use crate::store::error::PgError;

pub(super) use tokio_postgres::GenericClient as Db;

/// Decodes a stored enum name (`admin`, `password_reset`) through its serde form, so a bad
/// value is reported as [`StoreError::Corrupt`] like any other undecodable column.
pub(super) fn decode_name<T: DeserializeOwned>(
    what: &'static str,
    name: &str,
    value: String,
) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(value)).map_err(|source| StoreError::Corrupt {
        what,
        name: name.to_string(),
        source,
    })
}

pub(super) fn encode_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("string lists and scopes serialise")
}

/// Maps a failed insert: a taken primary or unique key is a conflict, a missing referenced
/// user is "not found", anything else keeps its cause.
pub(super) fn insert_error(
    context: &'static str,
    conflict: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |source| match source.code() {
        Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(conflict),
        Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound("user"),
        _ => pg(context)(source),
    }
}

/// The name of the constraint a failure violated, if any.
pub(super) fn constraint(error: &tokio_postgres::Error) -> Option<&str> {
    error.as_db_error().and_then(|db| db.constraint())
}

/// A driver error as the store reports it.
pub(super) fn failure(context: &'static str, source: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres {
        context,
        source: PgError::new(source),
    }
}

/// A count the store keeps as BIGINT, as the trait's narrower type (a negative or huge value
/// cannot be stored by this store; it reads as 0 or the maximum).
pub(super) fn to_u32(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}
