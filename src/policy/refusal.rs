//! Why the edge policy refused a request: one typed value per reason, each with its stable
//! error code and a message that names what was wrong (never a value from the request).
//!
//! Built by the policy decisions ([`super::authorize`]) and by the planes for their own
//! refusals (IP allowlists, CORS, CSRF, rate limits); turned into an HTTP answer in one
//! place by the planes (`gateway::errors`). Nothing here knows HTTP status codes: the
//! [`RefusalKind`] says who is at fault and the plane picks the status.

use crate::spec::checks::shown_name;
use crate::spec::rate::RateRule;

/// A refused request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A private app the caller may not see, or an unknown app or query: the same answer for
    /// all three, so names cannot be probed. `query` is `None` where the app itself was asked
    /// for (its OpenAPI document).
    Hidden { app: String, query: Option<String> },
    /// The app or query needs a signed-in caller.
    SignInRequired(&'static str),
    /// An admin session that has not enrolled in MFA yet may only enrol.
    MfaEnrolmentRequired,
    /// An API key whose scope does not include the query.
    OutsideKeyScope,
    /// The query is not granted to the caller's role or groups.
    NotGranted,
    /// The client's address is outside an allowlist.
    IpNotAllowed(IpScope),
    /// A CORS preflight or cross-origin answer that the app does not allow.
    Cors(&'static str),
    /// A cookie-authenticated write from a page that is not allowed to make it.
    Csrf(&'static str),
    /// A rate limit was reached; one token is back in `retry_after_secs`.
    RateLimited {
        limit: RateLimited,
        retry_after_secs: u64,
    },
    /// The query already runs as often as its concurrency cap allows.
    TooManyConcurrent { max: u32 },
}

/// Which allowlist refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpScope {
    App,
    Admin,
}

/// Which limit was reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimited {
    /// The instance-wide per-address limit at the edge.
    Address(RateRule),
    /// A query's limit for this address, user or API key (`who` names which).
    Query { who: &'static str, rule: RateRule },
    /// The sign-in and account-mail throttle.
    Attempts,
}

/// Who is at fault, which decides the kind of answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Unknown to this caller (answered like a missing resource).
    NotFound,
    /// The caller must sign in first.
    Unauthenticated,
    /// The caller is known and may not do this.
    Forbidden,
    /// The caller must slow down and retry later.
    TooMany,
}

impl Refusal {
    /// The answer for an app or query this caller may not see, or that does not exist.
    pub fn hidden(app: &str, query: &str) -> Refusal {
        Refusal::Hidden {
            app: app.to_string(),
            query: Some(query.to_string()),
        }
    }

    /// The answer for an app this caller may not see, or that does not exist.
    pub fn hidden_app(app: &str) -> Refusal {
        Refusal::Hidden {
            app: app.to_string(),
            query: None,
        }
    }

    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Hidden { .. } => "not_found",
            Refusal::SignInRequired(_) => "unauthenticated",
            Refusal::MfaEnrolmentRequired => "mfa_enrolment_required",
            Refusal::OutsideKeyScope => "outside_key_scope",
            Refusal::NotGranted => "not_granted",
            Refusal::IpNotAllowed(_) => "ip_not_allowed",
            Refusal::Cors(_) => "cors_refused",
            Refusal::Csrf(_) => "csrf_refused",
            Refusal::RateLimited { .. } => "rate_limited",
            Refusal::TooManyConcurrent { .. } => "too_many_concurrent",
        }
    }

    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Hidden { .. } => RefusalKind::NotFound,
            Refusal::SignInRequired(_) => RefusalKind::Unauthenticated,
            Refusal::MfaEnrolmentRequired
            | Refusal::OutsideKeyScope
            | Refusal::NotGranted
            | Refusal::IpNotAllowed(_)
            | Refusal::Cors(_)
            | Refusal::Csrf(_) => RefusalKind::Forbidden,
            Refusal::RateLimited { .. } | Refusal::TooManyConcurrent { .. } => RefusalKind::TooMany,
        }
    }

    /// Seconds after which a retry may succeed.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Refusal::TooManyConcurrent { .. } => Some(1),
            _ => None,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Hidden {
                app,
                query: Some(query),
            } => write!(
                f,
                "no query `{}` in app `{}`",
                shown_name(query),
                shown_name(app)
            ),
            Refusal::Hidden { app, query: None } => write!(f, "no app `{}`", shown_name(app)),
            Refusal::SignInRequired(message) | Refusal::Cors(message) | Refusal::Csrf(message) => {
                f.write_str(message)
            }
            Refusal::MfaEnrolmentRequired => f.write_str(
                "admins must enrol in two-factor authentication before anything else: \
                 POST /v1/auth/mfa/enroll, then /v1/auth/mfa/confirm",
            ),
            Refusal::OutsideKeyScope => {
                f.write_str("this API key's scope does not include this query")
            }
            Refusal::NotGranted => f.write_str("this query is not granted to your role or groups"),
            Refusal::IpNotAllowed(IpScope::App) => {
                f.write_str("this app does not accept requests from your network")
            }
            Refusal::IpNotAllowed(IpScope::Admin) => f.write_str(
                "the admin API does not accept requests from your network (SLUICE_ADMIN_ALLOWED_IPS)",
            ),
            Refusal::RateLimited {
                limit: RateLimited::Address(rule),
                ..
            } => write!(
                f,
                "too many requests from this address (limit {rule}); retry later"
            ),
            Refusal::RateLimited {
                limit: RateLimited::Query { who, rule },
                ..
            } => write!(
                f,
                "this {who} ran this query too often (limit {rule}); retry later"
            ),
            Refusal::RateLimited {
                limit: RateLimited::Attempts,
                retry_after_secs,
            } => write!(
                f,
                "too many attempts from this address; retry in {retry_after_secs} s"
            ),
            Refusal::TooManyConcurrent { max } => {
                write!(f, "this query is already running {max} times; retry shortly")
            }
        }
    }
}
