//! Request ids, the request log line, and the rendering of [`ApiError`]s.
//!
//! Every response carries `X-Request-Id`; error bodies carry the same id. Ids are a random
//! per-process prefix and a counter: unique, cheap, and meaningless outside the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiError;

/// The id of one request, shared with handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn next() -> RequestId {
        static PREFIX: OnceLock<String> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let prefix = PREFIX.get_or_init(|| format!("{:08x}", rand::random::<u32>()));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        RequestId(format!("{prefix}-{n:x}").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Assigns the request id, renders [`ApiError`]s (keeping headers set on the way out), and logs the
/// request (method, path, status, duration; never a query string or body).
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::next();
    request.extensions_mut().insert(id.clone());
    let method = request.method().clone();
    // The path holds app and query names only; the query string is never logged.
    // A clone of the URI shares its bytes; only log lines read the path.
    let uri = request.uri().clone();
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        let mut rendered = error.render(id.as_str());
        // Headers set on the way out (CORS, security headers, cookies) stay on the error.
        for (name, value) in response.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                rendered.headers_mut().append(name, value.clone());
            }
        }
        response = rendered;
        tracing::info!(
            request_id = %id.as_str(),
            method = %method,
            path = %uri.path(),
            status = error.status.as_u16(),
            error_code = error.code,
            duration_us = started.elapsed().as_micros() as u64,
            "Request refused"
        );
    } else {
        tracing::debug!(
            request_id = %id.as_str(),
            method = %method,
            path = %uri.path(),
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            "Request answered"
        );
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    response
}
