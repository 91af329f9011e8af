//! Sluice: a query proxy gateway for named, stored queries.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules and their invariants.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod datasource;
pub mod demo;
pub mod egress;
pub mod gateway;
pub mod http;
pub mod instance;
pub mod policy;
pub mod snapshot;
pub mod spec;
pub mod statement;
pub mod store;
pub mod telemetry;
pub mod vault;
