//! `sluice backup FILE` and `sluice restore FILE`: a consistent copy of the metadata store
//! (SQLite's online backup API, safe while a gateway serves), and putting one back.
//!
//! A restore first proves the backup belongs to this instance: it must pass SQLite's
//! integrity check, and every sealed secret in it (datasource credentials, TOTP secrets)
//! must open with the configured instance key, checked on a scratch copy migrated to this
//! build's schema. Only then is the current store saved beside itself
//! (`sluice.db.before-restore-<time>`) and replaced, in one step.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sluice::config::{Config, Environment};
use sluice::instance::{self, StoreOpening};
use sluice::store::SqliteStore;
use sluice::store::catalog::CatalogStore;
use sluice::store::users::UserStore;
use sluice::vault::{Keyring, Owner};

pub fn backup(env: &Environment, file: &Path) -> anyhow::Result<()> {
    let config = env.config()?;
    super::sqlite_only(&config, "backup")?;
    let opened = super::open_store(&config)?;
    let store = opened
        .sqlite()
        .context("the store is not the SQLite file")?;
    store
        .backup_to(file)
        .with_context(|| format!("backing up to {}", file.display()))?;
    let summary = SqliteStore::check_backup(file)?;
    println!(
        "backed up {} to {} (catalog revision {}, {} users); keep the instance key \
         (SLUICE_ENCRYPTION_PASSWORD and SLUICE_ENCRYPTION_SALT) with it: the sealed secrets \
         inside open only with it",
        config.metadata_path().display(),
        file.display(),
        summary.catalog_revision,
        summary.users
    );
    Ok(())
}

pub fn restore(env: &Environment, file: &Path) -> anyhow::Result<()> {
    let config = env.config()?;
    super::sqlite_only(&config, "restore")?;
    let key = config.keyring()?;
    SqliteStore::check_backup(file).with_context(|| format!("checking {}", file.display()))?;
    let path = config.metadata_path();
    if same_file(file, &path) {
        bail!("{} is the store itself; name a backup file", file.display());
    }
    check_secrets_open(&config, &key, file)?;
    let saved = if path.is_file() {
        let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let saved = beside(&path, &format!("before-restore-{time}"));
        let current = super::open_store(&config)?;
        current
            .sqlite()
            .context("the store is not the SQLite file")?
            .backup_to(&saved)
            .with_context(|| format!("saving the current store to {}", saved.display()))?;
        Some(saved)
    } else {
        None
    };
    let store = instance::open_store(&config, StoreOpening::CreateIfMissing)
        .with_context(|| format!("opening {}", path.display()))?;
    let summary = store
        .sqlite()
        .context("the store is not the SQLite file")?
        .restore_from(file)
        .with_context(|| format!("restoring {}", file.display()))?;
    println!(
        "restored {} into {} (catalog revision {}, {} users)",
        file.display(),
        path.display(),
        summary.catalog_revision,
        summary.users
    );
    if let Some(saved) = saved {
        println!("the store as it was before is saved as {}", saved.display());
    }
    println!(
        "a running gateway loads the restored catalog at its next check \
         (SLUICE_CATALOG_RELOAD_SECS) or on SIGHUP; sessions opened since the backup have ended"
    );
    Ok(())
}

/// Opens every sealed secret of the backup with `key`, on a scratch copy (migrated to this
/// build's schema) that is deleted afterwards: the backup itself is never written.
fn check_secrets_open(config: &Config, key: &Keyring, file: &Path) -> anyhow::Result<()> {
    let scratch = beside(&config.metadata_path(), "restore-check");
    // The data directory as the store makes it (0700), when restoring into a new one.
    SqliteStore::prepare_directory(&scratch)?;
    let _ = std::fs::remove_file(&scratch);
    let checked = (|| {
        // Opening the backup itself would migrate it in place: a copy is opened instead.
        std::fs::copy(file, &scratch).with_context(|| format!("copying {}", file.display()))?;
        let copy = SqliteStore::open(&scratch)?;
        sluice::snapshot::verify_secrets(&copy.load_catalog()?, key, &config.secret_references)
            .context(
                "the backup's datasource secrets do not open with this instance key: restore it \
             with the SLUICE_ENCRYPTION_PASSWORD and SLUICE_ENCRYPTION_SALT it was made under",
            )?;
        for user in copy.list_users()? {
            if let Some(sealed) = &user.totp_secret_sealed {
                key.open(&Owner::user(&user.id, "totp")?, sealed)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "a TOTP secret in the backup does not open with this instance key: \
                         restore it with the SLUICE_ENCRYPTION_PASSWORD and \
                         SLUICE_ENCRYPTION_SALT it was made under"
                        )
                    })?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = scratch.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    checked
}

/// `<store>.<suffix>`, beside the store.
fn beside(store: &Path, suffix: &str) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
