//! The real `sluice` binary as a child process, for tests of what only the process shows:
//! its command line and environment, signals, exit codes and what it logs.
//!
//! [`sluice`] builds a command with a clean environment; the caller adds the settings and
//! either runs it to the end or hands it to [`Served::start`], which serves on a free
//! loopback port with stdout and stderr captured to files, waits for `/readyz`, and kills
//! the process if the test ends without stopping it.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::test_secrets;

/// How long `serve` may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Served::terminate`] waits for the exit after `SIGTERM`.
const TERM_TIMEOUT: Duration = Duration::from_secs(10);

/// `sluice <args>` run in `dir`, with nothing in its environment but `PATH`.
pub fn sluice(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .current_dir(dir);
    command
}

/// [`sluice`] for the test instance: the key of [`test_secrets`] and its data in `dir/data`.
pub fn sluice_with_test_key(dir: &Path, args: &[&str]) -> Command {
    let (password, salt) = test_secrets();
    let mut command = sluice(dir, args);
    command
        .env("SLUICE_ENCRYPTION_PASSWORD", password)
        .env("SLUICE_ENCRYPTION_SALT", salt)
        .env("SLUICE_DATA_DIR", dir.join("data"));
    command
}

/// Runs `sluice init` for the test instance in `dir` (creates its store when missing).
pub fn init_store(dir: &Path) {
    let init = sluice_with_test_key(dir, &["init"])
        .output()
        .expect("run sluice init");
    assert!(
        init.status.success(),
        "sluice init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
}

/// Writes `catalog` to `dir/catalog.yaml` and applies it to the test instance in `dir`
/// ([`sluice_with_test_key`]; its store is created first when missing), failing the test
/// with the command's error if it is refused. Returns the command's output (for tests that
/// check what it printed).
pub fn apply_catalog(dir: &Path, catalog: &str) -> std::process::Output {
    apply_catalog_with(dir, catalog, &[])
}

/// [`apply_catalog`] with more arguments to `catalog apply` (such as `--force`, for a
/// catalog that publishes what the security scan calls critical on purpose).
pub fn apply_catalog_with(dir: &Path, catalog: &str, args: &[&str]) -> std::process::Output {
    init_store(dir);
    std::fs::write(dir.join("catalog.yaml"), catalog).expect("write catalog.yaml");
    let mut arguments = vec!["catalog", "apply", "catalog.yaml"];
    arguments.extend_from_slice(args);
    let applied = sluice_with_test_key(dir, &arguments)
        .output()
        .expect("run catalog apply");
    assert!(
        applied.status.success(),
        "catalog apply: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    applied
}

/// A port that was free a moment ago (bound on 127.0.0.1:0 and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A `sluice serve` process, killed on drop if still running.
pub struct Served {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
}

impl Served {
    /// Starts `command` (a `sluice serve`) listening on a free loopback port, and waits
    /// until `/readyz` answers 200.
    pub async fn start(command: &mut Command) -> Served {
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Served::start_at(command, address).await
    }

    /// [`Served::start`] on a chosen address (for settings that must name it beforehand,
    /// such as `SLUICE_PUBLIC_URL`).
    pub async fn start_at(command: &mut Command, address: SocketAddr) -> Served {
        let logs = tempfile::tempdir().expect("temp dir");
        let stdout = logs.path().join("serve.out");
        let stderr = logs.path().join("serve.err");
        command
            .env("SLUICE_LISTEN", address.to_string())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        let served = Served {
            address,
            client: reqwest::Client::new(),
            child: command.spawn().expect("start sluice serve"),
            stdout,
            stderr,
            _logs: logs,
        };
        served.wait_ready().await
    }

    async fn wait_ready(mut self) -> Served {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sluice serve exited ({status}) before it was ready:\n{}",
                    self.output()
                );
            }
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status().as_u16() == 200
            {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve not ready after {READY_TIMEOUT:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Everything the process wrote so far: stderr, then stdout.
    pub fn output(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        format!("{err}{out}")
    }

    /// Waits until the output holds `needle` at least `count` times; panics after `limit`.
    pub async fn wait_log(&self, needle: &str, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.output().matches(needle).count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {count} `{needle}` lines in the log after {limit:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends a signal (`TERM`, `HUP`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The process id (to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit; panics after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve still running {limit:?} after the signal:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `SIGTERM`, then waits (at most 10 s) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(TERM_TIMEOUT).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
