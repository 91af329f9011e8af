//! Validated param values, ready to bind.
//!
//! A [`ParamValue`] is what `catalog::params` produces from caller JSON after checking it
//! against the declared schema, and what each datasource driver encodes into its own
//! parameter format. It is never turned into SQL text.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// One bound value. Its `Debug` names the kind only, never the value, so a stray `{:?}`
/// (ours or a dependency's, such as a driver logging its parameters) cannot leak input.
#[derive(Clone, PartialEq)]
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
