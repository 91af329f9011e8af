//! The demo's page, `GET /demo`: a small view-mode page for the demo app's orders that
//! runs its queries with the JavaScript client (`clients/js`, served as built), shows rows
//! as they stream and an error that names a param.
//!
//! Every asset is embedded in the binary; the page loads nothing from elsewhere and runs no
//! inline script, under the strict page policy (`auth::pages::PAGE_CSP`).

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::pages::PAGE_CSP;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/demo.js");
const STYLE: &str = include_str!("page/demo.css");
/// The client as `tsc` builds it from `clients/js/src` (a test checks the two agree).
pub const CLIENT: &str = include_str!("../../clients/js/dist/index.js");

/// The page's routes, merged into the demo instance's router.
pub fn router() -> Router {
    Router::new()
        .route(
            "/demo",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/demo/demo.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/demo/sluice-client.js",
            get(|| async { asset(CLIENT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/demo/demo.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
