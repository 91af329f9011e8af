//! The PostgreSQL connection pool: deadpool managing tokio-postgres clients that were
//! connected through the egress guard.
//!
//! Each new connection resolves the host, checks every address against the egress policy,
//! connects to exactly a checked address (from `SLUICE_EGRESS_BIND` when set) and only then
//! speaks the PostgreSQL protocol over that socket, so neither DNS rebinding nor a second
//! resolution can move it. Prepared statements are cached per connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use bytes::Bytes;

use super::decode::{ColumnDecoder, type_label};
use crate::datasource::ColumnInfo;
use crate::datasource::tls::DbTls;
use crate::egress::{self, EgressError, EgressPolicy};
use crate::spec::{ParamType, ScalarType};

/// A pooled connection and its prepared statements, keyed by SQL text (hashed with
/// foldhash, a few times faster than std's SipHash on a statement's text; the texts are
/// the catalog's, never a client's).
pub struct PgConnection {
    pub client: Client,
    statements: HashMap<Arc<str>, Prepared, foldhash::fast::RandomState>,
}

/// A prepared statement with what every execution of it needs, worked out once: a JSON
/// decoder per column and the `columns` member of the response, already serialised.
#[derive(Clone)]
pub struct Prepared {
    pub statement: Statement,
    /// The decoders and the columns JSON, or the first column no decoder supports
    /// (`(name, type label)`): such a statement stays prepared and answers with that error.
    pub columns: Result<PreparedColumns, UnsupportedColumn>,
}

/// A statement's column decoders and its `columns` JSON.
pub type PreparedColumns = (Arc<[ColumnDecoder]>, Bytes);
/// The name and type label of a column no decoder supports.
pub type UnsupportedColumn = (String, String);

impl Prepared {
    fn new(statement: Statement) -> Prepared {
        let columns = statement
            .columns()
            .iter()
            .map(|column| {
                ColumnDecoder::for_type(column.type_())
                    .ok_or_else(|| (column.name().to_string(), type_label(column.type_())))
            })
            .collect::<Result<Arc<[_]>, _>>()
            .map(|decoders| {
                let infos: Vec<ColumnInfo> = statement
                    .columns()
                    .iter()
                    .map(|column| ColumnInfo {
                        name: column.name().to_string(),
                        type_name: type_label(column.type_()),
                    })
                    .collect();
                (decoders, crate::datasource::columns_json(&infos))
            });
        Prepared { statement, columns }
    }
}

impl PgConnection {
    /// The prepared statement for `sql`, preparing it on first use on this connection.
    ///
    /// PostgreSQL infers each placeholder's type from where it stands. Where it cannot (a
    /// param used only in `$1 IS NULL`) it refuses the statement (SQLSTATE 42P18), and the
    /// statement is prepared again with the declared `types`. Only then: a declared type
    /// given up front would, for example, make `text` params unusable against enum columns,
    /// which PostgreSQL types from the column.
    pub async fn prepare_cached(
        &mut self,
        sql: &Arc<str>,
        types: &[ParamType],
    ) -> Result<Prepared, tokio_postgres::Error> {
        if let Some(prepared) = self.statements.get(sql) {
            return Ok(prepared.clone());
        }
        // Boxed: preparing is a round trip of its own, rare once the cache is warm, and its
        // future would otherwise enlarge every statement's.
        Box::pin(self.prepare_new(sql, types)).await
    }

    /// Prepares `sql` on this connection and caches it.
    async fn prepare_new(
        &mut self,
        sql: &Arc<str>,
        types: &[ParamType],
    ) -> Result<Prepared, tokio_postgres::Error> {
        let statement = match self.client.prepare(sql).await {
            Err(error)
                if error.code() == Some(&SqlState::INDETERMINATE_DATATYPE) && !types.is_empty() =>
            {
                let declared: Vec<Type> = types.iter().map(|ty| pg_type(*ty)).collect();
                self.client.prepare_typed(sql, &declared).await?
            }
            prepared => prepared?,
        };
        let prepared = Prepared::new(statement);
        self.statements.insert(sql.clone(), prepared.clone());
        Ok(prepared)
    }
}

/// The PostgreSQL type of a declared param type.
fn pg_type(ty: ParamType) -> Type {
    let (scalar, array) = match ty {
        ParamType::Scalar(scalar) => (scalar, false),
        ParamType::Array(scalar) => (scalar, true),
    };
    let (one, many) = match scalar {
        ScalarType::Int => (Type::INT4, Type::INT4_ARRAY),
        ScalarType::Bigint => (Type::INT8, Type::INT8_ARRAY),
        ScalarType::Float => (Type::FLOAT8, Type::FLOAT8_ARRAY),
        ScalarType::Numeric => (Type::NUMERIC, Type::NUMERIC_ARRAY),
        ScalarType::Bool => (Type::BOOL, Type::BOOL_ARRAY),
        ScalarType::Uuid => (Type::UUID, Type::UUID_ARRAY),
        ScalarType::Date => (Type::DATE, Type::DATE_ARRAY),
        ScalarType::Timestamp => (Type::TIMESTAMPTZ, Type::TIMESTAMPTZ_ARRAY),
        ScalarType::Json => (Type::JSONB, Type::JSONB_ARRAY),
        // Identifiers and keywords are written into the text, never bound; text is text.
        ScalarType::Text | ScalarType::Identifier | ScalarType::Keyword => {
            (Type::TEXT, Type::TEXT_ARRAY)
        }
    };
    if array { many } else { one }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PgConnectError {
    #[error(transparent)]
    Egress(#[from] EgressError),
    #[error("PostgreSQL connection: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("TLS set-up for `{host}`: {message}")]
    Tls { host: String, message: String },
}

/// Makes and checks connections for the pool.
pub struct PgManager {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) policy: EgressPolicy,
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls: Option<MakeRustlsConnect>,
    /// The TLS settings `tls` was made from (the datasource test speaks TLS itself).
    pub(crate) db_tls: DbTls,
}

pub type PgPool = managed::Pool<PgManager>;

/// The per-connection TLS connector made from [`MakeRustlsConnect`].
type TlsConnector = <MakeRustlsConnect as MakeTlsConnect<tokio::net::TcpStream>>::TlsConnect;

impl PgManager {
    async fn checked_socket(&self) -> Result<tokio::net::TcpStream, PgConnectError> {
        let addresses = egress::resolve_checked(&self.host, self.port, &self.policy).await?;
        Ok(egress::connect_checked(&addresses, &self.bind, self.connect_timeout).await?)
    }

    fn tls_for(&self) -> Result<Option<TlsConnector>, PgConnectError> {
        let Some(make) = &self.tls else {
            return Ok(None);
        };
        let mut make = make.clone();
        <MakeRustlsConnect as MakeTlsConnect<tokio::net::TcpStream>>::make_tls_connect(
            &mut make, &self.host,
        )
        .map(Some)
        .map_err(|e| PgConnectError::Tls {
            host: self.host.clone(),
            message: e.to_string(),
        })
    }

    /// A new connection: the socket through the egress checks, then TLS and start-up.
    async fn connect(&self) -> Result<PgConnection, PgConnectError> {
        let stream = self.checked_socket().await?;
        let client = match self.tls_for()? {
            None => {
                let (client, connection) = self
                    .config
                    .connect_raw(stream, tokio_postgres::NoTls)
                    .await?;
                tokio::spawn(drive(connection));
                client
            }
            Some(tls) => {
                let (client, connection) = self.config.connect_raw(stream, tls).await?;
                tokio::spawn(drive(connection));
                client
            }
        };
        Ok(PgConnection {
            client,
            statements: HashMap::default(),
        })
    }

    /// Asks the server to cancel what `connection` is running, over a socket that went
    /// through the same egress checks and source address as the connection itself.
    pub async fn cancel(&self, cancel: tokio_postgres::CancelToken) -> Result<(), PgConnectError> {
        let stream = self.checked_socket().await?;
        match self.tls_for()? {
            None => {
                cancel
                    .cancel_query_raw(stream, tokio_postgres::NoTls)
                    .await?
            }
            Some(tls) => cancel.cancel_query_raw(stream, tls).await?,
        }
        Ok(())
    }
}

impl managed::Manager for PgManager {
    type Type = PgConnection;
    type Error = PgConnectError;

    async fn create(&self) -> Result<PgConnection, PgConnectError> {
        // Boxed: connecting (egress checks, TLS, start-up) is a large future, and deadpool
        // holds this one inside the future of every `get`, which each statement builds and
        // moves whether or not it connects.
        Box::pin(self.connect()).await
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PgConnectError> {
        if connection.client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if idle_too_long(metrics) {
            return Err(RecycleError::message("idle too long"));
        }
        Ok(())
    }
}

/// How long a pooled connection may go unused before it is replaced rather than handed out.
/// The pool hands out the connection used last, so under a light load the others can sit
/// idle for hours, long enough for a firewall or NAT in between to drop them silently
/// (these sockets carry no TCP keepalive); the next burst would wait on them until its
/// statements time out.
const IDLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a connection was last handed out (or made) more than [`IDLE_LIMIT`] ago.
fn idle_too_long(metrics: &Metrics) -> bool {
    metrics.last_used() > IDLE_LIMIT
}

async fn drive<F>(connection: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if connection.await.is_err() {
        tracing::debug!("PostgreSQL connection closed with an error");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn metrics(created_ago: Duration, used_ago: Option<Duration>) -> Metrics {
        let now = Instant::now();
        Metrics {
            created: now - created_ago,
            recycled: used_ago.map(|ago| now - ago),
            recycle_count: 0,
        }
    }

    #[test]
    fn a_connection_idle_past_the_limit_is_replaced() {
        let minute = Duration::from_secs(60);
        // Made or last handed out recently: kept.
        assert!(!idle_too_long(&metrics(Duration::from_secs(5), None)));
        assert!(!idle_too_long(&metrics(
            10 * minute,
            Some(Duration::from_secs(5))
        )));
        // Unused for longer than the limit, since it was made or last handed out: replaced.
        assert!(idle_too_long(&metrics(2 * minute, None)));
        assert!(idle_too_long(&metrics(10 * minute, Some(2 * minute))));
    }
}
