//! The view plane's error mapping: datasource errors and policy refusals become
//! [`ApiError`]s here, and only here. The admin and account routes use the same mapping
//! for the refusals they make.

use axum::http::StatusCode;

use crate::datasource::DatasourceError;
use crate::http::ApiError;
use crate::policy::Refusal;
use crate::policy::refusal::RefusalKind;

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        let status = match refusal.kind() {
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError {
            retry_after: refusal.retry_after(),
            ..ApiError::new(status, refusal.code(), refusal.to_string())
        }
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
            DatasourceError::Busy { .. } => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "datasource_busy",
                    "every connection to the datasource is in use; retry shortly",
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
