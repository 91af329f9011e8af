//! The subcommands of the `sluice` binary, one module per family. Part of the binary, not
//! the library: they parse arguments, print, and turn errors into exit codes with `anyhow`.

pub mod accounts;
pub mod catalog;
pub mod egress;
pub mod serve;

use anyhow::Context;

/// The configured metadata store, with its path in the error.
fn open_store(config: &sluice::config::Config) -> anyhow::Result<sluice::store::SqliteStore> {
    sluice::instance::open_store(config)
        .with_context(|| format!("opening {}", config.metadata_path().display()))
}
