//! The security scan: what is too open, left unguarded or exposed in a catalog and the
//! instance's settings, checked exactly from what Sluice knows (every query, grant,
//! template and setting) rather than guessed from outside.
//!
//! [`scan`] is pure: a catalog, a summary of the settings and the accounts' MFA state in,
//! [`Finding`]s out, each with a rule id, a severity, where it is, what is wrong and the
//! fix. `secrets` detects credentials in text; `advisories` checks the build's dependencies
//! against RustSec advisories; `report` writes findings as text, JSON or SARIF 2.1.0. The
//! CLI (`sluice scan`) gathers the inputs.
//!
//! Invariant: a finding names a rule and a place, never a secret's value (an exposed key
//! is reported by its kind).

pub mod advisories;
pub mod lines;
pub mod report;
pub mod secrets;

use serde::Serialize;

use crate::spec::{CatalogSpec, DatasourceSpec, GrantSpec, QuerySpec, TlsMode, Visibility};

/// How bad a finding is, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
            Severity::Info => "info",
        }
    }

    pub fn parse(text: &str) -> Option<Severity> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
            Severity::Info,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One rule's finding at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `SLU-D001`, ... (docs/SECURITY.md lists them).
    pub rule: &'static str,
    pub severity: Severity,
    /// `apps.shop.queries.recent`, `datasources.pg`, `settings.SLUICE_PUBLIC_URL`.
    pub location: String,
    /// The line of the catalog's YAML text where the location is written, where known
    /// ([`locate`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

/// What the scan needs to know of the instance besides its catalog.
#[derive(Debug, Clone, Default)]
pub struct InstanceFacts {
    pub public_url: Option<String>,
    pub signup_enabled: bool,
    pub signup_allowed_domains: Vec<String>,
    /// The per-IP query rate limit is set.
    pub per_ip_limit: bool,
    pub lockout_threshold: u32,
    pub admin_token: bool,
    pub admin_ips_restricted: bool,
    /// `SLUICE_EGRESS_ALLOW`.
    pub egress_allow: Vec<ipnet::IpNet>,
    /// Emails of admins without MFA.
    pub admins_without_mfa: Vec<String>,
    /// The live API keys (not revoked, not expired).
    pub api_keys: Vec<ApiKeyFact>,
}

/// A live API key as the scan sees it: never the key, only its public id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyFact {
    pub id: String,
    /// The owner's email.
    pub owner: String,
    pub expires_at: Option<i64>,
    /// The whole apps its scope names.
    pub apps: Vec<String>,
}

impl InstanceFacts {
    /// The facts of `config`, with the emails of the admins who have no MFA.
    pub fn from_config(
        config: &crate::config::Config,
        admins_without_mfa: Vec<String>,
    ) -> InstanceFacts {
        InstanceFacts {
            public_url: config.public_url.clone(),
            signup_enabled: config.auth.signup_enabled,
            signup_allowed_domains: config.auth.signup_allowed_domains.clone(),
            per_ip_limit: config.edge.per_ip.is_some(),
            lockout_threshold: config.auth.lockout_threshold,
            admin_token: config.admin_token.is_some(),
            admin_ips_restricted: !config.edge.admin_allowed_ips.is_empty(),
            egress_allow: config.egress_allow.clone(),
            admins_without_mfa,
            api_keys: Vec::new(),
        }
    }

    /// With the live API keys.
    pub fn with_api_keys(mut self, keys: Vec<ApiKeyFact>) -> InstanceFacts {
        self.api_keys = keys;
        self
    }
}

/// Every rule, with its id, severity and one line: what docs and SARIF list.
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "SLU-D001",
        Severity::Medium,
        "anonymous query reads rows without a {{ user.* }} rule",
    ),
    ("SLU-D002", Severity::Critical, "anonymous query writes"),
    (
        "SLU-D003",
        Severity::Medium,
        "query without a row bound (max_rows or LIMIT)",
    ),
    ("SLU-D004", Severity::Low, "SELECT * on a public app"),
    (
        "SLU-D005",
        Severity::Low,
        "number param without bounds on a public app",
    ),
    (
        "SLU-L001",
        Severity::High,
        "query runnable without sign-in in an app not declared public",
    ),
    (
        "SLU-L002",
        Severity::Low,
        "workspace app granted to every role",
    ),
    (
        "SLU-C001",
        Severity::Critical,
        "credential in a template, header, base URL, param default or description",
    ),
    ("SLU-L003", Severity::Low, "API key without expiry"),
    ("SLU-L004", Severity::Medium, "API key scoped to every app"),
    ("SLU-S001", Severity::High, "public URL over plain HTTP"),
    ("SLU-S002", Severity::High, "admin without MFA"),
    (
        "SLU-S003",
        Severity::Medium,
        "signup open to any email domain",
    ),
    ("SLU-S004", Severity::Medium, "per-address rate limit off"),
    ("SLU-S005", Severity::Medium, "sign-in lockout off"),
    (
        "SLU-S006",
        Severity::High,
        "datasource reached without verified TLS off loopback",
    ),
    (
        "SLU-S007",
        Severity::Medium,
        "egress allow list opens a wide private range",
    ),
    (
        "SLU-S008",
        Severity::Medium,
        "admin token set, admin API open to every address",
    ),
    (
        "SLU-P001",
        Severity::High,
        "dependency with a known vulnerability (severity from the advisory's CVSS)",
    ),
    (
        "SLU-P002",
        Severity::Info,
        "dependency with an informational advisory (unmaintained, unsound, notice)",
    ),
];

fn rule(id: &'static str) -> (&'static str, Severity) {
    let (id, severity, _) = RULES
        .iter()
        .find(|(rule, _, _)| *rule == id)
        .expect("every rule is listed");
    (id, *severity)
}

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, id: &'static str, location: String, message: String, fix: &str) {
        let (rule, severity) = rule(id);
        self.0.push(Finding {
            rule,
            severity,
            location,
            line: None,
            message,
            fix: fix.to_owned(),
        });
    }
}

/// Scans a catalog and the instance's facts. Findings come worst first, then by place.
pub fn scan(catalog: &CatalogSpec, facts: &InstanceFacts) -> Vec<Finding> {
    let mut out = Findings(Vec::new());
    for (name, app) in &catalog.apps {
        for (query_name, query) in &app.queries {
            let at = format!("apps.{name}.queries.{query_name}");
            let grant = query.grants.as_ref().or(app.grants.as_ref());
            check_query(&mut out, &at, app.visibility, grant, query);
        }
        if app.visibility == Visibility::Workspace
            && let Some(grant) = &app.grants
            && ["admin", "developer", "viewer"]
                .iter()
                .all(|r| grant.roles.iter().any(|g| g == r))
        {
            out.add(
                "SLU-L002",
                format!("apps.{name}.grants"),
                format!("every role may run app `{name}`'s queries"),
                "grant the roles or groups that need the app, not all of them",
            );
        }
    }
    for (name, datasource) in &catalog.datasources {
        check_datasource(&mut out, name, datasource);
    }
    check_settings(&mut out, facts);
    check_api_keys(&mut out, catalog, facts);
    let mut findings = out.0;
    sort(&mut findings);
    findings
}

/// The apps `after` makes public: public there and not public (or absent) in `before`.
pub fn newly_public(before: &CatalogSpec, after: &CatalogSpec) -> Vec<String> {
    after
        .apps
        .iter()
        .filter(|(_, app)| app.visibility == Visibility::Public)
        .filter(|(name, _)| {
            before
                .apps
                .get(*name)
                .is_none_or(|app| app.visibility != Visibility::Public)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The findings of `catalog` located in app `app` (its queries, params and grants): what
/// publishing the app is judged on. Instance settings are not the app's own.
pub fn app_findings(catalog: &CatalogSpec, app: &str) -> Vec<Finding> {
    let prefix = format!("apps.{app}.");
    scan(catalog, &InstanceFacts::default())
        .into_iter()
        .filter(|f| f.location.starts_with(&prefix))
        .collect()
}

/// Sets each finding's line in `yaml`, the catalog's text the findings were made from.
pub fn locate(findings: &mut [Finding], yaml: &str) {
    for finding in findings {
        finding.line = lines::line_of(yaml, &finding.location);
    }
}

/// Worst first, then by place and rule: the order every report shows.
pub fn sort(findings: &mut [Finding]) {
    findings
        .sort_by(|a, b| (a.severity, &a.location, a.rule).cmp(&(b.severity, &b.location, b.rule)));
}

fn anonymous(visibility: Visibility, grant: Option<&GrantSpec>) -> bool {
    visibility == Visibility::Public && grant.is_some_and(|g| g.anonymous)
}

/// The statement's first keyword, upper case (`SELECT`, `WITH`, `INSERT`).
fn first_keyword(sql: &str) -> String {
    sql.trim_start()
        .trim_start_matches('(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

fn writes(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    matches!(
        first_keyword(sql).as_str(),
        "INSERT"
            | "UPDATE"
            | "DELETE"
            | "MERGE"
            | "REPLACE"
            | "UPSERT"
            | "CREATE"
            | "DROP"
            | "ALTER"
            | "TRUNCATE"
            | "GRANT"
            | "REVOKE"
            | "CALL"
            | "COPY"
    ) || (first_keyword(sql) == "WITH"
        && words
            .iter()
            .any(|w| matches!(*w, "INSERT" | "UPDATE" | "DELETE" | "MERGE")))
}

fn check_query(
    out: &mut Findings,
    at: &str,
    visibility: Visibility,
    grant: Option<&GrantSpec>,
    query: &QuerySpec,
) {
    let anonymous = anonymous(visibility, grant);
    if visibility != Visibility::Public && grant.is_some_and(|g| g.anonymous) {
        out.add(
            "SLU-L001",
            at.to_owned(),
            "the query is granted to anonymous callers in an app that is not public".into(),
            "make the app `visibility: public` if it is meant for visitors, or drop `anonymous`",
        );
    }
    if let Some(sql) = &query.sql {
        let upper = sql.to_ascii_uppercase();
        let uses_user = sql.contains("user.");
        if anonymous && writes(sql) {
            out.add(
                "SLU-D002",
                at.to_owned(),
                "anyone, signed in or not, can run this write".into(),
                "grant it to signed-in roles, or move it to a workspace app",
            );
        } else if anonymous && !uses_user {
            out.add(
                "SLU-D001",
                at.to_owned(),
                "anyone can read these rows; no {{ user.* }} rule limits them".into(),
                "bind a {{ user.* }} rule, or make sure the rows are meant to be public",
            );
        }
        let reads = matches!(first_keyword(sql).as_str(), "SELECT" | "WITH" | "VALUES");
        if reads
            && query.max_rows.is_none()
            && !upper.contains("LIMIT")
            && !upper.contains("FETCH FIRST")
        {
            out.add(
                "SLU-D003",
                at.to_owned(),
                "no `max_rows` and no LIMIT: only SLUICE_MAX_ROWS bounds the result".into(),
                "set `max_rows` on the query, or a LIMIT in the SQL",
            );
        }
        if visibility == Visibility::Public && select_star(&upper) {
            out.add(
                "SLU-D004",
                at.to_owned(),
                "SELECT * on a public app returns every column, including ones added later".into(),
                "name the columns the app needs",
            );
        }
        if let Some(rule) = secrets::find(sql) {
            exposed(out, at, "sql", rule);
        }
    }
    if let Some(http) = &query.http {
        let method = http.method.to_ascii_uppercase();
        if anonymous && method != "GET" && method != "HEAD" {
            out.add(
                "SLU-D002",
                at.to_owned(),
                format!("anyone, signed in or not, can send this {method} request"),
                "grant it to signed-in roles, or move it to a workspace app",
            );
        }
        if let Some(rule) = secrets::find(&http.path) {
            exposed(out, at, "http.path", rule);
        }
        for (name, value) in http.query.iter().chain(&http.headers) {
            if let Some(rule) = secrets::find(value) {
                exposed(out, at, &format!("http.{name}"), rule);
            }
        }
        if let Some(body) = &http.body
            && let Ok(text) = serde_json::to_string(body)
            && let Some(rule) = secrets::find(&text)
        {
            exposed(out, at, "http.body", rule);
        }
    }
    if let Some(description) = &query.description
        && let Some(rule) = secrets::find(description)
    {
        exposed(out, at, "description", rule);
    }
    for (name, param) in &query.params {
        let texts = param
            .default
            .iter()
            .chain(param.allowed.iter().flatten())
            .filter_map(|v| v.as_str());
        for text in texts {
            if let Some(rule) = secrets::find(text) {
                exposed(out, at, &format!("params.{name}"), rule);
            }
        }
        let number = matches!(
            param.ty,
            crate::spec::ParamType::Scalar(
                crate::spec::ScalarType::Int
                    | crate::spec::ScalarType::Bigint
                    | crate::spec::ScalarType::Float
                    | crate::spec::ScalarType::Numeric
            )
        );
        if visibility == Visibility::Public
            && number
            && param.min.is_none()
            && param.max.is_none()
            && param.allowed.is_none()
        {
            out.add(
                "SLU-D005",
                format!("{at}.params.{name}"),
                "a number param of a public app without `min` or `max`".into(),
                "bound it with `min` and `max` (or an `enum`)",
            );
        }
    }
}

fn select_star(upper: &str) -> bool {
    let compact: String = upper.split_whitespace().collect::<Vec<_>>().join(" ");
    compact.contains("SELECT *") || compact.contains("SELECT DISTINCT *") || compact.contains(".*")
}

fn exposed(out: &mut Findings, at: &str, field: &str, kind: &str) {
    out.add(
        "SLU-C001",
        format!("{at}.{field}"),
        format!("looks like a credential ({kind}) where visitors or editors can read it"),
        "remove it and rotate it; put credentials in the datasource's sealed `password` or `auth`",
    );
}

fn check_datasource(out: &mut Findings, name: &str, datasource: &DatasourceSpec) {
    let at = format!("datasources.{name}");
    match datasource {
        DatasourceSpec::Postgres(db) | DatasourceSpec::Mysql(db) => {
            let loopback = crate::egress::is_loopback_host(&db.host);
            if !loopback && matches!(db.tls, Some(TlsMode::Disable) | Some(TlsMode::Require)) {
                out.add(
                    "SLU-S006",
                    format!("{at}.tls"),
                    format!(
                        "`{}` to {} does not verify the server's certificate",
                        db.tls.map_or("", |t| t.name()),
                        db.host
                    ),
                    "use `tls: verify-full` (with `tls_ca_file` for a private CA)",
                );
            }
            wide_ranges(out, &format!("{at}.egress_allow"), &db.egress_allow);
        }
        DatasourceSpec::Http(http) => {
            if let Some(rule) = secrets::find(&http.base_url) {
                exposed(out, &at, "base_url", rule);
            }
            for (header, value) in &http.headers {
                if let Some(rule) = secrets::find(value) {
                    exposed(out, &at, &format!("headers.{header}"), rule);
                }
            }
            wide_ranges(out, &format!("{at}.egress_allow"), &http.egress_allow);
        }
        DatasourceSpec::Sqlite(_) => {}
    }
}

/// Private ranges of /8 (IPv4) or /32 (IPv6) and wider.
fn wide_ranges(out: &mut Findings, at: &str, list: &[String]) {
    let nets = crate::egress::parse_cidrs(list.iter().map(String::as_str)).unwrap_or_default();
    wide_nets(out, at, &nets);
}

fn wide_nets(out: &mut Findings, at: &str, nets: &[ipnet::IpNet]) {
    for net in nets {
        let wide = match net {
            ipnet::IpNet::V4(v4) => v4.prefix_len() <= 8,
            ipnet::IpNet::V6(v6) => v6.prefix_len() <= 32,
        };
        if wide {
            out.add(
                "SLU-S007",
                at.to_owned(),
                format!("`{net}` lets connections reach a whole private network"),
                "allow the database's own addresses (a /32, or its subnet)",
            );
        }
    }
}

fn check_settings(out: &mut Findings, facts: &InstanceFacts) {
    if let Some(url) = &facts.public_url
        && let Ok(parsed) = url::Url::parse(url)
        && parsed.scheme() == "http"
        && !parsed
            .host_str()
            .is_some_and(crate::egress::is_loopback_host)
    {
        out.add(
            "SLU-S001",
            "settings.SLUICE_PUBLIC_URL".into(),
            format!("`{url}` is plain HTTP: sessions and keys travel in the clear"),
            "serve HTTPS (SLUICE_TLS_CERT_FILE or SLUICE_ACME_DOMAINS) and use an https URL",
        );
    }
    for email in &facts.admins_without_mfa {
        out.add(
            "SLU-S002",
            format!("users.{email}"),
            "an admin without MFA: its sessions can only enrol until it does".into(),
            "have the admin enrol TOTP (POST /v1/auth/mfa/enroll)",
        );
    }
    if facts.signup_enabled && facts.signup_allowed_domains.is_empty() {
        out.add(
            "SLU-S003",
            "settings.SLUICE_SIGNUP_ALLOWED_DOMAINS".into(),
            "anyone with an email address can create an account".into(),
            "list your domains in SLUICE_SIGNUP_ALLOWED_DOMAINS",
        );
    }
    if !facts.per_ip_limit {
        out.add(
            "SLU-S004",
            "settings.SLUICE_RATE_LIMIT_PER_IP".into(),
            "no per-address limit on query runs".into(),
            "set SLUICE_RATE_LIMIT_PER_IP (default 600/minute)",
        );
    }
    if facts.lockout_threshold == 0 {
        out.add(
            "SLU-S005",
            "settings.SLUICE_LOCKOUT_THRESHOLD".into(),
            "password guessing is never locked out".into(),
            "set SLUICE_LOCKOUT_THRESHOLD (default 5)",
        );
    }
    wide_nets(out, "settings.SLUICE_EGRESS_ALLOW", &facts.egress_allow);
    if facts.admin_token && !facts.admin_ips_restricted {
        out.add(
            "SLU-S008",
            "settings.SLUICE_ADMIN_ALLOWED_IPS".into(),
            "the admin token works from every address".into(),
            "limit the admin API to your networks with SLUICE_ADMIN_ALLOWED_IPS",
        );
    }
}

/// The scan's view of `keys` (live ones), with their owners' emails from `users`.
pub fn api_key_facts(
    keys: Vec<crate::store::api_keys::ApiKeyRecord>,
    users: &[crate::store::users::UserRecord],
) -> Vec<ApiKeyFact> {
    keys.into_iter()
        .map(|key| ApiKeyFact {
            owner: users
                .iter()
                .find(|u| u.id == key.user_id)
                .map_or_else(|| key.user_id.clone(), |u| u.email.clone()),
            id: key.id,
            expires_at: key.expires_at,
            apps: key.scope.apps,
        })
        .collect()
}

fn check_api_keys(out: &mut Findings, catalog: &CatalogSpec, facts: &InstanceFacts) {
    for key in &facts.api_keys {
        let at = format!("api_keys.{}", key.id);
        if key.expires_at.is_none() {
            out.add(
                "SLU-L003",
                at.clone(),
                format!("API key `{}` of {} never expires", key.id, key.owner),
                "create keys with `expires_at` and rotate them; revoke this one once replaced",
            );
        }
        if catalog.apps.len() >= 2 && catalog.apps.keys().all(|app| key.apps.contains(app)) {
            out.add(
                "SLU-L004",
                at,
                format!(
                    "API key `{}` of {} may run every query of all {} apps",
                    key.id,
                    key.owner,
                    catalog.apps.len()
                ),
                "scope keys to the apps or queries they serve (`scope.apps`, `scope.queries`)",
            );
        }
    }
}

#[cfg(test)]
mod tests;
