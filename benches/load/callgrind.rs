//! Callgrind mode (`BENCH_MODE=callgrind cargo bench --bench load`): instructions per point
//! query, counted by valgrind's callgrind, for Sluice and for the bare relay (and, on
//! request, simulated cache misses and mispredicted branches). Unlike the timed
//! figures these counts hardly depend on the machine's speed or load: only work gated by
//! time (timer wake-ups, the allocator's clean-up every 10 ms at most) moves them, by about
//! 1% between runs, so builds are compared within one run.
//!
//! Each server runs in its own process under
//! `valgrind --tool=callgrind --instr-atstart=no`: Sluice as `sluice serve`, the relay as this
//! bench program started again with `BENCH_RELAY_SERVE=<pool size>` (see [`relay_child`]).
//! This process drives it with a plain blocking HTTP/1.1 client, one request at a time on one
//! keep-alive connection to 127.0.0.1: the point query of the load bench with the same data,
//! `BENCH_CALLGRIND_WARMUP` (200) requests, then `BENCH_CALLGRIND_REQUESTS` (2,000) measured
//! ones. Customer and status are drawn from a fixed seed, so every server gets the same
//! requests.
//!
//! Only the measured requests are counted: instrumentation is off from start-up until
//! `callgrind_control -i on` after the warm-up, and `callgrind_control -i off` follows the
//! last measured response. Both commands return only once the server (idle between two
//! requests of the one client) has switched, so the count covers exactly those requests and
//! the server's idle time between them (tokio's timers, which fire little on a busy server).
//! `callgrind_control -d` then writes the counts, and the server is stopped. Subtracting a
//! warm-up-only run would also be exact in principle, but start-up (key derivation, catalog
//! load, connection set-up) would then have to cost the same in two processes, and its
//! cost is thousands of times a request's.
//!
//! The PostgreSQL side is given as the CPU time of the backends serving the server (found
//! through its sockets, as in the load bench) over the measured requests, from
//! `/proc/<pid>/schedstat` (nanoseconds). It is a time, not a count: it moves with the load
//! of the machine.
//!
//! Settings: `BENCH_CALLGRIND_REQUESTS` (2000), `BENCH_CALLGRIND_WARMUP` (200), `BENCH_ROWS`
//! (100000), `BENCH_POOL_SIZE` (1 here: one client uses one connection),
//! `BENCH_CALLGRIND_CLIENTS` (1: one at a time; N sends the requests from N connections at
//! once, each its share, so the count includes what concurrency adds: more wake-ups and
//! polls; set `BENCH_POOL_SIZE` to N too),
//! `BENCH_SLUICE_BINS` (`label=path,label=path,…`: the Sluice binaries to count, e.g. two
//! builds; default the `sluice` built with this bench), `BENCH_CALLGRIND_RELAY` (1; 0 skips
//! the relay), `BENCH_CALLGRIND_KEEP` (a directory: each server's dump is copied there as
//! `<label>.callgrind.out`, for `callgrind_annotate`), `BENCH_CALLGRIND_CACHE` (0; 1 adds
//! valgrind's cache and branch simulation, `--cache-sim=yes --branch-sim=yes`, about twice
//! as slow, and a second table: per request the first-level instruction and data cache
//! misses, last-level misses and mispredicted branches, each against the relay's).
//!
//! The simulation models the first-level caches and the last level of the machine it runs
//! on (valgrind reads their sizes from the CPU, and the report prints them), as one cache
//! for all the server's threads, without a hardware prefetcher, and only for the server's
//! own process: the kernel, PostgreSQL and the client do not evict its lines. Its counts
//! are repeatable on one kind of machine; compare them as ratios to the relay's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{CUSTOMERS, SCHEMA, STATUSES, Settings, Sluice};

/// When this variable is set the bench program serves the bare relay with that many
/// connections instead of benchmarking (the relay's process in callgrind mode).
pub const RELAY_SERVE_ENV: &str = "BENCH_RELAY_SERVE";

/// The relay's label in the figures.
const RELAY_LABEL: &str = "bare relay";

/// The line with which the relay child announces its address on stdout.
const RELAY_READY: &str = "SLUICE_BENCH_RELAY";

/// Seeds of the warm-up's and the measured requests' parameters.
const WARMUP_SEED: u64 = 1;
const MEASURED_SEED: u64 = 2;

/// Runs the relay in this process until stdin closes: the child side of callgrind mode.
pub fn relay_child(pool_size: &str) -> anyhow::Result<()> {
    let pool_size: usize = pool_size
        .trim()
        .parse()
        .with_context(|| format!("{RELAY_SERVE_ENV} must be a pool size, not `{pool_size}`"))?;
    // The same runtime as Sluice's and the load bench's: multi-thread, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let relay = runtime.block_on(super::relay::start(pool_size))?;
    let address = relay
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{RELAY_READY} {address}")?;
    stdout.flush()?;
    // The parent closes our stdin to stop us (or dies, which closes it too).
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    drop(relay);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

struct Figures {
    label: String,
    requests: u64,
    instructions: u64,
    /// The dump's totals by event name (`Ir`, and with the simulation `D1mr`, `Bcm`, ...).
    totals: Vec<(String, u64)>,
    /// The simulated caches as valgrind describes them (`I1 cache: 32768 B, ...`).
    caches: Vec<String>,
    pg_backends: usize,
    pg_cpu_ns: u64,
    seconds: f64,
}

impl Figures {
    fn per_request(&self) -> f64 {
        self.instructions as f64 / self.requests as f64
    }

    /// The sum of these events per request; `None` when the dump counted none of them (no
    /// simulation).
    fn events_per_request(&self, names: &[&str]) -> Option<f64> {
        self.totals
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, count)| *count)
            .reduce(|a, b| a + b)
            .map(|sum| sum as f64 / self.requests as f64)
    }
}

/// The simulated events the report shows per request (cache and branch simulation), each
/// as a label and the callgrind events it sums.
const SIMULATED_EVENTS: [(&str, &[&str]); 6] = [
    ("I1 misses", &["I1mr"]),
    ("D1 misses", &["D1mr", "D1mw"]),
    ("D1 writes", &["D1mw"]),
    ("LL misses", &["ILmr", "DLmr", "DLmw"]),
    ("mispredicts", &["Bcm", "Bim"]),
    ("indirect", &["Bim"]),
];

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let requests = number("BENCH_CALLGRIND_REQUESTS", 2000)?;
    let warmup = number("BENCH_CALLGRIND_WARMUP", 200)?;
    let with_relay = number_or_zero("BENCH_CALLGRIND_RELAY", 1)? > 0;
    let simulate = number_or_zero("BENCH_CALLGRIND_CACHE", 0)? > 0;
    let pool_size = match std::env::var("BENCH_POOL_SIZE") {
        Ok(text) if !text.trim().is_empty() => settings.pool_size,
        _ => 1,
    };
    let settings = Settings {
        pool_size,
        ..settings
    };
    let sluices = sluice_binaries()?;
    let keep = std::env::var_os("BENCH_CALLGRIND_KEEP").map(PathBuf::from);
    if let Some(keep) = &keep {
        std::fs::create_dir_all(keep)
            .with_context(|| format!("BENCH_CALLGRIND_KEEP: creating {}", keep.display()))?;
    }

    println!("Sluice callgrind benchmark: instructions per point query");
    let version = check_valgrind()?;
    let clients = number("BENCH_CALLGRIND_CLIENTS", 1)?;
    if simulate {
        println!("  with valgrind's cache and branch simulation (BENCH_CALLGRIND_CACHE)");
    }
    if clients == 1 {
        println!(
            "  {version}; {warmup} warm-up requests, then {requests} counted, one at a time on one keep-alive connection"
        );
    } else {
        println!(
            "  {version}; {warmup} warm-up requests, then {requests} counted, from {clients} keep-alive connections at once"
        );
    }
    println!("  pool size {}; {} rows", settings.pool_size, settings.rows);
    for (label, path) in &sluices {
        println!("  sluice [{label}]: {}", path.display());
    }
    let this = std::env::current_exe().context("this bench program's path")?;
    println!("  relay: {} ({RELAY_SERVE_ENV})", this.display());

    let admin = super::pg_connect("sluice_bench_admin").await?;
    let started = Instant::now();
    // The same data as the load bench's, but the same from run to run: the generator of
    // random() is seeded for this session, which creates the rows.
    admin
        .batch_execute("SELECT setseed(0.5)")
        .await
        .context("seeding random()")?;
    super::create_data(&admin, settings.rows).await?;
    println!(
        "  data: {SCHEMA}.orders, {} rows ({:.1} s)",
        settings.rows,
        started.elapsed().as_secs_f64()
    );

    let work = tempfile::tempdir().context("temporary directory")?;
    let mut results = Vec::new();
    for (index, (label, binary)) in sluices.iter().enumerate() {
        let dir = work.path().join(format!("sluice-{index}"));
        std::fs::create_dir_all(&dir)?;
        let out = dir.join("callgrind.out");
        println!("\n[sluice {label}] starting under callgrind");
        let mut sluice = Sluice::start_wrapped(
            binary,
            &dir,
            &settings,
            &valgrind_command(&dir, &out, simulate),
            &super::Extra::default(),
        )
        .await?;
        let address: SocketAddr = sluice
            .base_url
            .trim_start_matches("http://")
            .parse()
            .context("sluice's address")?;
        let figures = measure(
            &admin,
            format!("sluice ({label})"),
            sluice.pid,
            address,
            "/v1/apps/bench/queries/orders",
            (warmup, requests),
            &out,
        )
        .await?;
        // Longer than the default: valgrind is slow to drain and exit.
        sluice.stop_within(Duration::from_secs(30));
        keep_dump(keep.as_deref(), &out, &format!("sluice-{label}"))?;
        print_one(&figures);
        results.push(figures);
    }
    if with_relay {
        let dir = work.path().join("relay");
        std::fs::create_dir_all(&dir)?;
        let out = dir.join("callgrind.out");
        println!("\n[bare relay] starting under callgrind");
        let (child, address) = start_relay(&this, &dir, &out, settings.pool_size, simulate)?;
        let pid = child.0.id();
        let figures = measure(
            &admin,
            RELAY_LABEL.to_string(),
            pid,
            address,
            "/",
            (warmup, requests),
            &out,
        )
        .await?;
        drop(child);
        keep_dump(keep.as_deref(), &out, "relay")?;
        print_one(&figures);
        results.push(figures);
    }

    let _ = admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await;
    report(&results, simulate);
    Ok(())
}

/// Copies a server's dump to `keep` (when set) as `<name>.callgrind.out`.
fn keep_dump(keep: Option<&Path>, out: &Path, name: &str) -> anyhow::Result<()> {
    let Some(keep) = keep else {
        return Ok(());
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let target = keep.join(format!("{name}.callgrind.out"));
    std::fs::copy(&dump, &target)
        .with_context(|| format!("copying {} to {}", dump.display(), target.display()))?;
    println!("  dump kept: {}", target.display());
    Ok(())
}

fn number(name: &str, default: u64) -> anyhow::Result<u64> {
    let value = number_or_zero(name, default)?;
    if value == 0 {
        bail!("{name} must be a positive integer");
    }
    Ok(value)
}

fn number_or_zero(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{name} must be an integer, not `{text}`")),
        _ => Ok(default),
    }
}

/// The Sluice binaries to count: `BENCH_SLUICE_BINS`, or the one built with this bench.
fn sluice_binaries() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    let Ok(list) = std::env::var("BENCH_SLUICE_BINS") else {
        return Ok(vec![(target_dir_of(&built), built)]);
    };
    list.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            let (label, path) = item
                .split_once('=')
                .with_context(|| format!("BENCH_SLUICE_BINS: `{item}` is not label=path"))?;
            let path = PathBuf::from(path.trim());
            if !path.is_file() {
                bail!("BENCH_SLUICE_BINS: {} is not a file", path.display());
            }
            Ok((label.trim().to_string(), path))
        })
        .collect()
}

/// `target/<directory>` of a binary. Not the profile's name: cargo writes bench-profile
/// builds to `target/release`.
fn target_dir_of(binary: &Path) -> String {
    let directory = binary
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "?".into(), |name| name.to_string_lossy().into_owned());
    format!("target/{directory}")
}

/// Fails loudly when valgrind or callgrind_control is missing; returns valgrind's version.
fn check_valgrind() -> anyhow::Result<String> {
    let missing = "valgrind is needed for BENCH_MODE=callgrind (apt-get install -y valgrind)";
    let output = Command::new("valgrind")
        .arg("--version")
        .output()
        .context(missing)?;
    if !output.status.success() {
        bail!("{missing}: `valgrind --version` failed");
    }
    let status = Command::new("callgrind_control")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context(missing)?;
    if !status.success() {
        bail!("{missing}: `callgrind_control --version` failed");
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// valgrind and its arguments: callgrind, instrumentation off until `callgrind_control -i on`,
/// its counts to `out`, its own messages to a log file in `dir`; with `simulate`, the cache
/// and branch simulation too.
fn valgrind_command(dir: &Path, out: &Path, simulate: bool) -> Vec<String> {
    let mut command: Vec<String> = vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}", out.display()),
        format!("--log-file={}", dir.join("valgrind.log").display()),
    ];
    if simulate {
        command.extend(["--cache-sim=yes", "--branch-sim=yes"].map(String::from));
    }
    command
}

/// The relay's process; it is stopped (stdin closed, then killed) when this drops.
struct RelayChild(Child);

impl Drop for RelayChild {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this program as the relay under callgrind and waits for its address.
fn start_relay(
    this: &Path,
    dir: &Path,
    out: &Path,
    pool_size: usize,
    simulate: bool,
) -> anyhow::Result<(RelayChild, SocketAddr)> {
    let valgrind = valgrind_command(dir, out, simulate);
    let mut child = RelayChild(
        Command::new(&valgrind[0])
            .args(&valgrind[1..])
            .arg(this)
            .env(RELAY_SERVE_ENV, pool_size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the relay under valgrind")?,
    );
    let stdout = child.0.stdout.take().context("the relay's stdout")?;
    // A thread reads the announcement, so a relay that hangs cannot hang the bench.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(300))
        .context("the relay did not start within 300 s")?;
    let address = line
        .strip_prefix(RELAY_READY)
        .map(str::trim)
        .with_context(|| {
            format!(
                "the relay did not start: `{}` (see {})",
                line.trim(),
                dir.join("valgrind.log").display()
            )
        })?
        .parse()
        .context("the relay's address")?;
    Ok((child, address))
}

/// Warms up `server`, counts `requests` point queries under callgrind, and dumps the counts.
async fn measure(
    admin: &tokio_postgres::Client,
    label: String,
    pid: u32,
    address: SocketAddr,
    path: &str,
    (warmup, requests): (u64, u64),
    out: &Path,
) -> anyhow::Result<Figures> {
    if !address.ip().is_loopback() {
        bail!("refusing to send traffic to {address}: loopback only");
    }
    let clients = number("BENCH_CALLGRIND_CLIENTS", 1)?;
    let mut connections = (0..clients)
        .map(|_| HttpClient::connect(address, path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The warm-up as the counted run: from every connection at once, so that Sluice's pool
    // opens the connections it will use before the count starts (one client after another it
    // would open one; the count would include opening the others, and their backends would
    // be missing from the PostgreSQL figure).
    send_all(&mut connections, warmup.div_ceil(clients), WARMUP_SEED)?;
    let backends = super::backends_for_ports(admin, &super::pg_client_ports(pid)).await?;
    let pg_before = schedstat_ns(&backends);
    callgrind_control(pid, &["-i", "on"]).await?;
    let started = Instant::now();
    // One client: the requests one at a time. More: each client its share at once, on its
    // own connection and thread (the interleaving a loaded server sees).
    let share = requests / clients;
    if share == 0 {
        bail!(
            "BENCH_CALLGRIND_REQUESTS ({requests}) must be at least BENCH_CALLGRIND_CLIENTS ({clients})"
        );
    }
    let requests = share * clients;
    send_all(&mut connections, share, MEASURED_SEED)?;
    callgrind_control(pid, &["-i", "off"]).await?;
    let seconds = started.elapsed().as_secs_f64();
    let pg_after = schedstat_ns(&backends);
    callgrind_control(pid, &["-d"]).await?;
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let Dump { totals, caches } = read_dump(&dump)?;
    let instructions = totals
        .iter()
        .find(|(name, _)| name == "Ir")
        .map(|(_, count)| *count)
        .with_context(|| format!("no instruction count (Ir) in {}", dump.display()))?;
    Ok(Figures {
        label,
        requests,
        instructions,
        totals,
        caches,
        pg_backends: backends.len(),
        pg_cpu_ns: pg_after.saturating_sub(pg_before),
        seconds,
    })
}

/// Sends `share` point queries on each connection: one connection, one at a time; more,
/// each from its own thread at once (the interleaving a loaded server sees). Connection `i`
/// draws its params from the seed `seed + i`. Every client is joined before the first
/// failure is reported.
fn send_all(connections: &mut [HttpClient], share: u64, seed: u64) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let running: Vec<_> = connections
            .iter_mut()
            .zip(seed..)
            .map(|(client, seed)| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut rng = StdRng::seed_from_u64(seed);
                    for _ in 0..share {
                        client.point_query(&mut rng)?;
                    }
                    Ok(())
                })
            })
            .collect();
        let outcomes: Vec<anyhow::Result<()>> = running
            .into_iter()
            .map(|client| {
                client
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect();
        outcomes.into_iter().collect::<anyhow::Result<()>>()
    })
}

/// Runs `callgrind_control <args> <pid>`, with a time limit.
async fn callgrind_control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let command = tokio::process::Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), command)
        .await
        .with_context(|| format!("callgrind_control {} {pid} took over 120 s", args.join(" ")))?
        .context("running callgrind_control")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !stdout.contains("OK") {
        bail!(
            "callgrind_control {} {pid} failed ({}): {stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// What the report needs of a callgrind dump.
struct Dump {
    totals: Vec<(String, u64)>,
    caches: Vec<String>,
}

/// The totals of a callgrind dump by event, from its `events:` and `totals:` lines (the sum
/// of the costs in the dump; its `summary:` line stays 0 when instrumentation started off),
/// and the simulated caches from its `desc:` lines.
fn read_dump(dump: &Path) -> anyhow::Result<Dump> {
    // The dump is written by the server's process; give it a moment to appear in full.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(dump)
            && let Some(values) = text.lines().find_map(|line| line.strip_prefix("totals:"))
        {
            let names = text
                .lines()
                .find_map(|line| line.strip_prefix("events:"))
                .with_context(|| format!("no `events:` line in {}", dump.display()))?;
            // Callgrind leaves out the zero counts at the end of the line.
            let mut counts = values.split_whitespace();
            let totals = names
                .split_whitespace()
                .map(|name| {
                    let value = counts.next().unwrap_or("0");
                    let count = value.parse::<u64>().with_context(|| {
                        format!("`{value}` ({name}) is not a count in {}", dump.display())
                    })?;
                    Ok((name.to_string(), count))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if counts.next().is_some() {
                bail!("more totals than events in {}", dump.display());
            }
            let caches = text
                .lines()
                .filter_map(|line| line.strip_prefix("desc: "))
                .filter(|desc| desc.contains(" cache: "))
                .map(str::to_string)
                .collect();
            return Ok(Dump { totals, caches });
        }
        if Instant::now() > deadline {
            bail!("callgrind wrote no dump at {}", dump.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The CPU time of these processes so far, in nanoseconds (`/proc/<pid>/schedstat`).
fn schedstat_ns(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok())
        .filter_map(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A minimal blocking HTTP/1.1 client on one keep-alive connection.
struct HttpClient {
    stream: BufReader<TcpStream>,
    head: String,
}

impl HttpClient {
    fn connect(address: SocketAddr, path: &str) -> anyhow::Result<HttpClient> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        // Under callgrind a request takes milliseconds; a stuck server must still not hang us.
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
        );
        Ok(HttpClient {
            stream: BufReader::new(stream),
            head,
        })
    }

    /// One point query with a random customer and status; fails unless it answers 200 with
    /// rows.
    fn point_query(&mut self, rng: &mut StdRng) -> anyhow::Result<()> {
        let customer = rng.random_range(1..=CUSTOMERS);
        let status = STATUSES[rng.random_range(0..STATUSES.len())];
        let body = format!(r#"{{"params":{{"customer":{customer},"status":"{status}"}}}}"#);
        let request = format!("{}Content-Length: {}\r\n\r\n{body}", self.head, body.len());
        self.stream.get_mut().write_all(request.as_bytes())?;
        let (status_code, response) = self.read_response()?;
        if status_code != 200 || !contains(&response, b"\"row_count\":") {
            bail!(
                "the point query answered {status_code}: {}",
                String::from_utf8_lossy(&response)
            );
        }
        Ok(())
    }

    /// Reads one response: its status and body (Content-Length or chunked).
    fn read_response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP response: `{}`", line.trim()))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                bail!("the connection closed mid-response");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().context("Content-Length")?);
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .context("a chunk size")?;
                let start = body.len();
                body.resize(start + size, 0);
                self.stream.read_exact(&mut body[start..])?;
                line.clear();
                self.stream.read_line(&mut line)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let length = length.context("a response with neither length nor chunks")?;
            body.resize(length, 0);
            self.stream.read_exact(&mut body)?;
        }
        Ok((status, body))
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn print_one(figures: &Figures) {
    println!(
        "  {} requests: {} instructions, {:.0} per request ({:.1} s under callgrind); PostgreSQL: {} backend(s), {:.1} us CPU per request",
        figures.requests,
        figures.instructions,
        figures.per_request(),
        figures.seconds,
        figures.pg_backends,
        figures.pg_cpu_ns as f64 / 1000.0 / figures.requests as f64
    );
}

fn report(results: &[Figures], simulate: bool) {
    let relay = results
        .iter()
        .find(|f| f.label == RELAY_LABEL)
        .map(Figures::per_request);
    println!("\n== Instructions per point query (callgrind, serving process only) ==");
    println!(
        "{:<28} {:>9} {:>16} {:>12} {:>9} {:>14}",
        "server", "requests", "instructions", "Ir/request", "vs relay", "PG CPU us/req"
    );
    for figures in results {
        let ratio = relay.map_or_else(
            || "-".into(),
            |r| format!("{:.2}x", figures.per_request() / r),
        );
        println!(
            "{:<28} {:>9} {:>16} {:>12.0} {:>9} {:>14.1}",
            figures.label,
            figures.requests,
            figures.instructions,
            figures.per_request(),
            ratio,
            figures.pg_cpu_ns as f64 / 1000.0 / figures.requests as f64
        );
    }
    if let Some(relay) = relay {
        for figures in results.iter().filter(|f| f.label != RELAY_LABEL) {
            let ratio = figures.per_request() / relay;
            println!(
                "target: {} <= 1.2x the relay: {:.2}x {}",
                figures.label,
                ratio,
                if ratio <= 1.2 { "PASS" } else { "MISS" }
            );
        }
    }
    println!(
        "(PG CPU: the serving PostgreSQL backends' CPU time from /proc/<pid>/schedstat; a time, not a count)"
    );
    if simulate {
        report_simulated(results);
    }
}

/// The cache and branch simulation's events per request, each with its ratio to the
/// relay's.
fn report_simulated(results: &[Figures]) {
    let relay = results.iter().find(|f| f.label == RELAY_LABEL);
    println!("\n== Simulated cache misses and mispredicted branches per point query ==");
    if let Some(first) = results.first() {
        for cache in &first.caches {
            println!("  simulated {cache}");
        }
    }
    print!("{:<28}", "server");
    for (label, _) in SIMULATED_EVENTS {
        print!(" {label:>12} {:>8}", "vs relay");
    }
    println!();
    for figures in results {
        print!("{:<28}", figures.label);
        for (_, events) in SIMULATED_EVENTS {
            let count = figures.events_per_request(events);
            let ratio = relay
                .and_then(|relay| relay.events_per_request(events))
                .zip(count)
                .filter(|(relay, _)| *relay > 0.0)
                .map_or_else(
                    || "-".into(),
                    |(relay, count)| format!("{:.2}x", count / relay),
                );
            match count {
                Some(count) => print!(" {count:>12.1} {ratio:>8}"),
                None => print!(" {:>12} {ratio:>8}", "-"),
            }
        }
        println!();
    }
    println!(
        "(one simulated cache for all the server's threads, no prefetcher, the server's process only; a first-level miss mostly hits the second-level cache, which is not simulated: LL is the last level)"
    );
}
