//! Unit tests for configuration parsing: every case goes through `from_lookup` with a map.

use std::collections::HashMap;

use super::*;

const EXAMPLE: &str = include_str!("../../docker.env.example");
const GOOD_PASSWORD: &str = "k3Jx9wQv-T2mZp7LrN4sYb8HdFc6GaE1uW0oViXe";
const GOOD_SALT: &str = "Qm7Rt2Wx9Lp4Kv8Z";

/// Variables as `(name, value)` pairs.
type Pairs<'a> = &'a [(&'a str, &'a str)];

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    from_lookup(|name| map.get(name).cloned())
}

fn ok(pairs: &[(&str, &str)]) -> Config {
    parse(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

/// `NAME=value` lines of docker.env.example, with the line before each.
fn example_entries() -> Vec<(&'static str, &'static str, &'static str)> {
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.starts_with('#') && !line.trim().is_empty())
        .map(|(i, line)| {
            let (name, value) = line.split_once('=').expect("a NAME=value line");
            (name, value, if i == 0 { "" } else { lines[i - 1] })
        })
        .collect()
}

#[test]
fn defaults() {
    let c = ok(&[]);
    assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
    assert!(c.encryption_password.is_none());
    assert!(c.encryption_salt.is_none());
    assert_eq!(c.data_dir, PathBuf::from("./sluice-data"));
    assert_eq!(c.metadata_db, None);
    assert_eq!(c.metadata_path(), PathBuf::from("./sluice-data/sluice.db"));
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.max_body_bytes, 65536);
    assert_eq!(c.header_read_timeout, Duration::from_millis(10_000));
    assert_eq!(c.body_read_timeout, Duration::from_millis(5_000));
    assert_eq!(c.max_connections, 1024);
    assert_eq!(c.max_connections_per_ip, 256);
    assert_eq!(c.listen_backlog, 1024);
    assert_eq!(c.query_timeout, Duration::from_millis(30_000));
    assert_eq!(c.max_rows, 10_000);
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.pool_size, 16);
    assert_eq!(c.pool_wait, Duration::from_millis(5_000));
    assert_eq!(c.public_url, None);
    c.validate().unwrap();
}

#[test]
fn documented_defaults_are_the_defaults() {
    let explicit: Vec<(&str, &str)> = VARIABLES.iter().map(|(n, d, _)| (*n, *d)).collect();
    assert_eq!(format!("{:?}", ok(&explicit)), format!("{:?}", ok(&[])));
}

#[test]
fn blank_values_mean_unset() {
    let blank: Vec<(&str, &str)> = VARIABLES.iter().map(|(n, _, _)| (*n, "  ")).collect();
    let c = ok(&blank);
    // Secrets are not trimmed: a blank secret stays, for check_strength to refuse loudly.
    assert!(c.encryption_password.is_some());
    let c = Config {
        encryption_password: None,
        encryption_salt: None,
        encryption_password_old: None,
        encryption_salt_old: None,
        ..c
    };
    assert_eq!(format!("{c:?}"), format!("{:?}", ok(&[])));
    let empty: Vec<(&str, &str)> = VARIABLES.iter().map(|(n, _, _)| (*n, "")).collect();
    assert_eq!(format!("{:?}", ok(&empty)), format!("{:?}", ok(&[])));
}

#[test]
fn valid_values() {
    let c = ok(&[
        ("SLUICE_LISTEN", " [::1]:9000 "),
        ("SLUICE_DATA_DIR", "/var/lib/sluice"),
        ("SLUICE_LOG_FORMAT", "JSON"),
        ("SLUICE_LOG_LEVEL", "Debug"),
        ("SLUICE_MAX_BODY_BYTES", "1024"),
        ("SLUICE_HEADER_READ_TIMEOUT_MS", "1"),
        ("SLUICE_BODY_READ_TIMEOUT_MS", "250"),
        ("SLUICE_MAX_CONNECTIONS", "0"),
        ("SLUICE_MAX_CONNECTIONS_PER_IP", "8"),
        ("SLUICE_LISTEN_BACKLOG", "65535"),
        ("SLUICE_QUERY_TIMEOUT_MS", "86400000"),
        ("SLUICE_MAX_ROWS", "1"),
        ("SLUICE_SHUTDOWN_GRACE_SECS", "0"),
        ("SLUICE_POOL_SIZE", "1"),
        ("SLUICE_POOL_WAIT_MS", "0"),
        ("SLUICE_PUBLIC_URL", "https://sluice.example.com/base//"),
    ]);
    assert_eq!(c.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(
        c.metadata_path(),
        PathBuf::from("/var/lib/sluice/sluice.db")
    );
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.max_body_bytes, 1024);
    assert_eq!(c.header_read_timeout, Duration::from_millis(1));
    assert_eq!(c.body_read_timeout, Duration::from_millis(250));
    assert_eq!(c.max_connections, 0);
    assert_eq!(c.max_connections_per_ip, 8);
    assert_eq!(c.listen_backlog, 65535);
    assert_eq!(c.query_timeout, Duration::from_secs(86_400));
    assert_eq!(c.max_rows, 1);
    assert_eq!(c.shutdown_grace, Duration::ZERO);
    assert_eq!(c.pool_size, 1);
    assert_eq!(c.pool_wait, Duration::ZERO);
    assert_eq!(
        c.public_url.as_deref(),
        Some("https://sluice.example.com/base")
    );

    let c = ok(&[
        ("SLUICE_METADATA_DB", "/srv/meta.db"),
        ("SLUICE_PUBLIC_URL", "http://localhost:8080"),
    ]);
    assert_eq!(c.metadata_path(), PathBuf::from("/srv/meta.db"));
    assert_eq!(c.public_url.as_deref(), Some("http://localhost:8080"));
}

#[test]
fn invalid_values_name_the_variable_and_expected_form() {
    let cases = [
        ("SLUICE_LISTEN", "8080", "a socket address"),
        ("SLUICE_LISTEN", "localhost:8080", "a socket address"),
        ("SLUICE_LISTEN", "0.0.0.0:99999", "a socket address"),
        ("SLUICE_LOG_FORMAT", "yaml", "text or json"),
        (
            "SLUICE_LOG_LEVEL",
            "verbose",
            "one of error, warn, info, debug, trace",
        ),
        ("SLUICE_LOG_LEVEL", "sluice=debug", "one of error"),
        ("SLUICE_MAX_BODY_BYTES", "1023", "at least 1024"),
        ("SLUICE_MAX_BODY_BYTES", "64k", "a whole number of bytes"),
        ("SLUICE_MAX_BODY_BYTES", "-1", "a whole number of bytes"),
        ("SLUICE_HEADER_READ_TIMEOUT_MS", "0", "from 1 to 86400000"),
        ("SLUICE_HEADER_READ_TIMEOUT_MS", "1.5", "milliseconds"),
        ("SLUICE_BODY_READ_TIMEOUT_MS", "0", "from 1 to 86400000"),
        ("SLUICE_BODY_READ_TIMEOUT_MS", "5s", "milliseconds"),
        ("SLUICE_MAX_CONNECTIONS", "-1", "(0: no cap)"),
        ("SLUICE_MAX_CONNECTIONS", "lots", "connections"),
        ("SLUICE_MAX_CONNECTIONS_PER_IP", "1.5", "(0: no cap)"),
        ("SLUICE_LISTEN_BACKLOG", "0", "from 1 to 65535"),
        ("SLUICE_LISTEN_BACKLOG", "65536", "from 1 to 65535"),
        ("SLUICE_QUERY_TIMEOUT_MS", "86400001", "from 1 to 86400000"),
        ("SLUICE_QUERY_TIMEOUT_MS", "30s", "milliseconds"),
        ("SLUICE_MAX_ROWS", "0", "at least 1"),
        (
            "SLUICE_MAX_ROWS",
            "99999999999999999999999",
            "a whole number",
        ),
        ("SLUICE_SHUTDOWN_GRACE_SECS", "86401", "from 0 to 86400"),
        ("SLUICE_SHUTDOWN_GRACE_SECS", "-5", "seconds"),
        ("SLUICE_POOL_SIZE", "0", "at least 1"),
        ("SLUICE_POOL_SIZE", "many", "connections"),
        ("SLUICE_POOL_WAIT_MS", "86400001", "from 0 to 86400000"),
        ("SLUICE_POOL_WAIT_MS", "5s", "milliseconds"),
        ("SLUICE_METRICS_LISTEN", "9464", "a socket address"),
        (
            "SLUICE_METRICS_LISTEN",
            "localhost:9464",
            "a socket address",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "sluice.example.com",
            "an http:// or https:// URL",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "ftp://sluice.example.com",
            "an http:// or https:// URL",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "https://",
            "an http:// or https:// URL",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "https:///path",
            "an http:// or https:// URL",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "https://a b",
            "an http:// or https:// URL",
        ),
        (
            "SLUICE_PUBLIC_URL",
            "https://x/?q=1",
            "an http:// or https:// URL",
        ),
    ];
    for (var, value, expected) in cases {
        let err = match parse(&[(var, value)]) {
            Err(err @ ConfigError::Invalid { .. }) => err,
            other => panic!("{var}={value:?}: expected Invalid, got {other:?}"),
        };
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{var}={:?} is invalid: expected ", value.trim())),
            "{text}"
        );
        assert!(text.contains(expected), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn metrics_are_off_unless_a_listener_or_a_token_is_set() {
    let c = ok(&[]);
    assert!(c.metrics_listen.is_none() && c.metrics_token.is_none());
    let token = "m".repeat(32);
    let c = ok(&[
        ("SLUICE_METRICS_LISTEN", " 127.0.0.1:9464 "),
        ("SLUICE_METRICS_TOKEN", &token),
    ]);
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.metrics_token.as_ref().unwrap().expose(), token);
    assert!(!format!("{c:?}").contains(&token));
    c.validate().unwrap();
    // A short token is refused without being quoted.
    let text = parse(&[("SLUICE_METRICS_TOKEN", "short-metrics-token")])
        .unwrap_err()
        .to_string();
    assert!(
        text.starts_with("SLUICE_METRICS_TOKEN=\"(hidden)\" is invalid")
            && text.contains("at least 32 characters")
            && !text.contains("short-metrics-token"),
        "{text}"
    );
    // The metrics listener needs a port of its own.
    for (listen, metrics) in [
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
    ] {
        let text = ok(&[
            ("SLUICE_LISTEN", listen),
            ("SLUICE_METRICS_LISTEN", metrics),
        ])
        .validate()
        .unwrap_err()
        .to_string();
        assert!(text.contains("SLUICE_METRICS_LISTEN"), "{text}");
    }
    for (listen, metrics) in [
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        ("0.0.0.0:8080", "127.0.0.1:9464"),
        ("127.0.0.1:0", "127.0.0.1:0"),
    ] {
        ok(&[
            ("SLUICE_LISTEN", listen),
            ("SLUICE_METRICS_LISTEN", metrics),
        ])
        .validate()
        .unwrap();
    }
}

#[test]
fn parse_errors_keep_their_cause() {
    let err = parse(&[("SLUICE_POOL_SIZE", "many")]).unwrap_err();
    assert!(std::error::Error::source(&err).is_some());
    let err = parse(&[("SLUICE_POOL_SIZE", "0")]).unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn secrets_are_kept_verbatim_and_redacted() {
    let c = ok(&[
        ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
        ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
    ]);
    assert_eq!(
        c.encryption_password.as_ref().unwrap().expose(),
        GOOD_PASSWORD
    );
    assert_eq!(c.encryption_salt.as_ref().unwrap().expose(), GOOD_SALT);
    let debug = format!("{c:?}");
    assert!(
        !debug.contains(GOOD_PASSWORD) && !debug.contains(GOOD_SALT),
        "{debug}"
    );
    c.validate().unwrap();

    let padded = format!("{GOOD_PASSWORD}\n");
    let c = ok(&[
        ("SLUICE_ENCRYPTION_PASSWORD", &padded),
        ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
    ]);
    assert_eq!(c.encryption_password.as_ref().unwrap().expose(), padded);
    let text = c.validate().unwrap_err().to_string();
    assert!(text.contains("whitespace"), "{text}");
}

#[test]
fn validate_table() {
    let cases: [(Pairs, Option<&str>); 6] = [
        (&[], None),
        (
            &[
                ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
                ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
            ],
            None,
        ),
        (
            &[("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD)],
            Some("SLUICE_ENCRYPTION_PASSWORD is set but SLUICE_ENCRYPTION_SALT is not"),
        ),
        (
            &[("SLUICE_ENCRYPTION_SALT", GOOD_SALT)],
            Some("SLUICE_ENCRYPTION_SALT is set but SLUICE_ENCRYPTION_PASSWORD is not"),
        ),
        (
            &[
                ("SLUICE_ENCRYPTION_PASSWORD", "short"),
                ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
            ],
            Some("SLUICE_ENCRYPTION_PASSWORD is too short"),
        ),
        (
            &[
                ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
                ("SLUICE_ENCRYPTION_SALT", "replace-me-with-a-salt"),
            ],
            Some("SLUICE_ENCRYPTION_SALT is a placeholder"),
        ),
    ];
    for (pairs, expected) in cases {
        match (ok(pairs).validate(), expected) {
            (Ok(()), None) => {}
            (Err(err), Some(prefix)) => {
                let text = err.to_string();
                assert!(text.starts_with(prefix), "{text}");
                assert!(text.contains("sluice keygen"), "{text}");
                assert!(!text.contains(GOOD_PASSWORD) && !text.contains(GOOD_SALT));
            }
            (result, expected) => panic!("{pairs:?}: expected {expected:?}, got {result:?}"),
        }
    }
}

#[test]
fn instance_key_requires_strong_values() {
    let missing = [
        (&[][..], "SLUICE_ENCRYPTION_PASSWORD is not set"),
        (
            &[("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD)][..],
            "SLUICE_ENCRYPTION_SALT is not set",
        ),
    ];
    for (pairs, prefix) in missing {
        let text = ok(pairs).instance_key().unwrap_err().to_string();
        assert!(text.starts_with(prefix), "{text}");
        assert!(text.contains("run `sluice keygen`"), "{text}");
    }
    let weak = ok(&[
        ("SLUICE_ENCRYPTION_PASSWORD", vault::PLACEHOLDER_PASSWORD),
        ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
    ]);
    assert!(matches!(
        weak.instance_key(),
        Err(ConfigError::Vault(VaultError::Weak(_)))
    ));
}

#[test]
fn instance_key_derives_from_the_password_and_salt() {
    // One full-strength derivation; the key id is the known answer for these inputs (the
    // vault tests pin it too, computed independently).
    let c = ok(&[
        ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
        ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
    ]);
    assert_eq!(c.instance_key().unwrap().key_id(), "51ccdb07a40b75a0");
}

#[test]
fn every_variable_is_documented_in_docker_env_example() {
    let entries = example_entries();
    for (name, default, description) in VARIABLES {
        assert!(
            !description.is_empty() && !description.contains('\n'),
            "{name}"
        );
        let Some((_, value, previous)) = entries.iter().find(|(n, _, _)| n == name) else {
            panic!("{name} is missing from docker.env.example");
        };
        assert!(
            previous.starts_with('#'),
            "{name} needs a comment line above it in docker.env.example"
        );
        match *name {
            ENCRYPTION_PASSWORD => assert_eq!(*value, vault::PLACEHOLDER_PASSWORD),
            ENCRYPTION_SALT => assert_eq!(*value, vault::PLACEHOLDER_SALT),
            _ => assert_eq!(
                value, default,
                "{name}: docker.env.example shows another default"
            ),
        }
    }
    for (name, _, _) in &entries {
        assert!(
            VARIABLES.iter().any(|(known, _, _)| known == name),
            "docker.env.example documents {name}, which Sluice does not read"
        );
    }
    assert_eq!(entries.len(), VARIABLES.len(), "a variable is listed twice");
}

#[test]
fn docker_env_example_parses_but_its_placeholders_are_refused() {
    let entries = example_entries();
    let pairs: Vec<(&str, &str)> = entries.iter().map(|(n, v, _)| (*n, *v)).collect();
    let c = ok(&pairs);
    let text = c.validate().unwrap_err().to_string();
    assert!(
        text.starts_with("SLUICE_ENCRYPTION_PASSWORD is a placeholder"),
        "{text}"
    );
    assert!(
        vault::check_strength(vault::PLACEHOLDER_PASSWORD, GOOD_SALT).is_err()
            && vault::check_strength(GOOD_PASSWORD, vault::PLACEHOLDER_SALT).is_err()
    );
}

#[test]
fn unknown_variables_are_reported() {
    let names = [
        "SLUICE_LISTEN",
        "SLUICE_MAX_ROW",
        "PATH",
        "SLUICE_POOL_SIZE",
        "SLUICE_",
        // Secrets may come from files; other variables may not.
        "SLUICE_ADMIN_TOKEN_FILE",
        "SLUICE_ENCRYPTION_SALT_FILE",
        "SLUICE_LISTEN_FILE",
    ];
    assert_eq!(
        unknown_variables(names),
        ["SLUICE_MAX_ROW", "SLUICE_", "SLUICE_LISTEN_FILE"]
    );
}

#[test]
fn errors_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ConfigError>();
    assert_send_sync::<Config>();
}

#[test]
fn acme_settings_are_parsed_checked_and_exclusive_with_certificate_files() {
    assert_eq!(ok(&[]).acme, None);
    assert_eq!(ok(&[("SLUICE_ACME_DOMAINS", " , ")]).acme, None);
    let c = ok(&[
        (
            "SLUICE_ACME_DOMAINS",
            "API.example.com, www.example.com., api.example.com",
        ),
        ("SLUICE_ACME_CONTACT", "mailto:ops@example.com"),
        ("SLUICE_ACME_CA_FILE", "/etc/ca.pem"),
    ]);
    let acme = c.acme.clone().unwrap();
    assert_eq!(acme.domains, ["api.example.com", "www.example.com"]);
    assert_eq!(acme.contact.as_deref(), Some("mailto:ops@example.com"));
    assert_eq!(
        acme.directory,
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(acme.ca_file, Some(PathBuf::from("/etc/ca.pem")));
    assert!(c.serves_tls() && c.secure_cookies());
    c.validate().unwrap();

    for (var, value) in [
        ("SLUICE_ACME_DOMAINS", "*.example.com"),
        ("SLUICE_ACME_DOMAINS", "10.0.0.1"),
        ("SLUICE_ACME_DOMAINS", "bad_name.example.com"),
        ("SLUICE_ACME_DOMAINS", "-a.example.com"),
        ("SLUICE_ACME_CONTACT", "ops@example.com"),
        ("SLUICE_ACME_DIRECTORY", "http://acme.example.com/directory"),
        ("SLUICE_ACME_DIRECTORY", "not a url"),
    ] {
        let mut pairs = vec![(var, value)];
        if var != "SLUICE_ACME_DOMAINS" {
            pairs.push(("SLUICE_ACME_DOMAINS", "api.example.com"));
        }
        let error = parse(&pairs).unwrap_err().to_string();
        assert!(error.starts_with(var), "{var}={value}: {error}");
    }
    let both = ok(&[
        ("SLUICE_ACME_DOMAINS", "api.example.com"),
        ("SLUICE_TLS_CERT_FILE", "/c.pem"),
        ("SLUICE_TLS_KEY_FILE", "/k.pem"),
    ]);
    let error = both.validate().unwrap_err().to_string();
    assert!(error.contains("set one of them"), "{error}");
}

#[test]
fn audit_settings_are_parsed_and_bad_ones_named() {
    let c = ok(&[]);
    assert!(!c.audit.query_runs);
    assert_eq!(c.audit.export, None);
    assert!(c.audit.webhook_url.is_none() && c.audit.webhook_token.is_none());
    assert_eq!(
        (c.audit.export_queue, c.audit.retention_days),
        (10_000, None)
    );
    let c = ok(&[
        ("SLUICE_AUDIT_QUERY_RUNS", "true"),
        ("SLUICE_AUDIT_EXPORT", "file:/var/log/sluice/audit.jsonl"),
        (
            "SLUICE_AUDIT_WEBHOOK_URL",
            "https://siem.example.com/ingest?source=sluice",
        ),
        ("SLUICE_AUDIT_WEBHOOK_TOKEN", "webhook-token-canary"),
        ("SLUICE_AUDIT_EXPORT_QUEUE", "5"),
        ("SLUICE_AUDIT_RETENTION_DAYS", "90"),
    ]);
    assert!(c.audit.query_runs);
    assert_eq!(
        c.audit.export,
        Some(AuditExport::File("/var/log/sluice/audit.jsonl".into()))
    );
    assert_eq!(
        c.audit.webhook_url.as_ref().unwrap().host_str(),
        Some("siem.example.com")
    );
    assert_eq!(
        c.audit.webhook_token.as_ref().unwrap().expose(),
        "webhook-token-canary"
    );
    assert!(!format!("{c:?}").contains("webhook-token-canary"));
    assert_eq!(
        (c.audit.export_queue, c.audit.retention_days),
        (5, Some(90))
    );
    assert_eq!(
        ok(&[("SLUICE_AUDIT_EXPORT", "stdout")]).audit.export,
        Some(AuditExport::Stdout)
    );
    for (var, value) in [
        ("SLUICE_AUDIT_QUERY_RUNS", "sometimes"),
        ("SLUICE_AUDIT_EXPORT", "stderr"),
        ("SLUICE_AUDIT_EXPORT", "file:relative/audit.jsonl"),
        ("SLUICE_AUDIT_WEBHOOK_URL", "ftp://siem.example.com/"),
        (
            "SLUICE_AUDIT_WEBHOOK_URL",
            "https://user:secret@siem.example.com/",
        ),
        ("SLUICE_AUDIT_EXPORT_QUEUE", "0"),
        ("SLUICE_AUDIT_RETENTION_DAYS", "0"),
        ("SLUICE_AUDIT_RETENTION_DAYS", "a week"),
    ] {
        let error = parse(&[(var, value)]).unwrap_err().to_string();
        assert!(error.starts_with(var), "{var}={value}: {error}");
        assert!(!error.contains("secret@"), "{error}");
    }
}

#[test]
fn the_old_key_is_a_pair_beside_a_current_key() {
    let old_password = "an-old-password-that-is-being-retired-now";
    let old_salt = "old-salt-retired";
    let refused = |pairs: &[(&str, &str)], needle: &str| {
        let text = ok(pairs).validate().unwrap_err().to_string();
        assert!(text.contains(needle), "{pairs:?}: {text}");
        assert!(
            !text.contains(old_password) && !text.contains(old_salt),
            "{text}"
        );
    };
    refused(
        &[
            ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
            ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
            ("SLUICE_ENCRYPTION_PASSWORD_OLD", old_password),
        ],
        "go together",
    );
    refused(
        &[
            ("SLUICE_ENCRYPTION_PASSWORD_OLD", old_password),
            ("SLUICE_ENCRYPTION_SALT_OLD", old_salt),
        ],
        "without SLUICE_ENCRYPTION_PASSWORD",
    );
    let c = ok(&[
        ("SLUICE_ENCRYPTION_PASSWORD", GOOD_PASSWORD),
        ("SLUICE_ENCRYPTION_SALT", GOOD_SALT),
        ("SLUICE_ENCRYPTION_PASSWORD_OLD", old_password),
        ("SLUICE_ENCRYPTION_SALT_OLD", old_salt),
    ]);
    c.validate().unwrap();
    assert!(!format!("{c:?}").contains(old_password));
    let keyring = c.keyring().unwrap();
    let old = vault::InstanceKey::derive(old_password, old_salt).unwrap();
    assert_eq!(keyring.old().unwrap().key_id(), old.key_id());
    assert_eq!(keyring.key_id(), c.instance_key().unwrap().key_id());
}

#[test]
fn secret_references_are_parsed_and_sluice_variables_refused() {
    let c = ok(&[("SLUICE_SECRET_REFERENCES", "env:PG_*, file:/run/secrets/*")]);
    assert!(c.secret_references.check("env:PG_PASSWORD").is_ok());
    assert!(c.secret_references.check("file:/run/secrets/pg").is_ok());
    assert!(!ok(&[]).secret_references.is_on());
    let text = parse(&[("SLUICE_SECRET_REFERENCES", "env:SLUICE_*")])
        .unwrap_err()
        .to_string();
    assert!(text.contains("SLUICE_SECRET_REFERENCES"), "{text}");
}

#[test]
fn the_console_is_on_unless_turned_off() {
    assert!(ok(&[]).console);
    for (value, on) in [
        ("on", true),
        ("off", false),
        ("OFF", false),
        ("true", true),
        ("0", false),
    ] {
        assert_eq!(ok(&[("SLUICE_CONSOLE", value)]).console, on, "{value}");
    }
    let error = parse(&[("SLUICE_CONSOLE", "sometimes")])
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("SLUICE_CONSOLE"), "{error}");
}
