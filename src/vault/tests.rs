//! Unit tests for the vault. Keys are derived once per test binary (PBKDF2 at full strength
//! costs a noticeable fraction of a second each) and shared through `OnceLock`.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::*;

const PASSWORD: &str = "k3Jx9wQv-T2mZp7LrN4sYb8HdFc6GaE1uW0oViXe";
const SALT: &str = "Qm7Rt2Wx9Lp4Kv8Z";
const OTHER_PASSWORD: &str = "k3Jx9wQv-T2mZp7LrN4sYb8HdFc6GaE1uW0oViXf";
const OTHER_SALT: &str = "Qm7Rt2Wx9Lp4Kv8Y";
const SECRET: &str = "pg-password-Ünïcode-🔑";

fn key() -> &'static InstanceKey {
    static KEY: OnceLock<InstanceKey> = OnceLock::new();
    KEY.get_or_init(|| InstanceKey::derive(PASSWORD, SALT).unwrap())
}

/// Full-strength PBKDF2 costs seconds in a dev build, so the wrong-password and wrong-salt
/// cases compare keys derived with few rounds: `fast_key()` against keys that differ from it
/// only in the password or only in the salt.
const FAST_ROUNDS: u32 = 1_000;

fn fast_key() -> InstanceKey {
    InstanceKey::derive_with_rounds(PASSWORD, SALT, FAST_ROUNDS).unwrap()
}

fn wrong_keys() -> [InstanceKey; 2] {
    [
        InstanceKey::derive_with_rounds(OTHER_PASSWORD, SALT, FAST_ROUNDS).unwrap(),
        InstanceKey::derive_with_rounds(PASSWORD, OTHER_SALT, FAST_ROUNDS).unwrap(),
    ]
}

fn owner(id: &str, field: &str) -> Owner {
    Owner::datasource(id, field).unwrap()
}

/// Replaces the key id of a sealed value, to reach the AEAD check with a wrong key.
fn with_key_id(sealed: &str, key_id: &str) -> String {
    let body = sealed.rsplit(':').next().unwrap();
    format!("enc:v1:{key_id}:{body}")
}

fn body_bytes(sealed: &str) -> Vec<u8> {
    STANDARD.decode(sealed.rsplit(':').next().unwrap()).unwrap()
}

#[test]
fn seal_then_open_round_trips() {
    let o = owner("pg-main", "password");
    let sealed = key().seal(&o, SECRET);
    assert!(is_sealed(&sealed));
    assert!(sealed.starts_with(&format!("enc:v1:{}:", key().key_id())));
    assert!(!sealed.contains(SECRET));
    assert_eq!(key().open(&o, &sealed).unwrap().expose(), SECRET);
}

#[test]
fn empty_secret_round_trips() {
    let o = owner("pg-main", "password");
    let sealed = key().seal(&o, "");
    assert_eq!(key().open(&o, &sealed).unwrap().expose(), "");
}

#[test]
fn sealed_body_is_nonce_then_ciphertext_and_tag() {
    let sealed = key().seal(&owner("a", "b"), "12345");
    assert_eq!(body_bytes(&sealed).len(), NONCE_BYTES + 5 + TAG_BYTES);
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    let o = owner("pg-main", "password");
    let a = key().seal(&o, SECRET);
    let b = key().seal(&o, SECRET);
    assert_ne!(a, b);
    assert_ne!(body_bytes(&a)[..NONCE_BYTES], body_bytes(&b)[..NONCE_BYTES]);
    assert_eq!(key().open(&o, &a).unwrap().expose(), SECRET);
    assert_eq!(key().open(&o, &b).unwrap().expose(), SECRET);
}

#[test]
fn ciphertext_moved_to_another_owner_does_not_open() {
    let sealed = key().seal(&owner("pg-main", "password"), SECRET);
    for other in [
        owner("pg-other", "password"),
        owner("pg-main", "api_token"),
        owner("pg-mai", "npassword"),
        owner("PG-MAIN", "password"),
    ] {
        match key().open(&other, &sealed) {
            Err(VaultError::CannotOpen { owner }) => assert_eq!(owner, other),
            other => panic!("expected CannotOpen, got {other:?}"),
        }
    }
}

#[test]
fn wrong_password_or_salt_is_a_key_mismatch() {
    let right = fast_key();
    let sealed = right.seal(&owner("pg", "password"), SECRET);
    for wrong in wrong_keys() {
        assert_ne!(wrong.key_id(), right.key_id());
        match wrong.open(&owner("pg", "password"), &sealed) {
            Err(VaultError::KeyMismatch {
                sealed_with,
                current,
            }) => {
                assert_eq!(sealed_with, right.key_id());
                assert_eq!(current, wrong.key_id());
            }
            other => panic!("expected KeyMismatch, got {other:?}"),
        }
    }
}

#[test]
fn wrong_key_with_forged_key_id_fails_authentication() {
    let o = owner("pg", "password");
    let right = fast_key();
    let sealed = right.seal(&o, SECRET);
    assert_eq!(right.open(&o, &sealed).unwrap().expose(), SECRET);
    for wrong in wrong_keys() {
        let forged = with_key_id(&sealed, wrong.key_id());
        assert!(matches!(
            wrong.open(&o, &forged),
            Err(VaultError::CannotOpen { .. })
        ));
    }
}

#[test]
fn full_strength_key_id_is_stable() {
    // Pins PBKDF2-HMAC-SHA256 at 600,000 rounds and the key id construction: changing either
    // would strand every secret already sealed. Computed independently with Python's hashlib.
    assert_eq!(key().key_id(), "51ccdb07a40b75a0");
}

#[test]
fn tampered_bytes_do_not_open() {
    let o = owner("pg", "password");
    let sealed = key().seal(&o, SECRET);
    let body = body_bytes(&sealed);
    // Flip one bit in the nonce, the ciphertext, and the tag in turn.
    for index in [0, NONCE_BYTES, NONCE_BYTES + 3, body.len() - 1] {
        let mut tampered = body.clone();
        tampered[index] ^= 0x01;
        let forged = format!("enc:v1:{}:{}", key().key_id(), STANDARD.encode(&tampered));
        assert!(
            matches!(key().open(&o, &forged), Err(VaultError::CannotOpen { .. })),
            "byte {index}"
        );
    }
    // A truncated tag fails too.
    let truncated = format!(
        "enc:v1:{}:{}",
        key().key_id(),
        STANDARD.encode(&body[..body.len() - 1])
    );
    assert!(matches!(
        key().open(&o, &truncated),
        Err(VaultError::CannotOpen { .. })
    ));
}

#[test]
fn malformed_values_are_errors_not_panics() {
    let o = owner("pg", "password");
    let id = key().key_id();
    let cases = [
        (String::new(), "prefix"),
        ("plaintext".to_owned(), "prefix"),
        ("enc:v2:0011223344556677:AAAA".to_owned(), "prefix"),
        ("enc:v1:".to_owned(), "`:`"),
        (format!("enc:v1:{id}"), "`:`"),
        ("enc:v1:xyz:AAAA".to_owned(), "key id"),
        ("enc:v1:00112233445566778:AAAA".to_owned(), "key id"),
        ("enc:v1:00112233445566AB:AAAA".to_owned(), "key id"),
        (format!("enc:v1:{id}:not base64!"), "base64"),
        (format!("enc:v1:{id}:AAAA:AAAA"), "base64"),
        (format!("enc:v1:{id}:"), "shorter"),
        (
            format!("enc:v1:{id}:{}", STANDARD.encode([0u8; 27])),
            "shorter",
        ),
    ];
    for (input, part) in cases {
        match key().open(&o, &input) {
            Err(err @ VaultError::Malformed(_)) => {
                assert!(err.to_string().contains(part), "{input:?}: {err}");
            }
            other => panic!("{input:?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn errors_never_contain_the_ciphertext() {
    let o = owner("pg", "password");
    let sealed = key().seal(&o, SECRET);
    let body = sealed.rsplit(':').next().unwrap();
    let [wrong, _] = wrong_keys();
    let errors = [
        key().open(&owner("pg", "user"), &sealed).unwrap_err(),
        wrong.open(&o, &sealed).unwrap_err(),
        wrong
            .open(&o, &with_key_id(&sealed, wrong.key_id()))
            .unwrap_err(),
        key().open(&o, &format!("{sealed}!")).unwrap_err(),
    ];
    for err in errors {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(body), "{text}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

#[test]
fn is_sealed_checks_the_prefix() {
    assert!(is_sealed("enc:v1:anything"));
    assert!(!is_sealed("enc:v2:x"));
    assert!(!is_sealed("hunter2"));
    assert!(!is_sealed(""));
}

#[test]
fn secret_string_is_redacted() {
    let secret = SecretString::new(SECRET.to_owned());
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(format!("{:?}", Some(secret.clone())), "Some([redacted])");
    assert_eq!(secret.clone().expose(), SECRET);
}

#[test]
fn secret_string_matches_only_itself() {
    let token = SecretString::new("a-bearer-token-of-some-length-0123456789".to_owned());
    assert!(token.matches("a-bearer-token-of-some-length-0123456789"));
    for other in [
        "",
        "a-bearer-token-of-some-length-012345678",
        "a-bearer-token-of-some-length-01234567890",
        "A-bearer-token-of-some-length-0123456789",
        " a-bearer-token-of-some-length-0123456789",
    ] {
        assert!(!token.matches(other), "{other:?}");
    }
}

#[test]
fn instance_key_debug_shows_only_the_key_id() {
    let k = key();
    let debug = format!("{k:?}");
    assert_eq!(
        debug,
        format!("InstanceKey {{ key_id: {:?}, .. }}", k.key_id())
    );
    let key_hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!debug.contains(&key_hex));
    assert!(!debug.contains(&format!("{:?}", k.key.as_slice())));
    assert!(!debug.contains(PASSWORD));
}

#[test]
fn key_id_is_16_hex_chars_and_not_the_key() {
    let k = key();
    assert_eq!(k.key_id().len(), 16);
    assert!(k.key_id().bytes().all(|b| b.is_ascii_hexdigit()));
    let key_hex: String = k.key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!key_hex.contains(k.key_id()));
}

#[test]
fn key_id_is_a_function_of_the_key() {
    let again = InstanceKey::from_key(Zeroizing::new(*key().key));
    assert_eq!(again.key_id(), key().key_id());
    let o = owner("pg", "password");
    assert_eq!(
        again.open(&o, &key().seal(&o, SECRET)).unwrap().expose(),
        SECRET
    );
}

#[test]
fn derivation_is_pbkdf2_hmac_sha256() {
    // RFC 7914 section 11 style vectors for PBKDF2-HMAC-SHA256 with a 32-byte output.
    let hex =
        |k: Zeroizing<[u8; KEY_BYTES]>| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(
        hex(derive_key("password", "salt", 1)),
        "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"
    );
    assert_eq!(
        hex(derive_key("password", "salt", 2)),
        "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"
    );
    const { assert!(PBKDF2_ITERATIONS >= 600_000) };
}

#[test]
fn derive_refuses_empty_inputs() {
    assert!(matches!(
        InstanceKey::derive("", SALT),
        Err(VaultError::Empty("SLUICE_ENCRYPTION_PASSWORD"))
    ));
    assert!(matches!(
        InstanceKey::derive(PASSWORD, ""),
        Err(VaultError::Empty("SLUICE_ENCRYPTION_SALT"))
    ));
}

#[test]
fn owners_are_validated() {
    assert_eq!(
        Owner::parse("datasource/pg-main/password")
            .unwrap()
            .as_str(),
        "datasource/pg-main/password"
    );
    assert_eq!(owner("a.b_c-D9", "x").to_string(), "datasource/a.b_c-D9/x");
    assert_eq!("datasource/a/b".parse::<Owner>().unwrap(), owner("a", "b"));
    let long = "x".repeat(128);
    assert!(Owner::datasource(&long, &long).is_ok());
    let too_long = "x".repeat(129);
    let bad = [
        "",
        "datasource",
        "datasource/",
        "datasource/pg",
        "datasource/pg/",
        "datasource//password",
        "datasource/pg/pass/word",
        "datasource/p g/password",
        "datasource/pg/pass:word",
        "datasource/pg/pässword",
        "Datasource/pg/password",
        "app/pg/password",
        "/datasource/pg/password",
    ];
    for input in bad {
        assert!(
            matches!(Owner::parse(input), Err(VaultError::BadOwner(_))),
            "{input:?}"
        );
    }
    assert!(Owner::datasource(&too_long, "f").is_err());
    assert!(Owner::datasource("id", &too_long).is_err());
    assert!(Owner::datasource("a/b", "f").is_err());
}

#[test]
fn check_strength_table() {
    const GOOD_PW: &str = "Zr8vK2pQ9xW4mT7nB3cY6hJ1fL5sD0gA";
    const GOOD_SALT: &str = "pN4qW8eR2tY6uI0o";
    let cases: [(&str, &str, Option<&str>); 22] = [
        (GOOD_PW, GOOD_SALT, None),
        (PASSWORD, SALT, None),
        ("", GOOD_SALT, Some("SLUICE_ENCRYPTION_PASSWORD is empty")),
        (GOOD_PW, "", Some("SLUICE_ENCRYPTION_SALT is empty")),
        (
            &GOOD_PW[..31],
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is too short (31 characters"),
        ),
        (
            GOOD_PW,
            &GOOD_SALT[..15],
            Some("SLUICE_ENCRYPTION_SALT is too short (15 characters"),
        ),
        (
            PLACEHOLDER_PASSWORD,
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            GOOD_PW,
            PLACEHOLDER_SALT,
            Some("SLUICE_ENCRYPTION_SALT is a placeholder"),
        ),
        (
            "CHANGEME",
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            "Password",
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            GOOD_PW,
            "secret",
            Some("SLUICE_ENCRYPTION_SALT is a placeholder"),
        ),
        (
            GOOD_PW,
            "Example",
            Some("SLUICE_ENCRYPTION_SALT is a placeholder"),
        ),
        (
            "xxxxxxxxxxChange_Mexxxxxxxxxxxxxxxxxxxxx",
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            "REPLACE-with-a-long-random-value-please",
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            "put-your-own-long-random-password-here!",
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        ),
        (
            GOOD_PW,
            "changeme-salt-value",
            Some("SLUICE_ENCRYPTION_SALT is a placeholder"),
        ),
        (
            &"a".repeat(40),
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is one character repeated"),
        ),
        (
            GOOD_PW,
            &"é".repeat(20),
            Some("SLUICE_ENCRYPTION_SALT is one character repeated"),
        ),
        (
            GOOD_PW,
            GOOD_PW,
            Some("SLUICE_ENCRYPTION_SALT is the same as SLUICE_ENCRYPTION_PASSWORD"),
        ),
        (
            &format!("{GOOD_PW}\n"),
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD has leading or trailing whitespace"),
        ),
        (
            GOOD_PW,
            &format!(" {GOOD_SALT}"),
            Some("SLUICE_ENCRYPTION_SALT has leading or trailing whitespace"),
        ),
        // Length counts characters, not bytes.
        (
            &"é1".repeat(15),
            GOOD_SALT,
            Some("SLUICE_ENCRYPTION_PASSWORD is too short (30 characters"),
        ),
    ];
    for (password, salt, expected) in cases {
        let result = check_strength(password, salt);
        match (expected, result) {
            (None, Ok(())) => {}
            (Some(prefix), Err(err @ VaultError::Weak(_))) => {
                let text = err.to_string();
                assert!(text.starts_with(prefix), "{password:?}/{salt:?}: {text}");
                assert!(text.contains("sluice keygen"), "{text}");
                assert!(!text.contains('\n'), "{text}");
                if password.len() > 8 {
                    assert!(!text.contains(password.trim()), "{text}");
                }
            }
            (expected, result) => {
                panic!("{password:?}/{salt:?}: expected {expected:?}, got {result:?}")
            }
        }
    }
}

#[test]
fn keygen_values_pass_and_differ() {
    let (password, salt) = keygen();
    check_strength(&password, &salt).unwrap();
    assert_eq!(password.len(), 43);
    assert_eq!(salt.len(), 22);
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    assert!(url_safe(&password) && url_safe(&salt));
    let (password2, salt2) = keygen();
    assert_ne!(password, password2);
    assert_ne!(salt, salt2);
}

/// Values sealed by the vault with aes-gcm 0.10 / pbkdf2 0.12 / hmac 0.12 under
/// `PASSWORD`/`SALT` at full strength (owner, plaintext, sealed). Stores hold values like
/// these: whatever the crypto crates become, they must keep opening.
const SEALED_FIXTURES: [(&str, &str, &str); 4] = [
    (
        "datasource/pg-main/password",
        SECRET,
        "enc:v1:51ccdb07a40b75a0:6LEZoOby2WRNIvoWKYTh1AnM0zDOWyELlRNsxiYCVDb5VgB+RQXC7vg4+gFSrxSjotin0coi",
    ),
    (
        "datasource/mysql.reports/password",
        "s3cr3t with spaces & symbols !@#$%^&*()",
        "enc:v1:51ccdb07a40b75a0:72G6fzsIu89nTI5ACQ7heKEaVUbnBH/m0y9h12krGtbQoFNhAuzHnILQc6hwipT50a/mQrf/d75ajb/9q7fOMcpyHw==",
    ),
    (
        "datasource/api_1/token",
        "",
        "enc:v1:51ccdb07a40b75a0:qJnlL1QlqlCWi0oZO7vTwlcHRwKdS1K4DNMLng==",
    ),
    (
        "user/0b7c2a6e-4f1d-4c3a-9a8e-5d2f1e0c9b7a/totp",
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
        "enc:v1:51ccdb07a40b75a0:v3Rq1/LK8qSKFEEy5lW29HQBMJr2RSnjRdEIjMrYATIMDQbFXWv0UPxmIeFfr0RO272cbhwl9BYJSDL1",
    ),
];

/// The same plaintext sealed for `datasource/pg-main/password` under `fast_key()`.
const FAST_SEALED_FIXTURE: &str = "enc:v1:58ff28dba345da28:X3fxymT6qck5oIIDeZvvDVJsAvccC5s88y4pux0jE3x0aUra0mraUSfoDfRCChSENA1H5t1K";

fn fixture_owner(name: &str) -> Owner {
    match name.strip_prefix("user/") {
        Some(rest) => {
            let (id, field) = rest.split_once('/').unwrap();
            Owner::user(id, field).unwrap()
        }
        None => Owner::parse(name).unwrap(),
    }
}

#[test]
fn values_sealed_by_earlier_versions_still_open() {
    assert_eq!(key().key_id(), "51ccdb07a40b75a0");
    assert_eq!(fast_key().key_id(), "58ff28dba345da28");
    for (name, plaintext, sealed) in SEALED_FIXTURES {
        let opened = key().open(&fixture_owner(name), sealed);
        assert_eq!(opened.unwrap().expose(), plaintext, "{name}");
    }
    let opened = fast_key().open(&owner("pg-main", "password"), FAST_SEALED_FIXTURE);
    assert_eq!(opened.unwrap().expose(), SECRET);
}

#[test]
fn sealed_fixtures_stay_bound_to_their_owner() {
    let (_, _, sealed) = SEALED_FIXTURES[0];
    for other in [
        "datasource/pg-main/username",
        "datasource/pg-other/password",
    ] {
        let err = key().open(&fixture_owner(other), sealed).unwrap_err();
        assert!(
            matches!(err, VaultError::CannotOpen { .. }),
            "{other}: {err}"
        );
    }
    // One flipped ciphertext bit (the last byte is inside the tag).
    let mut body = body_bytes(sealed);
    *body.last_mut().unwrap() ^= 1;
    let tampered = format!("enc:v1:51ccdb07a40b75a0:{}", STANDARD.encode(body));
    let err = key().open(&fixture_owner(SEALED_FIXTURES[0].0), &tampered);
    assert!(matches!(err, Err(VaultError::CannotOpen { .. })));
}

/// A keyring of `fast_key()` as the old key and another as the current one.
fn rotating_keyring() -> (Keyring, InstanceKey, InstanceKey) {
    let old = fast_key();
    let current = InstanceKey::derive_with_rounds(OTHER_PASSWORD, OTHER_SALT, FAST_ROUNDS).unwrap();
    (
        Keyring::with_old(current.clone(), Some(old.clone())),
        current,
        old,
    )
}

#[test]
fn keyring_opens_by_key_id_and_seals_with_the_current_key() {
    let (keyring, current, old) = rotating_keyring();
    let o = owner("pg-main", "password");
    let under_old = old.seal(&o, SECRET);
    let under_current = current.seal(&o, SECRET);
    assert_eq!(keyring.open(&o, &under_old).unwrap().expose(), SECRET);
    assert_eq!(keyring.open(&o, &under_current).unwrap().expose(), SECRET);
    assert_eq!(keyring.key_use(&under_old).unwrap(), KeyUse::Old);
    assert_eq!(keyring.key_use(&under_current).unwrap(), KeyUse::Current);
    let sealed = keyring.seal(&o, SECRET);
    assert_eq!(sealed_key_id(&sealed).unwrap(), current.key_id());
    assert_eq!(keyring.key_id(), current.key_id());
    // Without the old key, the old value is a key mismatch naming the current key.
    let alone = Keyring::new(current.clone());
    match alone.open(&o, &under_old) {
        Err(VaultError::KeyMismatch {
            sealed_with,
            current: now,
        }) => {
            assert_eq!(sealed_with, old.key_id());
            assert_eq!(now, current.key_id());
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
}

#[test]
fn keyring_refuses_another_owner_with_either_key() {
    let (keyring, current, old) = rotating_keyring();
    let o = owner("pg-main", "password");
    let other = owner("pg-other", "password");
    for sealed in [old.seal(&o, SECRET), current.seal(&o, SECRET)] {
        assert!(matches!(
            keyring.open(&other, &sealed),
            Err(VaultError::CannotOpen { .. })
        ));
    }
    // A value of the old key moved to another owner is never re-sealed for it.
    assert!(matches!(
        keyring.reseal(&other, &old.seal(&o, SECRET)),
        Err(VaultError::CannotOpen { .. })
    ));
}

#[test]
fn keyring_reseals_old_values_and_leaves_current_ones() {
    let (keyring, current, old) = rotating_keyring();
    let o = owner("api", "bearer");
    let under_old = old.seal(&o, SECRET);
    let resealed = keyring.reseal(&o, &under_old).unwrap().expect("re-sealed");
    assert_eq!(sealed_key_id(&resealed).unwrap(), current.key_id());
    assert_eq!(current.open(&o, &resealed).unwrap().expose(), SECRET);
    assert_eq!(keyring.reseal(&o, &resealed).unwrap(), None);
    // A third key is unknown: reported, never re-sealed.
    let third = InstanceKey::derive_with_rounds(PASSWORD, OTHER_SALT, FAST_ROUNDS).unwrap();
    let under_third = third.seal(&o, SECRET);
    assert_eq!(
        keyring.key_use(&under_third).unwrap(),
        KeyUse::Unknown(third.key_id().to_owned())
    );
    assert!(matches!(
        keyring.reseal(&o, &under_third),
        Err(VaultError::KeyMismatch { .. })
    ));
    // An old key equal to the current one is no fallback at all.
    let same = Keyring::with_old(current.clone(), Some(current.clone()));
    assert!(same.old().is_none());
}
