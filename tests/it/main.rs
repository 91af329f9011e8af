//! Sluice's integration tests, as one test binary (one link of the library instead of one
//! per suite). Each module is a suite against the real local services: PostgreSQL on
//! 127.0.0.1:5432, MariaDB on 127.0.0.1:3306, an SMTP sink started by the suite, and the
//! `sluice` binary itself where a suite needs a served process. Suites never skip: a missing
//! service fails them.
//!
//! Shared helpers: [`common`] (gateways on port 0, schemas, the served binary, the SMTP
//! sink), [`auth_common`] (accounts and a cookie-keeping browser), [`edge_common`] (the
//! edge-policy fixtures). Suites run in parallel in one process, so each one works in its
//! own schema or database and names what it creates after it.

mod auth_common;
mod common;
mod edge_common;

mod acme;
mod admin_api;
mod architecture;
mod audit_log;
mod auth_access;
mod auth_log_canary;
mod auth_mail;
mod auth_mfa;
mod auth_sessions;
mod bearer_jwt;
mod browser;
mod catalog_api;
mod cli;
mod datasource_errors;
mod datasource_test;
mod db_tls;
mod docs;
mod edge_limits;
mod edge_policy;
mod egress;
mod fault;
mod fuzz_checks;
mod http_datasource;
mod injection;
mod js_client;
mod key_rotation;
mod listener;
mod log_canary;
mod mail;
mod metadata_postgres;
mod metrics;
mod ndjson;
mod openapi;
mod operate;
mod optional_filters;
mod refusals;
mod replicas;
mod row_security;
mod scim;
mod secret_references;
mod sso;
mod sso_only;
mod tls;
mod type_roundtrip;
mod view_api;
