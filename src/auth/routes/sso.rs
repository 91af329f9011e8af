//! `/v1/auth/sso` and `/v1/auth/oidc/*`: the providers a sign-in page offers, the OpenID
//! Connect sign-in (start, callback), linking a provider to the signed-in account, and the
//! account's linked providers.
//!
//! A sign-in starts at `GET /v1/auth/oidc/{provider}/start`: a flow is stored under the
//! SHA-256 of a random `state` (with the `nonce` and the SHA-256 of a PKCE verifier), the
//! verifier goes into a short-lived flow cookie, and the browser is sent to the provider. The
//! callback takes the flow once (a replayed `state` finds nothing), checks the flow cookie
//! against it (a provider answer carried to another browser is refused), exchanges the code
//! with the verifier, verifies the ID token (`crate::sso::verify`) and opens a session, then
//! sends the browser to the flow's `return_to`, always a path on this instance.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Peer, Shared, caller, client_info, signed_in, with_cookie};
use crate::auth::service::{AuthError, FederatedSignIn};
use crate::auth::token;
use crate::http::{ApiError, json_response as json};
use crate::sso::mapping;
use crate::sso::oidc::{OidcError, OidcProvider, VerifiedLogin};
use crate::store::identities::SsoFlow;

/// How long a started sign-in may take at the provider.
const FLOW_TTL_SECS: i64 = 600;
/// Longest `return_to` and `login_hint` accepted.
const MAX_RETURN_TO: usize = 2048;
const MAX_LOGIN_HINT: usize = 256;

/// `GET /v1/auth/sso`: what a sign-in page offers.
pub(super) async fn providers(State(state): Shared) -> Response {
    let providers: Vec<serde_json::Value> = state
        .sso
        .providers()
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.settings.name,
                "label": p.settings.label,
                "start": format!("/v1/auth/oidc/{}/start", p.settings.name),
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "sso_only": state.sso.only,
            "providers": providers,
            "bearer_tokens": state.sso.has_issuers(),
        }),
    )
}

#[derive(Deserialize)]
pub(super) struct StartQuery {
    return_to: Option<String>,
    login_hint: Option<String>,
}

/// `GET /v1/auth/oidc/{provider}/start`: sends the browser to the provider.
pub(super) async fn start(
    State(state): Shared,
    Path(name): Path<String>,
    query: Result<Query<StartQuery>, QueryRejection>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| query_error("return_to, login_hint"))?;
    let client = client_info(peer.as_deref(), &headers);
    state.service.throttle(&client).await?;
    let provider = find_provider(&state, &name)?;
    let return_to = return_to(query.return_to.as_deref())?;
    let hint = match query.login_hint.as_deref() {
        Some(hint) if hint.len() > MAX_LOGIN_HINT || hint.chars().any(char::is_control) => {
            return Err(ApiError {
                param: Some("login_hint".into()),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    format!(
                        "`login_hint` must be at most {MAX_LOGIN_HINT} characters without control characters"
                    ),
                )
            });
        }
        other => other,
    };
    let (url, cookie) = begin(&state, provider, return_to, None, hint).await?;
    Ok(redirect(&url, cookie))
}

/// `POST /v1/auth/oidc/{provider}/link`: the signed-in owner (with a fresh password check)
/// links a provider account to this account; answers where to send the browser.
pub(super) async fn link(
    State(state): Shared,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, false).await?;
    state.service.require_fresh(&caller)?;
    let client = client_info(peer.as_deref(), &headers);
    state.service.throttle(&client).await?;
    let provider = find_provider(&state, &name)?;
    let (url, cookie) = begin(&state, provider, "/".into(), Some(caller.user.id), None).await?;
    let response = json(StatusCode::OK, &serde_json::json!({ "redirect": url }));
    Ok(with_cookie(response, cookie))
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: where the provider sends it, it must be this provider (a mix-up defence).
    iss: Option<String>,
}

/// `GET /v1/auth/oidc/{provider}/callback`: the provider's answer.
pub(super) async fn callback(
    State(state): Shared,
    Path(name): Path<String>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| query_error("code, state, iss, error"))?;
    let client = client_info(peer.as_deref(), &headers);
    state.service.throttle(&client).await?;
    let provider = find_provider(&state, &name)?;
    let presented = query
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad_request(
                "sso_flow_unknown",
                "the provider's answer carries no `state`",
            )
        })?;
    let flow = state
        .service
        .take_sso_flow(token::hash_token(presented))
        .await?
        .filter(|flow| flow.provider == provider.settings.name);
    let Some(flow) = flow else {
        state
            .service
            .record_sso_failure(&provider.settings.name, "sso_flow_unknown", &client)
            .await;
        return Err(bad_request(
            "sso_flow_unknown",
            "this sign-in is unknown, already finished or expired: start again",
        ));
    };
    let verifier = super::caller::read_cookie(&headers, state.cookie.flow_name())
        .filter(|v| token::hashes_equal(&token::hash_token(v), &flow.verifier_hash))
        .map(str::to_owned);
    let Some(verifier) = verifier else {
        state
            .service
            .record_sso_failure(&provider.settings.name, "sso_browser_mismatch", &client)
            .await;
        return Err(bad_request(
            "sso_browser_mismatch",
            "this sign-in was started in another browser (or its cookie expired): start again",
        ));
    };
    if query
        .iss
        .as_deref()
        .is_some_and(|iss| iss != provider.settings.issuer)
    {
        state
            .service
            .record_sso_failure(&provider.settings.name, "wrong_issuer", &client)
            .await;
        return Err(bad_request(
            "sso_wrong_issuer",
            "the answer comes from another identity provider than the one this sign-in started with",
        ));
    }
    if let Some(error) = query.error.as_deref() {
        state
            .service
            .record_sso_failure(&provider.settings.name, "provider_error", &client)
            .await;
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sso_provider_refused",
            format!("the identity provider did not sign you in ({code})"),
        ));
    }
    let code = query
        .code
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad_request("invalid_input", "the provider's answer carries no `code`"))?;
    let login = provider
        .finish(
            state.sso.client(),
            &redirect_uri(&state, provider)?,
            code,
            &verifier,
            &flow.nonce,
            state.service.now(),
        )
        .await;
    let login = match login {
        Ok(login) => login,
        Err(error) => {
            let reason = match &error {
                OidcError::Token(refused) => refused.reason(),
                OidcError::NoIdToken => "no_id_token",
                OidcError::CodeRejected(_) => "code_rejected",
                OidcError::Discovery(_) | OidcError::Unreachable(_) => "provider_unavailable",
            };
            tracing::warn!(provider = %provider.settings.name, reason, error = %error, "SSO sign-in failed");
            state
                .service
                .record_sso_failure(&provider.settings.name, reason, &client)
                .await;
            return Err(match error {
                OidcError::Discovery(_) | OidcError::Unreachable(_) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "sso_provider_unavailable",
                    "the identity provider cannot be reached or answered wrongly; try again later",
                ),
                _ => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "sso_token_refused",
                    "the identity provider's answer did not verify: start again",
                ),
            });
        }
    };
    let federated = federated_sign_in(provider, login);
    let response = match &flow.link_user {
        Some(user_id) => {
            // Linking: the same signed-in owner must still be here.
            let current = caller(&state, &headers).await?;
            if current.as_ref().map(|c| &c.user.id) != Some(user_id) {
                return Err(AuthError::Unauthenticated.into());
            }
            state
                .service
                .link_identity(user_id, federated, &client)
                .await?;
            redirect(&flow.return_to, state.cookie.clear_flow())
        }
        None => {
            let replaces = state.cookie.read(&headers).map(token::hash_token);
            let (_, session) = state
                .service
                .sign_in_federated(federated, &client, replaces)
                .await?;
            with_cookie(
                redirect(&flow.return_to, state.cookie.clear_flow()),
                state.cookie.set(&session),
            )
        }
    };
    Ok(response)
}

/// `GET /v1/auth/identities`: the providers linked to the caller's account.
pub(super) async fn identities(
    State(state): Shared,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let list = state.service.identities(&caller).await?;
    let view: Vec<serde_json::Value> = list
        .iter()
        .map(|i| {
            serde_json::json!({
                "provider": i.provider,
                "email": i.email,
                "linked_at": i.linked_at,
                "last_sign_in_at": i.last_sign_in_at,
            })
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "identities": view }),
    ))
}

/// `DELETE /v1/auth/identities/{provider}`: unlinks a provider (fresh auth).
pub(super) async fn unlink(
    State(state): Shared,
    Path(provider): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = signed_in(&state, &headers, true).await?;
    let client = client_info(peer.as_deref(), &headers);
    state
        .service
        .unlink_identity(&caller, provider, state.sso.only, &client)
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "status": "unlinked" }),
    ))
}

// ----- Shared steps ----------------------------------------------------------------------

fn find_provider<'a>(
    state: &'a super::AuthState,
    name: &str,
) -> Result<&'a OidcProvider, ApiError> {
    state
        .sso
        .provider(name)
        .ok_or_else(|| ApiError::not_found(format!("no SSO provider is named `{}`", shown(name))))
}

/// Stores a new flow and builds the provider URL and the flow cookie.
async fn begin(
    state: &super::AuthState,
    provider: &OidcProvider,
    return_to: String,
    link_user: Option<String>,
    login_hint: Option<&str>,
) -> Result<(String, HeaderValue), ApiError> {
    let (flow_state, nonce, verifier) = (
        token::random_token(),
        token::random_token(),
        token::random_token(),
    );
    let url = provider
        .authorization_url(
            state.sso.client(),
            &redirect_uri(state, provider)?,
            &flow_state,
            &nonce,
            &verifier,
            login_hint,
        )
        .await
        .map_err(|error| {
            tracing::warn!(provider = %provider.settings.name, error = %error, "SSO provider discovery failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "sso_provider_unavailable",
                "the identity provider cannot be reached or answered wrongly; try again later",
            )
        })?;
    state
        .service
        .begin_sso_flow(SsoFlow {
            state_hash: token::hash_token(&flow_state),
            provider: provider.settings.name.clone(),
            nonce,
            verifier_hash: token::hash_token(&verifier),
            return_to,
            link_user,
            expires_at: state.service.now() + FLOW_TTL_SECS,
        })
        .await?;
    Ok((url, state.cookie.set_flow(&verifier)))
}

/// The callback URL registered with the provider, from the configured public URL only.
fn redirect_uri(state: &super::AuthState, provider: &OidcProvider) -> Result<String, ApiError> {
    let base = state.public_url.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "feature_off",
            "SSO needs SLUICE_PUBLIC_URL",
        )
    })?;
    Ok(format!(
        "{base}/v1/auth/oidc/{}/callback",
        provider.settings.name
    ))
}

/// What a provider's settings make of a verified sign-in.
fn federated_sign_in(provider: &OidcProvider, login: VerifiedLogin) -> FederatedSignIn {
    let settings = &provider.settings;
    let mapped = mapping::map(&settings.mapping, &login.claims);
    let maps_role =
        settings.mapping.role_claim.is_some() || !settings.mapping.role_groups.is_empty();
    let amr = login
        .claims
        .get("amr")
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    FederatedSignIn {
        provider: login.provider,
        subject: login.subject,
        email: login.email,
        email_verified: login.email_verified,
        display_name: login.name,
        role: maps_role.then_some(mapped.role),
        new_account_role: mapped.role,
        groups: (settings.sync_groups && settings.mapping.groups_claim.is_some())
            .then_some(mapped.groups),
        amr,
        allowed_domains: settings.allowed_domains.clone(),
        create_users: settings.create_users,
        link_verified_email: settings.link_verified_email,
    }
}

/// `return_to`: a path on this instance (never another origin), `/` by default.
fn return_to(given: Option<&str>) -> Result<String, ApiError> {
    let Some(path) = given.filter(|p| !p.is_empty()) else {
        return Ok("/".into());
    };
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with("/\\")
        && path.len() <= MAX_RETURN_TO
        && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(path.into())
    } else {
        Err(ApiError {
            param: Some("return_to".into()),
            ..bad_request(
                "invalid_input",
                "`return_to` must be a path on this instance, such as /console",
            )
        })
    }
}

fn redirect(location: &str, cookie: HeaderValue) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookie(response, cookie)
}

/// A query string that does not parse (a repeated parameter, bad encoding).
fn query_error(known: &str) -> ApiError {
    bad_request(
        "invalid_query",
        &format!("the query string is malformed or repeats a parameter (known: {known})"),
    )
}

fn bad_request(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message.to_owned())
}

/// A name as errors quote it: at most 40 characters, printable.
fn shown(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_a_local_path_only() {
        assert_eq!(return_to(None).unwrap(), "/");
        assert_eq!(return_to(Some("/console?x=1")).unwrap(), "/console?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "evil",
            "/a\r\nSet-Cookie: x=1",
            "javascript:alert(1)",
            "/caf\u{e9}",
            "/a b",
        ] {
            assert!(return_to(Some(bad)).is_err(), "{bad}");
        }
    }
}
