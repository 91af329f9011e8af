//! Datasources: connection pools and query execution for PostgreSQL, MySQL/MariaDB and SQLite.
//!
//! This is the only module that opens connections to databases. It knows nothing about HTTP:
//! it takes a rendered statement (fixed SQL text plus positional arguments) and produces an
//! [`Execution`]: the result columns, then a stream of [`Frame`]s carrying rows already encoded
//! as JSON arrays. Secrets arrive already opened by the vault, held in
//! [`SecretString`](crate::vault::SecretString), and are handed to the driver only when a
//! connection is made.
//!
//! Errors are classified into [`DatasourceError`] variants; driver messages (which can contain
//! values) never leave this module, and only their class and SQLSTATE-like code are logged.

pub mod egress;
pub mod http;
pub mod json;
pub mod mysql;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::catalog::spec::{CatalogSpec, DatasourceSpec};
use crate::catalog::template::{Dialect, RenderedSql};
use crate::vault::{InstanceKey, Owner, SecretString, VaultError};

/// How many encoded bytes a producer gathers before handing a frame to the response.
pub const FRAME_BYTES: usize = 32 * 1024;
/// Frames buffered between a producer and the response body; bounds memory per request.
pub(crate) const FRAME_QUEUE: usize = 4;

/// A result column: its name and the database's name for its type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Limits for one execution.
#[derive(Debug, Clone, Copy)]
pub struct ExecOptions {
    /// The whole execution (connect, run, stream) must finish within this.
    pub timeout: Duration,
    /// Stop after this many rows and report the result as truncated.
    pub max_rows: u64,
}

/// A piece of a running result.
#[derive(Debug)]
pub enum Frame {
    /// Rows encoded as JSON arrays separated by commas. Every frame after the first row
    /// starts with a comma, so frames concatenate into the body of a JSON array.
    Rows(Bytes),
    /// The statement finished.
    Done(Summary),
    /// The statement failed after rows had started.
    Failed(DatasourceError),
}

/// How a finished statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub row_count: u64,
    /// Rows changed, for statements that return no columns.
    pub rows_affected: Option<u64>,
    /// The `max_rows` cap cut the result short.
    pub truncated: bool,
}

/// A started statement: columns are known, rows follow on `frames`.
#[derive(Debug)]
pub struct Execution {
    pub columns: Vec<ColumnInfo>,
    pub frames: mpsc::Receiver<Frame>,
}

/// Why a datasource could not serve a statement. Messages never hold values or SQL text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasourceError {
    #[error("the datasource is unavailable")]
    Unavailable { class: &'static str },
    #[error("the egress policy refused the connection")]
    EgressRefused,
    #[error("the upstream response is larger than the datasource allows")]
    UpstreamTooLarge,
    #[error("the query ran past its timeout")]
    Timeout,
    #[error("the change conflicts with a constraint ({kind})")]
    Constraint { kind: &'static str },
    #[error("a value was rejected by the database ({class})")]
    InvalidData { class: &'static str },
    #[error("the value at parameter position {position} does not fit the database type {db_type}")]
    Bind { position: usize, db_type: String },
    #[error(
        "column `{column}` has type {db_type}, which has no JSON mapping; cast it in the query"
    )]
    UnsupportedColumn { column: String, db_type: String },
    #[error("the database could not run the query")]
    Query { class: &'static str, code: String },
    #[error("the database is busy; retry")]
    Retryable { code: String },
    #[error("internal datasource error")]
    Internal { class: &'static str },
}

impl DatasourceError {
    /// A stable label for logs and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            DatasourceError::Unavailable { class } => class,
            DatasourceError::Timeout => "timeout",
            DatasourceError::EgressRefused => "egress_refused",
            DatasourceError::UpstreamTooLarge => "upstream_too_large",
            DatasourceError::Constraint { .. } => "constraint",
            DatasourceError::InvalidData { class } => class,
            DatasourceError::Bind { .. } => "bind",
            DatasourceError::UnsupportedColumn { .. } => "unsupported_column",
            DatasourceError::Query { class, .. } => class,
            DatasourceError::Retryable { .. } => "retryable",
            DatasourceError::Internal { class } => class,
        }
    }
}

/// Failures while building pools from the catalog.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("datasource `{datasource}`: secret `{field}`: {source}")]
    Secret {
        datasource: String,
        field: &'static str,
        #[source]
        source: VaultError,
    },
    #[error("datasource `{datasource}`: {message}")]
    Config { datasource: String, message: String },
}

/// Instance-wide settings that apply where a datasource spec says nothing.
#[derive(Debug, Clone)]
pub struct PoolDefaults {
    pub pool_size: usize,
    pub connect_timeout: Duration,
    /// Non-public networks every datasource may reach (`SLUICE_EGRESS_ALLOW`).
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Source addresses of outbound connections (`SLUICE_EGRESS_BIND`).
    pub egress_bind: Vec<std::net::IpAddr>,
}

impl Default for PoolDefaults {
    fn default() -> Self {
        PoolDefaults {
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
            egress_allow: Vec::new(),
            egress_bind: Vec::new(),
        }
    }
}

/// The egress policy of one datasource: the instance allow list plus its own.
pub(crate) fn egress_policy(
    name: &str,
    datasource_allow: &[String],
    defaults: &PoolDefaults,
) -> Result<egress::EgressPolicy, PoolError> {
    let own =
        egress::parse_cidr_list(&datasource_allow.join(",")).map_err(|e| PoolError::Config {
            datasource: name.to_string(),
            message: format!("egress_allow: {e}"),
        })?;
    Ok(egress::EgressPolicy::new(&defaults.egress_allow, &own))
}

/// Maps a refused or failed outbound connection. The full reason (host, address, range)
/// goes to the server log for the admin; the client only learns the class.
pub(crate) fn classify_egress(name: &str, error: &egress::EgressError) -> DatasourceError {
    use egress::EgressError as E;
    match error {
        E::Blocked { .. } | E::MetadataHost { .. } | E::InvalidHost { .. } => {
            tracing::warn!(datasource = %name, error = %error, "Egress policy refused a connection");
            DatasourceError::EgressRefused
        }
        _ => {
            tracing::warn!(datasource = %name, error = %error, class = error.class(), "Outbound connection failed");
            DatasourceError::Unavailable {
                class: error.class(),
            }
        }
    }
}

/// One datasource's pool (or HTTP client). Held behind an `Arc` once per catalog, so the
/// size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Datasource {
    Postgres(postgres::PostgresSource),
    MySql(mysql::MySqlSource),
    Sqlite(sqlite::SqliteSource),
    Http(http::HttpSource),
}

impl Datasource {
    /// The SQL dialect, `None` for HTTP APIs.
    pub fn dialect(&self) -> Option<Dialect> {
        match self {
            Datasource::Postgres(_) => Some(Dialect::Postgres),
            Datasource::MySql(_) => Some(Dialect::MySql),
            Datasource::Sqlite(_) => Some(Dialect::Sqlite),
            Datasource::Http(_) => None,
        }
    }

    /// Sends a rendered HTTP request (HTTP datasources only).
    pub async fn send_http(
        &self,
        request: crate::catalog::http_template::RenderedHttp,
    ) -> Result<http::HttpReply, DatasourceError> {
        match self {
            Datasource::Http(source) => source.send(request).await,
            _ => Err(DatasourceError::Internal { class: "not_http" }),
        }
    }

    /// Runs a statement. Returns once the columns are known (or the statement failed);
    /// rows then arrive on [`Execution::frames`].
    pub async fn execute(
        &self,
        statement: RenderedSql,
        options: ExecOptions,
    ) -> Result<Execution, DatasourceError> {
        let (started_tx, started_rx) = oneshot::channel();
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        let producer = Producer {
            started: Some(started_tx),
            frames: frames_tx,
        };
        match self {
            Datasource::Postgres(source) => source.spawn(statement, options, producer),
            Datasource::MySql(source) => source.start(statement, options, producer).await,
            Datasource::Sqlite(source) => source.spawn(statement, options, producer),
            Datasource::Http(_) => {
                return Err(DatasourceError::Internal { class: "not_sql" });
            }
        }
        match started_rx.await {
            Ok(Ok(columns)) => Ok(Execution {
                columns,
                frames: frames_rx,
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(DatasourceError::Internal {
                class: "producer_gone",
            }),
        }
    }

    /// Closes idle connections (used on shutdown and catalog reload).
    pub fn close(&self) {
        match self {
            Datasource::Postgres(source) => source.close(),
            Datasource::MySql(source) => source.close(),
            Datasource::Sqlite(source) => source.close(),
            Datasource::Http(_) => {}
        }
    }
}

/// The sending half a driver task writes to: first the columns (or an error), then frames.
pub(crate) struct Producer {
    started: Option<oneshot::Sender<Result<Vec<ColumnInfo>, DatasourceError>>>,
    frames: mpsc::Sender<Frame>,
}

impl Producer {
    /// Reports the columns; false when the caller has gone away.
    pub(crate) fn start(&mut self, columns: Vec<ColumnInfo>) -> bool {
        match self.started.take() {
            Some(tx) => tx.send(Ok(columns)).is_ok(),
            None => true,
        }
    }

    /// Ends the execution with an error, before or after rows started.
    pub(crate) async fn fail(mut self, error: DatasourceError) {
        match self.started.take() {
            Some(tx) => {
                let _ = tx.send(Err(error));
            }
            None => {
                let _ = self.frames.send(Frame::Failed(error)).await;
            }
        }
    }

    /// The blocking-thread twin of [`Producer::fail`] (SQLite runs on blocking threads).
    pub(crate) fn fail_blocking(mut self, error: DatasourceError) {
        match self.started.take() {
            Some(tx) => {
                let _ = tx.send(Err(error));
            }
            None => {
                let _ = self.frames.blocking_send(Frame::Failed(error));
            }
        }
    }

    pub(crate) fn frames(&self) -> &mpsc::Sender<Frame> {
        &self.frames
    }
}

/// All datasources of a catalog, keyed by name, with secrets opened once here.
#[derive(Default, Clone)]
pub struct Pools {
    by_name: HashMap<String, Arc<Datasource>>,
}

impl Pools {
    /// Builds a pool per datasource. Connections open lazily, on first use.
    pub fn build(
        catalog: &CatalogSpec,
        key: &InstanceKey,
        defaults: &PoolDefaults,
    ) -> Result<Pools, PoolError> {
        let mut by_name = HashMap::new();
        for (name, spec) in &catalog.datasources {
            let source = match spec {
                DatasourceSpec::Postgres(net) => {
                    let password = open_secret(key, name, "password", net.password.as_deref())?;
                    Datasource::Postgres(postgres::PostgresSource::new(
                        name, net, password, defaults,
                    )?)
                }
                DatasourceSpec::Mysql(net) => {
                    let password = open_secret(key, name, "password", net.password.as_deref())?;
                    Datasource::MySql(mysql::MySqlSource::new(name, net, password, defaults)?)
                }
                DatasourceSpec::Sqlite(lite) => {
                    Datasource::Sqlite(sqlite::SqliteSource::new(name, lite, defaults)?)
                }
                DatasourceSpec::Http(http_spec) => {
                    let mut secret = None;
                    for (field, sealed) in crate::catalog::compile::secret_fields(spec) {
                        secret = open_secret(key, name, field, sealed)?;
                    }
                    Datasource::Http(http::HttpSource::new(name, http_spec, secret, defaults)?)
                }
            };
            by_name.insert(name.clone(), Arc::new(source));
        }
        Ok(Pools { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Datasource>> {
        self.by_name.get(name)
    }

    pub fn close_all(&self) {
        for source in self.by_name.values() {
            source.close();
        }
    }
}

fn open_secret(
    key: &InstanceKey,
    datasource: &str,
    field: &'static str,
    sealed: Option<&str>,
) -> Result<Option<SecretString>, PoolError> {
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let secret_error = |source| PoolError::Secret {
        datasource: datasource.to_string(),
        field,
        source,
    };
    let owner = Owner::datasource(datasource, field).map_err(secret_error)?;
    key.open(&owner, sealed).map(Some).map_err(secret_error)
}

/// Whether `host` names this machine (TLS is then off by default). Every spelling of a
/// loopback address counts (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`), read the way the
/// egress guard reads it.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    match egress::parse_host(host) {
        Ok(egress::HostSpec::Name(name)) => name == "localhost",
        Ok(egress::HostSpec::Ip(ip)) => match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        },
        Err(_) => false,
    }
}
