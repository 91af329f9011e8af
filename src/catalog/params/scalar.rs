//! Reading one JSON value as a scalar of a declared type: integers within their range
//! (from numbers or decimal strings), exact decimals, floats, booleans, UUIDs, RFC 3339
//! dates and timestamps, and the name rules of params and identifiers. Pure functions.

use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde_json::Value;

use super::*;

/// Parses a non-null value as `ty`, without bounds or enum. Text-like types are handled by
/// [`Check`]; here they are parsed plainly.
pub(super) fn parse_scalar(ty: ScalarType, value: &Value) -> Result<ParamValue, Msg> {
    match ty {
        ScalarType::Text | ScalarType::Identifier | ScalarType::Keyword => value
            .as_str()
            .map(|text| ParamValue::Text(text.to_string()))
            .ok_or(Cow::Borrowed("must be a string")),
        ScalarType::Int => match json_integer(value) {
            JsonInteger::Exact(n) => i32::try_from(n)
                .map(ParamValue::Int)
                .map_err(|_| int_range()),
            JsonInteger::Inexact => Err(int_range()),
            JsonInteger::NotInteger => Err(Cow::Borrowed("must be an integer")),
        },
        ScalarType::Bigint => {
            let n = match (value, json_integer(value)) {
                (Value::String(text), _) => parse_bigint_string(text)?,
                (_, JsonInteger::Exact(n)) => n,
                (_, JsonInteger::Inexact) => {
                    return Err(Cow::Borrowed(
                        "must be an integer; send integers beyond 2^53 as a string of digits \
                         or as a JSON integer without fraction or exponent",
                    ));
                }
                (Value::Number(_), JsonInteger::NotInteger) => {
                    return Err(Cow::Borrowed("must be an integer"));
                }
                (_, JsonInteger::NotInteger) => {
                    return Err(Cow::Borrowed(
                        "must be an integer (a JSON number, or a string of digits for values \
                         beyond 2^53)",
                    ));
                }
            };
            i64::try_from(n)
                .map(ParamValue::Bigint)
                .map_err(|_| bigint_range())
        }
        ScalarType::Float => match value.as_f64() {
            Some(n) if n.is_finite() => Ok(ParamValue::Float(n)),
            _ => Err(Cow::Borrowed("must be a number")),
        },
        ScalarType::Numeric => {
            let canonical = match value {
                Value::Number(n) => normalize_decimal(&n.to_string()),
                Value::String(text) => normalize_decimal(text),
                _ => Err(NOT_A_DECIMAL),
            };
            canonical.map(ParamValue::Numeric).map_err(Cow::Borrowed)
        }
        ScalarType::Bool => value
            .as_bool()
            .map(ParamValue::Bool)
            .ok_or(Cow::Borrowed("must be a boolean (true or false)")),
        ScalarType::Uuid => value
            .as_str()
            .and_then(|text| uuid::Uuid::parse_str(text).ok())
            .map(ParamValue::Uuid)
            .ok_or(Cow::Borrowed("must be a UUID")),
        ScalarType::Date => value
            .as_str()
            .and_then(|text| parse_date(text.as_bytes()))
            .map(ParamValue::Date)
            .ok_or(Cow::Borrowed("must be a date (YYYY-MM-DD)")),
        ScalarType::Timestamp => value
            .as_str()
            .and_then(parse_timestamp)
            .map(ParamValue::Timestamp)
            .ok_or(Cow::Borrowed(
                "must be a timestamp (RFC 3339, e.g. 2024-01-31T12:00:00Z; without an offset it \
                 is taken as UTC)",
            )),
        ScalarType::Json => Ok(ParamValue::Json(value.clone())),
    }
}

pub(super) fn int_range() -> Msg {
    Cow::Owned(format!(
        "must be an integer between {} and {}",
        i32::MIN,
        i32::MAX
    ))
}

pub(super) fn bigint_range() -> Msg {
    Cow::Owned(format!(
        "must be an integer between {} and {}",
        i64::MIN,
        i64::MAX
    ))
}

/// What a JSON value is, read as an integer.
pub(super) enum JsonInteger {
    /// Widened to `i128` so that range errors can be told apart from type errors.
    Exact(i128),
    /// An integral value written with a fraction or exponent beyond 2^53, where the `f64` it
    /// was parsed into may no longer be the integer the caller wrote.
    Inexact,
    NotInteger,
}

/// Numbers written with a fraction or exponent (`1.0`, `1e3`) count as integers when their
/// value is integral and exactly representable.
pub(super) fn json_integer(value: &Value) -> JsonInteger {
    let Value::Number(n) = value else {
        return JsonInteger::NotInteger;
    };
    if let Some(i) = n.as_i64() {
        return JsonInteger::Exact(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return JsonInteger::Exact(i128::from(u));
    }
    match n.as_f64() {
        // Exact: an integral f64 of at most 2^53 in magnitude is the integer written.
        Some(f) if f.fract() == 0.0 && f.abs() <= MAX_EXACT_F64_INTEGER => {
            JsonInteger::Exact(f as i128)
        }
        Some(f) if f.is_finite() && f.fract() == 0.0 => JsonInteger::Inexact,
        _ => JsonInteger::NotInteger,
    }
}

/// An optional `-` and one or more ASCII digits.
pub(super) fn parse_bigint_string(text: &str) -> Result<i128, Msg> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Cow::Borrowed(
            "must be an integer (a string of an optional '-' and digits)",
        ));
    }
    // Past 40 significant digits an i128 overflows, and the value is out of range anyway.
    text.parse::<i128>().map_err(|_| bigint_range())
}

pub(super) const NOT_A_DECIMAL: &str = "must be a decimal number (a JSON number or a string such as \
                             \"-12.50\" or \"1.5e-3\")";
pub(super) const TOO_MANY_DIGITS: &str = "must have at most 1000 digits";

/// Normalises a decimal (`-?\d+(\.\d+)?([eE][+-]?\d+)?`) to the canonical form of
/// [`ParamValue::Numeric`]: no exponent, no superfluous leading zeros, the given fractional
/// digits kept (they carry the scale), and no sign on zero.
pub fn normalize_decimal(text: &str) -> Result<String, &'static str> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let (int_digits, frac_digits) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_digits) || (mantissa.contains('.') && !all_digits(frac_digits)) {
        return Err(NOT_A_DECIMAL);
    }
    let total = int_digits.len() + frac_digits.len();
    let exponent: i64 = match exponent {
        None => 0,
        Some(exp) => {
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if !all_digits(digits) {
                return Err(NOT_A_DECIMAL);
            }
            // An exponent this large would need more digits than allowed (or is a zero with
            // an absurd scale); refusing it here keeps the work below bounded.
            let limit = (MAX_NUMERIC_DIGITS + total) as i64;
            let magnitude = digits
                .parse::<i64>()
                .ok()
                .filter(|&m| m <= limit)
                .ok_or(TOO_MANY_DIGITS)?;
            if exp.starts_with('-') {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    let digit = |i: i64| -> u8 {
        match usize::try_from(i) {
            Ok(i) if i < int_digits.len() => int_digits.as_bytes()[i],
            Ok(i) if i < total => frac_digits.as_bytes()[i - int_digits.len()],
            _ => b'0',
        }
    };
    // The decimal point falls before digit number `point` of int_digits ++ frac_digits.
    let point = int_digits.len() as i64 + exponent;
    let int_start = (0..point).find(|&i| digit(i) != b'0').unwrap_or(point);
    let int_len = (point - int_start).max(0) as usize;
    let frac_start = point;
    let frac_len = (total as i64 - frac_start).max(0) as usize;
    if int_len + frac_len > MAX_NUMERIC_DIGITS {
        return Err(TOO_MANY_DIGITS);
    }
    let is_zero = int_digits
        .bytes()
        .chain(frac_digits.bytes())
        .all(|b| b == b'0');
    let mut out = String::with_capacity(int_len + frac_len + 3);
    if negative && !is_zero {
        out.push('-');
    }
    if int_len == 0 {
        out.push('0');
    } else {
        out.extend((int_start..point).map(|i| char::from(digit(i))));
    }
    if frac_len > 0 {
        out.push('.');
        out.extend((frac_start..frac_start + frac_len as i64).map(|i| char::from(digit(i))));
    }
    Ok(out)
}

/// Compares two canonical decimals (as produced by [`normalize_decimal`]) exactly.
pub fn cmp_decimal(a: &str, b: &str) -> Ordering {
    match (a.strip_prefix('-'), b.strip_prefix('-')) {
        (None, None) => cmp_magnitude(a, b),
        (Some(a), Some(b)) => cmp_magnitude(b, a),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
    }
}

pub(super) fn cmp_magnitude(a: &str, b: &str) -> Ordering {
    let (a_int, a_frac) = a.split_once('.').unwrap_or((a, ""));
    let (b_int, b_frac) = b.split_once('.').unwrap_or((b, ""));
    // Canonical integer parts have no leading zeros, so the longer one is larger.
    a_int
        .len()
        .cmp(&b_int.len())
        .then_with(|| a_int.cmp(b_int))
        .then_with(|| {
            let len = a_frac.len().max(b_frac.len());
            let at = |s: &str, i: usize| s.as_bytes().get(i).copied().unwrap_or(b'0');
            (0..len)
                .map(|i| at(a_frac, i).cmp(&at(b_frac, i)))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

pub(super) fn is_param_name(name: &str) -> bool {
    is_simple_name(name, MAX_NAME_LENGTH)
}

/// One or more names separated by `.`, each `[A-Za-z_][A-Za-z0-9_]*` of at most 63 characters.
pub fn is_identifier(text: &str) -> bool {
    text.split('.')
        .all(|part| is_simple_name(part, MAX_IDENTIFIER_PART_LENGTH))
}

pub(super) fn is_simple_name(name: &str, max_len: usize) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => {
            bytes.len() <= max_len
                && bytes[1..]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

/// The canonical (uppercase) spelling of a keyword, compared case-insensitively.
pub(super) fn canonical_keyword(text: &str) -> Option<&'static str> {
    KEYWORDS.into_iter().find(|k| k.eq_ignore_ascii_case(text))
}

pub(super) fn two_digits(bytes: &[u8], at: usize) -> Option<u32> {
    match bytes.get(at..at + 2)? {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// Exactly `YYYY-MM-DD`, year 0001 to 9999.
pub(super) fn parse_date(bytes: &[u8]) -> Option<NaiveDate> {
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = two_digits(bytes, 0)? * 100 + two_digits(bytes, 2)?;
    if year == 0 {
        return None;
    }
    NaiveDate::from_ymd_opt(year as i32, two_digits(bytes, 5)?, two_digits(bytes, 8)?)
}

/// `YYYY-MM-DD` `T`|`t`|space `HH:MM:SS`, an optional fraction of 1 to 9 digits, then an
/// optional offset (`Z`, `z`, `+HH:MM`, `-HH:MM`); no offset means UTC.
pub(super) fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let bytes = text.as_bytes();
    let date = parse_date(bytes.get(..10)?)?;
    if !matches!(bytes.get(10)?, b'T' | b't' | b' ')
        || bytes.get(13) != Some(&b':')
        || bytes.get(16) != Some(&b':')
    {
        return None;
    }
    let (hour, minute, second) = (
        two_digits(bytes, 11)?,
        two_digits(bytes, 14)?,
        two_digits(bytes, 17)?,
    );
    let mut rest = &bytes[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 9 {
            return None;
        }
        for digit in &fraction[..len] {
            nanos = nanos * 10 + u32::from(digit - b'0');
        }
        nanos *= 10u32.pow((9 - len) as u32);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (two_digits(rest, 1)?, two_digits(rest, 4)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    // Leap seconds (`:60`) are refused: PostgreSQL and MySQL would not store them as sent.
    if second > 59 {
        return None;
    }
    let local = date.and_time(NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?);
    let utc = local.checked_sub_signed(TimeDelta::seconds(offset_seconds))?;
    Some(utc.and_utc())
}
