//! Logging set-up: `tracing` with text or JSON output.
//!
//! Sluice's own events never carry a value from a request, a row or a secret (see
//! docs/SECURITY.md, invariant 2). Some dependencies do log payloads at debug level (tokio-postgres
//! prints statement parameters), so their targets are capped at `warn` whatever level is
//! configured; `RUST_LOG` is deliberately not honoured, because it could lift those caps.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Dependency targets that may log payloads, SQL with values or connection secrets below
/// `warn`; they are held at `warn` at every configured level.
pub const CAPPED_TARGETS: &[&str] = &[
    "tokio_postgres",
    "postgres_protocol",
    "deadpool",
    "deadpool_postgres",
    "mysql_async",
    "mysql_common",
    "rusqlite",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "tokio_postgres_rustls",
    "axum",
    "tower",
    "reqwest",
];

/// The filter for a configured level (`error` .. `trace`), with the caps applied.
pub fn filter(level: &str) -> EnvFilter {
    let mut directives = level.to_string();
    for target in CAPPED_TARGETS {
        directives.push_str(&format!(",{target}=warn"));
    }
    EnvFilter::new(directives)
}

/// Installs the global subscriber writing to `writer`. Also routes `log` records (used by
/// tokio-postgres and mysql_async) through the same filter.
pub fn init<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer)
        .with_target(true);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if let Err(error) = result {
        let _ = writeln!(std::io::stderr(), "logging already initialised: {error}");
    }
}
