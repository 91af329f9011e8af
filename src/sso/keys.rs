//! A provider's signing keys (its JWKS), fetched from `jwks_uri` and cached.
//!
//! Keys are looked up by the token's `kid` (a token without one may use the set's only key of
//! its algorithm's type). An unknown `kid` refreshes the set once (a provider rotated its
//! keys), at most every [`MIN_REFRESH`], so a flood of tokens with made-up `kid`s costs the
//! provider one request per interval; the set is also refetched after [`MAX_AGE`].
//! Symmetric (`oct`) keys are never used, whatever the set holds: only the algorithms the
//! SSO file allows, which are all asymmetric, can verify.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use tokio::sync::Mutex;

use super::client::{ClientError, SsoClient};

/// Least time between two fetches of one key set.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);
/// A key set older than this is fetched again before use.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest `kid` looked up.
const MAX_KID_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the token names no key this provider publishes")]
    UnknownKey,
    #[error("cannot fetch the provider's keys: {0}")]
    Fetch(#[from] ClientError),
    #[error("the provider's key set is not valid: {0}")]
    Invalid(String),
}

struct Cached {
    keys: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// One provider's key set (see the module doc).
pub struct KeySet {
    url: String,
    cached: Mutex<Cached>,
}

impl KeySet {
    pub fn new(url: String) -> KeySet {
        KeySet {
            url,
            cached: Mutex::new(Cached {
                keys: Vec::new(),
                fetched: None,
            }),
        }
    }

    /// The key that verifies a token with this header's `kid` and `alg`.
    pub async fn key_for(
        &self,
        client: &SsoClient,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, KeyError> {
        if kid.is_some_and(|k| k.len() > MAX_KID_LEN || k.chars().any(char::is_control)) {
            return Err(KeyError::UnknownKey);
        }
        let mut cached = self.cached.lock().await;
        let stale = cached.fetched.is_none_or(|at| at.elapsed() > MAX_AGE);
        if stale {
            self.fetch(client, &mut cached).await?;
        }
        if let Some(key) = find(&cached.keys, kid, alg) {
            return Ok(key);
        }
        // Unknown: perhaps a rotation. Refetch, unless that was done a moment ago.
        if !stale && cached.fetched.is_none_or(|at| at.elapsed() >= MIN_REFRESH) {
            self.fetch(client, &mut cached).await?;
            if let Some(key) = find(&cached.keys, kid, alg) {
                return Ok(key);
            }
        }
        Err(KeyError::UnknownKey)
    }

    async fn fetch(&self, client: &SsoClient, cached: &mut Cached) -> Result<(), KeyError> {
        // Counted as a fetch even when it fails, so a failing provider is not hammered.
        cached.fetched = Some(Instant::now());
        let value = client.get_json(&self.url).await?;
        let set: JwkSet =
            serde_json::from_value(value).map_err(|e| KeyError::Invalid(e.to_string()))?;
        cached.keys = set.keys;
        Ok(())
    }
}

/// A usable key for `kid` and `alg`: same key type as the algorithm, meant for signatures,
/// and, where the key names an algorithm, that one.
fn find(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
    let usable = |jwk: &&Jwk| {
        let family_fits = matches!(
            (&jwk.algorithm, alg.family()),
            (AlgorithmParameters::RSA(_), AlgorithmFamily::Rsa)
                | (AlgorithmParameters::EllipticCurve(_), AlgorithmFamily::Ec)
                | (AlgorithmParameters::OctetKeyPair(_), AlgorithmFamily::Ed)
        );
        let use_fits = !matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
        );
        let alg_fits = jwk
            .common
            .key_algorithm
            .is_none_or(|named| key_algorithm_is(named, alg));
        family_fits && use_fits && alg_fits
    };
    let mut candidates = keys.iter().filter(usable);
    let jwk = match kid {
        Some(kid) => candidates.find(|jwk| jwk.common.key_id.as_deref() == Some(kid))?,
        None => {
            let first = candidates.next()?;
            if candidates.next().is_some() {
                return None;
            }
            first
        }
    };
    DecodingKey::from_jwk(jwk).ok()
}

fn key_algorithm_is(named: KeyAlgorithm, alg: Algorithm) -> bool {
    format!("{named:?}") == format!("{alg:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(json: serde_json::Value) -> Vec<Jwk> {
        serde_json::from_value::<JwkSet>(json).unwrap().keys
    }

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn keys_are_found_by_kid_and_type_only() {
        let keys = set(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "use": "sig", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
        ]}));
        assert!(find(&keys, Some("a"), Algorithm::RS256).is_some());
        assert!(find(&keys, Some("a"), Algorithm::PS256).is_some());
        // Wrong type for the algorithm, an encryption key, a symmetric key, an unknown kid.
        assert!(find(&keys, Some("a"), Algorithm::ES256).is_none());
        assert!(find(&keys, Some("enc"), Algorithm::RS256).is_none());
        assert!(find(&keys, Some("h"), Algorithm::RS256).is_none());
        assert!(find(&keys, Some("h"), Algorithm::HS256).is_none());
        assert!(find(&keys, Some("b"), Algorithm::RS256).is_none());
        // No kid: only when one key fits.
        assert!(find(&keys, None, Algorithm::RS256).is_some());
        let two = set(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": N, "e": "AQAB"},
        ]}));
        assert!(find(&two, None, Algorithm::RS256).is_none());
        // A key that names its algorithm is used for that one only.
        let named = set(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "alg": "RS512", "n": N, "e": "AQAB"},
        ]}));
        assert!(find(&named, Some("a"), Algorithm::RS256).is_none());
        assert!(find(&named, Some("a"), Algorithm::RS512).is_some());
    }
}
