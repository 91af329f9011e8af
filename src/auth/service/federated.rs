//! Sign-in through an identity provider: the account a verified provider identity opens,
//! explicit linking by a signed-in owner, and the OpenID Connect flows under way.
//!
//! Owns the linking rules. A provider account (provider, `sub`) signs in as the user it is
//! linked to. Without a link, its email is used only when the provider says it is verified
//! AND its domain is trusted (the provider's `allowed_domains`, else
//! `SLUICE_SIGNUP_ALLOWED_DOMAINS`): then it may create an account (just in time, when the
//! provider allows it) or, only where the provider sets `link_verified_email`, sign in to the
//! local account with that email. Otherwise an existing local account is linked only by its
//! owner, signed in with a fresh password check ([`AuthService::link_identity`]); it is never
//! taken over by an unverified, new-domain or look-alike email.
//!
//! An account with two-factor authentication signs in through a provider only when the
//! provider says the sign-in used a second factor (`amr`); otherwise it signs in with its
//! password and code. Role and groups follow the provider's claims at each sign-in where the
//! provider maps them. Sessions are the same as a password sign-in's.

use super::{AuthError, AuthService, NewSession};
use crate::auth::{Caller, ClientInfo, Role, email_domain, normalize_email};
use crate::store::StoreError;
use crate::store::identities::{LinkedIdentity, SsoFlow};
use crate::store::users::{EMAIL_TAKEN, NewUser, SignIn, UserRecord};

/// `amr` values (RFC 8176) that mean more than a password was used.
const SECOND_FACTORS: &[&str] = &[
    "mfa", "otp", "hwk", "swk", "sc", "fpt", "face", "iris", "retina", "vbm", "sms", "tel",
];

/// A provider identity, verified, with what the provider's settings make of it.
#[derive(Debug, Clone)]
pub struct FederatedSignIn {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    /// The role the claims map to, where the provider maps roles (`None`: leave the role).
    pub role: Option<Role>,
    /// The role of an account created by this sign-in.
    pub new_account_role: Role,
    /// The groups the claims give, where the provider syncs groups.
    pub groups: Option<Vec<String>>,
    /// The provider's `amr` values.
    pub amr: Vec<String>,
    /// The provider's `allowed_domains` (`*`: any).
    pub allowed_domains: Vec<String>,
    pub create_users: bool,
    pub link_verified_email: bool,
}

/// Why a provider sign-in found no account: each a 403 naming what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAccount {
    /// No link, and the email may not be used (unverified, missing, or an untrusted domain).
    NotLinked,
    /// A local account has this email: its owner must link the provider.
    LinkRequired,
}

impl AuthService {
    /// Stores a sign-in flow (an OpenID Connect `state`), taken once by the callback.
    pub async fn begin_sso_flow(&self, flow: SsoFlow) -> Result<(), AuthError> {
        self.run(move |store| Ok(store.begin_sso_flow(&flow)?))
            .await
    }

    /// Takes the flow of this `state` hash, once; `None` when unknown, used or expired.
    pub async fn take_sso_flow(&self, state_hash: String) -> Result<Option<SsoFlow>, AuthError> {
        let now = self.now();
        self.run(move |store| Ok(store.take_sso_flow(&state_hash, now)?))
            .await
    }

    /// Records a provider sign-in that failed before any account was involved (the
    /// provider refused, its token did not verify): `login_failed` with the reason.
    pub async fn record_sso_failure(
        &self,
        provider: &str,
        reason: &'static str,
        client: &ClientInfo,
    ) {
        let mut event = self.audit.event("login_failed", client);
        event.details = Some(serde_json::json!({ "provider": provider }).to_string());
        self.failed(&mut event, reason);
        self.audit.append(event).await;
    }

    /// Whether `email`'s domain is one a provider's emails are trusted for.
    fn domain_trusted(&self, login: &FederatedSignIn, email: &str) -> bool {
        let domain = email_domain(email);
        let list = if login.allowed_domains.is_empty() {
            &self.settings.signup_allowed_domains
        } else {
            &login.allowed_domains
        };
        list.iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(domain))
    }

    /// Signs in with a verified provider identity and opens a session (see the module doc).
    pub async fn sign_in_federated(
        &self,
        login: FederatedSignIn,
        client: &ClientInfo,
        replaces: Option<String>,
    ) -> Result<(UserRecord, NewSession), AuthError> {
        self.throttle(client).await?;
        let mut refused = self.audit.event("login_failed", client);
        refused.details = Some(serde_json::json!({ "provider": login.provider }).to_string());
        let (provider, subject) = (login.provider.clone(), login.subject.clone());
        let linked = self
            .run(move |store| Ok(store.user_for_identity(&provider, &subject)?))
            .await?;
        let trusted_email = login
            .email
            .as_deref()
            .and_then(normalize_email)
            .filter(|email| login.email_verified && self.domain_trusted(&login, email));
        let mut link_by_email = false;
        let user = match linked {
            Some(user) => user,
            None => {
                let Some(email) = trusted_email.clone() else {
                    refused.email = login.email.as_deref().and_then(normalize_email);
                    self.failed(&mut refused, "sso_not_linked");
                    self.audit.append(refused).await;
                    return Err(AuthError::SsoNoAccount(NoAccount::NotLinked));
                };
                let lookup = email.clone();
                let existing = self
                    .run(move |store| Ok(store.user_by_email(&lookup)?))
                    .await?;
                match existing {
                    Some(user) if login.link_verified_email => {
                        // Linked below, once the account's own checks pass.
                        link_by_email = true;
                        user
                    }
                    Some(user) => {
                        refused.user_id = Some(user.id);
                        refused.email = Some(email);
                        self.failed(&mut refused, "sso_link_required");
                        self.audit.append(refused).await;
                        return Err(AuthError::SsoNoAccount(NoAccount::LinkRequired));
                    }
                    None if login.create_users => {
                        self.create_federated(&login, email, client).await?
                    }
                    None => {
                        refused.email = Some(email);
                        self.failed(&mut refused, "sso_no_account");
                        self.audit.append(refused).await;
                        return Err(AuthError::SsoNoAccount(NoAccount::NotLinked));
                    }
                }
            }
        };
        refused.user_id = Some(user.id.clone());
        refused.email = Some(user.email.clone());
        if user.disabled {
            self.failed(&mut refused, "disabled");
            self.audit.append(refused).await;
            return Err(AuthError::SsoRefused("this account is disabled"));
        }
        if user.mfa_enabled
            && !login
                .amr
                .iter()
                .any(|m| SECOND_FACTORS.contains(&m.as_str()))
        {
            self.failed(&mut refused, "sso_without_second_factor");
            self.audit.append(refused).await;
            return Err(AuthError::SsoRefused(
                "this account uses two-factor authentication and the identity provider did not \
                 report a second factor: sign in with your password and code, or have the \
                 provider require MFA",
            ));
        }
        if link_by_email {
            self.link_to(&user, &login, client, "sso_email").await?;
        }
        let user = self.apply_claims(user, &login, client).await?;
        let session = self.new_session(&user.id, client);
        let (verified, now, record) = (user.clone(), self.now(), session.record.clone());
        let (provider, subject) = (login.provider.clone(), login.subject.clone());
        let outcome = self
            .run(move |store| {
                let outcome = store.complete_login(&verified, now, &record, replaces.as_deref())?;
                if outcome == SignIn::Admitted {
                    store.record_identity_sign_in(&provider, &subject, now)?;
                }
                Ok(outcome)
            })
            .await?;
        self.admit(outcome, refused).await?;
        let mut event = self.audit.event("login_succeeded", client);
        event.user_id = Some(user.id.clone());
        event.email = Some(user.email.clone());
        event.details =
            Some(serde_json::json!({ "via": "sso", "provider": login.provider, "role": user.role.as_str() }).to_string());
        self.audit.append(event).await;
        Ok((user, session))
    }

    /// Role and groups from the provider's claims, where it maps them; a change ends the
    /// account's other sessions (as an admin's change would), before the new one opens.
    async fn apply_claims(
        &self,
        user: UserRecord,
        login: &FederatedSignIn,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let role = login.role.filter(|role| *role != user.role);
        let groups = login.groups.clone().filter(|groups| *groups != user.groups);
        if role.is_none() && groups.is_none() {
            return Ok(user);
        }
        let id = user.id.clone();
        let (new_role, new_groups) = (role, groups.clone());
        let updated = self
            .run(move |store| {
                if let Some(role) = new_role {
                    store.set_role_and_end_sessions(&id, role)?;
                }
                if let Some(groups) = &new_groups {
                    store.set_groups_and_end_sessions(&id, groups)?;
                }
                store
                    .user_by_id(&id)?
                    .ok_or(AuthError::Store(StoreError::NotFound("user")))
            })
            .await?;
        let mut event = self.audit.event("sso_claims_applied", client);
        event.user_id = Some(user.id.clone());
        event.details = Some(
            serde_json::json!({
                "provider": login.provider,
                "role": role.map(Role::as_str),
                "from_role": role.map(|_| user.role.as_str()),
                "groups_changed": groups.is_some(),
            })
            .to_string(),
        );
        self.audit.append(event).await;
        Ok(updated)
    }

    async fn create_federated(
        &self,
        login: &FederatedSignIn,
        email: String,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let now = self.now();
        let display_name = login
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| {
                !n.is_empty() && n.chars().count() <= 200 && !n.chars().any(char::is_control)
            })
            .unwrap_or(&email)
            .to_owned();
        let user = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            email: email.clone(),
            display_name,
            role: login.role.unwrap_or(login.new_account_role),
            groups: login.groups.clone().unwrap_or_default(),
            password_hash: None,
            created_at: now,
        };
        let identity = LinkedIdentity {
            provider: login.provider.clone(),
            subject: login.subject.clone(),
            user_id: user.id.clone(),
            email: Some(email),
            linked_at: now,
            last_sign_in_at: None,
        };
        let created = self
            .run(
                move |store| match store.create_user_with_identity(&user, &identity) {
                    // Another sign-in (or an admin) took the email meanwhile: its owner links.
                    Err(StoreError::Conflict(what)) if what == EMAIL_TAKEN => {
                        Err(AuthError::SsoNoAccount(NoAccount::LinkRequired))
                    }
                    Err(StoreError::Conflict(_)) => Err(AuthError::Conflict(
                        "this provider account is already linked to an account",
                    )),
                    other => Ok(other?),
                },
            )
            .await?;
        let mut event = self.audit.event("user_created", client);
        event.user_id = Some(created.id.clone());
        event.email = Some(created.email.clone());
        event.details = Some(
            serde_json::json!({ "via": "sso", "provider": login.provider, "role": created.role })
                .to_string(),
        );
        self.audit.append(event).await;
        Ok(created)
    }

    async fn link_to(
        &self,
        user: &UserRecord,
        login: &FederatedSignIn,
        client: &ClientInfo,
        how: &'static str,
    ) -> Result<(), AuthError> {
        let identity = LinkedIdentity {
            provider: login.provider.clone(),
            subject: login.subject.clone(),
            user_id: user.id.clone(),
            email: login.email.as_deref().and_then(normalize_email),
            linked_at: self.now(),
            last_sign_in_at: None,
        };
        self.run(move |store| match store.link_identity(&identity) {
            Err(StoreError::Conflict(_)) => Err(AuthError::Conflict(
                "this provider account is already linked to an account",
            )),
            other => Ok(other?),
        })
        .await?;
        let mut event = self.audit.event("identity_linked", client);
        event.user_id = Some(user.id.clone());
        event.details =
            Some(serde_json::json!({ "provider": login.provider, "how": how }).to_string());
        self.audit.append(event).await;
        Ok(())
    }

    /// Links a provider identity to `user_id`, the signed-in owner who started the link
    /// (with a fresh password check) in this browser.
    pub async fn link_identity(
        &self,
        user_id: &str,
        login: FederatedSignIn,
        client: &ClientInfo,
    ) -> Result<UserRecord, AuthError> {
        let id = user_id.to_owned();
        let user = self
            .run(move |store| Ok(store.user_by_id(&id)?))
            .await?
            .filter(|user| !user.disabled)
            .ok_or(AuthError::Unauthenticated)?;
        self.link_to(&user, &login, client, "owner").await?;
        Ok(user)
    }

    /// The caller's linked provider accounts.
    pub async fn identities(&self, caller: &Caller) -> Result<Vec<LinkedIdentity>, AuthError> {
        let id = caller.user.id.clone();
        self.run(move |store| Ok(store.identities_of(&id)?)).await
    }

    /// Unlinks a provider from the caller's account (fresh auth), unless it is the account's
    /// last way in (no other provider, and no password or `sso_only`, where passwords do not
    /// sign in).
    pub async fn unlink_identity(
        &self,
        caller: &Caller,
        provider: String,
        sso_only: bool,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        self.require_fresh(caller)?;
        let id = caller.user.id.clone();
        let target = provider.clone();
        self.run(move |store| {
            let user = store.user_by_id(&id)?.ok_or(AuthError::Unauthenticated)?;
            let identities = store.identities_of(&id)?;
            if !identities.iter().any(|i| i.provider == target) {
                return Err(AuthError::NotFound("linked provider"));
            }
            let others = identities.iter().filter(|i| i.provider != target).count();
            if (sso_only || user.password_hash.is_none()) && others == 0 {
                return Err(AuthError::Conflict(
                    "this provider is the account's only way to sign in",
                ));
            }
            store.unlink_identity(&id, &target)?;
            Ok(())
        })
        .await?;
        let mut event = self.audit.event("identity_unlinked", client);
        event.user_id = Some(caller.user.id.clone());
        event.details = Some(serde_json::json!({ "provider": provider }).to_string());
        self.audit.append(event).await;
        Ok(())
    }
}
