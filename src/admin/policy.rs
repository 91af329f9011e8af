//! `GET /v1/admin/apps/{app}/policy`: the effective edge policy of an app, as the gateway
//! enforces it (compiled, with every default filled in and where each limit was set).

use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::compile::CompiledApp;
use crate::config::Config;
use crate::policy::headers::HSTS;
use crate::spec::Visibility;

/// The report for one app.
#[derive(Debug, Serialize)]
pub struct PolicyReport {
    pub app: String,
    pub visibility: Visibility,
    /// Empty means any address.
    pub allowed_ips: Vec<String>,
    /// `null` means same-origin only.
    pub cors: Value,
    pub headers: Value,
    /// Members of a private app (user ids); empty for other visibilities.
    pub members: Vec<String>,
    pub instance: Value,
    pub queries: serde_json::Map<String, Value>,
}

/// Builds the report from the compiled app and the instance configuration.
pub fn report(
    name: &str,
    app: &CompiledApp,
    config: &Config,
    members: Vec<String>,
    tls: bool,
) -> PolicyReport {
    let policy = &app.policy;
    let cors = match &policy.cors {
        None => Value::Null,
        Some(cors) => json!({
            "origins": if cors.any { vec!["*".to_string()] } else { cors.origins.iter().cloned().collect() },
            "credentials": !cors.any,
            "allow_methods": ["POST"],
            "allow_headers": cors.allow_headers,
            "max_age_secs": cors.max_age_secs,
        }),
    };
    let text = |v: &axum::http::HeaderValue| v.to_str().unwrap_or("").to_string();
    let headers = json!({
        "content-security-policy": text(&policy.headers.content_security_policy),
        "referrer-policy": text(&policy.headers.referrer_policy),
        "x-frame-options": if policy.headers.frame_deny { Value::from("DENY") } else { Value::Null },
        "x-content-type-options": "nosniff",
        "cache-control": "no-store",
        "strict-transport-security": if tls { Value::from(HSTS) } else { Value::Null },
    });
    let instance = json!({
        "per_ip": config.edge.per_ip.map(|r| r.describe()),
        "trusted_proxies": config.edge.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "admin_allowed_ips": config.edge.admin_allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "auth_per_ip": format!("{} per minute", config.auth.auth_rate_per_minute),
    });
    let mut queries = serde_json::Map::new();
    let mut names: Vec<&String> = app.queries.keys().collect();
    names.sort();
    for query_name in names {
        let query = &app.queries[query_name];
        let grant = &query.policy.grant;
        queries.insert(
            query_name.clone(),
            json!({
                "grants": grant,
                "runnable": !grant.is_empty(),
                "binds_user": query.template.uses_user(),
                "limits": query.policy.limits,
                "timeout_ms": query.timeout.as_millis() as u64,
                "max_rows": query.max_rows,
            }),
        );
    }
    PolicyReport {
        app: name.to_string(),
        visibility: app.visibility,
        allowed_ips: policy.allowed_ips.iter().map(|n| n.to_string()).collect(),
        cors,
        headers,
        members: if app.visibility == Visibility::Private {
            members
        } else {
            Vec::new()
        },
        instance,
        queries,
    }
}
