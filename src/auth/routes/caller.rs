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
        let name = self.name();
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
