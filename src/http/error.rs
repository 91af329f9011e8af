//! API errors and their one JSON rendering:
//! `{"error": {"code", "message", "request_id", "param"?}}`.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` only records the error on the response,
//! and the request-id middleware renders the body, because only it knows the request id.
//! Each error says who is at fault through its status class: 4xx the caller, 502/504 the
//! datasource, 500 Sluice itself.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::service::AuthError;
use crate::datasource::DatasourceError;

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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
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
        }
        serde_json::to_vec(&Body {
            code: self.code,
            message: &self.message,
            request_id,
            param: self.param.as_deref(),
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

impl From<&DatasourceError> for ApiError {
    fn from(error: &DatasourceError) -> ApiError {
        match error {
            DatasourceError::Unavailable { .. } => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "datasource_unavailable",
                    "the datasource is unavailable; try again later",
                )
            },
            DatasourceError::EgressRefused => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "egress_refused",
                "the egress policy does not allow connecting to this datasource's address; \
                 the server log names the address and the rule",
            ),
            DatasourceError::UpstreamTooLarge => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "upstream_too_large",
                "the upstream response is larger than this datasource allows",
            ),
            DatasourceError::Timeout => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "query_timeout",
                "the query ran past its timeout",
            ),
            DatasourceError::Constraint { kind } => ApiError::new(
                StatusCode::CONFLICT,
                "constraint_violation",
                format!("the change conflicts with a {kind} constraint"),
            ),
            DatasourceError::InvalidData { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_data",
                "the database rejected a value (out of range, too long or malformed)",
            ),
            // The gateway fills in `param` from the statement's bindings.
            DatasourceError::Bind { db_type, .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_params",
                format!("a param value does not fit the database type {db_type}"),
            ),
            DatasourceError::UnsupportedColumn { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "unsupported_column_type",
                error.to_string(),
            ),
            DatasourceError::Query { .. } => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "query_failed",
                "the datasource could not run the query; the server log has its error class",
            ),
            DatasourceError::Retryable { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "retry",
                    "the datasource is busy (conflict or deadlock); retry the request",
                )
            },
            DatasourceError::Internal { .. } => ApiError::internal(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let message = error.to_string();
        match error {
            AuthError::InvalidCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", message)
            }
            AuthError::MfaRequired => {
                ApiError::new(StatusCode::UNAUTHORIZED, "mfa_required", message)
            }
            AuthError::InvalidMfaCode => {
                ApiError::new(StatusCode::UNAUTHORIZED, "invalid_mfa_code", message)
            }
            AuthError::Unauthenticated => ApiError::unauthenticated(message),
            AuthError::FreshAuthRequired => {
                ApiError::new(StatusCode::FORBIDDEN, "fresh_auth_required", message)
            }
            AuthError::MfaEnrolmentRequired => {
                ApiError::new(StatusCode::FORBIDDEN, "mfa_enrolment_required", message)
            }
            AuthError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            AuthError::WeakPassword(_) => ApiError {
                param: Some("password".into()),
                ..ApiError::new(StatusCode::BAD_REQUEST, "weak_password", message)
            },
            AuthError::InvalidEmail(field) => ApiError {
                param: Some(field.into()),
                ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_email", message)
            },
            AuthError::InvalidInput(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
            }
            AuthError::InvalidToken => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message)
            }
            AuthError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            },
            AuthError::Unavailable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "feature_off", message)
            }
            AuthError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AuthError::NotFound(_) => ApiError::not_found(message),
            AuthError::Store(_) | AuthError::Task(_) | AuthError::Vault(_) => {
                tracing::error!(error = %error, "Authentication failed inside Sluice");
                ApiError::internal()
            }
        }
    }
}
