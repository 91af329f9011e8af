//! Declaring params: a query's `params:` entries compiled into checks (type, bounds,
//! lengths, patterns, closed lists, defaults), each refusal naming the param and the rule.
//! Runs when a catalog compiles; never per request.

use std::borrow::Cow;

use regex::Regex;
use serde_json::Value;

use std::cmp::Ordering;

use super::check::compare;
use super::scalar::{canonical_keyword, is_identifier, is_param_name, parse_scalar};
use super::*;

impl Param {
    pub(super) fn compile(name: &str, spec: &ParamSpec) -> Result<Param, String> {
        if !is_param_name(name) {
            return Err(format!(
                "invalid param name: it must match [A-Za-z_][A-Za-z0-9_]* and be at most \
                 {MAX_NAME_LENGTH} characters"
            ));
        }
        let (ty, is_array) = match spec.ty {
            ParamType::Scalar(ty) => (ty, false),
            ParamType::Array(ty) => (ty, true),
        };
        let type_name = spec.ty.name();
        let is_choice = matches!(ty, ScalarType::Identifier | ScalarType::Keyword);
        if is_array && is_choice {
            return Err(format!(
                "type {type_name} is not supported: an {} param substitutes one value",
                ty.name()
            ));
        }
        if spec.required && spec.default.is_some() {
            return Err("a param cannot be both required and have a default".to_string());
        }
        if is_choice && spec.nullable {
            return Err(format!(
                "{} params cannot be nullable: their value becomes part of the SQL text",
                ty.name()
            ));
        }

        let max_length = match spec.max_length {
            Some(_) if ty != ScalarType::Text => {
                return Err(format!(
                    "max_length applies only to text, not to {type_name}"
                ));
            }
            Some(0) => return Err("max_length must be at least 1".to_string()),
            Some(n) if n > MAX_MAX_LENGTH => {
                return Err(format!("max_length must be at most {MAX_MAX_LENGTH}"));
            }
            Some(n) => n,
            None => DEFAULT_MAX_LENGTH,
        };
        let pattern = match &spec.pattern {
            Some(_) if ty != ScalarType::Text => {
                return Err(format!("pattern applies only to text, not to {type_name}"));
            }
            Some(pattern) => Some(compile_pattern(pattern)?),
            None => None,
        };
        let items = compile_items(spec, is_array, &type_name)?;

        let mut check = Check {
            ty,
            min: None,
            max: None,
            max_length,
            pattern,
            allowed: None,
        };
        check.min = compile_bound(&check, "min", spec.min.as_ref())?;
        check.max = compile_bound(&check, "max", spec.max.as_ref())?;
        if let (Some(min), Some(max)) = (&check.min, &check.max)
            && compare(&min.value, &max.value) == Some(Ordering::Greater)
        {
            return Err("min must not be greater than max".to_string());
        }
        check.allowed = compile_allowed(&check, spec.allowed.as_deref())?;

        let mut param = Param {
            name: name.to_string(),
            required: spec.required,
            nullable: spec.nullable,
            default: None,
            items,
            check,
        };
        param.default = match &spec.default {
            None => None,
            Some(value) => Some(
                param
                    .value(value.clone())
                    .map_err(|message| format!("default: {message}"))?,
            ),
        };
        if is_choice && !param.required && param.default.is_none() {
            return Err(format!(
                "{} params must be required or have a default: their value becomes part of the \
                 SQL text, so it cannot be left out",
                ty.name()
            ));
        }
        Ok(param)
    }

    /// Checks a value the caller sent (or a declared default).
    pub(super) fn value(&self, value: Value) -> Result<ParamValue, Msg> {
        if value.is_null() {
            return if self.nullable {
                Ok(ParamValue::Null)
            } else {
                Err(Cow::Borrowed("must not be null"))
            };
        }
        let Some(bounds) = self.items else {
            return self.check.check(value);
        };
        let Value::Array(items) = value else {
            return Err(Cow::Owned(format!(
                "must be an array (of {})",
                self.check.ty.name()
            )));
        };
        if items.len() < bounds.min {
            return Err(Cow::Owned(format!(
                "must have at least {} items",
                bounds.min
            )));
        }
        if items.len() > bounds.max {
            return Err(Cow::Owned(format!(
                "must have at most {} items",
                bounds.max
            )));
        }
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let checked = if item.is_null() {
                Err(Cow::Borrowed("must not be null"))
            } else {
                self.check.check(item)
            };
            out.push(checked.map_err(|message| format!("item {index}: {message}"))?);
        }
        Ok(ParamValue::Array(out))
    }
}

pub(super) fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    // Compiling the pattern alone first proves its parentheses balance, so wrapping it in a
    // group cannot let an alternation escape the anchors (`a)|(b` would otherwise unanchor).
    Regex::new(pattern).map_err(|e| format!("pattern does not compile: {e}"))?;
    Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|e| format!("pattern does not compile: {e}"))
}

pub(super) fn compile_items(
    spec: &ParamSpec,
    is_array: bool,
    type_name: &str,
) -> Result<Option<ItemBounds>, String> {
    if !is_array {
        if spec.min_items.is_some() || spec.max_items.is_some() {
            return Err(format!(
                "min_items and max_items apply only to arrays, not to {type_name}"
            ));
        }
        return Ok(None);
    }
    let max = spec.max_items.unwrap_or(DEFAULT_MAX_ITEMS);
    if max == 0 {
        return Err("max_items must be at least 1".to_string());
    }
    if max > MAX_MAX_ITEMS {
        return Err(format!("max_items must be at most {MAX_MAX_ITEMS}"));
    }
    let min = spec.min_items.unwrap_or(0);
    if min > max {
        return Err(format!(
            "min_items ({min}) must not be greater than max_items ({max})"
        ));
    }
    Ok(Some(ItemBounds { min, max }))
}

pub(super) fn compile_bound(
    check: &Check,
    key: &str,
    value: Option<&Value>,
) -> Result<Option<Bound>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    if !has_order(check.ty) {
        return Err(format!(
            "{key} does not apply to {} params",
            check.ty.name()
        ));
    }
    let parsed = parse_scalar(check.ty, value).map_err(|message| format!("{key}: {message}"))?;
    let shown = show(value);
    let message = if key == "min" {
        format!("must be at least {shown}")
    } else {
        format!("must be at most {shown}")
    };
    Ok(Some(Bound {
        value: parsed,
        message,
    }))
}

pub(super) fn compile_allowed(
    check: &Check,
    values: Option<&[Value]>,
) -> Result<Option<Allowed>, String> {
    let needs_enum = matches!(check.ty, ScalarType::Identifier | ScalarType::Keyword);
    let values = match values {
        Some([]) => return Err("enum must not be empty".to_string()),
        Some(values) => values,
        None if needs_enum => {
            return Err(format!(
                "{} params need a non-empty enum listing the allowed values",
                check.ty.name()
            ));
        }
        None => return Ok(None),
    };
    let mut parsed = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let item = match check.ty {
            ScalarType::Identifier => match value.as_str() {
                Some(name) if is_identifier(name) => ParamValue::Text(name.to_string()),
                _ => {
                    return Err(format!(
                        "enum item {index}: not an identifier (one or more names separated by \
                         `.`, each matching [A-Za-z_][A-Za-z0-9_]* and at most \
                         {MAX_IDENTIFIER_PART_LENGTH} characters)"
                    ));
                }
            },
            ScalarType::Keyword => match value.as_str().and_then(canonical_keyword) {
                Some(keyword) => ParamValue::Text(keyword.to_string()),
                None => {
                    return Err(format!(
                        "enum item {index}: not a keyword (one of {})",
                        KEYWORDS.join(", ")
                    ));
                }
            },
            // An enum value must also pass the other checks, else it could never be chosen.
            _ if value.is_null() => {
                return Err(format!("enum item {index}: must not be null"));
            }
            _ => check
                .check(value.clone())
                .map_err(|message| format!("enum item {index}: {message}"))?,
        };
        parsed.push(item);
    }
    let listing = parsed.iter().zip(values).map(|(parsed, raw)| match parsed {
        ParamValue::Text(text) => text.clone(),
        _ => show(raw),
    });
    let listing = listing.collect::<Vec<_>>().join(", ");
    let message = if listing.chars().count() <= MAX_LISTING_LENGTH {
        format!("must be one of: {listing}")
    } else {
        format!("must be one of the {} allowed values", parsed.len())
    };
    Ok(Some(Allowed {
        values: parsed,
        message,
    }))
}

/// A declared value as it is shown in messages: strings without quotes, the rest as JSON.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub(super) fn has_order(ty: ScalarType) -> bool {
    matches!(
        ty,
        ScalarType::Int
            | ScalarType::Bigint
            | ScalarType::Float
            | ScalarType::Numeric
            | ScalarType::Date
            | ScalarType::Timestamp
    )
}
