//! Instance configuration, read from `SLUICE_*` environment variables only.
//!
//! Owns the list of variables ([`VARIABLES`]: name, default, description — the source for
//! `docker.env.example` and the configuration reference), parsing each one into a typed
//! [`Config`], and the cross-field checks in [`Config::validate`].
//!
//! Invariants:
//! - Parsing is a pure function of a lookup ([`from_lookup`]); only [`from_env`] touches the
//!   process environment, and only to read it. Config never calls `set_var`, opens files,
//!   binds sockets, or logs.
//! - A variable that is unset or set to an empty (or all-whitespace) value takes its
//!   documented default, which is parsed by the same code as a supplied value.
//! - Each error is one line naming the variable and the expected form. Non-secret values are
//!   quoted back to help fix typos; the encryption password and salt never appear in an error
//!   or in `Debug` output (they are held as [`SecretString`]).

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod defaults;

pub use defaults::{LimitDefaults, QueryDefaults};

use crate::spec::rate::{RateRule, parse_rule};
use crate::vault::{self, InstanceKey, SecretString, VaultError};

/// Every variable Sluice reads: `(name, default, description)`. An empty default means
/// "unset". `docker.env.example` lists each of them (a unit test keeps the two in step).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        LISTEN,
        "0.0.0.0:8080",
        "Address and port the HTTP server listens on, e.g. 0.0.0.0:8080 or [::]:8080.",
    ),
    (
        PUBLIC_URL,
        "",
        "External base URL of this instance (http:// or https://), e.g. for links and redirects; optional.",
    ),
    (
        ENCRYPTION_PASSWORD,
        "",
        "Password for the instance key that seals datasource secrets; required, at least 32 characters; generate with `sluice keygen`.",
    ),
    (
        ENCRYPTION_SALT,
        "",
        "Salt for the instance key; required, at least 16 characters; generate with `sluice keygen`.",
    ),
    (
        DATA_DIR,
        "./sluice-data",
        "Directory for Sluice's own state (the metadata database by default).",
    ),
    (
        METADATA_DB,
        "",
        "Path of the SQLite metadata database; empty means <SLUICE_DATA_DIR>/sluice.db.",
    ),
    (LOG_FORMAT, "text", "Log format: text or json."),
    (
        LOG_LEVEL,
        "info",
        "Minimum log level: error, warn, info, debug or trace.",
    ),
    (
        MAX_BODY_BYTES,
        "65536",
        "Largest request body accepted, in bytes (at least 1024); larger bodies get 413.",
    ),
    (
        HEADER_READ_TIMEOUT_MS,
        "10000",
        "Time a client has to send the request headers, in milliseconds; also how long an idle keep-alive connection stays open.",
    ),
    (
        QUERY_TIMEOUT_MS,
        "30000",
        "Default longest time a query may run, in milliseconds.",
    ),
    (
        MAX_ROWS,
        "10000",
        "Default largest number of rows a query may return.",
    ),
    (
        SHUTDOWN_GRACE_SECS,
        "30",
        "On shutdown, how long in-flight queries may take to finish, in seconds.",
    ),
    (
        POOL_SIZE,
        "16",
        "Default number of connections in each datasource's pool.",
    ),
    (
        ADMIN_TOKEN,
        "",
        "Bearer token for automation on the admin API (/v1/admin/...), at least 32 characters; empty: only admin sessions (with MFA) may use it.",
    ),
    (
        TLS_CERT_FILE,
        "",
        "PEM certificate chain to serve HTTPS with (re-read on SIGHUP); empty: plain HTTP (terminate TLS in front of Sluice).",
    ),
    (
        TLS_KEY_FILE,
        "",
        "PEM private key for SLUICE_TLS_CERT_FILE; required with it.",
    ),
    (
        TRUSTED_PROXIES,
        "",
        "Reverse proxies whose X-Forwarded-For / Forwarded headers are believed (CIDRs or addresses, comma-separated); empty: the client address is always the socket peer.",
    ),
    (
        ADMIN_ALLOWED_IPS,
        "",
        "Client networks allowed to use the admin API (CIDRs or addresses, comma-separated); empty: any.",
    ),
    (
        RATE_LIMIT_PER_IP,
        "1200/minute",
        "Requests per client IP on every endpoint, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        RATE_LIMIT_PER_USER,
        "600/minute",
        "Query runs per signed-in user, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        RATE_LIMIT_PER_KEY,
        "1200/minute",
        "Query runs per API key, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        QUERY_MAX_CONCURRENCY,
        "0",
        "Default cap on runs of one query at once per process (more get 429); 0: no cap (apps and queries may set their own).",
    ),
    (
        SIGNUP_ENABLED,
        "false",
        "Whether people may create their own accounts (true or false); off by default, accounts are then made by admins.",
    ),
    (
        SIGNUP_ALLOWED_DOMAINS,
        "",
        "Email domains self-signup is limited to (comma-separated, e.g. example.com); empty: any domain. Checked on the address the verification mail goes to.",
    ),
    (
        PASSWORD_MIN_LENGTH,
        "12",
        "Shortest password accepted, in characters (8 to 64).",
    ),
    (
        SESSION_IDLE_TIMEOUT_SECS,
        "28800",
        "A session ends after this many seconds without a request (sliding); default 8 hours.",
    ),
    (
        SESSION_ABSOLUTE_TIMEOUT_SECS,
        "604800",
        "A session ends this many seconds after sign-in, whatever its use; default 7 days.",
    ),
    (
        COOKIE_SAMESITE,
        "lax",
        "SameSite attribute of the session cookie: lax, strict or none (none is for cross-site apps and forces Secure).",
    ),
    (
        LOCKOUT_THRESHOLD,
        "5",
        "Consecutive failed passwords that lock an account.",
    ),
    (
        LOCKOUT_SECS,
        "86400",
        "How long a locked account stays locked, in seconds (a completed password reset unlocks it sooner).",
    ),
    (
        AUTH_RATE_PER_MINUTE,
        "10",
        "Login, signup and password-reset requests allowed per client IP per minute (bursts up to the same number).",
    ),
    (
        FRESH_AUTH_SECS,
        "300",
        "Sensitive actions need a password (and MFA) check within this many seconds.",
    ),
    (
        RESET_TOKEN_TTL_SECS,
        "3600",
        "How long password-reset, signup and email-change links stay valid, in seconds.",
    ),
    (
        SMTP_URL,
        "",
        "Outgoing mail server, e.g. smtps://user:password@smtp.example.com or smtp://127.0.0.1:25; empty: no mail (password reset and signup are then off).",
    ),
    (
        MAIL_FROM,
        "",
        "Sender address of Sluice's mail, e.g. Sluice <sluice@example.com>; required with SLUICE_SMTP_URL.",
    ),
    (
        EGRESS_ALLOW,
        "",
        "Non-public networks every datasource may reach (CIDRs or addresses, comma-separated), e.g. 10.20.0.0/16; empty: only public addresses, plus each datasource's own egress_allow.",
    ),
    (
        EGRESS_BIND,
        "",
        "Local source addresses outbound connections leave from (comma-separated, at most one IPv4 and one IPv6), for DBA allowlists; empty: chosen by the OS.",
    ),
    (
        EGRESS_PUBLIC_IPS,
        "",
        "The public addresses this instance's traffic appears from after NAT (comma-separated), listed by `sluice egress` for DBAs; informational.",
    ),
];

const LISTEN: &str = "SLUICE_LISTEN";
const PUBLIC_URL: &str = "SLUICE_PUBLIC_URL";
const ENCRYPTION_PASSWORD: &str = "SLUICE_ENCRYPTION_PASSWORD";
const ENCRYPTION_SALT: &str = "SLUICE_ENCRYPTION_SALT";
const DATA_DIR: &str = "SLUICE_DATA_DIR";
const METADATA_DB: &str = "SLUICE_METADATA_DB";
const LOG_FORMAT: &str = "SLUICE_LOG_FORMAT";
const LOG_LEVEL: &str = "SLUICE_LOG_LEVEL";
const MAX_BODY_BYTES: &str = "SLUICE_MAX_BODY_BYTES";
const HEADER_READ_TIMEOUT_MS: &str = "SLUICE_HEADER_READ_TIMEOUT_MS";
const QUERY_TIMEOUT_MS: &str = "SLUICE_QUERY_TIMEOUT_MS";
const MAX_ROWS: &str = "SLUICE_MAX_ROWS";
const SHUTDOWN_GRACE_SECS: &str = "SLUICE_SHUTDOWN_GRACE_SECS";
const POOL_SIZE: &str = "SLUICE_POOL_SIZE";
const ADMIN_TOKEN: &str = "SLUICE_ADMIN_TOKEN";
const TLS_CERT_FILE: &str = "SLUICE_TLS_CERT_FILE";
const TLS_KEY_FILE: &str = "SLUICE_TLS_KEY_FILE";
const TRUSTED_PROXIES: &str = "SLUICE_TRUSTED_PROXIES";
const ADMIN_ALLOWED_IPS: &str = "SLUICE_ADMIN_ALLOWED_IPS";
const RATE_LIMIT_PER_IP: &str = "SLUICE_RATE_LIMIT_PER_IP";
const RATE_LIMIT_PER_USER: &str = "SLUICE_RATE_LIMIT_PER_USER";
const RATE_LIMIT_PER_KEY: &str = "SLUICE_RATE_LIMIT_PER_KEY";
const QUERY_MAX_CONCURRENCY: &str = "SLUICE_QUERY_MAX_CONCURRENCY";
const SIGNUP_ENABLED: &str = "SLUICE_SIGNUP_ENABLED";
const SIGNUP_ALLOWED_DOMAINS: &str = "SLUICE_SIGNUP_ALLOWED_DOMAINS";
const PASSWORD_MIN_LENGTH: &str = "SLUICE_PASSWORD_MIN_LENGTH";
const SESSION_IDLE_TIMEOUT_SECS: &str = "SLUICE_SESSION_IDLE_TIMEOUT_SECS";
const SESSION_ABSOLUTE_TIMEOUT_SECS: &str = "SLUICE_SESSION_ABSOLUTE_TIMEOUT_SECS";
const COOKIE_SAMESITE: &str = "SLUICE_COOKIE_SAMESITE";
const LOCKOUT_THRESHOLD: &str = "SLUICE_LOCKOUT_THRESHOLD";
const LOCKOUT_SECS: &str = "SLUICE_LOCKOUT_SECS";
const AUTH_RATE_PER_MINUTE: &str = "SLUICE_AUTH_RATE_PER_MINUTE";
const FRESH_AUTH_SECS: &str = "SLUICE_FRESH_AUTH_SECS";
const RESET_TOKEN_TTL_SECS: &str = "SLUICE_RESET_TOKEN_TTL_SECS";
const SMTP_URL: &str = "SLUICE_SMTP_URL";
const MAIL_FROM: &str = "SLUICE_MAIL_FROM";
const EGRESS_ALLOW: &str = "SLUICE_EGRESS_ALLOW";
const EGRESS_BIND: &str = "SLUICE_EGRESS_BIND";
const EGRESS_PUBLIC_IPS: &str = "SLUICE_EGRESS_PUBLIC_IPS";

/// Longest timeout or grace period accepted: one day. Far beyond any sensible value, and it
/// keeps deadline arithmetic well away from overflow.
const MAX_MILLIS: u64 = 86_400_000;
const MAX_SECS: u64 = 86_400;

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The instance configuration. Build it with [`from_env`] or [`from_lookup`], then call
/// [`Config::validate`] before binding anything.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub encryption_password: Option<SecretString>,
    pub encryption_salt: Option<SecretString>,
    pub data_dir: PathBuf,
    pub metadata_db: Option<PathBuf>,
    pub log_format: LogFormat,
    /// One of `error`, `warn`, `info`, `debug`, `trace` (normalised to lower case).
    pub log_level: String,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub query_timeout: Duration,
    pub max_rows: u64,
    pub shutdown_grace: Duration,
    pub pool_size: usize,
    /// Without a trailing `/`, so paths can be appended directly.
    pub public_url: Option<String>,
    /// Bearer token of the admin API; `None` turns the admin API off.
    pub admin_token: Option<SecretString>,
    /// Non-public networks every datasource may reach.
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Source addresses for outbound connections (at most one per address family).
    pub egress_bind: Vec<std::net::IpAddr>,
    /// Public egress addresses after NAT, for DBAs (informational).
    pub egress_public_ips: Vec<std::net::IpAddr>,
    /// Certificate and key files for HTTPS; both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Accounts, sessions and mail.
    pub auth: AuthSettings,
    /// Edge policy defaults: client address, admin allowlist, rate limits.
    pub edge: EdgeSettings,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A configuration problem. The message is one line and names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{var}={value:?} is invalid: expected {expected}")]
    Invalid {
        var: &'static str,
        value: String,
        expected: &'static str,
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// A variable that must be set for the operation asked for.
    #[error(
        "{var} is not set; run `sluice keygen` to generate SLUICE_ENCRYPTION_PASSWORD and SLUICE_ENCRYPTION_SALT"
    )]
    Missing { var: &'static str },
    /// A variable whose value is not valid UTF-8 (the value is not shown).
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
    /// Two variables that do not make sense together.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// The encryption password or salt is refused, or the key cannot be derived.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl Config {
    /// Checks what no single variable can: that the password and salt come as a pair and
    /// are strong. Cheap (no key derivation); `serve` calls it before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.encryption_password, &self.encryption_salt) {
            (Some(password), Some(salt)) => {
                vault::check_strength(password.expose(), salt.expose())?;
            }
            (Some(_), None) => {
                return Err(ConfigError::Inconsistent(
                    "SLUICE_ENCRYPTION_PASSWORD is set but SLUICE_ENCRYPTION_SALT is not; set both (run `sluice keygen`)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::Inconsistent(
                    "SLUICE_ENCRYPTION_SALT is set but SLUICE_ENCRYPTION_PASSWORD is not; set both (run `sluice keygen`)",
                ));
            }
            // Commands that need no key (keygen, catalog check) run without them; anything
            // that needs the key gets a clear error from `instance_key`.
            (None, None) => {}
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_TLS_CERT_FILE and SLUICE_TLS_KEY_FILE go together; set both or neither",
            ));
        }
        if self.auth.smtp_url.is_some() && self.auth.mail_from.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SMTP_URL is set but SLUICE_MAIL_FROM is not; set the sender address",
            ));
        }
        if (self.auth.smtp_url.is_some() || self.auth.signup_enabled) && self.public_url.is_none() {
            return Err(ConfigError::Inconsistent(
                "mail links are built only from SLUICE_PUBLIC_URL; set it when SLUICE_SMTP_URL or SLUICE_SIGNUP_ENABLED is set",
            ));
        }
        if self.auth.signup_enabled && self.auth.smtp_url.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SIGNUP_ENABLED needs SLUICE_SMTP_URL: signup is confirmed by mail",
            ));
        }
        Ok(())
    }

    /// Checks that the password and salt are present and strong, then derives the instance
    /// key. Deliberately slow (PBKDF2); call it once, off the async runtime.
    pub fn instance_key(&self) -> Result<InstanceKey, ConfigError> {
        let password = self
            .encryption_password
            .as_ref()
            .ok_or(ConfigError::Missing {
                var: ENCRYPTION_PASSWORD,
            })?;
        let salt = self.encryption_salt.as_ref().ok_or(ConfigError::Missing {
            var: ENCRYPTION_SALT,
        })?;
        vault::check_strength(password.expose(), salt.expose())?;
        Ok(InstanceKey::derive(password.expose(), salt.expose())?)
    }

    /// Whether session cookies carry `Secure` (and the `__Host-` prefix): when Sluice serves
    /// TLS itself, the public URL is https, or SameSite=None asks for it.
    pub fn secure_cookies(&self) -> bool {
        self.tls_cert_file.is_some()
            || self
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
            || self.auth.cookie_same_site == SameSite::None
    }

    /// The limits queries get where the catalog does not set their own.
    pub fn query_defaults(&self) -> QueryDefaults {
        QueryDefaults {
            timeout: self.query_timeout,
            max_rows: self.max_rows,
            limits: LimitDefaults {
                per_user: self.edge.per_user,
                per_key: self.edge.per_key,
                max_concurrency: self.edge.query_max_concurrency,
            },
        }
    }

    /// Where the metadata database lives: `SLUICE_METADATA_DB`, else `<data dir>/sluice.db`.
    pub fn metadata_path(&self) -> PathBuf {
        self.metadata_db
            .clone()
            .unwrap_or_else(|| self.data_dir.join("sluice.db"))
    }
}

/// Reads the configuration from the process environment.
pub fn from_env() -> Result<Config, ConfigError> {
    for (var, _, _) in VARIABLES {
        if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(var) {
            return Err(ConfigError::NotUnicode { var });
        }
    }
    from_lookup(|name| std::env::var(name).ok())
}

/// Reads the configuration through `lookup` (a variable name to its value), so tests pass a
/// map instead of touching the process environment.
pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let env = Env { lookup };
    Ok(Config {
        listen: env.parse(
            LISTEN,
            "a socket address such as 0.0.0.0:8080 or [::]:8080",
            |v| SocketAddr::from_str(v).map_err(boxed),
        )?,
        encryption_password: env.secret(ENCRYPTION_PASSWORD),
        encryption_salt: env.secret(ENCRYPTION_SALT),
        data_dir: PathBuf::from(env.value(DATA_DIR)),
        metadata_db: env.supplied(METADATA_DB).map(PathBuf::from),
        log_format: env.parse(LOG_FORMAT, "text or json", |v| {
            match v.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(None),
            }
        })?,
        log_level: env.parse(LOG_LEVEL, "one of error, warn, info, debug, trace", |v| {
            let level = v.to_ascii_lowercase();
            LOG_LEVELS
                .contains(&level.as_str())
                .then_some(level)
                .ok_or(None)
        })?,
        max_body_bytes: env.number(
            MAX_BODY_BYTES,
            "a whole number of bytes, at least 1024",
            1024..=usize::MAX,
        )?,
        header_read_timeout: Duration::from_millis(env.number(
            HEADER_READ_TIMEOUT_MS,
            "a whole number of milliseconds from 1 to 86400000",
            1..=MAX_MILLIS,
        )?),
        query_timeout: Duration::from_millis(env.number(
            QUERY_TIMEOUT_MS,
            "a whole number of milliseconds from 1 to 86400000",
            1..=MAX_MILLIS,
        )?),
        max_rows: env.number(MAX_ROWS, "a whole number, at least 1", 1..=u64::MAX)?,
        shutdown_grace: Duration::from_secs(env.number(
            SHUTDOWN_GRACE_SECS,
            "a whole number of seconds from 0 to 86400",
            0..=MAX_SECS,
        )?),
        pool_size: env.number(
            POOL_SIZE,
            "a whole number of connections, at least 1",
            1..=usize::MAX,
        )?,
        public_url: env
            .supplied(PUBLIC_URL)
            .map(|v| {
                parse_public_url(&v).ok_or_else(|| ConfigError::Invalid {
                    var: PUBLIC_URL,
                    value: v.clone(),
                    expected: "an http:// or https:// URL such as https://sluice.example.com",
                    source: None,
                })
            })
            .transpose()?,
        admin_token: match env.secret(ADMIN_TOKEN) {
            // Blank means unset, as for every other variable.
            Some(token) if token.expose().trim().is_empty() => None,
            Some(token) if token.expose().trim().len() < 32 => {
                return Err(ConfigError::Invalid {
                    var: ADMIN_TOKEN,
                    value: "(hidden)".into(),
                    expected: "a random token of at least 32 characters (e.g. from `sluice keygen`)",
                    source: None,
                });
            }
            token => token,
        },
        egress_allow: env.parse(
            EGRESS_ALLOW,
            "a comma-separated list of CIDRs or addresses such as 10.0.0.0/8, 192.168.1.5",
            |v| crate::egress::parse_cidr_list(v).map_err(boxed),
        )?,
        egress_bind: env.parse(
            EGRESS_BIND,
            "a comma-separated list of local addresses, at most one IPv4 and one IPv6",
            |v| {
                let addresses = parse_address_list(v).map_err(boxed)?;
                let v4 = addresses.iter().filter(|a| a.is_ipv4()).count();
                if v4 > 1 || addresses.len() - v4 > 1 {
                    return Err(None);
                }
                Ok(addresses)
            },
        )?,
        egress_public_ips: env.parse(
            EGRESS_PUBLIC_IPS,
            "a comma-separated list of IP addresses",
            |v| parse_address_list(v).map_err(boxed),
        )?,
        tls_cert_file: env.supplied(TLS_CERT_FILE).map(PathBuf::from),
        tls_key_file: env.supplied(TLS_KEY_FILE).map(PathBuf::from),
        auth: auth_settings(&env)?,
        edge: edge_settings(&env)?,
    })
}

fn edge_settings<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<EdgeSettings, ConfigError> {
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

fn auth_settings<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<AuthSettings, ConfigError> {
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

/// `"10.0.0.1, ::1"` -> addresses; empty text is an empty list.
fn parse_address_list(value: &str) -> Result<Vec<std::net::IpAddr>, std::net::AddrParseError> {
    value
        .split([',', ' '])
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// Names among `names` that look like Sluice variables (`SLUICE_` prefix) but are not in
/// [`VARIABLES`], so `main` can warn about a typo such as `SLUICE_MAX_ROW`.
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| name.starts_with("SLUICE_"))
        .filter(|name| !VARIABLES.iter().any(|(known, _, _)| known == name))
        .map(str::to_owned)
        .collect()
}

struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The value as supplied, trimmed; `None` when unset or blank.
    fn supplied(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The supplied value, else the documented default.
    fn value(&self, var: &'static str) -> String {
        self.supplied(var)
            .unwrap_or_else(|| default_of(var).to_owned())
    }

    /// A secret is taken exactly as supplied (not trimmed: `check_strength` reports stray
    /// whitespace rather than silently deriving a key from a different value). Empty is unset.
    fn secret(&self, var: &str) -> Option<SecretString> {
        (self.lookup)(var)
            .filter(|v| !v.is_empty())
            .map(SecretString::new)
    }

    fn parse<T>(
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

    fn number<T>(
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

fn boxed(e: impl StdError + Send + Sync + 'static) -> Option<Box<dyn StdError + Send + Sync>> {
    Some(Box::new(e))
}

/// The documented default of a variable. Every variable read has one (possibly empty).
fn default_of(var: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(name, _, _)| *name == var)
        .map(|(_, default, _)| *default)
        .expect("every variable read is listed in VARIABLES")
}

/// Accepts `http://host[/path]` or `https://host[/path]`: a base URL, so no whitespace,
/// query or fragment. Drops trailing slashes.
fn parse_public_url(value: &str) -> Option<String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
        return None;
    }
    Some(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests;
