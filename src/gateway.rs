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

pub use edge_policy::{Found, serve_query};
pub use invoke::{preview, run_as_admin};
mod ready;
mod response;

pub use ready::Readiness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
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

/// The view plane's routes: the query route (its edge policy, then the handler), and the
/// health checks. The instance composes them with the account and admin routes; its front
/// service hands a query request to [`edge_policy::serve_query`] before any router sees it
/// ([`query_route`]), so the route here serves only what that test leaves to the router.
pub fn routes(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route(
            "/v1/apps/{app}/queries/{query}",
            post(routed_query).options(routed_query),
        )
        .route("/v1/openapi.json", get(openapi::instance_document))
        .route("/v1/apps/{app}/openapi.json", get(openapi::app_document))
        .route("/healthz", get(ready::healthz))
        .route("/readyz", get(ready::readyz))
        .fallback(crate::http::no_such_endpoint)
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .with_state(state)
}

/// The query route as the router serves it.
async fn routed_query(
    State(state): State<Arc<GatewayState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    // A segment that is not UTF-8 once percent-decoded leaves the names `None`.
    let names = path.ok().map(|Path(names)| names);
    // Behind the request-id middleware, which every route is served behind.
    let Some(request_id) = request
        .extensions()
        .get::<crate::http::RequestId>()
        .cloned()
    else {
        return axum::response::IntoResponse::into_response(crate::http::ApiError::internal());
    };
    let found = edge_policy::Found {
        names,
        request_id,
        ip: request
            .extensions()
            .get::<crate::policy::client_ip::ClientIp>()
            .map(|client| client.0),
        started: std::time::Instant::now(),
    };
    edge_policy::serve_query(&state, found, request).await
}

/// `Some` when `request` is one the query route serves (`POST` or `OPTIONS` on
/// `/v1/apps/{app}/queries/{query}`, both segments non-empty), with the segments
/// percent-decoded exactly as the router decodes path params: `Some(None)` when one is not
/// UTF-8 once decoded. `None` for every other request. Lets the instance serve the route
/// without a router in the way; what this leaves (other methods, odd paths) goes to the
/// router, which answers as before.
pub fn query_route(request: &Request) -> Option<Option<(String, String)>> {
    if request.method() != Method::POST && request.method() != Method::OPTIONS {
        return None;
    }
    let rest = request.uri().path().strip_prefix("/v1/apps/")?;
    let (app, rest) = rest.split_once('/')?;
    let query = rest.strip_prefix("queries/")?;
    if app.is_empty() || query.is_empty() || query.contains('/') {
        return None;
    }
    let decode = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()
            .map(String::from)
    };
    Some(decode(app).zip(decode(query)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// What the router makes of a request to the query route: the decoded names, `bad`
    /// when the path does not decode, or the status it answers instead.
    async fn routed(method: &Method, path: &str) -> String {
        async fn probe(path: Result<Path<(String, String)>, PathRejection>) -> String {
            match path {
                Ok(Path((app, query))) => format!("{app}|{query}"),
                Err(_) => "bad".to_string(),
            }
        }
        let router: Router =
            Router::new().route("/v1/apps/{app}/queries/{query}", post(probe).options(probe));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        if !response.status().is_success() {
            return response.status().to_string();
        }
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_front_picks_the_query_route_exactly_as_the_router_matches_and_decodes_it() {
        let paths = [
            "/v1/apps/shop/queries/list_orders",
            "/v1/apps/%73hop/queries/list%5Forders",
            "/v1/apps/a%2Fb/queries/c",
            "/v1/apps/caf%C3%A9/queries/q",
            "/v1/apps/bad%FF/queries/q",
            "/v1/apps/a/queries/%FF",
            "/v1/apps/a/queries/b?x=1&y=2",
            "/v1/apps/a/queries/b/",
            "/v1/apps/a/queries/b/c",
            "/v1/apps//queries/b",
            "/v1/apps/a/queries/",
            "/v1/apps/a/queries",
            "/v1/apps/a/b/queries/c",
            "/v1/apps/a/openapi.json",
            "/v1/apps/a/Queries/b",
            "/v1/apps/a/queries/b%20c",
            "/V1/apps/a/queries/b",
            "//v1/apps/a/queries/b",
        ];
        let methods = [
            Method::POST,
            Method::OPTIONS,
            Method::GET,
            Method::HEAD,
            Method::PUT,
        ];
        let mut picked = 0;
        for path in paths {
            for method in &methods {
                let request = Request::builder()
                    .method(method)
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .unwrap();
                let routed = routed(method, path).await;
                // Picked: the router serves the route too, with the same names. (What is not
                // picked goes to the router, the query route included, as before.)
                if let Some(names) = query_route(&request) {
                    picked += 1;
                    let names = names.map_or("bad".to_string(), |(a, q)| format!("{a}|{q}"));
                    assert_eq!(names, routed, "{method} {path}");
                }
            }
        }
        // POST and OPTIONS on the well-formed paths, the percent-encoded and undecodable
        // ones included.
        assert_eq!(picked, 2 * 8, "picked {picked}");
    }
}
