//! The replicated mode of the load benchmark (`BENCH_MODE=replicated cargo bench --bench
//! load`): what the PostgreSQL metadata store costs a replica per point query, against the
//! SQLite store, for the three kinds of caller, and what shared rate limits cost.
//!
//! One `sluice serve` at a time (CPU per request is a property of one replica; the replicas
//! share only the store), each on a fresh store: SQLite (a file in a temporary directory) or
//! PostgreSQL (a fresh database `sluice_bench_meta_<pid>` on 127.0.0.1:5432, dropped at the
//! end). The catalog is the load benchmark's, plus a workspace app `team` with the same
//! point query for signed-in callers. For each store the run signs a developer in and makes
//! an API key, then drives the point query with wrk for `BENCH_REPLICATED_SECONDS` (5) each:
//! anonymous (the public app), with the session cookie, with the API key. Rate limits are
//! off in those runs (the cache is what is measured); then three more runs of the anonymous
//! caller with a per-IP limit that never refuses (10,000,000/second), so each request takes
//! a token: in memory (SQLite store), through the PostgreSQL store, through Redis
//! (127.0.0.1:6379).
//!
//! Reported: throughput, p99, Sluice's CPU per request, the PostgreSQL CPU per request
//! (all `postgres` processes: the metadata store's backends are not the datasource's), and
//! the ratios PostgreSQL store / SQLite store of Sluice's CPU per request for each caller
//! against the target (within 10 % for cached sessions and keys), and of each limits store
//! against limits in memory. It exits 0 whatever the figures.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};

use super::{
    CUSTOMERS, Extra, Load, RunResult, Settings, Sluice, Wrk, clock_ticks_per_second, create_data,
    ensure_wrk, pg_connect, sluice_run, wrk_run,
};

const TARGET_CACHED_RATIO: f64 = 1.10;
const EMAIL: &str = "bench@example.com";
const PASSWORD: &str = "correct horse battery staple 42";
const REDIS_URL: &str = "redis://127.0.0.1:6379/14";
/// Catalog text after the standard `bench` app: the same point query for signed-in callers.
const TEAM_APP: &str = "  team:
    visibility: workspace
    grants: { roles: [developer] }
    queries:
      orders:
        datasource: pg
        sql: SELECT id, status, total, created_at FROM bench_load.orders WHERE customer_id = {{ params.customer }} AND status = {{ params.status }} ORDER BY created_at DESC LIMIT 20
        params:
          customer: { type: int, required: true }
          status: { type: text, required: true, enum: [new, paid, shipped, cancelled] }
";

/// Drops `name` (with its connections) and creates it empty. Two statements: neither may
/// run inside a transaction block, which one multi-statement string would be.
async fn fresh_database(admin: &tokio_postgres::Client, name: &str) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await?;
    Ok(())
}

fn seconds() -> anyhow::Result<u64> {
    match std::env::var("BENCH_REPLICATED_SECONDS") {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("BENCH_REPLICATED_SECONDS must be positive, not `{text}`")),
        _ => Ok(5),
    }
}

/// A caller to measure: its name, the app it runs the query in, and its variables for
/// benches/load.lua.
type Caller = (&'static str, &'static str, Vec<(&'static str, String)>);

/// One measured caller on one configuration.
struct Measured {
    store: &'static str,
    caller: &'static str,
    result: RunResult,
}

/// The session cookie and an API key of the bench developer on `sluice`.
async fn sign_in(http: &reqwest::Client, sluice: &Sluice) -> anyhow::Result<(String, String)> {
    let response = http
        .post(sluice.url("/v1/auth/login"))
        .json(&serde_json::json!({ "email": EMAIL, "password": PASSWORD }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("sign-in: {}", response.status());
    }
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .context("no session cookie")?
        .to_owned();
    let response = http
        .post(sluice.url("/v1/auth/api-keys"))
        .header("cookie", &cookie)
        .header("origin", &sluice.base_url)
        .json(&serde_json::json!({ "name": "bench", "scope": { "apps": ["team"] } }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("API key: {} {}", response.status(), response.text().await?);
    }
    let key: serde_json::Value = response.json().await?;
    let key = key["key"].as_str().context("no key")?.to_owned();
    Ok((cookie, key))
}

/// Checks one request of the caller, then runs wrk for it.
#[allow(clippy::too_many_arguments)]
async fn measure(
    admin: &tokio_postgres::Client,
    http: &reqwest::Client,
    sluice: &Sluice,
    wrk: &Wrk,
    settings: &Settings,
    seconds: u64,
    app: &str,
    caller: &[(&'static str, String)],
) -> anyhow::Result<RunResult> {
    let url = sluice.url(&format!("/v1/apps/{app}/queries/orders"));
    let mut check = http
        .post(&url)
        .json(&serde_json::json!({ "params": { "customer": 7, "status": "paid" } }));
    for (name, value) in caller {
        check = match *name {
            "BENCH_COOKIE" => check.header("cookie", value),
            "BENCH_ORIGIN" => check.header("origin", value),
            _ => check.header("authorization", value),
        };
    }
    let checked = check.send().await?;
    if !checked.status().is_success() {
        bail!("{url}: {} {}", checked.status(), checked.text().await?);
    }
    let load = Load {
        url: &url,
        connections: settings.concurrency,
        seconds,
        get: false,
        caller,
    };
    wrk_run(
        wrk,
        &Load {
            seconds: settings.warmup_seconds.min(2),
            ..load
        },
    )
    .await?;
    let result = sluice_run(admin, sluice, wrk, &load, clock_ticks_per_second()).await?;
    if result.errors > 0 {
        println!("    note: {} requests were not 2xx", result.errors);
    }
    Ok(result)
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let seconds = seconds()?;
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    println!("Sluice replicated benchmark: CPU per point query by metadata store and caller");
    println!("  sluice binary: {}", binary.display());
    if binary.components().any(|c| c.as_os_str() == "debug") {
        println!("  WARNING: a debug build; run it as `cargo bench --bench load`");
    }
    println!(
        "  {} cores; wrk -t1 -c{} -d{seconds}s per run; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        settings.concurrency,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let wrk = Wrk {
        binary: ensure_wrk()?,
        lua: Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/load.lua"),
    };
    let admin = pg_connect("sluice_bench_admin").await?;
    let started = Instant::now();
    create_data(&admin, settings.rows).await?;
    println!(
        "  data: {} rows ({:.1} s); {CUSTOMERS} customers",
        settings.rows,
        started.elapsed().as_secs_f64()
    );
    let meta = format!("sluice_bench_meta_{}", std::process::id());
    fresh_database(&admin, &meta)
        .await
        .context("creating the metadata database")?;
    let meta_url = format!("postgres://postgres@127.0.0.1:5432/{meta}");
    let outcome = measure_all(&admin, &settings, seconds, &wrk, &meta_url).await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {meta} WITH (FORCE)"))
        .await;
    let measured = outcome?;
    report(&measured);
    Ok(())
}

async fn measure_all(
    admin: &tokio_postgres::Client,
    settings: &Settings,
    seconds: u64,
    wrk: &Wrk,
    meta_url: &str,
) -> anyhow::Result<Vec<Measured>> {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let http = reqwest::Client::new();
    let mut measured = Vec::new();
    let no_limits = [
        ("SLUICE_RATE_LIMIT_PER_USER", "off".to_owned()),
        ("SLUICE_RATE_LIMIT_PER_KEY", "off".to_owned()),
        ("SLUICE_AUTH_RATE_PER_MINUTE", "100000".to_owned()),
    ];
    // The stores, each with the three callers.
    for (store, url) in [("sqlite", None), ("postgres", Some(meta_url))] {
        let directory = tempfile::tempdir()?;
        let mut env = no_limits.to_vec();
        if let Some(url) = url {
            env.push(("SLUICE_METADATA_URL", url.to_owned()));
        }
        let extra = Extra {
            env,
            catalog: TEAM_APP.to_owned(),
            users: vec![(EMAIL.to_owned(), PASSWORD.to_owned())],
        };
        let sluice = Sluice::start_wrapped(&binary, directory.path(), settings, &[], &extra)
            .await
            .with_context(|| format!("starting sluice on the {store} store"))?;
        let (cookie, key) = sign_in(&http, &sluice).await?;
        let callers: [Caller; 3] = [
            ("anonymous", "bench", vec![]),
            (
                "session cookie",
                "team",
                vec![
                    ("BENCH_COOKIE", cookie.clone()),
                    ("BENCH_ORIGIN", sluice.base_url.clone()),
                ],
            ),
            (
                "API key",
                "team",
                vec![("BENCH_AUTHORIZATION", format!("Bearer {key}"))],
            ),
        ];
        println!("\n[{store} store]");
        for (caller, app, variables) in &callers {
            let result = measure(
                admin, &http, &sluice, wrk, settings, seconds, app, variables,
            )
            .await?;
            println!("  {caller:<15} {}", result.summary());
            measured.push(Measured {
                store,
                caller,
                result,
            });
        }
        drop(sluice);
        if url.is_some() {
            // The next instance starts on a fresh schema.
            let meta = meta_url.rsplit('/').next().unwrap_or_default();
            fresh_database(admin, meta).await?;
        }
    }
    // Shared rate limits: every request takes a token.
    let limit = ("SLUICE_RATE_LIMIT_PER_IP", "10000000/second".to_owned());
    for (label, url, redis) in [
        ("limits in memory", None, false),
        ("limits via postgres", Some(meta_url), false),
        ("limits via redis", Some(meta_url), true),
    ] {
        let directory = tempfile::tempdir()?;
        let mut env = no_limits.to_vec();
        env.push(limit.clone());
        if let Some(url) = url {
            env.push(("SLUICE_METADATA_URL", url.to_owned()));
        }
        if redis {
            env.push(("SLUICE_REDIS_URL", REDIS_URL.to_owned()));
        }
        let extra = Extra {
            env,
            catalog: String::new(),
            users: vec![],
        };
        let sluice = Sluice::start_wrapped(&binary, directory.path(), settings, &[], &extra)
            .await
            .with_context(|| format!("starting sluice with {label}"))?;
        println!("\n[{label}]");
        let result = measure(admin, &http, &sluice, wrk, settings, seconds, "bench", &[]).await?;
        println!("  {:<15} {}", "anonymous", result.summary());
        measured.push(Measured {
            store: label,
            caller: "anonymous",
            result,
        });
        drop(sluice);
        if url.is_some() {
            let meta = meta_url.rsplit('/').next().unwrap_or_default();
            fresh_database(admin, meta).await?;
        }
    }
    Ok(measured)
}

fn report(measured: &[Measured]) {
    let find = |store: &str, caller: &str| {
        measured
            .iter()
            .find(|m| m.store == store && m.caller == caller)
            .map(|m| &m.result)
    };
    let sluice_cpu = |r: &RunResult| r.per_request(r.serving_cpu_us);
    let pg_cpu = |r: &RunResult| r.per_request(r.pg_all_cpu_us);
    println!("\nSummary (CPU per request, microseconds; same run, same machine)");
    println!(
        "  {:<20} {:<15} {:>9} {:>8} {:>11} {:>13}",
        "store", "caller", "req/s", "p99 ms", "sluice CPU", "postgres CPU"
    );
    for m in measured {
        println!(
            "  {:<20} {:<15} {:>9.0} {:>8.2} {:>11.1} {:>13.1}",
            m.store,
            m.caller,
            m.result.throughput(),
            m.result.p99_us / 1000.0,
            sluice_cpu(&m.result),
            pg_cpu(&m.result)
        );
    }
    println!("\nPostgreSQL store against SQLite store, Sluice CPU per request:");
    for caller in ["anonymous", "session cookie", "API key"] {
        if let (Some(pg), Some(lite)) = (find("postgres", caller), find("sqlite", caller)) {
            let ratio = sluice_cpu(pg) / sluice_cpu(lite);
            let verdict = if caller == "anonymous" {
                String::new()
            } else if ratio <= TARGET_CACHED_RATIO {
                format!("  target <= {TARGET_CACHED_RATIO:.2}: PASS")
            } else {
                format!("  target <= {TARGET_CACHED_RATIO:.2}: MISS")
            };
            println!("  {caller:<15} {ratio:.3}x{verdict}");
        }
    }
    println!("\nShared rate limits against limits in memory (anonymous), CPU per request:");
    if let Some(memory) = find("limits in memory", "anonymous") {
        for label in ["limits via postgres", "limits via redis"] {
            if let Some(shared) = find(label, "anonymous") {
                println!(
                    "  {label:<20} sluice {:.3}x, postgres {:+.1} us/req, throughput {:.3}x",
                    sluice_cpu(shared) / sluice_cpu(memory),
                    pg_cpu(shared) - pg_cpu(memory),
                    shared.throughput() / memory.throughput()
                );
            }
        }
    }
}
