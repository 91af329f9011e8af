//! [`HealthStore`]: whether the metadata store can be reached now, which is what `/readyz`
//! asks. A store that cannot be read (a missing, replaced or unreadable database file, a
//! server that does not answer) makes the instance not ready: it cannot sign anyone in, and
//! a reload would fail.
//!
//! The check reads only the store's own bookkeeping (never a record) and must not change
//! anything. It is blocking, like every store call.

use super::StoreError;

/// The readiness check of a metadata store.
pub trait HealthStore {
    /// `Ok` when the store answers as it did at start-up. Cheap enough to run every few
    /// seconds; never writes.
    fn check_reachable(&self) -> Result<(), StoreError>;
}
