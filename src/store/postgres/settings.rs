//! `SLUICE_METADATA_URL`: where the PostgreSQL metadata store is and how to reach it.
//!
//! The URL is `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...&sslrootcert=...]`;
//! the password may instead come from `SLUICE_METADATA_PASSWORD` (or its `_FILE`), never from
//! both. `sslmode` is `disable`, `require` (encrypted, the server not checked), `verify-ca` or
//! `verify-full`; unset, it is `disable` on a loopback host and `verify-full` anywhere else,
//! as for datasources. TLS uses the datasources' rustls set-up (`datasource::tls`), with
//! `sslrootcert` as the trusted CA bundle (else the web PKI roots).
//!
//! Nothing here logs; [`PgSettings::describe`] is the store's name for logs and errors, and
//! never holds the password.

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::datasource::tls::DbTls;
use crate::spec::{NetworkDatabaseSpec, TlsMode};
use crate::store::StoreError;

/// How the store connects: the driver's configuration, the TLS connector (none when TLS is
/// off) and the URL without its password.
#[derive(Clone)]
pub struct PgSettings {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: Option<MakeRustlsConnect>,
    pub(super) mode: TlsMode,
    described: String,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("store", &self.described)
            .field("tls", &self.mode)
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Settings(message.into())
}

fn decoded(value: &str, what: &str) -> Result<String, StoreError> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|value| value.into_owned())
        .map_err(|_| invalid(format!("the {what} is not UTF-8 once percent-decoded")))
}

impl PgSettings {
    /// Reads `url`, with the password from `password` when the URL has none. Errors name
    /// the part at fault, never the password.
    pub fn parse(url: &str, password: Option<&str>) -> Result<PgSettings, StoreError> {
        let parsed = url::Url::parse(url.trim()).map_err(|error| {
            invalid(format!(
                "not a URL ({error}); expected postgres://USER@HOST:PORT/DATABASE"
            ))
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!(
                "the scheme is `{}`; expected postgres:// (the default store, SQLite, needs no URL)",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| invalid("no host; expected postgres://USER@HOST:PORT/DATABASE"))?
            .to_string();
        let port = parsed.port().unwrap_or(5432);
        let user = decoded(parsed.username(), "user")?;
        if user.is_empty() {
            return Err(invalid(
                "no user; expected postgres://USER@HOST:PORT/DATABASE",
            ));
        }
        let database = decoded(parsed.path().trim_start_matches('/'), "database name")?;
        if database.is_empty() || database.contains('/') {
            return Err(invalid(
                "no database name; expected postgres://USER@HOST:PORT/DATABASE",
            ));
        }
        let in_url = match parsed.password() {
            Some(password) => Some(decoded(password, "password")?),
            None => None,
        };
        let password = match (in_url, password.filter(|p| !p.is_empty())) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "the URL holds a password and SLUICE_METADATA_PASSWORD is set too; set one of them",
                ));
            }
            (Some(password), None) => Some(password),
            (None, Some(password)) => Some(password.to_string()),
            (None, None) => None,
        };
        let mut mode = None;
        let mut root_cert = None;
        let mut application_name = "sluice".to_string();
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "sslmode" => {
                    mode = Some(match value.as_ref() {
                        "disable" => TlsMode::Disable,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(invalid(format!(
                                "sslmode={other}: expected disable, require, verify-ca or verify-full"
                            )));
                        }
                    })
                }
                "sslrootcert" => root_cert = Some(value.into_owned()),
                "application_name" => application_name = value.into_owned(),
                other => {
                    return Err(invalid(format!(
                        "unknown parameter `{other}`; expected sslmode, sslrootcert or application_name"
                    )));
                }
            }
        }
        let mode = mode.unwrap_or(if crate::egress::is_loopback_host(&host) {
            TlsMode::Disable
        } else {
            TlsMode::VerifyFull
        });
        let spec = NetworkDatabaseSpec {
            host: host.clone(),
            port: Some(port),
            database: database.clone(),
            user: user.clone(),
            password: None,
            tls: Some(mode),
            tls_ca_file: root_cert,
            tls_client_cert_file: None,
            tls_client_key: None,
            pool_size: None,
            pool_wait_ms: None,
            connect_timeout_ms: None,
            egress_allow: Vec::new(),
            row_security: None,
        };
        let tls = DbTls::load(&spec, mode, None)
            .map_err(|error| invalid(format!("sslrootcert: {error}")))?
            .config
            .map(|config| MakeRustlsConnect::new(rustls::ClientConfig::clone(&config)));
        let mut config = tokio_postgres::Config::new();
        config
            .host(host.trim_start_matches('[').trim_end_matches(']'))
            .port(port)
            .user(&user)
            .dbname(&database)
            .application_name(&application_name)
            .connect_timeout(std::time::Duration::from_secs(10))
            .ssl_mode(if mode == TlsMode::Disable {
                SslMode::Disable
            } else {
                SslMode::Require
            });
        if let Some(password) = &password {
            config.password(password.as_bytes());
        }
        let described = format!("postgres://{user}@{host}:{port}/{database}");
        Ok(PgSettings {
            config,
            tls,
            mode,
            described,
        })
    }

    /// The store's name for logs and errors: the URL without the password or parameters.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// The same server and credentials, another database (tests make one each).
    pub fn with_database(&self, database: &str) -> PgSettings {
        let mut settings = self.clone();
        settings.config.dbname(database);
        settings.described = match self.described.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => self.described.clone(),
        };
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(url: &str, password: Option<&str>) -> String {
        PgSettings::parse(url, password).unwrap_err().to_string()
    }

    #[test]
    fn a_url_is_read_and_described_without_its_password() {
        let settings =
            PgSettings::parse("postgres://sluice:s3cr%40t@127.0.0.1:5433/meta", None).unwrap();
        assert_eq!(settings.describe(), "postgres://sluice@127.0.0.1:5433/meta");
        assert_eq!(settings.config.get_password(), Some(&b"s3cr@t"[..]));
        assert_eq!(
            settings.mode,
            TlsMode::Disable,
            "loopback: no TLS by default"
        );
        assert!(!format!("{settings:?}").contains("s3cr"));
        let remote = PgSettings::parse("postgresql://sluice@db.internal/meta", Some("pw")).unwrap();
        assert_eq!(
            remote.mode,
            TlsMode::VerifyFull,
            "off loopback: verified TLS"
        );
        assert!(remote.tls.is_some());
        assert_eq!(remote.config.get_password(), Some(&b"pw"[..]));
        let required =
            PgSettings::parse("postgres://sluice@db.internal/meta?sslmode=require", None).unwrap();
        assert_eq!(required.mode, TlsMode::Require);
    }

    #[test]
    fn bad_urls_name_what_is_wrong_and_never_the_password() {
        for (url, password, expected) in [
            ("mysql://u@h/db", None, "the scheme is `mysql`"),
            ("postgres://u@h/", None, "no database name"),
            ("postgres://h/db", None, "no user"),
            ("postgres://u:hunter2@h/db", Some("pw"), "set one of them"),
            (
                "postgres://u:hunter2@h/db?sslmode=maybe",
                None,
                "sslmode=maybe",
            ),
            (
                "postgres://u:hunter2@h/db?timeout=3",
                None,
                "unknown parameter `timeout`",
            ),
        ] {
            let message = error(url, password);
            assert!(message.contains(expected), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}
