//! Credentials vault: the instance key and the sealed form of every stored secret.
//!
//! Owns key derivation (PBKDF2-HMAC-SHA256 over `SLUICE_ENCRYPTION_PASSWORD` and
//! `SLUICE_ENCRYPTION_SALT`), sealing and opening secrets with AES-256-GCM, the
//! `enc:v1:<key-id>:<base64>` format, the [`Keyring`] (the current key and, during a key
//! rotation, the old one: values open under whichever key their key id names, new values
//! are sealed under the current one), the redacting [`SecretString`] wrapper, the strength
//! rules for the instance password and salt, and `sluice keygen`'s fresh values.
//!
//! Invariants:
//! - Every sealed value is bound to its [`Owner`] (`datasource/<id>/<field>`) through the AEAD
//!   associated data, so a ciphertext copied to another datasource or field does not open.
//! - Every seal uses a fresh random 96-bit nonce from the operating system.
//! - The vault does no IO and never logs. Its errors never contain a plaintext, a
//!   ciphertext, the key, or the password; `Debug` and `Display` of secrets are redacted and
//!   the key is only ever shown as its key id.
//! - Key material and opened secrets live in zeroizing buffers that are wiped on drop.

mod strength;

use std::fmt;
use std::str::FromStr;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::Sha256;
use zeroize::Zeroizing;

pub use strength::{PLACEHOLDER_PASSWORD, PLACEHOLDER_SALT, check_strength, keygen};

/// PBKDF2 rounds used to derive the instance key. The design requires at least 600,000 (docs/SECURITY.md).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

/// Prefix of every sealed value (format version 1).
const SEALED_PREFIX: &str = "enc:v1:";
/// Domain separation for the key id, so it can never be confused with another HMAC use.
const KEY_ID_LABEL: &[u8] = b"sluice key id v1";
/// Bytes of the HMAC output shown as the key id (16 hex characters).
const KEY_ID_BYTES: usize = 8;
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Longest datasource id or field name accepted in an owner.
const OWNER_PART_MAX: usize = 128;

/// Everything that can go wrong in the vault. No variant carries a secret, a ciphertext or key
/// material, so every one of them is safe to log and to show to an admin.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The sealed string is not in the `enc:v1:<key-id>:<base64>` form; names the bad part.
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),
    /// The value was sealed under another instance key (different password or salt).
    #[error("sealed under key {sealed_with} but the instance key is {current}; rotate or re-seal")]
    KeyMismatch {
        sealed_with: String,
        current: String,
    },
    /// Authenticated decryption failed: wrong key, tampered bytes, or another owner's value.
    #[error(
        "sealed value does not open for owner {owner} (wrong key, or moved from another owner/field)"
    )]
    CannotOpen { owner: Owner },
    /// An owner name that is not `datasource/<id>/<field>`; says which part is wrong.
    #[error("invalid secret owner: {0}")]
    BadOwner(&'static str),
    /// An encryption password or salt that `check_strength` refuses; the message is complete.
    #[error("{0}")]
    Weak(String),
    /// An empty password or salt given to key derivation; names which one.
    #[error("{0} is empty; cannot derive the instance key")]
    Empty(&'static str),
}

/// A secret held in memory: wiped on drop, redacted in `Debug` and `Display`.
///
/// Deliberately not `Serialize`: a secret leaves the process only through [`Self::expose`] at
/// the moment it is attached to an outgoing connection or request.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Call only where the secret is handed to a driver or a request.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret (a bearer token against the configured one), in
    /// constant time: both are hashed first, so neither the contents nor the lengths show
    /// in the time taken.
    pub fn matches(&self, presented: &str) -> bool {
        use sha2::Digest;
        use subtle::ConstantTimeEq;
        let expected = Sha256::digest(self.expose().as_bytes());
        let given = Sha256::digest(presented.as_bytes());
        bool::from(expected.ct_eq(&given))
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The owner a secret is sealed for: `datasource/<id>/<field>`.
///
/// `id` and `field` are 1 to 128 characters of `[A-Za-z0-9_.-]`, so the owner never contains
/// a `/` or `:` of its own and the associated data is unambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// Parses `datasource/<id>/<field>`.
    pub fn parse(value: &str) -> Result<Owner, VaultError> {
        let rest = value
            .strip_prefix("datasource/")
            .ok_or(VaultError::BadOwner("must start with `datasource/`"))?;
        let (id, field) = rest
            .split_once('/')
            .ok_or(VaultError::BadOwner("must be `datasource/<id>/<field>`"))?;
        Self::datasource(id, field)
    }

    /// Builds `datasource/<id>/<field>` from its parts, validating both.
    pub fn datasource(id: &str, field: &str) -> Result<Owner, VaultError> {
        if !is_owner_part(id) {
            return Err(VaultError::BadOwner(
                "datasource id must be 1 to 128 characters of [A-Za-z0-9_.-]",
            ));
        }
        if !is_owner_part(field) {
            return Err(VaultError::BadOwner(
                "field must be 1 to 128 characters of [A-Za-z0-9_.-]",
            ));
        }
        Ok(Owner(format!("datasource/{id}/{field}")))
    }

    /// Builds `user/<id>/<field>` (a user's own secrets, such as the TOTP seed).
    pub fn user(id: &str, field: &str) -> Result<Owner, VaultError> {
        if !is_owner_part(id) || !is_owner_part(field) {
            return Err(VaultError::BadOwner(
                "user id and field must be 1 to 128 characters of [A-Za-z0-9_.-]",
            ));
        }
        Ok(Owner(format!("user/{id}/{field}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_owner_part(part: &str) -> bool {
    (1..=OWNER_PART_MAX).contains(&part.len())
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Owner {
    type Err = VaultError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

/// Whether a stored value is in the sealed form (as opposed to a plaintext awaiting sealing).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// The 256-bit instance key and its public key id. `Debug` shows only the key id.
#[derive(Clone)]
pub struct InstanceKey {
    key: Zeroizing<[u8; KEY_BYTES]>,
    key_id: String,
}

impl InstanceKey {
    /// Derives the instance key with PBKDF2-HMAC-SHA256 and [`PBKDF2_ITERATIONS`] rounds.
    ///
    /// This does not judge strength (that is [`check_strength`], which `serve` calls first);
    /// it only refuses empty inputs. It costs a fraction of a second by design: derive once
    /// per process and share the key.
    pub fn derive(password: &str, salt: &str) -> Result<InstanceKey, VaultError> {
        Self::derive_with_rounds(password, salt, PBKDF2_ITERATIONS)
    }

    /// [`Self::derive`] with a chosen round count, so tests that need several distinct keys do
    /// not each pay for full-strength PBKDF2 (generic hashing code is instantiated in this
    /// crate and so runs unoptimised in a dev build).
    fn derive_with_rounds(
        password: &str,
        salt: &str,
        rounds: u32,
    ) -> Result<InstanceKey, VaultError> {
        if password.is_empty() {
            return Err(VaultError::Empty("SLUICE_ENCRYPTION_PASSWORD"));
        }
        if salt.is_empty() {
            return Err(VaultError::Empty("SLUICE_ENCRYPTION_SALT"));
        }
        Ok(Self::from_key(derive_key(password, salt, rounds)))
    }

    fn from_key(key: Zeroizing<[u8; KEY_BYTES]>) -> InstanceKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice())
            .expect("HMAC accepts keys of any length");
        mac.update(KEY_ID_LABEL);
        let digest = mac.finalize().into_bytes();
        let key_id = digest[..KEY_ID_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        InstanceKey { key, key_id }
    }

    /// The public identifier of this key: 16 hex characters that say which key sealed a value
    /// without revealing anything about the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext` for `owner` as `enc:v1:<key-id>:<base64(nonce || ciphertext+tag)>`.
    pub fn seal(&self, owner: &Owner, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        SysRng
            .try_fill_bytes(&mut nonce)
            .expect("the operating system's random source is readable");
        let aad = associated_data(owner);
        let ciphertext = self
            .cipher()
            .encrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM only fails for messages over 64 GiB, which no credential approaches.
            .expect("AES-256-GCM encryption of a credential cannot fail");
        let mut body = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}:{}", self.key_id, STANDARD.encode(body))
    }

    /// Opens a value sealed by [`Self::seal`] for the same `owner` under this key.
    pub fn open(&self, owner: &Owner, sealed: &str) -> Result<SecretString, VaultError> {
        let (key_id, encoded) = split_sealed(sealed)?;
        if key_id != self.key_id {
            return Err(VaultError::KeyMismatch {
                sealed_with: key_id.to_owned(),
                current: self.key_id.clone(),
            });
        }
        let body = STANDARD
            .decode(encoded)
            .map_err(|_| VaultError::Malformed("body is not valid base64"))?;
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(VaultError::Malformed(
                "body is shorter than a nonce and a tag",
            ));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_BYTES);
        let nonce = <&Nonce<Aes256Gcm>>::try_from(nonce)
            .expect("the body was split after exactly one nonce");
        let aad = associated_data(owner);
        let plaintext = self
            .cipher()
            .decrypt(
                nonce,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| VaultError::CannotOpen {
                owner: owner.clone(),
            })?;
        match String::from_utf8(plaintext) {
            Ok(text) => Ok(SecretString::new(text)),
            Err(err) => {
                // Wipe the authenticated bytes before reporting; seal never produces this.
                drop(Zeroizing::new(err.into_bytes()));
                Err(VaultError::Malformed("opened secret is not UTF-8"))
            }
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.key.as_slice()).expect("the instance key is 256 bits")
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The key id and the base64 body of a sealed value, checked for form only.
fn split_sealed(sealed: &str) -> Result<(&str, &str), VaultError> {
    let rest = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or(VaultError::Malformed("missing the `enc:v1:` prefix"))?;
    let (key_id, encoded) = rest.split_once(':').ok_or(VaultError::Malformed(
        "missing the `:` between key id and body",
    ))?;
    if key_id.len() != KEY_ID_BYTES * 2
        || !key_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(VaultError::Malformed(
            "key id is not 16 lowercase hex characters",
        ));
    }
    Ok((key_id, encoded))
}

/// The key id a sealed value names (which key sealed it), without opening it.
pub fn sealed_key_id(sealed: &str) -> Result<&str, VaultError> {
    split_sealed(sealed).map(|(key_id, _)| key_id)
}

/// The keys an instance opens secrets with: the current key, which seals every new value,
/// and during a key rotation the old one (`SLUICE_ENCRYPTION_PASSWORD_OLD` and
/// `SLUICE_ENCRYPTION_SALT_OLD`), a read fallback. A sealed value is opened by the key its
/// key id names; the owner check (the associated data) applies with either key.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: InstanceKey,
    old: Option<InstanceKey>,
}

/// Which of a keyring's keys sealed a value, by its key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyUse {
    Current,
    Old,
    /// A key id that is neither the current nor the old key's.
    Unknown(String),
}

impl Keyring {
    /// A keyring with only the current key (no rotation under way).
    pub fn new(current: InstanceKey) -> Keyring {
        Keyring { current, old: None }
    }

    /// A keyring that also opens values sealed under `old`. An old key equal to the
    /// current one is dropped: it would open nothing the current one does not.
    pub fn with_old(current: InstanceKey, old: Option<InstanceKey>) -> Keyring {
        let old = old.filter(|old| old.key_id != current.key_id);
        Keyring { current, old }
    }

    /// The key that seals.
    pub fn current(&self) -> &InstanceKey {
        &self.current
    }

    /// The read fallback, when configured.
    pub fn old(&self) -> Option<&InstanceKey> {
        self.old.as_ref()
    }

    /// The current key's id.
    pub fn key_id(&self) -> &str {
        self.current.key_id()
    }

    /// Seals under the current key (see [`InstanceKey::seal`]).
    pub fn seal(&self, owner: &Owner, plaintext: &str) -> String {
        self.current.seal(owner, plaintext)
    }

    /// Which key sealed `sealed`, from its key id alone.
    pub fn key_use(&self, sealed: &str) -> Result<KeyUse, VaultError> {
        let key_id = sealed_key_id(sealed)?;
        Ok(if key_id == self.current.key_id {
            KeyUse::Current
        } else if self.old.as_ref().is_some_and(|old| old.key_id == key_id) {
            KeyUse::Old
        } else {
            KeyUse::Unknown(key_id.to_owned())
        })
    }

    /// Opens `sealed` for `owner` with the key its key id names, current or old. A value
    /// under any other key is [`VaultError::KeyMismatch`] (naming the current key).
    pub fn open(&self, owner: &Owner, sealed: &str) -> Result<SecretString, VaultError> {
        match (self.key_use(sealed)?, &self.old) {
            (KeyUse::Old, Some(old)) => old.open(owner, sealed),
            _ => self.current.open(owner, sealed),
        }
    }

    /// Re-seals a value under the current key: `Ok(None)` when it already is (nothing to
    /// do), `Ok(Some(new))` for a value under the old key, which is opened for `owner` and
    /// sealed again for the same owner. A value under an unknown key, or one that does not
    /// open for `owner`, is an error and nothing is re-sealed.
    pub fn reseal(&self, owner: &Owner, sealed: &str) -> Result<Option<String>, VaultError> {
        match self.key_use(sealed)? {
            KeyUse::Current => Ok(None),
            KeyUse::Old | KeyUse::Unknown(_) => {
                let opened = self.open(owner, sealed)?;
                Ok(Some(self.current.seal(owner, opened.expose())))
            }
        }
    }
}

impl From<InstanceKey> for Keyring {
    fn from(current: InstanceKey) -> Keyring {
        Keyring::new(current)
    }
}

/// The associated data binding a ciphertext to its owner and format version.
fn associated_data(owner: &Owner) -> String {
    format!("sluice:{SEALED_PREFIX}{owner}")
}

fn derive_key(password: &str, salt: &str, rounds: u32) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt.as_bytes(), rounds, key.as_mut());
    key
}

#[cfg(test)]
mod tests;
