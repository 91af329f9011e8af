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
pub mod serve;

use anyhow::Context;
use sluice::config::Environment;

/// The configured metadata store, which must exist already (`sluice init` or `serve`
/// creates it), with its path in the error.
fn open_store(config: &sluice::config::Config) -> anyhow::Result<sluice::store::SqliteStore> {
    sluice::instance::open_store(config, sluice::instance::StoreOpening::ExistingOnly)
        .with_context(|| format!("opening {}", config.metadata_path().display()))
}

/// Warns on stderr about `SLUICE_*` names that Sluice does not read (`serve` logs them
/// instead, in the configured log format).
pub fn warn_unknown_variables(env: &Environment) {
    for variable in env.unknown_variables() {
        eprintln!("sluice: warning: {variable} is not a Sluice variable; ignored");
    }
}
