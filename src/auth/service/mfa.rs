//! TOTP enrolment, confirmation, recovery codes and disabling.

use serde::Serialize;

use super::{AuthError, AuthService, Caller, NewSession, session_gone};
use crate::auth::{ClientInfo, token, totp};
use crate::store::sessions::SessionChange;
use crate::store::users::UserRecord;
use crate::vault::Owner;

/// What enrolment shows the user once: the secret for manual entry, the otpauth URI, and
/// that URI as a QR code (an SVG document) for authenticator apps to scan.
#[derive(Debug, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

/// The issuer name authenticator apps show.
const ISSUER: &str = "Sluice";

impl AuthService {
    /// Checks a TOTP code (refusing replays) or a recovery code (single use).
    pub(super) async fn check_second_factor(
        &self,
        user: &UserRecord,
        totp_code: Option<&str>,
        recovery_code: Option<&str>,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let id = user.id.clone();
        if let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) {
            let secret = self.open_totp_secret(user)?;
            let Some(step) = totp::verify(&secret, code, now) else {
                return Err(AuthError::InvalidMfaCode);
            };
            let fresh = self
                .run(move |store| Ok(store.accept_totp_step(&id, step)?))
                .await?;
            return if fresh {
                Ok(())
            } else {
                Err(AuthError::InvalidMfaCode)
            };
        }
        if let Some(code) = recovery_code.filter(|c| !c.trim().is_empty()) {
            let hash = token::hash_token(&token::normalize_recovery_code(code));
            let used = self
                .run(move |store| Ok(store.use_recovery_code(&id, &hash, now)?))
                .await?;
            return if used {
                Ok(())
            } else {
                Err(AuthError::InvalidMfaCode)
            };
        }
        Err(AuthError::MfaRequired)
    }

    /// Starts (or restarts) enrolment: a new secret, sealed for this user, not yet active.
    pub async fn enrol_mfa(&self, caller: &Caller) -> Result<Enrolment, AuthError> {
        self.require_fresh(caller)?;
        let already_on = || {
            AuthError::Conflict(
                "two-factor authentication is already on; disable it first to change devices",
            )
        };
        if caller.user.mfa_enabled {
            return Err(already_on());
        }
        let secret = totp::new_secret();
        let encoded = totp::encode_secret(&secret);
        let sealed = self
            .key
            .seal(&Owner::user(&caller.user.id, "totp")?, &encoded);
        let id = caller.user.id.clone();
        // MFA turned on since the check above (a confirmation racing this request): the
        // store refuses, so enrolling again never turns it off.
        self.run(move |store| match store.set_totp_secret(&id, &sealed) {
            Err(crate::store::StoreError::Conflict(_)) => Err(already_on()),
            other => Ok(other?),
        })
        .await?;
        let otpauth_uri = totp::otpauth_uri(&secret, ISSUER, &caller.user.email);
        Ok(Enrolment {
            qr_svg: totp::qr_svg(&otpauth_uri),
            otpauth_uri,
            secret: encoded,
        })
    }

    /// Confirms enrolment with a first code; turns MFA on and returns the ten recovery codes
    /// (shown once) and the session's new id.
    pub async fn confirm_mfa(
        &self,
        caller: &Caller,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(Vec<String>, Option<NewSession>), AuthError> {
        if caller.user.mfa_enabled {
            return Err(AuthError::Conflict(
                "two-factor authentication is already on",
            ));
        }
        let user = self.user_by_id(&caller.user.id).await?;
        self.check_second_factor(&user, Some(code), None).await?;
        let codes = token::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| token::hash_token(&token::normalize_recovery_code(c)))
            .collect();
        // The caller, who just proved the second factor, continues in a new session. The
        // code spent above stays spent if what follows fails (it is never replayable).
        let rotated = self.rotated_session(caller, client);
        let (id, replace) = (
            user.id.clone(),
            rotated
                .as_ref()
                .map(|(old, new)| (old.clone(), new.record.clone())),
        );
        // One store operation: the codes, MFA on, the end of every session (those opened
        // with the password alone must not become MFA sessions; for an admin they would gain
        // the admin API) and the caller's new one.
        // The caller's session must still exist (else 401, and nothing changes).
        self.run(move |store| {
            let session = replace.as_ref().map(|(old, new)| (old.as_str(), new));
            store
                .enable_mfa(&id, &hashes, session)
                .map_err(session_gone)
        })
        .await?;
        let session = rotated.map(|(_, new)| new);
        let mut event = self.audit.event("mfa_enrolled", client);
        event.user_id = Some(user.id.clone());
        self.audit.append(event).await;
        Ok((codes, session))
    }

    /// New recovery codes (the old ones stop working). Fresh auth required.
    pub async fn regenerate_recovery_codes(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Result<Vec<String>, AuthError> {
        self.require_fresh(caller)?;
        if !caller.user.mfa_enabled {
            return Err(AuthError::Conflict("two-factor authentication is off"));
        }
        let codes = token::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| token::hash_token(&token::normalize_recovery_code(c)))
            .collect();
        let id = caller.user.id.clone();
        self.run(move |store| Ok(store.replace_recovery_codes(&id, &hashes)?))
            .await?;
        let mut event = self.audit.event("recovery_codes_regenerated", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        Ok(codes)
    }

    /// Turns MFA off (fresh auth required). An admin's sessions are then limited to
    /// enrolment again.
    pub async fn disable_mfa(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Result<Option<NewSession>, AuthError> {
        self.require_fresh(caller)?;
        if !caller.user.mfa_enabled {
            return Err(AuthError::Conflict(
                "two-factor authentication is already off",
            ));
        }
        let rotated = self.rotated_session(caller, client);
        let id = caller.user.id.clone();
        let replace = rotated
            .as_ref()
            .map(|(old, new)| (old.clone(), new.record.clone()));
        // One store operation: MFA off and the caller's session under a new id.
        self.run(move |store| {
            let sessions = match &replace {
                Some((old, new)) => SessionChange::Rotate { old, new },
                None => SessionChange::Keep,
            };
            store.disable_mfa(&id, sessions).map_err(session_gone)
        })
        .await?;
        let mut event = self.audit.event("mfa_disabled", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        Ok(rotated.map(|(_, new)| new))
    }

    pub async fn remaining_recovery_codes(&self, user_id: &str) -> Result<u32, AuthError> {
        let id = user_id.to_string();
        self.run(move |store| Ok(store.remaining_recovery_codes(&id)?))
            .await
    }
}

impl AuthService {
    /// Lifts a lockout (an admin's decision, when no reset mail can be sent).
    pub async fn unlock(
        &self,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let user = self
            .run(move |store| {
                store.clear_lockout(&id)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await
            .map_err(|error| match error {
                AuthError::Store(crate::store::StoreError::NotFound(_)) => {
                    AuthError::NotFound("user")
                }
                other => other,
            })?;
        let mut event = self.audit.event("account_unlocked", client);
        event.user_id = Some(user.id.clone());
        event.actor = Some(actor.to_string());
        event.reason = Some("admin".into());
        self.audit.append(event).await;
        Ok(user)
    }

    /// Clears a user's MFA for an admin (lost device): secret and recovery codes go, the
    /// user's sessions end, and an admin must enrol again at the next sign-in.
    pub async fn reset_mfa(
        &self,
        user_id: &str,
        actor: &str,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_string();
        let user = self
            .run(move |store| {
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))?;
                store.disable_mfa(&id, SessionChange::EndAll)?;
                store.user_by_id(&id)?.ok_or(AuthError::NotFound("user"))
            })
            .await?;
        let mut event = self.audit.event("mfa_disabled", client);
        event.user_id = Some(user.id.clone());
        event.actor = Some(actor.to_string());
        event.reason = Some("reset_by_admin".into());
        self.audit.append(event).await;
        Ok(user)
    }
}
