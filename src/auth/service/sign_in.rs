//! Sign-in and re-authentication: the credential check with lockout accounting, the one
//! answer for every refused account, fresh auth, and the caller's own password change.
//!
//! Owns how a password (and second factor) is checked and what a failure counts for. Must
//! never tell the caller why an account was refused (the reason goes to the audit log
//! only), never log a password or code, and never record a success apart from the session
//! it opens or renews (one store operation).

use super::{AuthError, AuthService, Credentials, NewSession, session_gone};
use crate::auth::{Caller, CallerVia, ClientInfo, normalize_email, password};
use crate::store::audit::AuditEvent;
use crate::store::users::{SignIn, UserRecord};

impl AuthService {
    // ----- Sign-in ---------------------------------------------------------------------

    /// Checks the credentials and opens a session. `replaces` is the session the request
    /// came with, if any: it is deleted, so every sign-in gets a fresh id.
    pub async fn login(
        &self,
        credentials: Credentials,
        client: &ClientInfo,
        replaces: Option<String>,
    ) -> Result<(UserRecord, NewSession), AuthError> {
        self.throttle(client).await?;
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
        event.details = Some(serde_json::json!({ "role": user.role.as_str() }).to_string());
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
        // Checks of one account queue (held until the failure, if any, is recorded), so an
        // attempt never reads the account before a failure that raced it.
        let _gate = match &email {
            Some(email) => Some(self.account_gates.enter(email).await),
            None => None,
        };
        let _slot = self.argon_slot().await?;
        let (user, password_ok) = self
            .run(move |store| {
                let user = match &lookup {
                    Some(email) => store.user_by_email(email)?,
                    None => None,
                };
                // A locked account's password is not checked; the dummy verification keeps
                // the answer in the same time class as every other refusal.
                let locked = user
                    .as_ref()
                    .is_some_and(|u| u.locked_until.is_some_and(|until| until > now));
                let hash = user.as_ref().and_then(|u| u.password_hash.as_deref());
                let ok = match hash {
                    Some(hash) if !locked => password::verify_password(hash, &password),
                    _ => {
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
            self.failed(&mut event, "unknown_account");
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        };
        event.user_id = Some(user.id.clone());
        if user.disabled {
            self.failed(&mut event, "disabled");
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        }
        if user.locked_until.is_some_and(|until| until > now) {
            // Refused unchecked: failures during a lock do not extend it, and no password,
            // right or wrong, is tried against a locked account.
            self.failed(&mut event, "locked");
            self.audit.append(event).await;
            return Err(AuthError::InvalidCredentials);
        }
        if !password_ok {
            self.failed(&mut event, "wrong_password");
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
                    self.failed(&mut event, "wrong_mfa_code");
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
    pub(super) async fn admit(
        &self,
        outcome: SignIn,
        mut refusal: AuditEvent,
    ) -> Result<(), AuthError> {
        let reason = match outcome {
            SignIn::Admitted => return Ok(()),
            SignIn::Locked => "locked_right_password",
            SignIn::CredentialsChanged => "credentials_changed",
        };
        self.failed(&mut refusal, reason);
        self.audit.append(refusal).await;
        Err(AuthError::InvalidCredentials)
    }

    /// Records why a sign-in failed: on its audit event, and in the metrics.
    pub(super) fn failed(&self, event: &mut AuditEvent, reason: &'static str) {
        event.reason = Some(reason.into());
        self.metrics.sign_in_failed(reason);
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
            self.metrics.account_locked();
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
        self.throttle(client).await?;
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
            CallerVia::Token { .. } => Err(AuthError::Forbidden(
                "this action needs a signed-in session, not a bearer token",
            )),
        }
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
}
