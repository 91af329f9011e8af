//! Strength rules for the instance password and salt, and fresh values for `sluice keygen`.
//!
//! Pure functions: no IO, no logging. Messages name the variable and the rule, never the value.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng;
use rand::rngs::SysRng;

use super::VaultError;

/// The placeholder password shipped in `docker.env.example`; refused by [`check_strength`].
pub const PLACEHOLDER_PASSWORD: &str = "change-me-run-sluice-keygen";
/// The placeholder salt shipped in `docker.env.example`; refused by [`check_strength`].
pub const PLACEHOLDER_SALT: &str = "change-me-too-run-sluice-keygen";

const PASSWORD_VAR: &str = "SLUICE_ENCRYPTION_PASSWORD";
const SALT_VAR: &str = "SLUICE_ENCRYPTION_SALT";
const MIN_PASSWORD_CHARS: usize = 32;
const MIN_SALT_CHARS: usize = 16;
const PASSWORD_BYTES: usize = 32;
const SALT_BYTES: usize = 16;

/// Values that are refused whole (compared case-insensitively).
const PLACEHOLDERS: &[&str] = &[
    PLACEHOLDER_PASSWORD,
    PLACEHOLDER_SALT,
    "changeme",
    "change-me",
    "change_me",
    "password",
    "secret",
    "example",
];
/// Fragments that mark a value as a template someone forgot to fill in.
const PLACEHOLDER_FRAGMENTS: &[&str] = &["changeme", "change-me", "change_me", "replace", "your-"];

/// Refuses an instance password or salt that is missing, short, a placeholder, trivially
/// repetitive, or the same as the other. `serve` calls this before deriving the key.
pub fn check_strength(password: &str, salt: &str) -> Result<(), VaultError> {
    check_one(PASSWORD_VAR, password, MIN_PASSWORD_CHARS)?;
    check_one(SALT_VAR, salt, MIN_SALT_CHARS)?;
    if password == salt {
        return Err(weak(SALT_VAR, "is the same as SLUICE_ENCRYPTION_PASSWORD"));
    }
    Ok(())
}

fn check_one(var: &str, value: &str, min_chars: usize) -> Result<(), VaultError> {
    if value.is_empty() {
        return Err(weak(var, "is empty"));
    }
    if is_placeholder(value) {
        return Err(weak(var, "is a placeholder value"));
    }
    let chars = value.chars().count();
    if chars < min_chars {
        return Err(weak(
            var,
            &format!("is too short ({chars} characters, need at least {min_chars})"),
        ));
    }
    let mut rest = value.chars();
    let first = rest.next();
    if rest.all(|c| Some(c) == first) {
        return Err(weak(var, "is one character repeated"));
    }
    if value.trim() != value {
        // A stray space or newline usually comes from quoting in an env file, and would make
        // one deployment derive a different key from another with the "same" value.
        return Err(weak(var, "has leading or trailing whitespace"));
    }
    Ok(())
}

fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDERS.iter().any(|p| lower == *p)
        || PLACEHOLDER_FRAGMENTS.iter().any(|f| lower.contains(f))
}

fn weak(var: &str, reason: &str) -> VaultError {
    VaultError::Weak(format!(
        "{var} {reason}; run `sluice keygen` to generate a strong password and salt"
    ))
}

/// Fresh instance values: a password from 32 random bytes and a salt from 16, both base64url
/// without padding (43 and 22 characters), suitable for an env file without quoting.
pub fn keygen() -> (String, String) {
    loop {
        let password = random_token(PASSWORD_BYTES);
        let salt = random_token(SALT_BYTES);
        // Random output matching a placeholder fragment is astronomically unlikely, but the
        // promise is that keygen's values always pass, so check rather than assume.
        if check_strength(&password, &salt).is_ok() {
            return (password, salt);
        }
    }
}

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SysRng
        .try_fill_bytes(&mut buf)
        .expect("the operating system's random source is readable");
    URL_SAFE_NO_PAD.encode(buf)
}
