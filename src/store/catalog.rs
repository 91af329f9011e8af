//! The stored catalog: [`CatalogStore`], the datasources, apps and queries as applied, and
//! their revisions.
//!
//! The store keeps the catalog exactly as applied: datasource secrets stay sealed (it never
//! opens one), and templates are stored as written (compiling them is the catalog module's
//! job, at apply and load).

use super::StoreError;
use crate::spec::CatalogSpec;

/// Where the gateway keeps its catalog.
pub trait CatalogStore: Send + Sync {
    /// The current catalog.
    fn load_catalog(&self) -> Result<CatalogSpec, StoreError>;

    /// Replaces the whole catalog in one transaction (all of it or none of it) and records
    /// a revision. Returns the new revision number.
    fn replace_catalog(&self, spec: &CatalogSpec, source: &str) -> Result<i64, StoreError>;

    /// The latest catalog revision (0 when none was applied).
    fn catalog_revision(&self) -> Result<i64, StoreError>;
}
