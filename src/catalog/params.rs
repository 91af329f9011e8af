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

mod check;
mod declare;
mod scalar;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;

pub use scalar::{cmp_decimal, is_identifier, normalize_decimal};

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
                param: crate::spec::checks::shown_name(key).into_owned(),
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
        self.slot(name).map(|i| &self.params[i])
    }
}
