//! The admin console, `GET /console`: one HTML shell, one framework-free ES module and one
//! style sheet, all embedded in the binary (`include_str!`), served by every instance unless
//! `SLUICE_CONSOLE=off`. The console holds no data of its own: every page calls the JSON
//! API (`/v1/auth/*`, `/v1/admin/*`) with the session cookie, under the same CSRF and
//! same-origin rules as any other caller, so a page without a session shows only the
//! sign-in form (docs/CONSOLE.md).
//!
//! Every answer carries the console's own strict policy ([`CONSOLE_CSP`]: no inline script
//! or style, no eval, nothing from another origin, never framed), `X-Frame-Options: DENY`,
//! and `Cache-Control: no-cache` with an `ETag` (a hash of the asset), so a browser
//! revalidates and gets `304 Not Modified` until the binary changes.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// The console's Content-Security-Policy: its own script, style and API only, images from
/// itself or `data:` (the MFA enrolment QR code), forms only through the script, never
/// framed, no `<base>`.
pub const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("console/index.html"),
    content_type: HTML,
};
const SCRIPT: Asset = Asset {
    body: include_str!("console/console.js"),
    content_type: JAVASCRIPT,
};
const STYLE: Asset = Asset {
    body: include_str!("console/console.css"),
    content_type: CSS,
};

/// Each asset's entity tag, computed once.
static ETAGS: LazyLock<[String; 3]> = LazyLock::new(|| {
    [
        etag_of(INDEX.body),
        etag_of(SCRIPT.body),
        etag_of(STYLE.body),
    ]
});

fn etag_of(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// The console's routes, merged at the root of the instance's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|headers: HeaderMap| async move { serve(&INDEX, 0, &headers) }),
        )
        .route(
            "/console/console.js",
            get(|headers: HeaderMap| async move { serve(&SCRIPT, 1, &headers) }),
        )
        .route(
            "/console/console.css",
            get(|headers: HeaderMap| async move { serve(&STYLE, 2, &headers) }),
        )
}

fn serve(asset: &Asset, index: usize, request: &HeaderMap) -> Response {
    let etag = &ETAGS[index];
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests;
