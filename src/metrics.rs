//! Prometheus metrics: the families Sluice exports, the handles that record into them, and
//! the text exposition ([`Metrics::render`], Prometheus text format 0.0.4).
//!
//! Owns the metric names, help texts and labels. A label value is a name or a code, never a
//! value: an app, query or datasource name of the served catalog, an HTTP status, or a fixed
//! reason, class or limit chosen by the code. Never a param value, an email, a user id, an
//! address or a key. A request for an app or query the catalog does not have is counted
//! under `app="(unknown)", query="(unknown)"`, so a client cannot add series.
//!
//! The request path neither hashes a label set nor allocates here: each query's
//! [`QuerySeries`] is made when a snapshot is built, and finds its counter and histogram for
//! a status by an array index (each made on the first request with that status, then kept).
//! Refusals and failures (rate limits, sign-in failures, datasource failures) look their
//! series up by label, which is cheap next to the refusal itself.
//!
//! Values that are states rather than events (the catalog revision, the pools' use) are
//! read when scraped, from a [`Reading`] the caller takes. Knows no HTTP, plane or domain
//! type: callers hand it names, numbers and codes. Holds no global state: one [`Metrics`] per
//! instance.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

mod audit;
pub use audit::AuditMetrics;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The app and query label of requests for an app or query the catalog does not have.
pub const UNKNOWN: &str = "(unknown)";

/// Upper bounds of the query latency buckets, in seconds: fine below 10 ms, where point
/// queries land, coarse up to the 30 s default timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The statuses the query route answers with, each its own series; any other status is
/// counted as `other`.
const STATUSES: [&str; 17] = [
    "200", "400", "401", "403", "404", "405", "408", "409", "413", "415", "429", "499", "500",
    "502", "503", "504", "other",
];

/// The index of `status` in [`STATUSES`].
fn status_slot(status: u16) -> usize {
    match status {
        200 => 0,
        400 => 1,
        401 => 2,
        403 => 3,
        404 => 4,
        405 => 5,
        408 => 6,
        409 => 7,
        413 => 8,
        415 => 9,
        429 => 10,
        499 => 11,
        500 => 12,
        502 => 13,
        503 => 14,
        504 => 15,
        _ => 16,
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    app: String,
    query: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatasourceLabels {
    datasource: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    datasource: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The two families every query records into (clones share the series).
#[derive(Clone)]
struct QueryFamilies {
    requests: Family<QueryLabels, Counter>,
    durations: HistogramFamily<QueryLabels>,
}

/// One query's counter and histogram for one status.
struct Series {
    requests: Counter,
    duration: Histogram,
}

/// The series of one query (or of all unknown ones), one per status, each made on first use.
pub struct QuerySeries {
    app: String,
    query: String,
    families: QueryFamilies,
    by_status: [OnceLock<Series>; STATUSES.len()],
}

impl QuerySeries {
    /// Counts one answer with `status` that took `elapsed`.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let slot = status_slot(status);
        let series = self.by_status[slot].get_or_init(|| {
            let labels = QueryLabels {
                app: self.app.clone(),
                query: self.query.clone(),
                status: STATUSES[slot],
            };
            Series {
                requests: self.families.requests.get_or_create_owned(&labels),
                duration: self.families.durations.get_or_create_owned(&labels),
            }
        });
        series.requests.inc();
        series.duration.observe(elapsed.as_secs_f64());
    }
}

impl std::fmt::Debug for QuerySeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuerySeries")
            .field("app", &self.app)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// One datasource's connection slots at the moment of a scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReading<'a> {
    pub datasource: &'a str,
    /// Statements that may hold a connection at once (`pool_size`).
    pub size: usize,
    /// Statements holding one now.
    pub in_use: usize,
    /// Statements waiting for one now.
    pub waiting: usize,
}

/// What a scrape reads from the running instance.
#[derive(Debug, Clone, Default)]
pub struct Reading<'a> {
    /// The store revision of the catalog being served.
    pub catalog_revision: i64,
    /// The SQL datasources of the served catalog.
    pub pools: Vec<PoolReading<'a>>,
}

/// The metrics of one instance.
pub struct Metrics {
    registry: Registry,
    queries: QueryFamilies,
    unknown: QuerySeries,
    pool_size: Family<DatasourceLabels, Gauge>,
    pool_in_use: Family<DatasourceLabels, Gauge>,
    pool_waiting: Family<DatasourceLabels, Gauge>,
    connect_failures: Family<FailureLabels, Counter>,
    egress_refusals: Family<DatasourceLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    rate_limit_store_failures: Family<StoreLabels, Counter>,
    auth_cache: Family<ResultLabels, Counter>,
    sign_in_failures: Family<ReasonLabels, Counter>,
    lockouts: Counter,
    catalog_revision: Gauge,
    acme_orders: Family<ResultLabels, Counter>,
    tls_certificate_expiry: Gauge,
    /// The audit log's exports, query runs and retention.
    pub audit: AuditMetrics,
    /// One scrape at a time: each sets the read gauges, then encodes.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every family, registered and empty (but the build info).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let queries = QueryFamilies {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
        };
        registry.register(
            "query_requests",
            "Answers of the query route (POST /v1/apps/{app}/queries/{query}) by app, query and status; app and query are (unknown) for names the catalog does not have",
            queries.requests.clone(),
        );
        registry.register_with_unit(
            "query_duration",
            "Time from the request's arrival at the instance's front (before the per-IP limit and the app's edge policy) to its response head (a result that fits one 32 KiB frame is complete by then), by app, query and status",
            Unit::Seconds,
            queries.durations.clone(),
        );
        let pool_size = Family::default();
        registry.register(
            "datasource_pool_size",
            "Statements that may hold a connection of the datasource at once (its pool size)",
            Family::clone(&pool_size),
        );
        let pool_in_use = Family::default();
        registry.register(
            "datasource_pool_in_use",
            "Statements holding a connection of the datasource now",
            Family::clone(&pool_in_use),
        );
        let pool_waiting = Family::default();
        registry.register(
            "datasource_pool_waiting",
            "Statements waiting for a connection of the datasource now",
            Family::clone(&pool_waiting),
        );
        let connect_failures = Family::default();
        registry.register(
            "datasource_connect_failures",
            "Statements refused because the datasource could not be reached or refused the connection (datasource_unavailable), by datasource and class (connect, tls, auth, server, pool, open, upstream, ...)",
            Family::clone(&connect_failures),
        );
        let egress_refusals = Family::default();
        registry.register(
            "egress_refusals",
            "Connections to a datasource that the egress policy refused (egress_refused), by datasource",
            Family::clone(&egress_refusals),
        );
        let rate_limited = Family::default();
        registry.register(
            "rate_limit_refusals",
            "Requests refused with 429 by a rate limit or a concurrency cap, by limit (address, query_address, query_user, query_api_key, query_concurrency, auth)",
            Family::clone(&rate_limited),
        );
        let rate_limit_store_failures = Family::default();
        registry.register(
            "rate_limit_store_failures",
            "Rate-limit checks the shared buckets could not answer (unreachable or too slow), by store (postgres, redis); each was decided by this replica's in-process buckets instead",
            Family::clone(&rate_limit_store_failures),
        );
        let auth_cache = Family::default();
        registry.register(
            "auth_cache_lookups",
            "Session and API key lookups by how the replica's cache answered (hit, miss, stale: served from the cache while the store could not be reached); only with a PostgreSQL store",
            Family::clone(&auth_cache),
        );
        let sign_in_failures = Family::default();
        registry.register(
            "sign_in_failures",
            "Failed sign-ins and re-authentications, by reason (unknown_account, disabled, locked, wrong_password, wrong_mfa_code, locked_right_password, credentials_changed)",
            Family::clone(&sign_in_failures),
        );
        let lockouts = Counter::default();
        registry.register(
            "account_lockouts",
            "Accounts locked after too many failed passwords or codes",
            lockouts.clone(),
        );
        let catalog_revision = Gauge::default();
        registry.register(
            "catalog_revision",
            "Store revision of the catalog being served",
            catalog_revision.clone(),
        );
        let acme_orders = Family::default();
        registry.register(
            "acme_orders",
            "Certificate orders to the ACME CA (SLUICE_ACME_DOMAINS), by result (issued, failed); a failed renewal keeps the current certificate",
            Family::clone(&acme_orders),
        );
        let tls_certificate_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the ACME certificate being served expires, in seconds since the Unix epoch (0 until one is served, and without ACME)",
            tls_certificate_expiry.clone(),
        );
        let audit = AuditMetrics::register(&mut registry);
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: crate::COMMIT,
            })
            .set(1);
        registry.register(
            "build_info",
            "Version and commit of this build (the value is always 1)",
            build,
        );
        Metrics {
            registry,
            unknown: QuerySeries {
                app: UNKNOWN.into(),
                query: UNKNOWN.into(),
                families: queries.clone(),
                by_status: Default::default(),
            },
            queries,
            pool_size,
            pool_in_use,
            pool_waiting,
            connect_failures,
            egress_refusals,
            rate_limited,
            rate_limit_store_failures,
            auth_cache,
            sign_in_failures,
            lockouts,
            catalog_revision,
            acme_orders,
            tls_certificate_expiry,
            audit,
            scrape: Mutex::new(()),
        }
    }

    /// The series of a query of the catalog; made once per query when a snapshot is built.
    pub fn query_series(&self, app: &str, query: &str) -> QuerySeries {
        QuerySeries {
            app: app.to_string(),
            query: query.to_string(),
            families: self.queries.clone(),
            by_status: Default::default(),
        }
    }

    /// The series of requests for an app or query the catalog does not have.
    pub fn unknown_query(&self) -> &QuerySeries {
        &self.unknown
    }

    /// A statement refused because its datasource could not be reached; `class` is the
    /// failure's fixed class (`connect`, `auth`, `tls`, ...).
    pub fn connect_failed(&self, datasource: &str, class: &'static str) {
        self.connect_failures
            .get_or_create(&FailureLabels {
                datasource: datasource.to_string(),
                class,
            })
            .inc();
    }

    /// A connection to `datasource` that the egress policy refused.
    pub fn egress_refused(&self, datasource: &str) {
        self.egress_refusals
            .get_or_create(&DatasourceLabels {
                datasource: datasource.to_string(),
            })
            .inc();
    }

    /// A request refused by the rate limit or concurrency cap named `limit`.
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// A rate-limit check the shared buckets of `store` could not answer.
    pub fn rate_limit_store_failed(&self, store: &'static str) {
        self.rate_limit_store_failures
            .get_or_create(&StoreLabels { store })
            .inc();
    }

    /// A session or API key lookup answered `result` (hit, miss, stale) by the cache.
    pub fn auth_cache(&self, result: &'static str) {
        self.auth_cache
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// A failed sign-in or re-authentication, for `reason` (the audit log's reason).
    pub fn sign_in_failed(&self, reason: &'static str) {
        self.sign_in_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// An account locked by failed attempts.
    pub fn account_locked(&self) {
        self.lockouts.inc();
    }

    /// An ACME certificate order ended: `result` is `issued` or `failed`.
    pub fn acme_order(&self, result: &'static str) {
        self.acme_orders
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The served ACME certificate expires at `unix_secs`.
    pub fn tls_certificate_expires(&self, unix_secs: i64) {
        self.tls_certificate_expiry.set(unix_secs);
    }

    /// Every family in the Prometheus text format, with the read values of `reading`.
    pub fn render(&self, reading: &Reading<'_>) -> String {
        let _one = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.catalog_revision.set(reading.catalog_revision);
        // Only the datasources being served: one a reload removed is gone from the gauges.
        for family in [&self.pool_size, &self.pool_in_use, &self.pool_waiting] {
            family.clear();
        }
        for pool in &reading.pools {
            let labels = DatasourceLabels {
                datasource: pool.datasource.to_string(),
            };
            let gauge = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
            self.pool_size.get_or_create(&labels).set(gauge(pool.size));
            self.pool_in_use
                .get_or_create(&labels)
                .set(gauge(pool.in_use));
            self.pool_waiting
                .get_or_create(&labels)
                .set(gauge(pool.waiting));
        }
        let mut text = String::with_capacity(8192);
        prometheus_text::encode(&mut text, &self.registry).expect("a String takes any text");
        text
    }
}

#[cfg(test)]
mod tests;
