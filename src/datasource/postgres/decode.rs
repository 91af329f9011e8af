//! Encoding PostgreSQL binary column values as JSON, following the documented mapping
//! (`docs/API.md`, "Result types"): `int8` and `numeric` as strings (exact beyond 2^53),
//! timestamps as RFC 3339, `bytea` as base64, `json`/`jsonb` embedded as JSON.

use chrono::{NaiveDate, NaiveTime};
use postgres_protocol::types as wire;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Kind, Type};

use crate::datasource::DatasourceError;
use crate::datasource::json;
use crate::statement::ColumnJson;

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

    /// The JSON [`write`](ColumnDecoder::write) produces for this column (the per-app
    /// OpenAPI document's column schema): kept beside the decoder so the two cannot drift.
    pub fn json(&self) -> ColumnJson {
        match self {
            ColumnDecoder::Bool => ColumnJson::Boolean,
            ColumnDecoder::Int2 | ColumnDecoder::Int4 | ColumnDecoder::Oid => ColumnJson::Integer,
            ColumnDecoder::Int8 => ColumnJson::IntegerString,
            ColumnDecoder::Float4 | ColumnDecoder::Float8 => ColumnJson::Float,
            ColumnDecoder::Numeric => ColumnJson::DecimalString,
            ColumnDecoder::Text
            | ColumnDecoder::Date
            | ColumnDecoder::Time
            | ColumnDecoder::Timestamp
            | ColumnDecoder::Timestamptz
            | ColumnDecoder::Interval
            | ColumnDecoder::Inet { .. } => ColumnJson::Text,
            ColumnDecoder::Json | ColumnDecoder::Jsonb => ColumnJson::AnyJson,
            ColumnDecoder::Uuid => ColumnJson::Uuid,
            ColumnDecoder::Bytea => ColumnJson::Base64,
            ColumnDecoder::Void => ColumnJson::Null,
            ColumnDecoder::Array(member) => ColumnJson::Array(Box::new(member.json())),
        }
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
                days => write_date(out, i64::from(days))?,
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
                        write_timestamp(out, micros, matches!(self, ColumnDecoder::Timestamptz))?
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

/// Microseconds in a day.
const DAY_MICROS: i64 = 86_400_000_000;

/// Writes a timestamp (microseconds since 2000-01-01 00:00, PostgreSQL's epoch) as
/// `"YYYY-MM-DDTHH:MM:SS[.ffffff][Z]"`. This runs for every timestamp cell, so years 1..=9999
/// are written from the day count by arithmetic into one small buffer; other years go
/// through chrono ([`write_timestamp_chrono`]), which spells them and refuses what it cannot
/// hold, as every timestamp once did.
fn write_timestamp(out: &mut Vec<u8>, micros: i64, utc: bool) -> Result<(), Malformed> {
    let days = micros.div_euclid(DAY_MICROS);
    let Some((year, month, day)) = civil_date(days) else {
        return write_timestamp_chrono(out, micros, utc);
    };
    let of_day = micros.rem_euclid(DAY_MICROS) as u64;
    let seconds = (of_day / 1_000_000) as u32;
    let fraction = (of_day % 1_000_000) as u32;
    let mut text = [0u8; 29];
    text[0] = b'"';
    put_date(&mut text[1..11], year, month, day);
    text[11] = b'T';
    put_2(&mut text[12..14], seconds / 3600);
    text[14] = b':';
    put_2(&mut text[15..17], seconds / 60 % 60);
    text[17] = b':';
    put_2(&mut text[18..20], seconds % 60);
    let mut end = 20;
    if fraction != 0 {
        text[20] = b'.';
        put_2(&mut text[21..23], fraction / 10_000);
        put_2(&mut text[23..25], fraction / 100 % 100);
        put_2(&mut text[25..27], fraction % 100);
        end = 27;
    }
    if utc {
        text[end] = b'Z';
        end += 1;
    }
    text[end] = b'"';
    out.extend_from_slice(&text[..=end]);
    Ok(())
}

/// A date (days since 2000-01-01) as `"YYYY-MM-DD"`; years outside 1..=9999 (PostgreSQL
/// allows 4713 BC to 5874897 AD) in chrono's spelling (`-0044-03-15`, `+12345-01-01`).
fn write_date(out: &mut Vec<u8>, days: i64) -> Result<(), Malformed> {
    match civil_date(days) {
        Some((year, month, day)) => {
            let mut text = [0u8; 12];
            text[0] = b'"';
            put_date(&mut text[1..11], year, month, day);
            text[11] = b'"';
            out.extend_from_slice(&text);
        }
        None => {
            use std::io::Write;
            let date = epoch_date()
                .checked_add_signed(chrono::Duration::days(days))
                .ok_or(Malformed)?;
            write!(out, "\"{}\"", date.format("%Y-%m-%d")).map_err(|_| Malformed)?;
        }
    }
    Ok(())
}

/// The timestamps [`write_timestamp`] leaves to chrono: years outside 1..=9999. What chrono
/// cannot hold either (beyond about 262,000 years either way) is `Malformed`, as before.
fn write_timestamp_chrono(out: &mut Vec<u8>, micros: i64, utc: bool) -> Result<(), Malformed> {
    use chrono::Timelike;
    use std::io::Write;
    let at = epoch_date()
        .and_time(NaiveTime::MIN)
        .checked_add_signed(chrono::Duration::microseconds(micros))
        .ok_or(Malformed)?;
    write!(
        out,
        "\"{}T{:02}:{:02}:{:02}{}{}\"",
        at.date().format("%Y-%m-%d"),
        at.hour(),
        at.minute(),
        at.second(),
        Fraction(at.nanosecond() / 1000),
        if utc { "Z" } else { "" }
    )
    .map_err(|_| Malformed)
}

/// The proleptic Gregorian `(year, month, day)` of `days` since 2000-01-01, when the year is
/// within 1..=9999 (the years written digit by digit); `None` otherwise. Howard Hinnant's
/// `civil_from_days`, on days since 0000-03-01 so that leap days end each 400-year era.
fn civil_date(days: i64) -> Option<(u32, u32, u32)> {
    // 2000-01-01 is day 730,425 after 0000-03-01; 0001-01-01 is day 306 and 9999-12-31 is
    // day 3,652,364, so the range check also keeps the arithmetic below non-negative.
    let z = days.checked_add(730_425)?;
    if !(306..=3_652_364).contains(&z) {
        return None;
    }
    let z = z as u32;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u32::from(month <= 2);
    Some((year, month, day))
}

/// `YYYY-MM-DD` into a 10-byte slice (`year` at most 9999).
fn put_date(text: &mut [u8], year: u32, month: u32, day: u32) {
    put_2(&mut text[0..2], year / 100);
    put_2(&mut text[2..4], year % 100);
    text[4] = b'-';
    put_2(&mut text[5..7], month);
    text[7] = b'-';
    put_2(&mut text[8..10], day);
}

/// The two-digit spellings of 0..=99, one after the other: `00`, `01`, ..., `99`. Every
/// timestamp cell is written from it (a lookup instead of a division per digit).
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut value = 0;
    while value < 100 {
        pairs[2 * value] = b'0' + (value / 10) as u8;
        pairs[2 * value + 1] = b'0' + (value % 10) as u8;
        value += 1;
    }
    pairs
};

/// Two decimal digits of `value` (below 100) into a 2-byte slice.
fn put_2(text: &mut [u8], value: u32) {
    let at = value as usize * 2;
    text[..2].copy_from_slice(&DIGIT_PAIRS[at..at + 2]);
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
    fn digit_pairs_spell_two_digits() {
        for value in 0..100u32 {
            let mut text = [0u8; 2];
            put_2(&mut text, value);
            assert_eq!(std::str::from_utf8(&text).unwrap(), format!("{value:02}"));
        }
    }

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

    fn written(write: impl FnOnce(&mut Vec<u8>) -> Result<(), Malformed>) -> Option<String> {
        let mut out = Vec::new();
        write(&mut out).ok()?;
        Some(String::from_utf8(out).expect("ASCII"))
    }

    /// What chrono makes of a timestamp (`Some` when it can hold it), as the fast path must.
    fn chrono_timestamp(micros: i64, utc: bool) -> Option<String> {
        written(|out| write_timestamp_chrono(out, micros, utc))
    }

    #[test]
    fn dates_match_chrono_across_the_years_written_digit_by_digit_and_beyond() {
        // Every day around the edges of the fast range and the turns of eras and centuries,
        // and a stride through the rest (every day of 1..=9999 takes too long unoptimised).
        let first = -730_119; // 0001-01-01
        let last = 2_921_939; // 9999-12-31
        let mut days: Vec<i64> = (first - 800..first + 800).collect();
        days.extend(last - 800..last + 800);
        for turn in [-146_097, -36_524, 0, 36_525, 146_097] {
            days.extend(turn - 400..turn + 400);
        }
        days.extend((first..=last).step_by(97));
        days.extend([-2_451_545, 2_147_483_646, -2_147_483_647]);
        for day in days {
            let expected = epoch_date()
                .checked_add_signed(chrono::Duration::days(day))
                .map(|date| format!("\"{}\"", date.format("%Y-%m-%d")));
            assert_eq!(written(|out| write_date(out, day)), expected, "day {day}");
            assert_eq!(civil_date(day).is_some(), (first..=last).contains(&day));
        }
    }

    #[test]
    fn timestamps_match_chrono() {
        let day = DAY_MICROS;
        let mut micros = vec![
            0,
            1,
            -1,
            999_999,
            1_000_000,
            day - 1,
            -day,
            -day + 1,
            -63_082_281_600_000_000, // 0001-01-01 00:00:00
            -63_082_281_600_000_001, // a microsecond before
            252_455_615_999_999_999, // 9999-12-31 23:59:59.999999
            252_455_616_000_000_000, // 10000-01-01
            i64::MAX - 1,
            i64::MIN + 1,
        ];
        // A pseudo-random walk over the fast range, with and without fractions.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = 315_537_897_600_000_000u64; // 0001-01-01 to 10000-01-01
            let at = (x % span) as i64 - 63_082_281_600_000_000;
            micros.push(at);
            micros.push(at - at.rem_euclid(1_000_000));
        }
        for at in micros {
            for utc in [false, true] {
                assert_eq!(
                    written(|out| write_timestamp(out, at, utc)),
                    chrono_timestamp(at, utc),
                    "{at} us"
                );
            }
        }
        assert_eq!(
            written(|out| write_timestamp(out, 0, true)).as_deref(),
            Some("\"2000-01-01T00:00:00Z\"")
        );
        assert_eq!(
            written(|out| write_timestamp(out, -1, false)).as_deref(),
            Some("\"1999-12-31T23:59:59.999999\"")
        );
        assert_eq!(
            written(|out| write_timestamp(out, -63_082_281_600_000_001, false)).as_deref(),
            Some("\"0000-12-31T23:59:59.999999\"")
        );
        assert_eq!(
            written(|out| write_timestamp(out, i64::MAX - 1, true)),
            None
        );
    }

    #[test]
    fn special_numerics_are_named() {
        let raw = [0u8, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(numeric_to_string(&raw).as_deref(), Some("NaN"));
    }
}
