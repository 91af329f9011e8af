//! SQLite datasource (the demo's database, and small embedded use).
//!
//! A connection opens one file and nothing else: the path is judged by [`path`] (never
//! Sluice's own files), URI filenames are off, and attaching other databases is off
//! (`SQLITE_LIMIT_ATTACHED` is 0), so no statement can reach another file.
//!
//! rusqlite is synchronous, so every statement runs on a blocking thread and sends its
//! frames back over the producer channel. Connections are kept in a small pool bounded by
//! the datasource's connection slots; statements are cached per connection. A statement that
//! times out, or whose request goes away, is interrupted through SQLite's interrupt handle,
//! and its connection is not kept.

mod path;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::time::Instant;

use super::{
    ColumnInfo, DatasourceError, ExecOptions, Frame, PoolDefaults, PoolError, Producer, Slots,
    Summary, json,
};
use crate::spec::SqliteSpec;
use crate::statement::ParamValue;
use crate::statement::{ColumnJson, RenderedSql, ResultColumn};

pub use path::{SqlitePathError, SqlitePathRules};

/// A pool of connections to one SQLite file.
pub struct SqliteSource {
    inner: Arc<Inner>,
    slots: Slots,
}

struct Inner {
    name: Arc<str>,
    path: PathBuf,
    flags: OpenFlags,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteSource {
    pub fn new(
        name: &str,
        spec: &SqliteSpec,
        defaults: &PoolDefaults,
    ) -> Result<SqliteSource, PoolError> {
        // No URI filenames: a path is a path (`file:` names are refused by the catalog too).
        let mut flags = OpenFlags::SQLITE_OPEN_NO_MUTEX;
        flags |= if spec.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let size = spec.pool_size.unwrap_or(defaults.pool_size).clamp(1, 64);
        Ok(SqliteSource {
            inner: Arc::new(Inner {
                name: name.into(),
                path: PathBuf::from(&spec.path),
                flags,
                idle: Mutex::new(Vec::new()),
            }),
            slots: super::slots_for(Some(size), spec.pool_wait_ms, defaults),
        })
    }

    pub(super) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The file and how it is opened (for the datasource test).
    pub(crate) fn location(&self) -> (&std::path::Path, OpenFlags) {
        (&self.inner.path, self.inner.flags)
    }

    pub(super) fn spawn(&self, statement: RenderedSql, options: ExecOptions, producer: Producer) {
        let inner = self.inner.clone();
        tokio::spawn(run(inner, statement, options, producer));
    }

    /// Describes `statements` on one pooled connection: each is prepared (which also warms
    /// that connection's statement cache) and its column names and declared types read,
    /// without running it. The outer error is the connection's; an inner one, that
    /// statement's.
    pub(super) async fn describe(
        &self,
        statements: Vec<RenderedSql>,
    ) -> Result<Vec<Result<Vec<ResultColumn>, DatasourceError>>, DatasourceError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(
            move || -> Result<Vec<Result<Vec<ResultColumn>, DatasourceError>>, DatasourceError> {
                let conn = take_connection(&inner)?;
                let described: Vec<Result<Vec<ResultColumn>, DatasourceError>> = statements
                    .iter()
                    .map(|statement| {
                        let prepared = conn
                            .prepare_cached(&statement.sql)
                            .map_err(|e| classify(&inner.name, &e))?;
                        Ok(prepared
                            .columns()
                            .map(|column| {
                                let decl = column.decl_type().map(str::to_ascii_lowercase);
                                ResultColumn {
                                    name: column.name().to_string(),
                                    json: CellKind::from_decl(decl.as_deref())
                                        .json(decl.as_deref()),
                                    db_type: decl.unwrap_or_else(|| "any".into()),
                                }
                            })
                            .collect())
                    })
                    .collect();
                inner
                    .idle
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(conn);
                Ok(described)
            },
        )
        .await
        .map_err(|_| DatasourceError::Internal {
            class: "describe_task",
        })?
    }

    pub(super) fn close(&self) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

async fn run(
    inner: Arc<Inner>,
    statement: RenderedSql,
    options: ExecOptions,
    mut producer: Producer,
) {
    let deadline = Instant::now() + options.timeout;
    let conn = match take_connection(&inner) {
        Ok(conn) => conn,
        Err(error) => return producer.fail(error).await,
    };
    let interrupt = conn.get_interrupt_handle();
    let gone = producer.gone();
    let worker_inner = inner.clone();
    // The producer, and with it the connection slot, stays with the worker until the
    // statement has stopped.
    let mut work = tokio::task::spawn_blocking(move || {
        let mut conn = conn;
        let outcome = execute(&mut conn, statement, options, &mut producer, deadline);
        match outcome {
            Ok(()) => worker_inner
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(conn),
            Err(error) => producer.fail_blocking(error),
        }
    });
    tokio::select! {
        biased;
        _ = &mut work => {}
        _ = tokio::time::sleep_until(deadline) => {
            // The worker sees SQLITE_INTERRUPT and reports the timeout itself.
            interrupt.interrupt();
            let _ = work.await;
        }
        () = gone => {
            // Nobody reads the result: stop it; the interrupted connection is not kept.
            interrupt.interrupt();
            let _ = work.await;
        }
    }
}

fn take_connection(inner: &Inner) -> Result<Connection, DatasourceError> {
    if let Some(conn) = inner
        .idle
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .pop()
    {
        return Ok(conn);
    }
    let conn = Connection::open_with_flags(&inner.path, inner.flags).map_err(|error| {
        tracing::warn!(datasource = %inner.name, error_code = ?error.sqlite_error_code(), "Opening SQLite failed");
        DatasourceError::Unavailable { class: "open" }
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| classify(&inner.name, &e))?;
    // No other database file may be attached to a pooled connection: `ATTACH` (and
    // `VACUUM`, which attaches its target) would let a query reach any file the process can
    // open, Sluice's own store included, whatever the datasource's path.
    conn.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| classify(&inner.name, &e))?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

fn execute(
    conn: &mut Connection,
    statement: RenderedSql,
    options: ExecOptions,
    producer: &mut Producer,
    deadline: Instant,
) -> Result<(), DatasourceError> {
    let name = "sqlite";
    let mut prepared = conn
        .prepare_cached(&statement.sql)
        .map_err(|e| classify(name, &e))?;
    for (index, value) in statement.args.iter().enumerate() {
        prepared
            .raw_bind_parameter(index + 1, to_sqlite(index + 1, value)?)
            .map_err(|e| classify(name, &e))?;
    }
    let columns: Vec<(String, Option<String>)> = prepared
        .columns()
        .map(|c| {
            (
                c.name().to_string(),
                c.decl_type().map(str::to_ascii_lowercase),
            )
        })
        .collect();
    let infos: Vec<ColumnInfo> = columns
        .iter()
        .map(|(column, decl)| ColumnInfo {
            name: column.clone(),
            type_name: decl.clone().unwrap_or_else(|| "any".into()),
        })
        .collect();
    if columns.is_empty() {
        let changed = prepared.raw_execute().map_err(|e| classify(name, &e))?;
        if !producer.start(super::columns_json(&infos)) {
            return Ok(());
        }
        let summary = Summary {
            rows_affected: Some(changed as u64),
            ..Summary::default()
        };
        let _ = producer.frames().blocking_send(Frame::Done(summary));
        return Ok(());
    }
    let kinds: Vec<CellKind> = columns
        .iter()
        .map(|(_, decl)| CellKind::from_decl(decl.as_deref()))
        .collect();
    let mut rows = prepared.raw_query();
    let mut buffer = Vec::with_capacity(4096);
    let mut summary = Summary::default();
    let mut started = false;
    let mut infos = Some(infos);
    while let Some(row) = rows.next().map_err(|e| classify(name, &e))? {
        if !started {
            // Start only once the first step succeeded, so an error in it is a clean status.
            started = true;
            if !producer.start(super::columns_json(&infos.take().unwrap_or_default())) {
                return Ok(());
            }
        }
        if summary.row_count == options.max_rows {
            summary.truncated = true;
            break;
        }
        if summary.row_count % 256 == 255 && Instant::now() > deadline {
            return Err(DatasourceError::Timeout);
        }
        if summary.row_count > 0 {
            buffer.push(b',');
        }
        buffer.push(b'[');
        for (index, kind) in kinds.iter().enumerate() {
            if index > 0 {
                buffer.push(b',');
            }
            let cell = row.get_ref(index).map_err(|e| classify(name, &e))?;
            kind.write(cell, &mut buffer);
        }
        buffer.push(b']');
        summary.row_count += 1;
        if buffer.len() >= options.frame_bytes {
            let frame = Frame::Rows(std::mem::take(&mut buffer).into());
            if producer.frames().blocking_send(frame).is_err() {
                return Ok(());
            }
        }
    }
    if let Some(infos) = infos.take()
        && !producer.start(super::columns_json(&infos))
    {
        return Ok(());
    }
    if !buffer.is_empty() {
        let _ = producer.frames().blocking_send(Frame::Rows(buffer.into()));
    }
    let _ = producer.frames().blocking_send(Frame::Done(summary));
    Ok(())
}

/// How a column's declared type shapes its JSON (SQLite values carry no type of their own
/// beyond integer/real/text/blob).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellKind {
    Plain,
    /// `BIGINT`/`INT8`: integers as strings, like the other databases' bigint.
    Bigint,
    /// `BOOL`/`BOOLEAN`: 0/1 as false/true.
    Bool,
    /// `JSON`: valid JSON text is embedded.
    Json,
    /// `NUMERIC`/`DECIMAL`: numbers as exact decimal strings, like the other databases'
    /// numeric, with the declared scale (`DECIMAL(10,2)`) when there is one. SQLite keeps
    /// such values as integers or 8-byte floats, so the scale is what brings `49.90` back.
    Numeric {
        scale: Option<usize>,
    },
}

impl CellKind {
    fn from_decl(decl: Option<&str>) -> CellKind {
        match decl {
            Some(decl) if decl.contains("bigint") || decl.contains("int8") => CellKind::Bigint,
            Some(decl) if decl.starts_with("bool") => CellKind::Bool,
            Some(decl) if decl.contains("json") => CellKind::Json,
            Some(decl) if decl.starts_with("numeric") || decl.starts_with("decimal") => {
                CellKind::Numeric {
                    scale: declared_scale(decl),
                }
            }
            _ => CellKind::Plain,
        }
    }

    /// The JSON [`write`](CellKind::write) produces for a column of this kind and declared
    /// type `decl` (the per-app OpenAPI document's column schema). SQLite's declared types
    /// are affinities: this is what a value of the declared type comes back as (a value of
    /// another type stored in a non-STRICT table comes back as that type instead). Columns
    /// without an integer, real or text affinity (expressions, `DATE`, `BLOB`) are dynamic.
    fn json(self, decl: Option<&str>) -> ColumnJson {
        match self {
            CellKind::Bigint => ColumnJson::IntegerString,
            CellKind::Bool => ColumnJson::Boolean,
            CellKind::Json => ColumnJson::AnyJson,
            CellKind::Numeric { .. } => ColumnJson::DecimalString,
            // SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1), in order.
            CellKind::Plain => match decl {
                Some(decl) if decl.contains("int") => ColumnJson::Integer,
                Some(decl)
                    if decl.contains("char") || decl.contains("clob") || decl.contains("text") =>
                {
                    ColumnJson::Text
                }
                Some(decl)
                    if decl.contains("real") || decl.contains("floa") || decl.contains("doub") =>
                {
                    ColumnJson::Float
                }
                _ => ColumnJson::Dynamic,
            },
        }
    }

    fn write(self, cell: ValueRef<'_>, out: &mut Vec<u8>) {
        match cell {
            ValueRef::Null => json::null(out),
            ValueRef::Integer(v) => match self {
                CellKind::Bigint => json::quoted_display(out, v),
                CellKind::Bool if v == 0 || v == 1 => json::boolean(out, v == 1),
                CellKind::Numeric { scale: Some(scale) } if scale > 0 => {
                    json::quoted_display(out, format_args!("{v}.{:0<scale$}", ""))
                }
                CellKind::Numeric { .. } => json::quoted_display(out, v),
                _ => json::integer(out, v),
            },
            ValueRef::Real(v) => match self {
                CellKind::Numeric { scale: Some(scale) } if v.is_finite() => {
                    json::quoted_display(out, format_args!("{v:.scale$}"))
                }
                // Rust's shortest round-trip form, never with an exponent.
                CellKind::Numeric { scale: None } if v.is_finite() => json::quoted_display(out, v),
                _ => json::float(out, v),
            },
            ValueRef::Text(bytes) => match std::str::from_utf8(bytes) {
                Ok(text)
                    if self == CellKind::Json
                        && serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok() =>
                {
                    out.extend_from_slice(text.trim().as_bytes())
                }
                Ok(text) => json::string(out, text),
                Err(_) => json::bytes(out, bytes),
            },
            ValueRef::Blob(bytes) => json::bytes(out, bytes),
        }
    }
}

/// The scale of a declared `numeric(p,s)` / `decimal(p,s)` (lower case), at most 30
/// digits; `None` without one.
fn declared_scale(decl: &str) -> Option<usize> {
    let inside = decl.split_once('(')?.1.split_once(')')?.0;
    let scale = inside.split_once(',')?.1.trim().parse::<usize>().ok()?;
    Some(scale.min(30))
}

/// Converts a validated param to an SQLite value. Dates and timestamps are bound as text in
/// SQLite's own format (`YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.fff]`, UTC) so that they compare
/// with what its date functions produce.
fn to_sqlite(position: usize, value: &ParamValue) -> Result<Value, DatasourceError> {
    Ok(match value {
        ParamValue::Null => Value::Null,
        ParamValue::Text(text) => Value::Text(text.clone()),
        ParamValue::Int(v) => Value::Integer(i64::from(*v)),
        ParamValue::Bigint(v) => Value::Integer(*v),
        ParamValue::Float(v) => Value::Real(*v),
        ParamValue::Numeric(text) => Value::Text(text.clone()),
        ParamValue::Bool(v) => Value::Integer(i64::from(*v)),
        ParamValue::Uuid(v) => Value::Text(v.hyphenated().to_string()),
        ParamValue::Date(d) => Value::Text(d.format("%Y-%m-%d").to_string()),
        ParamValue::Timestamp(t) => Value::Text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()),
        ParamValue::Json(v) => Value::Text(v.to_string()),
        ParamValue::Array(_) => {
            return Err(DatasourceError::Bind {
                position,
                db_type: "a list".into(),
            });
        }
    })
}

fn classify(name: &str, error: &rusqlite::Error) -> DatasourceError {
    use rusqlite::ErrorCode;
    let code = error.sqlite_error_code();
    tracing::warn!(datasource = %name, error_code = ?code, "SQLite refused the query");
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation => {
                let kind = match failure.extended_code {
                    2067 | 1555 => "unique",
                    787 => "foreign_key",
                    1299 => "not_null",
                    275 => "check",
                    _ => "integrity",
                };
                DatasourceError::Constraint { kind }
            }
            ErrorCode::OperationInterrupted => DatasourceError::Timeout,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => DatasourceError::Retryable {
                code: failure.extended_code.to_string(),
            },
            ErrorCode::TypeMismatch | ErrorCode::TooBig => DatasourceError::InvalidData {
                class: "data_exception",
            },
            ErrorCode::ReadOnly
            | ErrorCode::PermissionDenied
            | ErrorCode::AuthorizationForStatementDenied => DatasourceError::Query {
                class: "permission_denied",
                code: failure.extended_code.to_string(),
                meaning: "the database file or statement is not writable or not authorised",
            },
            ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                DatasourceError::Unavailable { class: "open" }
            }
            _ => DatasourceError::Query {
                class: "invalid_statement",
                code: failure.extended_code.to_string(),
                meaning: "",
            },
        },
        rusqlite::Error::SqlInputError { .. } => DatasourceError::Query {
            class: "invalid_statement",
            code: "1".into(),
            meaning: "syntax error, or a table or column that does not exist",
        },
        _ => DatasourceError::Internal { class: "sqlite" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(decl: &str, value: ValueRef<'_>) -> String {
        let mut out = Vec::new();
        CellKind::from_decl(Some(decl)).write(value, &mut out);
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    #[test]
    fn numeric_columns_are_exact_strings_with_their_declared_scale() {
        assert_eq!(cell("decimal(10,2)", ValueRef::Real(49.9)), r#""49.90""#);
        assert_eq!(cell("numeric(10, 2)", ValueRef::Integer(-3)), r#""-3.00""#);
        assert_eq!(cell("numeric(10,0)", ValueRef::Integer(7)), r#""7""#);
        assert_eq!(cell("numeric", ValueRef::Real(12.5)), r#""12.5""#);
        assert_eq!(cell("numeric", ValueRef::Integer(7)), r#""7""#);
        assert_eq!(cell("numeric", ValueRef::Real(1e-7)), r#""0.0000001""#);
        assert_eq!(cell("numeric", ValueRef::Real(f64::NAN)), r#""NaN""#);
        // Text SQLite could not read as a number stays text.
        assert_eq!(cell("decimal(5,2)", ValueRef::Text(b"abc")), r#""abc""#);
        // Other columns keep JSON numbers.
        assert_eq!(cell("real", ValueRef::Real(49.9)), "49.9");
        assert_eq!(cell("integer", ValueRef::Integer(7)), "7");
    }
}
