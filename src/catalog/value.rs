//! Validated param values, ready to bind.
//!
//! A [`ParamValue`] is what `catalog::params` produces from caller JSON after checking it
//! against the declared schema, and what each datasource driver encodes into its own
//! parameter format. It is never turned into SQL text.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Text(String),
    Int(i32),
    Bigint(i64),
    Float(f64),
    /// A canonical decimal string: optional `-`, digits, optional `.` and digits
    /// (no exponent, no leading `+`).
    Numeric(String),
    Bool(bool),
    Uuid(Uuid),
    Date(NaiveDate),
    Timestamp(DateTime<Utc>),
    Json(serde_json::Value),
    /// Items of one scalar type (never nested arrays).
    Array(Vec<ParamValue>),
}
