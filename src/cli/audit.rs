//! `sluice audit verify [--file BACKUP]`: walks the audit log's hash chain and names the
//! first broken link (exit 1), or prints how many entries verified and the last hash.
//!
//! The configured store is opened as the other commands open it; `--file` opens a backup
//! (or any copy of a store) read-only instead, without migrating it, so a copy kept
//! elsewhere can be checked as it is. Keep the printed last hash somewhere else (or rely
//! on the SIEM's copy): a chain proves entries were not changed or removed in the middle,
//! and its head shows whether the newest were; someone able to rewrite the whole file can
//! rewrite the whole chain, which only a copy kept elsewhere reveals.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use sluice::config::Environment;
use sluice::store::audit::{self, VerifyError};
use sluice::store::{SqliteStore, Store};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain: every entry unchanged, none missing, in order.
    /// Exit 1 naming the first broken link; prints the count and the last hash when intact.
    Verify {
        /// A backup (or copy) of the metadata store to check instead of the configured
        /// store; opened read-only.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

pub fn audit(env: &Environment, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { file } => verify(env, file),
    }
}

fn verify(env: &Environment, file: Option<PathBuf>) -> anyhow::Result<()> {
    let (store, name): (Arc<dyn Store>, String) = match file {
        Some(file) => (
            Arc::new(
                SqliteStore::open_read_only(&file)
                    .with_context(|| format!("opening {}", file.display()))?,
            ),
            file.display().to_string(),
        ),
        None => {
            let config = env.config()?;
            let store = super::open_store(&config)?;
            let name = store.describe();
            (store.shared(), name)
        }
    };
    match audit::verify(store.as_ref()) {
        Ok(verified) => {
            println!(
                "audit log of {name} intact: {} entries verified, last entry {}, last hash {}",
                verified.entries, verified.last_id, verified.last_hash
            );
            if verified.anchor_id > 0 {
                let when = verified
                    .anchor_at
                    .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
                    .map(|at| format!(" (last pruned {})", at.to_rfc3339()))
                    .unwrap_or_default();
                println!(
                    "entries up to {} were pruned by retention{when}; the chain starts from \
                     that entry's hash",
                    verified.anchor_id
                );
            }
            Ok(())
        }
        Err(VerifyError::Broken(broken)) => {
            bail!("audit log of {name} is broken at {broken}")
        }
        Err(VerifyError::Store(error)) => {
            Err(error).with_context(|| format!("reading the audit log of {name}"))
        }
    }
}
