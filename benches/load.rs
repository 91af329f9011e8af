//! Load benchmark: Sluice against a direct pooled prepared-statement client, on one machine.
//!
//! `cargo bench --bench load` builds this program and the `sluice` binary with the bench
//! profile (which inherits `dist`: fat LTO, one codegen unit; the binary is
//! `target/release/sluice`, as cargo puts bench builds there) and then, in one run:
//!
//! 1. recreates schema `bench_load` on the local PostgreSQL (127.0.0.1:5432, trust auth,
//!    database `test`, user `postgres`) with `orders`: 100,000 rows over 1,000 customers and
//!    4 statuses, indexed on `(customer_id, status, created_at DESC)`, then `VACUUM ANALYZE`;
//! 2. makes an instance key, seals the datasource password, `sluice init`s a store in a
//!    temporary `SLUICE_DATA_DIR`, `sluice catalog apply`s a catalog into it and starts
//!    `sluice serve` on a free loopback port (`SLUICE_LOG_LEVEL=warn`, `SLUICE_POOL_SIZE` =
//!    the concurrency);
//! 3. runs the point query "the 20 newest orders of customer C with status S" (C and S random
//!    per request) for the same time at the same concurrency
//!    - directly: one tokio-postgres connection per worker, each with its prepared statement;
//!    - through Sluice over HTTP/1.1 keep-alive, driven by `wrk` with `benches/load.lua`;
//!
//!    and reports throughput, p50/p99 latency, and CPU time per request of the Sluice
//!    process, of the PostgreSQL backends serving it (found through the client sockets, so
//!    other users of the server do not count), and of the client / load generator (process
//!    CPU over the run divided by requests: independent of how the cores were shared);
//! 4. runs `GET /healthz` the same way: the HTTP floor, Sluice's CPU per request with no
//!    database work, so the point query's cost splits into HTTP and database path;
//! 5. runs the point query through the *bare relay* (benches/load/relay.rs, in this process):
//!    hyper + serde_json + tokio-postgres and nothing else, driven by the same wrk script. Its
//!    throughput against the direct client is the ceiling any HTTP gateway reaches here;
//! 6. runs Sluice and the relay in turn, in pairs of short runs (`BENCH_PAIRS` pairs of
//!    `BENCH_PAIR_SECONDS`, the order alternating: S R, R S, ...), and takes the median of the
//!    pairs' ratios: the two sides of a pair run seconds apart, so the machine's drift (a
//!    VM's neighbours, its clock) moves both alike, where the long runs of 3 and 5 are a
//!    minute apart. The CPU and throughput targets read these medians;
//! 7. streams a 1,000,000-row result through Sluice, sampling its RSS every 50 ms;
//! 8. measures Sluice's RSS idle (after start-up) and under 256 concurrent keep-alive clients.
//!
//! It prints a table and the targets of docs/PERFORMANCE.md with PASS/MISS;
//! it exits 0 whatever the figures (it fails only when it cannot run). Only loopback
//! addresses are contacted. `wrk` is installed with apt-get when it is missing.
//!
//! Settings (environment): `BENCH_CONCURRENCY` (16), `BENCH_SECONDS` (15),
//! `BENCH_WARMUP_SECONDS` (3), `BENCH_POOL_SIZE` (= concurrency), `BENCH_ROWS` (100000),
//! `BENCH_STREAM_ROWS` (1000000), `BENCH_MANY_CLIENTS` (256), `BENCH_MANY_SECONDS` (5),
//! `BENCH_PAIRS` (4; 0 skips the paired phase, and the targets read the long runs),
//! `BENCH_PAIR_SECONDS` (5),
//! `BENCH_LOG_LEVEL` (warn), `BENCH_SLUICE_BIN` (this mode: another `sluice` to measure, a
//! profile-guided build from `scripts/pgo` or an older commit), `BENCH_AUTOGROUP` (`keep`
//! leaves the kernel's session autogroups on; by default a load or replicated run as root
//! turns them off for its duration, see benches/load/scheduler.rs). Sluice is stopped with
//! SIGTERM, so an instrumented build writes its profile. See docs/PERFORMANCE.md for figures and caveats.
//!
//! `BENCH_MODE=callgrind` runs the callgrind mode instead (benches/load/callgrind.rs):
//! instructions per point query of Sluice and of the bare relay, counted by valgrind.
//! `BENCH_MODE=replicated` runs the replicated mode (benches/load/replicated.rs): Sluice's
//! CPU per point query on the PostgreSQL metadata store against the SQLite store, for
//! anonymous, session-cookie and API-key callers, and the cost of shared rate limits.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sluice::vault::{self, InstanceKey, Owner};
use tokio_postgres::types::{FromSql, Type};

#[path = "load/callgrind.rs"]
mod callgrind;
#[path = "load/relay.rs"]
mod relay;
#[path = "load/replicated.rs"]
mod replicated;
#[path = "load/scheduler.rs"]
mod scheduler;

const PG_HOST: &str = "127.0.0.1";
const PG_PORT: u16 = 5432;
const SCHEMA: &str = "bench_load";
const CUSTOMERS: i32 = 1000;
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "cancelled"];
/// The point query, as the direct client prepares it.
const POINT_SQL: &str = "SELECT id, status, total, created_at FROM bench_load.orders \
     WHERE customer_id = $1 AND status = $2 ORDER BY created_at DESC LIMIT 20";
/// The same query as a Sluice template.
const POINT_TEMPLATE: &str = "SELECT id, status, total, created_at FROM bench_load.orders \
     WHERE customer_id = {{ params.customer }} AND status = {{ params.status }} \
     ORDER BY created_at DESC LIMIT 20";
const DIRECT_APPLICATION_NAME: &str = "sluice_bench_direct";

/// The targets (docs/PERFORMANCE.md): ratios to the bare relay measured in the same run,
/// because machines of this kind differ up to 3x in speed; memory in absolute terms.
const TARGET_RELAY_RATIO: f64 = 0.92;
const TARGET_CPU_RATIO: f64 = 1.15;
const TARGET_P99_MS: f64 = 3.0;
const TARGET_MANY_CPU_RATIO: f64 = 1.2;
const TARGET_STREAM_GROWTH_MIB: f64 = 32.0;
const TARGET_IDLE_MIB: f64 = 30.0;
const TARGET_MANY_MIB: f64 = 64.0;

fn main() -> anyhow::Result<()> {
    // The relay's own process in callgrind mode (this program, started again under valgrind).
    if let Ok(pool_size) = std::env::var(callgrind::RELAY_SERVE_ENV) {
        return callgrind::relay_child(&pool_size);
    }
    let settings = Settings::from_env()?;
    let mode = std::env::var("BENCH_MODE").unwrap_or_default();
    // Before the runtime's worker threads exist (the relay runs on them): the kernel puts a
    // thread in its scheduling group when it is created.
    let _autogroups = matches!(mode.as_str(), "" | "load" | "replicated")
        .then(scheduler::AutogroupsOff::for_the_run);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match mode.as_str() {
        "" | "load" => runtime.block_on(run(settings)),
        "callgrind" => runtime.block_on(callgrind::run(settings)),
        "replicated" => runtime.block_on(replicated::run(settings)),
        other => bail!(
            "BENCH_MODE must be `load` (the default), `callgrind` or `replicated`, not `{other}`"
        ),
    }
}

/// Benchmark settings, from `BENCH_*` environment variables.
#[derive(Debug, Clone)]
struct Settings {
    concurrency: usize,
    seconds: u64,
    warmup_seconds: u64,
    pool_size: usize,
    rows: u64,
    stream_rows: u64,
    many_clients: usize,
    many_seconds: u64,
    /// Rounds of the paired phase (Sluice and the relay in turn); 0 skips it.
    pairs: u64,
    pair_seconds: u64,
    log_level: String,
}

impl Settings {
    fn from_env() -> anyhow::Result<Settings> {
        fn number(name: &str, default: u64) -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(text) if !text.trim().is_empty() => text
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{name} must be a positive integer, not `{text}`")),
                _ => Ok(default),
            }
        }
        let concurrency = number("BENCH_CONCURRENCY", 16)? as usize;
        Ok(Settings {
            concurrency,
            seconds: number("BENCH_SECONDS", 15)?,
            warmup_seconds: number("BENCH_WARMUP_SECONDS", 3)?,
            pool_size: number("BENCH_POOL_SIZE", concurrency as u64)? as usize,
            rows: number("BENCH_ROWS", 100_000)?,
            stream_rows: number("BENCH_STREAM_ROWS", 1_000_000)?,
            many_clients: number("BENCH_MANY_CLIENTS", 256)? as usize,
            many_seconds: number("BENCH_MANY_SECONDS", 5)?,
            pairs: match std::env::var("BENCH_PAIRS") {
                Ok(text) if text.trim() == "0" => 0,
                _ => number("BENCH_PAIRS", 4)?,
            },
            pair_seconds: number("BENCH_PAIR_SECONDS", 5)?,
            log_level: std::env::var("BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        })
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    // `BENCH_SLUICE_BIN` measures another build (a profile-guided one, an older commit).
    let sluice_bin = std::env::var_os("BENCH_SLUICE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        PathBuf::from,
    );
    let ticks = clock_ticks_per_second();
    println!("Sluice load benchmark");
    println!("  sluice binary: {}", sluice_bin.display());
    if sluice_bin.components().any(|c| c.as_os_str() == "debug") {
        println!("  WARNING: a debug build; run it as `cargo bench --bench load`");
    }
    println!(
        "  machine: {} cores; PostgreSQL on {PG_HOST}:{PG_PORT}; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  settings: concurrency {}, {} s per run ({} s warm-up), pool {}, {} rows, stream {} rows, {} clients for {} s",
        settings.concurrency,
        settings.seconds,
        settings.warmup_seconds,
        settings.pool_size,
        settings.rows,
        settings.stream_rows,
        settings.many_clients,
        settings.many_seconds
    );
    let wrk = Wrk {
        binary: ensure_wrk()?,
        lua: Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load.lua"),
    };

    let admin = pg_connect("sluice_bench_admin").await?;
    let server_version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    println!("  PostgreSQL {server_version}");
    let started = Instant::now();
    create_data(&admin, settings.rows).await?;
    println!(
        "  data: {SCHEMA}.orders, {} rows, {CUSTOMERS} customers x {} statuses ({:.1} s)",
        settings.rows,
        STATUSES.len(),
        started.elapsed().as_secs_f64()
    );

    let directory = tempfile::tempdir().context("temporary data directory")?;
    let sluice = Sluice::start(&sluice_bin, directory.path(), &settings).await?;
    let http = reqwest::Client::new();
    let idle = process_memory(sluice.pid).context("reading sluice's RSS")?;
    println!(
        "  sluice pid {} on {}; idle RSS after start-up {:.1} MiB",
        sluice.pid,
        sluice.base_url,
        mib(idle.rss_kib)
    );
    check_point_query(&http, &sluice).await?;

    println!(
        "\n[1/7] direct tokio-postgres client: {} connections, {} s",
        settings.concurrency, settings.seconds
    );
    let direct = direct_run(&settings, ticks).await?;
    println!("  {}", direct.summary());

    println!(
        "\n[2/7] through Sluice: wrk -t1 -c{} -d{}s",
        settings.concurrency, settings.seconds
    );
    let url = sluice.url("/v1/apps/bench/queries/orders");
    let point = Load {
        url: &url,
        connections: settings.concurrency,
        seconds: settings.seconds,
        get: false,
        caller: &[],
    };
    let warm_up = Load {
        seconds: settings.warmup_seconds,
        ..point
    };
    wrk_run(&wrk, &warm_up).await.context("warm-up")?;
    let gateway = sluice_run(&admin, &sluice, &wrk, &point, ticks).await?;
    println!("  {}", gateway.summary());
    let warm = process_memory(sluice.pid)?;

    let health = sluice.url("/healthz");
    let floor_load = Load {
        url: &health,
        connections: settings.concurrency,
        seconds: settings.seconds.min(5),
        get: true,
        caller: &[],
    };
    println!(
        "\n[3/7] HTTP floor, no database: GET /healthz, wrk -t1 -c{} -d{}s",
        floor_load.connections, floor_load.seconds
    );
    let floor = sluice_run(&admin, &sluice, &wrk, &floor_load, ticks).await?;
    println!("  {}", floor.summary());

    println!(
        "\n[4/7] bare relay (hyper + serde_json + tokio-postgres, in this process): wrk -t1 -c{} -d{}s",
        settings.concurrency, settings.seconds
    );
    let bare = relay::start(settings.pool_size).await?;
    let relay_load = Load {
        url: &bare.url,
        ..point
    };
    wrk_run(
        &wrk,
        &Load {
            seconds: settings.warmup_seconds,
            ..relay_load
        },
    )
    .await
    .context("relay warm-up")?;
    let relay = relay_run(&bare, &wrk, &relay_load, ticks).await?;
    println!("  {}", relay.summary());

    println!(
        "\n[5/7] Sluice and the relay in turn: {} pairs of {} s runs, the order alternating",
        settings.pairs, settings.pair_seconds
    );
    let mut pairs = Vec::new();
    for round in 0..settings.pairs {
        let sluice_load = Load {
            seconds: settings.pair_seconds,
            ..point
        };
        let relay_load = Load {
            seconds: settings.pair_seconds,
            ..relay_load
        };
        // S R, R S, S R, ...: a machine that speeds up or slows down over the phase
        // favours neither side.
        let pair = if round.is_multiple_of(2) {
            let sluice = sluice_run(&admin, &sluice, &wrk, &sluice_load, ticks).await?;
            let relay = relay_run(&bare, &wrk, &relay_load, ticks).await?;
            Pair::of(&sluice, &relay)
        } else {
            let relay = relay_run(&bare, &wrk, &relay_load, ticks).await?;
            let sluice = sluice_run(&admin, &sluice, &wrk, &sluice_load, ticks).await?;
            Pair::of(&sluice, &relay)
        };
        println!("  pair {}: {}", round + 1, pair.summary());
        pairs.push(pair);
    }
    drop(bare);

    println!(
        "\n[6/7] streaming {} rows through Sluice",
        settings.stream_rows
    );
    let stream = stream_run(&http, &sluice, settings.stream_rows, ticks).await?;
    println!(
        "  {} bytes in {:.2} s ({:.0} rows/s, {:.1} MiB/s); sluice CPU {:.2} us/row; RSS before {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB (VmHWM {:.1} -> {:.1} MiB)",
        stream.bytes,
        stream.seconds,
        settings.stream_rows as f64 / stream.seconds,
        stream.bytes as f64 / 1_048_576.0 / stream.seconds,
        stream.sluice_cpu_us / settings.stream_rows as f64,
        mib(stream.rss_before_kib),
        mib(stream.rss_peak_kib),
        mib(stream.growth_kib()),
        mib(stream.hwm_before_kib),
        mib(stream.hwm_after_kib)
    );

    let many_load = Load {
        connections: settings.many_clients,
        seconds: settings.many_seconds,
        ..point
    };
    println!(
        "\n[7/7] {} concurrent keep-alive clients: wrk -t1 -c{} -d{}s",
        settings.many_clients, settings.many_clients, settings.many_seconds
    );
    let many = sluice_run(&admin, &sluice, &wrk, &many_load, ticks).await?;
    println!("  {}", many.summary());
    let after = process_memory(sluice.pid)?;

    drop(sluice);
    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await;

    report(&Results {
        settings,
        direct,
        gateway,
        floor,
        relay,
        pairs,
        many,
        stream,
        idle_kib: idle.rss_kib,
        warm_kib: warm.rss_kib,
        after_kib: after.rss_kib,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Data

async fn pg_connect(application_name: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::Config::new()
        .host(PG_HOST)
        .port(PG_PORT)
        .user("postgres")
        .dbname("test")
        .application_name(application_name)
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| {
            format!(
                "PostgreSQL must run on {PG_HOST}:{PG_PORT} with trust auth and a `test` database"
            )
        })?;
    tokio::spawn(connection);
    Ok(client)
}

async fn create_data(admin: &tokio_postgres::Client, rows: u64) -> anyhow::Result<()> {
    let statuses = STATUSES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
             CREATE SCHEMA {SCHEMA};
             CREATE TABLE {SCHEMA}.orders (
                 id bigserial PRIMARY KEY,
                 customer_id int NOT NULL,
                 status text NOT NULL,
                 total numeric(10,2) NOT NULL,
                 created_at timestamptz NOT NULL);
             INSERT INTO {SCHEMA}.orders (customer_id, status, total, created_at)
               SELECT 1 + floor(random() * {CUSTOMERS})::int,
                      (ARRAY[{statuses}])[1 + floor(random() * {n})::int],
                      round((random() * 1000)::numeric, 2),
                      now() - random() * interval '365 days'
               FROM generate_series(1, {rows});
             CREATE INDEX orders_customer_status_created
               ON {SCHEMA}.orders (customer_id, status, created_at DESC);",
            n = STATUSES.len()
        ))
        .await
        .context("creating the benchmark data")?;
    // Set hint bits and the visibility map now, so the first run does not pay for them.
    admin
        .batch_execute(&format!("VACUUM ANALYZE {SCHEMA}.orders"))
        .await
        .context("VACUUM ANALYZE")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The Sluice process

struct Sluice {
    child: Child,
    pid: u32,
    base_url: String,
}

impl Sluice {
    async fn start(binary: &Path, directory: &Path, settings: &Settings) -> anyhow::Result<Sluice> {
        Sluice::start_wrapped(binary, directory, settings, &[], &Extra::default()).await
    }

    /// [`Sluice::start`], with `sluice serve` run under `wrapper` (a program and its
    /// arguments, e.g. valgrind; empty: none). `sluice catalog apply` always runs bare.
    async fn start_wrapped(
        binary: &Path,
        directory: &Path,
        settings: &Settings,
        wrapper: &[String],
        extra: &Extra,
    ) -> anyhow::Result<Sluice> {
        let (password, salt) = vault::keygen();
        let key = InstanceKey::derive(&password, &salt).context("deriving the instance key")?;
        let sealed = key.seal(
            &Owner::datasource("pg", "password")?,
            "unused-with-trust-auth",
        );
        let catalog = format!(
            "datasources:
  pg:
    kind: postgres
    host: {PG_HOST}
    port: {PG_PORT}
    database: test
    user: postgres
    password: {sealed}
    egress_allow: [127.0.0.1/32]
apps:
  bench:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      orders:
        datasource: pg
        sql: {POINT_TEMPLATE}
        params:
          customer: {{ type: int, required: true }}
          status: {{ type: text, required: true, enum: [{statuses}] }}
      stream:
        datasource: pg
        sql: SELECT g AS id, md5(g::text) AS h, g * 1.5 AS v FROM generate_series(1, {stream_rows}) g
        max_rows: {max_rows}
        timeout_ms: 600000
",
            statuses = STATUSES.join(", "),
            stream_rows = settings.stream_rows,
            max_rows = settings.stream_rows * 2,
        ) + &extra.catalog;
        let catalog_path = directory.join("catalog.yaml");
        std::fs::write(&catalog_path, catalog)?;
        let port = std::net::TcpListener::bind((PG_HOST, 0))?
            .local_addr()?
            .port();
        let env: Vec<(&str, String)> = vec![
            ("SLUICE_ENCRYPTION_PASSWORD", password),
            ("SLUICE_ENCRYPTION_SALT", salt),
            ("SLUICE_DATA_DIR", directory.display().to_string()),
            ("SLUICE_LISTEN", format!("127.0.0.1:{port}")),
            ("SLUICE_LOG_LEVEL", settings.log_level.clone()),
            ("SLUICE_LOG_FORMAT", "text".into()),
            ("SLUICE_POOL_SIZE", settings.pool_size.to_string()),
            // One load generator on one address: the per-IP limit would measure itself.
            ("SLUICE_RATE_LIMIT_PER_IP", "off".into()),
            // Likewise the per-address connection cap (256 clients from one address).
            ("SLUICE_MAX_CONNECTIONS_PER_IP", "0".into()),
        ]
        .into_iter()
        .chain(extra.env.iter().map(|(name, value)| (*name, value.clone())))
        .collect();
        let command = |wrapper: &[String], args: &[&str]| {
            let mut command = match wrapper.split_first() {
                Some((program, rest)) => {
                    let mut command = std::process::Command::new(program);
                    command.args(rest).arg(binary);
                    command
                }
                None => std::process::Command::new(binary),
            };
            command.args(args);
            for (name, _) in std::env::vars() {
                if name.starts_with("SLUICE_") {
                    command.env_remove(name);
                }
            }
            command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
            command
        };
        let initialised = command(&[], &["init"])
            .output()
            .context("running `sluice init`")?;
        if !initialised.status.success() {
            bail!(
                "`sluice init` failed: {}",
                String::from_utf8_lossy(&initialised.stderr)
            );
        }
        let applied = command(
            &[],
            &["catalog", "apply", &catalog_path.display().to_string()],
        )
        .output()
        .context("running `sluice catalog apply`")?;
        if !applied.status.success() {
            bail!(
                "`sluice catalog apply` failed: {}",
                String::from_utf8_lossy(&applied.stderr)
            );
        }
        for (email, password) in &extra.users {
            let mut add = command(&[], &["user", "add", email, "--role", "developer"]);
            let mut child = add
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("running `sluice user add`")?;
            use std::io::Write;
            writeln!(child.stdin.take().context("stdin")?, "{password}")?;
            let added = child.wait_with_output()?;
            if !added.status.success() {
                bail!(
                    "`sluice user add` failed: {}",
                    String::from_utf8_lossy(&added.stderr)
                );
            }
        }
        let log_path = directory.join("sluice.log");
        let log = std::fs::File::create(&log_path)?;
        let child = command(wrapper, &["serve"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting `sluice serve`")?;
        let mut sluice = Sluice {
            pid: child.id(),
            child,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        // Under valgrind start-up (the instance key derivation) is many times slower.
        let ready_within = if wrapper.is_empty() { 30 } else { 300 };
        let deadline = Instant::now() + Duration::from_secs(ready_within);
        loop {
            if let Some(status) = sluice.child.try_wait()? {
                bail!(
                    "sluice serve exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(sluice.url("/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("sluice did not become ready within {ready_within} s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sluice)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// What a run adds to the standard instance: variables (which win over the standard ones),
/// catalog text appended after the standard catalog's `bench` app (more apps), and
/// developer accounts made before `serve` (email, password).
#[derive(Debug, Default)]
struct Extra {
    env: Vec<(&'static str, String)>,
    catalog: String,
    users: Vec<(String, String)>,
}

impl Sluice {
    /// Stops the server as an operator would: SIGTERM, then up to `grace` to drain and exit
    /// (so a profile-instrumented build writes its profile, `scripts/pgo`, and valgrind
    /// exits cleanly), SIGKILL after. Blocks the calling thread meanwhile.
    fn stop_within(&mut self, grace: Duration) {
        // Already reaped: its pid may belong to another process by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let terminated = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + grace;
        while terminated && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        self.stop_within(Duration::from_secs(10));
    }
}

/// One request through Sluice, checked, so a broken setup fails before any timing.
async fn check_point_query(http: &reqwest::Client, sluice: &Sluice) -> anyhow::Result<()> {
    let response = http
        .post(sluice.url("/v1/apps/bench/queries/orders"))
        .header("content-type", "application/json")
        .body(r#"{"params":{"customer":7,"status":"paid"}}"#)
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    let rows = body["row_count"].as_u64().unwrap_or(0);
    if !status.is_success() || rows == 0 || rows > 20 {
        bail!("the point query through Sluice answered {status}: {body}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// /proc accounting

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time of a process from `/proc/<pid>/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    /// utime + stime: the process itself, all its threads.
    own: u64,
    /// stime alone: the part spent in the kernel.
    system: u64,
    /// cutime + cstime: its children that it has waited for.
    children: u64,
}

fn cpu_ticks(pid: &str) -> Option<CpuTicks> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(CpuTicks {
        own: field(14)? + field(15)?,
        system: field(15)?,
        children: field(16)? + field(17)?,
    })
}

fn process_name(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.find('(')? + 1..stat.rfind(')')?].to_string())
}

/// CPU of every process named `postgres` (postmaster, background processes, backends), with
/// the children the postmaster reaped, so a backend that exits is not lost.
fn all_postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| process_name(pid).is_some_and(|n| n.starts_with("postgres")))
        .filter_map(|pid| cpu_ticks(&pid))
        .map(|t| t.own + t.children)
        .sum()
}

/// Busy ticks of the whole machine (all cores) from `/proc/stat`.
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return 0;
    };
    // cpu user nice system idle iowait irq softirq steal
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| values.get(*i))
        .sum()
}

/// CPU ticks of each of `pids` (backends), keyed by pid.
fn ticks_by_pid(pids: &[i32]) -> HashMap<i32, CpuTicks> {
    pids.iter()
        .filter_map(|pid| cpu_ticks(&pid.to_string()).map(|t| (*pid, t)))
        .collect()
}

/// CPU used by `after`'s backends since `before` (a backend new in `after` counts whole):
/// (total, kernel part).
fn backend_delta(before: &HashMap<i32, CpuTicks>, after: &HashMap<i32, CpuTicks>) -> (u64, u64) {
    after.iter().fold((0, 0), |(own, system), (pid, ticks)| {
        let start = before.get(pid).copied().unwrap_or_default();
        (
            own + ticks.own.saturating_sub(start.own),
            system + ticks.system.saturating_sub(start.system),
        )
    })
}

/// Local ports of `pid`'s TCP connections to PostgreSQL, via its socket inodes.
fn pg_client_ports(pid: u32) -> Vec<i32> {
    let mut inodes = HashSet::new();
    if let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in entries.flatten() {
            if let Ok(target) = std::fs::read_link(entry.path())
                && let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let pg_port = format!(":{PG_PORT:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
            if !remote.ends_with(&pg_port) || !inodes.contains(*inode) {
                return None;
            }
            i32::from_str_radix(local.rsplit(':').next()?, 16).ok()
        })
        .collect()
}

/// PostgreSQL backend pids serving the given client ports.
async fn backends_for_ports(
    admin: &tokio_postgres::Client,
    ports: &[i32],
) -> anyhow::Result<Vec<i32>> {
    let rows = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1)",
            &[&ports],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

fn process_memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: value("VmRSS:"),
        hwm_kib: value("VmHWM:"),
    })
}

/// Samples a process's VmRSS every 50 ms on a thread of its own; `finish` gives the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                if let Ok(memory) = process_memory(pid) {
                    peak = peak.max(memory.rss_kib);
                }
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, handle }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Results

/// One timed run at one concurrency.
#[derive(Debug, Clone, Default)]
struct RunResult {
    label: &'static str,
    requests: u64,
    seconds: f64,
    p50_us: f64,
    p99_us: f64,
    /// The slowest request. wrk's p99 is corrected for coordinated omission: a request held
    /// D adds about D / (a connection's mean interval between requests) samples below D, so
    /// one stalled request can set p99 (docs/PERFORMANCE.md, "Stalls and p99"); `max` shows
    /// the stall itself.
    max_us: f64,
    errors: u64,
    /// CPU of the PostgreSQL backends that served the run.
    pg_backend_cpu_us: f64,
    /// The kernel part of `pg_backend_cpu_us`.
    pg_backend_system_cpu_us: f64,
    /// CPU of every `postgres` process over the run (background processes and other users too).
    pg_all_cpu_us: f64,
    /// CPU of the gateway (Sluice) or, for the direct run, of the client process itself.
    serving_cpu_us: f64,
    /// The kernel part of `serving_cpu_us`.
    serving_system_cpu_us: f64,
    /// CPU of the load generator (wrk); none for the direct run (the client is the load).
    loadgen_cpu_us: Option<f64>,
    /// Busy CPU of the whole machine over the run.
    machine_cpu_us: f64,
    /// Peak RSS of Sluice during the run.
    rss_peak_kib: Option<u64>,
    backends: usize,
}

impl RunResult {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Whose CPU `serving_cpu_us` is.
    fn serving_name(&self) -> &'static str {
        if self.label.starts_with("sluice") {
            "sluice"
        } else if self.label.starts_with("bare relay") {
            "relay"
        } else {
            "client"
        }
    }

    fn per_request(&self, cpu_us: f64) -> f64 {
        cpu_us / self.requests.max(1) as f64
    }

    /// Machine CPU not accounted to the processes measured, as a share of one core.
    fn other_load_cores(&self) -> f64 {
        let known = self.pg_all_cpu_us + self.serving_cpu_us + self.loadgen_cpu_us.unwrap_or(0.0);
        ((self.machine_cpu_us - known) / 1e6 / self.seconds).max(0.0)
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "{:.0} req/s ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; CPU us/req: {} {:.1} (kernel {:.1}), PG backends ({}) {:.1} (kernel {:.1}; all postgres {:.1})",
            self.throughput(),
            self.requests,
            self.errors,
            self.p50_us / 1000.0,
            self.p99_us / 1000.0,
            self.max_us / 1000.0,
            self.serving_name(),
            self.per_request(self.serving_cpu_us),
            self.per_request(self.serving_system_cpu_us),
            self.backends,
            self.per_request(self.pg_backend_cpu_us),
            self.per_request(self.pg_backend_system_cpu_us),
            self.per_request(self.pg_all_cpu_us),
        );
        if let Some(loadgen) = self.loadgen_cpu_us {
            text.push_str(&format!(", wrk {:.1}", self.per_request(loadgen)));
        }
        if let Some(peak) = self.rss_peak_kib {
            text.push_str(&format!("; sluice peak RSS {:.1} MiB", mib(peak)));
        }
        text.push_str(&format!(
            "; other load on the machine {:.2} cores",
            self.other_load_cores()
        ));
        text
    }
}

/// Sluice and the relay measured one right after the other (the paired phase): their
/// ratios drift less with the machine's speed than those of the long runs, which are a
/// minute apart.
#[derive(Debug, Clone, Copy)]
struct Pair {
    sluice_cpu_us: f64,
    relay_cpu_us: f64,
    sluice_per_second: f64,
    relay_per_second: f64,
}

impl Pair {
    fn of(sluice: &RunResult, relay: &RunResult) -> Pair {
        Pair {
            sluice_cpu_us: sluice.per_request(sluice.serving_cpu_us),
            relay_cpu_us: relay.per_request(relay.serving_cpu_us),
            sluice_per_second: sluice.throughput(),
            relay_per_second: relay.throughput(),
        }
    }

    fn cpu_ratio(&self) -> f64 {
        self.sluice_cpu_us / self.relay_cpu_us
    }

    fn throughput_ratio(&self) -> f64 {
        self.sluice_per_second / self.relay_per_second
    }

    fn summary(&self) -> String {
        format!(
            "Sluice {:.0} req/s, {:.1} us/req; relay {:.0} req/s, {:.1} us/req; CPU {:.2}x, throughput {:.2}x",
            self.sluice_per_second,
            self.sluice_cpu_us,
            self.relay_per_second,
            self.relay_cpu_us,
            self.cpu_ratio(),
            self.throughput_ratio()
        )
    }
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    })
}

/// Everything one run measured.
struct Results {
    settings: Settings,
    direct: RunResult,
    gateway: RunResult,
    floor: RunResult,
    relay: RunResult,
    pairs: Vec<Pair>,
    many: RunResult,
    stream: StreamResult,
    idle_kib: u64,
    warm_kib: u64,
    after_kib: u64,
}

fn report(results: &Results) {
    let Results {
        settings,
        direct,
        gateway,
        floor,
        relay,
        pairs,
        many,
        stream,
        idle_kib,
        warm_kib,
        after_kib,
    } = results;
    let (idle_kib, warm_kib, after_kib) = (*idle_kib, *warm_kib, *after_kib);
    println!(
        "\n=== Point query, concurrency {}, {} s each, {} rows ===",
        settings.concurrency, settings.seconds, settings.rows
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>15} {:>17} {:>11}",
        "", "req/s", "p50 ms", "p99 ms", "PG us/req", "client/gw us/req", "wrk us/req"
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>15} {:>17} {:>11}",
        "", "", "", "", "(kernel part)", "(kernel part)", ""
    );
    for run in [direct, gateway, relay] {
        println!(
            "{:<24} {:>8.0} {:>8.2} {:>8.2} {:>15} {:>17} {:>11}",
            run.label,
            run.throughput(),
            run.p50_us / 1000.0,
            run.p99_us / 1000.0,
            format!(
                "{:.1} ({:.1})",
                run.per_request(run.pg_backend_cpu_us),
                run.per_request(run.pg_backend_system_cpu_us)
            ),
            format!(
                "{:.1} ({:.1})",
                run.per_request(run.serving_cpu_us),
                run.per_request(run.serving_system_cpu_us)
            ),
            run.loadgen_cpu_us
                .map_or("-".to_string(), |c| format!("{:.1}", run.per_request(c)))
        );
    }
    let ratio = gateway.throughput() / relay.throughput();
    let sluice_cpu = gateway.per_request(gateway.serving_cpu_us);
    let relay_cpu = relay.per_request(relay.serving_cpu_us);
    let cpu_ratio = sluice_cpu / relay_cpu;
    let many_cpu = many.per_request(many.serving_cpu_us);
    let many_ratio = many_cpu / sluice_cpu;
    let p99_ms = gateway.p99_us / 1000.0;
    let growth = mib(stream.growth_kib());
    let many_peak = mib(many.rss_peak_kib.unwrap_or(0));
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("\n=== Targets (docs/PERFORMANCE.md), as ratios to the bare relay in this run ===");
    // The targets read the paired phase's medians when it ran: Sluice and the relay a few
    // seconds apart, in alternating order, drift less apart than the long runs.
    let (source, target_ratio, target_cpu_ratio) = match (
        median(pairs.iter().map(Pair::throughput_ratio).collect()),
        median(pairs.iter().map(Pair::cpu_ratio).collect()),
    ) {
        (Some(throughput), Some(cpu)) => {
            (format!("median of {} pairs", pairs.len()), throughput, cpu)
        }
        _ => ("long runs".to_string(), ratio, cpu_ratio),
    };
    let lines = [
        (
            format!("Throughput Sluice / relay ({source})"),
            format!("{target_ratio:.2}x"),
            format!(">= {TARGET_RELAY_RATIO}x"),
            target_ratio >= TARGET_RELAY_RATIO,
        ),
        (
            format!("CPU per request Sluice / relay ({source})"),
            format!("{target_cpu_ratio:.2}x"),
            format!("<= {TARGET_CPU_RATIO}x"),
            target_cpu_ratio <= TARGET_CPU_RATIO,
        ),
        (
            format!("p99 at c={}", settings.concurrency),
            format!("{p99_ms:.2} ms"),
            format!("< {TARGET_P99_MS} ms"),
            p99_ms < TARGET_P99_MS,
        ),
        (
            format!(
                "CPU/req {} clients / c={}",
                settings.many_clients, settings.concurrency
            ),
            format!("{many_ratio:.2}x"),
            format!("<= {TARGET_MANY_CPU_RATIO}x"),
            many_ratio <= TARGET_MANY_CPU_RATIO,
        ),
        (
            format!("Stream {} rows: RSS growth", settings.stream_rows),
            format!("{growth:.1} MiB"),
            format!("< {TARGET_STREAM_GROWTH_MIB} MiB"),
            growth < TARGET_STREAM_GROWTH_MIB,
        ),
        (
            "Idle RSS (after start-up)".to_string(),
            format!("{:.1} MiB", mib(idle_kib)),
            format!("< {TARGET_IDLE_MIB} MiB"),
            mib(idle_kib) < TARGET_IDLE_MIB,
        ),
        (
            format!("Peak RSS, {} clients", settings.many_clients),
            format!("{many_peak:.1} MiB"),
            format!("< {TARGET_MANY_MIB} MiB"),
            many_peak < TARGET_MANY_MIB,
        ),
    ];
    for (name, value, target, ok) in lines {
        println!(
            "{name:<52} {value:>12}   target {target:<12} {}",
            verdict(ok)
        );
    }
    if !pairs.is_empty() {
        let spread = |values: Vec<f64>| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{low:.2}-{high:.2}x")
        };
        println!(
            "\nPairs: CPU per request Sluice / relay {} (median {:.2}x), throughput {} (median {:.2}x); \
             the long runs of phases 2 and 4: CPU {cpu_ratio:.2}x, throughput {ratio:.2}x.",
            spread(pairs.iter().map(Pair::cpu_ratio).collect()),
            target_cpu_ratio,
            spread(pairs.iter().map(Pair::throughput_ratio).collect()),
            target_ratio,
        );
    }
    println!(
        "\nAlso: RSS {:.1} MiB with the pool of {} warm, {:.1} MiB after the {}-client run; \
         {} clients: {:.0} req/s, p99 {:.1} ms, {} errors, sluice {:.1} us/req.",
        mib(warm_kib),
        settings.pool_size,
        mib(after_kib),
        settings.many_clients,
        settings.many_clients,
        many.throughput(),
        many.p99_us / 1000.0,
        many.errors,
        many.per_request(many.serving_cpu_us),
    );
    let floor_cpu = floor.per_request(floor.serving_cpu_us);
    println!(
        "HTTP floor (GET /healthz, no database, same server): {:.0} req/s, sluice {floor_cpu:.1} us/req; \
         so the point query's database path costs Sluice {:.1} us/req (the direct client spends {:.1}).",
        floor.throughput(),
        sluice_cpu - floor_cpu,
        direct.per_request(direct.serving_cpu_us),
    );
    println!(
        "PG us/req counts the backends serving the run; all postgres processes: direct {:.1}, \
         sluice {:.1}. Other load on the machine during the runs: direct {:.2} cores, sluice {:.2} cores.",
        direct.per_request(direct.pg_all_cpu_us),
        gateway.per_request(gateway.pg_all_cpu_us),
        direct.other_load_cores(),
        gateway.other_load_cores(),
    );
    println!(
        "Bare relay (the least an HTTP gateway does; see benches/load/relay.rs): {:.0} req/s = {:.2}x direct, \
         {:.1} us/req of relay CPU. Sluice reaches {:.0}% of the relay's throughput.",
        relay.throughput(),
        relay.throughput() / direct.throughput(),
        relay.per_request(relay.serving_cpu_us),
        100.0 * gateway.throughput() / relay.throughput(),
    );
    if gateway.errors > 0
        || many.errors > 0
        || direct.errors > 0
        || floor.errors > 0
        || relay.errors > 0
    {
        println!("WARNING: some requests failed; the figures above are not valid.");
    }
}

// ---------------------------------------------------------------------------------------------
// The direct client

/// Any column value, as its raw length: lets the client touch `numeric` without a decimal type.
struct RawLen(usize);

impl<'a> FromSql<'a> for RawLen {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawLen(raw.len()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

struct Worker {
    client: tokio_postgres::Client,
    statement: tokio_postgres::Statement,
    rng: StdRng,
}

impl Worker {
    /// Runs the point query until `deadline`; returns latencies in microseconds (and errors).
    async fn run(mut self, deadline: Instant) -> (Worker, Vec<u32>, u64) {
        let mut latencies = Vec::with_capacity(1 << 16);
        let mut errors = 0;
        let mut checksum = 0usize;
        while Instant::now() < deadline {
            let customer: i32 = self.rng.random_range(1..=CUSTOMERS);
            let status = STATUSES[self.rng.random_range(0..STATUSES.len())];
            let started = Instant::now();
            match self
                .client
                .query(&self.statement, &[&customer, &status])
                .await
            {
                Ok(rows) => {
                    for row in &rows {
                        let id: i64 = row.get(0);
                        let status: &str = row.get(1);
                        let total: RawLen = row.get(2);
                        let at: chrono::DateTime<chrono::Utc> = row.get(3);
                        checksum = checksum
                            .wrapping_add(id as usize + status.len() + total.0)
                            .wrapping_add(at.timestamp_subsec_nanos() as usize);
                    }
                    latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Err(_) => errors += 1,
            }
        }
        std::hint::black_box(checksum);
        (self, latencies, errors)
    }
}

async fn run_workers(workers: Vec<Worker>, seconds: u64) -> (Vec<Worker>, Vec<u32>, u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|worker| tokio::spawn(worker.run(deadline)))
        .collect();
    let mut workers = Vec::new();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (worker, mut lats, errs) = task.await.expect("worker task");
        workers.push(worker);
        latencies.append(&mut lats);
        errors += errs;
    }
    (workers, latencies, errors)
}

async fn direct_run(settings: &Settings, ticks: u64) -> anyhow::Result<RunResult> {
    let mut workers = Vec::new();
    let mut backends = Vec::new();
    for index in 0..settings.concurrency {
        let client = pg_connect(DIRECT_APPLICATION_NAME).await?;
        let statement = client.prepare(POINT_SQL).await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        backends.push(pid);
        workers.push(Worker {
            client,
            statement,
            rng: StdRng::seed_from_u64(index as u64 + 1),
        });
    }
    let (workers, _, _) = run_workers(workers, settings.warmup_seconds).await;

    let pg_before = ticks_by_pid(&backends);
    let all_before = all_postgres_ticks();
    let self_before = cpu_ticks("self").unwrap_or_default();
    let machine_before = machine_busy_ticks();
    let started = Instant::now();
    let (workers, mut latencies, errors) = run_workers(workers, settings.seconds).await;
    let seconds = started.elapsed().as_secs_f64();
    let machine_after = machine_busy_ticks();
    let self_after = cpu_ticks("self").unwrap_or_default();
    let all_after = all_postgres_ticks();
    let pg_after = ticks_by_pid(&backends);
    let pg_cpu = backend_delta(&pg_before, &pg_after);
    drop(workers);

    latencies.sort_unstable();
    let percentile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
    };
    let us = |t: u64| t as f64 * 1e6 / ticks as f64;
    Ok(RunResult {
        label: "direct tokio-postgres",
        requests: latencies.len() as u64,
        seconds,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        max_us: latencies.last().copied().unwrap_or(0) as f64,
        errors,
        pg_backend_cpu_us: us(pg_cpu.0),
        pg_backend_system_cpu_us: us(pg_cpu.1),
        pg_all_cpu_us: us(all_after.saturating_sub(all_before)),
        serving_cpu_us: us(self_after.own.saturating_sub(self_before.own)),
        serving_system_cpu_us: us(self_after.system.saturating_sub(self_before.system)),
        loadgen_cpu_us: None,
        machine_cpu_us: us(machine_after.saturating_sub(machine_before)),
        rss_peak_kib: None,
        backends: backends.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// wrk

/// The wrk binary and the Lua script it runs.
struct Wrk {
    binary: PathBuf,
    lua: PathBuf,
}

fn ensure_wrk() -> anyhow::Result<PathBuf> {
    let found = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("wrk"))
                .find(|path| path.is_file())
        })
    };
    if let Some(path) = found() {
        return Ok(path);
    }
    println!("  wrk is missing: apt-get install -y wrk");
    let install = || {
        std::process::Command::new("apt-get")
            .args(["install", "-y", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        println!("  apt-get install failed: apt-get update, then again");
        let _ = std::process::Command::new("apt-get")
            .arg("update")
            .stdout(Stdio::null())
            .status();
        if !install() {
            bail!("could not install wrk (apt-get install -y wrk)");
        }
    }
    found().context("wrk installed but not on PATH")
}

/// wrk's figures, from the line `benches/load.lua` prints when it finishes.
#[derive(Debug, Default)]
struct WrkFigures {
    requests: u64,
    seconds: f64,
    errors: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

/// One wrk run: where, how many keep-alive connections, how long, and what.
struct Load<'a> {
    url: &'a str,
    connections: usize,
    seconds: u64,
    /// Plain GETs (the HTTP floor) instead of the point query's POSTs.
    get: bool,
    /// The caller's variables for benches/load.lua (`BENCH_COOKIE` and `BENCH_ORIGIN`, or
    /// `BENCH_AUTHORIZATION`); empty: anonymous.
    caller: &'a [(&'static str, String)],
}

async fn wrk_run(wrk: &Wrk, load: &Load<'_>) -> anyhow::Result<WrkFigures> {
    let (connections, seconds) = (load.connections, load.seconds);
    let output = tokio::process::Command::new(&wrk.binary)
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "30s",
            "--latency",
            "-s",
        ])
        .arg(&wrk.lua)
        .arg(load.url)
        .env("BENCH_CUSTOMERS", CUSTOMERS.to_string())
        .env("BENCH_MODE", if load.get { "get" } else { "post" })
        .envs(
            load.caller
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find(|l| l.starts_with("SLUICE_BENCH ")) else {
        bail!(
            "wrk printed no result line ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let values: HashMap<&str, f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key, value.parse().ok()?))
        })
        .collect();
    let get = |key: &str| values.get(key).copied().unwrap_or(0.0);
    Ok(WrkFigures {
        requests: get("requests") as u64,
        seconds: get("duration_us") / 1e6,
        errors: (get("non2xx") + get("connect") + get("read") + get("write") + get("timeout"))
            as u64,
        p50_us: get("p50_us"),
        p99_us: get("p99_us"),
        max_us: get("max_us"),
    })
}

/// The CPU counters read at both ends of a wrk run: the PostgreSQL backends serving it, all
/// of PostgreSQL, the serving process, this process (whose reaped children are wrk) and the
/// machine.
struct Counters {
    backends: HashMap<i32, CpuTicks>,
    all_postgres: u64,
    server: CpuTicks,
    this: CpuTicks,
    machine: u64,
}

impl Counters {
    /// Reads them for the server process `server` (`"self"` for the relay) and `backends`.
    fn read(server: &str, backends: &[i32]) -> anyhow::Result<Counters> {
        Ok(Counters {
            backends: ticks_by_pid(backends),
            all_postgres: all_postgres_ticks(),
            server: cpu_ticks(server).with_context(|| format!("the CPU of process {server}"))?,
            this: cpu_ticks("self").unwrap_or_default(),
            machine: machine_busy_ticks(),
        })
    }
}

/// What one wrk run measured, from its figures and the counters around it.
fn wrk_result(
    label: &'static str,
    figures: WrkFigures,
    (before, after): (&Counters, &Counters),
    ticks: u64,
    rss_peak_kib: Option<u64>,
) -> RunResult {
    let pg_cpu = backend_delta(&before.backends, &after.backends);
    let us = |t: u64| t as f64 * 1e6 / ticks as f64;
    RunResult {
        label,
        requests: figures.requests,
        seconds: figures.seconds,
        p50_us: figures.p50_us,
        p99_us: figures.p99_us,
        max_us: figures.max_us,
        errors: figures.errors,
        pg_backend_cpu_us: us(pg_cpu.0),
        pg_backend_system_cpu_us: us(pg_cpu.1),
        pg_all_cpu_us: us(after.all_postgres.saturating_sub(before.all_postgres)),
        serving_cpu_us: us(after.server.own.saturating_sub(before.server.own)),
        serving_system_cpu_us: us(after.server.system.saturating_sub(before.server.system)),
        loadgen_cpu_us: Some(us(after.this.children.saturating_sub(before.this.children))),
        machine_cpu_us: us(after.machine.saturating_sub(before.machine)),
        rss_peak_kib,
        backends: after.backends.len(),
    }
}

async fn sluice_run(
    admin: &tokio_postgres::Client,
    sluice: &Sluice,
    wrk: &Wrk,
    load: &Load<'_>,
    ticks: u64,
) -> anyhow::Result<RunResult> {
    let pid = sluice.pid.to_string();
    let backends_before = backends_for_ports(admin, &pg_client_ports(sluice.pid)).await?;
    let before = Counters::read(&pid, &backends_before)?;
    let sampler = RssSampler::start(sluice.pid);
    let figures = wrk_run(wrk, load).await?;
    let rss_peak = sampler.finish();
    let backends_after = backends_for_ports(admin, &pg_client_ports(sluice.pid)).await?;
    let after = Counters::read(&pid, &backends_after)?;
    let lost = backends_before
        .iter()
        .filter(|pid| !backends_after.contains(pid))
        .count();
    if lost > 0 {
        println!("  note: {lost} PostgreSQL backends of Sluice ended during the run");
    }
    let label = if load.get {
        "sluice GET /healthz"
    } else {
        "sluice, HTTP via wrk"
    };
    Ok(wrk_result(
        label,
        figures,
        (&before, &after),
        ticks,
        Some(rss_peak),
    ))
}

/// The bare relay under `load`. The relay runs in this process, so its CPU is this
/// process's own CPU over the run (nothing else runs here meanwhile); wrk is the child.
async fn relay_run(
    bare: &relay::Relay,
    wrk: &Wrk,
    load: &Load<'_>,
    ticks: u64,
) -> anyhow::Result<RunResult> {
    let before = Counters::read("self", &bare.backends)?;
    let figures = wrk_run(wrk, load).await?;
    let after = Counters::read("self", &bare.backends)?;
    Ok(wrk_result(
        "bare relay, via wrk",
        figures,
        (&before, &after),
        ticks,
        None,
    ))
}

// ---------------------------------------------------------------------------------------------
// Streaming

struct StreamResult {
    bytes: u64,
    seconds: f64,
    sluice_cpu_us: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    hwm_before_kib: u64,
    hwm_after_kib: u64,
}

impl StreamResult {
    fn growth_kib(&self) -> u64 {
        self.rss_peak_kib
            .max(self.rss_before_kib)
            .saturating_sub(self.rss_before_kib)
    }
}

async fn stream_run(
    http: &reqwest::Client,
    sluice: &Sluice,
    rows: u64,
    ticks: u64,
) -> anyhow::Result<StreamResult> {
    let before = process_memory(sluice.pid)?;
    let cpu_before = cpu_ticks(&sluice.pid.to_string()).context("sluice's CPU")?;
    let sampler = RssSampler::start(sluice.pid);
    let started = Instant::now();
    let response = http
        .post(sluice.url("/v1/apps/bench/queries/stream"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let status = response.status();
    let mut body = response.bytes_stream();
    let mut bytes = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("reading the stream")?;
        bytes += chunk.len() as u64;
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(64)..]);
        let keep = tail.len().saturating_sub(64);
        tail.drain(..keep);
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak = sampler.finish();
    let cpu_after = cpu_ticks(&sluice.pid.to_string()).context("sluice's CPU")?;
    let after = process_memory(sluice.pid)?;
    let expected = format!("\"row_count\":{rows}}}");
    if !status.is_success() || !tail.ends_with(expected.as_bytes()) {
        bail!(
            "the stream answered {status} and ended with `{}`, not `{expected}`",
            String::from_utf8_lossy(&tail)
        );
    }
    Ok(StreamResult {
        bytes,
        seconds,
        sluice_cpu_us: cpu_after.own.saturating_sub(cpu_before.own) as f64 * 1e6 / ticks as f64,
        rss_before_kib: before.rss_kib,
        rss_peak_kib: peak.max(after.rss_kib),
        hwm_before_kib: before.hwm_kib,
        hwm_after_kib: after.hwm_kib,
    })
}
