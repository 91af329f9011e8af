//! Shared helpers for integration tests: real PostgreSQL and MariaDB on this machine, and
//! gateways started in-process on port 0.
//!
//! The databases are required: a test that cannot reach them fails with a message saying
//! how to start them. Nothing is skipped.

#![allow(dead_code)]

pub mod served;
pub mod smtp;
pub mod tls_servers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use sluice::config;
use sluice::instance::Instance;
use sluice::spec::CatalogSpec;
use sluice::spec::yaml;
use sluice::store::SqliteStore;
use sluice::store::catalog::CatalogStore;
use sluice::vault::{InstanceKey, Keyring, Owner};
use tokio::sync::oneshot;

pub const PG_HOST: &str = "127.0.0.1";
pub const PG_PORT: u16 = 5432;
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// The instance password and salt every test gateway uses (fresh per test process).
pub fn test_secrets() -> &'static (String, String) {
    static SECRETS: OnceLock<(String, String)> = OnceLock::new();
    SECRETS.get_or_init(sluice::vault::keygen)
}

/// The instance key for [`test_secrets`], derived once per process (600,000 PBKDF2 rounds).
pub fn test_key() -> &'static InstanceKey {
    static KEY: OnceLock<InstanceKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let (password, salt) = test_secrets();
        InstanceKey::derive(password, salt).expect("derive the test key")
    })
}

/// [`test_key`] as a keyring (no old key), for what opens secrets (`Pools::build`).
pub fn test_keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| Keyring::new(test_key().clone()))
}

/// Seals `secret` for `datasource/<datasource>/<field>` under the test key.
pub fn seal(datasource: &str, field: &str, secret: &str) -> String {
    test_key().seal(&Owner::datasource(datasource, field).unwrap(), secret)
}

/// A name unique to this test run, usable as a schema, database or table name.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// A connection to the local PostgreSQL `test` database as a superuser.
pub async fn pg_admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::Config::new()
        .host(PG_HOST)
        .port(PG_PORT)
        .user("postgres")
        .dbname("test")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must run on {PG_HOST}:{PG_PORT} with trust auth and a `test` \
                 database (start it with .ci/run or pg_ctlcluster): {e}"
            )
        });
    tokio::spawn(connection);
    client
}

/// A connection to the local MariaDB `test` database as root.
pub async fn mysql_admin() -> mysql_async::Conn {
    mysql_async::Conn::from_url(MYSQL_URL)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "MariaDB must run on 127.0.0.1:3306 with root and an empty password (start it \
             with .ci/run): {e}"
            )
        })
}

/// A fresh PostgreSQL schema, dropped by the returned guard's owner at the end of a test
/// (tests call [`PgSchema::drop`]; leftovers are harmless, names are unique).
pub struct PgSchema {
    pub name: String,
}

impl PgSchema {
    pub async fn create(client: &tokio_postgres::Client) -> PgSchema {
        let name = unique_name("t");
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .expect("create schema");
        PgSchema { name }
    }

    pub async fn drop(self, client: &tokio_postgres::Client) {
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}

/// A fresh MariaDB database.
pub struct MyDatabase {
    pub name: String,
}

impl MyDatabase {
    pub async fn create(conn: &mut mysql_async::Conn) -> MyDatabase {
        use mysql_async::prelude::Queryable;
        let name = unique_name("t");
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        MyDatabase { name }
    }

    pub async fn drop(self, conn: &mut mysql_async::Conn) {
        use mysql_async::prelude::Queryable;
        let _ = conn
            .query_drop(format!("DROP DATABASE {}", self.name))
            .await;
    }
}

/// YAML for a PostgreSQL datasource on the local server (loopback allowed by its egress list).
pub fn pg_datasource_yaml(name: &str) -> String {
    format!(
        "  {name}:\n    kind: postgres\n    host: {PG_HOST}\n    port: {PG_PORT}\n    database: test\n    user: postgres\n    password: {}\n    pool_size: 4\n    egress_allow: [127.0.0.1/32]\n",
        seal(name, "password", "unused-with-trust-auth")
    )
}

/// YAML for a MariaDB datasource on the local server, using database `database`.
pub fn mysql_datasource_yaml(name: &str, database: &str) -> String {
    format!(
        "  {name}:\n    kind: mysql\n    host: 127.0.0.1\n    port: 3306\n    database: {database}\n    user: root\n    pool_size: 4\n    egress_allow: [127.0.0.1/32]\n"
    )
}

/// A gateway running in this process on 127.0.0.1:0.
pub struct TestGateway {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    /// The instance's authentication service (tests create users through it).
    pub auth: Arc<sluice::auth::service::AuthService>,
    /// The instance's audit log (tests read what it recorded).
    pub audit: Arc<sluice::audit::Audit>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a gateway serving `catalog` (YAML) with extra environment settings.
    pub async fn start_with(catalog: &str, env: &[(&str, &str)]) -> TestGateway {
        let spec = yaml::parse(catalog).unwrap_or_else(|e| panic!("test catalog: {e}"));
        TestGateway::start_spec(spec, env).await
    }

    pub async fn start(catalog: &str) -> TestGateway {
        TestGateway::start_with(catalog, &[]).await
    }

    pub async fn start_spec(spec: CatalogSpec, env: &[(&str, &str)]) -> TestGateway {
        TestGateway::start_clocked(spec, env, Arc::new(sluice::clock::SystemClock)).await
    }

    /// Starts a gateway whose time is `clock` (pass a `ManualClock` to move time forward).
    pub async fn start_clocked(
        spec: CatalogSpec,
        env: &[(&str, &str)],
        clock: sluice::clock::SharedClock,
    ) -> TestGateway {
        let instance = test_instance(spec, env, clock).await;
        let auth = instance.state().auth.service.clone();
        let audit = instance.state().audit.clone();
        let listener = instance.bind().await.expect("bind");
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(instance.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestGateway {
            address,
            client: reqwest::Client::new(),
            auth,
            audit,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// An instance serving `spec` from an in-memory store with the test key, listening on
/// 127.0.0.1:0 once bound, rate limits off unless `env` sets them, time from `clock`. Not yet
/// serving: [`TestGateway`] serves it on a socket, in-process tests call its router.
pub async fn test_instance(
    spec: CatalogSpec,
    env: &[(&str, &str)],
    clock: sluice::clock::SharedClock,
) -> Instance {
    let (password, salt) = test_secrets();
    let mut vars: HashMap<String, String> = HashMap::new();
    vars.insert("SLUICE_LISTEN".into(), "127.0.0.1:0".into());
    vars.insert("SLUICE_ENCRYPTION_PASSWORD".into(), password.clone());
    vars.insert("SLUICE_ENCRYPTION_SALT".into(), salt.clone());
    // Rate limits are off unless a test sets them: most tests send far more requests
    // from 127.0.0.1 than a client should.
    for var in [
        "SLUICE_RATE_LIMIT_PER_IP",
        "SLUICE_RATE_LIMIT_PER_USER",
        "SLUICE_RATE_LIMIT_PER_KEY",
    ] {
        vars.insert(var.into(), "off".into());
    }
    for (name, value) in env {
        vars.insert(name.to_string(), value.to_string());
    }
    let config = config::from_lookup(|name| vars.get(name).cloned()).expect("test config");
    let store = SqliteStore::in_memory().expect("in-memory store");
    store.replace_catalog(&spec, "test").expect("apply catalog");
    // The keyring the configuration names: the test key unless `env` sets another (and,
    // for key rotation tests, an old one).
    let key = if env
        .iter()
        .any(|(name, _)| name.starts_with("SLUICE_ENCRYPTION_"))
    {
        config.keyring().expect("keyring")
    } else {
        Keyring::new(test_key().clone())
    };
    Instance::with_clock(config, key, Arc::new(store), clock)
        .await
        .unwrap_or_else(|e| panic!("gateway start: {e}"))
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// POSTs `body` (raw text) to a query; returns status, headers and the body text.
    pub async fn post_raw(
        &self,
        app: &str,
        query: &str,
        body: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .client
            .post(self.url(&format!("/v1/apps/{app}/queries/{query}")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        (status, headers, text)
    }

    /// POSTs `{"params": params}`; returns status and the parsed JSON body.
    pub async fn call(
        &self,
        app: &str,
        query: &str,
        params: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let body = serde_json::json!({ "params": params }).to_string();
        let (status, _, text) = self.post_raw(app, query, &body).await;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"));
        (status, json)
    }

    /// Stops accepting and waits for the drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl TestGateway {
    /// Starts a gateway over an existing metadata store after applying `spec` to it, so a
    /// test can restart an instance on the same state (accounts, members, sessions).
    pub async fn start_on_store(
        store: Arc<SqliteStore>,
        spec: CatalogSpec,
        env: &[(&str, &str)],
    ) -> TestGateway {
        let (password, salt) = test_secrets();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("SLUICE_LISTEN".into(), "127.0.0.1:0".into());
        vars.insert("SLUICE_ENCRYPTION_PASSWORD".into(), password.clone());
        vars.insert("SLUICE_ENCRYPTION_SALT".into(), salt.clone());
        // Rate limits are off unless a test sets them: most tests send far more requests
        // from 127.0.0.1 than a client should.
        for var in [
            "SLUICE_RATE_LIMIT_PER_IP",
            "SLUICE_RATE_LIMIT_PER_USER",
            "SLUICE_RATE_LIMIT_PER_KEY",
        ] {
            vars.insert(var.into(), "off".into());
        }
        for (name, value) in env {
            vars.insert(name.to_string(), value.to_string());
        }
        let config = config::from_lookup(|name| vars.get(name).cloned()).expect("test config");
        store.replace_catalog(&spec, "test").expect("apply catalog");
        let key = InstanceKey::derive(password, salt).expect("key");
        let instance = Instance::with_parts(config, key, store)
            .await
            .unwrap_or_else(|e| panic!("gateway start: {e}"));
        let auth = instance.state().auth.service.clone();
        let audit = instance.state().audit.clone();
        let listener = instance.bind().await.expect("bind");
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(instance.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestGateway {
            address,
            client: reqwest::Client::new(),
            auth,
            audit,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

/// An error and its causes as the CLI prints them (`top: cause: cause`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// The problems scripts/sarif-check.py finds in `log` against the vendored SARIF 2.1.0
/// schema (tests/sarif); empty when it validates. Panics when the check cannot run.
pub fn sarif_problems(log: &serde_json::Value) -> Vec<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sarif-check.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(log.to_string().as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "scripts/sarif-check.py could not run (pip install jsonschema): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
