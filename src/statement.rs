//! Statements ready to send: what a compiled template renders for one request and a
//! datasource driver sends. [`RenderedSql`] (fixed SQL text of one [`Dialect`] and its
//! positional arguments), [`RenderedHttp`] (a request without base URL and credentials),
//! [`ParamValue`], one validated value to bind, and [`ResultColumn`], what a driver says a
//! prepared statement returns (for the per-app OpenAPI document).
//!
//! Bottom layer, shared by the compilers (`catalog`, which produce these) and the drivers
//! (`datasource`, which send them), so neither imports the other. A [`ParamValue`] is never
//! turned into SQL text, and its `Debug` never shows the value.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::spec::ParamType;

/// The SQL dialect a template is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

/// A statement ready to send: fixed SQL text and its positional arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSql {
    pub sql: Arc<str>,
    pub args: Vec<ParamValue>,
    /// The declared type of each placeholder, in order (PostgreSQL; empty for the other
    /// dialects). The database infers a placeholder's type from where it stands; where it
    /// cannot (`$1 IS NULL`), the driver prepares the statement again with these types.
    pub types: Arc<[ParamType]>,
}

/// What a PostgreSQL connection is set up with before a statement under row security:
/// `begin` (`BEGIN; SET LOCAL ROLE "<role>"`, made at compile time from a checked role
/// name, never from request data) and the caller's claims, bound as values of
/// `set_config(name, $n, true)`. `Debug` shows the statement and hides the claims (they
/// hold an email address).
#[derive(Clone, PartialEq)]
pub struct RowContext {
    pub begin: Arc<str>,
    pub claims: RowClaims,
}

/// The caller's claims as PostgREST names them: the whole JSON object for
/// `request.jwt.claims`, and `sub`, `role` and `email` for `request.jwt.claim.<name>`
/// (`None` leaves that setting at its reset value, so `current_setting(name, true)` reads
/// `NULL` or an empty string, never another caller's value).
#[derive(Clone, PartialEq)]
pub struct RowClaims {
    pub json: String,
    pub sub: Option<String>,
    pub role: String,
    pub email: Option<String>,
}

/// The statement that sets a [`RowClaims`]: each claim a bound value (`$1` the JSON, then
/// `sub`, `role`, `email`), each setting local to the transaction.
pub const SET_CLAIMS_SQL: &str = "SELECT set_config('request.jwt.claims', $1, true), \
     set_config('request.jwt.claim.sub', $2, true), \
     set_config('request.jwt.claim.role', $3, true), \
     set_config('request.jwt.claim.email', $4, true)";

impl std::fmt::Debug for RowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowContext")
            .field("begin", &self.begin)
            .finish_non_exhaustive()
    }
}

/// A request ready to send, without the datasource's base URL and credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedHttp {
    pub method: Method,
    /// Percent-encoded path to append to the datasource base URL (`""` or starting with `/`).
    pub path: String,
    /// Query pairs, not yet encoded (the caller encodes them with its URL serializer); a list
    /// value gives one pair per item; a NULL value leaves the pair out.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<RenderedBody>,
}

/// A rendered request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedBody {
    /// Serialized JSON (`application/json`).
    Json(Vec<u8>),
    /// Pairs for `application/x-www-form-urlencoded`, not yet encoded.
    Form(Vec<(String, String)>),
    /// `text/plain`.
    Text(String),
}

/// One bound value. Its `Debug` names the kind only, never the value, so a stray `{:?}`
/// (ours or a dependency's, such as a driver logging its parameters) cannot leak input.
#[derive(Clone, PartialEq, Default)]
pub enum ParamValue {
    /// Also what a slot holds once its value was moved into a statement.
    #[default]
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

impl std::fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ParamValue::Null => return f.write_str("Null"),
            ParamValue::Text(_) => "Text",
            ParamValue::Int(_) => "Int",
            ParamValue::Bigint(_) => "Bigint",
            ParamValue::Float(_) => "Float",
            ParamValue::Numeric(_) => "Numeric",
            ParamValue::Bool(_) => "Bool",
            ParamValue::Uuid(_) => "Uuid",
            ParamValue::Date(_) => "Date",
            ParamValue::Timestamp(_) => "Timestamp",
            ParamValue::Json(_) => "Json",
            ParamValue::Array(items) => return write!(f, "Array(len {})", items.len()),
        };
        write!(f, "{kind}(..)")
    }
}

/// A result column as described by its datasource when the snapshot was built: the name,
/// the database's name for its type (as the view endpoint's `columns` member shows it),
/// and the JSON its values are written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    pub name: String,
    pub db_type: String,
    pub json: ColumnJson,
}

/// What a query's result looks like, as far as the snapshot could tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Described {
    /// A SQL statement and its result columns (none: it returns `rows_affected`).
    Columns(Vec<ResultColumn>),
    /// An HTTP datasource: the upstream's reply in an envelope; its body is not known.
    Http,
    /// Not known: the describe failed (the datasource was down, the statement did not
    /// prepare), or the statements a template can render disagree.
    #[default]
    Unknown,
}

/// The JSON a column's values are written as by the view endpoint (docs/API.md, "Result
/// types"). Every column may also be `null`. Each driver says which one its decoder writes,
/// beside the decoder, so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnJson {
    Boolean,
    /// A JSON integer.
    Integer,
    /// A JSON number, or `"NaN"`, `"Infinity"`, `"-Infinity"` as strings.
    Float,
    /// A string of decimal digits (64-bit integers).
    IntegerString,
    /// An exact decimal as a string (and `"NaN"`, `"Infinity"`, `"-Infinity"`).
    DecimalString,
    /// A string (text, dates, times, intervals, addresses, ...).
    Text,
    /// A UUID, hyphenated lower case.
    Uuid,
    /// Bytes, base64 (standard alphabet, padded).
    Base64,
    /// A JSON value embedded as is.
    AnyJson,
    /// Always `null` (PostgreSQL `void`).
    Null,
    /// An array of these (nested for multi-dimensional arrays).
    Array(Box<ColumnJson>),
    /// SQLite: the declared type is only an affinity, and an expression has none; values come
    /// back as integers, numbers, strings or base64 strings, whichever is stored.
    Dynamic,
    /// The type has no JSON mapping: running the query answers `unsupported_column_type`.
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::ParamValue;

    #[test]
    fn debug_never_shows_the_value() {
        let shown = format!(
            "{:?} {:?}",
            ParamValue::Text("CANARY".into()),
            ParamValue::Array(vec![ParamValue::Numeric("4242".into())])
        );
        assert_eq!(shown, "Text(..) Array(len 1)");
    }
}
