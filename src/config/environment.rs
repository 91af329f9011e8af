//! Where the variables come from: the process environment, an env file in Docker's format
//! (`sluice --env-file FILE`, [`super::env_file`]), and, for each secret, `NAME_FILE`: the
//! path of a file holding the value (Docker and Kubernetes secrets).
//!
//! Precedence: a variable set in the process environment wins over the env file, even when
//! it is set to an empty value, so an operator can override one line of a shared file
//! (as `docker run -e` does over `--env-file`). Among the env file's lines, the last one for
//! a name wins. A line holding a name alone passes the process's value through, which
//! the process environment already does. Only `SLUICE_*` names are read; other names in the
//! file are ignored (the binary cannot hand them on: it never calls `set_var`).
//!
//! Owns every read of the outside world that configuration does: the process environment,
//! the env file and the secret files. Must never print a value from any of them: errors
//! name the variable, the file and the line, and secret files' contents are held zeroised.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::env_file;
use super::variables::{SECRET_VARIABLES, secret_file_var, unknown_variables};
use super::{Config, ConfigError, from_lookup};

/// Largest secret file read: far above any key, token or URL, and it keeps a mistaken path
/// (a device, a log file) from being read whole.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// The `SLUICE_*` variables as Sluice sees them, after precedence and secret files. Build
/// it once in `main` with [`Environment::load`], then call [`Environment::config`].
pub struct Environment {
    /// Name -> value. A secret's `NAME_FILE` is replaced by `NAME`, holding the file's text.
    values: HashMap<String, Zeroizing<String>>,
    /// Every `SLUICE_*` name that was set and where, for [`Environment::unknown_variables`].
    origins: BTreeMap<String, Origin>,
    /// The env file's path, for messages.
    env_file: Option<PathBuf>,
    /// The files `NAME_FILE` secrets were read from, which no secret reference may name.
    secret_files: Vec<PathBuf>,
}

/// Where a variable was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Process,
    /// A line of the env file.
    File(usize),
}

impl Environment {
    /// The process environment over `env_file` (when given), with secret files read.
    pub fn load(env_file: Option<&Path>) -> Result<Environment, ConfigError> {
        let bytes = env_file
            .map(|path| {
                std::fs::read(path).map_err(|source| ConfigError::EnvFileRead {
                    path: path.to_owned(),
                    source,
                })
            })
            .transpose()?;
        let file = env_file.zip(bytes.as_deref());
        Environment::from_parts(std::env::vars_os(), file)
    }

    /// [`Environment::load`] over given parts: `process` as `std::env::vars_os` yields it,
    /// and the env file's path and bytes. Secret files are read from disk.
    pub fn from_parts(
        process: impl IntoIterator<Item = (OsString, OsString)>,
        file: Option<(&Path, &[u8])>,
    ) -> Result<Environment, ConfigError> {
        let mut values: HashMap<String, Zeroizing<String>> = HashMap::new();
        let mut origins = BTreeMap::new();
        let mut file_path = None;
        let mut secret_files = Vec::new();
        if let Some((path, bytes)) = file {
            let entries = env_file::parse(bytes).map_err(|source| ConfigError::EnvFile {
                path: path.to_owned(),
                source,
            })?;
            file_path = Some(path.to_owned());
            for entry in entries {
                // A name alone passes the process's value through: the loop below sets it.
                if let (true, Some(value)) = (is_ours(&entry.name), entry.value) {
                    origins.insert(entry.name.clone(), Origin::File(entry.line));
                    values.insert(entry.name, Zeroizing::new(value));
                }
            }
        }
        for (name, value) in process {
            let Some(name) = name.to_str().filter(|n| is_ours(n)) else {
                continue;
            };
            origins.insert(name.to_owned(), Origin::Process);
            match value.into_string() {
                Ok(value) => {
                    values.insert(name.to_owned(), Zeroizing::new(value));
                }
                Err(_) if unknown_variables([name]).is_empty() => {
                    return Err(ConfigError::NotUnicode {
                        var: name.to_owned(),
                    });
                }
                // An unknown name is reported as such; its value is never read.
                Err(_) => {}
            }
        }
        for &var in SECRET_VARIABLES {
            let file_var = secret_file_var(var);
            let Some(path) = values.remove(&file_var) else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            if values.get(var).is_some_and(|v| !v.is_empty()) {
                return Err(ConfigError::SecretTwice { var });
            }
            let secret = read_secret_file(var, Path::new(path))?;
            values.insert(var.to_owned(), secret);
            secret_files.push(PathBuf::from(path));
        }
        Ok(Environment {
            values,
            origins,
            env_file: file_path,
            secret_files,
        })
    }

    /// The configuration these variables give.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let mut config = from_lookup(|name| self.values.get(name).map(|v| v.to_string()))?;
        // A secret reference may never name a file this instance reads its own secrets from
        // (`file:/run/secrets/*` would otherwise admit the instance password's file).
        config.secret_references = config
            .secret_references
            .excluding_files(self.secret_files.iter().cloned());
        Ok(config)
    }

    /// The `SLUICE_*` names set that Sluice does not read (typos such as `SLUICE_MAX_ROW`),
    /// each with where it was set: `SLUICE_MAX_ROW (docker.env, line 12)`.
    pub fn unknown_variables(&self) -> Vec<String> {
        unknown_variables(self.origins.keys().map(String::as_str))
            .into_iter()
            .map(|name| match (self.origins.get(&name), &self.env_file) {
                (Some(Origin::File(line)), Some(path)) => {
                    format!("{name} ({}, line {line})", path.display())
                }
                _ => format!("{name} (environment)"),
            })
            .collect()
    }
}

fn is_ours(name: &str) -> bool {
    name.starts_with("SLUICE_")
}

/// A secret file's text, less one trailing line ending (what `echo` and most editors add).
fn read_secret_file(var: &'static str, path: &Path) -> Result<Zeroizing<String>, ConfigError> {
    let problem = |reason: &'static str, source: Option<std::io::Error>| ConfigError::SecretFile {
        var,
        path: path.to_owned(),
        reason,
        source,
    };
    let mut bytes = Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| problem("cannot read the file", Some(e)))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(problem("the file is larger than 64 KiB", None));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| problem("the file is not UTF-8", None))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(problem("the file is empty", None));
    }
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PASSWORD: &str = "k3Jx9wQv-T2mZp7LrN4sYb8HdFc6GaE1uW0oViXe";
    const SALT: &str = "Qm7Rt2Wx9Lp4Kv8Z";

    fn process(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn environment(pairs: &[(&str, &str)], file: Option<&str>) -> Result<Environment, ConfigError> {
        Environment::from_parts(
            process(pairs),
            file.map(|text| (Path::new("docker.env"), text.as_bytes())),
        )
    }

    fn config(pairs: &[(&str, &str)], file: Option<&str>) -> Config {
        environment(pairs, file)
            .and_then(|env| env.config())
            .unwrap_or_else(|e| panic!("{pairs:?} {file:?}: {e}"))
    }

    fn error(pairs: &[(&str, &str)], file: Option<&str>) -> String {
        match environment(pairs, file).and_then(|env| env.config()) {
            Ok(_) => panic!("{pairs:?} {file:?}: expected an error"),
            Err(e) => chain(&e),
        }
    }

    /// The error and its causes on one line, as `main` prints them.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    fn secret_file(dir: &tempfile::TempDir, name: &str, contents: &[u8]) -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_env_file_is_read_literally() {
        let file = "SLUICE_MAIL_FROM=Sluice <sluice@example.com>\n\
                    SLUICE_SMTP_URL=smtp://u:p$ss\"w@127.0.0.1:25\n\
                    SLUICE_PUBLIC_URL=https://sluice.example.com\n\
                    SLUICE_MAX_ROWS=5\r\n\
                    # SLUICE_POOL_SIZE=3\n\
                    OTHER=ignored\n";
        let c = config(&[], Some(file));
        assert_eq!(
            c.auth.mail_from.as_deref(),
            Some("Sluice <sluice@example.com>")
        );
        assert_eq!(
            c.auth.smtp_url.as_ref().map(|s| s.expose().to_owned()),
            Some("smtp://u:p$ss\"w@127.0.0.1:25".to_owned())
        );
        assert_eq!(c.max_rows, 5);
        assert_eq!(c.pool_size, 16);
    }

    #[test]
    fn the_process_environment_wins_even_when_empty() {
        let file =
            "SLUICE_MAX_ROWS=5\nSLUICE_POOL_SIZE=3\nSLUICE_QUERY_TIMEOUT_MS=7\nSLUICE_MAX_ROWS=6\n";
        let c = config(
            &[("SLUICE_POOL_SIZE", "4"), ("SLUICE_QUERY_TIMEOUT_MS", "")],
            Some(file),
        );
        assert_eq!(c.max_rows, 6, "the last line for a name wins");
        assert_eq!(c.pool_size, 4, "the process environment wins");
        assert_eq!(
            c.query_timeout,
            Duration::from_millis(30_000),
            "set empty in the process: the default, not the file's value"
        );
        // A name alone takes the process's value, or nothing.
        let c = config(
            &[("SLUICE_POOL_SIZE", "9")],
            Some("SLUICE_POOL_SIZE\nSLUICE_MAX_ROWS\n"),
        );
        assert_eq!((c.pool_size, c.max_rows), (9, 10_000));
    }

    #[test]
    fn malformed_env_files_name_the_file_and_line() {
        let message = error(
            &[],
            Some("SLUICE_MAX_ROWS=5\nSLUICE_ADMIN_TOKEN =hunter2hunter2\n"),
        );
        assert_eq!(
            message,
            "the env file docker.env is malformed: line 2: the variable name \"SLUICE_ADMIN_TOKEN \" contains whitespace"
        );
        let missing = Environment::load(Some(Path::new("/nonexistent/docker.env")))
            .err()
            .map(|e| chain(&e))
            .unwrap();
        assert!(
            missing.starts_with("cannot read the env file /nonexistent/docker.env: "),
            "{missing}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let password = secret_file(&dir, "password", format!("{PASSWORD}\n").as_bytes());
        let salt = secret_file(&dir, "salt", format!("{SALT}\r\n").as_bytes());
        let token = secret_file(&dir, "token", b"t0k3n-t0k3n-t0k3n-t0k3n-t0k3n-t0k3n");
        let smtp = secret_file(&dir, "smtp", b"smtp://u:p@127.0.0.1:25\n");
        let metrics = secret_file(&dir, "metrics", b"m3tr1cs-m3tr1cs-m3tr1cs-m3tr1cs-m3\n");
        let c = config(
            &[
                ("SLUICE_ENCRYPTION_PASSWORD_FILE", &password),
                ("SLUICE_ADMIN_TOKEN_FILE", &token),
                ("SLUICE_METRICS_TOKEN_FILE", &metrics),
                // Empty means unset, so the _FILE form may be used beside it.
                ("SLUICE_ADMIN_TOKEN", ""),
                ("SLUICE_SMTP_URL_FILE", &smtp),
            ],
            Some(&format!(
                "SLUICE_ENCRYPTION_SALT_FILE={salt}\nSLUICE_MAIL_FROM=a@example.com\nSLUICE_PUBLIC_URL=http://x\n"
            )),
        );
        assert_eq!(c.encryption_password.unwrap().expose(), PASSWORD);
        assert_eq!(c.encryption_salt.unwrap().expose(), SALT);
        assert_eq!(
            c.admin_token.unwrap().expose(),
            "t0k3n-t0k3n-t0k3n-t0k3n-t0k3n-t0k3n"
        );
        assert_eq!(c.auth.smtp_url.unwrap().expose(), "smtp://u:p@127.0.0.1:25");
        assert_eq!(
            c.metrics_token.unwrap().expose(),
            "m3tr1cs-m3tr1cs-m3tr1cs-m3tr1cs-m3"
        );
        // A blank _FILE is unset, like any other variable.
        let c = config(&[("SLUICE_ADMIN_TOKEN_FILE", "  ")], None);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn secret_file_problems_name_the_variable_and_never_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(&dir, "token", b"hunter2-hunter2-hunter2-hunter2-hunter2");
        let empty = secret_file(&dir, "empty", b"\n");
        let binary = secret_file(&dir, "binary", b"hunter2\xff");
        let big = secret_file(&dir, "big", &vec![b'h'; 64 * 1024 + 1]);
        let missing = dir.path().join("missing").display().to_string();
        // (process environment, env file, the one-line error)
        type Case<'a> = (Vec<(&'a str, &'a str)>, Option<String>, String);
        let cases: Vec<Case> = vec![
            (
                vec![(
                    "SLUICE_ADMIN_TOKEN",
                    "hunter2-hunter2-hunter2-hunter2-hunter2",
                )],
                Some(format!("SLUICE_ADMIN_TOKEN_FILE={token}\n")),
                "SLUICE_ADMIN_TOKEN and SLUICE_ADMIN_TOKEN_FILE are both set; set one of them"
                    .into(),
            ),
            (
                vec![("SLUICE_ENCRYPTION_SALT_FILE", &missing)],
                None,
                format!(
                    "SLUICE_ENCRYPTION_SALT_FILE={missing}: cannot read the file: No such file or directory (os error 2)"
                ),
            ),
            (
                vec![("SLUICE_ENCRYPTION_PASSWORD_FILE", &empty)],
                None,
                format!("SLUICE_ENCRYPTION_PASSWORD_FILE={empty}: the file is empty"),
            ),
            (
                vec![("SLUICE_SMTP_URL_FILE", &binary)],
                None,
                format!("SLUICE_SMTP_URL_FILE={binary}: the file is not UTF-8"),
            ),
            (
                vec![("SLUICE_ADMIN_TOKEN_FILE", &big)],
                None,
                format!("SLUICE_ADMIN_TOKEN_FILE={big}: the file is larger than 64 KiB"),
            ),
        ];
        for (pairs, file, expected) in cases {
            let message = error(&pairs, file.as_deref());
            assert_eq!(message, expected);
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn unknown_names_are_reported_with_where_they_were_set() {
        let env = environment(
            &[
                ("SLUICE_LISTEN", "127.0.0.1:1"),
                ("SLUICE_MAX_ROW", "5"),
                ("SLUICE_ADMIN_TOKEN_FILE", ""),
                ("PATH", "/bin"),
            ],
            Some("SLUICE_POOL_SIZ=3\nSLUICE_MAX_ROW=6\nSLUICE_SMTP_URL_FILE=\nHOME=/\n"),
        )
        .unwrap();
        assert_eq!(
            env.unknown_variables(),
            [
                "SLUICE_MAX_ROW (environment)",
                "SLUICE_POOL_SIZ (docker.env, line 1)"
            ]
        );
    }

    #[test]
    fn values_that_are_not_unicode() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(b"\xff".to_vec());
        let env = Environment::from_parts([(OsString::from("SLUICE_MAX_ROWS"), bad.clone())], None);
        assert_eq!(
            env.err().map(|e| e.to_string()).as_deref(),
            Some("SLUICE_MAX_ROWS is not valid UTF-8")
        );
        let env = Environment::from_parts([(OsString::from("SLUICE_TYPO"), bad.clone())], None);
        assert_eq!(
            env.unwrap().unknown_variables(),
            ["SLUICE_TYPO (environment)"]
        );
        // Names that are not Sluice's are not looked at.
        Environment::from_parts([(OsString::from("LANG"), bad)], None).unwrap();
    }

    /// Every variable read as a secret is in SECRET_VARIABLES (`Env::secret` asserts it),
    /// so reading the defaults with every secret set goes through each assertion.
    #[test]
    fn every_secret_is_listed() {
        let set: Vec<(&str, &str)> = SECRET_VARIABLES.iter().map(|v| (*v, "x")).collect();
        let _ = environment(&set, None).unwrap().config();
    }
}
