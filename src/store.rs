//! The metadata store: the gateway's own state, the catalog and the accounts.
//!
//! One trait per aggregate, each in its module with its records:
//!
//! - [`catalog`]: [`CatalogStore`](catalog::CatalogStore), the applied catalog and its
//!   revisions.
//! - [`users`]: [`UserStore`](users::UserStore), accounts, sign-in accounting and lockout.
//! - [`mfa`]: [`MfaStore`](mfa::MfaStore), TOTP secrets, the replay guard, recovery codes.
//! - [`sessions`]: [`SessionStore`](sessions::SessionStore), server-side sessions.
//! - [`tokens`]: [`TokenStore`](tokens::TokenStore), mailed one-time tokens and the changes
//!   they pay for.
//! - [`api_keys`]: [`ApiKeyStore`](api_keys::ApiKeyStore), workspace API keys.
//! - [`members`]: [`MemberStore`](members::MemberStore), members of private apps.
//! - [`identities`]: [`IdentityStore`](identities::IdentityStore), provider accounts linked
//!   to users and the OpenID Connect sign-ins under way.
//! - [`audit`]: [`AuditStore`](audit::AuditStore), the append-only audit log.
//! - [`health`]: [`HealthStore`](health::HealthStore), whether the store can be reached now
//!   (`/readyz`).
//! - [`sealed`]: [`SealedStore`](sealed::SealedStore), every sealed value wherever it is kept
//!   (catalog, revisions, TOTP secrets), for key status and rotation.
//! - [`scim`]: [`ScimStore`](scim::ScimStore), SCIM provisioning: an IdP's profile of each
//!   account and the groups it mirrors into the accounts' `groups`.
//! - [`buckets`]: [`BucketStore`](buckets::BucketStore), rate-limit buckets shared by the
//!   replicas (PostgreSQL's table, or Redis), async, for the `limits` module.
//!
//! [`Store`] is all of them: what the instance opens. [`AccountStore`] is the part the auth
//! service works with (the accounts, without the catalog and the audit log, which it writes
//! through [`crate::audit`]). [`SqliteStore`] is the embedded default (one node, zero
//! set-up); [`PostgresStore`] is for several replicas on one store (`SLUICE_METADATA_URL`),
//! and implements the same traits with the same semantics, migrated from the same list
//! ([`migrations`]) and checked by the same suite (`conformance`). Calls are blocking:
//! async callers run them with `tokio::task::spawn_blocking`. Times are Unix seconds.
//!
//! Each method is atomic. An operation that changes several aggregates (a role change and
//! the end of the account's sessions, a spent token and the change it pays for) is one
//! method, on the aggregate that owns the change, done in one transaction: a failure at any
//! step (a taken email, a missing account, a crash) leaves the store as it was, so a
//! one-time token is spent only by the change it authorises and a privilege change never
//! survives without the sessions ending. Steps that must not happen alone (a role change
//! that keeps the sessions, a token spent without its change, a session opened without the
//! sign-in that admits it) are deliberately not methods. The audit log is not part of those
//! transactions (see [`audit`]).
//!
//! The store never sees a plaintext credential: passwords arrive as argon2id hashes,
//! session ids, tokens, API keys and recovery codes as SHA-256, TOTP and datasource secrets
//! sealed under the instance key. It never logs a stored value, and it does not import the
//! auth service, the planes or HTTP: it stores and compares, the callers decide.

pub mod api_keys;
pub mod audit;
pub mod buckets;
pub mod catalog;
pub mod error;
pub mod health;
pub mod identities;
pub mod members;
pub mod mfa;
pub(crate) mod migrations;
mod postgres;
pub mod scim;
pub mod sealed;
pub mod sessions;
mod sqlite;
pub mod tokens;
pub mod users;

pub use error::StoreError;
pub use postgres::{PgSettings, PostgresStore};
pub use sqlite::{BackupSummary, SqliteStore};

#[cfg(test)]
mod conformance;

/// What the auth service keeps: users, MFA state, sessions, one-time tokens, API keys and
/// app members. Implemented by every type that implements those traits.
pub trait AccountStore:
    users::UserStore
    + mfa::MfaStore
    + sessions::SessionStore
    + tokens::TokenStore
    + api_keys::ApiKeyStore
    + members::MemberStore
    + identities::IdentityStore
{
}

impl<T> AccountStore for T where
    T: users::UserStore
        + mfa::MfaStore
        + sessions::SessionStore
        + tokens::TokenStore
        + api_keys::ApiKeyStore
        + members::MemberStore
        + identities::IdentityStore
{
}

/// Everything the instance keeps: the catalog, the accounts and the audit log, and whether
/// it can be reached. One object implements it all (the SQLite store or the PostgreSQL
/// one).
pub trait Store:
    catalog::CatalogStore
    + AccountStore
    + audit::AuditStore
    + health::HealthStore
    + sealed::SealedStore
    + scim::ScimStore
    + buckets::BucketStore
{
}

impl<T> Store for T where
    T: catalog::CatalogStore
        + AccountStore
        + audit::AuditStore
        + health::HealthStore
        + sealed::SealedStore
        + scim::ScimStore
        + buckets::BucketStore
{
}
