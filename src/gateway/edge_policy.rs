//! Per-app edge policy around the view plane. Runs before the handler, so a refused request
//! never reaches a datasource. (The account and admin routes get their CSRF/CORS guard from
//! the instance wiring, `instance::account_policy`, which shares the helpers here.)
//!
//! For `/v1/apps/{app}/queries/{query}`: the app's IP allowlist (403 `ip_not_allowed`, with
//! an audit event), CORS preflights (204 with the app's CORS headers, or 403
//! `cors_refused`), the CSRF check on cookie-authenticated writes (403 `csrf_refused`), and
//! on the way out the app's security headers and CORS headers. Every answer but a preflight
//! is counted here in the query's metric series (status, and time from the front's start
//! on the request, before the instance-wide per-IP limit, to the response head): the query
//! is found with its app, so the request path makes no other lookup for it.
//!
//! For `/v1/auth/*` and `/v1/admin/*`: the same CSRF check, where an allowed page is this
//! instance or an origin some app lists; CORS answers for those origins on `/v1/auth/*` only
//! (the admin API is same-origin).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use crate::http::{ApiError, RequestId};
use crate::policy::Refusal;
use crate::policy::client_ip::ClientIp;
use crate::policy::cors;
use crate::policy::refusal::IpScope;
use crate::snapshot::Snapshot;
use crate::spec::Visibility;

/// What the edge found for a query request, handed to the handler: the snapshot this
/// request uses, what the front found ([`Found`]), and what the names found in the
/// snapshot's catalog, looked up once here: the app's visibility and the query's
/// [`index`](crate::catalog::compile::CompiledQuery::index) (each `None` when the catalog
/// has no such app or query). The snapshot is borrowed from the edge, which holds it for
/// the whole request.
pub(super) struct Resolved<'a> {
    pub snapshot: &'a Snapshot,
    pub found: Found,
    pub visibility: Option<Visibility>,
    pub query: Option<usize>,
}

/// What the instance's front found for a query request before this policy runs. Handed
/// over as an argument, not as request extensions (each a box and a map entry per request).
pub struct Found {
    /// The path's names, percent-decoded (`None` when one is not UTF-8 once decoded).
    pub names: Option<(String, String)>,
    pub request_id: RequestId,
    /// The client's address, as the front resolved it.
    pub ip: Option<IpAddr>,
    /// When the front started on the request (the run's duration is counted from here).
    pub started: Instant,
}

/// The query route, `POST` and `OPTIONS` on `/v1/apps/{app}/queries/{query}`: this policy,
/// then (unless it answered) the handler, [`invoke`](super::invoke::invoke), called
/// directly.
pub async fn serve_query(state: &Arc<GatewayState>, found: Found, request: Request) -> Response {
    let started = found.started;
    let names = &found.names;
    // The names as the handler sees them: percent-decoded once, here, so that
    // `/v1/apps/%73hop/...` meets the policy of `shop` (reading the raw path let an encoded
    // name skip the allowlist and the CSRF check).
    let app_name = names.as_ref().map_or("", |(app, _)| app.as_str());
    // One snapshot for the whole request: the policy here and the query the handler runs
    // come from the same catalog even while a reload swaps it.
    let snapshot = state.snapshot();
    // Unknown apps get the default policy (any address, same-origin only), so that the edge
    // answers for them exactly as for an app without a policy: a private app's name cannot
    // be probed with preflights or cross-site writes. The handler then answers 404.
    let app = snapshot.catalog.apps.get(app_name);
    // The default is a static, not a local: a local borrowed across the awaits below would
    // be kept in this future's state, moved with it on every request.
    static DEFAULT_POLICY: LazyLock<crate::policy::AppPolicy> =
        LazyLock::new(crate::policy::AppPolicy::default);
    // Borrowed from the snapshot this request holds: no reference count taken per request.
    let policy: &crate::policy::AppPolicy = match app {
        Some(app) => &app.policy,
        None => &DEFAULT_POLICY,
    };
    // What the handler needs of the catalog, looked up once here with the app: its
    // visibility and the query's index (which is also its place in the metric series).
    let visibility = app.map(|app| app.visibility);
    let query_index = app
        .zip(names.as_ref())
        .and_then(|(app, (_, query))| app.queries.get(query.as_str()))
        .map(|query| query.index);
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = found.ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let preflight = request.method() == Method::OPTIONS;
    let refused = refusal(
        state,
        policy,
        app_name,
        ip,
        request.method(),
        request.headers(),
    )
    .await;
    let mut response = match refused {
        Some(mut refused) => {
            // A preflight is not a run; a run refused here is.
            if !preflight {
                snapshot
                    .series(query_index, &state.metrics)
                    .observe(refused.status().as_u16(), started.elapsed());
            }
            // The app's security headers hold for every answer. A refusal carries no CORS
            // grant, but it depends on `Origin` when the app lists origins, so caches must
            // key on it.
            policy.headers.apply(refused.headers_mut());
            if policy.cors.is_some() && !refused.headers().contains_key(header::VARY) {
                refused
                    .headers_mut()
                    .append(header::VARY, HeaderValue::from_static("Origin"));
            }
            return refused;
        }
        None => {
            let resolved = Resolved {
                snapshot: &snapshot,
                found,
                visibility,
                query: query_index,
            };
            let response = super::invoke::invoke(state, resolved, request)
                .await
                .into_response();
            snapshot
                .series(query_index, &state.metrics)
                .observe(response.status().as_u16(), started.elapsed());
            response
        }
    };
    policy.headers.apply(response.headers_mut());
    if let Some(cors) = &policy.cors {
        cors.response_headers(origin.as_deref(), response.headers_mut());
    }
    response
}

/// The edge's answer when it refuses or answers the request itself (IP allowlist, CORS
/// preflight, CSRF); `None` lets it through to the handler.
async fn refusal(
    state: &GatewayState,
    policy: &crate::policy::AppPolicy,
    app_name: &str,
    ip: std::net::IpAddr,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
    if let Some(refused) = ip_refused(state, policy, app_name, ip, headers).await {
        return Some(refused);
    }
    if method == Method::OPTIONS {
        return Some(
            match policy
                .cors
                .as_ref()
                .map(|c| c.preflight(headers, &Method::POST))
            {
                Some(Ok(headers)) => {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    response.headers_mut().extend(headers);
                    response
                }
                Some(Err(reason)) => cors_refused(reason),
                None => cors_refused("this app does not allow cross-origin calls"),
            },
        );
    }
    if carries_session_cookie(state, headers)
        && let Err(reason) = cors::check_csrf(
            method,
            headers,
            scheme(state),
            state.edge.public_origin.as_deref(),
            policy.cors.as_ref(),
        )
    {
        return Some(csrf_refused(reason));
    }
    None
}

/// The app's IP allowlist (also for the app's OpenAPI document): `Some` refusal, with an
/// audit event, when `ip` is outside it.
pub(crate) async fn ip_refused(
    state: &GatewayState,
    policy: &crate::policy::AppPolicy,
    app_name: &str,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
) -> Option<Response> {
    if policy.ip_allowed(ip) {
        return None;
    }
    let client = crate::auth::routes::client_info(Some(&ClientIp(ip)), headers);
    state
        .audit
        .ip_refused(&client, serde_json::json!({ "app": app_name }))
        .await;
    Some(ApiError::from(Refusal::IpNotAllowed(IpScope::App)).into_response())
}

pub(crate) fn scheme(state: &GatewayState) -> &'static str {
    if state.edge.tls { "https" } else { "http" }
}

pub(crate) fn carries_session_cookie(state: &GatewayState, headers: &HeaderMap) -> bool {
    // A request that authenticates with a bearer key is not riding on ambient credentials.
    !headers.contains_key(header::AUTHORIZATION) && state.auth.cookie.read(headers).is_some()
}

pub(crate) fn cors_refused(reason: &'static str) -> Response {
    ApiError::from(Refusal::Cors(reason)).into_response()
}

pub(crate) fn csrf_refused(reason: &'static str) -> Response {
    ApiError::from(Refusal::Csrf(reason)).into_response()
}
