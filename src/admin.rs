//! The edit plane (so far): `GET /v1/admin/egress`, the addresses a DBA allowlists.
//!
//! Until admin accounts exist (issue 4), the admin API is guarded by one bearer token,
//! `SLUICE_ADMIN_TOKEN`, compared in constant time; without it every admin route answers
//! 404, so an instance that never set a token exposes no admin surface at all. Secrets are
//! write-only here too: nothing in this module returns a secret or its ciphertext.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::catalog::spec::{CatalogSpec, DatasourceSpec};
use crate::config::Config;
use crate::http::ApiError;
use crate::vault::SecretString;

/// What a DBA needs to allowlist Sluice: where its connections come from, and where they go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressReport {
    /// Local addresses outbound connections are bound to (`SLUICE_EGRESS_BIND`); empty
    /// means the operating system picks per route.
    pub bind_addresses: Vec<IpAddr>,
    /// Public addresses after NAT, as configured (`SLUICE_EGRESS_PUBLIC_IPS`).
    pub public_ips: Vec<IpAddr>,
    /// Non-public networks every datasource may reach (`SLUICE_EGRESS_ALLOW`).
    pub instance_allow: Vec<String>,
    pub datasources: Vec<DatasourceEgress>,
}

/// One datasource's destination and its own egress allow list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasourceEgress {
    pub name: String,
    pub kind: &'static str,
    /// Host (and port) or base URL; empty for SQLite files.
    pub destination: String,
    pub egress_allow: Vec<String>,
}

/// Builds the report from the configuration and the catalog.
pub fn egress_report(config: &Config, catalog: &CatalogSpec) -> EgressReport {
    let datasources = catalog
        .datasources
        .iter()
        .map(|(name, spec)| {
            let (kind, destination, allow) = match spec {
                DatasourceSpec::Postgres(net) => (
                    "postgres",
                    format!("{}:{}", net.host, net.port.unwrap_or(5432)),
                    net.egress_allow.clone(),
                ),
                DatasourceSpec::Mysql(net) => (
                    "mysql",
                    format!("{}:{}", net.host, net.port.unwrap_or(3306)),
                    net.egress_allow.clone(),
                ),
                DatasourceSpec::Http(http) => {
                    ("http", http.base_url.clone(), http.egress_allow.clone())
                }
                DatasourceSpec::Sqlite(_) => ("sqlite", String::new(), Vec::new()),
            };
            DatasourceEgress {
                name: name.clone(),
                kind,
                destination,
                egress_allow: allow,
            }
        })
        .collect();
    EgressReport {
        bind_addresses: config.egress_bind.clone(),
        public_ips: config.egress_public_ips.clone(),
        instance_allow: config.egress_allow.iter().map(|n| n.to_string()).collect(),
        datasources,
    }
}

/// Where the admin routes read their data.
pub struct AdminState {
    pub config: Config,
    pub catalog: Arc<dyn Fn() -> CatalogSpec + Send + Sync>,
}

/// The admin router, nested at `/v1/admin`.
pub fn router(state: Arc<AdminState>) -> Router {
    let token = state.config.admin_token.clone();
    Router::new()
        .route("/egress", get(egress))
        .with_state(state)
        .layer(axum::middleware::from_fn(move |request, next| {
            require_token(token.clone(), request, next)
        }))
}

async fn egress(State(state): State<Arc<AdminState>>) -> Response {
    let report = egress_report(&state.config, &(state.catalog)());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&report).expect("reports serialise"),
    )
        .into_response()
}

async fn require_token(token: Option<SecretString>, request: Request, next: Next) -> Response {
    let Some(token) = token else {
        return ApiError::not_found("the admin API is off (set SLUICE_ADMIN_TOKEN)")
            .into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Hashing first makes the comparison constant-time regardless of the lengths.
    let expected = Sha256::digest(token.expose().as_bytes());
    let given = Sha256::digest(presented.as_bytes());
    if bool::from(expected.ct_eq(&given)) {
        next.run(request).await
    } else {
        ApiError::unauthenticated(
            "the admin API needs `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`",
        )
        .into_response()
    }
}
