//! Instance configuration, read from `SLUICE_*` environment variables only.
//!
//! Owns the list of variables ([`VARIABLES`]: name, default, description — the source for
//! `docker.env.example` and the configuration reference), where their values come from
//! ([`Environment`]: the process environment, an env file, secret files), parsing each one
//! into a typed [`Config`], and the cross-field checks in [`Config::validate`].
//!
//! One file per concern: `variables` (the table, the names, each default, which are
//! secrets), `env_file` (Docker's env-file format), `environment` (the sources and their
//! precedence, `NAME_FILE` secrets), `parse` (the lookup and the value parsers), `settings`
//! (the edge and auth groups), `defaults` (what a query gets where the catalog sets nothing).
//! This file keeps [`Config`], its errors and [`from_lookup`], which reads every variable
//! once.
//!
//! Invariants:
//! - Parsing is a pure function of a lookup ([`from_lookup`]). Only `environment` reads the
//!   outside world (the process environment, the env file, secret files), and only to read
//!   it. Config never calls `set_var`, binds sockets, or logs.
//! - A variable that is unset or set to an empty (or all-whitespace) value takes its
//!   documented default, which is parsed by the same code as a supplied value.
//! - Each error is one line naming the variable (or the file and line) and the expected
//!   form. Non-secret values are quoted back to help fix typos; secrets
//!   ([`SECRET_VARIABLES`]) never appear in an error or in `Debug` output (they are held as
//!   [`SecretString`]), and neither does any value read from a file.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

mod alerts;
mod audit;
mod defaults;
mod env_file;
mod environment;
mod parse;
mod references;
mod settings;
mod variables;

pub use alerts::{AlertSettings, SignupSurge, Threshold};
pub use audit::{AuditExport, AuditSettings};
pub use defaults::{LimitDefaults, QueryDefaults};
pub use environment::Environment;
pub use references::{ReferenceError, SecretReference, SecretReferences, is_reference};
pub use settings::{AuthSettings, EdgeSettings, SameSite};
pub use variables::{SECRET_VARIABLES, VARIABLES, unknown_variables};

use crate::vault::{self, InstanceKey, Keyring, SecretString, VaultError};
use parse::{Env, MAX_MILLIS, MAX_SECS, boxed, parse_address_list, parse_public_url};
use settings::{auth_settings, edge_settings};
use variables::{
    ACME_CA_FILE, ACME_CONTACT, ACME_DIRECTORY, ACME_DOMAINS, ADMIN_TOKEN, AUTH_CACHE_SECS,
    AUTH_CACHE_STALE_SECS, BODY_READ_TIMEOUT_MS, CATALOG_RELOAD_SECS, CONSOLE, DATA_DIR,
    EGRESS_ALLOW, EGRESS_BIND, EGRESS_PUBLIC_IPS, ENCRYPTION_PASSWORD, ENCRYPTION_PASSWORD_OLD,
    ENCRYPTION_SALT, ENCRYPTION_SALT_OLD, HEADER_READ_TIMEOUT_MS, LISTEN, LISTEN_BACKLOG,
    LOG_FORMAT, LOG_LEVEL, MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP, MAX_ROWS,
    METADATA_DB, METADATA_PASSWORD, METADATA_URL, METRICS_LISTEN, METRICS_TOKEN, POOL_SIZE,
    POOL_WAIT_MS, PUBLIC_URL, QUERY_TIMEOUT_MS, REDIS_URL, SCIM_TOKEN, SECRET_REFERENCES,
    SHUTDOWN_GRACE_SECS, SQLITE_DIRS, TLS_CERT_FILE, TLS_KEY_FILE,
};

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The instance configuration. Build it with [`Environment::config`] or [`from_lookup`], then call
/// [`Config::validate`] before binding anything.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub encryption_password: Option<SecretString>,
    pub encryption_salt: Option<SecretString>,
    /// The previous password and salt during a key rotation: a read fallback.
    pub encryption_password_old: Option<SecretString>,
    pub encryption_salt_old: Option<SecretString>,
    /// Which `env:`/`file:` references a datasource secret may be (`SLUICE_SECRET_REFERENCES`).
    pub secret_references: SecretReferences,
    pub data_dir: PathBuf,
    pub metadata_db: Option<PathBuf>,
    /// The PostgreSQL metadata store (`SLUICE_METADATA_URL`); `None`: the SQLite file.
    pub metadata_url: Option<SecretString>,
    /// Its user's password when the URL holds none (`SLUICE_METADATA_PASSWORD`).
    pub metadata_password: Option<SecretString>,
    /// Redis for the shared rate-limit buckets (`SLUICE_REDIS_URL`).
    pub redis_url: Option<SecretString>,
    /// How long a replica reuses a session or key it read from a PostgreSQL store
    /// (`SLUICE_AUTH_CACHE_SECS`; zero: never).
    pub auth_cache: Duration,
    /// How long a cached session or key keeps working while the store is unreachable
    /// (`SLUICE_AUTH_CACHE_STALE_SECS`; zero: never).
    pub auth_cache_stale: Duration,
    pub log_format: LogFormat,
    /// One of `error`, `warn`, `info`, `debug`, `trace` (normalised to lower case).
    pub log_level: String,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    /// Time to send the whole request body once the headers are in.
    pub body_read_timeout: Duration,
    /// Connections open at once, in all (0: no cap).
    pub max_connections: usize,
    /// Connections open at once from one client address (0: no cap).
    pub max_connections_per_ip: usize,
    /// Length of the listen queue (the kernel caps it at `net.core.somaxconn`).
    pub listen_backlog: u32,
    pub query_timeout: Duration,
    pub max_rows: u64,
    pub shutdown_grace: Duration,
    /// How often a running gateway looks for a new catalog revision in the store; `None`:
    /// only on SIGHUP.
    pub catalog_reload: Option<Duration>,
    pub pool_size: usize,
    /// How long a query waits for a free datasource connection, where the catalog sets no
    /// `pool_wait_ms`.
    pub pool_wait: Duration,
    /// Without a trailing `/`, so paths can be appended directly.
    pub public_url: Option<String>,
    /// Bearer token of the admin API; `None` turns the admin API off.
    pub admin_token: Option<SecretString>,
    /// A listener of its own for `GET /metrics`, without authentication.
    pub metrics_listen: Option<SocketAddr>,
    /// Bearer token for `GET /metrics` on the main listener; `None`: not served there.
    pub metrics_token: Option<SecretString>,
    /// Bearer token of the SCIM 2.0 endpoints (`/scim/v2/...`); `None`: not served.
    pub scim_token: Option<SecretString>,
    /// The admin console at `/console` (`SLUICE_CONSOLE`, on by default).
    pub console: bool,
    /// Non-public networks every datasource may reach.
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Source addresses for outbound connections (at most one per address family).
    pub egress_bind: Vec<std::net::IpAddr>,
    /// Public egress addresses after NAT, for DBAs (informational).
    pub egress_public_ips: Vec<std::net::IpAddr>,
    /// Directories SQLite datasource files must lie under (absolute); empty: anywhere but
    /// Sluice's own files (`datasource::sqlite::check_path`).
    pub sqlite_dirs: Vec<PathBuf>,
    /// Certificate and key files for HTTPS; both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Certificates from an ACME directory; `None`: no ACME.
    pub acme: Option<AcmeSettings>,
    /// Accounts, sessions and mail.
    pub auth: AuthSettings,
    /// Edge policy defaults: client address, admin allowlist, rate limits.
    pub edge: EdgeSettings,
    /// The audit log: query runs, exports, retention.
    pub audit: AuditSettings,
    /// The auth alerts: thresholds and the webhook.
    pub alerts: AlertSettings,
}

/// What `SLUICE_ACME_*` asks for: certificates for `domains` from the CA at `directory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Lower-case DNS names, at least one, no wildcards (TLS-ALPN-01 cannot prove them).
    pub domains: Vec<String>,
    /// A `mailto:` URL for the account.
    pub contact: Option<String>,
    /// The directory URL (https://).
    pub directory: String,
    /// The only CAs trusted for the directory's HTTPS certificate.
    pub ca_file: Option<PathBuf>,
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
    NotUnicode { var: String },
    /// The env file given with `--env-file` cannot be read.
    #[error("cannot read the env file {}", .path.display())]
    EnvFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the env file is not in Docker's format.
    #[error("the env file {} is malformed", .path.display())]
    EnvFile {
        path: PathBuf,
        #[source]
        source: env_file::LineError,
    },
    /// A secret set both directly and through `NAME_FILE`.
    #[error("{var} and {var}_FILE are both set; set one of them")]
    SecretTwice { var: &'static str },
    /// The file a secret's `NAME_FILE` names cannot be used (its contents are not shown).
    #[error("{var}_FILE={}: {reason}", .path.display())]
    SecretFile {
        var: &'static str,
        path: PathBuf,
        reason: &'static str,
        #[source]
        source: Option<std::io::Error>,
    },
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
        match (
            &self.encryption_password_old,
            &self.encryption_salt_old,
            &self.encryption_password,
        ) {
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(ConfigError::Inconsistent(
                    "SLUICE_ENCRYPTION_PASSWORD_OLD and SLUICE_ENCRYPTION_SALT_OLD go together; set both (the previous password and salt) or neither",
                ));
            }
            (Some(_), Some(_), None) => {
                return Err(ConfigError::Inconsistent(
                    "SLUICE_ENCRYPTION_PASSWORD_OLD is set without SLUICE_ENCRYPTION_PASSWORD; the old key is only a read fallback beside the current one",
                ));
            }
            _ => {}
        }
        if self.metadata_url.is_some() && self.metadata_db.is_some() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_METADATA_URL and SLUICE_METADATA_DB both choose the metadata store; set one of them",
            ));
        }
        if self.metadata_password.is_some() && self.metadata_url.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_METADATA_PASSWORD is set but SLUICE_METADATA_URL is not; it is the PostgreSQL store's password",
            ));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_TLS_CERT_FILE and SLUICE_TLS_KEY_FILE go together; set both or neither",
            ));
        }
        if self.acme.is_some() && self.tls_cert_file.is_some() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_ACME_DOMAINS and SLUICE_TLS_CERT_FILE both choose the HTTPS certificate; set one of them",
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
        if let Some(metrics) = self.metrics_listen
            && metrics.port() != 0
            && metrics.port() == self.listen.port()
            && (metrics.ip() == self.listen.ip()
                || metrics.ip().is_unspecified()
                || self.listen.ip().is_unspecified())
        {
            return Err(ConfigError::Inconsistent(
                "SLUICE_METRICS_LISTEN is the address of SLUICE_LISTEN; give the metrics listener a port of its own (or unset it and use SLUICE_METRICS_TOKEN)",
            ));
        }
        if self.auth.signup_enabled && self.auth.smtp_url.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SIGNUP_ENABLED needs SLUICE_SMTP_URL: signup is confirmed by mail",
            ));
        }
        if self.auth.sso_only && self.auth.sso_file.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SSO_ONLY needs SLUICE_SSO_FILE: with local sign-in closed, people sign in through its providers",
            ));
        }
        if self.auth.sso_only && self.auth.signup_enabled {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SSO_ONLY closes signup: unset SLUICE_SIGNUP_ENABLED (providers may create accounts with `create_users`)",
            ));
        }
        if self.auth.sso_file.is_some() && self.public_url.is_none() {
            return Err(ConfigError::Inconsistent(
                "SLUICE_SSO_FILE needs SLUICE_PUBLIC_URL: providers send people back to its callback URL",
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

    /// The current key ([`Config::instance_key`]) and, when `SLUICE_ENCRYPTION_PASSWORD_OLD`
    /// and `SLUICE_ENCRYPTION_SALT_OLD` are set, the old one as a read fallback. The old pair
    /// is not judged for strength (it is being retired), only required as a pair. Slow:
    /// PBKDF2 once or twice; call it once, off the async runtime.
    pub fn keyring(&self) -> Result<Keyring, ConfigError> {
        let current = self.instance_key()?;
        let old = match (&self.encryption_password_old, &self.encryption_salt_old) {
            (Some(password), Some(salt)) => Some(
                InstanceKey::derive(password.expose(), salt.expose()).map_err(|error| {
                    match error {
                        VaultError::Empty(_) => ConfigError::Inconsistent(
                            "SLUICE_ENCRYPTION_PASSWORD_OLD and SLUICE_ENCRYPTION_SALT_OLD must both be non-empty",
                        ),
                        other => ConfigError::Vault(other),
                    }
                })?,
            ),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Inconsistent(
                    "SLUICE_ENCRYPTION_PASSWORD_OLD and SLUICE_ENCRYPTION_SALT_OLD go together; set both (the previous password and salt) or neither",
                ));
            }
        };
        Ok(Keyring::with_old(current, old))
    }

    /// Whether session cookies carry `Secure` (and the `__Host-` prefix): when Sluice serves
    /// TLS itself, the public URL is https, or SameSite=None asks for it.
    pub fn secure_cookies(&self) -> bool {
        self.serves_tls()
            || self
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
            || self.auth.cookie_same_site == SameSite::None
    }

    /// Whether the main listener speaks HTTPS (certificate files or ACME).
    pub fn serves_tls(&self) -> bool {
        self.tls_cert_file.is_some() || self.acme.is_some()
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

/// Reads the configuration through `lookup` (a variable name to its value), so tests pass a
/// map instead of touching the process environment. The values are final: precedence and
/// `NAME_FILE` secrets are [`Environment`]'s work.
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
        encryption_password_old: env.secret(ENCRYPTION_PASSWORD_OLD),
        encryption_salt_old: env.secret(ENCRYPTION_SALT_OLD),
        secret_references: env.parse(
            SECRET_REFERENCES,
            "a comma-separated list of env:NAME, env:PREFIX*, file:/path or file:/directory/* (never SLUICE_* variables)",
            |v| {
                SecretReferences::parse(v)
                    .map_err(|message| Some(Box::<dyn StdError + Send + Sync>::from(message)))
            },
        )?,
        data_dir: PathBuf::from(env.value(DATA_DIR)),
        metadata_db: env.supplied(METADATA_DB).map(PathBuf::from),
        metadata_url: env
            .secret(METADATA_URL)
            .filter(|url| !url.expose().trim().is_empty()),
        metadata_password: env
            .secret(METADATA_PASSWORD)
            .filter(|password| !password.expose().trim().is_empty()),
        redis_url: env
            .secret(REDIS_URL)
            .filter(|url| !url.expose().trim().is_empty()),
        auth_cache: Duration::from_secs(env.number(
            AUTH_CACHE_SECS,
            "a whole number of seconds from 0 to 60",
            0..=60,
        )?),
        auth_cache_stale: Duration::from_secs(env.number(
            AUTH_CACHE_STALE_SECS,
            "a whole number of seconds from 0 to 3600",
            0..=3600,
        )?),
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
        body_read_timeout: Duration::from_millis(env.number(
            BODY_READ_TIMEOUT_MS,
            "a whole number of milliseconds from 1 to 86400000",
            1..=MAX_MILLIS,
        )?),
        max_connections: env.number(
            MAX_CONNECTIONS,
            "a whole number of connections (0: no cap)",
            0..=usize::MAX,
        )?,
        max_connections_per_ip: env.number(
            MAX_CONNECTIONS_PER_IP,
            "a whole number of connections (0: no cap)",
            0..=usize::MAX,
        )?,
        listen_backlog: env.number(
            LISTEN_BACKLOG,
            "a whole number of connections from 1 to 65535",
            1..=65535,
        )?,
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
        catalog_reload: match env.number(
            CATALOG_RELOAD_SECS,
            "a whole number of seconds from 0 to 86400",
            0..=MAX_SECS,
        )? {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
        pool_size: env.number(
            POOL_SIZE,
            "a whole number of connections, at least 1",
            1..=usize::MAX,
        )?,
        pool_wait: Duration::from_millis(env.number(
            POOL_WAIT_MS,
            "a whole number of milliseconds from 0 to 86400000",
            0..=MAX_MILLIS,
        )?),
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
        admin_token: bearer_token(&env, ADMIN_TOKEN)?,
        metrics_listen: env.parse(
            METRICS_LISTEN,
            "a socket address such as 127.0.0.1:9464 or 0.0.0.0:9464, or empty",
            |v| match v {
                "" => Ok(None),
                v => SocketAddr::from_str(v).map(Some).map_err(boxed),
            },
        )?,
        metrics_token: bearer_token(&env, METRICS_TOKEN)?,
        scim_token: bearer_token(&env, SCIM_TOKEN)?,
        console: env.parse(CONSOLE, "on or off", |v| {
            match v.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" | "yes" => Ok(true),
                "off" | "false" | "0" | "no" => Ok(false),
                _ => Err(None),
            }
        })?,
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
        sqlite_dirs: env.parse(
            SQLITE_DIRS,
            "a comma-separated list of absolute directory paths such as /srv/sqlite",
            |v| {
                let dirs: Vec<PathBuf> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
                if dirs.iter().all(|d| d.is_absolute()) {
                    Ok(dirs)
                } else {
                    Err(None)
                }
            },
        )?,
        tls_cert_file: env.supplied(TLS_CERT_FILE).map(PathBuf::from),
        tls_key_file: env.supplied(TLS_KEY_FILE).map(PathBuf::from),
        acme: acme_settings(&env)?,
        auth: auth_settings(&env)?,
        edge: edge_settings(&env)?,
        audit: audit::audit_settings(&env)?,
        alerts: alerts::alert_settings(&env)?,
    })
}

/// `SLUICE_ACME_*`: on when `SLUICE_ACME_DOMAINS` names at least one domain.
fn acme_settings<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<AcmeSettings>, ConfigError> {
    let domains = env.parse(
        ACME_DOMAINS,
        "a comma-separated list of DNS names such as api.example.com (no wildcards, no IP addresses)",
        |v| {
            let mut domains = Vec::new();
            for item in v.split(',').map(str::trim).filter(|item| !item.is_empty()) {
                let domain = item.trim_end_matches('.').to_ascii_lowercase();
                if !is_dns_name(&domain) {
                    return Err(None);
                }
                if !domains.contains(&domain) {
                    domains.push(domain);
                }
            }
            Ok(domains)
        },
    )?;
    if domains.is_empty() {
        return Ok(None);
    }
    let contact = env.parse(
        ACME_CONTACT,
        "a mailto: URL such as mailto:ops@example.com, or empty",
        |v| match v.trim() {
            "" => Ok(None),
            v if v.starts_with("mailto:") && v.len() > "mailto:".len() && !v.contains(',') => {
                Ok(Some(v.to_string()))
            }
            _ => Err(None),
        },
    )?;
    let directory = env.parse(
        ACME_DIRECTORY,
        "an https:// URL of an ACME directory",
        |v| match url::Url::parse(v.trim()) {
            Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(v.trim().to_string()),
            _ => Err(None),
        },
    )?;
    Ok(Some(AcmeSettings {
        domains,
        contact,
        directory,
        ca_file: env.supplied(ACME_CA_FILE).map(PathBuf::from),
    }))
}

/// A DNS name with at least one letter-digit-hyphen label, each 1 to 63 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        // An address is not a name (and ACME would want an IP identifier for it).
        && name.parse::<std::net::IpAddr>().is_err()
}

/// A bearer token secret (`SLUICE_ADMIN_TOKEN`, `SLUICE_METRICS_TOKEN`): unset when blank,
/// refused when shorter than 32 characters (the value is never quoted).
fn bearer_token<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    var: &'static str,
) -> Result<Option<SecretString>, ConfigError> {
    match env.secret(var) {
        // Blank means unset, as for every other variable.
        Some(token) if token.expose().trim().is_empty() => Ok(None),
        Some(token) if token.expose().trim().len() < 32 => Err(ConfigError::Invalid {
            var,
            value: "(hidden)".into(),
            expected: "a random token of at least 32 characters (e.g. from `sluice keygen`)",
            source: None,
        }),
        token => Ok(token),
    }
}

#[cfg(test)]
mod tests;
