//! PostgreSQL datasource: a deadpool of tokio-postgres connections, prepared statements
//! cached per connection, rows encoded straight from the binary protocol into JSON.
//!
//! Arguments are converted to whatever type PostgreSQL inferred for each `$n` (see
//! [`PgArg`]); a value that does not fit is a [`DatasourceError::Bind`], never a cast in SQL.
//!
//! A statement's producer (`run`) is not spawned here: [`PostgresSource::producer`] returns
//! it as a future, which the request's task drives inline until the result streams (see
//! "Who drives a producer" in the [parent module](super)). `run` owns every outcome either
//! way: the timeout, and the request going away, both cancel the statement on the server
//! (a cancel request over its own egress-checked socket) and discard its connection.

mod decode;
mod encode;
mod pool;

use std::sync::Arc;

use futures_util::{StreamExt, pin_mut};
use rustls::ClientConfig;
use tokio::time::Instant;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls::DbTls;
use super::{
    DatasourceError, ExecOptions, FRAME_BYTES, Frame, PoolDefaults, PoolError, Producer,
    ProducerFuture, Slots, Streamed, Summary,
};
use crate::spec::NetworkDatabaseSpec;
use crate::statement::{ColumnJson, RenderedSql, ResultColumn};
use crate::vault::SecretString;

pub use decode::ColumnDecoder;
pub use encode::{BindMismatch, PgArg};
pub use pool::{PgConnectError, PgConnection, PgManager, PgPool};

/// A pool for one PostgreSQL datasource.
pub struct PostgresSource {
    name: Arc<str>,
    pool: PgPool,
    slots: Slots,
}

impl PostgresSource {
    pub fn new(
        name: &str,
        spec: &NetworkDatabaseSpec,
        password: Option<SecretString>,
        tls: DbTls,
        defaults: &PoolDefaults,
    ) -> Result<PostgresSource, PoolError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&spec.host)
            .port(spec.port.unwrap_or(5432))
            .dbname(&spec.database)
            .user(&spec.user)
            .application_name("sluice")
            .connect_timeout(
                spec.connect_timeout_ms
                    .map(std::time::Duration::from_millis)
                    .unwrap_or(defaults.connect_timeout),
            );
        if let Some(password) = &password {
            // tokio-postgres keeps its own copy for the lifetime of the pool; it is sent only
            // when the server asks for it during connection start-up.
            config.password(password.expose());
        }
        // With TLS on, the connection is TLS or nothing: tokio-postgres's default (`prefer`)
        // would carry on in plain text when the server (or someone in between) declines TLS.
        config.ssl_mode(match tls.config {
            Some(_) => SslMode::Require,
            None => SslMode::Disable,
        });
        let manager = PgManager {
            config,
            host: spec.host.clone(),
            port: spec.port.unwrap_or(5432),
            policy: super::egress_policy(name, &spec.egress_allow, defaults)?,
            bind: defaults.egress_bind.clone(),
            connect_timeout: spec
                .connect_timeout_ms
                .map(std::time::Duration::from_millis)
                .unwrap_or(defaults.connect_timeout),
            tls: tls
                .config
                .as_ref()
                .map(|config| MakeRustlsConnect::new(ClientConfig::clone(config))),
            db_tls: tls,
        };
        let pool = PgPool::builder(manager)
            .max_size(spec.pool_size.unwrap_or(defaults.pool_size))
            // The connection used last is the next one handed out: under a load that needs
            // fewer connections than the pool holds, the same few backends serve it, their
            // caches warm, instead of every idle backend in turn being woken.
            .queue_mode(deadpool::managed::QueueMode::Lifo)
            .build()
            .map_err(|e| PoolError::Config {
                datasource: name.to_string(),
                message: e.to_string(),
            })?;
        Ok(PostgresSource {
            name: name.into(),
            pool,
            slots: super::slots_for(spec.pool_size, spec.pool_wait_ms, defaults),
        })
    }

    pub(super) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// How connections are made (the datasource test makes its own the same way).
    pub(crate) fn manager(&self) -> &PgManager {
        self.pool.manager()
    }

    /// The producer of `statement`, boxed and not yet started: nothing happens until it is
    /// polled.
    pub(super) fn producer(
        &self,
        statement: RenderedSql,
        options: ExecOptions,
        producer: Producer,
    ) -> ProducerFuture {
        let pool = self.pool.clone();
        let name = self.name.clone();
        super::inline_producer(|| run(pool, name, statement, options, producer))
    }

    /// Describes `statements` on one pooled connection: each is prepared (which also warms
    /// that connection's statement cache) and its result columns read, without running it.
    /// The outer error is the connection's; an inner one, that statement's.
    pub(super) async fn describe(
        &self,
        statements: &[RenderedSql],
    ) -> Result<Vec<Result<Vec<ResultColumn>, DatasourceError>>, DatasourceError> {
        let mut connection = self
            .pool
            .get()
            .await
            .map_err(|error| classify_pool(&self.name, error))?;
        let mut described = Vec::with_capacity(statements.len());
        for statement in statements {
            let prepared = connection
                .prepare_cached(&statement.sql, &statement.types)
                .await
                .map_err(|e| classify(&self.name, &e));
            described.push(prepared.map(|prepared| {
                prepared
                    .statement
                    .columns()
                    .iter()
                    .map(|column| ResultColumn {
                        name: column.name().to_string(),
                        db_type: decode::type_label(column.type_()),
                        json: ColumnDecoder::for_type(column.type_())
                            .map_or(ColumnJson::Unsupported, |decoder| decoder.json()),
                    })
                    .collect()
            }));
        }
        Ok(described)
    }

    pub(super) fn close(&self) {
        self.pool.close();
    }
}

/// Runs one statement to its end: connection, columns, frames, and on timeout or when the
/// request goes away the server-side cancel. Driven inline by the request or on its own
/// task; it must not be dropped before it finishes (the request's [`Driver`](super::Driver)
/// spawns it instead).
async fn run(
    pool: PgPool,
    name: Arc<str>,
    statement: RenderedSql,
    options: ExecOptions,
    mut producer: Producer,
) {
    // One timer for the whole run (the wait for a connection and the statement): one
    // registration with the runtime's timer per statement, not one per step. Exempt from
    // the runtime's cooperative budget, as `timeout` makes its timer: a statement streaming
    // frames as fast as they are read could spend the budget in every poll, and a budgeted
    // timer would then never be seen to expire.
    let deadline =
        tokio::task::unconstrained(tokio::time::sleep_until(Instant::now() + options.timeout));
    let gone = producer.gone();
    tokio::pin!(deadline, gone);
    let mut connection = tokio::select! {
        biased;
        got = pool.get() => match got {
            Err(error) => {
                let error = classify_pool(&name, error);
                return producer.fail(error).await;
            }
            Ok(connection) => connection,
        },
        () = &mut deadline => return producer.fail(DatasourceError::Timeout).await,
        // Nothing started yet: nothing to cancel.
        () = &mut gone => return,
    };
    let secured = options.row_security.is_some();
    let outcome = tokio::select! {
        biased;
        outcome = stream(&mut connection, &name, statement, options, &mut producer) => Some(outcome),
        () = &mut deadline => None,
        () = &mut gone => Some(Ok(Streamed::Abandoned)),
    };
    let failure = match outcome {
        Some(Ok(Streamed::Finished)) => return,
        Some(Err(error)) => {
            // Under row security the connection is inside a transaction (its role and
            // claims set): end it before the connection goes back to the pool, or do not
            // put it back at all.
            if secured && let Err(rollback) = connection.client.batch_execute("ROLLBACK").await {
                tracing::warn!(
                    datasource = %name,
                    error_kind = error_kind(&rollback),
                    "Rolling back a row-security transaction failed; dropping its connection"
                );
                drop(deadpool::managed::Object::take(connection));
            }
            return producer.fail(error).await;
        }
        Some(Ok(Streamed::Abandoned)) => {
            tracing::debug!(datasource = %name, "Cancelling a statement: its request went away");
            None
        }
        // The deadline passed.
        None => Some(DatasourceError::Timeout),
    };
    // Stop the server-side work too, and do not return a connection in an unknown state to
    // the pool. The slot stays held until the cancel has been sent.
    let cancel = connection.client.cancel_token();
    drop(deadpool::managed::Object::take(connection));
    // Boxed: the cancel opens its own connection, a large future that would otherwise
    // enlarge this one (moved whole for every statement) for a rare path.
    if let Err(error) = Box::pin(pool.manager().cancel(cancel)).await {
        tracing::warn!(datasource = %name, error = %error, "Cancelling a query failed");
    }
    if let Some(error) = failure {
        producer.fail(error).await;
    }
}

async fn stream(
    connection: &mut PgConnection,
    name: &str,
    statement: RenderedSql,
    options: ExecOptions,
    producer: &mut Producer,
) -> Result<Streamed, DatasourceError> {
    if let Some(context) = &options.row_security {
        // Boxed, like the NDJSON read below: only row-security queries take this path.
        Box::pin(begin_secured(connection, name, context)).await?;
    }
    let prepared = connection
        .prepare_cached(&statement.sql, &statement.types)
        .await
        .map_err(|e| classify(name, &e))?;
    let (decoders, columns_json) = prepared
        .columns
        .map_err(|(column, db_type)| DatasourceError::UnsupportedColumn { column, db_type })?;
    let args: Vec<PgArg<'_>> = statement
        .args
        .iter()
        .enumerate()
        .map(|(index, value)| PgArg::new(index + 1, value))
        .collect();
    // Row by row (NDJSON): PostgreSQL sends a result's rows only when its 8 KiB output
    // buffer fills or the statement ends, so small rows of a slow query would all arrive at
    // the end. A portal read in growing batches makes the server send each batch at once.
    if options.frame_bytes < FRAME_BYTES && options.row_security.is_none() && !decoders.is_empty() {
        // Boxed, so that its state does not enlarge this future (moved whole for every
        // statement) for the rarer NDJSON reads.
        return Box::pin(stream_portal(
            connection,
            name,
            &prepared.statement,
            &args,
            &decoders,
            columns_json,
            &options,
            producer,
        ))
        .await;
    }
    let mut buffer = Vec::with_capacity(4096);
    let mut summary = Summary::default();
    // The rows stream lives in this block: under row security the COMMIT below must not be
    // sent while a truncated result still has rows coming to it.
    {
        let rows = connection
            .client
            .query_raw(
                &prepared.statement,
                args.iter().map(|arg| arg as &dyn ToSql),
            )
            .await
            .map_err(|e| classify(name, &e))?;
        let returns_rows = !decoders.is_empty();
        pin_mut!(rows);
        // The statement runs when the stream is first polled: wait for its first row (or
        // its end) before reporting the columns, so an error in it (a constraint, a bad
        // value) still gets its own status instead of a cut 200.
        let mut next = rows.next().await;
        if let Some(Err(error)) = &next {
            return Err(classify(name, error));
        }
        if !producer.start(columns_json) {
            return Ok(Streamed::Abandoned);
        }
        while let Some(row) = next.take() {
            let row = row.map_err(|e| classify(name, &e))?;
            if summary.row_count == options.max_rows {
                summary.truncated = true;
                break;
            }
            if summary.row_count > 0 {
                buffer.push(b',');
            }
            decode::write_row(&row, &decoders, &mut buffer)?;
            summary.row_count += 1;
            if buffer.len() >= options.frame_bytes {
                let frame = Frame::Rows(std::mem::take(&mut buffer).into());
                if producer.frames().send(frame).await.is_err() {
                    return Ok(Streamed::Abandoned);
                }
            }
            next = rows.next().await;
        }
        if !returns_rows {
            summary.rows_affected = rows.rows_affected();
        }
    }
    if options.row_security.is_some() {
        // Committed before the result is called complete: a failed COMMIT (a deferred
        // constraint) ends the body with an error, not with `Done`.
        connection
            .client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| classify(name, &e))?;
    }
    if !buffer.is_empty() {
        let _ = producer.frames().send(Frame::Rows(buffer.into())).await;
    }
    let _ = producer.frames().send(Frame::Done(summary)).await;
    Ok(Streamed::Finished)
}

/// Most rows one portal read asks for; reads start at one row and double up to this.
const PORTAL_BATCH_MAX: i32 = 1024;

/// [`stream`] for a result wanted row by row: the statement runs as a portal in a
/// transaction, read with `Execute` limits of 1, 2, 4, ... rows (up to
/// [`PORTAL_BATCH_MAX`]), and each row is handed over as its own frame. The first rows of a
/// slow query thus arrive as they are produced, and a long result costs a round trip per
/// batch, not per row. The transaction commits once the rows are read (a write with
/// `RETURNING` keeps its effect, as in one statement); on an error it is rolled back.
#[allow(clippy::too_many_arguments)]
async fn stream_portal(
    connection: &mut PgConnection,
    name: &str,
    statement: &tokio_postgres::Statement,
    args: &[PgArg<'_>],
    decoders: &[ColumnDecoder],
    columns_json: bytes::Bytes,
    options: &ExecOptions,
    producer: &mut Producer,
) -> Result<Streamed, DatasourceError> {
    let transaction = connection
        .client
        .transaction()
        .await
        .map_err(|e| classify(name, &e))?;
    let portal = transaction
        .bind_raw(statement, args.iter().map(|arg| arg as &dyn ToSql))
        .await
        .map_err(|e| classify(name, &e))?;
    let mut summary = Summary::default();
    let mut batch = 1;
    let mut started = false;
    'reads: loop {
        let rows = transaction
            .query_portal_raw(&portal, batch)
            .await
            .map_err(|e| classify(name, &e))?;
        pin_mut!(rows);
        let mut read = 0;
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| classify(name, &e))?;
            // As in `stream`: the columns are reported once the first row (or the end) is
            // known, so an error at once keeps its own status.
            if !started {
                started = true;
                if !producer.start(columns_json.clone()) {
                    return Ok(Streamed::Abandoned);
                }
            }
            read += 1;
            if summary.row_count == options.max_rows {
                summary.truncated = true;
                break 'reads;
            }
            let mut buffer = Vec::with_capacity(256);
            if summary.row_count > 0 {
                buffer.push(b',');
            }
            decode::write_row(&row, decoders, &mut buffer)?;
            summary.row_count += 1;
            if producer
                .frames()
                .send(Frame::Rows(buffer.into()))
                .await
                .is_err()
            {
                return Ok(Streamed::Abandoned);
            }
        }
        // A read that returned fewer rows than asked for reached the end of the portal.
        if read < batch {
            break;
        }
        batch = (batch * 2).min(PORTAL_BATCH_MAX);
    }
    if !started && !producer.start(columns_json) {
        return Ok(Streamed::Abandoned);
    }
    transaction.commit().await.map_err(|e| classify(name, &e))?;
    let _ = producer.frames().send(Frame::Done(summary)).await;
    Ok(Streamed::Finished)
}

/// Opens a row-security transaction on `connection`: `BEGIN; SET LOCAL ROLE "<role>"` (a
/// role name compiled from the catalog) and the caller's claims as bound values of
/// `set_config(name, $n, true)`, both sent before either answer is read. Everything set
/// here ends with the transaction.
async fn begin_secured(
    connection: &mut PgConnection,
    name: &str,
    context: &crate::statement::RowContext,
) -> Result<(), DatasourceError> {
    static CLAIMS_SQL: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from(crate::statement::SET_CLAIMS_SQL));
    let prepared = connection
        .prepare_cached(&CLAIMS_SQL, &[])
        .await
        .map_err(|e| classify(name, &e))?;
    let claims = &context.claims;
    let values: [&(dyn ToSql + Sync); 4] = [&claims.json, &claims.sub, &claims.role, &claims.email];
    let (begun, set) = tokio::join!(
        connection.client.batch_execute(&context.begin),
        connection.client.query(&prepared.statement, &values),
    );
    begun.map_err(|e| classify(name, &e))?;
    set.map_err(|e| classify(name, &e))?;
    Ok(())
}

fn classify_pool(
    name: &str,
    error: deadpool::managed::PoolError<PgConnectError>,
) -> DatasourceError {
    match error {
        deadpool::managed::PoolError::Backend(PgConnectError::Postgres(error)) => {
            classify(name, &error)
        }
        deadpool::managed::PoolError::Backend(PgConnectError::Egress(error)) => {
            super::classify_egress(name, &error)
        }
        deadpool::managed::PoolError::Backend(error @ PgConnectError::Tls { .. }) => {
            tracing::warn!(datasource = %name, error = %error, "PostgreSQL TLS set-up failed");
            DatasourceError::Unavailable { class: "tls" }
        }
        other => {
            tracing::warn!(datasource = %name, error = %other, "PostgreSQL pool failure");
            DatasourceError::Unavailable { class: "pool" }
        }
    }
}

/// Maps a driver error to a class. Only the SQLSTATE and constraint name are logged: the
/// server's message and detail can quote row values.
pub(crate) fn classify(name: &str, error: &tokio_postgres::Error) -> DatasourceError {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        tracing::warn!(
            datasource = %name,
            sqlstate = code.code(),
            constraint = db.constraint().unwrap_or(""),
            "PostgreSQL refused the query"
        );
        if code.code().starts_with("28") {
            tracing::warn!(
                datasource = %name,
                sqlstate = code.code(),
                "PostgreSQL refused the datasource's credentials: check the user, its password and pg_hba.conf"
            );
        }
        return classify_sqlstate(code);
    }
    if let Some(mismatch) =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<BindMismatch>())
    {
        return DatasourceError::Bind {
            position: mismatch.position,
            db_type: mismatch.db_type.clone(),
        };
    }
    if let Some(tls) = super::tls::find_rustls_error(error) {
        // rustls errors name certificate problems and host names, never a value.
        tracing::warn!(datasource = %name, tls_error = %tls, "PostgreSQL TLS handshake failed");
        return DatasourceError::Unavailable { class: "tls" };
    }
    if is_tls_refused(error) {
        tracing::warn!(
            datasource = %name,
            "PostgreSQL declined TLS, which this datasource requires (`tls`)"
        );
        return DatasourceError::Unavailable { class: "tls" };
    }
    if error.is_closed() || std::error::Error::source(error).is_some() {
        // Connection-level failures (refused, reset, TLS) carry an io or TLS error as source.
        tracing::warn!(datasource = %name, error_kind = ?error_kind(error), "PostgreSQL connection failure");
        return DatasourceError::Unavailable { class: "connect" };
    }
    tracing::warn!(datasource = %name, "PostgreSQL client error");
    DatasourceError::Internal {
        class: "postgres_client",
    }
}

/// Whether the server answered the TLS request with "no" (tokio-postgres's own message,
/// which holds nothing from the server).
fn is_tls_refused(error: &tokio_postgres::Error) -> bool {
    std::error::Error::source(error)
        .is_some_and(|source| source.to_string() == "server does not support TLS")
}

/// A short description of a client-side error without its message (which may hold values).
fn error_kind(error: &tokio_postgres::Error) -> &'static str {
    if error.is_closed() {
        "closed"
    } else {
        "io_or_tls"
    }
}

fn classify_sqlstate(code: &SqlState) -> DatasourceError {
    let text = code.code();
    let constraint = |kind| DatasourceError::Constraint { kind };
    match text {
        "23505" => constraint("unique"),
        "23503" => constraint("foreign_key"),
        "23502" => constraint("not_null"),
        "23514" => constraint("check"),
        "23P01" => constraint("exclusion"),
        "57014" => DatasourceError::Timeout,
        "42501" => DatasourceError::Query {
            class: "permission_denied",
            code: text.to_string(),
            meaning: sqlstate_meaning(text),
        },
        _ if text.starts_with("23") => constraint("integrity"),
        _ if text.starts_with("22") => DatasourceError::InvalidData {
            class: "data_exception",
        },
        _ if text.starts_with("40") => DatasourceError::Retryable {
            code: text.to_string(),
        },
        // The server refused the account itself (a dropped role, a wrong password, no
        // pg_hba.conf entry): unusable as configured, as on MySQL (1045 and friends).
        _ if text.starts_with("28") => DatasourceError::Unavailable { class: "auth" },
        _ if text.starts_with("08") || text.starts_with("53") || text.starts_with("57P") => {
            DatasourceError::Unavailable { class: "server" }
        }
        _ if text.starts_with("42") => DatasourceError::Query {
            class: "invalid_statement",
            code: text.to_string(),
            meaning: sqlstate_meaning(text),
        },
        _ => DatasourceError::Query {
            class: "database_error",
            code: text.to_string(),
            meaning: sqlstate_meaning(text),
        },
    }
}

/// What a SQLSTATE means, in a few words, for the server log (the server's own message may
/// quote values). Codes not listed get their class's meaning.
pub(crate) fn sqlstate_meaning(code: &str) -> &'static str {
    match code {
        "42P18" => {
            "the type of a param could not be determined from where it stands; cast it in the SQL"
        }
        "42601" => "syntax error",
        "42P01" => "the table or view does not exist (or is not on the role's search_path)",
        "42703" => "a column does not exist",
        "42702" => "a column name is ambiguous: qualify it with its table",
        "42883" => "no function or operator takes these argument types: cast the param",
        "42804" => "a value's type does not match what the statement needs",
        "42P02" => "a placeholder has no value",
        "42501" => "the datasource's role lacks a privilege (GRANT it what the query needs)",
        "3D000" => "the database does not exist",
        "3F000" => "the schema does not exist",
        "0A000" => "a feature this statement uses is not supported",
        "25006" => "the transaction or server is read-only",
        "21000" => "a subquery returned more than one row",
        "2BP01" => "objects depend on the one being dropped",
        _ => match code.get(..2).unwrap_or("") {
            "42" => "syntax error or access rule violation",
            "22" => "data exception",
            "23" => "integrity constraint violation",
            "0A" => "feature not supported",
            "25" => "invalid transaction state",
            "P0" => "raised by a PL/pgSQL function",
            "XX" => "internal error in the database server",
            _ => "",
        },
    }
}
