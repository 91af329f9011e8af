//! The subcommands of the `sluice` binary, one module per family. Part of the binary, not
//! the library: they parse arguments, print, and turn errors into exit codes with `anyhow`.

pub mod accounts;
pub mod audit;
pub mod backup;
pub mod catalog;
pub mod datasource;
pub mod egress;
pub mod healthcheck;
pub mod key;
pub mod scan;
pub mod serve;

use anyhow::Context;
use sluice::config::Environment;

/// The configured metadata store, which must exist already (`sluice init` or `serve`
/// creates a SQLite one), with its name (a path, or the URL without its password) in the
/// error.
fn open_store(config: &sluice::config::Config) -> anyhow::Result<sluice::instance::MetadataStore> {
    sluice::instance::open_store(config, sluice::instance::StoreOpening::ExistingOnly)
        .with_context(|| format!("opening {}", sluice::instance::store_name(config)))
}

/// The configured store as the SQLite file, for what only a file can do (backup, restore);
/// on PostgreSQL a clear refusal naming what to use instead.
fn sqlite_only(config: &sluice::config::Config, command: &str) -> anyhow::Result<()> {
    if config.metadata_url.is_some() {
        anyhow::bail!(
            "`sluice {command}` copies the SQLite store file; this instance uses PostgreSQL              (SLUICE_METADATA_URL): back it up with pg_dump and restore with pg_restore              (see docs/SCALE_OUT.md)"
        );
    }
    Ok(())
}

/// Warns on stderr about `SLUICE_*` names that Sluice does not read (`serve` logs them
/// instead, in the configured log format).
pub fn warn_unknown_variables(env: &Environment) {
    for variable in env.unknown_variables() {
        eprintln!("sluice: warning: {variable} is not a Sluice variable; ignored");
    }
}
