//! What the edge knows about the instance, for every request: which proxies may name the
//! client, the instance-wide per-address rate limit and its limiter (and the metrics its
//! refusals are counted in), whether connections are TLS, and the public origin for
//! same-origin checks. Plain data; the middleware that uses it is part of the instance
//! wiring.

use std::sync::Arc;

use ipnet::IpNet;

use super::rate_limit::RateLimiter;
use crate::metrics::Metrics;
use crate::spec::rate::RateRule;

/// What the edge needs.
pub struct EdgeState {
    pub trusted_proxies: Vec<IpNet>,
    pub per_ip: Option<RateRule>,
    pub limiter: Arc<dyn RateLimiter>,
    /// The instance's metrics, where the per-address limit's refusals are counted.
    pub metrics: Arc<Metrics>,
    /// Whether connections are TLS (adds `Strict-Transport-Security`).
    pub tls: bool,
    /// The origin of `SLUICE_PUBLIC_URL`, for same-origin checks.
    pub public_origin: Option<String>,
}
