//! Encoding PostgreSQL binary column values as JSON, following the documented mapping
//! (`docs/API.md`, "Result types"): `int8` and `numeric` as strings (exact beyond 2^53),
//! timestamps as RFC 3339, `bytea` as base64, `json`/`jsonb` embedded as JSON.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use postgres_protocol::types as wire;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Kind, Type};

use crate::datasource::DatasourceError;
use crate::datasource::json;

/// How to write one column's values.
#[derive(Debug, Clone)]
pub enum ColumnDecoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Json,
    Jsonb,
    Uuid,
    Date,
    Time,
    Timestamp,
    Timestamptz,
    Interval,
    Bytea,
    Inet {
        always_prefix: bool,
    },
    /// `void` (the result of a function such as `pg_sleep`): always `null`.
    Void,
    Array(Box<ColumnDecoder>),
}

impl ColumnDecoder {
    /// The decoder for a column type, or `None` when it has no JSON mapping.
    pub fn for_type(ty: &Type) -> Option<ColumnDecoder> {
        match ty.kind() {
            Kind::Enum(_) => return Some(ColumnDecoder::Text),
            Kind::Domain(inner) => return ColumnDecoder::for_type(inner),
            Kind::Array(member) => {
                return ColumnDecoder::for_type(member)
                    .map(|inner| ColumnDecoder::Array(Box::new(inner)));
            }
            _ => {}
        }
        Some(match *ty {
            Type::BOOL => ColumnDecoder::Bool,
            Type::INT2 => ColumnDecoder::Int2,
            Type::INT4 => ColumnDecoder::Int4,
            Type::INT8 => ColumnDecoder::Int8,
            Type::OID => ColumnDecoder::Oid,
            Type::FLOAT4 => ColumnDecoder::Float4,
            Type::FLOAT8 => ColumnDecoder::Float8,
            Type::NUMERIC => ColumnDecoder::Numeric,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => {
                ColumnDecoder::Text
            }
            Type::JSON => ColumnDecoder::Json,
            Type::JSONB => ColumnDecoder::Jsonb,
            Type::UUID => ColumnDecoder::Uuid,
            Type::DATE => ColumnDecoder::Date,
            Type::TIME => ColumnDecoder::Time,
            Type::TIMESTAMP => ColumnDecoder::Timestamp,
            Type::TIMESTAMPTZ => ColumnDecoder::Timestamptz,
            Type::INTERVAL => ColumnDecoder::Interval,
            Type::BYTEA => ColumnDecoder::Bytea,
            Type::INET => ColumnDecoder::Inet {
                always_prefix: false,
            },
            Type::CIDR => ColumnDecoder::Inet {
                always_prefix: true,
            },
            Type::VOID => ColumnDecoder::Void,
            _ if ty.name() == "citext" => ColumnDecoder::Text,
            _ => return None,
        })
    }

    fn write(&self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        match self {
            ColumnDecoder::Bool => json::boolean(out, wire::bool_from_sql(raw)?),
            ColumnDecoder::Int2 => json::integer(out, wire::int2_from_sql(raw)?),
            ColumnDecoder::Int4 => json::integer(out, wire::int4_from_sql(raw)?),
            ColumnDecoder::Int8 => {
                out.push(b'"');
                json::integer(out, wire::int8_from_sql(raw)?);
                out.push(b'"');
            }
            ColumnDecoder::Oid => json::integer(out, wire::oid_from_sql(raw)?),
            ColumnDecoder::Float4 => json::float32(out, wire::float4_from_sql(raw)?),
            ColumnDecoder::Float8 => json::float(out, wire::float8_from_sql(raw)?),
            ColumnDecoder::Numeric => {
                out.push(b'"');
                write_numeric(raw, out).ok_or(Malformed)?;
                out.push(b'"');
            }
            ColumnDecoder::Text => json::string(out, wire::text_from_sql(raw)?),
            ColumnDecoder::Void => out.extend_from_slice(b"null"),
            // PostgreSQL validated the JSON on input; it is embedded as is.
            ColumnDecoder::Json => out.extend_from_slice(raw),
            ColumnDecoder::Jsonb => match raw.split_first() {
                Some((1, body)) => out.extend_from_slice(body),
                _ => return Err(Malformed),
            },
            ColumnDecoder::Uuid => {
                json::quoted_display(out, uuid::Uuid::from_bytes(wire::uuid_from_sql(raw)?))
            }
            ColumnDecoder::Date => match wire::date_from_sql(raw)? {
                i32::MAX => json::string(out, "infinity"),
                i32::MIN => json::string(out, "-infinity"),
                days => {
                    let date = epoch_date()
                        .checked_add_signed(chrono::Duration::days(i64::from(days)))
                        .ok_or(Malformed)?;
                    out.push(b'"');
                    write_date(out, date)?;
                    out.push(b'"');
                }
            },
            ColumnDecoder::Time => {
                // Written from the microseconds directly: `24:00:00` is a valid PostgreSQL
                // time that chrono's NaiveTime cannot hold.
                let micros = wire::time_from_sql(raw)?;
                if !(0..=86_400_000_000).contains(&micros) {
                    return Err(Malformed);
                }
                let seconds = micros / 1_000_000;
                let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
                json::quoted_display(
                    out,
                    format_args!(
                        "{hours:02}:{minutes:02}:{seconds:02}{}",
                        Fraction((micros % 1_000_000) as u32)
                    ),
                );
            }
            ColumnDecoder::Timestamp | ColumnDecoder::Timestamptz => {
                match wire::timestamp_from_sql(raw)? {
                    i64::MAX => json::string(out, "infinity"),
                    i64::MIN => json::string(out, "-infinity"),
                    micros => {
                        let at = epoch_date()
                            .and_time(NaiveTime::MIN)
                            .checked_add_signed(chrono::Duration::microseconds(micros))
                            .ok_or(Malformed)?;
                        write_timestamp(out, at, matches!(self, ColumnDecoder::Timestamptz))?;
                    }
                }
            }
            ColumnDecoder::Interval => {
                let value =
                    <Interval as FromSql>::from_sql(&Type::INTERVAL, raw).map_err(|_| Malformed)?;
                json::quoted_display(out, value);
            }
            ColumnDecoder::Bytea => json::bytes(out, wire::bytea_from_sql(raw)),
            ColumnDecoder::Inet { always_prefix } => {
                let inet = wire::inet_from_sql(raw)?;
                let full = if inet.addr().is_ipv4() { 32 } else { 128 };
                if *always_prefix || inet.netmask() != full {
                    json::quoted_display(out, format_args!("{}/{}", inet.addr(), inet.netmask()));
                } else {
                    json::quoted_display(out, inet.addr());
                }
            }
            ColumnDecoder::Array(member) => {
                let array = wire::array_from_sql(raw)?;
                let dims: Vec<usize> = {
                    use fallible_iterator::FallibleIterator;
                    array
                        .dimensions()
                        .map(|d| Ok(usize::try_from(d.len).unwrap_or(0)))
                        .collect()?
                };
                let values: Vec<Option<&[u8]>> = {
                    use fallible_iterator::FallibleIterator;
                    array.values().collect()?
                };
                let mut values = values.into_iter();
                if dims.is_empty() {
                    out.extend_from_slice(b"[]");
                } else {
                    write_array_level(member, &dims, &mut values, out)?;
                }
            }
        }
        Ok(())
    }
}

fn write_array_level<'a>(
    member: &ColumnDecoder,
    dims: &[usize],
    values: &mut impl Iterator<Item = Option<&'a [u8]>>,
    out: &mut Vec<u8>,
) -> Result<(), Malformed> {
    out.push(b'[');
    for index in 0..dims[0] {
        if index > 0 {
            out.push(b',');
        }
        if dims.len() > 1 {
            write_array_level(member, &dims[1..], values, out)?;
        } else {
            match values.next().ok_or(Malformed)? {
                Some(raw) => member.write(raw, out)?,
                None => json::null(out),
            }
        }
    }
    out.push(b']');
    Ok(())
}

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).expect("valid date")
}

/// Writes `"YYYY-MM-DDTHH:MM:SS[.ffffff][Z]"` digit by digit: this runs for every timestamp
/// cell, and chrono's `format` machinery costs several times more.
fn write_timestamp(out: &mut Vec<u8>, at: NaiveDateTime, utc: bool) -> Result<(), Malformed> {
    use chrono::Timelike;
    out.push(b'"');
    write_date(out, at.date())?;
    out.push(b'T');
    push_padded(out, at.hour(), 2);
    out.push(b':');
    push_padded(out, at.minute(), 2);
    out.push(b':');
    push_padded(out, at.second(), 2);
    let micros = at.nanosecond() / 1000;
    if micros != 0 {
        out.push(b'.');
        push_padded(out, micros, 6);
    }
    if utc {
        out.push(b'Z');
    }
    out.push(b'"');
    Ok(())
}

/// `YYYY-MM-DD` for years 1..=9999; other years (PostgreSQL allows 4713 BC to 294276 AD)
/// fall back to chrono's spelling (`-0044-03-15`, `+12345-01-01`).
fn write_date(out: &mut Vec<u8>, date: NaiveDate) -> Result<(), Malformed> {
    use chrono::Datelike;
    let year = date.year();
    if (1..=9999).contains(&year) {
        push_padded(out, year as u32, 4);
        out.push(b'-');
        push_padded(out, date.month(), 2);
        out.push(b'-');
        push_padded(out, date.day(), 2);
    } else {
        use std::io::Write;
        write!(out, "{}", date.format("%Y-%m-%d")).map_err(|_| Malformed)?;
    }
    Ok(())
}

/// Appends `value` with leading zeros to `width` digits.
fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits.as_bytes());
}

/// Microseconds as `.ffffff` (always six digits, like MySQL's), or nothing when zero.
struct Fraction(u32);

impl std::fmt::Display for Fraction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            Ok(())
        } else {
            write!(f, ".{:06}", self.0)
        }
    }
}

/// A value the server sent that does not decode as its declared type.
#[derive(Debug)]
pub struct Malformed;

impl From<Box<dyn std::error::Error + Sync + Send>> for Malformed {
    fn from(_: Box<dyn std::error::Error + Sync + Send>) -> Malformed {
        Malformed
    }
}

/// The raw bytes of a column, taken without a type check so [`ColumnDecoder`] can decide.
struct RawCell<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for RawCell<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<RawCell<'a>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawCell(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<RawCell<'a>, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawCell(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Appends `row` as a JSON array.
pub fn write_row(
    row: &Row,
    decoders: &[ColumnDecoder],
    out: &mut Vec<u8>,
) -> Result<(), DatasourceError> {
    out.push(b'[');
    for (index, decoder) in decoders.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let cell: RawCell<'_> = row.try_get(index).map_err(|_| DatasourceError::Internal {
            class: "row_decode",
        })?;
        match cell.0 {
            None => json::null(out),
            Some(raw) => decoder
                .write(raw, out)
                .map_err(|_| DatasourceError::Internal {
                    class: "row_decode",
                })?,
        }
    }
    out.push(b']');
    Ok(())
}

/// The column type as shown to clients: the PostgreSQL name, `[]` for arrays.
pub fn type_label(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(member) => format!("{}[]", member.name()),
        _ => ty.name().to_string(),
    }
}

/// Decodes PostgreSQL's binary NUMERIC (base-10000 groups) into exact decimal text.
#[cfg(test)]
pub fn numeric_to_string(raw: &[u8]) -> Option<String> {
    let mut out = Vec::new();
    write_numeric(raw, &mut out)?;
    String::from_utf8(out).ok()
}

/// Appends a binary NUMERIC as exact decimal text, without allocating per digit group.
fn write_numeric(raw: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let header = |i: usize| raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(header(0)?);
    let weight = header(2)? as i16 as i32;
    let sign = header(4)?;
    let dscale = usize::from(header(6)?);
    let special: &[u8] = match sign {
        0xC000 => b"NaN",
        0xD000 => b"Infinity",
        0xF000 => b"-Infinity",
        0x0000 | 0x4000 => b"",
        _ => return None,
    };
    if !special.is_empty() {
        out.extend_from_slice(special);
        return Some(());
    }
    if raw.len() < 8 + 2 * ndigits {
        return None;
    }
    let group = |index: i32| -> u32 {
        usize::try_from(index)
            .ok()
            .filter(|i| *i < ndigits)
            .and_then(|i| header(8 + 2 * i))
            .map_or(0, u32::from)
    };
    if sign == 0x4000 && ndigits > 0 {
        out.push(b'-');
    }
    if weight < 0 {
        out.push(b'0');
    } else {
        push_padded(out, group(0), 1);
        for index in 1..=weight {
            push_padded(out, group(index), 4);
        }
    }
    if dscale > 0 {
        out.push(b'.');
        let start = out.len();
        let mut index = weight + 1;
        while out.len() - start < dscale {
            push_padded(out, group(index), 4);
            index += 1;
        }
        out.truncate(start + dscale);
    }
    Some(())
}

/// A PostgreSQL interval, written in ISO 8601 form (`P1Y2M3DT4H5M6.5S`), each part signed as
/// PostgreSQL's `iso_8601` interval style does.
struct Interval {
    months: i32,
    days: i32,
    micros: i64,
}

impl<'a> FromSql<'a> for Interval {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> Result<Interval, Box<dyn std::error::Error + Sync + Send>> {
        if raw.len() != 16 {
            return Err("interval must be 16 bytes".into());
        }
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(Interval {
            months,
            days,
            micros,
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.months == 0 && self.days == 0 && self.micros == 0 {
            return f.write_str("PT0S");
        }
        f.write_str("P")?;
        let (years, months) = (self.months / 12, self.months % 12);
        if years != 0 {
            write!(f, "{years}Y")?;
        }
        if months != 0 {
            write!(f, "{months}M")?;
        }
        if self.days != 0 {
            write!(f, "{}D", self.days)?;
        }
        if self.micros != 0 {
            f.write_str("T")?;
            let hours = self.micros / 3_600_000_000;
            let minutes = self.micros % 3_600_000_000 / 60_000_000;
            let micros = self.micros % 60_000_000;
            if hours != 0 {
                write!(f, "{hours}H")?;
            }
            if minutes != 0 {
                write!(f, "{minutes}M")?;
            }
            if micros != 0 {
                let sign = if micros < 0 { "-" } else { "" };
                let micros = micros.unsigned_abs();
                let (seconds, fraction) = (micros / 1_000_000, micros % 1_000_000);
                if fraction == 0 {
                    write!(f, "{sign}{seconds}S")?;
                } else {
                    let fraction = format!("{fraction:06}");
                    write!(f, "{sign}{seconds}.{}S", fraction.trim_end_matches('0'))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_use_iso_8601() {
        let show = |months, days, micros| {
            Interval {
                months,
                days,
                micros,
            }
            .to_string()
        };
        assert_eq!(show(0, 0, 0), "PT0S");
        assert_eq!(
            show(14, 3, 3_600_000_000 + 120_000_000 + 5_500_000),
            "P1Y2M3DT1H2M5.5S"
        );
        assert_eq!(show(0, -1, -1_000_000), "P-1DT-1S");
    }

    #[test]
    fn special_numerics_are_named() {
        let raw = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(numeric_to_string(&raw).as_deref(), Some("NaN"));
    }
}
