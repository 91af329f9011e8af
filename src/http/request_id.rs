//! Request ids, the request log line, and the rendering of [`ApiError`]s.
//!
//! Every response carries `X-Request-Id`; error bodies carry the same id. Ids are 128
//! random bits (32 hex digits): unique, and unguessable, so they tell nothing about how
//! many requests the instance serves or which came before.

use std::sync::Arc;
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
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bits: u128 = rand::random();
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((bits >> (124 - 4 * i)) & 0xf) as usize];
        }
        RequestId(std::str::from_utf8(&text).expect("hex digits").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Assigns the request id, renders [`ApiError`]s (keeping headers set on the way out), and logs the
/// request (method, path, status, duration; never a query string or body).
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let tagged = Tagged::start(&request, Instant::now());
    request.extensions_mut().insert(tagged.id().clone());
    let response = next.run(request).await;
    tagged.finish(response)
}

/// [`middleware`] in two halves, for a service that does its own work between them
/// inline (the instance's front service) rather than through a layer, which would box its
/// own future and clone the next service for every request: a request this middleware
/// has given its id, until its response is finished.
pub struct Tagged {
    id: RequestId,
    started: Instant,
    method: axum::http::Method,
    uri: axum::http::Uri,
}

impl Tagged {
    /// Gives `request` a new id, its clock started at `started`. The caller hands the id
    /// to what serves the request: as the [`RequestId`] extension to the routes, directly
    /// to the query route (an extension is a box and a map entry per request).
    pub fn start(request: &Request, started: Instant) -> Tagged {
        let id = RequestId::next();
        Tagged {
            id,
            started,
            method: request.method().clone(),
            // The path holds app and query names only; the query string is never logged.
            // A clone of the URI shares its bytes; only log lines read the path.
            uri: request.uri().clone(),
        }
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Renders an [`ApiError`] the response carries, logs the request, and sets
    /// `X-Request-Id`.
    pub fn finish(self, mut response: Response) -> Response {
        let Tagged {
            id,
            started,
            method,
            uri,
        } = self;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_128_random_bits_in_hex() {
        let ids: Vec<RequestId> = (0..1000).map(|_| RequestId::next()).collect();
        let mut distinct = std::collections::HashSet::new();
        for id in &ids {
            assert_eq!(id.as_str().len(), 32, "{}", id.as_str());
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(distinct.insert(id.as_str().to_string()), "a repeated id");
        }
        // No shared prefix or counter: consecutive ids differ in their first digits too
        // (all 1,000 starting alike would be a 1 in 16^999 event).
        let first_digits: std::collections::HashSet<u8> =
            ids.iter().map(|id| id.as_str().as_bytes()[0]).collect();
        assert!(first_digits.len() > 8, "{first_digits:?}");
        // Every bit position varies: the last digit is not a counter.
        let last: std::collections::HashSet<u8> =
            ids.iter().map(|id| id.as_str().as_bytes()[31]).collect();
        assert!(last.len() > 8, "{last:?}");
    }
}
