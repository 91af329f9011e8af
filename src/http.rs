//! HTTP plumbing shared by both planes: the listener loop (header read timeout, keep-alive,
//! graceful drain), request ids, baseline response headers, and the one place where errors
//! become JSON responses.

pub mod body;
pub mod edge;
pub mod error;
pub mod request_id;
pub mod server;
pub mod tls;

pub use error::ApiError;
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
