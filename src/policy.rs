//! Access policy at the edge, decided before any datasource is touched: who may run a query
//! (grants), from where (IP allowlists, [`client_ip`]), from which pages ([`cors`], CSRF),
//! how often ([`rate_limit`], concurrency caps), and the headers every answer carries
//! ([`headers`]).
//!
//! Everything here is compiled with the catalog (`catalog::compile` calls [`compile_app`]
//! and [`compile_query`]) and is pure: decisions are functions of the compiled policy, the
//! caller and the request headers. Refusals are typed ([`Refusal`]); the planes turn them into
//! 401 / 403 / 404 / 429 answers. [`authorize`] is the view plane's whole authorisation.

pub mod access;
pub mod client_ip;
pub mod cors;
pub mod edge;
pub mod headers;
pub mod rate_limit;
pub mod refusal;

use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::auth::Caller;
use crate::auth::Role;
use crate::config::LimitDefaults;
use crate::spec::rate::{RateRule, parse_rule};
use crate::spec::{AppSpec, GrantSpec, LimitsSpec, QuerySpec, Visibility};
use cors::CorsPolicy;
use headers::HeaderPolicy;

pub use access::{Target, authorize, needs_membership};
pub use refusal::Refusal;

/// Who may run a query. Empty (the default) means nobody on the view plane.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub roles: Vec<Role>,
    pub groups: Vec<String>,
    pub anonymous: bool,
}

impl Grant {
    fn compile(spec: Option<&GrantSpec>, visibility: Visibility) -> Result<Grant, String> {
        let Some(spec) = spec else {
            return Ok(Grant::default());
        };
        let mut roles = Vec::new();
        for role in &spec.roles {
            let parsed = Role::parse(role)
                .ok_or_else(|| format!("`{role}` is not a role: use admin, developer or viewer"))?;
            if !roles.contains(&parsed) {
                roles.push(parsed);
            }
        }
        if spec.anonymous && visibility != Visibility::Public {
            return Err(
                "`anonymous: true` is only allowed in public apps (others need a signed-in user)"
                    .into(),
            );
        }
        Ok(Grant {
            roles,
            groups: spec.groups.clone(),
            anonymous: spec.anonymous,
        })
    }

    /// Whether `caller` (or an anonymous caller, `None`) may run the query.
    pub fn allows(&self, caller: Option<&Caller>) -> bool {
        if self.anonymous {
            return true;
        }
        let Some(caller) = caller else {
            return false;
        };
        self.roles.contains(&caller.user.role)
            || caller.user.groups.iter().any(|g| self.groups.contains(g))
    }

    /// Whether anyone at all is granted.
    pub fn is_empty(&self) -> bool {
        !self.anonymous && self.roles.is_empty() && self.groups.is_empty()
    }
}

/// A rate rule and the scope it was set at, which namespaces its buckets: a rule set on
/// one query does not share buckets with the same rule set on another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScopedRule {
    #[serde(serialize_with = "describe_rule")]
    pub rule: RateRule,
    /// `instance`, `app` or `query`.
    pub set_at: &'static str,
    #[serde(skip)]
    pub scope: String,
}

fn describe_rule<S: serde::Serializer>(rule: &RateRule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rule.describe())
}

impl ScopedRule {
    /// The bucket key for `who` (an address, user id or key id) under this rule.
    pub fn key(&self, kind: &str, who: &str) -> String {
        format!("{kind}:{}:{who}", self.scope)
    }
}

/// A query's effective limits.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryLimits {
    /// Only when the app or query sets one; the instance-wide per-IP limit applies to every
    /// request at the edge.
    pub per_ip: Option<ScopedRule>,
    pub per_user: Option<ScopedRule>,
    pub per_key: Option<ScopedRule>,
    /// 0 means no cap.
    pub max_concurrency: u32,
    #[serde(skip)]
    pub running: Option<Arc<Semaphore>>,
}

/// An app's compiled edge policy.
#[derive(Debug, Clone, Default)]
pub struct AppPolicy {
    /// Empty means any address.
    pub allowed_ips: Vec<IpNet>,
    pub cors: Option<CorsPolicy>,
    pub headers: HeaderPolicy,
}

impl AppPolicy {
    pub fn ip_allowed(&self, ip: std::net::IpAddr) -> bool {
        self.allowed_ips.is_empty() || self.allowed_ips.iter().any(|net| net.contains(&ip))
    }
}

/// A query's compiled policy.
#[derive(Debug, Clone, Default)]
pub struct QueryPolicy {
    pub grant: Grant,
    pub limits: QueryLimits,
}

/// A problem in an app's or query's policy: the field (relative to the app or query) and
/// the message.
pub type PolicyProblem = (String, String);

/// Compiles an app's policy (allowed IPs, CORS, headers).
pub fn compile_app(app: &AppSpec) -> Result<AppPolicy, Vec<PolicyProblem>> {
    let mut problems = Vec::new();
    let allowed_ips = match crate::egress::parse_cidrs(app.allowed_ips.iter().map(String::as_str)) {
        Ok(nets) => nets,
        Err(error) => {
            problems.push(("allowed_ips".to_string(), error.to_string()));
            Vec::new()
        }
    };
    let cors = match &app.cors {
        Some(spec) => match CorsPolicy::compile(spec, app.visibility == Visibility::Public) {
            Ok(policy) => Some(policy),
            Err(message) => {
                problems.push(("cors".to_string(), message));
                None
            }
        },
        None => None,
    };
    let headers = match &app.headers {
        Some(spec) => HeaderPolicy::compile(spec).unwrap_or_else(|message| {
            problems.push(("headers".to_string(), message));
            HeaderPolicy::default()
        }),
        None => HeaderPolicy::default(),
    };
    if let Some(limits) = &app.limits {
        check_limits(limits, &mut problems);
    }
    if let Err(message) = Grant::compile(app.grants.as_ref(), app.visibility) {
        problems.push(("grants".to_string(), message));
    }
    if problems.is_empty() {
        Ok(AppPolicy {
            allowed_ips,
            cors,
            headers,
        })
    } else {
        Err(problems)
    }
}

fn check_limits(limits: &LimitsSpec, problems: &mut Vec<PolicyProblem>) {
    for (field, value) in [
        ("per_ip", &limits.per_ip),
        ("per_user", &limits.per_user),
        ("per_key", &limits.per_key),
    ] {
        if let Some(value) = value
            && let Err(message) = parse_rule(value)
        {
            problems.push((format!("limits.{field}"), message));
        }
    }
}

/// Compiles a query's grant (the query's own, else the app's) and effective limits (each
/// from the query, else the app, else the instance defaults).
pub fn compile_query(
    app_name: &str,
    query_name: &str,
    app: &AppSpec,
    query: &QuerySpec,
    defaults: LimitDefaults,
) -> Result<QueryPolicy, Vec<PolicyProblem>> {
    let mut problems = Vec::new();
    let grant = Grant::compile(
        query.grants.as_ref().or(app.grants.as_ref()),
        app.visibility,
    )
    .unwrap_or_else(|message| {
        if query.grants.is_some() {
            problems.push(("grants".to_string(), message));
        }
        Grant::default()
    });
    if let Some(limits) = &query.limits {
        check_limits(limits, &mut problems);
    }
    let pick = |field: fn(&LimitsSpec) -> &Option<String>, default: Option<RateRule>| {
        let (text, set_at, scope) =
            if let Some(text) = query.limits.as_ref().and_then(|l| field(l).clone()) {
                (Some(text), "query", format!("{app_name}/{query_name}"))
            } else if let Some(text) = app.limits.as_ref().and_then(|l| field(l).clone()) {
                (Some(text), "app", app_name.to_string())
            } else {
                (None, "instance", String::new())
            };
        let rule = match text {
            Some(text) => parse_rule(&text).ok().flatten(),
            None => default,
        };
        rule.map(|rule| ScopedRule {
            rule,
            set_at,
            scope,
        })
    };
    let per_ip = pick(|l| &l.per_ip, None);
    let per_user = pick(|l| &l.per_user, defaults.per_user);
    let per_key = pick(|l| &l.per_key, defaults.per_key);
    let max_concurrency = query
        .limits
        .as_ref()
        .and_then(|l| l.max_concurrency)
        .or(app.limits.as_ref().and_then(|l| l.max_concurrency))
        .unwrap_or(defaults.max_concurrency);
    if problems.is_empty() {
        Ok(QueryPolicy {
            grant,
            limits: QueryLimits {
                per_ip,
                per_user,
                per_key,
                max_concurrency,
                running: (max_concurrency > 0)
                    .then(|| Arc::new(Semaphore::new(max_concurrency as usize))),
            },
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests;
