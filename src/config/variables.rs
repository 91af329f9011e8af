//! The table of every variable Sluice reads ([`VARIABLES`]: name, default, description),
//! the names the parsers use, each variable's documented default, and the check for
//! unknown `SLUICE_*` names.
//!
//! Owns the names and defaults, the source for `docker.env.example` and the configuration
//! reference (a unit test keeps the two in step). Must never read the environment or hold a
//! value: it is a table, and a default is never a secret.

/// Every variable Sluice reads: `(name, default, description)`. An empty default means
/// "unset". `docker.env.example` lists each of them (a unit test keeps the two in step).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        LISTEN,
        "0.0.0.0:8080",
        "Address and port the HTTP server listens on, e.g. 0.0.0.0:8080 or [::]:8080.",
    ),
    (
        PUBLIC_URL,
        "",
        "External base URL of this instance (http:// or https://), e.g. for links and redirects; optional.",
    ),
    (
        ENCRYPTION_PASSWORD,
        "",
        "Password for the instance key that seals datasource secrets; required, at least 32 characters; generate with `sluice keygen`.",
    ),
    (
        ENCRYPTION_SALT,
        "",
        "Salt for the instance key; required, at least 16 characters; generate with `sluice keygen`.",
    ),
    (
        ENCRYPTION_PASSWORD_OLD,
        "",
        "During a key rotation only: the previous SLUICE_ENCRYPTION_PASSWORD, so values sealed under the old key still open until `sluice key rotate` has re-sealed them; unset it afterwards.",
    ),
    (
        ENCRYPTION_SALT_OLD,
        "",
        "During a key rotation only: the previous SLUICE_ENCRYPTION_SALT (set with SLUICE_ENCRYPTION_PASSWORD_OLD).",
    ),
    (
        DATA_DIR,
        "./sluice-data",
        "Directory for Sluice's own state (the metadata database by default).",
    ),
    (
        METADATA_DB,
        "",
        "Path of the SQLite metadata database; empty means <SLUICE_DATA_DIR>/sluice.db.",
    ),
    (
        METADATA_URL,
        "",
        "PostgreSQL metadata store for several replicas, postgres://USER@HOST:PORT/DATABASE[?sslmode=disable|require|verify-ca|verify-full&sslrootcert=/path/ca.pem]; empty: the SQLite file (SLUICE_METADATA_DB). A secret: it may hold the password.",
    ),
    (
        METADATA_PASSWORD,
        "",
        "Password of the SLUICE_METADATA_URL user, when the URL holds none (or use SLUICE_METADATA_PASSWORD_FILE).",
    ),
    (
        REDIS_URL,
        "",
        "Redis for the rate-limit buckets the replicas share, redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS); empty: shared through the PostgreSQL metadata store when there is one, else kept in memory. A secret: it may hold the password.",
    ),
    (
        AUTH_CACHE_SECS,
        "5",
        "With the PostgreSQL metadata store: how long each replica reuses a session or API key it has read, in seconds (0 to 60; 0: read the store on every request). Changes reach every replica's cache at once by NOTIFY; this is the backstop.",
    ),
    (
        AUTH_CACHE_STALE_SECS,
        "60",
        "With the PostgreSQL metadata store: while the store cannot be reached, how long a session or API key read before keeps working, in seconds (0 to 3600; 0: never); /readyz reports not ready meanwhile.",
    ),
    (LOG_FORMAT, "text", "Log format: text or json."),
    (
        LOG_LEVEL,
        "info",
        "Minimum log level: error, warn, info, debug or trace.",
    ),
    (
        MAX_BODY_BYTES,
        "65536",
        "Largest request body accepted, in bytes (at least 1024); larger bodies get 413.",
    ),
    (
        HEADER_READ_TIMEOUT_MS,
        "10000",
        "Time a client has to send the request headers, in milliseconds; also how long an idle keep-alive connection stays open.",
    ),
    (
        BODY_READ_TIMEOUT_MS,
        "5000",
        "Time a client has to send the whole request body once the headers are in, in milliseconds; a slower body gets 408.",
    ),
    (
        MAX_CONNECTIONS,
        "1024",
        "Most client connections open at once; more are answered 503 and closed at accept. 0: no cap.",
    ),
    (
        MAX_CONNECTIONS_PER_IP,
        "256",
        "Most connections open at once from one client address (an IPv6 /64 counts as one; SLUICE_TRUSTED_PROXIES are exempt); more are answered 503 and closed at accept. 0: no cap.",
    ),
    (
        LISTEN_BACKLOG,
        "1024",
        "Length of the queue of connections the kernel completes before Sluice accepts them (1 to 65535); capped by net.core.somaxconn.",
    ),
    (
        QUERY_TIMEOUT_MS,
        "30000",
        "Default longest time a query may run, in milliseconds.",
    ),
    (
        MAX_ROWS,
        "10000",
        "Default largest number of rows a query may return.",
    ),
    (
        SHUTDOWN_GRACE_SECS,
        "30",
        "On shutdown, how long in-flight queries may take to finish, in seconds.",
    ),
    (
        CATALOG_RELOAD_SECS,
        "2",
        "How often a running gateway checks the store for a newly applied catalog revision (catalog apply, rollback, restore) and loads it, in seconds (0 to 86400); 0: only on SIGHUP. With the PostgreSQL store, applies also reach every replica at once by NOTIFY; this check is the backstop.",
    ),
    (
        POOL_SIZE,
        "16",
        "Default number of connections in each datasource's pool.",
    ),
    (
        POOL_WAIT_MS,
        "5000",
        "Default longest time a query waits for a free connection when all of its datasource's are in use, in milliseconds (0 to 86400000); past it the answer is 503 datasource_busy.",
    ),
    (
        ADMIN_TOKEN,
        "",
        "Bearer token for automation on the admin API (/v1/admin/...), at least 32 characters; empty: only admin sessions (with MFA) may use it.",
    ),
    (
        METRICS_LISTEN,
        "",
        "Address and port of a separate listener that serves only GET /metrics (Prometheus text), without authentication, e.g. 127.0.0.1:9464 or a pod port reached from a private network; empty: no such listener.",
    ),
    (
        METRICS_TOKEN,
        "",
        "Bearer token that opens GET /metrics on the main listener (Authorization: Bearer <token>), at least 32 characters; empty: /metrics on the main listener is an unknown path (404).",
    ),
    (
        SCIM_TOKEN,
        "",
        "Bearer token of the SCIM 2.0 provisioning endpoints (/scim/v2/Users, /scim/v2/Groups; docs/SCIM.md) that an identity provider (Okta, Entra ID) uses, at least 32 characters; empty: SCIM is off and its paths are unknown (404).",
    ),
    (
        CONSOLE,
        "on",
        "The admin console at /console (docs/CONSOLE.md): on or off; off makes its paths unknown (404). The JSON API it calls is served either way.",
    ),
    (
        TLS_CERT_FILE,
        "",
        "PEM certificate chain to serve HTTPS with (re-read on SIGHUP); empty: plain HTTP (terminate TLS in front of Sluice).",
    ),
    (
        TLS_KEY_FILE,
        "",
        "PEM private key for SLUICE_TLS_CERT_FILE; required with it.",
    ),
    (
        ACME_DOMAINS,
        "",
        "Domain names (comma-separated) to get a certificate for from an ACME directory (Let's Encrypt by default) and serve HTTPS with, renewed while serving; the listener must be reachable on port 443 of each name (TLS-ALPN-01). Not with SLUICE_TLS_CERT_FILE; empty: no ACME.",
    ),
    (
        ACME_CONTACT,
        "",
        "Contact of the ACME account, e.g. mailto:ops@example.com (the CA mails expiry and policy notices there); optional.",
    ),
    (
        ACME_DIRECTORY,
        "https://acme-v02.api.letsencrypt.org/directory",
        "Directory URL of the ACME CA (https://); Let's Encrypt's staging directory is https://acme-staging-v02.api.letsencrypt.org/directory.",
    ),
    (
        ACME_CA_FILE,
        "",
        "PEM bundle of the only CAs trusted for the ACME directory's own HTTPS certificate (a private or test CA); empty: the usual public roots.",
    ),
    (
        TRUSTED_PROXIES,
        "",
        "Reverse proxies whose X-Forwarded-For / Forwarded headers are believed (CIDRs or addresses, comma-separated); empty: the client address is always the socket peer.",
    ),
    (
        ADMIN_ALLOWED_IPS,
        "",
        "Client networks allowed to use the admin API (CIDRs or addresses, comma-separated); empty: any.",
    ),
    (
        RATE_LIMIT_PER_IP,
        "1200/minute",
        "Requests per client IP on every endpoint, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        RATE_LIMIT_PER_USER,
        "600/minute",
        "Query runs per signed-in user, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        RATE_LIMIT_PER_KEY,
        "1200/minute",
        "Query runs per API key, as N/second, N/minute, N/hour or off (apps and queries may set their own).",
    ),
    (
        QUERY_MAX_CONCURRENCY,
        "0",
        "Default cap on runs of one query at once per process (more get 429); 0: no cap (apps and queries may set their own).",
    ),
    (
        SIGNUP_ENABLED,
        "false",
        "Whether people may create their own accounts (true or false); off by default, accounts are then made by admins.",
    ),
    (
        SIGNUP_ALLOWED_DOMAINS,
        "",
        "Email domains self-signup is limited to (comma-separated, e.g. example.com); empty: any domain. Checked on the address the verification mail goes to.",
    ),
    (
        SSO_FILE,
        "",
        "The SSO file: OpenID Connect providers to sign in with and issuers of bearer JWTs (YAML; docs/SSO.md); empty: no SSO.",
    ),
    (
        SSO_ONLY,
        "false",
        "Close every local sign-in path (password sign-in, signup, reset, password and email change, user creation by the API); people sign in through the SSO file's providers; the CLI stays as break-glass.",
    ),
    (
        PASSWORD_MIN_LENGTH,
        "12",
        "Shortest password accepted, in characters (8 to 64).",
    ),
    (
        SESSION_IDLE_TIMEOUT_SECS,
        "28800",
        "A session ends after this many seconds without a request (sliding); default 8 hours.",
    ),
    (
        SESSION_ABSOLUTE_TIMEOUT_SECS,
        "604800",
        "A session ends this many seconds after sign-in, whatever its use; default 7 days.",
    ),
    (
        COOKIE_SAMESITE,
        "lax",
        "SameSite attribute of the session cookie: lax, strict or none (none is for cross-site apps and forces Secure).",
    ),
    (
        LOCKOUT_THRESHOLD,
        "5",
        "Consecutive failed passwords that lock an account.",
    ),
    (
        LOCKOUT_SECS,
        "86400",
        "How long a locked account stays locked, in seconds (a completed password reset unlocks it sooner).",
    ),
    (
        AUTH_RATE_PER_MINUTE,
        "10",
        "Login, signup and password-reset requests allowed per client IP per minute (bursts up to the same number).",
    ),
    (
        FRESH_AUTH_SECS,
        "300",
        "Sensitive actions need a password (and MFA) check within this many seconds.",
    ),
    (
        RESET_TOKEN_TTL_SECS,
        "3600",
        "How long password-reset, signup and email-change links stay valid, in seconds.",
    ),
    (
        SMTP_URL,
        "",
        "Outgoing mail server, e.g. smtps://user:password@smtp.example.com or smtp://127.0.0.1:25; empty: no mail (password reset and signup are then off).",
    ),
    (
        MAIL_FROM,
        "",
        "Sender address of Sluice's mail, e.g. Sluice <sluice@example.com>; required with SLUICE_SMTP_URL.",
    ),
    (
        EGRESS_ALLOW,
        "",
        "Non-public networks every datasource may reach (CIDRs or addresses, comma-separated), e.g. 10.20.0.0/16; empty: only public addresses, plus each datasource's own egress_allow.",
    ),
    (
        EGRESS_BIND,
        "",
        "Local source addresses outbound connections leave from (comma-separated, at most one IPv4 and one IPv6), for DBA allowlists; empty: chosen by the OS.",
    ),
    (
        EGRESS_PUBLIC_IPS,
        "",
        "The public addresses this instance's traffic appears from after NAT (comma-separated), listed by `sluice egress` for DBAs; informational.",
    ),
    (
        SQLITE_DIRS,
        "",
        "Directories SQLite datasource files must lie under (absolute paths, comma-separated); empty: any path except Sluice's own data directory and metadata store, and the catalog API cannot create or move SQLite datasources.",
    ),
    (
        AUDIT_QUERY_RUNS,
        "false",
        "Record every query run in the audit log as metadata (user or API key, app, query, status, duration, row count; never params or rows): true or false.",
    ),
    (
        AUDIT_EXPORT,
        "",
        "Copy every audit entry (with its hash) as a JSON line to stdout or to a file: stdout or file:/path/to/audit.jsonl (opened append-only, created 0600); empty: no copy.",
    ),
    (
        AUDIT_WEBHOOK_URL,
        "",
        "POST audit entries in batches (JSON lines) to this http:// or https:// URL, with retries; reached through the egress guard (a private SIEM needs SLUICE_EGRESS_ALLOW); empty: off.",
    ),
    (
        AUDIT_WEBHOOK_TOKEN,
        "",
        "Bearer token sent to SLUICE_AUDIT_WEBHOOK_URL (also from SLUICE_AUDIT_WEBHOOK_TOKEN_FILE); empty: no Authorization header.",
    ),
    (
        AUDIT_EXPORT_QUEUE,
        "10000",
        "How many entries an audit export (file, stdout or webhook) may fall behind before the oldest unsent ones are dropped (and counted in sluice_audit_export_dropped_total); 1 to 10000000.",
    ),
    (
        AUDIT_RETENTION_DAYS,
        "",
        "Delete audit entries older than this many days (checked hourly; the chain stays verifiable from the last one deleted); empty: keep every entry.",
    ),
    (
        ALERT_SIGN_IN_FAILURES,
        "5/60s",
        "Alert SLU-A001 when more than COUNT sign-ins fail from one address within WINDOW (COUNT/WINDOW, WINDOW in s, m or h), or off.",
    ),
    (
        ALERT_SIGNUP_SURGE,
        "3x/14d",
        "Alert SLU-A002 when the signups of the last 24 hours exceed FACTOR times the daily average of the DAYS days before (FACTORx/DAYSd), or off.",
    ),
    (
        ALERT_SIGNUP_MINIMUM,
        "10",
        "The signup surge alert needs at least this many signups in the last 24 hours (so a quiet instance's first few do not raise it); 1 to 1000000.",
    ),
    (
        ALERT_ROLE_CHANGES,
        "on",
        "Alert SLU-A003 on every role change (who changed whom, and whether it was made outside an admin's fresh-auth action): on or off.",
    ),
    (
        ALERT_MFA_DISABLED,
        "on",
        "Alert SLU-A004 when an account's MFA is turned off (by its owner or reset by an admin): on or off.",
    ),
    (
        ALERT_NEW_ADMIN,
        "on",
        "Alert SLU-A005 when an account becomes an admin (created as one, promoted, or given the role by SSO claims): on or off.",
    ),
    (
        ALERT_API_KEY_ALL_APPS,
        "on",
        "Alert SLU-A006 when an API key is created whose scope names every app of the catalog (two apps or more): on or off.",
    ),
    (
        ALERT_LOCKOUT_BURST,
        "2/10m",
        "Alert SLU-A007 when more than COUNT accounts are locked within WINDOW (COUNT/WINDOW), or off.",
    ),
    (
        ALERT_ADMIN_NEW_NETWORK,
        "90d",
        "Alert SLU-A008 when an admin signs in from a network (/24 for IPv4, /48 for IPv6) they have not signed in from within DAYS days (DAYSd), or off.",
    ),
    (
        ALERT_WEBHOOK_URL,
        "",
        "POST each alert as JSON (with a Slack-compatible `text` field) to this http:// or https:// URL, with retries, through the egress guard; a secret (also from SLUICE_ALERT_WEBHOOK_URL_FILE); empty: alerts go to the audit log and metrics only.",
    ),
    (
        ALERT_WEBHOOK_TOKEN,
        "",
        "Bearer token sent to SLUICE_ALERT_WEBHOOK_URL (also from SLUICE_ALERT_WEBHOOK_TOKEN_FILE); empty: no Authorization header.",
    ),
    (
        ALERT_WEBHOOK_QUEUE,
        "1000",
        "Alerts that may wait for the webhook (while it is slow or down) before new ones are dropped (and counted in sluice_alert_webhook_dropped_total); 1 to 100000.",
    ),
    (
        SECRET_REFERENCES,
        "",
        "Where a datasource secret may come from besides a sealed value (comma-separated patterns, `*` at the end only), e.g. env:PG_*,file:/run/secrets/*; empty: references are refused. SLUICE_* variables are never readable.",
    ),
];

pub(super) const LISTEN: &str = "SLUICE_LISTEN";
pub(super) const PUBLIC_URL: &str = "SLUICE_PUBLIC_URL";
pub(super) const ENCRYPTION_PASSWORD: &str = "SLUICE_ENCRYPTION_PASSWORD";
pub(super) const ENCRYPTION_SALT: &str = "SLUICE_ENCRYPTION_SALT";
pub(super) const ENCRYPTION_PASSWORD_OLD: &str = "SLUICE_ENCRYPTION_PASSWORD_OLD";
pub(super) const ENCRYPTION_SALT_OLD: &str = "SLUICE_ENCRYPTION_SALT_OLD";
pub(super) const DATA_DIR: &str = "SLUICE_DATA_DIR";
pub(super) const METADATA_DB: &str = "SLUICE_METADATA_DB";
pub(super) const METADATA_URL: &str = "SLUICE_METADATA_URL";
pub(super) const METADATA_PASSWORD: &str = "SLUICE_METADATA_PASSWORD";
pub(super) const REDIS_URL: &str = "SLUICE_REDIS_URL";
pub(super) const AUTH_CACHE_SECS: &str = "SLUICE_AUTH_CACHE_SECS";
pub(super) const AUTH_CACHE_STALE_SECS: &str = "SLUICE_AUTH_CACHE_STALE_SECS";
pub(super) const LOG_FORMAT: &str = "SLUICE_LOG_FORMAT";
pub(super) const LOG_LEVEL: &str = "SLUICE_LOG_LEVEL";
pub(super) const MAX_BODY_BYTES: &str = "SLUICE_MAX_BODY_BYTES";
pub(super) const HEADER_READ_TIMEOUT_MS: &str = "SLUICE_HEADER_READ_TIMEOUT_MS";
pub(super) const BODY_READ_TIMEOUT_MS: &str = "SLUICE_BODY_READ_TIMEOUT_MS";
pub(super) const MAX_CONNECTIONS: &str = "SLUICE_MAX_CONNECTIONS";
pub(super) const MAX_CONNECTIONS_PER_IP: &str = "SLUICE_MAX_CONNECTIONS_PER_IP";
pub(super) const LISTEN_BACKLOG: &str = "SLUICE_LISTEN_BACKLOG";
pub(super) const QUERY_TIMEOUT_MS: &str = "SLUICE_QUERY_TIMEOUT_MS";
pub(super) const MAX_ROWS: &str = "SLUICE_MAX_ROWS";
pub(super) const SHUTDOWN_GRACE_SECS: &str = "SLUICE_SHUTDOWN_GRACE_SECS";
pub(super) const CATALOG_RELOAD_SECS: &str = "SLUICE_CATALOG_RELOAD_SECS";
pub(super) const POOL_SIZE: &str = "SLUICE_POOL_SIZE";
pub(super) const POOL_WAIT_MS: &str = "SLUICE_POOL_WAIT_MS";
pub(super) const ADMIN_TOKEN: &str = "SLUICE_ADMIN_TOKEN";
pub(super) const METRICS_LISTEN: &str = "SLUICE_METRICS_LISTEN";
pub(super) const METRICS_TOKEN: &str = "SLUICE_METRICS_TOKEN";
pub(super) const SCIM_TOKEN: &str = "SLUICE_SCIM_TOKEN";
pub(super) const CONSOLE: &str = "SLUICE_CONSOLE";
pub(super) const TLS_CERT_FILE: &str = "SLUICE_TLS_CERT_FILE";
pub(super) const TLS_KEY_FILE: &str = "SLUICE_TLS_KEY_FILE";
pub(super) const ACME_DOMAINS: &str = "SLUICE_ACME_DOMAINS";
pub(super) const ACME_CONTACT: &str = "SLUICE_ACME_CONTACT";
pub(super) const ACME_DIRECTORY: &str = "SLUICE_ACME_DIRECTORY";
pub(super) const ACME_CA_FILE: &str = "SLUICE_ACME_CA_FILE";
pub(super) const TRUSTED_PROXIES: &str = "SLUICE_TRUSTED_PROXIES";
pub(super) const ADMIN_ALLOWED_IPS: &str = "SLUICE_ADMIN_ALLOWED_IPS";
pub(super) const RATE_LIMIT_PER_IP: &str = "SLUICE_RATE_LIMIT_PER_IP";
pub(super) const RATE_LIMIT_PER_USER: &str = "SLUICE_RATE_LIMIT_PER_USER";
pub(super) const RATE_LIMIT_PER_KEY: &str = "SLUICE_RATE_LIMIT_PER_KEY";
pub(super) const QUERY_MAX_CONCURRENCY: &str = "SLUICE_QUERY_MAX_CONCURRENCY";
pub(super) const SIGNUP_ENABLED: &str = "SLUICE_SIGNUP_ENABLED";
pub(super) const SIGNUP_ALLOWED_DOMAINS: &str = "SLUICE_SIGNUP_ALLOWED_DOMAINS";
pub(super) const SSO_FILE: &str = "SLUICE_SSO_FILE";
pub(super) const SSO_ONLY: &str = "SLUICE_SSO_ONLY";
pub(super) const PASSWORD_MIN_LENGTH: &str = "SLUICE_PASSWORD_MIN_LENGTH";
pub(super) const SESSION_IDLE_TIMEOUT_SECS: &str = "SLUICE_SESSION_IDLE_TIMEOUT_SECS";
pub(super) const SESSION_ABSOLUTE_TIMEOUT_SECS: &str = "SLUICE_SESSION_ABSOLUTE_TIMEOUT_SECS";
pub(super) const COOKIE_SAMESITE: &str = "SLUICE_COOKIE_SAMESITE";
pub(super) const LOCKOUT_THRESHOLD: &str = "SLUICE_LOCKOUT_THRESHOLD";
pub(super) const LOCKOUT_SECS: &str = "SLUICE_LOCKOUT_SECS";
pub(super) const AUTH_RATE_PER_MINUTE: &str = "SLUICE_AUTH_RATE_PER_MINUTE";
pub(super) const FRESH_AUTH_SECS: &str = "SLUICE_FRESH_AUTH_SECS";
pub(super) const RESET_TOKEN_TTL_SECS: &str = "SLUICE_RESET_TOKEN_TTL_SECS";
pub(super) const SMTP_URL: &str = "SLUICE_SMTP_URL";
pub(super) const MAIL_FROM: &str = "SLUICE_MAIL_FROM";
pub(super) const EGRESS_ALLOW: &str = "SLUICE_EGRESS_ALLOW";
pub(super) const EGRESS_BIND: &str = "SLUICE_EGRESS_BIND";
pub(super) const EGRESS_PUBLIC_IPS: &str = "SLUICE_EGRESS_PUBLIC_IPS";
pub(super) const SQLITE_DIRS: &str = "SLUICE_SQLITE_DIRS";
pub(super) const ALERT_SIGN_IN_FAILURES: &str = "SLUICE_ALERT_SIGN_IN_FAILURES";
pub(super) const ALERT_SIGNUP_SURGE: &str = "SLUICE_ALERT_SIGNUP_SURGE";
pub(super) const ALERT_SIGNUP_MINIMUM: &str = "SLUICE_ALERT_SIGNUP_MINIMUM";
pub(super) const ALERT_ROLE_CHANGES: &str = "SLUICE_ALERT_ROLE_CHANGES";
pub(super) const ALERT_MFA_DISABLED: &str = "SLUICE_ALERT_MFA_DISABLED";
pub(super) const ALERT_NEW_ADMIN: &str = "SLUICE_ALERT_NEW_ADMIN";
pub(super) const ALERT_API_KEY_ALL_APPS: &str = "SLUICE_ALERT_API_KEY_ALL_APPS";
pub(super) const ALERT_LOCKOUT_BURST: &str = "SLUICE_ALERT_LOCKOUT_BURST";
pub(super) const ALERT_ADMIN_NEW_NETWORK: &str = "SLUICE_ALERT_ADMIN_NEW_NETWORK";
pub(super) const ALERT_WEBHOOK_URL: &str = "SLUICE_ALERT_WEBHOOK_URL";
pub(super) const ALERT_WEBHOOK_TOKEN: &str = "SLUICE_ALERT_WEBHOOK_TOKEN";
pub(super) const ALERT_WEBHOOK_QUEUE: &str = "SLUICE_ALERT_WEBHOOK_QUEUE";
pub(super) const AUDIT_QUERY_RUNS: &str = "SLUICE_AUDIT_QUERY_RUNS";
pub(super) const AUDIT_EXPORT: &str = "SLUICE_AUDIT_EXPORT";
pub(super) const AUDIT_WEBHOOK_URL: &str = "SLUICE_AUDIT_WEBHOOK_URL";
pub(super) const AUDIT_WEBHOOK_TOKEN: &str = "SLUICE_AUDIT_WEBHOOK_TOKEN";
pub(super) const AUDIT_EXPORT_QUEUE: &str = "SLUICE_AUDIT_EXPORT_QUEUE";
pub(super) const AUDIT_RETENTION_DAYS: &str = "SLUICE_AUDIT_RETENTION_DAYS";
pub(super) const SECRET_REFERENCES: &str = "SLUICE_SECRET_REFERENCES";

/// The variables that hold secrets: never quoted in an error or `Debug` output, and each
/// also read from a file named by `NAME_FILE` (Docker and Kubernetes secrets). `Env::secret`
/// asserts that every variable it reads is listed here, and every config test goes through it.
pub const SECRET_VARIABLES: &[&str] = &[
    ENCRYPTION_PASSWORD,
    ENCRYPTION_SALT,
    ADMIN_TOKEN,
    METRICS_TOKEN,
    SCIM_TOKEN,
    SMTP_URL,
    AUDIT_WEBHOOK_TOKEN,
    ALERT_WEBHOOK_URL,
    ALERT_WEBHOOK_TOKEN,
    ENCRYPTION_PASSWORD_OLD,
    ENCRYPTION_SALT_OLD,
    METADATA_URL,
    METADATA_PASSWORD,
    REDIS_URL,
];

/// `SLUICE_ADMIN_TOKEN` -> `SLUICE_ADMIN_TOKEN_FILE`.
pub fn secret_file_var(var: &str) -> String {
    format!("{var}_FILE")
}

/// Names among `names` that look like Sluice variables (`SLUICE_` prefix) but are neither
/// in [`VARIABLES`] nor a secret's `NAME_FILE`, so `main` can warn about a typo such as
/// `SLUICE_MAX_ROW`.
pub fn unknown_variables<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| name.starts_with("SLUICE_"))
        .filter(|name| !VARIABLES.iter().any(|(known, _, _)| known == name))
        .filter(|name| {
            !SECRET_VARIABLES
                .iter()
                .any(|secret| name.strip_suffix("_FILE") == Some(*secret))
        })
        .map(str::to_owned)
        .collect()
}

/// The documented default of a variable. Every variable read has one (possibly empty).
pub(super) fn default_of(var: &str) -> &'static str {
    VARIABLES
        .iter()
        .find(|(name, _, _)| *name == var)
        .map(|(_, default, _)| *default)
        .expect("every variable read is listed in VARIABLES")
}
