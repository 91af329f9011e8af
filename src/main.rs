//! The `sluice` command line: parse arguments, start the runtime, run one subcommand
//! (`cli/`). Each subcommand is a few lines over the library (instance wiring, account
//! service, snapshot checks), so tests and benchmarks use the same code. `anyhow` is used
//! here and in `cli/` only.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cli::accounts::{AppCommand, UserCommand};
use cli::audit::AuditCommand;
use cli::catalog::{CatalogCommand, SecretCommand};
use cli::datasource::DatasourceCommand;
use cli::key::KeyCommand;
use sluice::config::Environment;
use sluice::vault;

/// jemalloc, with its background thread, instead of the system allocator: after a wave of
/// slow connections (docs/SECURITY.md, "Slow clients and connection limits") glibc's malloc
/// kept the freed per-connection buffers (RSS crept up wave after wave), while jemalloc
/// returns them to the system within seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version = sluice::VERSION,
    about = "A query proxy gateway for named, stored queries"
)]
struct Cli {
    /// Read SLUICE_* variables from FILE, in Docker's env-file format: NAME=VALUE lines,
    /// values taken literally (no quotes, no `$` expansion). A variable already set in the
    /// environment wins over the file.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway, configured from the environment and --env-file (see
    /// docker.env.example).
    Serve,
    /// Create the data directory and the metadata store (SLUICE_DATA_DIR or
    /// SLUICE_METADATA_DB) if they do not exist; the other commands refuse to create one.
    Init,
    /// Run a throw-away instance with SQLite sample data on 127.0.0.1.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Print a fresh encryption password and salt for docker.env.
    Keygen,
    /// Rotate the instance key (re-seal every secret under the current key) or show which
    /// keys the stored secrets are sealed under.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Work with sealed secrets.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Apply, export or check the catalog (datasources, apps, queries) as YAML.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Test a datasource's connection step by step.
    Datasource {
        #[command(subcommand)]
        command: DatasourceCommand,
    },
    /// Manage user accounts (the first admin is created here).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage who may use a private app.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Write a consistent copy of the metadata store to FILE (safe while a gateway serves;
    /// FILE must not exist). Keep the instance key with it.
    Backup { file: PathBuf },
    /// Replace the metadata store with the backup FILE, after checking it and that its
    /// secrets open with this instance key; the current store is saved beside itself first.
    Restore { file: PathBuf },
    /// Print the addresses to give a DBA: source addresses, public egress IPs, and each
    /// datasource's destination (JSON with --json).
    Egress {
        #[arg(long)]
        json: bool,
    },
    /// Scan the catalog (stored, or --catalog FILE before applying it) and the settings for
    /// data left too open, login gaps, exposed credentials and weak settings (docs/SECURITY.md,
    /// "Security scan"); --format text|json|sarif; --fail-on SEVERITY exits 1 on a finding
    /// that bad or worse; --advisory-db PATH checks the build's dependencies against a
    /// RustSec advisory-db checkout (offline).
    Scan {
        #[arg(long)]
        catalog: Option<PathBuf>,
        #[arg(long)]
        advisory_db: Option<PathBuf>,
        #[arg(long, default_value = "text")]
        format: String,
        #[arg(long)]
        fail_on: Option<String>,
    },
    /// Check the audit log (its hash chain).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Exit 0 if this instance answers GET /healthz with 200, else 1 (for container
    /// HEALTHCHECKs): plain HTTP to SLUICE_LISTEN, 0.0.0.0 and [::] read as loopback.
    Healthcheck {
        /// The URL to ask instead, e.g. https://sluice.internal:8443/healthz.
        #[arg(long)]
        url: Option<String>,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 3000)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let env = Environment::load(cli.env_file.as_deref())?;
    if !matches!(cli.command, Command::Serve | Command::Healthcheck { .. }) {
        cli::warn_unknown_variables(&env);
    }
    match cli.command {
        Command::Serve => cli::serve::serve(&env).await,
        Command::Init => cli::serve::init(&env),
        Command::Demo { listen } => cli::serve::run_demo(listen).await,
        Command::Keygen => {
            let (password, salt) = vault::keygen();
            println!("SLUICE_ENCRYPTION_PASSWORD={password}");
            println!("SLUICE_ENCRYPTION_SALT={salt}");
            Ok(())
        }
        Command::Secret {
            command: SecretCommand::Seal { owner },
        } => cli::catalog::seal(&env, &owner),
        Command::Catalog { command } => cli::catalog::catalog(&env, command).await,
        Command::Key { command } => cli::key::key(&env, command).await,
        Command::Backup { file } => cli::backup::backup(&env, &file),
        Command::Restore { file } => cli::backup::restore(&env, &file),
        Command::Egress { json } => cli::egress::egress(&env, json),
        Command::Datasource { command } => cli::datasource::datasource(&env, command).await,
        Command::User { command } => cli::accounts::user(&env, command).await,
        Command::App { command } => cli::accounts::app(&env, command).await,
        Command::Audit { command } => cli::audit::audit(&env, command),
        Command::Scan {
            catalog,
            advisory_db,
            format,
            fail_on,
        } => cli::scan::scan(
            &env,
            catalog,
            advisory_db.as_deref(),
            &format,
            fail_on.as_deref(),
        ),
        Command::Healthcheck { url, timeout_ms } => {
            cli::healthcheck::healthcheck(&env, url, Duration::from_millis(timeout_ms)).await
        }
    }
}
