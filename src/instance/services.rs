//! The services an instance builds from its configuration, and the CLI with it: the
//! keyring, the account service (mailer, limiter, clock), the rate limiter (memory, Redis or
//! the PostgreSQL store) and the SSO providers.

use std::sync::Arc;

use super::StartError;
use super::store::{StoreOpening, open_store};
use crate::audit::Audit;
use crate::auth::mail::Mailer;
use crate::auth::service::AuthService;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::limits::SharedLimiter;
use crate::metrics::Metrics;
use crate::policy::rate_limit::{MemoryLimiter, RateLimiter};
use crate::store::Store;
use crate::store::buckets::SharedBuckets;
use crate::store::buckets::redis::RedisBuckets;
use crate::vault::Keyring;

/// The account service over the configured store, with the system clock and an in-memory
/// limiter, as the CLI uses it (the same rules and audit events as the HTTP API).
pub async fn account_service(config: &Config) -> Result<AuthService, StartError> {
    config.validate()?;
    // The store first: a missing one is reported before the key derivation's wait.
    let store: Arc<dyn Store> = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config, StoreOpening::ExistingOnly))
            .await??
            .shared()
    };
    let key = Arc::new(derive_key(config).await?);
    let clock: SharedClock = Arc::new(SystemClock);
    let limiter: Arc<dyn RateLimiter> = Arc::new(MemoryLimiter::new(clock.clone()));
    let audit = Arc::new(Audit::new(store.clone(), clock.clone()));
    auth_service(config, &key, store, audit, clock, limiter)
}

/// The instance's rate limiter: buckets shared by the replicas in Redis
/// (`SLUICE_REDIS_URL`) or in the PostgreSQL metadata store, else in this process's memory.
pub(super) fn rate_limiter(
    config: &Config,
    store: &dyn Store,
    clock: &SharedClock,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn RateLimiter>, StartError> {
    let shared: Option<Arc<dyn SharedBuckets>> = match &config.redis_url {
        Some(url) => {
            let redis = RedisBuckets::open(url.expose())?;
            tracing::info!(redis = %redis.describe(), "Rate limits are shared through Redis");
            Some(Arc::new(redis))
        }
        None => store.shared_buckets(),
    };
    Ok(match shared {
        Some(shared) => Arc::new(SharedLimiter::new(shared, clock.clone(), metrics.clone())),
        None => Arc::new(MemoryLimiter::new(clock.clone())),
    })
}

/// The SSO providers and issuers of `SLUICE_SSO_FILE` (none without one). A provider's
/// `client_secret_env` is read from the process environment.
pub fn sso(config: &Config) -> Result<crate::sso::Sso, StartError> {
    let Some(path) = &config.auth.sso_file else {
        return Ok(crate::sso::Sso::disabled());
    };
    let settings = crate::sso::settings::load(path, &|name| {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    })?;
    if config.auth.sso_only && settings.providers.is_empty() {
        return Err(crate::sso::settings::SettingsError::Invalid {
            path: path.clone(),
            at: "oidc".into(),
            reason: "SLUICE_SSO_ONLY needs at least one OpenID Connect provider to sign in with"
                .into(),
        }
        .into());
    }
    Ok(crate::sso::Sso::new(
        settings,
        config.auth.sso_only,
        &config.egress_allow,
    )?)
}

/// The authentication service for this configuration: mailer, limiter, clock.
pub fn auth_service(
    config: &Config,
    key: &Arc<Keyring>,
    store: Arc<dyn Store>,
    audit: Arc<Audit>,
    clock: SharedClock,
    limiter: Arc<dyn RateLimiter>,
) -> Result<AuthService, StartError> {
    let mailer = match (&config.auth.smtp_url, &config.auth.mail_from) {
        (Some(url), Some(from)) => {
            Some(Mailer::new(url, from)?.with_source_addresses(config.egress_bind.clone()))
        }
        _ => None,
    };
    Ok(AuthService::new(
        store,
        audit,
        key.clone(),
        clock.clone(),
        config.auth.clone(),
        config.public_url.clone(),
        mailer,
        limiter,
    ))
}

/// The keyring: the current key, and the old one during a key rotation.
pub(super) async fn derive_key(config: &Config) -> Result<Keyring, StartError> {
    let config = config.clone();
    Ok(tokio::task::spawn_blocking(move || config.keyring()).await??)
}
