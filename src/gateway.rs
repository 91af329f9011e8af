//! The view plane: `POST /v1/apps/{app}/queries/{query}`, `/healthz` and `/readyz`
//! (`ready`: readiness includes the metadata store), and the OpenAPI documents (`openapi`:
//! `/v1/openapi.json` and `/v1/apps/{app}/openapi.json`).
//!
//! Knows apps and queries only by name. It never returns a template, a datasource address, a
//! credential or a raw database error, and never logs a param or row value. It holds no
//! plaintext secret: pools are built (and secrets opened) before a [`Snapshot`] reaches it.

pub mod edge_policy;
mod errors;
mod invoke;
mod ndjson;
mod openapi;

pub use invoke::{preview, run_as_admin};
mod ready;
mod response;

pub use ready::Readiness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::audit::Audit;
use crate::auth::routes::AuthState;
use crate::metrics::Metrics;
use crate::policy::edge::EdgeState;
use crate::snapshot::Snapshot;

/// Request-path limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_body_bytes: usize,
}

/// Shared state of the view plane.
pub struct GatewayState {
    snapshot: ArcSwap<Snapshot>,
    limits: Limits,
    /// Accounts and sessions: who is asking.
    pub auth: Arc<AuthState>,
    /// The audit log, where the edge records refusals (the admin plane reaches it here too).
    pub audit: Arc<Audit>,
    /// Client address, instance-wide per-IP limit, baseline headers.
    pub edge: Arc<EdgeState>,
    /// The instance's metrics (the query route records into them).
    pub metrics: Arc<Metrics>,
    /// Whether the metadata store can be reached (`/readyz`).
    pub readiness: Readiness,
    draining: AtomicBool,
    /// Held while the catalog changes hands: by a reload (build and swap) and by a catalog
    /// API write (read, check, store, swap), so neither swaps in a snapshot older than the
    /// other's.
    pub catalog_change: tokio::sync::Mutex<()>,
}

/// What the view plane is built from, besides its first snapshot.
pub struct GatewayParts {
    pub limits: Limits,
    pub auth: Arc<AuthState>,
    pub edge: Arc<EdgeState>,
    /// The instance's one audit log, the same the auth service writes to.
    pub audit: Arc<Audit>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
}

impl GatewayState {
    pub fn new(snapshot: Snapshot, parts: GatewayParts) -> Arc<GatewayState> {
        let GatewayParts {
            limits,
            auth,
            edge,
            audit,
            metrics,
            readiness,
        } = parts;
        Arc::new(GatewayState {
            snapshot: ArcSwap::from_pointee(snapshot),
            limits,
            audit,
            auth,
            edge,
            metrics,
            readiness,
            draining: AtomicBool::new(false),
            catalog_change: tokio::sync::Mutex::new(()),
        })
    }

    /// Installs a new snapshot; requests already running keep the one they started with.
    /// Returns the previous one; its pools close when the last request holding it ends.
    pub fn replace_snapshot(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.snapshot.swap(Arc::new(snapshot))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Marks the instance as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The view plane's routes: the query route behind the app policy, and the health checks.
/// The instance composes them with the account and admin routes.
pub fn routes(state: Arc<GatewayState>) -> Router {
    let queries = Router::new()
        .route(
            "/v1/apps/{app}/queries/{query}",
            post(invoke::invoke).options(|| async { StatusCode::NO_CONTENT }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge_policy::app_policy,
        ));
    Router::new()
        .merge(queries)
        .route("/v1/openapi.json", get(openapi::instance_document))
        .route("/v1/apps/{app}/openapi.json", get(openapi::app_document))
        .route("/healthz", get(ready::healthz))
        .route("/readyz", get(ready::readyz))
        .fallback(crate::http::no_such_endpoint)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .with_state(state)
}
