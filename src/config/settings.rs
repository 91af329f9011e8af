//! The settings groups: [`EdgeSettings`] (client address, admin allowlist, rate limits,
//! concurrency) and [`AuthSettings`] (signup, passwords, sessions, cookie, lockout, mail),
//! each with its parser over the variables of its group.
//!
//! Owns these groups' shapes and ranges. Must never quote the SMTP URL (it may hold a
//! password: it is a [`SecretString`]) and never read a variable outside its group.

use std::time::Duration;

use super::parse::{Env, boxed};
use super::variables::{
    ADMIN_ALLOWED_IPS, AUTH_RATE_PER_MINUTE, COOKIE_SAMESITE, FRESH_AUTH_SECS, LOCKOUT_SECS,
    LOCKOUT_THRESHOLD, MAIL_FROM, PASSWORD_MIN_LENGTH, QUERY_MAX_CONCURRENCY, RATE_LIMIT_PER_IP,
    RATE_LIMIT_PER_KEY, RATE_LIMIT_PER_USER, RESET_TOKEN_TTL_SECS, SESSION_ABSOLUTE_TIMEOUT_SECS,
    SESSION_IDLE_TIMEOUT_SECS, SIGNUP_ALLOWED_DOMAINS, SIGNUP_ENABLED, SMTP_URL, SSO_FILE,
    SSO_ONLY, TRUSTED_PROXIES,
};
use super::{ConfigError, from_lookup};
use crate::spec::rate::{RateRule, parse_rule};
use crate::vault::SecretString;

/// Settings of the edge policy (`SLUICE_TRUSTED_PROXIES`, `SLUICE_ADMIN_ALLOWED_IPS`,
/// `SLUICE_RATE_LIMIT_*`, `SLUICE_QUERY_MAX_CONCURRENCY`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Empty means any address.
    pub admin_allowed_ips: Vec<ipnet::IpNet>,
    /// `None` means off.
    pub per_ip: Option<RateRule>,
    pub per_user: Option<RateRule>,
    pub per_key: Option<RateRule>,
    /// 0 means no cap.
    pub query_max_concurrency: u32,
}

/// Settings of accounts and sessions (`SLUICE_SIGNUP_*`, `SLUICE_SESSION_*`, lockout, mail).
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub signup_enabled: bool,
    /// Lower-case domains; empty means any.
    pub signup_allowed_domains: Vec<String>,
    /// `SLUICE_SSO_FILE`: the providers and issuers (read by the instance at start-up).
    pub sso_file: Option<std::path::PathBuf>,
    /// `SLUICE_SSO_ONLY`: every local sign-in path is closed.
    pub sso_only: bool,
    pub password_min_length: usize,
    pub session_idle_timeout: Duration,
    pub session_absolute_timeout: Duration,
    pub cookie_same_site: SameSite,
    pub lockout_threshold: u32,
    pub lockout_duration: Duration,
    pub auth_rate_per_minute: u32,
    pub fresh_auth: Duration,
    pub token_ttl: Duration,
    pub smtp_url: Option<SecretString>,
    pub mail_from: Option<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        from_lookup(|_| None).expect("the defaults parse").auth
    }
}

/// The session cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    /// Cross-site apps; the cookie is then always `Secure`.
    None,
}

pub(super) fn edge_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<EdgeSettings, ConfigError> {
    const RATE: &str = "a rate such as 600/minute, 10/second or 5000/hour, or off";
    let rate = |var| env.parse(var, RATE, |v| parse_rule(v).map_err(|_| None));
    let cidrs = |var| {
        env.parse(
            var,
            "a comma-separated list of CIDRs or addresses such as 10.0.0.0/8, 2001:db8::/32",
            |v| crate::egress::parse_cidr_list(v).map_err(boxed),
        )
    };
    Ok(EdgeSettings {
        trusted_proxies: cidrs(TRUSTED_PROXIES)?,
        admin_allowed_ips: cidrs(ADMIN_ALLOWED_IPS)?,
        per_ip: rate(RATE_LIMIT_PER_IP)?,
        per_user: rate(RATE_LIMIT_PER_USER)?,
        per_key: rate(RATE_LIMIT_PER_KEY)?,
        query_max_concurrency: env.number(
            QUERY_MAX_CONCURRENCY,
            "a whole number of concurrent runs, 0 for no cap",
            0..=u32::MAX,
        )?,
    })
}

pub(super) fn auth_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<AuthSettings, ConfigError> {
    const SECONDS: &str = "a whole number of seconds, at least 1";
    let seconds = |var| {
        env.number(var, SECONDS, 1..=u64::MAX / 2)
            .map(Duration::from_secs)
    };
    Ok(AuthSettings {
        signup_enabled: env.parse(SIGNUP_ENABLED, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(None),
            }
        })?,
        signup_allowed_domains: env.parse(
            SIGNUP_ALLOWED_DOMAINS,
            "a comma-separated list of domains such as example.com, example.org",
            |v| {
                v.split([',', ' '])
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        let domain = d.trim_start_matches('@').to_ascii_lowercase();
                        let shaped = domain.contains('.')
                            && domain
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                        shaped.then_some(domain).ok_or(None)
                    })
                    .collect()
            },
        )?,
        sso_file: env.parse(SSO_FILE, "a path to the SSO file", |v| {
            Ok((!v.is_empty()).then(|| std::path::PathBuf::from(v)))
        })?,
        sso_only: env.parse(SSO_ONLY, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(None),
            }
        })?,
        password_min_length: env.number(
            PASSWORD_MIN_LENGTH,
            "a whole number of characters from 8 to 64",
            8..=64,
        )?,
        session_idle_timeout: seconds(SESSION_IDLE_TIMEOUT_SECS)?,
        session_absolute_timeout: seconds(SESSION_ABSOLUTE_TIMEOUT_SECS)?,
        cookie_same_site: env.parse(COOKIE_SAMESITE, "lax, strict or none", |v| {
            match v.to_ascii_lowercase().as_str() {
                "lax" => Ok(SameSite::Lax),
                "strict" => Ok(SameSite::Strict),
                "none" => Ok(SameSite::None),
                _ => Err(None),
            }
        })?,
        lockout_threshold: env.number(
            LOCKOUT_THRESHOLD,
            "a whole number of failures from 1 to 1000",
            1..=1000,
        )?,
        lockout_duration: seconds(LOCKOUT_SECS)?,
        auth_rate_per_minute: env.number(
            AUTH_RATE_PER_MINUTE,
            "a whole number of requests per minute, at least 1",
            1..=u32::MAX,
        )?,
        fresh_auth: seconds(FRESH_AUTH_SECS)?,
        token_ttl: seconds(RESET_TOKEN_TTL_SECS)?,
        smtp_url: env
            .secret(SMTP_URL)
            .filter(|v| !v.expose().trim().is_empty()),
        mail_from: env.supplied(MAIL_FROM),
    })
}
