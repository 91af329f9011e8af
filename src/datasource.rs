//! Datasources: connection pools and query execution for PostgreSQL, MySQL/MariaDB, SQLite
//! and HTTP APIs.
//!
//! This is the only module that talks to databases and upstream APIs, over connections the
//! egress guard opened. It knows nothing about HTTP:
//! it takes a rendered statement (fixed SQL text plus positional arguments) and produces an
//! [`Execution`]: the result columns, then a stream of [`Frame`]s carrying rows already encoded
//! as JSON arrays. Secrets arrive already opened by the vault, held in
//! [`SecretString`](crate::vault::SecretString), and are handed to the driver only when a
//! connection is made.
//!
//! Errors are classified into [`DatasourceError`] variants; driver messages (which can contain
//! values) never leave this module, and only their class and SQLSTATE-like code are logged.
//!
//! One file per concern: `stream` (frames, the execution, the inline driver: see there who
//! drives a producer and what happens when the request goes away), `slots` (how many
//! statements may hold a connection at once, and how long one waits for its turn), `pools`
//! (building and holding the pools of a catalog), `errors` (the error classes); the drivers
//! are `postgres`, `mysql`, `sqlite` and `http`. This file keeps [`Datasource`], the one
//! entry that runs a statement.

pub mod http;
pub mod json;
pub mod mysql;
pub mod postgres;
pub mod probe;
pub mod sqlite;
pub mod tls;

mod errors;
mod pools;
mod slots;
mod stream;

use tokio::sync::{mpsc, oneshot};

pub(crate) use errors::classify_egress;
pub use errors::{DatasourceError, PoolError};
pub use pools::{PoolDefaults, Pools, open_secret};
pub(crate) use pools::{egress_policy, slots_for};
pub use slots::{DEFAULT_POOL_WAIT, PoolUse};
pub(crate) use slots::{Slot, Slots};
pub use stream::{ColumnInfo, ExecOptions, Execution, FRAME_BYTES, Frame, Summary};
pub(crate) use stream::{
    Driver, FRAME_QUEUE, Producer, ProducerFuture, Streamed, columns_json, inline_producer,
};

use crate::statement::{Dialect, RenderedSql, ResultColumn};

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

    /// How its connection slots are used now; `None` for HTTP APIs, which have none.
    pub fn pool_use(&self) -> Option<PoolUse> {
        match self {
            Datasource::Postgres(source) => Some(source.slots().usage()),
            Datasource::MySql(source) => Some(source.slots().usage()),
            Datasource::Sqlite(source) => Some(source.slots().usage()),
            Datasource::Http(_) => None,
        }
    }

    /// Sends a rendered HTTP request (HTTP datasources only).
    pub async fn send_http(
        &self,
        request: crate::statement::RenderedHttp,
    ) -> Result<http::HttpReply, DatasourceError> {
        match self {
            Datasource::Http(source) => source.send(request).await,
            _ => Err(DatasourceError::Internal { class: "not_http" }),
        }
    }

    /// Runs a statement. Waits for a connection slot first (at most the datasource's
    /// `pool_wait_ms` and the statement's timeout: [`DatasourceError::Busy`] past that), then
    /// returns once the columns are known (or the statement failed); rows then arrive
    /// through [`Execution::next_frame`]. A PostgreSQL producer is driven by the caller's
    /// task meanwhile, and travels on in the [`Execution`]. Dropping the execution (or this
    /// future) cancels a statement still running.
    pub async fn execute(
        &self,
        statement: RenderedSql,
        options: ExecOptions,
    ) -> Result<Execution, DatasourceError> {
        let slots = match self {
            Datasource::Postgres(source) => source.slots(),
            Datasource::MySql(source) => source.slots(),
            Datasource::Sqlite(source) => source.slots(),
            Datasource::Http(_) => return Err(DatasourceError::Internal { class: "not_sql" }),
        };
        let slot = slots.acquire(options.timeout).await?;
        let (started_tx, started_rx) = oneshot::channel();
        let (frames_tx, frames_rx) = mpsc::channel(FRAME_QUEUE);
        let producer = Producer {
            started: Some(started_tx),
            frames: frames_tx,
            slot: Some(slot),
        };
        let mut driver = match self {
            Datasource::Postgres(source) => {
                Driver::inline(source.producer(statement, options, producer))
            }
            Datasource::MySql(source) => {
                // Boxed: mysql_async's connection set-up is a large future, and held inline
                // it would enlarge this one (and those that hold it) for every datasource.
                Box::pin(source.start(statement, options, producer)).await;
                Driver::none()
            }
            Datasource::Sqlite(source) => {
                source.spawn(statement, options, producer);
                Driver::none()
            }
            Datasource::Http(_) => {
                return Err(DatasourceError::Internal { class: "not_sql" });
            }
        };
        match driver.drive_while(started_rx).await {
            Ok(Ok(columns_json)) => Ok(Execution {
                columns_json,
                frames: frames_rx,
                driver,
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(DatasourceError::Internal {
                class: "producer_gone",
            }),
        }
    }

    /// Describes SQL statements without running them (the per-app OpenAPI document's
    /// result columns): each is prepared on one connection and its result columns read.
    /// The outer error is the connection's; an inner one, that statement's. HTTP APIs have
    /// no columns to describe ([`DatasourceError::Internal`]).
    pub async fn describe(
        &self,
        statements: Vec<RenderedSql>,
    ) -> Result<Vec<Result<Vec<ResultColumn>, DatasourceError>>, DatasourceError> {
        match self {
            Datasource::Postgres(source) => source.describe(&statements).await,
            Datasource::MySql(source) => source.describe(&statements).await,
            Datasource::Sqlite(source) => source.describe(statements).await,
            Datasource::Http(_) => Err(DatasourceError::Internal { class: "not_sql" }),
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
