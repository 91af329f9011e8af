//! Accounts, sessions, MFA and API keys: who is asking.
//!
//! - [`password`]: argon2id hashing and the password policy.
//! - [`totp`]: RFC 6238 codes and the otpauth URI for authenticator apps.
//! - [`token`]: random session ids, one-time tokens, API keys and recovery codes, and the
//!   hashes the store keeps instead of them.
//! - [`mail`]: outgoing mail over SMTP (password reset, signup, email change).
//! - [`service`]: the rules (lockout, session lifetimes, fresh auth, MFA for admins),
//!   independent of HTTP.
//! - [`routes`]: `/v1/auth/*` and the [`Caller`](service::Caller) extractor the view plane uses.
//!
//! This file holds the plain data every layer may use ([`Role`], [`ClientInfo`], email
//! normalisation); the records and the interface of the metadata store are in
//! [`crate::store`], the audit log in [`crate::audit`].
//!
//! This file itself is bottom-layer data every layer may use: [`Role`], the caller's
//! [`Identity`] and [`Caller`], an API key's [`ApiKeyScope`] and a request's [`ClientInfo`].
//!
//! This module never logs or stores a password, session id, token or code in the clear.

pub mod mail;
pub mod pages;
pub mod password;
pub mod routes;
pub mod service;
pub mod token;
pub mod totp;

use serde::{Deserialize, Serialize};

/// A user's role in the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the instance: users, roles, members, audit log. Must use MFA.
    Admin,
    /// Builds apps: may create API keys.
    Developer,
    /// Uses apps.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a caller is: what `{{ user.* }}` binds and what policy checks. Deliberately slim:
/// never the password hash, the sealed TOTP secret or lockout state. `Debug` shows the id
/// and role only (an email address is personal data and stays out of logs).
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub mfa_enabled: bool,
    /// An external bearer token's declared claims (`{{ user.claims.NAME }}`); empty for
    /// local users.
    pub claims: std::collections::BTreeMap<String, serde_json::Value>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An authenticated caller: who, and how they proved it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Identity,
    pub via: CallerVia,
}

/// How the caller proved who they are. `Debug` never shows the session's token hash.
#[derive(Clone)]
pub enum CallerVia {
    Session {
        /// Hex SHA-256 of the session token (the store's key for the session).
        token_hash: String,
        public_id: String,
        created_at: i64,
        authenticated_at: i64,
    },
    ApiKey {
        id: String,
        scope: ApiKeyScope,
    },
    /// A bearer JWT from an issuer of the SSO file (`issuer` is its configured name). Not a
    /// stored account: nothing to sign out of, no account to manage.
    Token {
        issuer: String,
    },
}

impl std::fmt::Debug for CallerVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallerVia::Session { public_id, .. } => f
                .debug_struct("Session")
                .field("public_id", public_id)
                .finish_non_exhaustive(),
            CallerVia::ApiKey { id, scope } => f
                .debug_struct("ApiKey")
                .field("id", id)
                .field("scope", scope)
                .finish(),
            CallerVia::Token { issuer } => f.debug_struct("Token").field("issuer", issuer).finish(),
        }
    }
}

impl Caller {
    /// True for an admin without MFA: such a session may only enrol (and sign out).
    pub fn must_enrol_mfa(&self) -> bool {
        self.user.role == Role::Admin && !self.user.mfa_enabled
    }

    /// The API key's scope, when the caller is an API key.
    pub fn api_key_scope(&self) -> Option<&ApiKeyScope> {
        match &self.via {
            CallerVia::ApiKey { scope, .. } => Some(scope),
            CallerVia::Session { .. } | CallerVia::Token { .. } => None,
        }
    }

    pub fn session_hash(&self) -> Option<&str> {
        match &self.via {
            CallerVia::Session { token_hash, .. } => Some(token_hash),
            CallerVia::ApiKey { .. } | CallerVia::Token { .. } => None,
        }
    }
}

/// The apps and queries an API key may run. Empty lists mean nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyScope {
    /// Whole apps: every query in them.
    #[serde(default)]
    pub apps: Vec<String>,
    /// Single queries, as `app/query`.
    #[serde(default)]
    pub queries: Vec<String>,
}

impl ApiKeyScope {
    pub fn allows(&self, app: &str, query: &str) -> bool {
        self.apps.iter().any(|a| a == app)
            || self.queries.iter().any(|q| {
                q.split_once('/')
                    .is_some_and(|(qa, qq)| qa == app && qq == query)
            })
    }
}

/// Where a request came from, for throttling and the audit log.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: String,
}

impl ClientInfo {
    /// The user agent as a session or audit event keeps it: its first 256 characters.
    pub fn stored_user_agent(&self) -> String {
        self.user_agent.chars().take(256).collect()
    }
}

/// Normalises an email address for storage and lookup: trimmed and lower-cased. Returns
/// `None` when it is not shaped like `local@domain.tld` or is longer than 254 bytes.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
        return None;
    }
    Some(email)
}

/// The domain part of a normalised email.
pub fn email_domain(email: &str) -> &str {
    email.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_or_are_refused() {
        let cases = [
            (" Alice@Example.COM ", Some("alice@example.com")),
            ("bob+tag@sub.example.org", Some("bob+tag@sub.example.org")),
            ("no-at-sign.example.com", None),
            ("@example.com", None),
            ("a@localhost", None),
            ("a@.example.com", None),
            ("a@example..com", None),
            ("a b@example.com", None),
            ("a@b@example.com", None),
            ("a\r\n@example.com", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_email(input).as_deref(), expected, "{input:?}");
        }
        assert_eq!(email_domain("x@corp.example"), "corp.example");
    }

    #[test]
    fn a_caller_debug_shows_no_email_token_hash_or_secret() {
        let caller = Caller {
            user: Identity {
                id: "u-1".into(),
                email: "CANARY-EMAIL@example.com".into(),
                role: Role::Admin,
                groups: vec!["ops".into()],
                mfa_enabled: true,
                claims: Default::default(),
            },
            via: CallerVia::Session {
                token_hash: "CANARY-HASH".into(),
                public_id: "p-1".into(),
                created_at: 1,
                authenticated_at: 2,
            },
        };
        let shown = format!("{caller:?} {caller:#?}");
        assert!(shown.contains("u-1") && shown.contains("p-1"), "{shown}");
        assert!(!shown.contains("CANARY"), "{shown}");
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Admin, Role::Developer, Role::Viewer] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
