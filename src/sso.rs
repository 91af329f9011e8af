//! Federated identity: OpenID Connect sign-in ([`oidc`]) and bearer JWTs from external
//! issuers ([`Sso::verify_bearer`]), configured by the SSO file ([`settings`]).
//!
//! One file per concern: `settings` (the file), `client` (the egress-checked HTTP client),
//! `keys` (JWKS caching and rotation), `verify` (the token checks), `oidc` (the code flow),
//! `mapping` (claims to role, groups and declared claims). This file keeps [`Sso`], what
//! the instance builds from the file and the planes ask.
//!
//! Invariants: a token is trusted only after [`verify::verify`]; its `iss` read before that
//! only picks which configured issuer's keys and rules apply. Provider and key URLs are
//! reached only through the egress guard. No token, code, verifier or client secret is
//! logged or put in an error.

pub mod client;
pub mod keys;
pub mod mapping;
pub mod oidc;
pub mod settings;
pub mod verify;

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::auth::Role;
use crate::egress::EgressPolicy;
use client::{ClientError, SsoClient};
use keys::KeySet;
use oidc::OidcProvider;
use settings::{IssuerSettings, SsoSettings};
use verify::{Expect, TokenError};

/// An external bearer token, verified: who it says the caller is.
#[derive(Debug, Clone)]
pub struct BearerIdentity {
    /// The configured issuer's name.
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    /// Mapped from the claims; never above developer (an external token never makes an
    /// admin: the admin plane needs a session).
    pub role: Role,
    pub groups: Vec<String>,
    /// The issuer's declared claims the token carries.
    pub claims: BTreeMap<String, Value>,
}

struct Issuer {
    settings: IssuerSettings,
    keys: OnceCell<KeySet>,
    /// When discovery last failed: it is not tried again for [`keys::MIN_REFRESH`], so
    /// tokens naming an issuer whose provider is down do not each cost an outbound request.
    discovery_failed: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The instance's SSO: its providers and issuers (see the module doc).
pub struct Sso {
    /// `SLUICE_SSO_ONLY`: every local sign-in path is closed.
    pub only: bool,
    client: SsoClient,
    providers: Vec<OidcProvider>,
    issuers: Vec<Issuer>,
}

impl Sso {
    /// `instance_allow` is `SLUICE_EGRESS_ALLOW`; the file adds its own `egress_allow`.
    pub fn new(
        settings: SsoSettings,
        only: bool,
        instance_allow: &[ipnet::IpNet],
    ) -> Result<Sso, ClientError> {
        let policy = EgressPolicy::new(instance_allow, &settings.egress_allow);
        Ok(Sso {
            only,
            client: SsoClient::new(policy)?,
            providers: settings
                .providers
                .into_iter()
                .map(OidcProvider::new)
                .collect(),
            issuers: settings
                .issuers
                .into_iter()
                .map(|settings| Issuer {
                    settings,
                    keys: OnceCell::new(),
                    discovery_failed: std::sync::Mutex::new(None),
                })
                .collect(),
        })
    }

    /// No providers, no issuers, local sign-in open: what an instance without an SSO file
    /// has.
    pub fn disabled() -> Sso {
        Sso::new(SsoSettings::default(), false, &[]).expect("a client without settings builds")
    }

    pub fn client(&self) -> &SsoClient {
        &self.client
    }

    pub fn providers(&self) -> &[OidcProvider] {
        &self.providers
    }

    pub fn provider(&self, name: &str) -> Option<&OidcProvider> {
        self.providers.iter().find(|p| p.settings.name == name)
    }

    /// Whether bearer JWTs are accepted at all.
    pub fn has_issuers(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Every claim name some issuer declares (what `{{ user.claims.NAME }}` may name).
    pub fn declared_claims(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .issuers
            .iter()
            .flat_map(|i| i.settings.claims.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Verifies an external bearer JWT (see the module doc) at `now` (Unix seconds).
    pub async fn verify_bearer(&self, token: &str, now: i64) -> Result<BearerIdentity, TokenError> {
        let named = verify::unverified_issuer(token).ok_or(TokenError::Malformed)?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.settings.issuer == named)
            .ok_or(TokenError::WrongIssuer)?;
        let settings = &issuer.settings;
        let recently_failed = || {
            issuer
                .discovery_failed
                .lock()
                .map(|at| at.is_some_and(|at| at.elapsed() < keys::MIN_REFRESH))
                .unwrap_or(false)
        };
        let keys = issuer
            .keys
            .get_or_try_init(|| async {
                let url = match &settings.jwks_url {
                    Some(url) => url.clone(),
                    None if recently_failed() => {
                        return Err(TokenError::Key(keys::KeyError::Invalid(
                            "discovery failed a moment ago".into(),
                        )));
                    }
                    None => match self.discover_jwks(&settings.issuer).await {
                        Ok(url) => url,
                        Err(error) => {
                            if let Ok(mut at) = issuer.discovery_failed.lock() {
                                *at = Some(std::time::Instant::now());
                            }
                            return Err(error);
                        }
                    },
                };
                Ok::<_, TokenError>(KeySet::new(url))
            })
            .await?;
        let expect = Expect {
            issuer: &settings.issuer,
            audiences: &settings.audience,
            algorithms: &settings.algorithms,
            leeway_secs: settings.leeway_secs,
            now,
            client_id: None,
            nonce: None,
        };
        let claims = verify::verify(token, keys, &self.client, &expect).await?;
        let mapped = mapping::map(&settings.mapping, &claims);
        let role = match mapped.role {
            Role::Admin => Role::Developer,
            other => other,
        };
        Ok(BearerIdentity {
            issuer: settings.name.clone(),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            // Only a verified email: apps filter rows by `{{ user.email }}`, and issuers such
            // as Auth0 and Clerk sign emails nobody confirmed.
            email: claims
                .get(&settings.email_claim)
                .and_then(Value::as_str)
                .filter(|_| claims.get("email_verified") == Some(&Value::Bool(true)))
                .map(str::to_owned),
            role,
            groups: mapped.groups,
            claims: mapping::declared_claims(&settings.claims, &claims),
        })
    }

    async fn discover_jwks(&self, issuer: &str) -> Result<String, TokenError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self
            .client
            .get_json(&url)
            .await
            .map_err(|e| TokenError::Key(keys::KeyError::Fetch(e)))?;
        let invalid = |reason: &str| TokenError::Key(keys::KeyError::Invalid(reason.into()));
        // As for sign-in providers: the document must be this issuer's, and its keys served
        // over https (http only on loopback).
        if document.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(invalid("the discovery document names another issuer"));
        }
        let url = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no jwks_uri"))?;
        let parsed = url::Url::parse(url).map_err(|_| invalid("jwks_uri is not a URL"))?;
        if !settings::https_or_loopback(&parsed) {
            return Err(invalid("jwks_uri is not https"));
        }
        Ok(url.to_owned())
    }
}
