//! The catalog model: datasources, apps and queries as they are written in YAML and kept in
//! the metadata store.
//!
//! Plain data types, [`yaml`] to read and write them, and the checks that only read a spec
//! ([`checks`]: names, secret fields, an HTTP datasource's base URL, methods and headers).
//! Bottom layer: imports no other domain of the crate. Nothing here compiles a template or
//! opens a secret; `catalog` compiles a [`CatalogSpec`] and `snapshot` serves it. Unknown
//! keys are refused everywhere (`deny_unknown_fields`) so that a typo never silently changes
//! behaviour.

pub mod checks;
pub mod diff;
pub mod rate;
pub mod row_security;
pub mod yaml;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use row_security::{QueryRowSecurity, RowSecuritySpec};

/// The whole catalog: datasources and apps, each keyed by its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    #[serde(default)]
    pub datasources: BTreeMap<String, DatasourceSpec>,
    #[serde(default)]
    pub apps: BTreeMap<String, AppSpec>,
}

/// A database the gateway connects to. Secret fields hold sealed values (`enc:v1:...`)
/// whose owner is `datasource/<name>/<field>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DatasourceSpec {
    Postgres(NetworkDatabaseSpec),
    Mysql(NetworkDatabaseSpec),
    Sqlite(SqliteSpec),
    Http(HttpDatasourceSpec),
}

/// Connection settings shared by PostgreSQL and MySQL/MariaDB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDatabaseSpec {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub database: String,
    pub user: String,
    /// Sealed password (`enc:v1:...`, owner `datasource/<name>/password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `disable`, `require`, `verify-ca` or `verify-full`; unset means verify-full off
    /// loopback and disable on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsMode>,
    /// A PEM bundle of the CAs that sign the server's certificate (RDS, Cloud SQL, an
    /// internal CA), trusted instead of the bundled web PKI roots by `verify-ca` and
    /// `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// A PEM certificate (chain) to present to the server (mutual TLS); needs
    /// `tls_client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert_file: Option<String>,
    /// The client certificate's private key, PEM, sealed (`enc:v1:...`, owner
    /// `datasource/<name>/tls_client_key`) like the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// How long a statement waits for a free connection when all `pool_size` are in use, in
    /// milliseconds (past it: 503 `datasource_busy`); default `SLUICE_POOL_WAIT_MS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_wait_ms: Option<u64>,
    /// Time allowed to open a connection, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Non-public networks this datasource may reach (CIDRs or single addresses), for a
    /// database on a private network or this host. Everything else non-public is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_allow: Vec<String>,
    /// PostgreSQL only: run every query in a transaction as a role mapped from the caller's
    /// Sluice role, with the caller's claims in `request.jwt.claims` (docs/CATALOG.md, "Row
    /// security"). Refused on MySQL/MariaDB when the catalog is compiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_security: Option<RowSecuritySpec>,
}

/// TLS policy for a database connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS, but the server's certificate is NOT verified: encrypted, yet open to anyone who
    /// can intercept the connection and present a certificate of their own.
    Require,
    /// TLS, certificate verified against the trusted CAs (`tls_ca_file`, else the web PKI
    /// roots), but not against the host name (PostgreSQL only).
    VerifyCa,
    /// TLS, certificate verified against the trusted CAs and the host name.
    VerifyFull,
}

impl TlsMode {
    /// The YAML spelling.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

impl NetworkDatabaseSpec {
    /// The TLS mode in force: `tls` when set, else verify-full, or disable when the host is
    /// this machine (`on_loopback`, which the caller judges with the egress guard's reading
    /// of the host).
    pub fn tls_mode(&self, on_loopback: bool) -> TlsMode {
        self.tls.unwrap_or(if on_loopback {
            TlsMode::Disable
        } else {
            TlsMode::VerifyFull
        })
    }
}

/// An SQLite database file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSpec {
    pub path: String,
    /// Open the file read-only.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// As for network databases: how long a statement waits for a free connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_wait_ms: Option<u64>,
}

/// An HTTP API. Credentials are sealed (owner `datasource/<name>/<field>`, with fields
/// `bearer`, `basic_password`, `api_key`) and added only when a request is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDatasourceSpec {
    /// `https://api.example.com/v1`: every query's path is appended to it.
    pub base_url: String,
    /// Headers sent with every request (not secrets: put those in `auth`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Written as a one-key map (`bearer: {token: ...}`), hence `singleton_map`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub auth: Option<HttpAuthSpec>,
    /// Whole-request timeout in milliseconds (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest response body accepted, in bytes (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<usize>,
    /// Methods queries may use (default GET and POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_methods: Option<Vec<String>>,
    /// Follow up to this many redirects, each re-checked, same origin only (default 0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_redirects: Option<usize>,
    /// Non-public networks this datasource may reach (CIDRs or single addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_allow: Vec<String>,
}

/// How an HTTP datasource authenticates. Every secret value is sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuthSpec {
    /// `Authorization: Bearer <token>`; the token is sealed as field `bearer`.
    Bearer { token: String },
    /// HTTP basic auth; the password is sealed as field `basic_password`.
    Basic { user: String, password: String },
    /// An API key in a header (`header: X-Api-Key`) or a query parameter (`query: key`);
    /// the value is sealed as field `api_key`.
    ApiKey {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        value: String,
    },
}

/// An HTTP request template. Bindings are encoded for where they stand (docs/CATALOG.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRequestSpec {
    /// `GET` (default), `POST`, `PUT`, `PATCH` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Appended to the datasource's base URL; each binding is one percent-encoded piece of a
    /// path segment.
    #[serde(default)]
    pub path: String,
    /// Query parameters: name -> value template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Request headers: name -> value template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Written as a one-key map (`json: {...}`, `form: {...}`, `text: ...`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "serde_norway::with::singleton_map"
    )]
    pub body: Option<HttpBodySpec>,
}

fn default_method() -> String {
    "GET".into()
}

/// A request body template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum HttpBodySpec {
    /// A JSON document; a string that is exactly one binding becomes the typed value.
    Json(serde_json::Value),
    /// `application/x-www-form-urlencoded`: name -> value template.
    Form(BTreeMap<String, String>),
    /// `text/plain` with bindings interpolated.
    Text(String),
}

/// Who may run an app's queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user of the workspace.
    Workspace,
    /// Invited members only. The default: an unset visibility is private.
    #[default]
    Private,
}

/// An app: a named group of queries with one visibility and one edge policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    #[serde(default)]
    pub visibility: Visibility,
    /// Who may run the app's queries, unless a query has its own `grants`. Neither set means
    /// nobody (deny by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<GrantSpec>,
    /// Client networks allowed to call this app (CIDRs or addresses); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<String>,
    /// Cross-origin browser access; unset means same-origin only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Response header overrides for this app's responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersSpec>,
    /// Rate limits and concurrency for the app's queries (a query may override each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    #[serde(default)]
    pub queries: BTreeMap<String, QuerySpec>,
}

/// Who may run a query: callers with one of `roles` or in one of `groups`, plus anyone at
/// all when `anonymous` (public apps only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// `admin`, `developer`, `viewer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// Which other origins' pages may call an app from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://shop.example.com`, with a port when not the default), or
    /// `"*"` alone for a public app called without cookies.
    pub origins: Vec<String>,
    /// Request headers allowed beyond `content-type` and `authorization`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// How long browsers may cache a preflight answer (default 600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u32>,
}

/// Response header overrides for one app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersSpec {
    /// Who may frame this app's responses (`frame-ancestors` sources, such as `'self'` or
    /// `https://portal.example.com`); default `'none'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_ancestors: Option<Vec<String>>,
    /// `Referrer-Policy`; default `no-referrer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_policy: Option<String>,
    /// A whole `Content-Security-Policy` replacing the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_security_policy: Option<String>,
}

/// Rate limits (`"120/minute"`, `"10/second"`, `"1000/hour"`, or `"off"`) and a cap on
/// queries running at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_key: Option<String>,
    /// Runs of one query at once (per gateway process); more get 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// A stored query: a template in the datasource's language with declared params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    pub datasource: String,
    /// The SQL template, for database datasources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// The request template, for HTTP datasources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequestSpec>,
    #[serde(default)]
    pub params: BTreeMap<String, ParamSpec>,
    /// Statement timeout in milliseconds (default `SLUICE_QUERY_TIMEOUT_MS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// At most this many rows are returned (default `SLUICE_MAX_ROWS`); the response
    /// then carries `"truncated": true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who may run this query (replaces the app's `grants`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<GrantSpec>,
    /// Limits for this query (each one set replaces the app's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSpec>,
    /// Row security for this query (PostgreSQL only): a role mapping that replaces the
    /// datasource's, or `false` to run this query without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_security: Option<QueryRowSecurity>,
}

/// The declared type of a param.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarType {
    Text,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer. Accepted as a JSON number or a decimal string.
    Bigint,
    /// 64-bit float.
    Float,
    /// Exact decimal. Accepted as a JSON number or a decimal string.
    Numeric,
    Bool,
    Uuid,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339; a value without an offset is taken as UTC.
    Timestamp,
    /// Any JSON value, bound as JSON.
    Json,
    /// A name chosen from `enum`, substituted as a quoted identifier (never a parameter).
    Identifier,
    /// A keyword chosen from `enum` (`ASC`, `DESC`, `NULLS FIRST`, `NULLS LAST`).
    Keyword,
}

/// A param type: a scalar or an array of one (`array<int>` in YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamType {
    Scalar(ScalarType),
    Array(ScalarType),
}

/// A declared param.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type", with = "param_type_serde")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
    /// Used when the caller leaves the param out (validated like caller input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Whether an explicit JSON `null` is accepted (bound as SQL NULL).
    #[serde(default)]
    pub nullable: bool,
    /// Inclusive bounds for numbers, and for dates/timestamps (as strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
    /// Maximum length in characters for text (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// A regular expression the whole text value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The closed list of allowed values.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// Bounds on the number of items of an array param (max default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_items: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl ParamType {
    /// The YAML spelling: `int`, `array<int>`.
    pub fn name(&self) -> String {
        match self {
            ParamType::Scalar(s) => s.name().to_string(),
            ParamType::Array(s) => format!("array<{}>", s.name()),
        }
    }

    pub fn parse(text: &str) -> Option<ParamType> {
        let text = text.trim();
        if let Some(inner) = text
            .strip_prefix("array<")
            .and_then(|t| t.strip_suffix('>'))
        {
            let inner = ScalarType::parse(inner.trim())?;
            if matches!(inner, ScalarType::Identifier | ScalarType::Keyword) {
                return None;
            }
            return Some(ParamType::Array(inner));
        }
        ScalarType::parse(text).map(ParamType::Scalar)
    }
}

impl ScalarType {
    pub const ALL: [ScalarType; 12] = [
        ScalarType::Text,
        ScalarType::Int,
        ScalarType::Bigint,
        ScalarType::Float,
        ScalarType::Numeric,
        ScalarType::Bool,
        ScalarType::Uuid,
        ScalarType::Date,
        ScalarType::Timestamp,
        ScalarType::Json,
        ScalarType::Identifier,
        ScalarType::Keyword,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ScalarType::Text => "text",
            ScalarType::Int => "int",
            ScalarType::Bigint => "bigint",
            ScalarType::Float => "float",
            ScalarType::Numeric => "numeric",
            ScalarType::Bool => "bool",
            ScalarType::Uuid => "uuid",
            ScalarType::Date => "date",
            ScalarType::Timestamp => "timestamp",
            ScalarType::Json => "json",
            ScalarType::Identifier => "identifier",
            ScalarType::Keyword => "keyword",
        }
    }

    pub fn parse(text: &str) -> Option<ScalarType> {
        ScalarType::ALL.into_iter().find(|t| t.name() == text)
    }
}

mod param_type_serde {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::ParamType;

    pub fn serialize<S: Serializer>(ty: &ParamType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ty.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ParamType, D::Error> {
        let text = String::deserialize(d)?;
        ParamType::parse(&text).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown param type `{text}`; expected one of text, int, bigint, float, numeric, \
                 bool, uuid, date, timestamp, json, identifier, keyword, or array<T> of a scalar"
            ))
        })
    }
}
