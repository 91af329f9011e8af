//! The defaults a query gets where the catalog sets nothing: timeout, row cap, rate limits
//! and concurrency (from `SLUICE_QUERY_*` and `SLUICE_RATE_LIMIT_*`).

use std::time::Duration;

use crate::spec::rate::RateRule;

/// Limits that apply where a query does not set its own.
#[derive(Debug, Clone, Copy)]
pub struct QueryDefaults {
    pub timeout: Duration,
    pub max_rows: u64,
    pub limits: LimitDefaults,
}

impl Default for QueryDefaults {
    fn default() -> Self {
        QueryDefaults {
            timeout: Duration::from_secs(30),
            max_rows: 10_000,
            limits: LimitDefaults::default(),
        }
    }
}

/// Instance-wide defaults (`SLUICE_RATE_LIMIT_*`, `SLUICE_QUERY_MAX_CONCURRENCY`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LimitDefaults {
    pub per_user: Option<RateRule>,
    pub per_key: Option<RateRule>,
    /// 0 means no cap.
    pub max_concurrency: u32,
}
