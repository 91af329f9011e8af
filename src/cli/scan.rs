//! `sluice scan`: the security scan (`sluice::scan`) of the stored catalog, or of a catalog
//! file before it is applied, with the instance's settings and its admins' MFA state; as
//! text, JSON or SARIF 2.1.0. `--fail-on SEVERITY` exits 1 when a finding is that bad or
//! worse (for CI gates). `--advisory-db PATH` reads a RustSec advisory-db checkout's
//! advisories for the build's dependencies (`crates/NAME/RUSTSEC-*.md`) and adds what
//! they report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sluice::auth::Role;
use sluice::config::Environment;
use sluice::scan::advisories::{Advisory, DEPENDENCIES};
use sluice::scan::{self, InstanceFacts, Severity, report};

pub fn scan(
    env: &Environment,
    catalog: Option<PathBuf>,
    advisory_db: Option<&Path>,
    format: &str,
    fail_on: Option<&str>,
) -> anyhow::Result<()> {
    let fail_on = match fail_on {
        Some(name) => Some(Severity::parse(name).with_context(|| {
            format!("--fail-on `{name}`: use critical, high, medium, low or info")
        })?),
        None => None,
    };
    if !matches!(format, "text" | "json" | "sarif") {
        anyhow::bail!("--format `{format}`: use text, json or sarif");
    }
    let config = env.config()?;
    // A catalog file is scanned without a store (before the first apply); the stored
    // catalog needs one, and the admins' MFA state comes from it when there is one.
    let store = super::open_store(&config);
    // The YAML text the findings' lines refer to: the file, or the stored catalog as
    // `sluice catalog export` writes it.
    let (spec, text) = match &catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let spec =
                sluice::spec::yaml::parse(&text).with_context(|| format!("{}", path.display()))?;
            (spec, text)
        }
        None => {
            let spec = store
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e:#}"))?
                .load_catalog()?;
            let text = sluice::spec::yaml::to_string(&spec);
            (spec, text)
        }
    };
    let (admins_without_mfa, keys) = match &store {
        Ok(store) => {
            let users = store.list_users()?;
            let now = chrono::Utc::now().timestamp();
            let keys = store
                .list_api_keys(None)?
                .into_iter()
                .filter(|k| k.revoked_at.is_none() && k.expires_at.is_none_or(|at| at > now))
                .collect();
            let admins = users
                .iter()
                .filter(|u| u.role == Role::Admin && !u.mfa_enabled && !u.disabled)
                .map(|u| u.email.clone())
                .collect();
            (admins, scan::api_key_facts(keys, &users))
        }
        Err(_) => (Vec::new(), Vec::new()),
    };
    let facts = InstanceFacts::from_config(&config, admins_without_mfa).with_api_keys(keys);
    let mut findings = scan::scan(&spec, &facts);
    scan::locate(&mut findings, &text);
    if let Some(db) = advisory_db {
        let advisories = read_advisories(db)?;
        findings.extend(scan::advisories::check(&advisories, DEPENDENCIES));
        scan::sort(&mut findings);
    }
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&findings))?
        ),
        "sarif" => println!(
            "{}",
            serde_json::to_string_pretty(&report::sarif(
                &findings,
                catalog.as_deref().map(artifact_uri).as_deref()
            ))?
        ),
        _ => print!("{}", report::text(&findings)),
    }
    if let Some(threshold) = fail_on {
        let failing = findings.iter().filter(|f| f.severity <= threshold).count();
        if failing > 0 {
            anyhow::bail!(
                "{failing} finding(s) at {} or worse (--fail-on)",
                threshold.as_str()
            );
        }
    }
    Ok(())
}

/// The SARIF artifact URI of a catalog file: a relative path as given (relative to where
/// the scan ran, as code-scanning tools expect), an absolute one as a `file:` URL.
fn artifact_uri(path: &Path) -> String {
    if path.is_absolute()
        && let Ok(url) = url::Url::from_file_path(path)
    {
        return url.to_string();
    }
    path.to_string_lossy().replace('\\', "/")
}

/// The advisories in `db` (an advisory-db checkout) for the crates this build depends on.
/// A file that does not parse is an error naming it: a check that skipped it could pass
/// a vulnerable build.
fn read_advisories(db: &Path) -> anyhow::Result<Vec<Advisory>> {
    let crates = db.join("crates");
    if !crates.is_dir() {
        anyhow::bail!(
            "--advisory-db {}: no crates/ directory (expected a checkout of \
             https://github.com/rustsec/advisory-db)",
            db.display()
        );
    }
    let mut names: Vec<&str> = DEPENDENCIES.iter().map(|(name, _)| *name).collect();
    names.dedup();
    let mut advisories = Vec::new();
    for name in names {
        let dir = crates.join(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            if !(file.starts_with("RUSTSEC-") && file.ends_with(".md")) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let advisory = Advisory::parse(&text).with_context(|| format!("{}", path.display()))?;
            advisories.push(advisory);
        }
    }
    Ok(advisories)
}
