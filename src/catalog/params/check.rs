//! Checking a request's value against its compiled declaration: type, bounds, length,
//! pattern, closed list. Messages name the rule broken, never the value.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::scalar::{cmp_decimal, parse_scalar};
use super::*;

impl Check {
    /// Checks one non-null value.
    pub(super) fn check(&self, value: Value) -> Result<ParamValue, Msg> {
        if self.ty == ScalarType::Text {
            return self.check_text(value);
        }
        let value = &value;
        match self.ty {
            ScalarType::Text => unreachable!("text is checked above"),
            ScalarType::Identifier => {
                let text = value.as_str().ok_or("must be a string")?;
                self.choose(|allowed| allowed == text)
            }
            ScalarType::Keyword => {
                let text = value.as_str().ok_or("must be a string")?;
                self.choose(|allowed| allowed.eq_ignore_ascii_case(text))
            }
            ty => {
                let parsed = parse_scalar(ty, value)?;
                if let Some(min) = &self.min
                    && compare(&parsed, &min.value) == Some(Ordering::Less)
                {
                    return Err(Cow::Owned(min.message.clone()));
                }
                if let Some(max) = &self.max
                    && compare(&parsed, &max.value) == Some(Ordering::Greater)
                {
                    return Err(Cow::Owned(max.message.clone()));
                }
                if let Some(allowed) = &self.allowed
                    && !allowed.values.iter().any(|a| same(a, &parsed))
                {
                    return Err(Cow::Owned(allowed.message.clone()));
                }
                Ok(parsed)
            }
        }
    }

    pub(super) fn check_text(&self, value: Value) -> Result<ParamValue, Msg> {
        let Value::String(text) = value else {
            return Err(Cow::Borrowed("must be a string"));
        };
        // Bytes bound characters from above, so most values skip the count.
        if text.len() > self.max_length && text.chars().nth(self.max_length).is_some() {
            return Err(Cow::Owned(format!(
                "must be at most {} characters long",
                self.max_length
            )));
        }
        if text.contains('\0') {
            return Err(Cow::Borrowed("must not contain the NUL character (U+0000)"));
        }
        if let Some(pattern) = &self.pattern
            && !pattern.is_match(&text)
        {
            return Err(Cow::Borrowed("does not match the declared pattern"));
        }
        if self.allowed.is_some() {
            return self.choose(|a| a == text);
        }
        // The parsed string itself: no copy between the request body and the statement.
        Ok(ParamValue::Text(text))
    }

    /// The first allowed text value that `matches`, as declared (canonical spelling).
    pub(super) fn choose(&self, matches: impl Fn(&str) -> bool) -> Result<ParamValue, Msg> {
        // Compile gives identifier and keyword params an enum; text only gets here with one.
        let Some(allowed) = &self.allowed else {
            return Err(Cow::Borrowed("is not one of the allowed values"));
        };
        allowed
            .values
            .iter()
            .find(|value| matches!(value, ParamValue::Text(text) if matches(text)))
            .cloned()
            .ok_or_else(|| Cow::Owned(allowed.message.clone()))
    }
}

/// Orders two values of the same orderable type.
pub(super) fn compare(a: &ParamValue, b: &ParamValue) -> Option<Ordering> {
    match (a, b) {
        (ParamValue::Int(a), ParamValue::Int(b)) => Some(a.cmp(b)),
        (ParamValue::Bigint(a), ParamValue::Bigint(b)) => Some(a.cmp(b)),
        (ParamValue::Float(a), ParamValue::Float(b)) => a.partial_cmp(b),
        (ParamValue::Numeric(a), ParamValue::Numeric(b)) => Some(cmp_decimal(a, b)),
        (ParamValue::Date(a), ParamValue::Date(b)) => Some(a.cmp(b)),
        (ParamValue::Timestamp(a), ParamValue::Timestamp(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Equality for enums: numerics compare by value (`1.0` is `1.00`), the rest structurally.
pub(super) fn same(a: &ParamValue, b: &ParamValue) -> bool {
    match (a, b) {
        (ParamValue::Numeric(a), ParamValue::Numeric(b)) => cmp_decimal(a, b).is_eq(),
        _ => a == b,
    }
}
