//! Password hashing (argon2id) and the password policy.
//!
//! Owns the PHC hash format the store keeps, the cost parameters, the constant-cost path for
//! unknown accounts ([`verify_dummy`]) and the NIST SP 800-63B rules a new password must
//! meet ([`check_policy`]).
//!
//! Invariants:
//! - A password is never logged, stored, returned or put into an error; only its argon2id
//!   hash leaves this module. [`PolicyError`] messages name the rule, never the password.
//! - A failed login costs the same whether or not the account exists: callers run
//!   [`verify_dummy`] when there is no hash to verify against.
//! - No composition rules (NIST 800-63B 5.1.1.2): length, the common-password list and the
//!   user's own email are the only checks.

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

/// Longest password accepted, in Unicode code points. Long enough for any passphrase or
/// password manager output, short enough that nobody mistakes the field for a file upload.
pub const MAX_LENGTH: usize = 128;

/// OWASP's argon2id recommendation (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// The shortest local part of an email that counts as "contains your email": shorter ones
/// ("jo", "al") occur inside ordinary words and would refuse good passwords.
const MIN_LOCAL_PART: usize = 4;

/// Bundled list of common passwords; see the header of the file for its source.
const COMMON_PASSWORDS: &str = include_str!("common_passwords.txt");

/// Why a new password is refused. Every message is safe to show to the user and to log:
/// none of them contains the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the password must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("the password must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("the password is on the list of commonly used passwords; choose another")]
    Common,
    #[error("the password must not contain your email address")]
    ContainsEmail,
}

/// The hasher with the fixed cost parameters. Verification reads the parameters from the
/// stored PHC string instead, so hashes made with older parameters keep verifying.
fn hasher() -> Argon2<'static> {
    // The constants are within argon2's limits, so this cannot fail; fall back to the crate
    // default (the same OWASP values in argon2 0.5 and 0.6) rather than panic.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id and a fresh random 16-byte salt; returns the PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(password: &str) -> String {
    // The salt comes from the operating system's random source. Hashing fails only for
    // out-of-range parameters or salt, which are fixed here, or for an unreadable random
    // source; no password (argon2 accepts up to 4 GiB) can make it fail.
    hasher()
        .hash_password(password.as_bytes())
        .expect("argon2id with fixed valid parameters and an OS salt does not fail")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`. A malformed hash, or one that is not
/// argon2id, is a mismatch rather than an error: the caller treats both as a failed login.
pub fn verify_password(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // Refuse argon2i/argon2d and anything else a tampered row might name: the store only
    // ever holds hashes made by `hash_password`.
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    hasher()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Runs one verification against a fixed hash made with the same parameters, and discards
/// the result. Called when a login names an account that does not exist, so that the
/// response takes as long as a real failed login and does not reveal which emails have
/// accounts.
pub fn verify_dummy(password: &str) {
    // The outcome is irrelevant; black_box keeps the optimiser from skipping the work.
    std::hint::black_box(verify_password(DUMMY_HASH, password));
}

/// A hash made once with this module's parameters (a test checks they match), so the first
/// dummy verification costs the same as every later one and nothing is computed at start-up.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$iBpRc40r2zrSyDx69e/cEA$hrudYLZLAL9I8Sbu0+iToQJ2rwqFeJ4dJEW++rb4caY";

/// Checks a new password against the policy: at least `min_length` and at most
/// [`MAX_LENGTH`] code points, not on the common-password list (case-insensitively), and not
/// containing the user's email address or its local part (when that is 4+ characters).
///
/// The first rule broken is reported, in the order above.
pub fn check_policy(password: &str, email: &str, min_length: usize) -> Result<(), PolicyError> {
    // Code points, not bytes, so that non-ASCII passphrases are not penalised (800-63B).
    let length = password.chars().count();
    if length < min_length {
        return Err(PolicyError::TooShort { min: min_length });
    }
    if length > MAX_LENGTH {
        return Err(PolicyError::TooLong { max: MAX_LENGTH });
    }
    let lowered = password.to_lowercase();
    if common_passwords().contains(lowered.as_str()) {
        return Err(PolicyError::Common);
    }
    if contains_email(&lowered, email) {
        return Err(PolicyError::ContainsEmail);
    }
    Ok(())
}

/// Whether the (lowercased) password contains the whole email or its local part.
fn contains_email(lowered_password: &str, email: &str) -> bool {
    let email = email.trim().to_lowercase();
    if email.is_empty() {
        return false;
    }
    if lowered_password.contains(&email) {
        return true;
    }
    let local = email.rsplit_once('@').map_or(email.as_str(), |(l, _)| l);
    local.chars().count() >= MIN_LOCAL_PART && lowered_password.contains(local)
}

/// The bundled list, lowercased, built on first use.
fn common_passwords() -> &'static HashSet<String> {
    static SET: OnceLock<HashSet<String>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_lowercase)
            .collect()
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_dummy_hash_uses_the_current_parameters() {
        let fresh = hash_password("anything at all here");
        let params = |phc: &str| phc.split('$').nth(3).unwrap().to_string();
        assert_eq!(params(DUMMY_HASH), params(&fresh));
        assert!(verify_password(
            DUMMY_HASH,
            "sluice dummy password for unknown accounts"
        ));
    }

    use super::*;

    #[test]
    fn hash_verifies_and_uses_owasp_parameters() {
        let phc = hash_password("correct horse battery staple");
        assert!(
            phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "unexpected PHC prefix: {phc}"
        );
        assert!(verify_password(&phc, "correct horse battery staple"));
        assert!(!verify_password(&phc, "correct horse battery stapler"));
        assert!(!verify_password(&phc, ""));
    }

    #[test]
    fn each_hash_has_its_own_salt() {
        let a = hash_password("same password twice");
        let b = hash_password("same password twice");
        assert_ne!(a, b);
        assert!(verify_password(&a, "same password twice"));
        assert!(verify_password(&b, "same password twice"));
    }

    #[test]
    fn malformed_or_foreign_hashes_do_not_verify() {
        // A well-formed hash of the right password, but made with argon2i.
        let argon2i = {
            Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
                .hash_password_with_salt(b"password", b"somesaltsomesalt")
                .unwrap()
                .to_string()
        };
        let cases = [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA",
            argon2i.as_str(),
        ];
        for phc in cases {
            assert!(!verify_password(phc, "password"), "{phc:?}");
        }
    }

    #[test]
    fn dummy_verification_runs_without_panicking() {
        verify_dummy("anything");
        verify_dummy("");
    }

    #[test]
    fn policy_table() {
        let email = "alice.smith@example.com";
        let cases: &[(&str, Result<(), PolicyError>)] = &[
            ("a fine long passphrase", Ok(())),
            ("short", Err(PolicyError::TooShort { min: 12 })),
            ("elevenchars", Err(PolicyError::TooShort { min: 12 })),
            ("twelve chars", Ok(())),
            // 12 code points but 24 bytes: length is counted in characters.
            ("éééééééééééé", Ok(())),
            ("ééééééééééé", Err(PolicyError::TooShort { min: 12 })),
            (&"x".repeat(MAX_LENGTH), Ok(())),
            (
                &"x".repeat(MAX_LENGTH + 1),
                Err(PolicyError::TooLong { max: MAX_LENGTH }),
            ),
            ("password1234", Err(PolicyError::Common)),
            ("PassWord1234", Err(PolicyError::Common)),
            ("qwertyuiop123", Err(PolicyError::Common)),
            ("123456789012", Err(PolicyError::Common)),
            ("iloveyou1234", Err(PolicyError::Common)),
            // No composition rules: all lower-case letters is fine.
            ("unusualwordsalad", Ok(())),
            (
                "my alice.smith@example.com!",
                Err(PolicyError::ContainsEmail),
            ),
            ("xxALICE.SMITHxxyy", Err(PolicyError::ContainsEmail)),
        ];
        for (password, expected) in cases {
            assert_eq!(
                &check_policy(password, email, 12),
                expected,
                "password of {} chars",
                password.chars().count()
            );
        }
    }

    #[test]
    fn short_local_parts_are_not_matched_but_whole_emails_are() {
        let cases = [
            ("jo@example.com", "enjoy the journey", Ok(())),
            (
                "jo@example.com",
                "jo@example.com rules",
                Err(PolicyError::ContainsEmail),
            ),
            (
                "john@example.com",
                "the johnson family",
                Err(PolicyError::ContainsEmail),
            ),
            ("", "the johnson family", Ok(())),
        ];
        for (email, password, expected) in cases {
            assert_eq!(check_policy(password, email, 12), expected, "{email}");
        }
    }

    #[test]
    fn error_messages_never_echo_the_password() {
        let password = "password1234";
        let errors = [
            check_policy("hunter2", "a@b.co", 12).unwrap_err(),
            check_policy(&"z".repeat(200), "a@b.co", 12).unwrap_err(),
            check_policy(password, "a@b.co", 12).unwrap_err(),
            check_policy("a-bob.ross@b.co-x", "bob.ross@b.co", 12).unwrap_err(),
        ];
        assert_eq!(
            errors[0].to_string(),
            "the password must be at least 12 characters long"
        );
        assert_eq!(
            errors[2].to_string(),
            "the password is on the list of commonly used passwords; choose another"
        );
        assert_eq!(
            errors[3].to_string(),
            "the password must not contain your email address"
        );
        for error in errors {
            let text = format!("{error} {error:?}");
            assert!(!text.contains("hunter2") && !text.contains(password) && !text.contains("zzz"));
        }
    }

    #[test]
    fn common_list_is_loaded_and_clean() {
        let set = common_passwords();
        assert!(set.len() >= 1_000, "only {} entries", set.len());
        for entry in [
            "123456", "password", "qwerty", "letmein", "passw0rd", "1q2w3e4r",
        ] {
            assert!(set.contains(entry), "{entry}");
        }
        assert!(set.iter().all(|e| !e.is_empty() && !e.starts_with('#')));
        assert!(set.iter().all(|e| e.trim() == e && e.to_lowercase() == *e));
        assert!(
            set.iter().filter(|e| e.chars().count() >= 12).count() >= 100,
            "the list should cover passwords at the 12-character minimum"
        );
    }

    /// argon2id PHC strings made by `hash_password` with argon2 0.5 (password, hash). Stores
    /// hold hashes like these: whatever the argon2 crate becomes, they must keep verifying.
    const HASH_FIXTURES: [(&str, &str); 3] = [
        (
            "correct horse battery staple",
            "$argon2id$v=19$m=19456,t=2,p=1$rme/In/nHaYeunRyukNFcQ$O1ivvH4+/0FiP/ylO9SiTpFiJrn+wAKF+Y5kTpb7vPY",
        ),
        (
            "pässwörd with ünïcode 🔑 and spaces",
            "$argon2id$v=19$m=19456,t=2,p=1$TTnUdMM6cmGqYpQrUvTizQ$ALjsoq1MvbcUhuQ60nCs9llt9oc+CLkUoA2/BDbx9ts",
        ),
        (
            "",
            "$argon2id$v=19$m=19456,t=2,p=1$RONqSl42d8CIu3mu9bf/eQ$W2+oyg8Of1CprBVgRRps+Jw+b7jFg2Ct4OMKSh0g6Fg",
        ),
    ];

    /// `hash_password(&"x".repeat(MAX_LENGTH))` with argon2 0.5.
    const LONGEST_HASH_FIXTURE: &str = "$argon2id$v=19$m=19456,t=2,p=1$k8sMPAae6q+EGvtB8ZhW8Q$mBGUSyvom7Y4tTmcnsLJlr1coIrnz6UWPUvq370JBCQ";

    #[test]
    fn hashes_made_by_earlier_versions_still_verify() {
        for (password, phc) in HASH_FIXTURES {
            assert!(verify_password(phc, password), "{password:?}");
            assert!(!verify_password(phc, "wrong password"), "{password:?}");
        }
        assert!(verify_password(
            LONGEST_HASH_FIXTURE,
            &"x".repeat(MAX_LENGTH)
        ));
        assert!(!verify_password(
            LONGEST_HASH_FIXTURE,
            &"x".repeat(MAX_LENGTH - 1)
        ));
    }
}
