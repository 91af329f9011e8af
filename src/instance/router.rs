//! The HTTP router of an instance: the view plane, `/v1/auth` and `/v1/admin` (and
//! `/metrics` when a metrics token is set, `/scim/v2` when a SCIM token is, the admin console
//! `/console` unless it is turned off) composed behind the request-id and edge
//! middleware, with the account-route guard around the account and admin routes.

use std::sync::Arc;

use axum::Router;

use super::{account_policy, edge, metrics, sso_only};
use crate::auth::routes as auth_routes;
use crate::gateway::{self, GatewayState};
use crate::http::method_not_allowed;
use crate::scim::routes::ScimState;
use crate::vault::SecretString;

/// Every route as the listener serves it: the view plane and `/v1/auth`, with `admin` (the
/// edit plane) nested at `/v1/admin`, and `GET /metrics` behind `metrics_token` when there
/// is one, all behind the request-id and edge middleware (one service, `edge::Front`); the
/// console's static pages when `console` is on.
pub fn front(
    state: Arc<GatewayState>,
    admin: Router,
    metrics_token: Option<SecretString>,
    scim: Option<Arc<ScimState>>,
    console: bool,
    extra: Option<Router>,
) -> edge::Front {
    let account = |cors| {
        axum::middleware::from_fn_with_state((state.clone(), cors), account_policy::middleware)
    };
    // The 405 fallback is set first so that the policy layer wraps it too (preflights are
    // OPTIONS requests, which no route declares).
    let mut auth = auth_routes::router(state.auth.clone())
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(account(true));
    let mut admin = admin
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(account(false));
    // Outermost: a closed local path is refused before anything reads the request.
    if state.auth.sso.only {
        auth = auth.route_layer(axum::middleware::from_fn(sso_only::middleware));
        admin = admin.route_layer(axum::middleware::from_fn(sso_only::middleware));
    }
    let mut routes = gateway::routes(state.clone())
        .merge(auth)
        .nest("/v1/admin", admin);
    if let Some(token) = metrics_token {
        routes = routes.merge(metrics::token_routes(state.clone(), token));
    }
    // SCIM (`SLUICE_SCIM_TOKEN`): bearer-token routes for an identity provider, not
    // cookie-authenticated, so outside the account-route guard.
    if let Some(scim) = scim {
        routes = routes.merge(crate::scim::routes::router(scim));
    }
    // The admin console (`SLUICE_CONSOLE`): static pages that call the account and admin
    // routes above like any other client.
    if console {
        routes = routes.merge(crate::console::router());
    }
    // Pages a caller of the library adds (the demo's), with no state of their own.
    if let Some(extra) = extra {
        routes = routes.merge(extra);
    }
    // The request-id and edge middleware wrap the routes once, as one service, rather than
    // through `Router::layer`, which wraps every route (and the fallback) in its own boxed
    // copy of them; the same service serves the query route itself (`edge::Front`).
    edge::Front::new(state, routes)
}
