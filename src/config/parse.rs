//! The parsing helpers every setting goes through: `Env` (a lookup with blank-means-unset,
//! the documented default, range-checked numbers, secrets taken as supplied) and the
//! parsers of address lists and the public URL.
//!
//! Owns what "unset", "default" and "out of range" mean. Must never call `set_var`, log, or
//! quote a secret's value in an error (secrets are held as [`SecretString`]).

use std::error::Error as StdError;
use std::str::FromStr;

use super::ConfigError;
use super::variables::{SECRET_VARIABLES, default_of};
use crate::vault::SecretString;

/// Longest timeout or grace period accepted: one day. Far beyond any sensible value, and it
/// keeps deadline arithmetic well away from overflow.
pub(super) const MAX_MILLIS: u64 = 86_400_000;
pub(super) const MAX_SECS: u64 = 86_400;

pub(super) struct Env<F> {
    pub(super) lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The value as supplied, trimmed; `None` when unset or blank.
    pub(super) fn supplied(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The supplied value, else the documented default.
    pub(super) fn value(&self, var: &'static str) -> String {
        self.supplied(var)
            .unwrap_or_else(|| default_of(var).to_owned())
    }

    /// A secret is taken exactly as supplied (not trimmed: `check_strength` reports stray
    /// whitespace rather than silently deriving a key from a different value). Empty is unset.
    pub(super) fn secret(&self, var: &str) -> Option<SecretString> {
        // Every secret must be listed, so that it can also come from `NAME_FILE`.
        debug_assert!(
            SECRET_VARIABLES.contains(&var),
            "{var} is not in SECRET_VARIABLES"
        );
        (self.lookup)(var)
            .filter(|v| !v.is_empty())
            .map(SecretString::new)
    }

    pub(super) fn parse<T>(
        &self,
        var: &'static str,
        expected: &'static str,
        parse: impl Fn(&str) -> Result<T, Option<Box<dyn StdError + Send + Sync>>>,
    ) -> Result<T, ConfigError> {
        let value = self.value(var);
        parse(&value).map_err(|source| ConfigError::Invalid {
            var,
            value,
            expected,
            source,
        })
    }

    pub(super) fn number<T>(
        &self,
        var: &'static str,
        expected: &'static str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd,
        T::Err: StdError + Send + Sync + 'static,
    {
        self.parse(var, expected, |v| {
            let n = v.parse::<T>().map_err(boxed)?;
            if range.contains(&n) { Ok(n) } else { Err(None) }
        })
    }
}

pub(super) fn boxed(
    e: impl StdError + Send + Sync + 'static,
) -> Option<Box<dyn StdError + Send + Sync>> {
    Some(Box::new(e))
}

/// `"10.0.0.1, ::1"` -> addresses; empty text is an empty list.
pub(super) fn parse_address_list(
    value: &str,
) -> Result<Vec<std::net::IpAddr>, std::net::AddrParseError> {
    value
        .split([',', ' '])
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// Accepts `http://host[/path]` or `https://host[/path]`: a base URL, so no whitespace,
/// query or fragment. Drops trailing slashes.
pub(super) fn parse_public_url(value: &str) -> Option<String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return None;
    }
    Some(value.trim_end_matches('/').to_owned())
}
