//! Who is asking: the session cookie ([`CookieSettings`]: its name, attributes and how it is
//! read), [`caller`] (an API key, else the session cookie), which every plane uses, and
//! [`client_info`] (the client's address and user agent).
//!
//! Owns the cookie's shape. Must never log or echo a cookie value or a key, and never treat
//! a bearer credential that does not check out as anonymous (only a stale cookie is).

use axum::http::{HeaderMap, HeaderValue, header};

use super::AuthState;
use crate::auth::service::{AuthError, NewSession};
use crate::auth::{Caller, ClientInfo};
use crate::config::SameSite;
use crate::http::ApiError;
use crate::policy::client_ip::ClientIp;

/// Cookie settings derived from the configuration.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub secure: bool,
    pub same_site: SameSite,
}

impl CookieSettings {
    pub fn name(&self) -> &'static str {
        if self.secure {
            "__Host-sluice_session"
        } else {
            "sluice_session"
        }
    }

    fn attributes(&self) -> String {
        let same_site = match self.same_site {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!("Path=/; HttpOnly; SameSite={same_site}{secure}")
    }

    /// `Set-Cookie` for a new session.
    pub fn set(&self, session: &NewSession) -> HeaderValue {
        let value = format!(
            "{}={}; {}",
            self.name(),
            session.token.expose(),
            self.attributes()
        );
        HeaderValue::from_str(&value).expect("tokens are base64url")
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear(&self) -> HeaderValue {
        let value = format!("{}=; {}; Max-Age=0", self.name(), self.attributes());
        HeaderValue::from_str(&value).expect("static cookie text")
    }

    /// The session token the request carries, if any.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        read_cookie(headers, self.name())
    }

    /// The SSO flow cookie's name: it carries the PKCE verifier of the sign-in this browser
    /// started, and binds the provider's answer to this browser.
    pub fn flow_name(&self) -> &'static str {
        if self.secure {
            "__Host-sluice_sso"
        } else {
            "sluice_sso"
        }
    }

    /// `Set-Cookie` for an SSO flow: SameSite=Lax (the provider's redirect back is a
    /// cross-site navigation), ten minutes, HttpOnly.
    pub fn set_flow(&self, verifier: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{}={verifier}; Path=/; HttpOnly; SameSite=Lax; Max-Age=600{secure}",
            self.flow_name()
        );
        HeaderValue::from_str(&value).expect("verifiers are base64url")
    }

    /// `Set-Cookie` that removes the SSO flow cookie.
    pub fn clear_flow(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
            self.flow_name()
        );
        HeaderValue::from_str(&value).expect("static cookie text")
    }
}

/// The value of the cookie `name`, if the request carries a non-empty one.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Who is asking: an API key (`Authorization: Bearer slk_...`), else the session cookie.
/// A bearer credential that does not check out is an error (401); a stale cookie is treated
/// as no cookie, so public apps keep working for a browser with an old one.
pub async fn caller(state: &AuthState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let bearer = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        return match bearer {
            Some(key) if key.starts_with(crate::auth::token::API_KEY_PREFIX) => {
                Ok(Some(state.service.authenticate_api_key(key).await?))
            }
            Some(token) if state.sso.has_issuers() && looks_like_jwt(token) => {
                bearer_token(state, token).await.map(Some)
            }
            _ if state.sso.has_issuers() => Err(ApiError::unauthenticated(
                "the Authorization header must be `Bearer slk_...` (a Sluice API key) or `Bearer <JWT>` from a configured issuer",
            )),
            _ => Err(ApiError::unauthenticated(
                "the Authorization header must be `Bearer slk_...` (a Sluice API key)",
            )),
        };
    }
    let Some(token) = state.cookie.read(headers) else {
        return Ok(None);
    };
    match state.service.authenticate_session(token).await {
        Ok(caller) => Ok(Some(caller)),
        Err(AuthError::Unauthenticated) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// Three base64url parts (a JWS in compact form), within a sane length.
fn looks_like_jwt(token: &str) -> bool {
    token.len() <= 16 * 1024
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// An external bearer JWT, verified by its issuer's rules, as a caller. Its id is
/// `<issuer name>:<sub>`, so it can never be a local user's (whose ids are UUIDs) nor
/// another issuer's. Every refusal is the same 401; the reason goes to the server log.
async fn bearer_token(state: &AuthState, token: &str) -> Result<Caller, ApiError> {
    match state.sso.verify_bearer(token, state.service.now()).await {
        Ok(verified) => Ok(Caller {
            user: crate::auth::Identity {
                id: format!("{}:{}", verified.issuer, verified.subject),
                email: verified.email.unwrap_or_default(),
                role: verified.role,
                groups: verified.groups,
                mfa_enabled: false,
                claims: verified.claims,
            },
            via: crate::auth::CallerVia::Token {
                issuer: verified.issuer,
            },
        }),
        Err(refused) => {
            tracing::info!(reason = refused.reason(), "Bearer token refused");
            Err(ApiError::unauthenticated(
                "the bearer token was refused (signature, issuer, audience or lifetime)",
            ))
        }
    }
}

/// The client's address (as the edge resolved it) and user agent.
pub fn client_info(client: Option<&ClientIp>, headers: &HeaderMap) -> ClientInfo {
    ClientInfo {
        ip: client.map(|c| c.0.to_string()).unwrap_or_default(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}
