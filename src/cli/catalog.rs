//! `sluice catalog ...` and `sluice secret seal`: the catalog as YAML (check, apply,
//! export) and sealing a secret for its owner. `apply` compiles and verifies every secret
//! and TLS file exactly as serving will (`snapshot::verify_secrets`, `verify_tls`) before it
//! stores anything.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use sluice::catalog::compile;
use sluice::config::Environment;
use sluice::spec::yaml;
use sluice::store::catalog::CatalogStore;
use sluice::vault::Owner;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Seal the secret read from standard input for one owner; prints `enc:v1:...`.
    Seal {
        /// Who the secret belongs to: `datasource/<name>/<field>`.
        #[arg(long)]
        owner: String,
    },
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Replace the stored catalog with FILE (all or nothing; every template must compile and
    /// every secret must open with this instance's key).
    Apply { file: PathBuf },
    /// Print the stored catalog as YAML (secrets stay sealed).
    Export,
    /// Check FILE without storing it; secrets are verified too when the key is configured.
    Check { file: PathBuf },
}

pub fn seal(env: &Environment, owner: &str) -> anyhow::Result<()> {
    let owner = Owner::parse(owner)?;
    let config = env.config()?;
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

pub async fn catalog(env: &Environment, command: CatalogCommand) -> anyhow::Result<()> {
    let config = env.config()?;
    let defaults = config.query_defaults();
    match command {
        CatalogCommand::Check { file } => {
            let spec = read_catalog(&file)?;
            compile::compile(&spec, defaults)?;
            if config.encryption_password.is_some() {
                let key = config.instance_key()?;
                sluice::snapshot::verify_secrets(&spec, &key)?;
                sluice::snapshot::verify_tls(&spec, Some(&key))?;
                println!("{}: ok (templates compile, secrets open)", file.display());
            } else {
                sluice::snapshot::verify_tls(&spec, None)?;
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
            let key = config.instance_key()?;
            sluice::snapshot::verify_secrets(&spec, &key)?;
            sluice::snapshot::verify_tls(&spec, Some(&key))?;
            let store = super::open_store(&config)?;
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
            let store = super::open_store(&config)?;
            print!("{}", yaml::to_string(&store.load_catalog()?));
            Ok(())
        }
    }
}

fn read_catalog(file: &PathBuf) -> anyhow::Result<sluice::spec::CatalogSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    yaml::parse(&text).with_context(|| format!("{} does not parse", file.display()))
}
