//! The view plane: `POST /v1/apps/{app}/queries/{query}`, `/healthz` and `/readyz`.
//!
//! Knows apps and queries only by name. It never returns a template, a datasource address, a
//! credential or a raw database error, and never logs a param or row value. It holds no
//! plaintext secret: pools are built (and secrets opened) before a [`Snapshot`] reaches it.

mod edge_policy;
mod invoke;

pub use invoke::run_as_admin;
mod response;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::audit::Audit;
use crate::auth::routes::{self as auth_routes, AuthState};
use crate::catalog::compile::CompiledCatalog;
use crate::catalog::spec::CatalogSpec;
use crate::datasource::Pools;
use crate::http::edge::{self, EdgeState};
use crate::http::{ApiError, request_id};

/// What the request path reads: the compiled catalog and its pools, swapped as one.
#[derive(Default)]
pub struct Snapshot {
    /// The catalog as stored (secrets sealed), for the edit plane's reports.
    pub spec: Arc<CatalogSpec>,
    pub catalog: CompiledCatalog,
    pub pools: Pools,
    /// The store revision this snapshot was built from.
    pub revision: i64,
}

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
    draining: AtomicBool,
}

impl GatewayState {
    /// The audit log is the one the auth service writes to, so every event of the instance
    /// lands in the same log.
    pub fn new(
        snapshot: Snapshot,
        limits: Limits,
        auth: Arc<AuthState>,
        edge: Arc<EdgeState>,
    ) -> Arc<GatewayState> {
        Arc::new(GatewayState {
            snapshot: ArcSwap::from_pointee(snapshot),
            limits,
            audit: auth.service.audit().clone(),
            auth,
            edge,
            draining: AtomicBool::new(false),
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
}

/// The HTTP router: the view plane and `/v1/auth`, with `admin` (the edit plane) nested at `/v1/admin`,
/// all behind the request-id middleware.
pub fn router(state: Arc<GatewayState>, admin: Router) -> Router {
    let account = |cors| {
        axum::middleware::from_fn_with_state((state.clone(), cors), edge_policy::account_policy)
    };
    // The 405 fallback is set first so that the policy layer wraps it too (preflights are
    // OPTIONS requests, which no route declares).
    let auth = auth_routes::router(state.auth.clone())
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(account(true));
    let admin = admin
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(account(false));
    let queries = Router::new()
        .route(
            "/v1/apps/{app}/queries/{query}",
            post(invoke::invoke).options(|| async { StatusCode::NO_CONTENT }),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge_policy::app_policy,
        ));
    let edge = state.edge.clone();
    let routes = Router::new()
        .merge(queries)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .merge(auth)
        .nest("/v1/admin", admin);
    // The request-id and edge middleware wrap the routes once, as one service, rather than
    // through `Router::layer`, which wraps every route (and the fallback) in its own boxed
    // copy of them: a boxed future and a service clone fewer per layer and request.
    let front = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(request_id::middleware))
        .layer(axum::middleware::from_fn_with_state(edge, edge::middleware))
        .service(routes);
    Router::new().fallback_service(front)
}

async fn healthz() -> Response {
    json_status(StatusCode::OK, "ok")
}

async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        json_status(StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        json_status(StatusCode::OK, "ready")
    }
}

fn json_status(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"{text}\"}}"),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
