//! MySQL/MariaDB datasource: a mysql_async pool with server-side prepared statements
//! (cached per connection), rows encoded from the binary protocol into JSON.
//!
//! Connections run with `time_zone = '+00:00'`, so `TIMESTAMP` columns read back in UTC.
//! Idle connections are kept for [`IDLE_TTL`] (with their prepared statements) and are not
//! reset when they return to the pool, as on PostgreSQL: every statement is a catalog
//! statement, and a connection whose statement did not finish cleanly (timed out, abandoned
//! by its request) is discarded, never returned.
//!
//! A statement that times out, or whose request goes away, is stopped with `KILL QUERY` sent
//! over a short-lived connection of its own, opened the way the pool opens its connections
//! (checked addresses, or the relay below): the pool may be exhausted, and its connections
//! are not there to serve clean-ups.
//!
//! Egress: the host is resolved and every address checked by the egress guard when the pool
//! is first used; mysql_async then connects only to those checked addresses
//! (`resolved_ips`, no second resolution). mysql_async cannot bind a source address, so when
//! `SLUICE_EGRESS_BIND` is set the pool connects to a loopback relay owned by this source,
//! which opens each upstream connection through the egress guard from the configured address
//! and copies bytes both ways (TLS, when on, still runs end to end with the database).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{
    ClientIdentity, Column, Conn, Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts,
    SslOpts,
};
use tokio::net::TcpListener;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::tls::DbTls;
use super::{
    ColumnInfo, DatasourceError, ExecOptions, Frame, PoolDefaults, PoolError, Producer, Slot,
    Slots, Streamed, Summary,
};
use crate::egress::{self, EgressPolicy};
use crate::spec::{NetworkDatabaseSpec, TlsMode};
use crate::statement::{RenderedSql, ResultColumn};
use crate::vault::SecretString;

mod errors;
mod values;

use errors::classify;
pub(crate) use errors::mysql_meaning;
use values::{column_json, to_mysql, type_label, write_value};

/// How long an idle connection stays in the pool. mysql_async keeps none at all unless this
/// is set (its default of zero closes every connection as it comes back).
pub const IDLE_TTL: Duration = Duration::from_secs(60);

/// How often idle connections are checked against [`IDLE_TTL`].
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// A pool for one MySQL/MariaDB datasource, created on first use (after the egress check).
pub struct MySqlSource {
    name: Arc<str>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) policy: EgressPolicy,
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) connect_timeout: Duration,
    /// Everything but the address, which is filled in once it has been checked.
    pub(crate) opts: OptsBuilder,
    /// The TLS mode in force (the options above carry the rest).
    pub(crate) tls_mode: TlsMode,
    pool: OnceCell<Checked>,
    relay: std::sync::Mutex<Option<JoinHandle<()>>>,
    slots: Slots,
}

/// The pool, and the options it connects with (to checked addresses or the relay), for the
/// connections that kill statements.
#[derive(Clone)]
struct Checked {
    pool: Pool,
    opts: Opts,
    connect_timeout: Duration,
}

impl MySqlSource {
    pub fn new(
        name: &str,
        spec: &NetworkDatabaseSpec,
        password: Option<SecretString>,
        tls: DbTls,
        client_key: Option<&SecretString>,
        defaults: &PoolDefaults,
    ) -> Result<MySqlSource, PoolError> {
        let size = spec.pool_size.unwrap_or(defaults.pool_size).max(1);
        let constraints = PoolConstraints::new(0, size).ok_or_else(|| PoolError::Config {
            datasource: name.to_string(),
            message: "pool_size must be at least 1".into(),
        })?;
        let opts = OptsBuilder::default()
            .user(Some(spec.user.clone()))
            .pass(password.as_ref().map(|p| p.expose().to_string()))
            .db_name(Some(spec.database.clone()))
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    .with_inactive_connection_ttl(IDLE_TTL)
                    .with_ttl_check_interval(IDLE_CHECK_INTERVAL)
                    // The session is kept as it is, with `time_zone` set by `init` and the
                    // statement cache (see the module docs).
                    .with_reset_connection(false),
            )
            .stmt_cache_size(256)
            // mysql_async would otherwise switch a loopback connection to the server's Unix
            // socket, around the address the egress guard checked and the bound source.
            .prefer_socket(false)
            .init(vec!["SET time_zone = '+00:00'"])
            .ssl_opts(ssl_opts(&tls, client_key));
        Ok(MySqlSource {
            name: name.into(),
            host: spec.host.clone(),
            port: spec.port.unwrap_or(3306),
            policy: super::egress_policy(name, &spec.egress_allow, defaults)?,
            bind: defaults.egress_bind.clone(),
            connect_timeout: spec
                .connect_timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.connect_timeout),
            opts,
            tls_mode: tls.mode,
            pool: OnceCell::new(),
            relay: std::sync::Mutex::new(None),
            slots: super::slots_for(Some(size), spec.pool_wait_ms, defaults),
        })
    }

    pub(super) fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The pool, built on first use once the host's addresses passed the egress check. A
    /// refusal is not cached: a later request checks again.
    async fn pool(&self) -> Result<Checked, DatasourceError> {
        self.pool
            .get_or_try_init(|| async {
                let targets = egress::resolve_checked(&self.host, self.port, &self.policy)
                    .await
                    .map_err(|e| super::classify_egress(&self.name, &e))?;
                let opts = self.opts.clone().ip_or_hostname(self.host.clone());
                let opts = if self.bind.is_empty() {
                    opts.tcp_port(self.port).resolved_ips(Some(
                        targets.iter().map(SocketAddr::ip).collect::<Vec<_>>(),
                    ))
                } else {
                    let (port, relay) = start_relay(targets, self.bind.clone(), self.connect_timeout)
                        .await
                        .map_err(|error| {
                            tracing::warn!(datasource = %self.name, error = %error, "Starting the MySQL egress relay failed");
                            DatasourceError::Unavailable { class: "relay" }
                        })?;
                    *self.relay.lock().unwrap_or_else(|p| p.into_inner()) = Some(relay);
                    opts.tcp_port(port)
                        .resolved_ips(Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]))
                };
                let opts = Opts::from(opts);
                Ok(Checked {
                    pool: Pool::new(opts.clone()),
                    opts,
                    connect_timeout: self.connect_timeout,
                })
            })
            .await
            .cloned()
    }

    /// Starts a statement: builds the pool on first use (within the query's timeout), then
    /// runs the statement on a task of its own.
    pub(super) async fn start(
        &self,
        statement: RenderedSql,
        options: ExecOptions,
        producer: Producer,
    ) {
        let pool = match tokio::time::timeout(options.timeout, self.pool()).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(error)) => return producer.fail(error).await,
            Err(_) => return producer.fail(DatasourceError::Timeout).await,
        };
        tokio::spawn(run(pool, self.name.clone(), statement, options, producer));
    }

    /// Describes `statements` on one pooled connection: each is prepared and the column
    /// metadata of its prepare response read, without running it. The outer error is the
    /// connection's; an inner one, that statement's.
    pub(super) async fn describe(
        &self,
        statements: &[RenderedSql],
    ) -> Result<Vec<Result<Vec<ResultColumn>, DatasourceError>>, DatasourceError> {
        let checked = self.pool().await?;
        let mut conn = checked
            .pool
            .get_conn()
            .await
            .map_err(|e| classify(&self.name, &e))?;
        let mut described = Vec::with_capacity(statements.len());
        for statement in statements {
            let prepared = conn
                .prep(&*statement.sql)
                .await
                .map_err(|e| classify(&self.name, &e));
            described.push(prepared.map(|prepared| {
                prepared
                    .columns()
                    .iter()
                    .map(|column| ResultColumn {
                        name: column.name_str().into_owned(),
                        db_type: type_label(column),
                        json: column_json(column),
                    })
                    .collect()
            }));
        }
        Ok(described)
    }

    pub(super) fn close(&self) {
        if let Some(relay) = self.relay.lock().unwrap_or_else(|p| p.into_inner()).take() {
            relay.abort();
        }
        let Some(Checked { pool, .. }) = self.pool.get().cloned() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = pool.disconnect().await;
            });
        }
    }
}

impl Drop for MySqlSource {
    /// mysql_async pools are closed explicitly; this one resolves once connections still in
    /// use by running queries have been returned.
    fn drop(&mut self) {
        self.close();
    }
}

/// The driver's TLS options for `tls`: the CA bundle instead of the built-in roots, no
/// certificate check for `require`, the client certificate and key. mysql_async builds its
/// own rustls configuration from these bytes. `verify-ca` never gets here (the catalog
/// check refuses it for MySQL: the driver's way of skipping only the name check does not
/// recognise the name errors of the rustls in use).
fn ssl_opts(tls: &DbTls, client_key: Option<&SecretString>) -> Option<SslOpts> {
    if tls.mode == TlsMode::Disable {
        return None;
    }
    let mut opts = SslOpts::default();
    if let Some(ca) = &tls.ca_pem {
        opts = opts
            .with_root_certs(vec![ca.clone().into()])
            .with_disable_built_in_roots(true);
    }
    if tls.mode == TlsMode::Require {
        opts = opts.with_danger_accept_invalid_certs(true);
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_pem, client_key) {
        // The driver keeps its own copy of the key, as it does the password.
        opts = opts.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.expose().as_bytes().to_vec().into(),
        )));
    }
    Some(opts)
}

/// Listens on a loopback port and relays each accepted connection to a checked target,
/// connecting from the configured source address.
pub(crate) async fn start_relay(
    targets: Vec<SocketAddr>,
    bind: Vec<IpAddr>,
    connect_timeout: Duration,
) -> std::io::Result<(u16, JoinHandle<()>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let port = listener.local_addr()?.port();
    let targets: Arc<[SocketAddr]> = targets.into();
    let bind: Arc<[IpAddr]> = bind.into();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let (targets, bind) = (targets.clone(), bind.clone());
            tokio::spawn(async move {
                match egress::connect_checked(&targets, &bind, connect_timeout).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "MySQL egress relay could not connect");
                    }
                }
            });
        }
    });
    Ok((port, task))
}

/// Runs one statement to its end on its own task: connection, columns, frames, and on
/// timeout or when the request goes away, `KILL QUERY` and the connection discarded.
async fn run(
    checked: Checked,
    name: Arc<str>,
    statement: RenderedSql,
    options: ExecOptions,
    mut producer: Producer,
) {
    let deadline = Instant::now() + options.timeout;
    let gone = producer.gone();
    tokio::pin!(gone);
    let mut conn = tokio::select! {
        biased;
        got = timeout_at(deadline, checked.pool.get_conn()) => match got {
            Err(_) => return producer.fail(DatasourceError::Timeout).await,
            Ok(Err(error)) => return producer.fail(classify(&name, &error)).await,
            Ok(Ok(conn)) => conn,
        },
        // Nothing started yet: nothing to kill.
        () = &mut gone => return,
    };
    let outcome = tokio::select! {
        biased;
        outcome = timeout_at(
            deadline,
            stream(&mut conn, &name, statement, options, &mut producer),
        ) => outcome,
        () = &mut gone => Ok(Ok(Streamed::Abandoned)),
    };
    let failure = match outcome {
        Ok(Ok(Streamed::Finished)) => return,
        Ok(Err(error)) => return producer.fail(error).await,
        Ok(Ok(Streamed::Abandoned)) => {
            tracing::debug!(datasource = %name, "Killing a statement: its request went away");
            None
        }
        Err(_) => Some(DatasourceError::Timeout),
    };
    // Stop the statement on the server, and close this connection rather than returning it
    // to the pool mid-result. The slot is held until both are done.
    tokio::spawn(kill_and_discard(checked, name, conn, producer.take_slot()));
    if let Some(error) = failure {
        producer.fail(error).await;
    }
}

/// `KILL QUERY` for `conn`'s statement over a connection of its own, then `conn` closed.
async fn kill_and_discard(checked: Checked, name: Arc<str>, conn: Conn, slot: Option<Slot>) {
    let _slot = slot;
    let connection_id = conn.id();
    let kill = async {
        let mut killer = Conn::new(checked.opts.clone()).await?;
        killer
            .query_drop(format!("KILL QUERY {connection_id}"))
            .await?;
        killer.disconnect().await
    };
    match tokio::time::timeout(checked.connect_timeout, kill).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            // Logged by class only: a server message can quote the statement.
            let class = classify(&name, &error).class();
            tracing::warn!(datasource = %name, class, "Killing a query failed");
        }
        Err(_) => tracing::warn!(datasource = %name, "Killing a query timed out"),
    }
    // The statement has ended (killed) or will end the connection with it.
    let _ = tokio::time::timeout(checked.connect_timeout, conn.disconnect()).await;
}

async fn stream(
    conn: &mut Conn,
    name: &str,
    statement: RenderedSql,
    options: ExecOptions,
    producer: &mut Producer,
) -> Result<Streamed, DatasourceError> {
    let prepared = conn
        .prep(&*statement.sql)
        .await
        .map_err(|e| classify(name, &e))?;
    let args = statement
        .args
        .iter()
        .enumerate()
        .map(|(index, value)| to_mysql(index + 1, value))
        .collect::<Result<Vec<_>, _>>()?;
    let params = if args.is_empty() {
        Params::Empty
    } else {
        Params::Positional(args)
    };
    let mut result = conn
        .exec_iter(&prepared, params)
        .await
        .map_err(|e| classify(name, &e))?;
    let columns: Arc<[Column]> = result.columns().unwrap_or_else(|| Arc::from(Vec::new()));
    let infos: Vec<ColumnInfo> = columns
        .iter()
        .map(|column| ColumnInfo {
            name: column.name_str().into_owned(),
            type_name: type_label(column),
        })
        .collect();
    if !producer.start(super::columns_json(&infos)) {
        return Ok(Streamed::Abandoned);
    }
    let mut buffer = Vec::with_capacity(4096);
    let mut summary = Summary::default();
    while let Some(row) = result.next().await.map_err(|e| classify(name, &e))? {
        if summary.row_count == options.max_rows {
            summary.truncated = true;
            break;
        }
        if summary.row_count > 0 {
            buffer.push(b',');
        }
        buffer.push(b'[');
        for (index, (value, column)) in row.unwrap().into_iter().zip(columns.iter()).enumerate() {
            if index > 0 {
                buffer.push(b',');
            }
            write_value(&mut buffer, value, column);
        }
        buffer.push(b']');
        summary.row_count += 1;
        if buffer.len() >= options.frame_bytes {
            let frame = Frame::Rows(std::mem::take(&mut buffer).into());
            if producer.frames().send(frame).await.is_err() {
                return Ok(Streamed::Abandoned);
            }
        }
    }
    if columns.is_empty() {
        summary.rows_affected = Some(result.affected_rows());
    }
    // Read whatever is left (rows past max_rows, trailing packets) so the connection goes back
    // to the pool clean.
    result.drop_result().await.map_err(|e| classify(name, &e))?;
    if !buffer.is_empty() {
        let _ = producer.frames().send(Frame::Rows(buffer.into())).await;
    }
    let _ = producer.frames().send(Frame::Done(summary)).await;
    Ok(Streamed::Finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NetworkDatabaseSpec {
        serde_norway::from_str(yaml).expect("a network datasource")
    }

    #[test]
    fn tls_modes_map_to_the_drivers_options() {
        let plain = spec("{host: db, database: d, user: u}");
        let load = |spec: &NetworkDatabaseSpec, mode, key| DbTls::load(spec, mode, key).unwrap();
        assert!(ssl_opts(&load(&plain, TlsMode::Disable, None), None).is_none());

        let full = ssl_opts(&load(&plain, TlsMode::VerifyFull, None), None).unwrap();
        assert!(!full.accept_invalid_certs());
        assert!(!full.skip_domain_validation());
        assert!(!full.disable_built_in_roots());
        assert!(full.root_certs().is_empty());
        assert!(full.client_identity().is_none());

        let require = ssl_opts(&load(&plain, TlsMode::Require, None), None).unwrap();
        assert!(require.accept_invalid_certs());

        // A CA file replaces the built-in roots; a client certificate comes with its key.
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client".to_string()]).unwrap();
        let ca_file = dir.path().join("ca.pem");
        let cert_file = dir.path().join("client.pem");
        std::fs::write(&ca_file, ca.cert.pem()).unwrap();
        std::fs::write(&cert_file, client.cert.pem()).unwrap();
        let with_files = spec(&format!(
            "{{host: db, database: d, user: u, tls_ca_file: '{}', tls_client_cert_file: '{}', \
             tls_client_key: sealed}}",
            ca_file.display(),
            cert_file.display()
        ));
        let key = SecretString::from(client.signing_key.serialize_pem());
        let opts = ssl_opts(
            &load(&with_files, TlsMode::VerifyFull, Some(&key)),
            Some(&key),
        )
        .unwrap();
        assert!(opts.disable_built_in_roots());
        assert_eq!(opts.root_certs().len(), 1);
        assert!(!opts.accept_invalid_certs());
        assert!(opts.client_identity().is_some());
    }
}
