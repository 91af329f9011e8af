//! Key rotation and key status over the store's sealed values: `sluice key rotate|status`
//! and `POST /v1/admin/key/rotate`, `GET /v1/admin/key/status`.
//!
//! [`rotate`] re-seals every value sealed under the keyring's old key (datasource secrets in
//! the current catalog and in every catalog revision, TOTP secrets) under the current key,
//! in batches ([`SealedStore::reseal_batch`], one transaction each): after a crash at any
//! moment every value is under the old or the new key, and running it again finishes the
//! job. It records no catalog revision: the catalog is the same catalog, sealed anew, so a
//! running gateway keeps serving the snapshot it has (its pools hold opened secrets) and
//! nothing reloads. [`status`] counts the values per key id and opens each one it has a key
//! for, so a value that does not open for its owner shows.
//!
//! Invariants: never logs, returns or reports a value, only where it is kept and its owner
//! (`datasource/<name>/<field>`, `user/<id>/totp`). A value under a key that is neither the
//! current nor the old one is reported and left as it is; the rest are still re-sealed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::is_reference;
use crate::store::StoreError;
use crate::store::sealed::{Reseal, ResealCursor, SealedPlace, SealedStore, StoredSecret};
use crate::vault::{KeyUse, Keyring, sealed_key_id};

/// Rows re-sealed per transaction by default: short enough that a serving gateway's writes
/// (sign-ins, sessions) wait milliseconds, not seconds, for the store's write lock.
pub const DEFAULT_BATCH_SIZE: usize = 50;

/// Which of the keyring's keys a key id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Current,
    Old,
    Unknown,
}

/// Sealed values under one key id, by where they are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyCount {
    pub key_id: String,
    pub role: KeyRole,
    /// Datasource secrets of the current catalog.
    pub catalog: usize,
    /// Datasource secrets in the content of catalog revisions.
    pub history: usize,
    /// Users' TOTP secrets.
    pub totp: usize,
    pub total: usize,
}

/// A value that is reported instead of counted or re-sealed: where, whose, and why (never
/// the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretProblem {
    /// `catalog`, `catalog revision N`, `user TOTP secret`.
    pub place: String,
    /// `datasource/<name>/<field>` or `user/<id>/totp`.
    pub owner: String,
    pub problem: String,
}

impl SecretProblem {
    fn new(secret: &StoredSecret, problem: impl Into<String>) -> SecretProblem {
        SecretProblem {
            place: secret.place.to_string(),
            owner: secret.owner_name.clone(),
            problem: problem.into(),
        }
    }
}

/// What `sluice key status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    pub current_key: String,
    pub old_key: Option<String>,
    /// One entry per key id found (the current key always listed), current first, then old,
    /// then unknown ones by id.
    pub keys: Vec<KeyCount>,
    /// Secret fields written as `env:`/`file:` references (no key seals them).
    pub references: usize,
    /// Values that are malformed or do not open for their owner with the key they name.
    pub problems: Vec<SecretProblem>,
}

impl KeyStatus {
    /// Sealed values under the key with `role`.
    pub fn count(&self, role: KeyRole) -> usize {
        self.keys
            .iter()
            .filter(|k| k.role == role)
            .map(|k| k.total)
            .sum()
    }
}

/// Counts every stored sealed value per key id and opens those under a key of `keys`.
pub fn status(store: &dyn SealedStore, keys: &Keyring) -> Result<KeyStatus, StoreError> {
    let mut by_id: BTreeMap<String, KeyCount> = BTreeMap::new();
    entry(&mut by_id, keys, keys.key_id());
    let mut references = 0;
    let mut problems = Vec::new();
    for secret in store.stored_secrets()? {
        if secret.place != SealedPlace::Totp && is_reference(&secret.value) {
            references += 1;
            continue;
        }
        let key_id = match sealed_key_id(&secret.value) {
            Ok(id) => id.to_owned(),
            Err(error) => {
                problems.push(SecretProblem::new(&secret, error.to_string()));
                continue;
            }
        };
        let count = entry(&mut by_id, keys, &key_id);
        match secret.place {
            SealedPlace::Catalog => count.catalog += 1,
            SealedPlace::Revision(_) => count.history += 1,
            SealedPlace::Totp => count.totp += 1,
        }
        count.total += 1;
        if count.role == KeyRole::Unknown {
            continue;
        }
        let opened = match &secret.owner {
            Some(owner) => keys.open(owner, &secret.value).map(drop),
            None => {
                problems.push(SecretProblem::new(&secret, "not a valid owner name"));
                continue;
            }
        };
        if let Err(error) = opened {
            problems.push(SecretProblem::new(&secret, error.to_string()));
        }
    }
    let mut keys_found: Vec<KeyCount> = by_id.into_values().collect();
    keys_found.sort_by_key(|k| (k.role as u8, k.key_id.clone()));
    Ok(KeyStatus {
        current_key: keys.key_id().to_owned(),
        old_key: keys.old().map(|old| old.key_id().to_owned()),
        keys: keys_found,
        references,
        problems,
    })
}

/// The count of `id` in `by_id`, made with its role on first use.
fn entry<'a>(
    by_id: &'a mut BTreeMap<String, KeyCount>,
    keys: &Keyring,
    id: &str,
) -> &'a mut KeyCount {
    let role = if id == keys.key_id() {
        KeyRole::Current
    } else if keys.old().is_some_and(|old| old.key_id() == id) {
        KeyRole::Old
    } else {
        KeyRole::Unknown
    };
    by_id.entry(id.to_owned()).or_insert_with(|| KeyCount {
        key_id: id.to_owned(),
        role,
        catalog: 0,
        history: 0,
        totp: 0,
        total: 0,
    })
}

/// How [`rotate`] paces itself.
#[derive(Debug, Clone)]
pub struct RotateOptions {
    /// Rows per transaction (at least 1).
    pub batch_size: usize,
    /// A pause after each batch, to spread the writes of a large store over time.
    pub pause: Duration,
}

impl Default for RotateOptions {
    fn default() -> Self {
        RotateOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            pause: Duration::ZERO,
        }
    }
}

/// Values re-sealed, by where they are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlaceCounts {
    pub catalog: usize,
    pub history: usize,
    pub totp: usize,
}

impl PlaceCounts {
    pub fn total(&self) -> usize {
        self.catalog + self.history + self.totp
    }

    fn add(&mut self, place: SealedPlace) {
        match place {
            SealedPlace::Catalog => self.catalog += 1,
            SealedPlace::Revision(_) => self.history += 1,
            SealedPlace::Totp => self.totp += 1,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    pub current_key: String,
    pub old_key: Option<String>,
    /// Values re-sealed from the old key to the current one.
    pub resealed: PlaceCounts,
    /// Values already under the current key (left as they are).
    pub already_current: usize,
    /// Secret references (left as they are: no key seals them).
    pub references: usize,
    /// Transactions committed.
    pub batches: usize,
    /// Values left as they are because they could not be re-sealed (unknown key, malformed,
    /// not opening for their owner). The rotation is incomplete while there are any.
    pub failed: Vec<SecretProblem>,
}

impl RotationReport {
    /// Whether every sealed value is now under the current key.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One committed batch, for progress output.
#[derive(Debug, Clone)]
pub struct BatchProgress {
    /// 1 for the first batch.
    pub batch: usize,
    /// Rows visited in this batch.
    pub rows: usize,
    /// Values re-sealed so far, in all batches.
    pub resealed: usize,
}

/// Re-seals every value under `keys`' old key with its current key, batch by batch (see the
/// module doc); `progress` is called after each committed batch.
pub fn rotate(
    store: &dyn SealedStore,
    keys: &Keyring,
    options: &RotateOptions,
    progress: &mut dyn FnMut(&BatchProgress),
) -> Result<RotationReport, StoreError> {
    let mut report = RotationReport {
        current_key: keys.key_id().to_owned(),
        old_key: keys.old().map(|old| old.key_id().to_owned()),
        ..RotationReport::default()
    };
    let mut cursor = Some(ResealCursor::default());
    while let Some(at) = cursor {
        // Counted per batch and added once it committed, so a failed commit counts nothing.
        let mut resealed = PlaceCounts::default();
        let mut already_current = 0;
        let mut references = 0;
        let mut failed = Vec::new();
        let outcome =
            store.reseal_batch(&at, options.batch_size, &mut |secret| match reseal_one(
                keys, secret,
            ) {
                Ok(Some(new)) => {
                    resealed.add(secret.place);
                    Reseal::Replace(new)
                }
                Ok(None) if is_reference(&secret.value) => {
                    references += 1;
                    Reseal::Keep
                }
                Ok(None) => {
                    already_current += 1;
                    Reseal::Keep
                }
                Err(problem) => {
                    failed.push(SecretProblem::new(secret, problem));
                    Reseal::Keep
                }
            })?;
        report.batches += 1;
        report.resealed.catalog += resealed.catalog;
        report.resealed.history += resealed.history;
        report.resealed.totp += resealed.totp;
        report.already_current += already_current;
        report.references += references;
        report.failed.extend(failed);
        progress(&BatchProgress {
            batch: report.batches,
            rows: outcome.rows,
            resealed: report.resealed.total(),
        });
        cursor = outcome.next;
        if cursor.is_some() && !options.pause.is_zero() {
            std::thread::sleep(options.pause);
        }
    }
    Ok(report)
}

/// The new sealed value of one stored value, `None` to leave it, or why it cannot be
/// re-sealed.
fn reseal_one(keys: &Keyring, secret: &StoredSecret) -> Result<Option<String>, String> {
    if secret.place != SealedPlace::Totp && is_reference(&secret.value) {
        return Ok(None);
    }
    match keys.key_use(&secret.value).map_err(|e| e.to_string())? {
        KeyUse::Current => Ok(None),
        KeyUse::Unknown(id) => Err(match keys.old() {
            Some(old) => format!(
                "sealed under key {id}, which is neither the current key ({}) nor the old one ({})",
                keys.key_id(),
                old.key_id()
            ),
            None => format!(
                "sealed under key {id}, not the current key ({}); set SLUICE_ENCRYPTION_PASSWORD_OLD and SLUICE_ENCRYPTION_SALT_OLD to the key that sealed it",
                keys.key_id()
            ),
        }),
        KeyUse::Old => {
            let owner = secret
                .owner
                .as_ref()
                .ok_or_else(|| "not a valid owner name".to_string())?;
            keys.reseal(owner, &secret.value)
                .map_err(|error| error.to_string())
        }
    }
}
