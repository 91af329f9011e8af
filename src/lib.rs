//! Sluice: a query proxy gateway for named, stored queries.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules and their invariants.

pub mod acme;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod console;
pub mod datasource;
pub mod demo;
pub mod egress;
pub mod gateway;
pub mod http;
pub mod instance;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod rotation;
pub mod scan;
pub mod scim;
pub mod snapshot;
pub mod spec;
pub mod sso;
pub mod statement;
pub mod store;
pub mod telemetry;
pub mod vault;

/// The commit this build was made from: `SLUICE_COMMIT` at build time (image builds), else
/// `git rev-parse --short=12 HEAD` of the source tree, else `unknown` (see `build.rs`).
pub const COMMIT: &str = env!("SLUICE_COMMIT");

/// The version and commit, as `sluice --version` prints them: `0.1.0 (1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SLUICE_COMMIT"), ")");
