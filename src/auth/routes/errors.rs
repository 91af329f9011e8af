//! How account errors are answered: each [`AuthError`] becomes an [`ApiError`] here, and
//! only here. Internal failures are logged (without values) and answered as a bare 500.

use axum::http::StatusCode;

use crate::auth::service::{AuthError, NoAccount};
use crate::http::ApiError;
use crate::policy::Refusal;
use crate::policy::refusal::RateLimited;

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
            AuthError::MfaEnrolmentRequired => Refusal::MfaEnrolmentRequired.into(),
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
            AuthError::RateLimited { retry_after_secs } => Refusal::RateLimited {
                limit: RateLimited::Attempts,
                retry_after_secs,
            }
            .into(),
            AuthError::Unavailable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "feature_off", message)
            }
            AuthError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            AuthError::SsoNoAccount(NoAccount::NotLinked) => {
                ApiError::new(StatusCode::FORBIDDEN, "sso_no_account", message)
            }
            AuthError::SsoNoAccount(NoAccount::LinkRequired) => {
                ApiError::new(StatusCode::FORBIDDEN, "sso_link_required", message)
            }
            AuthError::SsoRefused(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "sso_refused", message)
            }
            AuthError::NotFound(_) => ApiError::not_found(message),
            AuthError::Store(_) | AuthError::Task(_) | AuthError::Vault(_) => {
                tracing::error!(error = %error, "Authentication failed inside Sluice");
                ApiError::internal()
            }
        }
    }
}
