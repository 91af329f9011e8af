//! MySQL/MariaDB values: validated params to protocol values, and result cells (binary
//! protocol) to JSON, with each column's type as the result's `columns` describe it.

use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Value};

use crate::datasource::{DatasourceError, json};
use crate::statement::ColumnJson;
use crate::statement::ParamValue;

/// The `binary` character set id: such string columns hold bytes, not text.
const BINARY_CHARSET: u16 = 63;

/// Converts a validated param to a MySQL protocol value. Arrays never get here: the template
/// compiler expands them to one `?` per item.
pub(super) fn to_mysql(position: usize, value: &ParamValue) -> Result<Value, DatasourceError> {
    use chrono::{Datelike, Timelike};
    Ok(match value {
        ParamValue::Null => Value::NULL,
        ParamValue::Text(text) => Value::Bytes(text.as_bytes().to_vec()),
        ParamValue::Int(v) => Value::Int(i64::from(*v)),
        ParamValue::Bigint(v) => Value::Int(*v),
        ParamValue::Float(v) => Value::Double(*v),
        // Sent as text: the server converts a decimal string exactly.
        ParamValue::Numeric(text) => Value::Bytes(text.as_bytes().to_vec()),
        ParamValue::Bool(v) => Value::Int(i64::from(*v)),
        ParamValue::Uuid(v) => Value::Bytes(v.hyphenated().to_string().into_bytes()),
        ParamValue::Date(d) => Value::Date(
            u16::try_from(d.year()).map_err(|_| bind_error(position, "date"))?,
            d.month() as u8,
            d.day() as u8,
            0,
            0,
            0,
            0,
        ),
        ParamValue::Timestamp(t) => Value::Date(
            u16::try_from(t.year()).map_err(|_| bind_error(position, "datetime"))?,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.timestamp_subsec_micros(),
        ),
        ParamValue::Json(v) => Value::Bytes(v.to_string().into_bytes()),
        ParamValue::Array(_) => return Err(bind_error(position, "a list")),
    })
}

fn bind_error(position: usize, db_type: &str) -> DatasourceError {
    DatasourceError::Bind {
        position,
        db_type: db_type.to_string(),
    }
}

/// Appends one cell following the documented mapping: `BIGINT` and `DECIMAL` as strings,
/// binary strings as base64, dates as ISO 8601, `JSON` (MySQL) embedded.
pub(super) fn write_value(out: &mut Vec<u8>, value: Value, column: &Column) {
    let ty = column.column_type();
    match value {
        Value::NULL => json::null(out),
        Value::Int(v) if ty == ColumnType::MYSQL_TYPE_LONGLONG => json::quoted_display(out, v),
        Value::UInt(v) if ty == ColumnType::MYSQL_TYPE_LONGLONG => json::quoted_display(out, v),
        Value::Int(v) => json::integer(out, v),
        Value::UInt(v) => json::integer(out, v),
        Value::Float(v) => json::float32(out, v),
        Value::Double(v) => json::float(out, v),
        Value::Bytes(bytes) => match ty {
            ColumnType::MYSQL_TYPE_JSON => out.extend_from_slice(&bytes),
            ColumnType::MYSQL_TYPE_BIT => {
                let number = bytes.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
                json::integer(out, number);
            }
            _ if column.character_set() == BINARY_CHARSET
                && !matches!(
                    ty,
                    ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL
                ) =>
            {
                json::bytes(out, &bytes)
            }
            _ => match std::str::from_utf8(&bytes) {
                Ok(text) => json::string(out, text),
                Err(_) => json::bytes(out, &bytes),
            },
        },
        Value::Date(year, month, day, hour, minute, second, micros) => {
            if ty == ColumnType::MYSQL_TYPE_DATE || ty == ColumnType::MYSQL_TYPE_NEWDATE {
                json::quoted_display(out, format_args!("{year:04}-{month:02}-{day:02}"));
            } else if micros == 0 {
                json::quoted_display(
                    out,
                    format_args!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"),
                );
            } else {
                json::quoted_display(
                    out,
                    format_args!(
                        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}"
                    ),
                );
            }
        }
        Value::Time(negative, days, hours, minutes, seconds, micros) => {
            let sign = if negative { "-" } else { "" };
            let hours = days * 24 + u32::from(hours);
            if micros == 0 {
                json::quoted_display(
                    out,
                    format_args!("{sign}{hours:02}:{minutes:02}:{seconds:02}"),
                );
            } else {
                json::quoted_display(
                    out,
                    format_args!("{sign}{hours:02}:{minutes:02}:{seconds:02}.{micros:06}"),
                );
            }
        }
    }
}

/// The JSON [`write_value`] writes for a column of this type (the per-app OpenAPI document's
/// column schema): kept beside it so the two cannot drift. In the binary protocol a value's
/// kind follows from its column's type.
pub(super) fn column_json(column: &Column) -> ColumnJson {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_NULL => ColumnJson::Null,
        ColumnType::MYSQL_TYPE_LONGLONG => ColumnJson::IntegerString,
        ColumnType::MYSQL_TYPE_TINY
        | ColumnType::MYSQL_TYPE_SHORT
        | ColumnType::MYSQL_TYPE_INT24
        | ColumnType::MYSQL_TYPE_LONG
        | ColumnType::MYSQL_TYPE_YEAR
        | ColumnType::MYSQL_TYPE_BIT => ColumnJson::Integer,
        ColumnType::MYSQL_TYPE_FLOAT | ColumnType::MYSQL_TYPE_DOUBLE => ColumnJson::Float,
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            ColumnJson::DecimalString
        }
        ColumnType::MYSQL_TYPE_JSON => ColumnJson::AnyJson,
        ColumnType::MYSQL_TYPE_DATE
        | ColumnType::MYSQL_TYPE_NEWDATE
        | ColumnType::MYSQL_TYPE_DATETIME
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP
        | ColumnType::MYSQL_TYPE_TIMESTAMP2
        | ColumnType::MYSQL_TYPE_TIME
        | ColumnType::MYSQL_TYPE_TIME2 => ColumnJson::Text,
        _ if column.character_set() == BINARY_CHARSET => ColumnJson::Base64,
        _ => ColumnJson::Text,
    }
}

/// The column type as shown to clients, in MySQL's own lower-case names.
pub(super) fn type_label(column: &Column) -> String {
    let flags = column.flags();
    let binary = column.character_set() == BINARY_CHARSET;
    // ENUM and SET arrive as strings; only their flags tell them apart.
    if flags.contains(ColumnFlags::ENUM_FLAG) {
        return "enum".into();
    }
    if flags.contains(ColumnFlags::SET_FLAG) {
        return "set".into();
    }
    // MariaDB also sets UNSIGNED_FLAG on TIMESTAMP, YEAR and BIT, where it means nothing.
    let numeric = matches!(
        column.column_type(),
        ColumnType::MYSQL_TYPE_TINY
            | ColumnType::MYSQL_TYPE_SHORT
            | ColumnType::MYSQL_TYPE_INT24
            | ColumnType::MYSQL_TYPE_LONG
            | ColumnType::MYSQL_TYPE_LONGLONG
            | ColumnType::MYSQL_TYPE_FLOAT
            | ColumnType::MYSQL_TYPE_DOUBLE
            | ColumnType::MYSQL_TYPE_DECIMAL
            | ColumnType::MYSQL_TYPE_NEWDECIMAL
    );
    let unsigned = numeric && flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let base = match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY => "tinyint",
        ColumnType::MYSQL_TYPE_SHORT => "smallint",
        ColumnType::MYSQL_TYPE_INT24 => "mediumint",
        ColumnType::MYSQL_TYPE_LONG => "int",
        ColumnType::MYSQL_TYPE_LONGLONG => "bigint",
        ColumnType::MYSQL_TYPE_FLOAT => "float",
        ColumnType::MYSQL_TYPE_DOUBLE => "double",
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => "decimal",
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => "date",
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => "datetime",
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => "time",
        ColumnType::MYSQL_TYPE_YEAR => "year",
        ColumnType::MYSQL_TYPE_BIT => "bit",
        ColumnType::MYSQL_TYPE_JSON => "json",
        ColumnType::MYSQL_TYPE_ENUM => "enum",
        ColumnType::MYSQL_TYPE_SET => "set",
        ColumnType::MYSQL_TYPE_GEOMETRY => "geometry",
        ColumnType::MYSQL_TYPE_NULL => "null",
        ColumnType::MYSQL_TYPE_VARCHAR | ColumnType::MYSQL_TYPE_VAR_STRING => {
            if binary {
                "varbinary"
            } else {
                "varchar"
            }
        }
        ColumnType::MYSQL_TYPE_STRING => {
            if binary {
                "binary"
            } else {
                "char"
            }
        }
        ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if binary {
                "blob"
            } else {
                "text"
            }
        }
        _ => "unknown",
    };
    if unsigned {
        format!("{base} unsigned")
    } else {
        base.to_string()
    }
}
