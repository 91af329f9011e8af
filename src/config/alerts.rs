//! The auth alerts' settings (`SLUICE_ALERT_*`): each seed pattern's threshold (or `off`),
//! and the optional webhook the alerts are POSTed to.
//!
//! Pure parsing through the lookup. The webhook URL is a secret (a Slack or Teams incoming
//! webhook carries its credential in the path): it is never quoted in an error or logged.

use super::ConfigError;
use super::parse::Env;
use super::variables::{
    ALERT_ADMIN_NEW_NETWORK, ALERT_API_KEY_ALL_APPS, ALERT_LOCKOUT_BURST, ALERT_MFA_DISABLED,
    ALERT_NEW_ADMIN, ALERT_ROLE_CHANGES, ALERT_SIGN_IN_FAILURES, ALERT_SIGNUP_MINIMUM,
    ALERT_SIGNUP_SURGE, ALERT_WEBHOOK_QUEUE, ALERT_WEBHOOK_TOKEN, ALERT_WEBHOOK_URL,
};
use crate::vault::SecretString;

/// More than `count` events within `window_secs` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub count: u32,
    pub window_secs: i64,
}

/// Signups in the last 24 hours above `factor` times the daily average of the
/// `baseline_days` days before, once there are at least `minimum` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupSurge {
    pub factor: u32,
    pub baseline_days: u32,
    pub minimum: u32,
}

/// `SLUICE_ALERT_*`; `None` or `false`: that alert is off.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub sign_in_failures: Option<Threshold>,
    pub signup_surge: Option<SignupSurge>,
    pub role_changes: bool,
    pub mfa_disabled: bool,
    pub new_admin: bool,
    pub api_key_all_apps: bool,
    pub lockout_burst: Option<Threshold>,
    /// An admin's sign-in from a network (/24, /48) not seen for them in this many days.
    pub admin_new_network_days: Option<u32>,
    /// An http:// or https:// URL without user or password; a secret.
    pub webhook_url: Option<SecretString>,
    pub webhook_token: Option<SecretString>,
    /// Alerts waiting for the webhook before new ones are dropped.
    pub webhook_queue: usize,
}

impl Default for AlertSettings {
    /// The documented defaults: every alert on, no webhook.
    fn default() -> AlertSettings {
        AlertSettings {
            sign_in_failures: Some(Threshold {
                count: 5,
                window_secs: 60,
            }),
            signup_surge: Some(SignupSurge {
                factor: 3,
                baseline_days: 14,
                minimum: 10,
            }),
            role_changes: true,
            mfa_disabled: true,
            new_admin: true,
            api_key_all_apps: true,
            lockout_burst: Some(Threshold {
                count: 2,
                window_secs: 600,
            }),
            admin_new_network_days: Some(90),
            webhook_url: None,
            webhook_token: None,
            webhook_queue: 1000,
        }
    }
}

const THRESHOLD_EXPECTED: &str =
    "COUNT/WINDOW such as 5/60s (more than COUNT within WINDOW, in s, m or h), or off";
const SWITCH_EXPECTED: &str = "on or off";
const WEBHOOK_URL_EXPECTED: &str = "an http:// or https:// URL without user or password in it (the token goes in SLUICE_ALERT_WEBHOOK_TOKEN), or empty";

pub(super) fn alert_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<AlertSettings, ConfigError> {
    let switch = |var| {
        env.parse(var, SWITCH_EXPECTED, |v| {
            match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => Ok(true),
                "off" | "false" | "0" | "no" => Ok(false),
                _ => Err(None),
            }
        })
    };
    let threshold = |var| env.parse(var, THRESHOLD_EXPECTED, |v| off_or(v, parse_threshold));
    let webhook_url = match env.secret(ALERT_WEBHOOK_URL) {
        None => None,
        Some(url) if url.expose().trim().is_empty() => None,
        Some(url) => match url::Url::parse(url.expose().trim()) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https")
                    && parsed.host().is_some()
                    && parsed.username().is_empty()
                    && parsed.password().is_none() =>
            {
                Some(SecretString::new(parsed.to_string()))
            }
            _ => {
                return Err(ConfigError::Invalid {
                    var: ALERT_WEBHOOK_URL,
                    value: "(hidden: the URL is a secret)".into(),
                    expected: WEBHOOK_URL_EXPECTED,
                    source: None,
                });
            }
        },
    };
    let surge = env.parse(
        ALERT_SIGNUP_SURGE,
        "FACTORx/DAYSd such as 3x/14d (signups in a day above FACTOR times the daily average of the DAYS before), or off",
        |v| off_or(v, parse_surge),
    )?;
    let minimum = env.number(
        ALERT_SIGNUP_MINIMUM,
        "a whole number of signups from 1 to 1000000",
        1..=1_000_000,
    )?;
    Ok(AlertSettings {
        sign_in_failures: threshold(ALERT_SIGN_IN_FAILURES)?,
        signup_surge: surge.map(|(factor, baseline_days)| SignupSurge {
            factor,
            baseline_days,
            minimum,
        }),
        role_changes: switch(ALERT_ROLE_CHANGES)?,
        mfa_disabled: switch(ALERT_MFA_DISABLED)?,
        new_admin: switch(ALERT_NEW_ADMIN)?,
        api_key_all_apps: switch(ALERT_API_KEY_ALL_APPS)?,
        lockout_burst: threshold(ALERT_LOCKOUT_BURST)?,
        admin_new_network_days: env.parse(
            ALERT_ADMIN_NEW_NETWORK,
            "DAYSd such as 90d (networks an admin signed in from within DAYS days are known; 1 to 3650), or off",
            |v| off_or(v, |v| days(v).filter(|d| (1..=3650).contains(d))),
        )?,
        webhook_url,
        webhook_token: env
            .secret(ALERT_WEBHOOK_TOKEN)
            .filter(|token| !token.expose().trim().is_empty()),
        webhook_queue: env.number(
            ALERT_WEBHOOK_QUEUE,
            "a whole number of alerts from 1 to 100000",
            1..=100_000,
        )?,
    })
}

type ParseResult<T> = Result<T, Option<Box<dyn std::error::Error + Send + Sync>>>;

/// `off` is `None`; anything else must parse.
fn off_or<T>(value: &str, parse: impl Fn(&str) -> Option<T>) -> ParseResult<Option<T>> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse(value).map(Some).ok_or(None)
}

/// `5/60s`, `3/10m`, `10/1h`: a count from 1 and a window from 1 s to a day.
fn parse_threshold(value: &str) -> Option<Threshold> {
    let (count, window) = value.split_once('/')?;
    let count = count.trim().parse::<u32>().ok().filter(|c| *c >= 1)?;
    let window = window.trim();
    let (number, unit) = window.split_at(window.len().checked_sub(1)?);
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    let window_secs = number.parse::<i64>().ok()?.checked_mul(scale)?;
    (1..=86_400)
        .contains(&window_secs)
        .then_some(Threshold { count, window_secs })
}

/// `3x/14d`: a factor from 2 to 100 and a baseline of 1 to 90 days.
fn parse_surge(value: &str) -> Option<(u32, u32)> {
    let (factor, baseline) = value.split_once('/')?;
    let factor = factor.trim().strip_suffix('x')?.parse::<u32>().ok()?;
    let baseline = days(baseline.trim())?;
    ((2..=100).contains(&factor) && (1..=90).contains(&baseline)).then_some((factor, baseline))
}

/// `14d` -> 14.
fn days(value: &str) -> Option<u32> {
    value.strip_suffix('d')?.parse::<u32>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_units_and_refuse_nonsense() {
        assert_eq!(
            parse_threshold("5/60s"),
            Some(Threshold {
                count: 5,
                window_secs: 60
            })
        );
        assert_eq!(parse_threshold("2/10m").map(|t| t.window_secs), Some(600));
        assert_eq!(parse_threshold("9/1h").map(|t| t.window_secs), Some(3600));
        for bad in [
            "", "5", "5/", "/60s", "0/60s", "5/60", "5/0s", "5/2d", "5/25h", "-1/60s",
        ] {
            assert_eq!(parse_threshold(bad), None, "{bad}");
        }
        assert_eq!(parse_surge("3x/14d"), Some((3, 14)));
        for bad in ["3/14d", "3x/14", "1x/14d", "3x/0d", "3x/91d", "x/14d"] {
            assert_eq!(parse_surge(bad), None, "{bad}");
        }
    }
}
