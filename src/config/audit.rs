//! The audit log's settings (`SLUICE_AUDIT_*`): query runs, the JSON-lines export, the
//! webhook, how far an export may fall behind, and retention.
//!
//! Pure parsing through the lookup; never logs or quotes the webhook token (a
//! [`SecretString`]). A webhook URL with credentials in it is refused: the token has its
//! own secret variable.

use std::path::PathBuf;

use super::ConfigError;
use super::parse::Env;
use super::variables::{
    AUDIT_EXPORT, AUDIT_EXPORT_QUEUE, AUDIT_QUERY_RUNS, AUDIT_RETENTION_DAYS, AUDIT_WEBHOOK_TOKEN,
    AUDIT_WEBHOOK_URL,
};
use crate::vault::SecretString;

/// Where `SLUICE_AUDIT_EXPORT` copies entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditExport {
    Stdout,
    /// Appended to, created 0600.
    File(PathBuf),
}

/// `SLUICE_AUDIT_*`.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// Record query runs (metadata only).
    pub query_runs: bool,
    pub export: Option<AuditExport>,
    /// An http:// or https:// URL without credentials.
    pub webhook_url: Option<url::Url>,
    pub webhook_token: Option<SecretString>,
    /// Entries an export may fall behind before the oldest unsent are dropped.
    pub export_queue: u64,
    /// Entries older than this many days are pruned; `None`: kept forever.
    pub retention_days: Option<u32>,
}

const WEBHOOK_URL_EXPECTED: &str = "an http:// or https:// URL without user or password in it (the token goes in SLUICE_AUDIT_WEBHOOK_TOKEN), or empty";

pub(super) fn audit_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<AuditSettings, ConfigError> {
    // A URL with credentials is refused without quoting it: the error would show them.
    if let Some(url) = env.supplied(AUDIT_WEBHOOK_URL)
        && url::Url::parse(&url)
            .is_ok_and(|url| !url.username().is_empty() || url.password().is_some())
    {
        return Err(ConfigError::Invalid {
            var: AUDIT_WEBHOOK_URL,
            value: "(hidden: it holds credentials)".into(),
            expected: WEBHOOK_URL_EXPECTED,
            source: None,
        });
    }
    Ok(AuditSettings {
        query_runs: env.parse(AUDIT_QUERY_RUNS, "true or false", |v| {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(None),
            }
        })?,
        export: env.parse(
            AUDIT_EXPORT,
            "stdout, or file: followed by an absolute path such as file:/var/log/sluice/audit.jsonl, or empty",
            |v| match v {
                "" => Ok(None),
                "stdout" => Ok(Some(AuditExport::Stdout)),
                v => match v.strip_prefix("file:") {
                    Some(path) if path.starts_with('/') && path.len() > 1 => {
                        Ok(Some(AuditExport::File(PathBuf::from(path))))
                    }
                    _ => Err(None),
                },
            },
        )?,
        webhook_url: env.parse(
            AUDIT_WEBHOOK_URL,
            WEBHOOK_URL_EXPECTED,
            |v| match v {
                "" => Ok(None),
                v => match url::Url::parse(v) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https")
                            && url.host().is_some()
                            && url.username().is_empty()
                            && url.password().is_none() =>
                    {
                        Ok(Some(url))
                    }
                    _ => Err(None),
                },
            },
        )?,
        webhook_token: env
            .secret(AUDIT_WEBHOOK_TOKEN)
            .filter(|token| !token.expose().trim().is_empty()),
        export_queue: env.number(
            AUDIT_EXPORT_QUEUE,
            "a whole number of entries from 1 to 10000000",
            1..=10_000_000,
        )?,
        retention_days: env.parse(
            AUDIT_RETENTION_DAYS,
            "a whole number of days from 1 to 36500, or empty to keep every entry",
            |v| match v {
                "" => Ok(None),
                v => match v.parse::<u32>() {
                    Ok(days) if (1..=36_500).contains(&days) => Ok(Some(days)),
                    _ => Err(None),
                },
            },
        )?,
    })
}
