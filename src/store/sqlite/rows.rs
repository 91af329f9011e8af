//! What the aggregates' SQL shares: decoding columns, mapping constraint failures and
//! starting write transactions.
//!
//! Holds no SQL of its own and knows no table; it never logs a value.

use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;

use super::sqlite;
use crate::store::StoreError;

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
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| match constraint(&source) {
        Some(
            rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
        ) => StoreError::Conflict(conflict),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => StoreError::NotFound("user"),
        _ => StoreError::Sqlite { context, source },
    }
}

/// The extended result code of a constraint violation.
pub(super) fn constraint(error: &rusqlite::Error) -> Option<i32> {
    match error {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Some(failure.extended_code)
        }
        _ => None,
    }
}

/// Collects rows whose columns may fail to decode.
pub(super) fn collect_decoded<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T, StoreError>>>,
    context: &'static str,
) -> Result<Vec<T>, StoreError> {
    rows.map(|row| row.map_err(sqlite(context)).and_then(|decoded| decoded))
        .collect()
}

/// Begins a write transaction; dropping it without [`Transaction::commit`] rolls it back.
/// IMMEDIATE takes the write lock at once (waiting out the busy timeout while another
/// process, such as the CLI, writes), so a transaction that reads before it writes cannot
/// fail half-way on a lock upgrade.
pub(super) fn immediate(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("starting a transaction"))
}
