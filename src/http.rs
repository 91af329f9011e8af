//! The HTTP toolkit shared by the planes: the listener loop (header and body read
//! timeouts, connection caps, listen backlog, keep-alive, graceful drain, the watch for
//! clients that reset their connection mid-request), TLS from
//! certificate files, JSON bodies, request ids, and the one place where errors become JSON
//! responses. Imports no plane and no domain: each plane maps its own errors to an
//! [`ApiError`].

pub mod body;
pub mod client_reset;
pub mod connections;
pub mod drain;
pub mod error;
pub mod request_id;
pub mod server;
pub mod tls;

pub use client_reset::ClientReset;
pub use error::{ApiError, Problem};
pub use request_id::RequestId;

/// A JSON answer: `value` serialised with `Content-Type: application/json`.
pub fn json_response(
    status: axum::http::StatusCode,
    value: &impl serde::Serialize,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).expect("responses serialise"),
    )
        .into_response()
}

/// Fallback for paths no route matches: a JSON 404.
pub async fn no_such_endpoint() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Fallback for a known path with a method it does not accept: a JSON 405.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}
