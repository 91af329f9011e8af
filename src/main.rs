//! The `sluice` command line: parse arguments, load configuration, run. All behaviour lives
//! in the library so tests and benchmarks use the same code.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sluice::auth::ClientInfo;
use sluice::auth::Role;
use sluice::catalog::compile;
use sluice::catalog::yaml;
use sluice::config::{self, Config, LogFormat};
use sluice::instance::Instance;
use sluice::store::SqliteStore;
use sluice::store::catalog::CatalogStore;
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
enum UserCommand {
    /// Create an account. The password is read from standard input (one line; an empty
    /// line creates the account without one: the user then sets it by password reset).
    Add {
        email: String,
        /// admin, developer or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated group names.
        #[arg(long, default_value = "")]
        groups: String,
    },
    /// List accounts.
    List,
    /// Change a role (the user's sessions end).
    SetRole { email: String, role: String },
    /// Replace a user's groups (comma-separated; the user's sessions end).
    SetGroups { email: String, groups: String },
    /// Disable an account: its sessions end and its API keys stop working.
    Disable { email: String },
    /// Enable a disabled account.
    Enable { email: String },
    /// Remove a user's MFA (lost device); an admin must enrol again at the next sign-in.
    ResetMfa { email: String },
    /// Lift a lockout (when no reset mail can be sent).
    Unlock { email: String },
}

#[derive(Subcommand)]
enum AppCommand {
    /// List the members of an app.
    Members { app: String },
    /// Add a user to an app's members.
    AddMember { app: String, email: String },
    /// Remove a user from an app's members.
    RemoveMember { app: String, email: String },
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
        Command::User { command } => user(command).await,
        Command::App { command } => app(command).await,
    }
}

/// The account service over the configured metadata store, acting as `cli`.
async fn auth_service() -> anyhow::Result<sluice::auth::service::AuthService> {
    let config = config::from_env()?;
    config.validate()?;
    let key = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.instance_key()).await??
    };
    let store: std::sync::Arc<dyn sluice::store::Store> = std::sync::Arc::new(open_store(&config)?);
    let clock: sluice::clock::SharedClock = std::sync::Arc::new(sluice::clock::SystemClock);
    let limiter = std::sync::Arc::new(sluice::policy::rate_limit::MemoryLimiter::new(
        clock.clone(),
    ));
    Ok(sluice::instance::auth_service(
        &config,
        &std::sync::Arc::new(key),
        store,
        clock,
        limiter,
    )?)
}

fn parse_role(role: &str) -> anyhow::Result<Role> {
    Role::parse(role)
        .with_context(|| format!("unknown role `{role}`: expected admin, developer or viewer"))
}

fn parse_groups(groups: &str) -> Vec<String> {
    groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

const CLI: &str = "cli";

async fn user(command: UserCommand) -> anyhow::Result<()> {
    let service = auth_service().await?;
    let client = ClientInfo::default();
    let done = match command {
        UserCommand::Add {
            email,
            role,
            name,
            groups,
        } => {
            let role = parse_role(&role)?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']).to_string();
            let password = (!password.is_empty()).then_some(password);
            service
                .create_user(&email, &name, role, parse_groups(&groups), password, CLI)
                .await?
        }
        UserCommand::List => {
            for user in service.list_users().await? {
                println!(
                    "{}\t{}\t{}\tmfa={}\t{}",
                    user.id,
                    user.email,
                    user.role,
                    user.mfa_enabled,
                    if user.disabled { "disabled" } else { "active" }
                );
            }
            return Ok(());
        }
        UserCommand::SetRole { email, role } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_role(&target.id, parse_role(&role)?, CLI, &client)
                .await?
        }
        UserCommand::SetGroups { email, groups } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_groups(&target.id, parse_groups(&groups), CLI, &client)
                .await?
        }
        UserCommand::Disable { email } => {
            let target = service.user_by_email(&email).await?;
            service.set_disabled(&target.id, true, CLI, &client).await?
        }
        UserCommand::Enable { email } => {
            let target = service.user_by_email(&email).await?;
            service
                .set_disabled(&target.id, false, CLI, &client)
                .await?
        }
        UserCommand::ResetMfa { email } => {
            let target = service.user_by_email(&email).await?;
            service.reset_mfa(&target.id, CLI, &client).await?
        }
        UserCommand::Unlock { email } => {
            let target = service.user_by_email(&email).await?;
            service.unlock(&target.id, CLI, &client).await?
        }
    };
    println!(
        "{} {} role={} groups={} {}",
        done.id,
        done.email,
        done.role,
        done.groups.join(","),
        if done.disabled { "disabled" } else { "active" }
    );
    Ok(())
}

async fn app(command: AppCommand) -> anyhow::Result<()> {
    let service = auth_service().await?;
    let client = ClientInfo::default();
    match command {
        AppCommand::Members { app } => {
            for id in service.members(&app).await? {
                let user = service.user_by_id(&id).await?;
                println!("{}\t{}", user.id, user.email);
            }
        }
        AppCommand::AddMember { app, email } => {
            let user = service.user_by_email(&email).await?;
            service.add_member(&app, &user.id, CLI, &client).await?;
            println!("{} is a member of {app}", user.email);
        }
        AppCommand::RemoveMember { app, email } => {
            let user = service.user_by_email(&email).await?;
            service.remove_member(&app, &user.id, CLI, &client).await?;
            println!("{} is no longer a member of {app}", user.email);
        }
    }
    Ok(())
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
    let defaults = config.query_defaults();
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
