//! The stored catalog: [`CatalogStore`], the datasources, apps and queries as applied, and
//! their revisions.
//!
//! The store keeps the catalog exactly as applied: datasource secrets stay sealed (it never
//! opens one), and templates are stored as written (compiling them is the catalog module's
//! job, at apply and load).

use super::StoreError;
use crate::spec::CatalogSpec;

/// One applied catalog: when, from what, and (for revisions applied since history is kept)
/// the whole catalog as it was then, secrets sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogRevision {
    pub id: i64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    /// What applied it: a file name, `rollback to revision N`, `demo`, ...
    pub source: String,
    /// `None` for revisions applied by a version that did not keep the content.
    pub spec: Option<CatalogSpec>,
}

/// Where the gateway keeps its catalog.
pub trait CatalogStore: Send + Sync {
    /// The current catalog.
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError>;

    /// Replaces the whole catalog in one transaction (all of it or none of it) and records
    /// a revision holding the whole catalog. Returns the new revision number.
    fn replace_catalog(&self, spec: &CatalogSpec, source: &str) -> Result<i64, StoreError>;

    /// The current catalog with the revision it is, read together (0 when none was applied).
    fn current_catalog(&self) -> Result<(i64, CatalogSpec), StoreError>;

    /// [`replace_catalog`](Self::replace_catalog) only if the latest revision is still
    /// `expected`: otherwise nothing changes and the answer is
    /// [`StoreError::RevisionMoved`] (another writer got there first). The check and the
    /// write are one transaction, so two writers never both win.
    fn replace_catalog_at(
        &self,
        spec: &CatalogSpec,
        source: &str,
        expected: i64,
    ) -> Result<i64, StoreError>;

    /// The latest catalog revision (0 when none was applied).
    fn catalog_revision(&self) -> Result<i64, StoreError>;

    /// The revisions, newest first, at most `limit`.
    fn catalog_history(&self, limit: u32) -> Result<Vec<CatalogRevision>, StoreError>;

    /// One revision, or `None` when there is no such revision.
    fn catalog_revision_at(&self, id: i64) -> Result<Option<CatalogRevision>, StoreError>;

    /// Pushed notice of catalog changes, for stores that several writers share: the value
    /// moves on (its number means nothing) whenever a new revision may have been stored, by
    /// this process or another, and also after the store could have missed one (a lost
    /// connection), so a replica checks the revision at once instead of at its next
    /// periodic check. `None` (the default, SQLite): no push; the periodic check is all.
    /// Does not block.
    fn catalog_changes(&self) -> Option<CatalogChanges> {
        None
    }
}

/// See [`CatalogStore::catalog_changes`].
pub type CatalogChanges = tokio::sync::watch::Receiver<u64>;
