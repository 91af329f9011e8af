//! `sluice scan`: the security scan (`sluice::scan`) of the stored catalog, or of a catalog
//! file before it is applied, with the instance's settings and its admins' MFA state; as
//! text, JSON or SARIF 2.1.0. `--fail-on SEVERITY` exits 1 when a finding is that bad or
//! worse (for CI gates).

use std::path::PathBuf;

use anyhow::Context;
use sluice::auth::Role;
use sluice::config::Environment;
use sluice::scan::{self, InstanceFacts, Severity, report};

pub fn scan(
    env: &Environment,
    catalog: Option<PathBuf>,
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
    let spec = match &catalog {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            sluice::spec::yaml::parse(&text).with_context(|| format!("{}", path.display()))?
        }
        None => store
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e:#}"))?
            .load_catalog()?,
    };
    let admins_without_mfa = match &store {
        Ok(store) => store
            .list_users()?
            .into_iter()
            .filter(|u| u.role == Role::Admin && !u.mfa_enabled && !u.disabled)
            .map(|u| u.email)
            .collect(),
        Err(_) => Vec::new(),
    };
    let facts = InstanceFacts::from_config(&config, admins_without_mfa);
    let findings = scan::scan(&spec, &facts);
    match format {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&report::json(&findings))?
        ),
        "sarif" => println!(
            "{}",
            serde_json::to_string_pretty(&report::sarif(&findings))?
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
