//! Param schemas: checking declarations and validating caller input.
//!
//! This module owns the param rules of the query templates (docs/CATALOG.md): a query's params are declared
//! with a type, required/default, bounds, maximum length, pattern and closed lists, and caller
//! input that does not fit is refused with an error that names the param.
//!
//! [`ParamSchema::compile`] checks the declarations once, when a catalog is saved or applied,
//! and turns them into ready-made checks (patterns compiled, bounds and enums parsed as the
//! declared type, defaults validated). [`ParamSchema::validate`] runs once per request and
//! turns the caller's JSON into typed [`ParamValue`]s.
//!
//! Invariants:
//! - Pure: no IO, no clock, no global state.
//! - A [`ParamError`] message never contains the caller's value (only the param name and the
//!   declared bounds or allowed values), so it is safe to return and to log.
//! - `identifier` and `keyword` params always hold one of their declared values: they are the
//!   only params substituted into SQL text, so they can be neither null nor absent.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use regex::Regex;
use serde_json::Value;

use crate::spec::{ParamSpec, ParamType, ScalarType};
use crate::statement::ParamValue;

/// Longest param name.
pub const MAX_NAME_LENGTH: usize = 64;
/// Longest part of a dotted identifier (PostgreSQL's limit).
pub const MAX_IDENTIFIER_PART_LENGTH: usize = 63;
/// `max_length` of a text param that does not declare one.
pub const DEFAULT_MAX_LENGTH: usize = 4096;
/// The largest `max_length` a text param may declare.
pub const MAX_MAX_LENGTH: usize = 1_048_576;
/// `max_items` of an array param that does not declare one.
pub const DEFAULT_MAX_ITEMS: usize = 100;
/// The largest `max_items` an array param may declare.
pub const MAX_MAX_ITEMS: usize = 10_000;
/// Most digits (before and after the point together) of a numeric value.
pub const MAX_NUMERIC_DIGITS: usize = 1000;

/// The keywords a `keyword` param may choose from, in their canonical spelling.
pub const KEYWORDS: [&str; 8] = [
    "ASC",
    "DESC",
    "NULLS FIRST",
    "NULLS LAST",
    "ASC NULLS FIRST",
    "ASC NULLS LAST",
    "DESC NULLS FIRST",
    "DESC NULLS LAST",
];

/// Above this, an `f64` no longer holds every integer exactly, so a JSON number written with
/// a fraction or exponent cannot be trusted to be the integer the caller meant.
const MAX_EXACT_F64_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Enum listings longer than this are not spelled out in error messages.
const MAX_LISTING_LENGTH: usize = 200;

/// An error message; static in the common cases so that building it does not allocate.
type Msg = Cow<'static, str>;

/// A declaration that cannot be served (bad default, pattern that does not compile, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("param `{param}`: {message}")]
pub struct SpecError {
    pub param: String,
    pub message: String,
}

/// Caller input that does not fit the schema. `param` names the offending param.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("param `{param}`: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

/// A checked param schema, ready to validate requests.
#[derive(Debug, Clone)]
pub struct ParamSchema {
    /// Sorted by name (they come from a `BTreeMap`), so lookups can binary-search.
    params: Vec<Param>,
}

/// One compiled param.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    required: bool,
    nullable: bool,
    /// The validated default; `None` means absent params become `ParamValue::Null`.
    default: Option<ParamValue>,
    /// `Some` for `array<T>` params.
    items: Option<ItemBounds>,
    /// The check of a scalar value (of each item for arrays).
    check: Check,
}

#[derive(Debug, Clone, Copy)]
struct ItemBounds {
    min: usize,
    max: usize,
}

/// The checks of one non-null scalar value.
#[derive(Debug, Clone)]
struct Check {
    ty: ScalarType,
    min: Option<Bound>,
    max: Option<Bound>,
    /// In characters; only used for text.
    max_length: usize,
    /// Anchored to the whole value.
    pattern: Option<Regex>,
    allowed: Option<Allowed>,
}

/// An inclusive bound, with its error message prepared at compile time.
#[derive(Debug, Clone)]
struct Bound {
    value: ParamValue,
    message: String,
}

/// A closed list of values, with its error message prepared at compile time.
#[derive(Debug, Clone)]
struct Allowed {
    values: Vec<ParamValue>,
    message: String,
}

impl ParamSchema {
    /// Checks every declaration and prepares it for [`ParamSchema::validate`]: names,
    /// options that fit the type, bounds, enums and defaults parsed as the declared type,
    /// patterns compiled once. The first bad declaration (in name order) is reported.
    pub fn compile(specs: &BTreeMap<String, ParamSpec>) -> Result<ParamSchema, SpecError> {
        let params = specs
            .iter()
            .map(|(name, spec)| {
                Param::compile(name, spec).map_err(|message| SpecError {
                    param: name.clone(),
                    message,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ParamSchema { params })
    }

    /// Validates the request's `params` object into one value per declared param, by slot
    /// (the declared params in name order, the order templates resolved their bindings to):
    /// the caller's value, else the default, else `ParamValue::Null`. The input is consumed,
    /// so a text value moves from the parsed body into its slot without a copy.
    ///
    /// Unknown keys are reported first, then the declared params in name order. Array items
    /// are numbered from 0 in messages (`item 3: must be an integer`).
    pub fn validate(
        &self,
        mut input: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<ParamValue>, ParamError> {
        // A typo in a key would otherwise surface as a confusing "is required" on the real
        // name, so unknown keys are reported before anything else.
        if let Some(key) = input.keys().find(|key| self.find(key).is_none()) {
            return Err(ParamError {
                param: shorten_name(key),
                message: "is not a declared param of this query".to_string(),
            });
        }
        let mut out = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let value = match input.remove(&param.name) {
                Some(value) => param.value(value),
                None if param.required => Err(Cow::Borrowed("is required")),
                None => Ok(param.default.clone().unwrap_or(ParamValue::Null)),
            }
            .map_err(|message| ParamError {
                param: param.name.clone(),
                message: message.into_owned(),
            })?;
            out.push(value);
        }
        Ok(out)
    }

    /// The slot of a declared param (its place in [`ParamSchema::validate`]'s result).
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.params
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
    }

    /// The declared param names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    fn find(&self, name: &str) -> Option<&Param> {
        self.params
            .binary_search_by(|p| p.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.params[i])
    }
}

/// An undeclared key is caller input: it is named in the error (that is how the caller finds
/// the typo) but cut short so a huge key is not reflected back whole.
fn shorten_name(key: &str) -> String {
    match key.char_indices().nth(MAX_NAME_LENGTH) {
        Some((end, _)) => format!("{}...", &key[..end]),
        None => key.to_string(),
    }
}

impl Param {
    fn compile(name: &str, spec: &ParamSpec) -> Result<Param, String> {
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
    fn value(&self, value: Value) -> Result<ParamValue, Msg> {
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

fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    // Compiling the pattern alone first proves its parentheses balance, so wrapping it in a
    // group cannot let an alternation escape the anchors (`a)|(b` would otherwise unanchor).
    Regex::new(pattern).map_err(|e| format!("pattern does not compile: {e}"))?;
    Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|e| format!("pattern does not compile: {e}"))
}

fn compile_items(
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

fn compile_bound(check: &Check, key: &str, value: Option<&Value>) -> Result<Option<Bound>, String> {
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

fn compile_allowed(check: &Check, values: Option<&[Value]>) -> Result<Option<Allowed>, String> {
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
fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn has_order(ty: ScalarType) -> bool {
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

impl Check {
    /// Checks one non-null value.
    fn check(&self, value: Value) -> Result<ParamValue, Msg> {
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

    fn check_text(&self, value: Value) -> Result<ParamValue, Msg> {
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
            return Err(Cow::Borrowed(
                "must not contain the NUL character (U+0000), which PostgreSQL cannot store",
            ));
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
    fn choose(&self, matches: impl Fn(&str) -> bool) -> Result<ParamValue, Msg> {
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

/// Parses a non-null value as `ty`, without bounds or enum. Text-like types are handled by
/// [`Check`]; here they are parsed plainly.
fn parse_scalar(ty: ScalarType, value: &Value) -> Result<ParamValue, Msg> {
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

fn int_range() -> Msg {
    Cow::Owned(format!(
        "must be an integer between {} and {}",
        i32::MIN,
        i32::MAX
    ))
}

fn bigint_range() -> Msg {
    Cow::Owned(format!(
        "must be an integer between {} and {}",
        i64::MIN,
        i64::MAX
    ))
}

/// What a JSON value is, read as an integer.
enum JsonInteger {
    /// Widened to `i128` so that range errors can be told apart from type errors.
    Exact(i128),
    /// An integral value written with a fraction or exponent beyond 2^53, where the `f64` it
    /// was parsed into may no longer be the integer the caller wrote.
    Inexact,
    NotInteger,
}

/// Numbers written with a fraction or exponent (`1.0`, `1e3`) count as integers when their
/// value is integral and exactly representable.
fn json_integer(value: &Value) -> JsonInteger {
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
fn parse_bigint_string(text: &str) -> Result<i128, Msg> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Cow::Borrowed(
            "must be an integer (a string of an optional '-' and digits)",
        ));
    }
    // Past 40 significant digits an i128 overflows, and the value is out of range anyway.
    text.parse::<i128>().map_err(|_| bigint_range())
}

const NOT_A_DECIMAL: &str = "must be a decimal number (a JSON number or a string such as \
                             \"-12.50\" or \"1.5e-3\")";
const TOO_MANY_DIGITS: &str = "must have at most 1000 digits";

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

fn cmp_magnitude(a: &str, b: &str) -> Ordering {
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

/// Orders two values of the same orderable type.
fn compare(a: &ParamValue, b: &ParamValue) -> Option<Ordering> {
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
fn same(a: &ParamValue, b: &ParamValue) -> bool {
    match (a, b) {
        (ParamValue::Numeric(a), ParamValue::Numeric(b)) => cmp_decimal(a, b).is_eq(),
        _ => a == b,
    }
}

fn is_param_name(name: &str) -> bool {
    is_simple_name(name, MAX_NAME_LENGTH)
}

/// One or more names separated by `.`, each `[A-Za-z_][A-Za-z0-9_]*` of at most 63 characters.
pub fn is_identifier(text: &str) -> bool {
    text.split('.')
        .all(|part| is_simple_name(part, MAX_IDENTIFIER_PART_LENGTH))
}

fn is_simple_name(name: &str, max_len: usize) -> bool {
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
fn canonical_keyword(text: &str) -> Option<&'static str> {
    KEYWORDS.into_iter().find(|k| k.eq_ignore_ascii_case(text))
}

fn two_digits(bytes: &[u8], at: usize) -> Option<u32> {
    match bytes.get(at..at + 2)? {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

/// Exactly `YYYY-MM-DD`, year 0001 to 9999.
fn parse_date(bytes: &[u8]) -> Option<NaiveDate> {
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
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
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

#[cfg(test)]
mod tests {
    use chrono::NaiveDateTime;
    use serde_json::json;

    use super::*;

    /// Compiles the declarations of a JSON object (the JSON form of the YAML).
    fn compile(specs: Value) -> Result<ParamSchema, SpecError> {
        let specs: BTreeMap<String, ParamSpec> =
            serde_json::from_value(specs).expect("specs deserialise");
        ParamSchema::compile(&specs)
    }

    /// Validates `{"p": input}` against the one param `p` declared as `spec`.
    fn run(spec: &Value, input: &Value) -> Result<ParamValue, String> {
        let schema = compile(json!({ "p": spec })).expect("spec compiles");
        let mut out = schema
            .validate(json!({ "p": input }).as_object().unwrap().clone())
            .map_err(|e| {
                assert_eq!(e.param, "p");
                e.message
            })?;
        Ok(out.remove(0))
    }

    /// `input` is accepted as `expected`.
    fn ok(spec: &Value, input: Value, expected: ParamValue) {
        let got = run(spec, &input);
        assert_eq!(got, Ok(expected), "spec {spec}, input {input}");
    }

    /// `input` is refused with a message that contains `fragment`.
    fn err(spec: &Value, input: Value, fragment: &str) {
        match run(spec, &input) {
            Ok(value) => panic!("spec {spec}, input {input}: accepted as {value:?}"),
            Err(message) => assert!(
                message.contains(fragment),
                "spec {spec}, input {input}: `{message}` lacks `{fragment}`"
            ),
        }
    }

    /// Declaring `p` as `spec` fails with a message that contains `fragment`.
    fn bad(spec: Value, fragment: &str) {
        let e = compile(json!({ "p": spec })).expect_err(&spec.to_string());
        assert_eq!(e.param, "p");
        let message = e.message;
        assert!(
            message.contains(fragment),
            "spec {spec}: `{message}` lacks `{fragment}`"
        );
    }

    fn text(s: &str) -> ParamValue {
        ParamValue::Text(s.to_string())
    }

    fn numeric(s: &str) -> ParamValue {
        ParamValue::Numeric(s.to_string())
    }

    fn date(y: i32, m: u32, d: u32) -> ParamValue {
        ParamValue::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    /// A UTC timestamp from "YYYY-MM-DD HH:MM:SS" plus nanoseconds.
    fn ts(at: &str, nanos: i64) -> ParamValue {
        let at = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").unwrap();
        ParamValue::Timestamp(at.and_utc() + TimeDelta::nanoseconds(nanos))
    }

    /// A JSON number as written (`1e3` stays a float, as a caller would send it).
    fn number(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn text_values() {
        let plain = json!({ "type": "text" });
        ok(&plain, json!("hello"), text("hello"));
        ok(&plain, json!(""), text(""));
        ok(&plain, json!("x".repeat(4096)), text(&"x".repeat(4096)));
        err(&plain, json!(1), "must be a string");
        err(&plain, json!(true), "must be a string");
        err(&plain, json!(["a"]), "must be a string");
        err(&plain, json!(null), "must not be null");
        err(
            &plain,
            json!("a\u{0}b"),
            "(U+0000), which PostgreSQL cannot store",
        );
        err(
            &plain,
            json!("x".repeat(4097)),
            "must be at most 4096 characters",
        );

        // Length counts characters: three characters of nine bytes fit in three.
        let short = json!({ "type": "text", "max_length": 3 });
        ok(&short, json!("日本語"), text("日本語"));
        ok(&short, json!("a😀b"), text("a😀b"));
        err(
            &short,
            json!("日本語x"),
            "must be at most 3 characters long",
        );
    }

    #[test]
    fn text_pattern_matches_the_whole_value() {
        let code = json!({ "type": "text", "pattern": "[A-Z]{3}" });
        ok(&code, json!("ABC"), text("ABC"));
        err(&code, json!("ABCD"), "does not match the declared pattern");
        err(&code, json!("xABC"), "does not match the declared pattern");
        err(&code, json!("ABC\n"), "does not match the declared pattern");

        let alternation = json!({ "type": "text", "pattern": "a|b" });
        ok(&alternation, json!("b"), text("b"));
        err(&alternation, json!("ab"), "does not match");
    }

    #[test]
    fn int_values() {
        let int = json!({ "type": "int" });
        ok(&int, json!(0), ParamValue::Int(0));
        ok(&int, json!(-7), ParamValue::Int(-7));
        ok(&int, json!(i32::MAX), ParamValue::Int(i32::MAX));
        ok(&int, json!(i32::MIN), ParamValue::Int(i32::MIN));
        // Integral values written with a fraction or an exponent are integers.
        ok(&int, number("3.0"), ParamValue::Int(3));
        ok(&int, number("1e3"), ParamValue::Int(1000));

        let range = "must be an integer between -2147483648 and 2147483647";
        err(&int, json!(i64::from(i32::MAX) + 1), range);
        err(&int, json!(i64::from(i32::MIN) - 1), range);
        err(&int, json!(u64::MAX), range);
        err(&int, number("1e18"), range);
        err(&int, json!(1.5), "must be an integer");
        err(&int, json!("1"), "must be an integer");
        err(&int, json!(true), "must be an integer");
    }

    #[test]
    fn bigint_values() {
        let big = json!({ "type": "bigint" });
        ok(&big, json!(i64::MAX), ParamValue::Bigint(i64::MAX));
        ok(&big, json!(i64::MIN), ParamValue::Bigint(i64::MIN));
        // 2^53 + 1, which a browser cannot hold in a number, sent as a string.
        ok(
            &big,
            json!("9007199254740993"),
            ParamValue::Bigint(9_007_199_254_740_993),
        );
        ok(
            &big,
            json!("9223372036854775807"),
            ParamValue::Bigint(i64::MAX),
        );
        ok(
            &big,
            json!("-9223372036854775808"),
            ParamValue::Bigint(i64::MIN),
        );
        ok(&big, json!("-0"), ParamValue::Bigint(0));
        ok(&big, json!("007"), ParamValue::Bigint(7));

        let range = "must be an integer between -9223372036854775808 and 9223372036854775807";
        err(&big, json!("9223372036854775808"), range);
        err(&big, json!(u64::MAX), range);
        err(&big, json!("1".repeat(60)), range);
        err(
            &big,
            number("1e18"),
            "send integers beyond 2^53 as a string",
        );
        for input in ["+5", "1.0", "", "-", " 5", "1e3", "٣"] {
            err(&big, json!(input), "must be an integer");
        }
        err(&big, json!(1.5), "must be an integer");
        err(&big, json!(false), "must be an integer");
    }

    #[test]
    fn float_values() {
        let float = json!({ "type": "float" });
        ok(&float, json!(1.5), ParamValue::Float(1.5));
        ok(&float, json!(-2), ParamValue::Float(-2.0));
        ok(&float, json!(1e300), ParamValue::Float(1e300));
        err(&float, json!("1.5"), "must be a number");
        err(&float, json!(null), "must not be null");
    }

    #[test]
    fn numeric_values_are_canonical() {
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.00", "0.00"),
            ("007.50", "7.50"),
            ("-12.340", "-12.340"),
            ("1e-3", "0.001"),
            ("1.0e-3", "0.0010"),
            ("2.5E+10", "25000000000"),
            ("1.50e1", "15.0"),
            ("123.456e2", "12345.6"),
            ("-5e0", "-5"),
            ("0e5", "0"),
            (
                "12345678901234567890.123456789",
                "12345678901234567890.123456789",
            ),
        ];
        let exact = json!({ "type": "numeric" });
        for (input, canonical) in cases {
            ok(&exact, json!(input), numeric(canonical));
        }
        ok(&exact, json!(42), numeric("42"));
        ok(&exact, json!(-42), numeric("-42"));
        ok(&exact, json!(0.1), numeric("0.1"));
        ok(&exact, number("1e20"), numeric("100000000000000000000"));
        ok(&exact, json!("1".repeat(1000)), numeric(&"1".repeat(1000)));
        ok(
            &exact,
            json!("1e999"),
            numeric(&format!("1{}", "0".repeat(999))),
        );
        ok(
            &exact,
            json!("-1e-1000"),
            numeric(&format!("-0.{}1", "0".repeat(999))),
        );

        let digits = "must have at most 1000 digits";
        err(&exact, json!("1".repeat(1001)), digits);
        err(&exact, json!("1e1000"), digits);
        err(&exact, json!("1e-1001"), digits);
        err(&exact, json!("1e99999999999999999999"), digits);
        for input in ["+1", ".5", "5.", "1e", "1e+-2", "1.2.3", "NaN", "١٢", ""] {
            err(&exact, json!(input), "must be a decimal number");
        }
        err(&exact, json!(true), "must be a decimal number");
    }

    #[test]
    fn decimal_comparison_is_exact() {
        let cases = [
            ("0", "0.00", Ordering::Equal),
            ("1.10", "1.1", Ordering::Equal),
            ("10", "9.999", Ordering::Greater),
            ("-10", "-9.999", Ordering::Less),
            ("-0.5", "0", Ordering::Less),
            ("0.30000000000000000001", "0.3", Ordering::Greater),
            (
                "123456789012345678901",
                "123456789012345678900",
                Ordering::Greater,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(cmp_decimal(a, b), expected, "{a} vs {b}");
            assert_eq!(cmp_decimal(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn bool_uuid_json_values() {
        let boolean = json!({ "type": "bool" });
        ok(&boolean, json!(true), ParamValue::Bool(true));
        ok(&boolean, json!(false), ParamValue::Bool(false));
        err(&boolean, json!("true"), "must be a boolean");
        err(&boolean, json!(1), "must be a boolean");

        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let uuid = json!({ "type": "uuid" });
        ok(
            &uuid,
            json!(id),
            ParamValue::Uuid(uuid::Uuid::parse_str(id).unwrap()),
        );
        err(&uuid, json!("67e55044-10b1-426f-9247"), "must be a UUID");
        err(&uuid, json!(5), "must be a UUID");

        let any = json!({ "type": "json" });
        let doc = json!({ "a": [1, null] });
        ok(&any, doc.clone(), ParamValue::Json(doc));
        ok(&any, json!("s"), ParamValue::Json(json!("s")));
        err(&any, json!(null), "must not be null");
    }

    #[test]
    fn date_values() {
        let day = json!({ "type": "date" });
        ok(&day, json!("2024-02-29"), date(2024, 2, 29));
        ok(&day, json!("0001-01-01"), date(1, 1, 1));
        ok(&day, json!("9999-12-31"), date(9999, 12, 31));
        let bad_dates = [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "2024-01-01T00:00:00Z",
            "0000-01-01",
            "+2024-01-01",
            "2024-01-0é",
        ];
        for input in bad_dates {
            err(&day, json!(input), "must be a date (YYYY-MM-DD)");
        }
        err(&day, json!(20240101), "must be a date (YYYY-MM-DD)");
    }

    #[test]
    fn timestamp_values() {
        let at = json!({ "type": "timestamp" });
        ok(
            &at,
            json!("2024-01-31T12:00:00Z"),
            ts("2024-01-31 12:00:00", 0),
        );
        // Offsets are converted to UTC, here back across a leap day.
        ok(
            &at,
            json!("2024-03-01T01:30:00+02:00"),
            ts("2024-02-29 23:30:00", 0),
        );
        ok(
            &at,
            json!("2024-01-31T22:00:00-05:30"),
            ts("2024-02-01 03:30:00", 0),
        );
        // Without an offset the time is taken as UTC.
        ok(
            &at,
            json!("2024-01-31T12:00:00"),
            ts("2024-01-31 12:00:00", 0),
        );
        ok(
            &at,
            json!("2024-01-31 12:00:00"),
            ts("2024-01-31 12:00:00", 0),
        );
        ok(
            &at,
            json!("2024-01-31t12:00:00z"),
            ts("2024-01-31 12:00:00", 0),
        );
        ok(
            &at,
            json!("2024-01-31T12:00:00.5Z"),
            ts("2024-01-31 12:00:00", 500_000_000),
        );
        let nanos = json!("2024-01-31 12:00:00.123456789");
        ok(&at, nanos, ts("2024-01-31 12:00:00", 123_456_789));

        let bad_timestamps = [
            "2024-01-31",
            "2024-01-31T25:00:00Z",
            "2024-01-31T12:00:60Z",
            "2024-01-31T12:00Z",
            "2024-01-31T12:00:00.",
            "2024-01-31T12:00:00.1234567890",
            "2024-01-31T12:00:00+0200",
            "2024-01-31T12:00:00+24:00",
            "2024-01-31T12:00:00Z ",
            "2023-02-29T12:00:00Z",
        ];
        for input in bad_timestamps {
            err(&at, json!(input), "must be a timestamp (RFC 3339");
        }
        err(&at, json!(1706702400), "must be a timestamp (RFC 3339");
    }

    #[test]
    fn identifier_values_come_from_the_enum() {
        let column = json!({
            "type": "identifier", "required": true, "enum": ["created_at", "orders.total"]
        });
        ok(&column, json!("created_at"), text("created_at"));
        ok(&column, json!("orders.total"), text("orders.total"));
        err(
            &column,
            json!("CREATED_AT"),
            "must be one of: created_at, orders.total",
        );
        err(&column, json!("created_at; drop table x"), "must be one of");
        err(&column, json!(1), "must be a string");
        err(&column, json!(null), "must not be null");
    }

    #[test]
    fn keyword_values_are_canonical() {
        let direction = json!({
            "type": "keyword", "default": "asc", "enum": ["asc", "Desc", "nulls last"]
        });
        ok(&direction, json!("ASC"), text("ASC"));
        ok(&direction, json!("desc"), text("DESC"));
        ok(&direction, json!("Nulls Last"), text("NULLS LAST"));
        err(
            &direction,
            json!("nulls first"),
            "must be one of: ASC, DESC, NULLS LAST",
        );
        err(&direction, json!("asc "), "must be one of");

        // Left out, the param takes its default in canonical form.
        let schema = compile(json!({ "p": direction })).unwrap();
        let out = schema.validate(serde_json::Map::new()).unwrap();
        assert_eq!(out[schema.slot("p").unwrap()], text("ASC"));
    }

    #[test]
    fn enums_compare_typed_values() {
        let status = json!({ "type": "text", "enum": ["open", "closed"] });
        ok(&status, json!("open"), text("open"));
        err(&status, json!("Open"), "must be one of: open, closed");

        let small = json!({ "type": "int", "enum": [1, 2, 3] });
        ok(&small, json!(2), ParamValue::Int(2));
        ok(&small, json!(2.0), ParamValue::Int(2));
        err(&small, json!(4), "must be one of: 1, 2, 3");

        // Numerics compare by value; the caller's scale is kept.
        let rate = json!({ "type": "numeric", "enum": ["0.5", 1] });
        ok(&rate, json!("0.50"), numeric("0.50"));
        ok(&rate, json!("1.0"), numeric("1.0"));
        ok(&rate, json!(0.5), numeric("0.5"));
        err(&rate, json!("0.51"), "must be one of: 0.5, 1");

        let day = json!({ "type": "date", "enum": ["2024-01-01"] });
        ok(&day, json!("2024-01-01"), date(2024, 1, 1));
        err(&day, json!("2024-01-02"), "must be one of: 2024-01-01");

        // A long list is not spelled out.
        let many: Vec<String> = (0..100).map(|i| format!("value_{i}")).collect();
        let many = json!({ "type": "text", "enum": many });
        err(
            &many,
            json!("other"),
            "must be one of the 100 allowed values",
        );
    }

    #[test]
    fn bounds_are_inclusive() {
        let int = json!({ "type": "int", "min": 1, "max": 10 });
        ok(&int, json!(1), ParamValue::Int(1));
        ok(&int, json!(10), ParamValue::Int(10));
        err(&int, json!(0), "must be at least 1");
        err(&int, json!(11), "must be at most 10");

        let big = json!({ "type": "bigint", "min": "-9007199254740993" });
        ok(
            &big,
            json!("-9007199254740993"),
            ParamValue::Bigint(-9_007_199_254_740_993),
        );
        err(
            &big,
            json!("-9007199254740994"),
            "must be at least -9007199254740993",
        );

        let float = json!({ "type": "float", "min": 0.5, "max": 1.5 });
        ok(&float, json!(1.5), ParamValue::Float(1.5));
        err(&float, json!(0.49), "must be at least 0.5");

        // Compared exactly: no detour through f64.
        let fine = "0.30000000000000000001";
        let exact = json!({ "type": "numeric", "min": "0.1", "max": fine });
        ok(&exact, json!("0.10"), numeric("0.10"));
        ok(&exact, json!(fine), numeric(fine));
        ok(&exact, json!(0.3), numeric("0.3"));
        err(
            &exact,
            json!("0.0999999999999999999999"),
            "must be at least 0.1",
        );
        err(
            &exact,
            json!("0.30000000000000000002"),
            "must be at most 0.3000000000000000000",
        );

        let day = json!({ "type": "date", "min": "2024-01-01", "max": "2024-12-31" });
        ok(&day, json!("2024-12-31"), date(2024, 12, 31));
        err(&day, json!("2025-01-01"), "must be at most 2024-12-31");

        let later = json!({ "type": "timestamp", "min": "2024-01-01T00:00:00+01:00" });
        ok(
            &later,
            json!("2023-12-31T23:00:00Z"),
            ts("2023-12-31 23:00:00", 0),
        );
        err(
            &later,
            json!("2023-12-31T22:59:59Z"),
            "must be at least 2024-01-01T00:00:00+01:00",
        );
    }

    #[test]
    fn arrays_check_every_item() {
        let ids = json!({ "type": "array<int>", "min_items": 1, "max_items": 3, "min": 0 });
        let ints = |v: &[i32]| ParamValue::Array(v.iter().copied().map(ParamValue::Int).collect());
        ok(&ids, json!([1, 2, 3]), ints(&[1, 2, 3]));
        ok(&ids, json!([0]), ints(&[0]));
        err(&ids, json!([]), "must have at least 1 items");
        err(&ids, json!([1, 2, 3, 4]), "must have at most 3 items");
        err(&ids, json!([1, 2, 1.5]), "item 2: must be an integer");
        err(&ids, json!([1, -1]), "item 1: must be at least 0");
        err(&ids, json!([null]), "item 0: must not be null");
        err(&ids, json!(1), "must be an array (of int)");
        err(&ids, json!("1,2"), "must be an array (of int)");

        let tags = json!({ "type": "array<text>", "max_length": 2, "enum": ["a", "bb"] });
        ok(&tags, json!([]), ParamValue::Array(vec![]));
        ok(
            &tags,
            json!(["bb", "a"]),
            ParamValue::Array(vec![text("bb"), text("a")]),
        );
        err(
            &tags,
            json!(["a", "ccc"]),
            "item 1: must be at most 2 characters",
        );
        err(&tags, json!(["a", "b"]), "item 1: must be one of: a, bb");

        let big = json!({ "type": "array<bigint>" });
        let values = vec![
            ParamValue::Bigint(9_007_199_254_740_993),
            ParamValue::Bigint(1),
        ];
        ok(
            &big,
            json!(["9007199254740993", 1]),
            ParamValue::Array(values),
        );
        let too_many: Vec<i64> = (0..101).collect();
        err(&big, json!(too_many), "must have at most 100 items");
    }

    #[test]
    fn presence_required_default_nullable() {
        let schema = compile(json!({
            "needed": { "type": "int", "required": true },
            "limit": { "type": "int", "default": 50 },
            "note": { "type": "text" },
            "maybe": { "type": "date", "nullable": true },
            "present": { "type": "text", "required": true, "nullable": true },
        }))
        .unwrap();
        let names: Vec<_> = schema.names().collect();
        assert_eq!(names, ["limit", "maybe", "needed", "note", "present"]);
        let validate = |input: Value| schema.validate(input.as_object().unwrap().clone());
        let slot = |name: &str| schema.slot(name).unwrap();

        let out = validate(json!({ "needed": 1, "maybe": null, "present": null })).unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[slot("needed")], ParamValue::Int(1));
        assert_eq!(out[slot("limit")], ParamValue::Int(50));
        assert_eq!(out[slot("note")], ParamValue::Null);
        assert_eq!(out[slot("maybe")], ParamValue::Null);
        assert_eq!(out[slot("present")], ParamValue::Null);
        let out = validate(json!({ "needed": 1, "limit": 5, "present": "x" })).unwrap();
        assert_eq!(out[slot("limit")], ParamValue::Int(5));

        let refused = |input: Value, param: &str, message: &str| {
            let e = validate(input.clone()).unwrap_err();
            assert_eq!(
                (e.param.as_str(), e.message.as_str()),
                (param, message),
                "{input}"
            );
        };
        refused(json!({ "present": "x" }), "needed", "is required");
        refused(json!({ "needed": 1 }), "present", "is required");
        let null_limit = json!({ "needed": 1, "present": "x", "limit": null });
        refused(null_limit, "limit", "must not be null");

        // Unknown keys come first, even when declared params are also wrong; a long key is
        // cut short.
        let unknown = "is not a declared param of this query";
        refused(json!({ "needed": "x", "limti": 5 }), "limti", unknown);
        let long_key = format!("{}...", "k".repeat(64));
        refused(json!({ "k".repeat(1000): 1 }), &long_key, unknown);
    }

    #[test]
    fn messages_never_echo_the_value() {
        let secret = "s3cr3t-VALUE";
        let specs = [
            json!({ "type": "int" }),
            json!({ "type": "bigint" }),
            json!({ "type": "numeric" }),
            json!({ "type": "uuid" }),
            json!({ "type": "date" }),
            json!({ "type": "timestamp" }),
            json!({ "type": "text", "pattern": "[0-9]+" }),
            json!({ "type": "text", "enum": ["a"] }),
            json!({ "type": "text", "max_length": 3 }),
            json!({ "type": "identifier", "required": true, "enum": ["a"] }),
            json!({ "type": "array<int>" }),
        ];
        for spec in specs {
            for input in [json!(secret), json!([secret])] {
                let message = run(&spec, &input).unwrap_err();
                assert!(!message.contains(secret), "{spec}: `{message}`");
            }
        }
    }

    #[test]
    fn bad_param_names() {
        for name in ["1abc", "a-b", "", "é", "a.b", &"a".repeat(65)] {
            let e = compile(json!({ name: { "type": "int" } })).unwrap_err();
            assert_eq!(e.param, name);
            assert!(e.message.contains("invalid param name"), "{e}");
        }
        assert!(compile(json!({ "a".repeat(64): { "type": "int" } })).is_ok());
        assert!(compile(json!({ "_Ab9": { "type": "int" } })).is_ok());
    }

    #[test]
    fn bad_presence_and_defaults() {
        bad(
            json!({ "type": "int", "required": true, "default": 1 }),
            "both required and",
        );
        bad(
            json!({ "type": "int", "default": "1" }),
            "default: must be an integer",
        );
        bad(
            json!({ "type": "int", "default": 0, "min": 1 }),
            "default: must be at least 1",
        );
        bad(
            json!({ "type": "text", "default": "xyz", "enum": ["a"] }),
            "default: must be one",
        );
        let array = json!({ "type": "array<int>", "default": [1, 2], "max_items": 1 });
        bad(array, "default: must have at most 1 items");
    }

    #[test]
    fn bad_bounds() {
        bad(
            json!({ "type": "int", "min": 1.5 }),
            "min: must be an integer",
        );
        bad(
            json!({ "type": "int", "max": 3_000_000_000_i64 }),
            "max: must be an integer between",
        );
        bad(
            json!({ "type": "int", "min": 5, "max": 4 }),
            "min must not be greater than max",
        );
        bad(
            json!({ "type": "numeric", "min": "0.2", "max": "0.10" }),
            "min must not be greater",
        );
        bad(
            json!({ "type": "date", "min": "2024-02-30" }),
            "min: must be a date",
        );
        let days = json!({ "type": "date", "min": "2024-02-02", "max": "2024-02-01" });
        bad(days, "min must not be greater than max");
        bad(
            json!({ "type": "text", "min": 1 }),
            "min does not apply to text",
        );
        bad(
            json!({ "type": "bool", "max": 1 }),
            "max does not apply to bool",
        );
    }

    #[test]
    fn bad_text_and_array_options() {
        bad(
            json!({ "type": "int", "max_length": 3 }),
            "max_length applies only to text",
        );
        bad(
            json!({ "type": "text", "max_length": 0 }),
            "max_length must be at least 1",
        );
        bad(
            json!({ "type": "text", "max_length": 1_048_577 }),
            "must be at most 1048576",
        );
        bad(
            json!({ "type": "int", "pattern": "[0-9]" }),
            "pattern applies only to text",
        );
        bad(
            json!({ "type": "text", "pattern": "(" }),
            "pattern does not compile",
        );
        // Would escape the anchors if it were only wrapped in a group.
        bad(
            json!({ "type": "text", "pattern": "a)|(b" }),
            "pattern does not compile",
        );
        bad(
            json!({ "type": "int", "max_items": 3 }),
            "apply only to arrays",
        );
        bad(
            json!({ "type": "array<int>", "max_items": 10_001 }),
            "must be at most 10000",
        );
        bad(
            json!({ "type": "array<int>", "max_items": 0 }),
            "max_items must be at least 1",
        );
        let items = json!({ "type": "array<int>", "min_items": 5, "max_items": 4 });
        bad(
            items,
            "min_items (5) must not be greater than max_items (4)",
        );
        bad(
            json!({ "type": "array<int>", "min_items": 101 }),
            "max_items (100)",
        );
    }

    #[test]
    fn bad_enums() {
        bad(
            json!({ "type": "text", "enum": [] }),
            "enum must not be empty",
        );
        bad(
            json!({ "type": "int", "enum": [1, "2"] }),
            "enum item 1: must be an integer",
        );
        bad(
            json!({ "type": "int", "enum": [null] }),
            "enum item 0: must not be null",
        );
        bad(
            json!({ "type": "int", "min": 0, "enum": [-1] }),
            "enum item 0: must be at least 0",
        );
        let pattern = json!({ "type": "text", "pattern": "[a-z]+", "enum": ["A"] });
        bad(pattern, "enum item 0: does not match");
    }

    #[test]
    fn bad_identifiers_and_keywords() {
        let column =
            |allowed: Value| json!({ "type": "identifier", "required": true, "enum": allowed });
        bad(
            json!({ "type": "identifier", "required": true }),
            "need a non-empty enum",
        );
        bad(column(json!([])), "enum must not be empty");
        bad(column(json!(["a b"])), "enum item 0: not an identifier");
        bad(
            column(json!(["a", "a..b"])),
            "enum item 1: not an identifier",
        );
        for name in ["a.", ".a", "1a", "a-b", "", &"a".repeat(64)] {
            bad(column(json!([name])), "not an identifier");
        }
        bad(column(json!([1])), "not an identifier");
        let nullable = json!({ "type": "identifier", "nullable": true, "enum": ["a"] });
        bad(nullable, "cannot be nullable");
        bad(
            json!({ "type": "identifier", "enum": ["a"] }),
            "must be required or have a default",
        );
        let default = json!({ "type": "identifier", "default": "b", "enum": ["a"] });
        bad(default, "default: must be one of: a");
        let length =
            json!({ "type": "identifier", "default": "a", "enum": ["a"], "max_length": 3 });
        bad(length, "max_length applies only to text");

        let order =
            |allowed: Value| json!({ "type": "keyword", "required": true, "enum": allowed });
        bad(
            json!({ "type": "keyword", "required": true }),
            "need a non-empty enum",
        );
        bad(order(json!(["UP"])), "enum item 0: not a keyword");
        bad(order(json!(["nulls  first"])), "not a keyword");
        let nullable =
            json!({ "type": "keyword", "default": "asc", "nullable": true, "enum": ["asc"] });
        bad(nullable, "cannot be nullable");

        // YAML cannot spell an array of identifiers, but code can build one.
        let mut spec: ParamSpec = serde_json::from_value(column(json!(["a"]))).unwrap();
        spec.ty = ParamType::Array(ScalarType::Identifier);
        let e = ParamSchema::compile(&BTreeMap::from([("p".to_string(), spec)])).unwrap_err();
        assert!(
            e.message.contains("array<identifier> is not supported"),
            "{e}"
        );
    }

    #[test]
    fn good_declarations() {
        let specs = [
            json!({ "type": "text", "max_length": 1_048_576, "pattern": "[a-z]*" }),
            json!({ "type": "array<int>", "max_items": 10_000, "min_items": 10_000 }),
            json!({ "type": "numeric", "min": 0, "max": "1e3", "default": "5.5" }),
            json!({
                "type": "timestamp", "min": "2024-01-01T00:00:00Z", "max": "2024-01-01 00:00:00"
            }),
            json!({ "type": "int", "nullable": true, "default": null }),
            json!({ "type": "json", "default": { "a": 1 } }),
            json!({ "type": "keyword", "required": true, "enum": KEYWORDS }),
            json!({ "type": "identifier", "default": "public.t", "enum": ["public.t", "_x9"] }),
        ];
        for spec in specs {
            let compiled = compile(json!({ "p": spec }));
            assert!(compiled.is_ok(), "{spec}: {:?}", compiled.err());
        }
    }
}
