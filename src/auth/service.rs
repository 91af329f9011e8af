//! The rules of authentication, independent of HTTP: sign-in with lockout, sessions with
//! idle and absolute lifetimes, fresh auth, MFA (required for admins), API keys, and the
//! mailed flows (password reset, signup, email change) in [`mailed`]. It keeps the accounts
//! through an [`AccountStore`] and records every account event through [`Audit`], after the
//! change has committed.
//!
//! One file per concern: `sign_in` (credentials, lockout, fresh auth, password change),
//! `sessions`, `accounts` (users, roles, groups, app members), `keys`, `mfa` and `mailed`.
//! This file keeps the types, the service itself and the plumbing they share (the blocking
//! store runner, the throttle, the argon2id slots, the mail jobs).
//!
//! Invariants:
//! - A failed sign-in answers [`AuthError::InvalidCredentials`] whether the account is
//!   unknown, disabled, locked or the password is wrong; the reason goes to the audit log only.
//!   Unknown accounts still pay for one argon2id verification, so timing does not tell either.
//!   The metrics count failures by that reason, and lockouts (names of reasons only).
//! - Session ids, tokens, API keys and recovery codes are random, shown once, and stored as
//!   SHA-256 hashes; TOTP secrets are sealed under the instance key for `user/<id>/totp`.
//! - Nothing here logs a password, token, code or session id.
//! - Time comes from the injected [`Clock`](crate::clock::Clock).

mod account_gate;
mod accounts;
mod cache;
mod federated;
mod keys;
mod mailed;
mod mfa;
mod sessions;
mod sign_in;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use federated::{FederatedSignIn, NoAccount};
pub use keys::CreatedApiKey;
pub use mfa::Enrolment;

use super::mail::{Mail, Mailer};
use super::password::{self, PolicyError};
use super::{Caller, CallerVia, ClientInfo, Identity, totp};
use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::config::AuthSettings;
use crate::metrics::Metrics;
use crate::policy::Refusal;
use crate::policy::rate_limit::{Decision, RateLimiter};
use crate::policy::refusal::RateLimited;
use crate::spec::rate::RateRule;
use crate::store::sessions::SessionRecord;
use crate::store::users::UserRecord;
use crate::store::{AccountStore, Store, StoreError};
use crate::vault::{Keyring, Owner};

/// Why an authentication step was refused. `routes` turns each into one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password, unknown, disabled or locked account: one answer for all.
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("this account uses two-factor authentication: send `totp_code` or `recovery_code`")]
    MfaRequired,
    #[error("the two-factor code is wrong, expired or already used")]
    InvalidMfaCode,
    #[error("sign in first")]
    Unauthenticated,
    #[error("this action needs a recent password check: POST /v1/auth/reauth, then retry")]
    FreshAuthRequired,
    /// Worded by the refusal it becomes (one text for both).
    #[error("{}", Refusal::MfaEnrolmentRequired)]
    MfaEnrolmentRequired,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    WeakPassword(#[from] PolicyError),
    #[error("`{0}` is not a valid email address")]
    InvalidEmail(&'static str),
    #[error("{0}")]
    InvalidInput(String),
    #[error("the link is invalid, already used or expired")]
    InvalidToken,
    /// Worded by the refusal it becomes (one text for both).
    #[error("{}", Refusal::RateLimited { limit: RateLimited::Attempts, retry_after_secs: *.retry_after_secs })]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("no such {0}")]
    NotFound(&'static str),
    /// A provider sign-in that opens no account (see [`NoAccount`]).
    #[error("{}", match .0 {
        NoAccount::NotLinked => "no account is linked to this sign-in, and the provider's email cannot open one (it is not verified, or its domain is not allowed here)",
        NoAccount::LinkRequired => "an account with this email already exists: sign in to it with its password, then link this provider from the account",
    })]
    SsoNoAccount(NoAccount),
    /// A provider sign-in refused for the account's sake (disabled, needs a second factor).
    #[error("{0}")]
    SsoRefused(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("a sealed TOTP secret does not open")]
    Vault(#[from] crate::vault::VaultError),
}

/// The identity a user record grants (what a [`Caller`] carries).
pub fn identity(user: &UserRecord) -> Identity {
    Identity {
        id: user.id.clone(),
        email: user.email.clone(),
        role: user.role,
        groups: user.groups.clone(),
        mfa_enabled: user.mfa_enabled,
        claims: Default::default(),
    }
}

/// A session just created: the token goes into the cookie and nowhere else.
#[derive(Debug)]
pub struct NewSession {
    pub token: crate::vault::SecretString,
    pub record: SessionRecord,
}

/// What sign-in and re-authentication check.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub totp_code: Option<String>,
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// The authentication service shared by every request.
pub struct AuthService {
    store: Arc<dyn AccountStore>,
    /// Where every account event goes (after the change it records has committed).
    audit: Arc<Audit>,
    key: Arc<Keyring>,
    clock: SharedClock,
    settings: AuthSettings,
    public_url: Option<String>,
    mailer: Option<Mailer>,
    limiter: Arc<dyn RateLimiter>,
    /// Bounds the mail jobs running in the background.
    mail_slots: Arc<Semaphore>,
    /// Bounds argon2id work running at once: each hash or verification holds 19 MiB, so a
    /// burst of sign-ins waits here instead of growing memory without limit.
    argon_slots: Arc<Semaphore>,
    /// One credential check at a time per account (see [`account_gate`]).
    account_gates: account_gate::AccountGates,
    /// Where sign-in failures, lockouts and throttled requests are counted.
    metrics: Arc<Metrics>,
    /// Sessions and keys read moments ago, with a shared store ([`cache`]).
    cache: Option<Arc<cache::AuthCache>>,
}

/// Mail jobs allowed in flight; beyond that new ones are dropped (and logged), so a flood of
/// reset requests cannot pile up tasks.
const MAIL_JOBS: usize = 64;

impl AuthService {
    /// The service over the instance's store (the accounts) and its audit log.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<Audit>,
        key: Arc<Keyring>,
        clock: SharedClock,
        settings: AuthSettings,
        public_url: Option<String>,
        mailer: Option<Mailer>,
        limiter: Arc<dyn RateLimiter>,
    ) -> AuthService {
        AuthService {
            audit,
            store,
            key,
            clock,
            settings,
            public_url,
            mailer,
            limiter,
            mail_slots: Arc::new(Semaphore::new(MAIL_JOBS)),
            argon_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            )),
            account_gates: account_gate::AccountGates::default(),
            metrics: Arc::new(Metrics::new()),
            cache: None,
        }
    }

    /// Caches sessions and keys for `ttl` (reused up to `stale` while the store cannot be
    /// reached), when the store announces its changes (PostgreSQL); otherwise, or with a
    /// zero `ttl`, nothing is cached. Must be called inside a tokio runtime.
    pub fn with_cache(mut self, ttl: Duration, stale: Duration) -> AuthService {
        if ttl.is_zero() {
            return self;
        }
        if let Some(changes) = self.store.auth_changes() {
            self.cache = Some(cache::AuthCache::start(
                changes,
                self.clock.clone(),
                ttl,
                stale,
            ));
        }
        self
    }

    /// Whether sessions and keys are cached ([`AuthService::with_cache`]).
    pub fn caches(&self) -> bool {
        self.cache.is_some()
    }

    /// Counts sign-in failures, lockouts and throttled requests into `metrics` (the
    /// instance's; without it they go to metrics of the service's own that no one reads).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> AuthService {
        self.metrics = metrics;
        self
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Runs blocking store work off the async threads.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn AccountStore) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref())).await?
    }

    /// Takes one token from the per-IP bucket of the auth endpoints.
    pub async fn throttle(&self, client: &ClientInfo) -> Result<(), AuthError> {
        let rule = RateRule::per_minute(self.settings.auth_rate_per_minute);
        let who = client
            .ip
            .parse()
            .map(crate::policy::client_ip::bucket_key)
            .unwrap_or_else(|_| client.ip.clone());
        match self.limiter.check(&format!("auth:{who}"), rule).await {
            Decision::Allow => Ok(()),
            Decision::Deny { retry_after_secs } => {
                self.metrics.rate_limited("auth");
                Err(AuthError::RateLimited { retry_after_secs })
            }
        }
    }

    // ----- Mail ------------------------------------------------------------------------

    /// Builds a link from the configured public URL only (never from request headers).
    fn link(&self, page: &str, token: &str) -> Option<String> {
        self.public_url
            .as_deref()
            .map(|base| format!("{base}/auth/{page}#token={token}"))
    }

    /// Runs `job` in the background (mail is sent off the request path so that responses
    /// and their timing do not depend on whether an account exists).
    fn spawn_job(&self, job: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.mail_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    job.await;
                    drop(permit);
                });
            }
            Err(_) => tracing::warn!("Mail queue full; a mail job was dropped"),
        }
    }

    async fn send_mail(mailer: &Mailer, mail: Mail, kind: &'static str) {
        if let Err(error) = mailer.send(&mail).await {
            tracing::error!(mail = kind, error = %error, "Mail not sent");
        } else {
            tracing::info!(mail = kind, "Mail sent");
        }
    }

    fn open_totp_secret(&self, user: &UserRecord) -> Result<Vec<u8>, AuthError> {
        let sealed = user
            .totp_secret_sealed
            .as_deref()
            .ok_or(AuthError::Conflict(
                "no two-factor enrolment is in progress",
            ))?;
        let owner = Owner::user(&user.id, "totp")?;
        let secret = self.key.open(&owner, sealed)?;
        totp::decode_secret(secret.expose()).ok_or(AuthError::Vault(
            crate::vault::VaultError::BadOwner("stored TOTP secret is not base32"),
        ))
    }
}

/// A store error on an operation of the caller's own session: the session gone (signed out
/// meanwhile, see [`complete_reauthentication`] and the rotations) means the caller is no
/// longer signed in; anything else stays what it is.
///
/// [`complete_reauthentication`]: crate::store::users::UserStore::complete_reauthentication
fn session_gone(error: StoreError) -> AuthError {
    match error {
        StoreError::NotFound("session") => AuthError::Unauthenticated,
        other => other.into(),
    }
}

impl AuthService {
    /// Waits for a turn to run argon2id.
    async fn argon_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AuthError> {
        self.argon_slots
            .acquire()
            .await
            .map_err(|_| AuthError::Unavailable("shutting down"))
    }

    /// Hashes a password on a blocking thread (argon2id takes tens of milliseconds and
    /// 19 MiB), one of a bounded number at once.
    async fn hash_off_thread(&self, password: String) -> Result<String, AuthError> {
        let _slot = self.argon_slot().await?;
        let password = zeroize::Zeroizing::new(password);
        Ok(tokio::task::spawn_blocking(move || password::hash_password(&password)).await?)
    }
}
