//! The `sluice` command line: parse arguments, load configuration, run. All behaviour lives
//! in the library so tests and benchmarks use the same code.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sluice::catalog::compile::{self, QueryDefaults};
use sluice::catalog::yaml;
use sluice::config::{self, Config, LogFormat};
use sluice::instance::Instance;
use sluice::store::{MetadataStore, SqliteStore};
use sluice::vault::{self, Owner};
use sluice::{demo, telemetry};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A query proxy gateway for named, stored queries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the gateway, configured from the environment (see docker.env.example).
    Serve,
    /// Run a throw-away instance with SQLite sample data on 127.0.0.1.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Print a fresh encryption password and salt for docker.env.
    Keygen,
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
    /// Print the addresses to give a DBA: source addresses, public egress IPs, and each
    /// datasource's destination (JSON with --json).
    Egress {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Seal the secret read from standard input for one owner; prints `enc:v1:...`.
    Seal {
        /// Who the secret belongs to: `datasource/<name>/<field>`.
        #[arg(long)]
        owner: String,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Replace the stored catalog with FILE (all or nothing; every template must compile and
    /// every secret must open with this instance's key).
    Apply { file: PathBuf },
    /// Print the stored catalog as YAML (secrets stay sealed).
    Export,
    /// Check FILE without storing it; secrets are verified too when the key is configured.
    Check { file: PathBuf },
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
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sluice: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve().await,
        Command::Demo { listen } => run_demo(listen).await,
        Command::Keygen => {
            let (password, salt) = vault::keygen();
            println!("SLUICE_ENCRYPTION_PASSWORD={password}");
            println!("SLUICE_ENCRYPTION_SALT={salt}");
            Ok(())
        }
        Command::Secret {
            command: SecretCommand::Seal { owner },
        } => seal(&owner),
        Command::Catalog { command } => catalog(command).await,
        Command::Egress { json } => egress(json),
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = config::from_env()?;
    config.validate()?;
    telemetry::init(config.log_format, &config.log_level, std::io::stderr);
    let instance = Instance::open(config).await?;
    let listener = instance.bind().await?;
    instance
        .serve(listener, sluice::http::server::termination_signal())
        .await;
    Ok(())
}

async fn run_demo(listen: SocketAddr) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text, "info", std::io::stderr);
    let demo = demo::prepare(listen).await?;
    let listener = demo.instance.bind().await?;
    let address = listener.local_addr()?;
    println!("{}", demo::banner(address));
    demo.instance
        .serve(listener, sluice::http::server::termination_signal())
        .await;
    drop(demo.directory);
    Ok(())
}

fn seal(owner: &str) -> anyhow::Result<()> {
    let owner = Owner::parse(owner)?;
    let config = config::from_env()?;
    let key = config.instance_key()?;
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .context("reading the secret from standard input")?;
    // One trailing newline is what `echo` and here-strings add; it is not part of the secret.
    let secret = secret
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&secret);
    if secret.is_empty() {
        bail!("no secret on standard input");
    }
    println!("{}", key.seal(&owner, secret));
    Ok(())
}

async fn catalog(command: CatalogCommand) -> anyhow::Result<()> {
    let config = config::from_env()?;
    let defaults = QueryDefaults {
        timeout: config.query_timeout,
        max_rows: config.max_rows,
    };
    match command {
        CatalogCommand::Check { file } => {
            let spec = read_catalog(&file)?;
            compile::compile(&spec, defaults)?;
            if config.encryption_password.is_some() {
                compile::verify_secrets(&spec, &config.instance_key()?)?;
                println!("{}: ok (templates compile, secrets open)", file.display());
            } else {
                println!(
                    "{}: ok (templates compile; secrets not verified: SLUICE_ENCRYPTION_PASSWORD is not set)",
                    file.display()
                );
            }
            Ok(())
        }
        CatalogCommand::Apply { file } => {
            let spec = read_catalog(&file)?;
            compile::compile(&spec, defaults)?;
            compile::verify_secrets(&spec, &config.instance_key()?)?;
            let store = open_store(&config)?;
            let revision = store.replace_catalog(&spec, &file.display().to_string())?;
            println!(
                "applied {} as catalog revision {revision} ({} datasources, {} apps); \
                 send SIGHUP to a running gateway to load it",
                file.display(),
                spec.datasources.len(),
                spec.apps.len()
            );
            Ok(())
        }
        CatalogCommand::Export => {
            let store = open_store(&config)?;
            print!("{}", yaml::to_string(&store.load_catalog()?));
            Ok(())
        }
    }
}

fn egress(json: bool) -> anyhow::Result<()> {
    let config = config::from_env()?;
    let store = open_store(&config)?;
    let report = sluice::admin::egress_report(&config, &store.load_catalog()?);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let list = |items: Vec<String>, empty: &str| {
        if items.is_empty() {
            empty.to_string()
        } else {
            items.join(", ")
        }
    };
    println!(
        "Source addresses (SLUICE_EGRESS_BIND): {}",
        list(
            report
                .bind_addresses
                .iter()
                .map(|a| a.to_string())
                .collect(),
            "not set: the operating system picks per route"
        )
    );
    println!(
        "Public egress IPs (SLUICE_EGRESS_PUBLIC_IPS): {}",
        list(
            report.public_ips.iter().map(|a| a.to_string()).collect(),
            "not set"
        )
    );
    println!(
        "Instance egress allow list (SLUICE_EGRESS_ALLOW): {}",
        list(
            report.instance_allow.clone(),
            "none (public addresses only)"
        )
    );
    for datasource in &report.datasources {
        println!(
            "Datasource {} ({}): {}{}",
            datasource.name,
            datasource.kind,
            if datasource.destination.is_empty() {
                "local file"
            } else {
                &datasource.destination
            },
            if datasource.egress_allow.is_empty() {
                String::new()
            } else {
                format!(" (egress_allow: {})", datasource.egress_allow.join(", "))
            }
        );
    }
    Ok(())
}

fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    let path = config.metadata_path();
    SqliteStore::open(&path).with_context(|| format!("opening {}", path.display()))
}

fn read_catalog(file: &PathBuf) -> anyhow::Result<sluice::catalog::spec::CatalogSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    yaml::parse(&text).with_context(|| format!("{} does not parse", file.display()))
}
