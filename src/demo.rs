//! `sluice demo`: a complete instance on embedded defaults, for a first look.
//!
//! It makes an ephemeral instance key, a throw-away data directory with an SQLite database of
//! sample customers, products and orders, applies the demo catalog (`demo/catalog.yaml`),
//! and serves it on 127.0.0.1. Nothing is kept after it stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::instance::{Instance, StartError};
use crate::spec::yaml;
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::SqliteStore;
use crate::store::catalog::CatalogStore;
use crate::vault;

/// The demo catalog, before its database path is filled in.
pub const CATALOG: &str = include_str!("demo/catalog.yaml");

pub mod page;

const SCHEMA: &str = r#"
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    city TEXT NOT NULL,
    vip BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    price DECIMAL(10,2) NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    product_id INTEGER NOT NULL REFERENCES products(id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
    total DECIMAL(10,2) NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at);
"#;

const NAMES: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
    "Margaret Hamilton",
    "John McCarthy",
    "Radia Perlman",
    "Leslie Lamport",
];
const CITIES: &[&str] = &["London", "Paris", "Berlin", "Lisbon", "Oslo", "Vienna"];
const PRODUCTS: &[(&str, &str)] = &[
    ("Keyboard", "49.90"),
    ("Monitor", "219.00"),
    ("Mouse", "19.99"),
    ("Laptop stand", "34.50"),
    ("USB-C hub", "27.25"),
];
const STATUSES: &[&str] = &["new", "paid", "shipped", "cancelled"];

/// Creates the demo database at `path` with deterministic sample data.
pub fn seed_database(path: &Path) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    for (index, name) in NAMES.iter().enumerate() {
        let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
        tx.execute(
            "INSERT INTO customers (id, name, email, city, vip, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                index as i64 + 1,
                name,
                email,
                CITIES[index % CITIES.len()],
                index % 4 == 0,
                format!("2024-01-{:02}T09:00:00Z", index + 1)
            ],
        )?;
    }
    for (index, (name, price)) in PRODUCTS.iter().enumerate() {
        tx.execute(
            "INSERT INTO products (id, name, price) VALUES (?1, ?2, ?3)",
            rusqlite::params![index as i64 + 1, name, price],
        )?;
    }
    for index in 0..200i64 {
        let customer = index % NAMES.len() as i64 + 1;
        let product = index % PRODUCTS.len() as i64 + 1;
        let quantity = index % 3 + 1;
        tx.execute(
            "INSERT INTO orders (customer_id, product_id, quantity, status, total, created_at)
             SELECT ?1, ?2, ?3, ?4, round(price * ?3, 2), ?5 FROM products WHERE id = ?2",
            rusqlite::params![
                customer,
                product,
                quantity,
                STATUSES[(index % 7 % 4) as usize],
                format!(
                    "2024-{:02}-{:02}T{:02}:{:02}:00Z",
                    index % 12 + 1,
                    index % 28 + 1,
                    index % 24,
                    index % 60
                )
            ],
        )?;
    }
    tx.commit()
}

/// The demo catalog pointed at the database file `database`.
pub fn catalog(database: &Path) -> CatalogSpec {
    let mut spec = yaml::parse(CATALOG).expect("the bundled demo catalog parses");
    if let Some(DatasourceSpec::Sqlite(sqlite)) = spec.datasources.get_mut("demo_db") {
        sqlite.path = database.display().to_string();
    }
    spec
}

/// A prepared demo: its instance (not yet serving) and the directory that holds its files.
pub struct Demo {
    pub instance: Instance,
    pub directory: tempfile::TempDir,
}

/// Errors while preparing the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo data directory")]
    Io(#[from] std::io::Error),
    #[error("seeding the demo database")]
    Seed(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Builds the demo instance listening on `listen` (not yet bound).
pub async fn prepare(listen: SocketAddr) -> Result<Demo, DemoError> {
    let directory = tempfile::Builder::new().prefix("sluice-demo-").tempdir()?;
    let database = directory.path().join("demo.db");
    seed_database(&database)?;
    let (password, salt) = vault::keygen();
    let mut env = HashMap::new();
    env.insert("SLUICE_LISTEN", listen.to_string());
    env.insert("SLUICE_ENCRYPTION_PASSWORD", password);
    env.insert("SLUICE_ENCRYPTION_SALT", salt);
    env.insert(
        "SLUICE_DATA_DIR",
        directory.path().join("data").display().to_string(),
    );
    let config = config::from_lookup(|name| env.get(name).cloned())?;
    let key = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.instance_key())
            .await
            .map_err(StartError::from)??
    };
    let store = SqliteStore::open(&config.metadata_path())?;
    store.replace_catalog(&catalog(&database), "demo")?;
    let instance = Instance::with_parts(config, key, Arc::new(store))
        .await?
        .with_routes(page::router());
    Ok(Demo {
        instance,
        directory,
    })
}

/// The text printed when the demo starts: its URL and commands to paste.
pub fn banner(address: SocketAddr) -> String {
    let base = format!("http://{address}");
    format!(
        r#"Sluice demo is running at {base}
(an ephemeral instance: key, catalog and SQLite data vanish when it stops; Ctrl-C to stop)

Open the orders page in a browser (it runs the queries below with the JavaScript client):

  {base}/demo

Or try it with curl:

  # the 5 newest paid orders
  curl -s {base}/v1/apps/demo/queries/list_orders -H 'content-type: application/json' \
       -d '{{"params": {{"status": "paid", "limit": 5}}}}'

  # one customer
  curl -s {base}/v1/apps/demo/queries/get_customer -H 'content-type: application/json' \
       -d '{{"params": {{"id": 1}}}}'

  # several orders at once
  curl -s {base}/v1/apps/demo/queries/orders_by_ids -H 'content-type: application/json' \
       -d '{{"params": {{"ids": [1, 2, 3]}}}}'

  # an injection attempt comes back as plain data (no rows match)
  curl -s {base}/v1/apps/demo/queries/search_customers -H 'content-type: application/json' \
       -d '{{"params": {{"q": "x%'\'' OR 1=1 --"}}}}'

  # place an order
  curl -s {base}/v1/apps/demo/queries/create_order -H 'content-type: application/json' \
       -d '{{"params": {{"customer_id": 1, "product_id": 2, "quantity": 1}}}}'

  # a wrong type is a 400 that names the param
  curl -s {base}/v1/apps/demo/queries/get_customer -H 'content-type: application/json' \
       -d '{{"params": {{"id": "one"}}}}'
"#
    )
}
