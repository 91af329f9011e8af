//! API errors and their one JSON rendering:
//! `{"error": {"code", "message", "request_id", "param"?}}`.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` only records the error on the response,
//! and the request-id middleware renders the body, because only it knows the request id.
//! This module knows no domain error: each plane maps its own domain's errors to an
//! `ApiError` (`gateway::errors` for datasource errors and policy refusals, `auth::routes`
//! for account errors).
//! Each error says who is at fault through its status class: 4xx the caller, 502/504 the
//! datasource, 500 Sluice itself.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client. `message` must never hold a request value, a row value,
/// SQL text, a datasource address or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The param at fault, for `invalid_params`.
    pub param: Option<String>,
    /// Seconds after which a retry may succeed.
    pub retry_after: Option<u64>,
    /// Every problem found, each at its location (a catalog write that does not compile
    /// lists them all); shown as `problems` when not empty.
    pub problems: Vec<Problem>,
}

/// One located problem of a refused request: `location` is a path into what was sent
/// (`apps.shop.queries.recent.sql`), `message` what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub location: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            problems: Vec::new(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn invalid_params(param: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_params", message)
        }
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has details under this request id",
        )
    }

    /// The error object as JSON (the value of the top-level `error` member).
    pub fn body_json(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'a str,
            message: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            param: Option<&'a str>,
            #[serde(skip_serializing_if = "<[Problem]>::is_empty")]
            problems: &'a [Problem],
        }
        serde_json::to_vec(&Body {
            code: self.code,
            message: &self.message,
            request_id,
            param: self.param.as_deref(),
            problems: &self.problems,
        })
        .expect("error bodies serialise")
    }

    /// The full response body: `{"error": {...}}`.
    pub fn render(&self, request_id: &str) -> Response {
        let mut body = Vec::with_capacity(128);
        body.extend_from_slice(b"{\"error\":");
        body.extend_from_slice(&self.body_json(request_id));
        body.push(b'}');
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}
