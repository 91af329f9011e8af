//! Every sealed value the store keeps, wherever it lives: [`SealedStore`], read for
//! `sluice key status` and rewritten, batch by batch, by `sluice key rotate`.
//!
//! Sealed values live in three places: the current catalog (each datasource's secret
//! fields), every catalog revision's content (the whole catalog as applied), and users' TOTP
//! secrets. The store walks them and hands each value with its owner to the caller; it never
//! opens one (the caller, holding the keys, decides what a value becomes) and never logs one.

use super::StoreError;
use crate::vault::Owner;

/// Where a sealed value is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedPlace {
    /// A datasource of the current catalog.
    Catalog,
    /// A datasource in the content of the catalog revision with this id.
    Revision(i64),
    /// A user's TOTP secret.
    Totp,
}

impl std::fmt::Display for SealedPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedPlace::Catalog => f.write_str("catalog"),
            SealedPlace::Revision(id) => write!(f, "catalog revision {id}"),
            SealedPlace::Totp => f.write_str("user TOTP secret"),
        }
    }
}

/// One stored secret value: a sealed value (`enc:v1:...`) or, for datasources, a secret
/// reference (`env:`/`file:`), which holds no secret and is left as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub place: SealedPlace,
    /// `None` when the row's name cannot make an owner (then no value of it can open).
    pub owner: Option<Owner>,
    /// The owner as text, for reports (`datasource/<name>/<field>`, `user/<id>/totp`).
    pub owner_name: String,
    pub value: String,
}

/// What to do with one visited value.
pub enum Reseal {
    /// Leave it as it is.
    Keep,
    /// Replace it with this (sealed) value.
    Replace(String),
}

/// Where the next batch of [`SealedStore::reseal_batch`] starts; [`ResealCursor::default`]
/// is the start of the walk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResealCursor {
    /// 0: datasources of the current catalog, 1: revisions, 2: users; 3: done.
    pub stage: u8,
    /// The last row visited in this stage (a datasource name, a revision id, a user id).
    pub after: Option<String>,
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows visited.
    pub rows: usize,
    /// Rows rewritten (each one with at least one replaced value).
    pub rows_written: usize,
    /// Values replaced.
    pub values_replaced: usize,
    /// Where the next batch starts; `None` when the walk is complete.
    pub next: Option<ResealCursor>,
}

/// Access to every sealed value, for key status and rotation.
pub trait SealedStore: Send + Sync {
    /// Every stored secret value (current catalog, every revision's content, every TOTP
    /// secret), read in one consistent view.
    fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError>;

    /// Visits up to `limit` rows from `cursor` (datasources of the current catalog, then
    /// catalog revisions, then users), calls `reseal` with each sealed value of each row, and
    /// writes back the rows where it asked for a replacement, all in one transaction: after
    /// a crash at any moment every value is the one before or the one after, and a batch
    /// either happened entirely or not at all. The revision numbers and their order do not
    /// change (a rotation is no catalog change).
    fn reseal_batch(
        &self,
        cursor: &ResealCursor,
        limit: usize,
        reseal: &mut dyn FnMut(&StoredSecret) -> Reseal,
    ) -> Result<BatchOutcome, StoreError>;
}
