//! The three small pages mailed links open: `/auth/reset`, `/auth/signup` and
//! `/auth/email`. Each is static HTML plus one static script (no inline script, so the
//! strict Content-Security-Policy holds) that reads the token from the URL fragment and
//! posts it with the form to the matching `/v1/auth/...` endpoint.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of every page Sluice serves: nothing but its own script and API calls, never
/// framed, forms only through the script.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const RESET: &str = include_str!("pages/reset.html");
const SIGNUP: &str = include_str!("pages/signup.html");
const EMAIL: &str = include_str!("pages/email.html");
const SCRIPT: &str = include_str!("pages/link.js");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/auth/reset", get(|| async { page(RESET) }))
        .route("/auth/signup", get(|| async { page(SIGNUP) }))
        .route("/auth/email", get(|| async { page(EMAIL) }))
        .route("/auth/link.js", get(|| async { script() }))
}

fn page(html: &'static str) -> Response {
    let mut response = html.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn script() -> Response {
    let mut response = SCRIPT.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    response
}
