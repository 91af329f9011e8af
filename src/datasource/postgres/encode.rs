//! Binding validated [`ParamValue`]s as PostgreSQL binary parameters.
//!
//! PostgreSQL infers a type for each `$n` when the statement is prepared. [`PgArg`] encodes a
//! value for that type when the conversion is exact (an `int` param into an `int8` column, a
//! `numeric` param into `numeric`) and refuses it otherwise with a [`BindMismatch`].

use std::error::Error;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::statement::ParamValue;

type BoxError = Box<dyn Error + Sync + Send>;

/// A value that cannot be encoded as the parameter type PostgreSQL inferred.
#[derive(Debug, Clone, thiserror::Error)]
#[error("parameter {position} cannot be bound as {db_type}")]
pub struct BindMismatch {
    pub position: usize,
    pub db_type: String,
}

/// One positional argument (`position` is 1-based, for error reports).
#[derive(Debug)]
pub struct PgArg<'a> {
    position: usize,
    value: &'a ParamValue,
}

impl<'a> PgArg<'a> {
    pub fn new(position: usize, value: &'a ParamValue) -> PgArg<'a> {
        PgArg { position, value }
    }

    fn mismatch(&self, ty: &Type) -> BoxError {
        Box::new(BindMismatch {
            position: self.position,
            db_type: super::decode::type_label(ty),
        })
    }
}

fn is_text_like(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
        || matches!(ty.kind(), Kind::Enum(_))
}

impl ToSql for PgArg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        if let Kind::Domain(inner) = ty.kind() {
            return self.to_sql(inner, out);
        }
        match self.value {
            ParamValue::Null => Ok(IsNull::Yes),
            ParamValue::Text(text) if is_text_like(ty) => {
                out.put_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            ParamValue::Int(value) => self.integer(i64::from(*value), ty, out),
            ParamValue::Bigint(value) => self.integer(*value, ty, out),
            ParamValue::Float(value) => match *ty {
                Type::FLOAT8 => value.to_sql(ty, out),
                Type::FLOAT4 => (*value as f32).to_sql(ty, out),
                Type::NUMERIC if value.is_finite() => {
                    encode_numeric(&value.to_string(), out).ok_or_else(|| self.mismatch(ty))
                }
                _ => Err(self.mismatch(ty)),
            },
            ParamValue::Numeric(text) => match *ty {
                Type::NUMERIC => encode_numeric(text, out).ok_or_else(|| self.mismatch(ty)),
                Type::FLOAT8 => text
                    .parse::<f64>()
                    .map_err(|_| self.mismatch(ty))?
                    .to_sql(ty, out),
                Type::INT2 | Type::INT4 | Type::INT8 => {
                    let value = text.parse::<i64>().map_err(|_| self.mismatch(ty))?;
                    self.integer(value, ty, out)
                }
                _ if is_text_like(ty) => {
                    out.put_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(self.mismatch(ty)),
            },
            ParamValue::Bool(value) if *ty == Type::BOOL => value.to_sql(ty, out),
            ParamValue::Uuid(value) => match *ty {
                Type::UUID => value.to_sql(ty, out),
                _ if is_text_like(ty) => {
                    out.put_slice(value.hyphenated().to_string().as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(self.mismatch(ty)),
            },
            ParamValue::Date(value) if *ty == Type::DATE => value.to_sql(ty, out),
            ParamValue::Timestamp(value) => match *ty {
                Type::TIMESTAMPTZ => value.to_sql(ty, out),
                Type::TIMESTAMP => value.naive_utc().to_sql(ty, out),
                _ => Err(self.mismatch(ty)),
            },
            ParamValue::Json(value) => match *ty {
                Type::JSON | Type::JSONB => value.to_sql(ty, out),
                _ => Err(self.mismatch(ty)),
            },
            ParamValue::Array(items) => match ty.kind() {
                Kind::Array(_) => {
                    let args: Vec<PgArg<'_>> = items
                        .iter()
                        .map(|item| PgArg::new(self.position, item))
                        .collect();
                    args.to_sql(ty, out)
                }
                _ => Err(self.mismatch(ty)),
            },
            _ => Err(self.mismatch(ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Every type is attempted; `to_sql` refuses what does not convert exactly.
        true
    }

    to_sql_checked!();
}

impl PgArg<'_> {
    fn integer(&self, value: i64, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match *ty {
            Type::INT8 => value.to_sql(ty, out),
            Type::INT4 => i32::try_from(value)
                .map_err(|_| self.mismatch(ty))?
                .to_sql(ty, out),
            Type::INT2 => i16::try_from(value)
                .map_err(|_| self.mismatch(ty))?
                .to_sql(ty, out),
            Type::OID => u32::try_from(value)
                .map_err(|_| self.mismatch(ty))?
                .to_sql(ty, out),
            // Exact only while the integer fits a double's 53-bit mantissa.
            Type::FLOAT8 if value.unsigned_abs() <= (1u64 << 53) => (value as f64).to_sql(ty, out),
            Type::NUMERIC => {
                encode_numeric(&value.to_string(), out).ok_or_else(|| self.mismatch(ty))
            }
            _ => Err(self.mismatch(ty)),
        }
    }
}

/// Writes a plain decimal (`-?digits(.digits)?`) in PostgreSQL's binary NUMERIC form:
/// base-10000 digit groups aligned on the decimal point. Returns `None` for malformed text.
pub(crate) fn encode_numeric(text: &str, out: &mut BytesMut) -> Option<IsNull> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || (unsigned.contains('.') && frac_part.is_empty())
    {
        return None;
    }
    let dscale = u16::try_from(frac_part.len()).ok()?;
    // Left-pad the integer part and right-pad the fraction to whole groups of four digits.
    let int_pad = (4 - int_part.len() % 4) % 4;
    let frac_pad = (4 - frac_part.len() % 4) % 4;
    let mut digits_text = String::with_capacity(int_pad + unsigned.len() + frac_pad);
    digits_text.extend(std::iter::repeat_n('0', int_pad));
    digits_text.push_str(int_part);
    digits_text.push_str(frac_part);
    digits_text.extend(std::iter::repeat_n('0', frac_pad));
    let mut groups: Vec<i16> = digits_text
        .as_bytes()
        .chunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0i16, |acc, digit| acc * 10 + i16::from(digit - b'0'))
        })
        .collect();
    let int_groups = (int_pad + int_part.len()) / 4;
    let mut weight = int_groups as i32 - 1;
    // Drop leading zero groups (each lowers the weight) and trailing zero groups.
    let leading = groups.iter().take_while(|g| **g == 0).count();
    groups.drain(..leading);
    weight -= leading as i32;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(groups.len()).ok()?);
    out.put_i16(i16::try_from(weight).ok()?);
    out.put_u16(if negative && !groups.is_empty() {
        0x4000
    } else {
        0
    });
    out.put_u16(dscale);
    for group in groups {
        out.put_i16(group);
    }
    Some(IsNull::No)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::postgres::decode::numeric_to_string;

    fn round_trip(text: &str) -> String {
        let mut out = BytesMut::new();
        encode_numeric(text, &mut out).expect("valid decimal");
        numeric_to_string(&out).expect("decodes")
    }

    #[test]
    fn numeric_round_trips_exactly() {
        for (input, expected) in [
            ("0", "0"),
            ("1", "1"),
            ("-1", "-1"),
            ("10000", "10000"),
            ("12345.6789", "12345.6789"),
            ("0.0001", "0.0001"),
            ("0.00010", "0.00010"),
            ("-0.5", "-0.5"),
            (
                "123456789012345678901234567890.123456789",
                "123456789012345678901234567890.123456789",
            ),
            ("0.000000001", "0.000000001"),
            ("100.00", "100.00"),
            ("-0.000", "0.000"),
        ] {
            assert_eq!(round_trip(input), expected, "{input}");
        }
    }

    #[test]
    fn malformed_numeric_is_refused() {
        for input in ["", "-", "1.", ".5", "1e5", "abc", "1.2.3", "+1"] {
            assert!(
                encode_numeric(input, &mut BytesMut::new()).is_none(),
                "{input}"
            );
        }
    }
}
