//! OpenID Connect sign-in with one provider: discovery, the authorization request (code
//! flow with PKCE S256, `state` and `nonce`), the code exchange, and the ID token's checks.
//!
//! The discovery document is read on first use and kept; its `issuer` must be the
//! configured one exactly (OpenID Connect Discovery 4.3), and a provider that lists PKCE
//! methods must list S256. The ID token comes from the token endpoint over TLS (http only
//! to a loopback provider) and is verified anyway, in full ([`super::verify`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::client::{ClientError, SsoClient};
use super::keys::KeySet;
use super::settings::ProviderSettings;
use super::verify::{self, Expect, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider's discovery document: {0}")]
    Discovery(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(#[from] ClientError),
    #[error("the provider's token answer has no id_token")]
    NoIdToken,
    /// The token endpoint refused the code (expired, already used, another client's).
    #[error("the provider refused the code ({0})")]
    CodeRejected(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// What discovery says, as far as sign-in needs it.
#[derive(Debug, Clone)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    /// `client_secret_post` when the provider lists it and not `client_secret_basic`.
    secret_in_body: bool,
}

/// One configured provider, with its discovery and keys once read.
pub struct OidcProvider {
    pub settings: ProviderSettings,
    discovery: OnceCell<(Discovery, KeySet)>,
}

/// The verified outcome of a sign-in with a provider.
#[derive(Debug, Clone)]
pub struct VerifiedLogin {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    /// True only when the provider said so (`email_verified: true`).
    pub email_verified: bool,
    pub name: Option<String>,
    /// The ID token's claims, for role and group mapping.
    pub claims: Map<String, Value>,
}

/// The PKCE challenge (S256) of a verifier.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OidcProvider {
    pub fn new(settings: ProviderSettings) -> OidcProvider {
        OidcProvider {
            settings,
            discovery: OnceCell::new(),
        }
    }

    async fn discovered(&self, client: &SsoClient) -> Result<&(Discovery, KeySet), OidcError> {
        self.discovery
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.settings.issuer.trim_end_matches('/')
                );
                let document = client.get_json(&url).await?;
                let text = |name: &str| {
                    document
                        .get(name)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| OidcError::Discovery(format!("no `{name}`")))
                };
                if text("issuer")? != self.settings.issuer {
                    return Err(OidcError::Discovery(format!(
                        "its issuer is not `{}`",
                        self.settings.issuer
                    )));
                }
                let list = |name: &str| -> Option<Vec<String>> {
                    document.get(name).and_then(Value::as_array).map(|items| {
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                };
                if list("code_challenge_methods_supported")
                    .is_some_and(|methods| !methods.iter().any(|m| m == "S256"))
                {
                    return Err(OidcError::Discovery(
                        "the provider does not support PKCE with S256".into(),
                    ));
                }
                let methods = list("token_endpoint_auth_methods_supported").unwrap_or_default();
                let secret_in_body = methods.iter().any(|m| m == "client_secret_post")
                    && !methods.iter().any(|m| m == "client_secret_basic");
                let endpoint = |name: &str| -> Result<String, OidcError> {
                    let url = text(name)?;
                    let parsed = url::Url::parse(&url)
                        .map_err(|_| OidcError::Discovery(format!("`{name}` is not a URL")))?;
                    if !super::settings::https_or_loopback(&parsed) {
                        return Err(OidcError::Discovery(format!("`{name}` is not https")));
                    }
                    Ok(url)
                };
                let discovery = Discovery {
                    authorization_endpoint: endpoint("authorization_endpoint")?,
                    token_endpoint: endpoint("token_endpoint")?,
                    secret_in_body,
                };
                Ok((discovery, KeySet::new(endpoint("jwks_uri")?)))
            })
            .await
    }

    /// Where to send the browser to sign in.
    pub async fn authorization_url(
        &self,
        client: &SsoClient,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        login_hint: Option<&str>,
    ) -> Result<String, OidcError> {
        let (discovery, _) = self.discovered(client).await?;
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|_| OidcError::Discovery("`authorization_endpoint` is not a URL".into()))?;
        {
            let scope = self.settings.scopes.join(" ");
            let challenge = challenge(verifier);
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = login_hint {
                query.append_pair("login_hint", hint);
            }
        }
        Ok(url.into())
    }

    /// Exchanges the code for tokens and verifies the ID token against `nonce`.
    pub async fn finish(
        &self,
        client: &SsoClient,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<VerifiedLogin, OidcError> {
        let (discovery, keys) = self.discovered(client).await?;
        let settings = &self.settings;
        let secret = settings.client_secret.as_ref().map(|s| s.expose());
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("client_id", settings.client_id.as_str()),
        ];
        let basic = match secret {
            Some(secret) if discovery.secret_in_body => {
                form.push(("client_secret", secret));
                None
            }
            Some(secret) => Some((settings.client_id.as_str(), secret)),
            None => None,
        };
        let answer = client
            .post_form(&discovery.token_endpoint, &form, basic)
            .await
            .map_err(|error| match error {
                ClientError::Status { status, detail, .. } if (400..500).contains(&status) => {
                    OidcError::CodeRejected(detail)
                }
                other => OidcError::Unreachable(other),
            })?;
        let id_token = answer
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or(OidcError::NoIdToken)?;
        let audiences = [settings.client_id.clone()];
        let expect = Expect {
            issuer: &settings.issuer,
            audiences: &audiences,
            algorithms: &settings.algorithms,
            leeway_secs: settings.leeway_secs,
            now,
            client_id: Some(&settings.client_id),
            nonce: Some(nonce),
        };
        let claims = verify::verify(id_token, keys, client, &expect).await?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        // Only a JSON `true` (or the string "true" some providers send) counts as verified;
        // a missing claim is not.
        let email_verified = match claims.get("email_verified") {
            Some(Value::Bool(verified)) => *verified,
            Some(Value::String(text)) => text == "true",
            _ => false,
        };
        Ok(VerifiedLogin {
            provider: settings.name.clone(),
            subject: text("sub").unwrap_or_default(),
            email: text("email"),
            email_verified,
            name: text("name"),
            claims,
        })
    }
}
