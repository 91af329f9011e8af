//! Random tokens and what the store keeps instead of them: session ids, one-time tokens
//! (password reset, signup, email change), workspace API keys and MFA recovery codes.
//!
//! Owns the formats, the randomness (always the operating system's CSPRNG), the SHA-256
//! hashes stored in place of every token, and constant-time comparison of those hashes.
//!
//! API keys look like `slk_<id>_<secret>`. The fixed `slk_` prefix exists so that a key
//! pasted into a repository, a ticket or a log is recognisable by secret scanners (GitHub
//! secret scanning, gitleaks, trufflehog) and by people; the `<id>` part names the key in
//! listings and lets the store find the row without scanning, and is not secret.
//!
//! Invariants:
//! - Only hashes are stored or compared; a token exists in the clear only in the response
//!   that hands it to its owner. This module never logs.
//! - Tokens carry 256 bits from the operating system (`SysRng`); since they are not passwords, one unsalted SHA-256 is
//!   enough to make a stolen table of hashes useless.

use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::vault::SecretString;

/// Prefix of every API key; see the module documentation for why it exists.
pub const API_KEY_PREFIX: &str = "slk_";
/// Recovery codes issued at a time.
pub const RECOVERY_CODES: usize = 10;

/// Random bytes in a token, an API key's secret part.
const TOKEN_BYTES: usize = 32;
/// Length of 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;
/// Random bytes behind a public id (12 hex characters, 48 bits).
const PUBLIC_ID_BYTES: usize = 6;
const PUBLIC_ID_CHARS: usize = PUBLIC_ID_BYTES * 2;
/// Lowercase RFC 4648 base32: no 0/1/8/9, so codes read aloud or copied from paper do not
/// confuse O with 0 or l with 1.
const BASE32_LOWER: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters in a recovery code (50 bits), shown in two groups of five.
const RECOVERY_CODE_CHARS: usize = 10;

/// A freshly made API key: the full key to show once, and what the store keeps.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Public id (12 lowercase hex characters), also embedded in the key.
    pub id: String,
    /// The whole key, `slk_<id>_<secret>`; shown to its owner once, never stored.
    pub key: SecretString,
    /// `hash_token` of the whole key; what the store keeps.
    pub hash: String,
}

/// A new secret token: 32 random bytes, base64url without padding (43 characters).
/// Used for session ids and one-time links.
pub fn random_token() -> String {
    let mut bytes = Zeroizing::new([0u8; TOKEN_BYTES]);
    SysRng
        .try_fill_bytes(bytes.as_mut())
        .expect("the operating system's random source is readable");
    URL_SAFE_NO_PAD.encode(bytes.as_ref())
}

/// Lowercase hex SHA-256 of a token: the form the store keeps and looks up.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Compares two hashes (or any two strings) in time that does not depend on where they
/// first differ. Strings of different lengths are unequal.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A short random id (12 lowercase hex characters) that names a session or key in listings.
/// Not a secret: it grants nothing on its own.
pub fn public_id() -> String {
    let mut bytes = [0u8; PUBLIC_ID_BYTES];
    SysRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source is readable");
    hex(&bytes)
}

/// A new API key `slk_<id>_<secret>` with its id and hash.
pub fn new_api_key() -> NewApiKey {
    let id = public_id();
    let secret = Zeroizing::new(random_token());
    let key = SecretString::new(format!("{API_KEY_PREFIX}{id}_{}", secret.as_str()));
    let hash = hash_token(key.expose());
    NewApiKey { id, key, hash }
}

/// The id of a presented API key when it has exactly the shape [`new_api_key`] makes (prefix,
/// 12 lowercase hex characters, `_`, a base64url encoding of 32 bytes); otherwise `None`.
/// The shape check lets the caller refuse garbage without a store lookup; whether the key is
/// real is decided by comparing hashes.
pub fn api_key_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(API_KEY_PREFIX)?;
    // Every byte checked below is ASCII, so slicing at these offsets cannot split a char;
    // `get` refuses the non-ASCII case instead of panicking.
    let id = rest.get(..PUBLIC_ID_CHARS)?;
    let secret = rest.get(PUBLIC_ID_CHARS..)?.strip_prefix('_')?;
    let id_ok = id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !id_ok || secret.len() != TOKEN_CHARS {
        return None;
    }
    // Decoding checks the alphabet and that the final character carries no stray bits, so
    // exactly one string maps to each secret.
    let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(secret).ok()?);
    (decoded.len() == TOKEN_BYTES).then_some(id)
}

/// Ten new recovery codes, each 10 lowercase base32 characters (50 bits) shown as
/// `xxxxx-xxxxx`. The store keeps `hash_token(&normalize_recovery_code(code))` for each.
pub fn new_recovery_codes() -> Vec<String> {
    let mut codes: Vec<String> = Vec::with_capacity(RECOVERY_CODES);
    while codes.len() < RECOVERY_CODES {
        let code = recovery_code();
        // A repeat is vanishingly unlikely, but ten distinct codes is the promise.
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The canonical form of a typed recovery code: lower-cased, without spaces or dashes.
pub fn normalize_recovery_code(input: &str) -> String {
    input
        .chars()
        .filter(|&c| !c.is_whitespace() && c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn recovery_code() -> String {
    let mut bytes = Zeroizing::new([0u8; RECOVERY_CODE_CHARS]);
    SysRng
        .try_fill_bytes(bytes.as_mut())
        .expect("the operating system's random source is readable");
    let mut code = String::with_capacity(RECOVERY_CODE_CHARS + 1);
    for (i, byte) in bytes.iter().enumerate() {
        if i == RECOVERY_CODE_CHARS / 2 {
            code.push('-');
        }
        // 256 is a multiple of 32, so the low five bits are uniform.
        code.push(char::from(BASE32_LOWER[usize::from(byte & 31)]));
    }
    code
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_base64url(s: &str) -> bool {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn random_tokens_are_43_base64url_chars_and_distinct() {
        let tokens: HashSet<String> = (0..100).map(|_| random_token()).collect();
        assert_eq!(tokens.len(), 100);
        for token in &tokens {
            assert_eq!(token.len(), 43);
            assert!(is_base64url(token), "{token}");
            assert_eq!(URL_SAFE_NO_PAD.decode(token).unwrap().len(), 32);
        }
    }

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        let cases = [
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(hash_token(input), expected, "{input:?}");
        }
    }

    #[test]
    fn hashes_compare_exactly() {
        let h = hash_token("t");
        let cases = [
            (h.as_str(), h.as_str(), true),
            (h.as_str(), &h[..63], false),
            ("abc", "abd", false),
            ("abc", "ABC", false),
            ("", "", true),
        ];
        for (a, b, expected) in cases {
            assert_eq!(hashes_equal(a, b), expected, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn public_ids_are_12_lowercase_hex() {
        let ids: HashSet<String> = (0..100).map(|_| public_id()).collect();
        assert_eq!(ids.len(), 100);
        for id in &ids {
            assert_eq!(id.len(), 12);
            assert!(
                id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
    }

    #[test]
    fn new_api_keys_have_the_documented_shape() {
        let made = new_api_key();
        let key = made.key.expose();
        assert!(key.starts_with("slk_"));
        assert_eq!(key.len(), 4 + 12 + 1 + 43);
        assert_eq!(api_key_id(key), Some(made.id.as_str()));
        assert_eq!(made.hash, hash_token(key));
        assert!(
            !format!("{made:?}").contains(key),
            "Debug must not show the key"
        );
        assert_ne!(new_api_key().key.expose(), key);
    }

    #[test]
    fn api_key_shape_is_checked_exactly() {
        let secret = URL_SAFE_NO_PAD.encode([0xabu8; 32]);
        let good = format!("slk_0123456789ab_{secret}");
        assert_eq!(api_key_id(&good), Some("0123456789ab"));

        // A secret that itself contains `_` and `-` is still one secret.
        let dashed = format!("slk_0123456789ab_{}", URL_SAFE_NO_PAD.encode([0xffu8; 32]));
        assert!(dashed[17..].contains('_') || dashed[17..].contains('-'));
        assert_eq!(api_key_id(&dashed), Some("0123456789ab"));

        // Same length, but the final character carries non-zero padding bits.
        let mut stray_bits = good.clone();
        stray_bits.pop();
        stray_bits.push('B');

        let bad = [
            String::new(),
            "slk_".to_string(),
            good.replace("slk_", "SLK_"),
            good.replace("slk_", "sk_"),
            good.replace("0123456789ab", "0123456789AB"),
            good.replace("0123456789ab", "0123456789ag"),
            good.replace("0123456789ab", "0123456789a"),
            good.replace("0123456789ab_", "0123456789abc_"),
            good.replace("ab_", "ab-"),
            format!("{good}A"),
            good[..good.len() - 1].to_string(),
            good.replacen(&secret[..2], "+/", 1),
            format!("{good}="),
            format!(" {good}"),
            format!("slk_0123456789é_{secret}"),
            format!("slk_0123456789ab_{}", &secret[..42]) + "é",
            stray_bits,
        ];
        for presented in &bad {
            assert_eq!(api_key_id(presented), None, "{presented:?}");
        }
    }

    #[test]
    fn recovery_codes_are_ten_distinct_base32_pairs() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), RECOVERY_CODES);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-', "{code}");
            let normalized = normalize_recovery_code(code);
            assert_eq!(normalized.len(), 10);
            assert!(
                normalized.bytes().all(|b| BASE32_LOWER.contains(&b)),
                "{code}"
            );
        }
    }

    #[test]
    fn recovery_codes_normalise_as_typed() {
        let cases = [
            ("abcde-fghij", "abcdefghij"),
            ("ABCDE-FGHIJ", "abcdefghij"),
            (" abcde fghij ", "abcdefghij"),
            ("abcdefghij", "abcdefghij"),
            ("ab-cd-ef-gh-ij", "abcdefghij"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_recovery_code(input), expected, "{input:?}");
            assert_eq!(
                hash_token(&normalize_recovery_code(input)),
                hash_token(expected)
            );
        }
    }
}
