//! `sluice key rotate` and `sluice key status`: re-seal every stored secret under the current
//! instance key (`rotation::rotate`, in batches, each one transaction, so a crash at any
//! moment leaves every value under the old or the new key and a rerun finishes), and count
//! the sealed values per key id. Prints key ids, counts and the owners of values that could
//! not be re-sealed; never a value.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;
use sluice::audit::Audit;
use sluice::auth::ClientInfo;
use sluice::clock::SystemClock;
use sluice::config::Environment;
use sluice::rotation::{self, DEFAULT_BATCH_SIZE, KeyRole, KeyStatus, RotateOptions};

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Re-seal every secret sealed under the old key (SLUICE_ENCRYPTION_PASSWORD_OLD and
    /// SLUICE_ENCRYPTION_SALT_OLD) with the current one: datasource secrets in the catalog and
    /// in every catalog revision, and TOTP secrets. Safe to interrupt and to run again.
    Rotate {
        /// Rows re-sealed per transaction.
        #[arg(long, default_value_t = DEFAULT_BATCH_SIZE as u32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        batch_size: u32,
        /// Pause after each batch, in milliseconds, to spread the writes of a large store
        /// over time (0: none).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        pause_ms: u64,
    },
    /// Count the sealed secrets per key id (current, old, unknown) and check that each one
    /// opens for its owner.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub async fn key(env: &Environment, command: KeyCommand) -> anyhow::Result<()> {
    let config = env.config()?;
    config.validate()?;
    // The store first: a missing one is reported before the key derivation's wait.
    let store = super::open_store(&config)?.shared();
    let keys = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.keyring()).await??
    };
    match command {
        KeyCommand::Status { json } => {
            let status = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || rotation::status(store.as_ref(), &keys))
                    .await??
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_text(&status));
            }
            if !status.problems.is_empty() {
                bail!(
                    "{} sealed value(s) do not open for their owner (listed above)",
                    status.problems.len()
                );
            }
            Ok(())
        }
        KeyCommand::Rotate {
            batch_size,
            pause_ms,
        } => {
            if keys.old().is_none() {
                eprintln!(
                    "sluice: note: SLUICE_ENCRYPTION_PASSWORD_OLD is not set: only values \
                     already under the current key are recognised"
                );
            }
            let options = RotateOptions {
                batch_size: batch_size as usize,
                pause: Duration::from_millis(pause_ms),
            };
            let report = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || {
                    rotation::rotate(store.as_ref(), &keys, &options, &mut |batch| {
                        eprintln!(
                            "batch {} committed: {} rows, {} values re-sealed so far",
                            batch.batch, batch.rows, batch.resealed
                        );
                    })
                })
                .await??
            };
            let audit = Audit::new(store.clone(), Arc::new(SystemClock));
            let mut event = audit.event("key_rotated", &ClientInfo::default());
            event.actor = Some("cli".into());
            event.details = Some(
                serde_json::json!({
                    "current_key": report.current_key,
                    "old_key": report.old_key,
                    "resealed": report.resealed,
                    "already_current": report.already_current,
                    "failed": report.failed.len(),
                })
                .to_string(),
            );
            audit.append(event).await;
            println!(
                "re-sealed {} values under key {} ({} in the catalog, {} in catalog history, \
                 {} TOTP secrets); {} already under it; {} references left as they are",
                report.resealed.total(),
                report.current_key,
                report.resealed.catalog,
                report.resealed.history,
                report.resealed.totp,
                report.already_current,
                report.references,
            );
            if report.is_complete() {
                println!(
                    "every sealed value is under the current key: SLUICE_ENCRYPTION_PASSWORD_OLD \
                     and SLUICE_ENCRYPTION_SALT_OLD can be removed"
                );
                return Ok(());
            }
            for problem in &report.failed {
                println!(
                    "not re-sealed: {} ({}): {}",
                    problem.owner, problem.place, problem.problem
                );
            }
            bail!(
                "{} value(s) could not be re-sealed (listed above); the others were",
                report.failed.len()
            )
        }
    }
}

fn status_text(status: &KeyStatus) -> String {
    let mut text = String::new();
    text.push_str(&format!("current key: {}\n", status.current_key));
    text.push_str(&format!(
        "old key:     {}\n",
        status.old_key.as_deref().unwrap_or("(not set)")
    ));
    text.push_str("key id            role     catalog  history  totp  total\n");
    for key in &status.keys {
        let role = match key.role {
            KeyRole::Current => "current",
            KeyRole::Old => "old",
            KeyRole::Unknown => "unknown",
        };
        text.push_str(&format!(
            "{:<16}  {:<7}  {:>7}  {:>7}  {:>4}  {:>5}\n",
            key.key_id, role, key.catalog, key.history, key.totp, key.total
        ));
    }
    text.push_str(&format!(
        "references (env:/file:, not sealed): {}\n",
        status.references
    ));
    for problem in &status.problems {
        text.push_str(&format!(
            "does not open: {} ({}): {}\n",
            problem.owner, problem.place, problem.problem
        ));
    }
    text
}
