//! What a datasource can fail with: [`DatasourceError`] (serving a statement, with a stable
//! class for logs and metrics), [`PoolError`] (building pools from the catalog), and the
//! mapping of a refused or failed outbound connection.
//!
//! Owns these classes. Must never carry a value, SQL text or a driver's message (which may
//! quote values) in an error; the full egress reason goes to the server log only.

use crate::egress;
use crate::vault::VaultError;

/// Why a datasource could not serve a statement. Messages never hold values or SQL text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasourceError {
    #[error("the datasource is unavailable")]
    Unavailable { class: &'static str },
    /// Every connection of the pool was in use for longer than the statement could wait
    /// (`pool_wait_ms`); the statement never started.
    #[error("all {pool_size} connections of the datasource are in use")]
    Busy { pool_size: usize },
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
    /// `code` is the database's own (PostgreSQL SQLSTATE, MySQL error number, SQLite
    /// extended result code); `meaning` says what it means in a few words, for the server
    /// log next to the request id ("" when the driver has no text for it).
    #[error("the database could not run the query")]
    Query {
        class: &'static str,
        code: String,
        meaning: &'static str,
    },
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
            DatasourceError::Busy { .. } => "busy",
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
    /// The vault's error is part of the message (it names no value), not a chained source,
    /// so it prints once.
    #[error("datasource `{datasource}`: secret `{field}`: {cause}")]
    Secret {
        datasource: String,
        field: &'static str,
        cause: VaultError,
    },
    #[error("datasource `{datasource}`: {message}")]
    Config { datasource: String, message: String },
    /// A secret reference that is not allowed, or whose variable or file cannot be read;
    /// the message names the reference, never what it holds.
    #[error("datasource `{datasource}`: secret `{field}`: {message}")]
    Reference {
        datasource: String,
        field: &'static str,
        message: String,
    },
    /// A TLS file that cannot be read or used, or a client key that does not fit.
    #[error("datasource `{datasource}`: {}: {cause}", .cause.field())]
    Tls {
        datasource: String,
        cause: super::tls::TlsSetupError,
    },
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
