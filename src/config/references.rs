//! Secret references: a datasource secret written as `env:NAME` or `file:/path` instead of a
//! sealed value, and the allowlist (`SLUICE_SECRET_REFERENCES`) that decides which ones a
//! catalog may use.
//!
//! The allowlist is a comma-separated list of patterns, each `env:NAME` or `file:/abs/path`,
//! where a trailing `*` matches any rest (for `env:`, any characters of a variable name; for
//! `file:`, any characters but `/`, so `file:/run/secrets/*` admits the files of that
//! directory and none below it). Unset: every reference is refused.
//!
//! Invariants:
//! - Pure: parsing and checking read nothing. Reading a referenced secret is the
//!   datasource pools' work, when a pool is built.
//! - A `SLUICE_*` variable is never readable by reference, whatever the allowlist says (an
//!   editor must never be able to send the instance password to an upstream), and neither
//!   is a file this instance reads a `SLUICE_*_FILE` secret from.
//! - A file reference is an absolute path without `.` or `..` parts, so a pattern's directory
//!   cannot be left by path tricks.
//! - Errors name the reference and why, never a value (a reference holds none).

use std::fmt;
use std::path::{Path, PathBuf};

/// Prefix of an environment-variable reference.
const ENV_PREFIX: &str = "env:";
/// Prefix of a file reference.
const FILE_PREFIX: &str = "file:";
/// Variables no reference may read.
const RESERVED_PREFIX: &str = "SLUICE_";

/// Whether a secret field's value is written as a reference (`env:...` or `file:...`), as
/// opposed to a sealed value or a plaintext.
pub fn is_reference(value: &str) -> bool {
    value.starts_with(ENV_PREFIX) || value.starts_with(FILE_PREFIX)
}

/// A well-formed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretReference {
    /// A variable of the process environment.
    Env(String),
    /// A file, read whole (less one trailing line ending).
    File(PathBuf),
}

impl fmt::Display for SecretReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretReference::Env(name) => write!(f, "{ENV_PREFIX}{name}"),
            SecretReference::File(path) => write!(f, "{FILE_PREFIX}{}", path.display()),
        }
    }
}

impl SecretReference {
    /// Parses `env:NAME` or `file:/abs/path`; the error says what is wrong with the form.
    pub fn parse(value: &str) -> Result<SecretReference, &'static str> {
        if let Some(name) = value.strip_prefix(ENV_PREFIX) {
            if !is_variable_name(name) {
                return Err("`env:` is followed by a variable name ([A-Za-z_][A-Za-z0-9_]*)");
            }
            return Ok(SecretReference::Env(name.to_owned()));
        }
        if let Some(path) = value.strip_prefix(FILE_PREFIX) {
            if !is_plain_absolute(path) {
                return Err(
                    "`file:` is followed by an absolute path without `.`, `..` or empty parts",
                );
            }
            return Ok(SecretReference::File(PathBuf::from(path)));
        }
        Err("a reference starts with `env:` or `file:`")
    }
}

/// Why a reference may not be used. Names the reference (never a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{reference}` is not a valid reference: {why}")]
    Malformed {
        reference: String,
        why: &'static str,
    },
    #[error(
        "`{reference}` is refused: secret references are off (SLUICE_SECRET_REFERENCES is not set); seal the secret with `sluice secret seal` or ask the admin to allow the reference"
    )]
    Off { reference: String },
    #[error("`{reference}` is refused: SLUICE_* variables are never readable by reference")]
    Reserved { reference: String },
    #[error(
        "`{reference}` is refused: it is a file this instance reads its own secret from (a SLUICE_*_FILE)"
    )]
    OwnSecretFile { reference: String },
    #[error(
        "`{reference}` is refused: it matches no pattern of SLUICE_SECRET_REFERENCES ({allowed})"
    )]
    NotAllowed { reference: String, allowed: String },
}

/// One allowlist pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Env { text: String, wildcard: bool },
    File { text: String, wildcard: bool },
}

impl Pattern {
    fn matches(&self, reference: &SecretReference) -> bool {
        match (self, reference) {
            (Pattern::Env { text, wildcard }, SecretReference::Env(name)) => {
                if *wildcard {
                    name.starts_with(text.as_str())
                } else {
                    name == text
                }
            }
            (Pattern::File { text, wildcard }, SecretReference::File(path)) => {
                let Some(path) = path.to_str() else {
                    return false;
                };
                if *wildcard {
                    path.strip_prefix(text.as_str())
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
                } else {
                    path == text
                }
            }
            _ => false,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (prefix, text, wildcard) = match self {
            Pattern::Env { text, wildcard } => (ENV_PREFIX, text, wildcard),
            Pattern::File { text, wildcard } => (FILE_PREFIX, text, wildcard),
        };
        write!(f, "{prefix}{text}{}", if *wildcard { "*" } else { "" })
    }
}

/// The allowlist of `SLUICE_SECRET_REFERENCES`, and the files no reference may name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretReferences {
    patterns: Vec<Pattern>,
    /// The files `SLUICE_*_FILE` secrets were read from.
    own_files: Vec<PathBuf>,
}

impl SecretReferences {
    /// Parses the allowlist; the error names the bad item and what is expected. An item
    /// naming a `SLUICE_*` variable is refused here too, so the mistake shows at start-up.
    pub fn parse(list: &str) -> Result<SecretReferences, String> {
        let mut patterns = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (body, wildcard) = match item.strip_suffix('*') {
                Some(body) => (body, true),
                None => (item, false),
            };
            if body.contains('*') {
                return Err(format!("`{item}`: `*` may only end a pattern"));
            }
            let pattern = if let Some(name) = body.strip_prefix(ENV_PREFIX) {
                let shape_ok = if wildcard {
                    name.is_empty() || is_variable_name(name)
                } else {
                    is_variable_name(name)
                };
                if !shape_ok {
                    return Err(format!(
                        "`{item}`: expected env:NAME or env:PREFIX* with a variable name"
                    ));
                }
                if name.to_ascii_uppercase().starts_with(RESERVED_PREFIX) {
                    return Err(format!(
                        "`{item}`: SLUICE_* variables are never readable by reference"
                    ));
                }
                Pattern::Env {
                    text: name.to_owned(),
                    wildcard,
                }
            } else if let Some(path) = body.strip_prefix(FILE_PREFIX) {
                let shape_ok = if wildcard {
                    path.ends_with('/') && is_plain_absolute(path.trim_end_matches('/'))
                        || path == "/"
                } else {
                    is_plain_absolute(path)
                };
                if !shape_ok {
                    return Err(format!(
                        "`{item}`: expected file:/absolute/path or file:/directory/* (no `.` or `..` parts)"
                    ));
                }
                Pattern::File {
                    text: path.to_owned(),
                    wildcard,
                }
            } else {
                return Err(format!("`{item}`: a pattern starts with `env:` or `file:`"));
            };
            patterns.push(pattern);
        }
        Ok(SecretReferences {
            patterns,
            own_files: Vec::new(),
        })
    }

    /// These references, refusing also `files` (where this instance's own secrets are read
    /// from).
    pub fn excluding_files(mut self, files: impl IntoIterator<Item = PathBuf>) -> Self {
        self.own_files.extend(files);
        self
    }

    /// The files this instance reads its own `SLUICE_*_FILE` secrets from.
    pub fn own_files(&self) -> &[PathBuf] {
        &self.own_files
    }

    /// Whether any reference is allowed at all.
    pub fn is_on(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Checks `value` (a secret field's text, already known to be a reference) against the
    /// allowlist: the reference to read, or why not.
    pub fn check(&self, value: &str) -> Result<SecretReference, ReferenceError> {
        let shown = crate::spec::checks::shown_name(value).into_owned();
        let reference = SecretReference::parse(value).map_err(|why| ReferenceError::Malformed {
            reference: shown.clone(),
            why,
        })?;
        if let SecretReference::Env(name) = &reference
            && name.to_ascii_uppercase().starts_with(RESERVED_PREFIX)
        {
            return Err(ReferenceError::Reserved { reference: shown });
        }
        if let SecretReference::File(path) = &reference
            && self.own_files.iter().any(|own| same_file(own, path))
        {
            return Err(ReferenceError::OwnSecretFile { reference: shown });
        }
        if self.patterns.is_empty() {
            return Err(ReferenceError::Off { reference: shown });
        }
        if !self.patterns.iter().any(|p| p.matches(&reference)) {
            let allowed = self
                .patterns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ReferenceError::NotAllowed {
                reference: shown,
                allowed,
            });
        }
        Ok(reference)
    }
}

/// The same path, lexically (both are absolute and plain once checked).
fn same_file(own: &Path, reference: &Path) -> bool {
    own == reference
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An absolute path whose parts are all named (no `.`, `..` or empty part).
fn is_plain_absolute(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    !rest.is_empty()
        && !path.contains('\0')
        && rest
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &str) -> SecretReferences {
        SecretReferences::parse(list).unwrap()
    }

    #[test]
    fn references_are_recognised_by_prefix() {
        assert!(is_reference("env:PG_PASSWORD"));
        assert!(is_reference("file:/run/secrets/pg"));
        assert!(!is_reference("enc:v1:0011223344556677:AAAA"));
        assert!(!is_reference("hunter2"));
    }

    #[test]
    fn allowlist_admits_only_what_it_names() {
        let refs = allow("env:PG_*, file:/run/secrets/*, env:API_TOKEN, file:/etc/sluice/pg.pw");
        for ok in [
            "env:PG_PASSWORD",
            "env:PG_",
            "env:API_TOKEN",
            "file:/run/secrets/pg",
            "file:/etc/sluice/pg.pw",
        ] {
            assert!(refs.check(ok).is_ok(), "{ok}");
        }
        for refused in [
            "env:API_TOKEN2",
            "env:PGX",
            "env:HOME",
            "file:/run/secrets/sub/pg",
            "file:/etc/sluice/other",
            "file:/etc/passwd",
        ] {
            assert!(
                matches!(refs.check(refused), Err(ReferenceError::NotAllowed { .. })),
                "{refused}: {:?}",
                refs.check(refused)
            );
        }
    }

    #[test]
    fn path_tricks_are_malformed() {
        let refs = allow("file:/run/secrets/*");
        for bad in [
            "file:/run/secrets/../../etc/shadow",
            "file:/run/secrets/./pg",
            "file:run/secrets/pg",
            "file:/run//secrets/pg",
            "file:/run/secrets/",
            "file:",
            "env:",
            "env:1ABC",
            "env:A-B",
        ] {
            assert!(
                matches!(refs.check(bad), Err(ReferenceError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn sluice_variables_are_never_readable() {
        let refs = allow("env:*");
        assert!(refs.check("env:PG_PASSWORD").is_ok());
        for reserved in [
            "env:SLUICE_ENCRYPTION_PASSWORD",
            "env:sluice_encryption_salt",
            "env:SLUICE_ADMIN_TOKEN",
        ] {
            let error = refs.check(reserved).unwrap_err();
            assert!(
                matches!(error, ReferenceError::Reserved { .. }),
                "{reserved}"
            );
            assert!(error.to_string().contains("never readable"), "{error}");
        }
        for bad in [
            "env:SLUICE_*",
            "env:SLUICE_ENCRYPTION_PASSWORD",
            "env:sluice_x",
        ] {
            let error = SecretReferences::parse(bad).unwrap_err();
            assert!(error.contains("never readable"), "{error}");
        }
    }

    #[test]
    fn own_secret_files_are_refused() {
        let refs = allow("file:/run/secrets/*")
            .excluding_files([PathBuf::from("/run/secrets/sluice_password")]);
        assert!(matches!(
            refs.check("file:/run/secrets/sluice_password"),
            Err(ReferenceError::OwnSecretFile { .. })
        ));
        assert!(refs.check("file:/run/secrets/pg").is_ok());
    }

    #[test]
    fn unset_allowlist_refuses_everything() {
        let refs = SecretReferences::default();
        assert!(!refs.is_on());
        let error = refs.check("env:PG_PASSWORD").unwrap_err();
        assert!(matches!(error, ReferenceError::Off { .. }));
        assert!(
            error
                .to_string()
                .contains("SLUICE_SECRET_REFERENCES is not set")
        );
        assert_eq!(allow(" , "), SecretReferences::default());
    }

    #[test]
    fn bad_allowlists_name_the_item() {
        for (list, names) in [
            ("env:PG*X", "env:PG*X"),
            ("http:x", "http:x"),
            ("file:relative/*", "file:relative/*"),
            ("file:/run/secrets*", "file:/run/secrets*"),
            ("file:/run/../etc/*", "file:/run/../etc/*"),
            ("env:A-B", "env:A-B"),
        ] {
            let error = SecretReferences::parse(list).unwrap_err();
            assert!(error.contains(names), "{list}: {error}");
        }
    }
}
