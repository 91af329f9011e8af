//! The rules of authentication, independent of HTTP: sign-in with lockout, sessions with
//! idle and absolute lifetimes, fresh auth, MFA (required for admins), API keys, and the
//! mailed flows (password reset, signup, email change) in [`mailed`]. It keeps the accounts
//! through an [`AccountStore`] and records every account event through [`Audit`], after the
//! change has committed.
//!
//! Invariants:
//! - A failed sign-in answers [`AuthError::InvalidCredentials`] whether the account is
//!   unknown, disabled, locked or the password is wrong; the reason goes to the audit log only.
//!   Unknown accounts still pay for one argon2id verification, so timing does not tell either.
//! - Session ids, tokens, API keys and recovery codes are random, shown once, and stored as
//!   SHA-256 hashes; TOTP secrets are sealed under the instance key for `user/<id>/totp`.
//! - Nothing here logs a password, token, code or session id.
//! - Time comes from the injected [`Clock`](crate::clock::Clock).

mod keys;
mod mailed;
mod mfa;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use keys::CreatedApiKey;
pub use mfa::Enrolment;

use super::mail::{Mail, Mailer};
use super::password::{self, PolicyError};
use super::{Caller, CallerVia, ClientInfo, Identity, Role, normalize_email, token, totp};
use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::config::AuthSettings;
use crate::policy::rate_limit::{Decision, RateLimiter};
use crate::spec::rate::RateRule;
use crate::store::audit::AuditEvent;
use crate::store::sessions::SessionRecord;
use crate::store::users::{NewUser, SignIn, UserRecord};
use crate::store::{AccountStore, Store, StoreError};
use crate::vault::{InstanceKey, Owner};

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
    #[error(
        "admins must enrol in two-factor authentication before anything else: \
         POST /v1/auth/mfa/enroll, then /v1/auth/mfa/confirm"
    )]
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
    #[error("too many attempts from this address; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("{0}")]
    Conflict(&'static str),
    #[error("no such {0}")]
    NotFound(&'static str),
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
    key: Arc<InstanceKey>,
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
}

/// Mail jobs allowed in flight; beyond that new ones are dropped (and logged), so a flood of
/// reset requests cannot pile up tasks.
const MAIL_JOBS: usize = 64;

/// Last-seen times are written at most this often per session (the idle timeout is then
/// exact to within this many seconds).
const TOUCH_EVERY_SECS: i64 = 60;

impl AuthService {
    /// The service over the instance's store (the accounts) and its audit log.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        audit: Arc<Audit>,
        key: Arc<InstanceKey>,
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
        }
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
    pub fn throttle(&self, client: &ClientInfo) -> Result<(), AuthError> {
        let rule = RateRule::per_minute(self.settings.auth_rate_per_minute);
        let who = client
            .ip
            .parse()
            .map(crate::policy::client_ip::bucket_key)
            .unwrap_or_else(|_| client.ip.clone());
        match self.limiter.check(&format!("auth:{who}"), rule) {
            Decision::Allow => Ok(()),
            Decision::Deny { retry_after_secs } => Err(AuthError::RateLimited { retry_after_secs }),
        }
    }

    // ----- Sign-in ---------------------------------------------------------------------

    /// Checks the credentials and opens a session. `replaces` is the session the request
    /// came with, if any: it is deleted, so every sign-in gets a fresh id.
    pub async fn login(
        &self,
        credentials: Credentials,
        client: &ClientInfo,
        replaces: Option<String>,
    ) -> Result<(UserRecord, NewSession), AuthError> {
        self.throttle(client)?;
        let (user, refusal) = self.check_credentials(&credentials, client).await?;
        let session = self.new_session(&user.id, client);
        // The success, the new session and the end of the replaced one are one store
        // operation, conditional on the account being unlocked now and still as verified
        // (see check_credentials).
        let (verified, now, record) = (user.clone(), self.now(), session.record.clone());
        let outcome = self
            .run(move |store| {
                Ok(store.complete_login(&verified, now, &record, replaces.as_deref())?)
            })
            .await?;
        self.admit(outcome, refusal).await?;
        let mut event = self.audit.event("login_succeeded", client);
        event.user_id = Some(user.id.clone());
        event.email = Some(user.email.clone());
        self.audit.append(event).await;
        Ok((user, session))
    }

    /// Password (and, when enabled, MFA) check with lockout accounting. Every refusal of the
    /// account itself is [`AuthError::InvalidCredentials`]; the audit log gets the reason.
    ///
    /// The success is not recorded here: the caller records it together with what it opens
    /// or renews ([`complete_login`], [`complete_reauthentication`]), in one store operation
    /// that refuses if the account is locked by then or no longer as verified. The account
    /// was read before the (slow) password check: failures that raced it may have locked the
    /// account since, and a password, email or MFA change or a disabling may have committed
    /// meanwhile; the returned `login_failed` event is what the caller writes (through
    /// `admit`) when that happens. A TOTP step or recovery code checked here stays spent
    /// whatever happens next: it is its own write on purpose, so a code can never be
    /// replayed.
    ///
    /// [`complete_login`]: crate::store::users::UserStore::complete_login
    /// [`complete_reauthentication`]: crate::store::users::UserStore::complete_reauthentication
    async fn check_credentials(
        &self,
        credentials: &Credentials,
        client: &ClientInfo,
    ) -> Result<(UserRecord, AuditEvent), AuthError> {
        let now = self.now();
        let email = normalize_email(&credentials.email);
        let password = zeroize::Zeroizing::new(credentials.password.clone());
        let lookup = email.clone();
        let _slot = self.argon_slot().await?;
        let (user, password_ok) = self
            .run(move |store| {
                let user = match &lookup {
                    Some(email) => store.user_by_email(email)?,
                    None => None,
                };
                let ok = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
                    Some(hash) => password::verify_password(hash, &password),
                    None => {
                        password::verify_dummy(&password);
                        false
                    }
                };
                Ok((user, ok))
            })
            .await?;
        let mut event = self.audit.event("login_failed", client);
        event.email = email.clone();
        let Some(user) = user else {
            event.reason = Some("unknown_account".into());
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        };
        event.user_id = Some(user.id.clone());
        if user.disabled {
            event.reason = Some("disabled".into());
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        }
        if user.locked_until.is_some_and(|until| until > now) {
            // Failures during a lock do not extend it; a right password does not lift it.
            event.reason = Some(
                if password_ok {
                    "locked_right_password"
                } else {
                    "locked"
                }
                .into(),
            );
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        }
        if !password_ok {
            event.reason = Some("wrong_password".into());
            self.count_failure(&user, event, client).await?;
            return Err(AuthError::InvalidCredentials);
        }
        if user.mfa_enabled {
            let result = self
                .check_second_factor(
                    &user,
                    credentials.totp_code.as_deref(),
                    credentials.recovery_code.as_deref(),
                )
                .await;
            match result {
                Ok(()) => {}
                Err(AuthError::MfaRequired) => return Err(AuthError::MfaRequired),
                Err(AuthError::InvalidMfaCode) => {
                    event.reason = Some("wrong_mfa_code".into());
                    self.count_failure(&user, event, client).await?;
                    return Err(AuthError::InvalidMfaCode);
                }
                Err(other) => return Err(other),
            }
        }
        Ok((user, event))
    }

    /// Turns the store's answer to a checked sign-in into the caller's: a right password
    /// (and code) is still refused, with the generic answer, when failures locked the
    /// account meanwhile (`locked_right_password`) or the account changed since it was read
    /// (`credentials_changed`: a new password, email or MFA, or a disabling).
    async fn admit(&self, outcome: SignIn, mut refusal: AuditEvent) -> Result<(), AuthError> {
        let reason = match outcome {
            SignIn::Admitted => return Ok(()),
            SignIn::Locked => "locked_right_password",
            SignIn::CredentialsChanged => "credentials_changed",
        };
        refusal.reason = Some(reason.into());
        self.audit.append(refusal).await;
        Err(AuthError::InvalidCredentials)
    }

    async fn count_failure(
        &self,
        user: &UserRecord,
        event: AuditEvent,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (id, now) = (user.id.clone(), self.now());
        let (threshold, lock_secs) = (
            self.settings.lockout_threshold,
            self.settings.lockout_duration.as_secs() as i64,
        );
        let count = self
            .run(move |store| Ok(store.record_login_failure(&id, now, threshold, lock_secs)?))
            .await?;
        self.audit.append(event).await;
        if let Some(until) = count.locked_until {
            let mut locked = self.audit.event("account_locked", client);
            locked.user_id = Some(user.id.clone());
            locked.email = Some(user.email.clone());
            locked.details = Some(
                serde_json::json!({ "failed_logins": count.failed_logins, "locked_until": until })
                    .to_string(),
            );
            self.audit.append(locked).await;
        }
        Ok(())
    }

    /// Re-checks the password (and MFA) of a signed-in session for sensitive actions.
    /// Failures count towards the lockout like sign-in failures.
    pub async fn reauthenticate(
        &self,
        caller: &Caller,
        password: String,
        totp_code: Option<String>,
        recovery_code: Option<String>,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        self.throttle(client)?;
        let Some(hash) = caller.session_hash().map(str::to_owned) else {
            return Err(AuthError::Forbidden(
                "API keys cannot re-authenticate; use a session",
            ));
        };
        let credentials = Credentials {
            email: caller.user.email.clone(),
            password,
            totp_code,
            recovery_code,
        };
        let (user, refusal) = self.check_credentials(&credentials, client).await?;
        let (verified, now) = (user.clone(), self.now());
        // A session ended meanwhile (signed out elsewhere) leaves the caller unauthenticated.
        let outcome = self
            .run(move |store| {
                store
                    .complete_reauthentication(&verified, &hash, now)
                    .map_err(session_gone)
            })
            .await?;
        self.admit(outcome, refusal).await?;
        let mut event = self.audit.event("reauthenticated", client);
        event.user_id = Some(user.id);
        self.audit.append(event).await;
        Ok(())
    }

    /// Fails unless the caller is a session whose password was checked recently.
    pub fn require_fresh(&self, caller: &Caller) -> Result<(), AuthError> {
        match &caller.via {
            CallerVia::Session {
                authenticated_at, ..
            } if self.now() - authenticated_at <= self.settings.fresh_auth.as_secs() as i64 => {
                Ok(())
            }
            CallerVia::Session { .. } => Err(AuthError::FreshAuthRequired),
            CallerVia::ApiKey { .. } => Err(AuthError::Forbidden(
                "this action needs a signed-in session, not an API key",
            )),
        }
    }

    // ----- Sessions --------------------------------------------------------------------

    /// A new session for `user_id`, not stored yet: the operation that opens it stores it
    /// together with whatever else it changes.
    fn new_session(&self, user_id: &str, client: &ClientInfo) -> NewSession {
        let now = self.now();
        self.session_for(user_id, client, now, now)
    }

    /// The caller's session under a new id (after a privilege change), keeping its creation
    /// and authentication times, not stored yet; with the token hash of the session it
    /// replaces. `None` for an API key.
    fn rotated_session(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Option<(String, NewSession)> {
        let CallerVia::Session {
            token_hash,
            created_at,
            authenticated_at,
            ..
        } = &caller.via
        else {
            return None;
        };
        let session = self.session_for(&caller.user.id, client, *created_at, *authenticated_at);
        Some((token_hash.clone(), session))
    }

    fn session_for(
        &self,
        user_id: &str,
        client: &ClientInfo,
        created_at: i64,
        authenticated_at: i64,
    ) -> NewSession {
        let token = token::random_token();
        let record = SessionRecord {
            token_hash: token::hash_token(&token),
            public_id: token::public_id(),
            user_id: user_id.to_string(),
            created_at,
            last_seen_at: self.now(),
            authenticated_at,
            ip: client.ip.clone(),
            user_agent: client.stored_user_agent(),
        };
        NewSession {
            token: crate::vault::SecretString::new(token),
            record,
        }
    }

    /// Finds the live session for a cookie value; expired sessions are deleted on sight.
    pub async fn authenticate_session(&self, presented: &str) -> Result<Caller, AuthError> {
        let hash = token::hash_token(presented);
        let now = self.now();
        let idle = self.settings.session_idle_timeout.as_secs() as i64;
        let absolute = self.settings.session_absolute_timeout.as_secs() as i64;
        self.run(move |store| {
            let Some(session) = store.session_by_hash(&hash)? else {
                return Err(AuthError::Unauthenticated);
            };
            if now - session.last_seen_at > idle || now - session.created_at > absolute {
                store.delete_session(&hash)?;
                return Err(AuthError::Unauthenticated);
            }
            let user = match store.user_by_id(&session.user_id)? {
                Some(user) if !user.disabled => user,
                _ => {
                    store.delete_session(&hash)?;
                    return Err(AuthError::Unauthenticated);
                }
            };
            if now - session.last_seen_at >= TOUCH_EVERY_SECS {
                store.touch_session(&hash, now)?;
            }
            Ok(Caller {
                user: identity(&user),
                via: CallerVia::Session {
                    token_hash: hash,
                    public_id: session.public_id,
                    created_at: session.created_at,
                    authenticated_at: session.authenticated_at,
                },
            })
        })
        .await
    }

    /// Signs out this session.
    pub async fn logout(&self, caller: &Caller, client: &ClientInfo) -> Result<(), AuthError> {
        if let Some(hash) = caller.session_hash().map(str::to_owned) {
            self.run(move |store| Ok(store.delete_session(&hash)?))
                .await?;
        }
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        Ok(())
    }

    /// Signs out every session of the caller's account; returns how many ended.
    pub async fn logout_everywhere(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let id = caller.user.id.clone();
        let ended = self
            .run(move |store| Ok(store.delete_user_sessions(&id)?))
            .await?;
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        event.details =
            Some(serde_json::json!({ "everywhere": true, "sessions": ended }).to_string());
        self.audit.append(event).await;
        Ok(ended)
    }

    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<SessionRecord>, AuthError> {
        let id = caller.user.id.clone();
        self.run(move |store| Ok(store.list_user_sessions(&id)?))
            .await
    }

    /// Ends one of the caller's own sessions by its public id.
    pub async fn end_session(
        &self,
        caller: &Caller,
        public_id: String,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let id = caller.user.id.clone();
        let ended = self
            .run(move |store| Ok(store.delete_session_by_public_id(&id, &public_id)?))
            .await?;
        if !ended {
            return Err(AuthError::NotFound("session"));
        }
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        event.details = Some(r#"{"other_session":true}"#.into());
        self.audit.append(event).await;
        Ok(())
    }

    /// Deletes expired sessions (run periodically).
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        let now = self.now();
        let idle = now - self.settings.session_idle_timeout.as_secs() as i64;
        let absolute = now - self.settings.session_absolute_timeout.as_secs() as i64;
        self.run(move |store| Ok(store.purge_sessions(idle, absolute)?))
            .await
    }

    // ----- Passwords -------------------------------------------------------------------

    /// Changes the caller's password (fresh auth required); every other session of the
    /// account ends, and the caller's own session gets a new id.
    pub async fn change_password(
        &self,
        caller: &Caller,
        new_password: String,
        client: &ClientInfo,
    ) -> Result<Option<NewSession>, AuthError> {
        self.require_fresh(caller)?;
        password::check_policy(
            &new_password,
            &caller.user.email,
            self.settings.password_min_length,
        )?;
        let hash = self.hash_off_thread(new_password).await?;
        // One store operation: the new hash, the end of a pending email change (asked for
        // under the old password) and of every session, and the caller's new session.
        let old = caller
            .session_hash()
            .ok_or(AuthError::Unauthenticated)?
            .to_owned();
        let session = self.new_session(&caller.user.id, client);
        let (id, record) = (caller.user.id.clone(), session.record.clone());
        // The caller's session must still exist (else 401): a rotation never re-opens a
        // session that "sign out everywhere" ended meanwhile.
        self.run(move |store| {
            store
                .change_password(&id, &hash, &old, &record)
                .map_err(session_gone)
        })
        .await?;
        let mut event = self.audit.event("password_changed", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        Ok(Some(session))
    }

    // ----- Users (CLI and admin API) ---------------------------------------------------

    /// Creates an account. `password` is checked against the policy and hashed.
    pub async fn create_user(
        &self,
        email: &str,
        display_name: &str,
        role: Role,
        groups: Vec<String>,
        password: Option<String>,
        actor: &str,
    ) -> Result<UserRecord, AuthError> {
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        let display_name = display_name.trim();
        if display_name.chars().count() > 200 || display_name.chars().any(char::is_control) {
            return Err(AuthError::InvalidInput(
                "`display_name` must be at most 200 characters without control characters".into(),
            ));
        }
        check_groups(&groups)?;
        let password_hash = match password {
            Some(password) => {
                password::check_policy(&password, &email, self.settings.password_min_length)?;
                Some(self.hash_off_thread(password).await?)
            }
            None => None,
        };
        let user = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.clone(),
            display_name: if display_name.is_empty() {
                email.clone()
            } else {
                display_name.to_string()
            },
            role,
            groups,
            password_hash,
            created_at: self.now(),
        };
        let created = self
            .run(move |store| match store.create_user(&user) {
                Err(StoreError::Conflict(_)) => Err(AuthError::Conflict(
                    "an account with this email already exists",
                )),
                other => Ok(other?),
            })
            .await?;
        let mut event = self.audit.event("user_created", &ClientInfo::default());
        event.user_id = Some(created.id.clone());
        event.email = Some(created.email.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "role": role.as_str() }).to_string());
        self.audit.append(event).await;
        Ok(created)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<UserRecord, AuthError> {
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        self.run(move |store| {
            store
                .user_by_email(&email)?
                .ok_or(AuthError::NotFound("user"))
        })
        .await
    }

    pub async fn user_by_id(&self, id: &str) -> Result<UserRecord, AuthError> {
        let id = id.to_string();
        self.run(move |store| store.user_by_id(&id)?.ok_or(AuthError::NotFound("user")))
            .await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, AuthError> {
        self.run(|store| Ok(store.list_users()?)).await
    }

    /// Changes a role. The account's sessions end (a privilege change never keeps an old
    /// session id), so the new role starts with a new sign-in.
    pub async fn set_role(
        &self,
        user_id: &str,
        role: Role,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let (before, after) = self
            .run(move |store| {
                let before = store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                store.set_role_and_end_sessions(&id, role)?;
                let after = store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                Ok((before, after))
            })
            .await?;
        let mut event = self.audit.event("role_changed", client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(
            serde_json::json!({ "from": before.role.as_str(), "to": role.as_str() }).to_string(),
        );
        self.audit.append(event).await;
        Ok(after)
    }

    pub async fn set_groups(
        &self,
        user_id: &str,
        groups: Vec<String>,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        check_groups(&groups)?;
        let id = user_id.to_string();
        let logged = groups.clone();
        let after = self
            .run(move |store| {
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                store.set_groups_and_end_sessions(&id, &groups)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let mut event = self.audit.event("groups_changed", client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "groups": logged }).to_string());
        self.audit.append(event).await;
        Ok(after)
    }

    /// Disables (or re-enables) an account; disabling ends its sessions and stops its keys
    /// working.
    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let after = self
            .run(move |store| {
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                // Disabling ends the account's sessions in the same store operation.
                store.set_disabled(&id, disabled)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let name = if disabled {
            "user_disabled"
        } else {
            "user_enabled"
        };
        let mut event = self.audit.event(name, client);
        event.user_id = Some(after.id.clone());
        event.actor = Some(actor.to_string());
        self.audit.append(event).await;
        Ok(after)
    }

    // ----- App membership --------------------------------------------------------------

    pub async fn is_member(&self, app: &str, user_id: &str) -> Result<bool, AuthError> {
        let (app, id) = (app.to_string(), user_id.to_string());
        self.run(move |store| Ok(store.is_app_member(&app, &id)?))
            .await
    }

    pub async fn add_member(
        &self,
        app: &str,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (a, id) = (app.to_string(), user_id.to_string());
        self.run(move |store| {
            store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
            Ok(store.add_app_member(&a, &id)?)
        })
        .await?;
        let mut event = self.audit.event("member_added", client);
        event.user_id = Some(user_id.to_string());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "app": app }).to_string());
        self.audit.append(event).await;
        Ok(())
    }

    pub async fn remove_member(
        &self,
        app: &str,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (a, id) = (app.to_string(), user_id.to_string());
        let removed = self
            .run(move |store| Ok(store.remove_app_member(&a, &id)?))
            .await?;
        if !removed {
            return Err(AuthError::NotFound("member"));
        }
        let mut event = self.audit.event("member_removed", client);
        event.user_id = Some(user_id.to_string());
        event.actor = Some(actor.to_string());
        event.details = Some(serde_json::json!({ "app": app }).to_string());
        self.audit.append(event).await;
        Ok(())
    }

    pub async fn members(&self, app: &str) -> Result<Vec<String>, AuthError> {
        let app = app.to_string();
        self.run(move |store| Ok(store.app_members(&app)?)).await
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

fn check_groups(groups: &[String]) -> Result<(), AuthError> {
    let valid = groups.len() <= 100
        && groups.iter().all(|g| {
            (1..=64).contains(&g.len())
                && g.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
    if valid {
        Ok(())
    } else {
        Err(AuthError::InvalidInput(
            "`groups` must be at most 100 names of 1 to 64 characters of [A-Za-z0-9_.-]".into(),
        ))
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
