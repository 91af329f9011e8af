//! Verifying a JWT: an ID token from a provider, or a bearer token from an issuer.
//!
//! The order is fixed and fails closed: the header must parse and name an allowed algorithm
//! (the SSO file allows asymmetric ones only, so `none` and HMAC-with-the-public-key never
//! verify); the key comes from the issuer's own key set, by `kid` ([`KeySet`]), never from
//! the token (`jku`, `x5u`, `jwk` and `x5c` headers are ignored); the signature is checked
//! by jsonwebtoken (aws-lc-rs); then the claims: `iss` exactly, `aud` naming an accepted
//! audience, `azp` when required, `exp`, `nbf` and `iat` against the injected clock with
//! the configured skew, `sub` present, and the `nonce` when one is expected.

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::client::SsoClient;
use super::keys::{KeyError, KeySet};

/// Why a token was refused. The names go to the audit log; clients get one answer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not the expected one")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token's authorized party is not this client")]
    WrongAuthorizedParty,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token's nonce is not this sign-in's")]
    WrongNonce,
}

impl TokenError {
    /// A short name for the audit log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::Key(KeyError::UnknownKey) => "unknown_key",
            TokenError::Key(_) => "key_set_unavailable",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongAuthorizedParty => "wrong_azp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::WrongNonce => "wrong_nonce",
        }
    }
}

/// What a token must show.
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// The token's `aud` must name one of these.
    pub audiences: &'a [String],
    pub algorithms: &'a [Algorithm],
    pub leeway_secs: u64,
    /// Unix seconds, from the instance clock.
    pub now: i64,
    /// ID tokens: `iat` is required, and `azp` must be this client when `aud` names others.
    pub client_id: Option<&'a str>,
    /// ID tokens: the sign-in's nonce.
    pub nonce: Option<&'a str>,
}

/// The issuer named by a token, read WITHOUT verification: only to choose which configured
/// issuer's keys and rules verify it. Never trusted for anything else.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let claims: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode(token).ok()?.claims;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// Verifies `token` (see the module doc) and returns its claims.
pub async fn verify(
    token: &str,
    keys: &KeySet,
    client: &SsoClient,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, TokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !expect.algorithms.contains(&header.alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let key = keys
        .key_for(client, header.kid.as_deref(), header.alg)
        .await?;
    // Signature and algorithm by jsonwebtoken; every claim below, against the instance
    // clock (jsonwebtoken would read the system clock).
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(
        |e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
            _ => TokenError::Malformed,
        },
    )?;
    check_claims(&data.claims, expect)?;
    Ok(data.claims)
}

/// The claim checks, on claims whose signature verified.
pub fn check_claims(claims: &Map<String, Value>, expect: &Expect<'_>) -> Result<(), TokenError> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == expect.issuer => {}
        Some(_) => return Err(TokenError::WrongIssuer),
        None => return Err(TokenError::MissingClaim("iss")),
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => return Err(TokenError::MissingClaim("aud")),
    };
    if !audiences
        .iter()
        .any(|aud| expect.audiences.iter().any(|a| a == aud))
    {
        return Err(TokenError::WrongAudience);
    }
    if let Some(client_id) = expect.client_id {
        // OpenID Connect Core 3.1.3.7: with several audiences, `azp` must be this client;
        // when present, it must be this client anyway.
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp == client_id => {}
            Some(_) => return Err(TokenError::WrongAuthorizedParty),
            None if audiences.len() > 1 => return Err(TokenError::WrongAuthorizedParty),
            None => {}
        }
    }
    let leeway = expect.leeway_secs as i64;
    let time = |name: &'static str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
    match time("exp") {
        Some(exp) if expect.now > exp.saturating_add(leeway) => return Err(TokenError::Expired),
        Some(_) => {}
        None => return Err(TokenError::MissingClaim("exp")),
    }
    if time("nbf").is_some_and(|nbf| expect.now.saturating_add(leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    match time("iat") {
        Some(iat) if expect.now.saturating_add(leeway) < iat => {
            return Err(TokenError::IssuedInFuture);
        }
        None if expect.client_id.is_some() => return Err(TokenError::MissingClaim("iat")),
        _ => {}
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(TokenError::MissingClaim("sub"));
    }
    if let Some(nonce) = expect.nonce {
        let given = claims.get("nonce").and_then(Value::as_str);
        let same = given.is_some_and(|given| {
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), nonce.as_bytes()).into()
        });
        if !same {
            return Err(TokenError::WrongNonce);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect<'a>(audiences: &'a [String], nonce: Option<&'a str>) -> Expect<'a> {
        Expect {
            issuer: "https://idp.example",
            audiences,
            algorithms: &[Algorithm::RS256],
            leeway_secs: 60,
            now: 1_000_000,
            client_id: Some("sluice"),
            nonce,
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": "https://idp.example", "aud": "sluice", "sub": "u1",
            "exp": 1_000_300, "iat": 999_990, "nonce": "n1"
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(k);
            } else {
                base[k] = v.clone();
            }
        }
        base.as_object().unwrap().clone()
    }

    #[test]
    fn each_claim_check_refuses_on_its_own() {
        let aud = ["sluice".to_owned()];
        let ok = expect(&aud, Some("n1"));
        assert!(check_claims(&claims(json!({})), &ok).is_ok());
        let cases: Vec<(Value, &str)> = vec![
            (json!({"iss": "https://idp.example/"}), "wrong_issuer"),
            (json!({"iss": null}), "missing_claim"),
            (json!({"aud": "other"}), "wrong_audience"),
            (json!({"aud": ["other", "x"]}), "wrong_audience"),
            (json!({"aud": ["sluice", "other"]}), "wrong_azp"),
            (
                json!({"aud": ["sluice", "other"], "azp": "other"}),
                "wrong_azp",
            ),
            (json!({"azp": "other"}), "wrong_azp"),
            (json!({"exp": 1_000_000 - 61}), "expired"),
            (json!({"nbf": 1e300, "exp": 1e300}), "not_yet_valid"),
            (json!({"exp": null}), "missing_claim"),
            (json!({"nbf": 1_000_061}), "not_yet_valid"),
            (json!({"iat": 1_000_061}), "issued_in_future"),
            (json!({"iat": null}), "missing_claim"),
            (json!({"sub": ""}), "missing_claim"),
            (json!({"nonce": "n2"}), "wrong_nonce"),
            (json!({"nonce": null}), "wrong_nonce"),
        ];
        for (extra, reason) in cases {
            let refused = check_claims(&claims(extra.clone()), &ok).unwrap_err();
            assert_eq!(refused.reason(), reason, "{extra}");
        }
        // Within the skew, and several audiences with azp naming this client.
        assert!(check_claims(&claims(json!({"exp": 1_000_000 - 59})), &ok).is_ok());
        assert!(
            check_claims(
                &claims(json!({"aud": ["sluice", "o"], "azp": "sluice"})),
                &ok
            )
            .is_ok()
        );
    }
}
