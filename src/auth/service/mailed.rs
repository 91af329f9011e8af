//! Flows confirmed by a mailed link: password reset, signup and email change.
//!
//! The request endpoints answer before anything account-specific happens: the lookup, the
//! token and the mail run in a background job, so the answer (bytes, status, headers and
//! timing) is the same whether or not the account exists. Links are built only from
//! `SLUICE_PUBLIC_URL` and carry the token in the fragment (`#token=`), which browsers never
//! send to a server, so it cannot leak through access logs or `Referer`.

use std::sync::Arc;

use super::{AuthError, AuthService, NewSession};
use crate::auth::mail::Mail;
use crate::auth::{ClientInfo, Role, email_domain, normalize_email, password, token};
use crate::store::StoreError;
use crate::store::tokens::{TokenPurpose, TokenRecord};
use crate::store::users::{EMAIL_TAKEN, NewUser, UserRecord};

impl AuthService {
    fn mail_ready(&self) -> Result<(), AuthError> {
        if self.mailer.is_some() && self.public_url.is_some() {
            Ok(())
        } else {
            Err(AuthError::Unavailable(
                "mail is not configured on this instance (SLUICE_SMTP_URL), so this flow is off",
            ))
        }
    }

    fn new_token(
        &self,
        purpose: TokenPurpose,
        user_id: Option<String>,
        email: &str,
    ) -> (String, TokenRecord) {
        let now = self.now();
        let raw = token::random_token();
        let record = TokenRecord {
            token_hash: token::hash_token(&raw),
            purpose,
            user_id,
            email: email.to_string(),
            created_at: now,
            expires_at: now + self.settings.token_ttl.as_secs() as i64,
        };
        (raw, record)
    }

    fn ttl_text(&self) -> String {
        let minutes = self.settings.token_ttl.as_secs().div_ceil(60);
        if minutes.is_multiple_of(60) {
            format!("{} hour(s)", minutes / 60)
        } else {
            format!("{minutes} minute(s)")
        }
    }

    // ----- Password reset --------------------------------------------------------------

    /// Accepts a reset request. Returns before looking the address up.
    pub async fn request_password_reset(
        self: &Arc<Self>,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        self.mail_ready()?;
        self.throttle(client).await?;
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        let service = Arc::clone(self);
        let client = client.clone();
        self.spawn_job(async move { service.reset_job(email, client).await });
        Ok(())
    }

    async fn reset_job(self: Arc<Self>, email: String, client: ClientInfo) {
        let lookup = email.clone();
        let user = self
            .run(move |store| Ok(store.user_by_email(&lookup)?))
            .await;
        let mut event = self.audit.event("password_reset_requested", &client);
        event.email = Some(email.clone());
        match user {
            Ok(Some(user)) if !user.disabled => {
                event.user_id = Some(user.id.clone());
                let (raw, record) =
                    self.new_token(TokenPurpose::PasswordReset, Some(user.id.clone()), &email);
                // A new link voids older ones.
                let stored = self
                    .run(move |store| Ok(store.replace_user_token(&record)?))
                    .await;
                if let Err(error) = stored {
                    tracing::error!(error = %error, "Reset token not stored");
                    return;
                }
                let link = self.link("reset", &raw).unwrap_or_default();
                let mail = Mail {
                    to: email,
                    subject: "Reset your Sluice password".into(),
                    text: format!(
                        "Someone asked to reset the password of your Sluice account.\n\n\
                         To choose a new password, open this link within {}:\n\n{link}\n\n\
                         The link works once. If you did not ask for this, ignore this mail; \
                         your password stays as it is.\n",
                        self.ttl_text()
                    ),
                };
                self.audit.append(event).await;
                if let Some(mailer) = &self.mailer {
                    AuthService::send_mail(mailer, mail, "password_reset").await;
                }
            }
            Ok(Some(_)) => {
                event.reason = Some("disabled".into());
                self.audit.append(event).await;
            }
            Ok(None) => {
                event.reason = Some("unknown_account".into());
                self.audit.append(event).await;
            }
            Err(error) => tracing::error!(error = %error, "Reset lookup failed"),
        }
    }

    /// Sets a new password with a reset token: unlocks the account, ends all its sessions.
    pub async fn complete_password_reset(
        &self,
        raw_token: &str,
        new_password: String,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        self.throttle(client).await?;
        let hash = token::hash_token(raw_token);
        let now = self.now();
        let lookup = hash.clone();
        let record = self
            .run(move |store| Ok(store.find_token(&lookup, TokenPurpose::PasswordReset, now)?))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user_id = record.user_id.clone().ok_or(AuthError::InvalidToken)?;
        let user = self
            .user_by_id(&user_id)
            .await
            .map_err(|_| AuthError::InvalidToken)?;
        password::check_policy(
            &new_password,
            &user.email,
            self.settings.password_min_length,
        )?;
        let password_hash = self.hash_off_thread(new_password).await?;
        let id = user.id.clone();
        // The token is spent as of now, after the (slow) hashing: one that expired meanwhile
        // is refused.
        let now = self.now();
        // One store operation: the token is spent (a second use finds nothing) together with
        // the new password, the unlock, the end of a pending email change and of every
        // session, or none of it happens.
        let ended = self
            .run(move |store| {
                store
                    .complete_password_reset(&hash, &id, &password_hash, now)?
                    .ok_or(AuthError::InvalidToken)
            })
            .await?;
        let mut event = self.audit.event("password_reset_completed", client);
        event.user_id = Some(user.id.clone());
        event.details = Some(serde_json::json!({ "sessions_ended": ended }).to_string());
        self.audit.append(event).await;
        if user.locked_until.is_some_and(|until| until > now) || user.failed_logins > 0 {
            let mut unlocked = self.audit.event("account_unlocked", client);
            unlocked.user_id = Some(user.id);
            unlocked.reason = Some("password_reset".into());
            self.audit.append(unlocked).await;
        }
        Ok(())
    }

    // ----- Signup ----------------------------------------------------------------------

    /// Accepts a signup request for an address; the account is created only when the link
    /// mailed to that address is used, so the domain check applies to a verified address.
    pub async fn request_signup(
        self: &Arc<Self>,
        email: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        if !self.settings.signup_enabled {
            return Err(AuthError::Forbidden("self-signup is off on this instance"));
        }
        self.mail_ready()?;
        self.throttle(client).await?;
        let email = normalize_email(email).ok_or(AuthError::InvalidEmail("email"))?;
        self.check_signup_domain(&email)?;
        let service = Arc::clone(self);
        let client = client.clone();
        self.spawn_job(async move { service.signup_job(email, client).await });
        Ok(())
    }

    fn check_signup_domain(&self, email: &str) -> Result<(), AuthError> {
        let allowed = &self.settings.signup_allowed_domains;
        if allowed.is_empty() || allowed.iter().any(|d| d == email_domain(email)) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(
                "signup is limited to other email domains on this instance",
            ))
        }
    }

    async fn signup_job(self: Arc<Self>, email: String, client: ClientInfo) {
        let lookup = email.clone();
        let existing = self
            .run(move |store| Ok(store.user_by_email(&lookup)?))
            .await;
        let mut event = self.audit.event("signup_requested", &client);
        event.email = Some(email.clone());
        let mail = match existing {
            Ok(Some(user)) => {
                event.user_id = Some(user.id);
                event.reason = Some("existing_account".into());
                Mail {
                    to: email,
                    subject: "You already have a Sluice account".into(),
                    text: "Someone asked to create a Sluice account for this address, but it \
                           already has one. If you forgot its password, use \"forgot password\" \
                           to reset it. If you did not ask for this, ignore this mail.\n"
                        .into(),
                }
            }
            Ok(None) => {
                let (raw, record) = self.new_token(TokenPurpose::Signup, None, &email);
                if let Err(error) = self
                    .run(move |store| Ok(store.create_token(&record)?))
                    .await
                {
                    tracing::error!(error = %error, "Signup token not stored");
                    return;
                }
                let link = self.link("signup", &raw).unwrap_or_default();
                Mail {
                    to: email,
                    subject: "Finish creating your Sluice account".into(),
                    text: format!(
                        "To finish creating your Sluice account, open this link within {} and \
                         choose a password:\n\n{link}\n\nIf you did not ask for this, ignore \
                         this mail; no account is created.\n",
                        self.ttl_text()
                    ),
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "Signup lookup failed");
                return;
            }
        };
        self.audit.append(event).await;
        if let Some(mailer) = &self.mailer {
            AuthService::send_mail(mailer, mail, "signup").await;
        }
    }

    /// Creates the account for a signup token (role viewer) and signs it in.
    pub async fn complete_signup(
        &self,
        raw_token: &str,
        new_password: String,
        display_name: String,
        client: &ClientInfo,
    ) -> Result<(UserRecord, NewSession), AuthError> {
        self.throttle(client).await?;
        let hash = token::hash_token(raw_token);
        let now = self.now();
        let lookup = hash.clone();
        let record = self
            .run(move |store| Ok(store.find_token(&lookup, TokenPurpose::Signup, now)?))
            .await?
            .ok_or(AuthError::InvalidToken)?;
        // The settings may have changed since the mail went out.
        if !self.settings.signup_enabled {
            return Err(AuthError::Forbidden("self-signup is off on this instance"));
        }
        self.check_signup_domain(&record.email)?;
        password::check_policy(
            &new_password,
            &record.email,
            self.settings.password_min_length,
        )?;
        let display_name = display_name.trim().to_string();
        if display_name.chars().count() > 200 || display_name.chars().any(char::is_control) {
            return Err(AuthError::InvalidInput(
                "`display_name` must be at most 200 characters without control characters".into(),
            ));
        }
        let password_hash = self.hash_off_thread(new_password).await?;
        let user = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            email: record.email.clone(),
            display_name: if display_name.is_empty() {
                record.email.clone()
            } else {
                display_name
            },
            role: Role::Viewer,
            groups: Vec::new(),
            password_hash: Some(password_hash),
            created_at: now,
        };
        // One store operation: the token is spent, the account created and its first session
        // opened, or none of it (a taken address leaves the token unspent).
        let session = self.new_session(&user.id, client);
        let record = session.record.clone();
        let created = self
            .run(move |store| {
                store
                    .complete_signup(&hash, now, &user, &record)
                    .map_err(signup_error)?
                    .ok_or(AuthError::InvalidToken)
            })
            .await?;
        let mut event = self.audit.event("signup_completed", client);
        event.user_id = Some(created.id.clone());
        event.email = Some(created.email.clone());
        self.audit.append(event).await;
        Ok((created, session))
    }

    // ----- Email change ----------------------------------------------------------------

    /// Starts an email change (fresh auth required): a link goes to the new address; the
    /// change happens when it is used.
    pub async fn request_email_change(
        &self,
        caller: &super::Caller,
        new_email: &str,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        self.mail_ready()?;
        self.require_fresh(caller)?;
        let email = normalize_email(new_email).ok_or(AuthError::InvalidEmail("new_email"))?;
        let (raw, record) = self.new_token(
            TokenPurpose::EmailChange,
            Some(caller.user.id.clone()),
            &email,
        );
        // A new link voids older ones.
        self.run(move |store| Ok(store.replace_user_token(&record)?))
            .await?;
        let mut event = self.audit.event("email_change_requested", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        let link = self.link("email", &raw).unwrap_or_default();
        let mail = Mail {
            to: email,
            subject: "Confirm your new Sluice email address".into(),
            text: format!(
                "To make this the email address of your Sluice account, open this link within \
                 {}:\n\n{link}\n\nIf you did not ask for this, ignore this mail.\n",
                self.ttl_text()
            ),
        };
        if let Some(mailer) = self.mailer.clone() {
            self.spawn_job(
                async move { AuthService::send_mail(&mailer, mail, "email_change").await },
            );
        }
        Ok(())
    }

    /// Applies an email change; the account's sessions end (sign in with the new address).
    pub async fn confirm_email_change(
        &self,
        raw_token: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        self.throttle(client).await?;
        let hash = token::hash_token(raw_token);
        let now = self.now();
        // One store operation: the token is spent only if the address changes (a taken one
        // answers 409 and leaves the link usable), together with the end of pending reset
        // links (they went to the old address) and of every session.
        let user = self
            .run(move |store| match store.confirm_email_change(&hash, now) {
                Ok(Some(user)) => Ok(user),
                Ok(None) | Err(StoreError::NotFound(_)) => Err(AuthError::InvalidToken),
                Err(StoreError::Conflict(_)) => Err(AuthError::Conflict(
                    "an account with this email already exists",
                )),
                Err(other) => Err(other.into()),
            })
            .await?;
        let mut event = self.audit.event("email_changed", client);
        event.user_id = Some(user.id.clone());
        event.email = Some(user.email.clone());
        self.audit.append(event).await;
        Ok(user)
    }
}

/// A failed signup: only the email conflict is the caller's (the address is taken); any other
/// conflict (a session or account id in use) is an internal error, logged by kind only.
fn signup_error(error: StoreError) -> AuthError {
    match error {
        StoreError::Conflict(what) if what == EMAIL_TAKEN => {
            AuthError::Conflict("an account with this email already exists")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_taken_email_is_the_signup_conflict() {
        assert!(matches!(
            signup_error(StoreError::Conflict(EMAIL_TAKEN)),
            AuthError::Conflict("an account with this email already exists")
        ));
        // A session id (or account id) in use is not the caller's doing: an internal error.
        for other in ["session", "user"] {
            let error = signup_error(StoreError::Conflict(other));
            assert!(
                matches!(error, AuthError::Store(StoreError::Conflict(what)) if what == other),
                "{error:?}"
            );
        }
    }
}
