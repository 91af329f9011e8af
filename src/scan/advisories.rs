//! Vulnerable packages: the build's dependency list ([`DEPENDENCIES`], written by build.rs
//! from `Cargo.lock`) checked against RustSec advisories (the advisory-db's
//! `crates/NAME/RUSTSEC-*.md` files, read by the CLI and parsed here).
//!
//! Pure: advisory text in, [`Advisory`] out; advisories and a dependency list in,
//! [`Finding`]s out. A vulnerability's severity comes from its CVSS v3 base score
//! ([`cvss3_score`], the FIRST specification's formula) mapped as FIRST's qualitative
//! scale: 9.0 and up critical, 7.0 high, 4.0 medium, above 0 low, 0 info. A vulnerability
//! without a v3 vector (none, or CVSS v4 only) counts as high, so `--fail-on high` still
//! stops on it. Informational advisories (unmaintained, unsound, notice) are `info`
//! findings of their own rule; withdrawn advisories are skipped.

use semver::{Version, VersionReq};

use super::{Finding, Severity};

/// Every registry package in the build's `Cargo.lock`, as (name, version): every
/// platform's and the dev-dependencies too, a superset of what the binary links.
pub const DEPENDENCIES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/dependencies.rs"));

/// Why an advisory file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdvisoryError {
    #[error("no ```toml front block")]
    NoFrontBlock,
    #[error("the front block is not TOML: {0}")]
    Toml(String),
    #[error("`{0}` is missing or not a string")]
    Missing(&'static str),
    #[error("`versions.{field}` entry `{text}` is not a semver requirement")]
    Requirement { field: &'static str, text: String },
}

/// One advisory, as much of it as the scan uses.
#[derive(Debug, Clone)]
pub struct Advisory {
    pub id: String,
    pub package: String,
    /// The first `# ` heading after the front block.
    pub title: String,
    pub cvss: Option<String>,
    /// `unmaintained`, `unsound`, `notice`: not a vulnerability.
    pub informational: Option<String>,
    pub withdrawn: bool,
    pub patched: Vec<VersionReq>,
    pub unaffected: Vec<VersionReq>,
}

impl Advisory {
    /// Parses a RustSec advisory file (`RUSTSEC-*.md`).
    pub fn parse(text: &str) -> Result<Advisory, AdvisoryError> {
        let rest = text
            .trim_start()
            .strip_prefix("```toml")
            .ok_or(AdvisoryError::NoFrontBlock)?;
        let end = rest.find("\n```").ok_or(AdvisoryError::NoFrontBlock)?;
        let (front, body) = (&rest[..end], &rest[end + 4..]);
        let doc: toml_edit::DocumentMut = front
            .parse()
            .map_err(|e: toml_edit::TomlError| AdvisoryError::Toml(e.message().to_owned()))?;
        let advisory = doc.get("advisory").and_then(|i| i.as_table_like());
        let string = |key: &str| {
            advisory
                .and_then(|t| t.get(key))
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        };
        let versions = doc.get("versions").and_then(|i| i.as_table_like());
        let requirements = |field: &'static str| -> Result<Vec<VersionReq>, AdvisoryError> {
            let Some(array) = versions
                .and_then(|t| t.get(field))
                .and_then(|i| i.as_array())
            else {
                return Ok(Vec::new());
            };
            array
                .iter()
                .map(|v| {
                    let text = v.as_str().unwrap_or_default();
                    VersionReq::parse(text).map_err(|_| AdvisoryError::Requirement {
                        field,
                        text: text.to_owned(),
                    })
                })
                .collect()
        };
        let title = body
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .unwrap_or("")
            .trim()
            .to_owned();
        Ok(Advisory {
            id: string("id").ok_or(AdvisoryError::Missing("advisory.id"))?,
            package: string("package").ok_or(AdvisoryError::Missing("advisory.package"))?,
            title,
            cvss: string("cvss"),
            informational: string("informational"),
            withdrawn: advisory.is_some_and(|t| t.contains_key("withdrawn")),
            patched: requirements("patched")?,
            unaffected: requirements("unaffected")?,
        })
    }

    /// The version is affected: neither patched nor unaffected.
    pub fn affects(&self, version: &Version) -> bool {
        !self
            .patched
            .iter()
            .chain(&self.unaffected)
            .any(|req| req.matches(version))
    }

    /// The severity: informational `info`, else from the CVSS v3 score, else high.
    pub fn severity(&self) -> Severity {
        if self.informational.is_some() {
            return Severity::Info;
        }
        match self.cvss.as_deref().and_then(cvss3_score) {
            Some(score) => severity_of_score(score),
            None => Severity::High,
        }
    }
}

/// FIRST's qualitative rating of a CVSS score.
pub fn severity_of_score(score: f64) -> Severity {
    if score >= 9.0 {
        Severity::Critical
    } else if score >= 7.0 {
        Severity::High
    } else if score >= 4.0 {
        Severity::Medium
    } else if score > 0.0 {
        Severity::Low
    } else {
        Severity::Info
    }
}

/// The base score of a `CVSS:3.0/...` or `CVSS:3.1/...` vector; `None` for anything
/// else (CVSS v4 included) or a vector missing a base metric.
pub fn cvss3_score(vector: &str) -> Option<f64> {
    let mut parts = vector.split('/');
    if !matches!(parts.next()?, "CVSS:3.0" | "CVSS:3.1") {
        return None;
    }
    let mut metric = std::collections::HashMap::new();
    for part in parts {
        let (key, value) = part.split_once(':')?;
        metric.insert(key, value);
    }
    let get = |key: &str| metric.get(key).copied();
    let changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |key: &str| match get(key)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let sum = if changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Some(round_up(sum.min(10.0)))
}

/// CVSS 3.1's Roundup: the smallest one-decimal number not below `value`, computed on
/// integers so that 4.000000001 stays 4.0.
fn round_up(value: f64) -> f64 {
    let whole = (value * 100_000.0).round() as i64;
    if whole % 10_000 == 0 {
        whole as f64 / 100_000.0
    } else {
        ((whole / 10_000) + 1) as f64 / 10.0
    }
}

/// The findings of `advisories` against `dependencies` (name, version): one per affected
/// package version and advisory, withdrawn advisories skipped.
pub fn check(advisories: &[Advisory], dependencies: &[(&str, &str)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for advisory in advisories.iter().filter(|a| !a.withdrawn) {
        for (name, version) in dependencies.iter().filter(|(n, _)| *n == advisory.package) {
            let Ok(parsed) = Version::parse(version) else {
                continue;
            };
            if !advisory.affects(&parsed) {
                continue;
            }
            findings.push(finding(advisory, name, version));
        }
    }
    findings
}

fn finding(advisory: &Advisory, name: &str, version: &str) -> Finding {
    let fixed: Vec<String> = advisory.patched.iter().map(|r| r.to_string()).collect();
    let fixed = if fixed.is_empty() {
        "no fixed version".to_owned()
    } else {
        format!("fixed in {}", fixed.join(" or "))
    };
    let title: String = advisory.title.chars().take(120).collect();
    let score = advisory
        .cvss
        .as_deref()
        .and_then(cvss3_score)
        .map(|s| format!(", CVSS {s:.1}"))
        .unwrap_or_default();
    match &advisory.informational {
        Some(kind) => Finding {
            rule: "SLU-P002",
            severity: Severity::Info,
            location: format!("packages.{name}@{version}"),
            line: None,
            message: format!("{} ({kind}): {title}; {fixed}", advisory.id),
            fix: format!(
                "watch {}; replace the crate if it stays {kind}",
                advisory.id
            ),
        },
        None => Finding {
            rule: "SLU-P001",
            severity: advisory.severity(),
            location: format!("packages.{name}@{version}"),
            line: None,
            message: format!("{}{score}: {title}; {fixed}", advisory.id),
            fix: if advisory.patched.is_empty() {
                format!(
                    "no release of {name} fixes it: replace the crate or upgrade Sluice when it does"
                )
            } else {
                format!(
                    "upgrade to a Sluice release built with {name} {}",
                    advisory.patched[0]
                )
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advisory(package: &str, extra: &str, versions: &str) -> String {
        format!(
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"{package}\"\n\
             date = \"2099-01-01\"\n{extra}\n\n[versions]\n{versions}\n```\n\n# A flaw in {package}\n\nDetails.\n"
        )
    }

    fn found(text: &str, dependencies: &[(&str, &str)]) -> Vec<(String, Severity, String)> {
        let parsed = Advisory::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        check(&[parsed], dependencies)
            .into_iter()
            .map(|f| (f.rule.to_owned(), f.severity, f.message))
            .collect()
    }

    #[test]
    fn cvss3_base_scores_match_the_specification_examples() {
        for (vector, score) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Some(9.8)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", Some(7.5)),
            ("CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:L", Some(3.7)),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", Some(6.1)),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", Some(9.9)),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:N", Some(0.0)),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                None,
            ),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", None),
            ("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None),
        ] {
            assert_eq!(cvss3_score(vector), score, "{vector}");
        }
        assert_eq!(severity_of_score(9.0), Severity::Critical);
        assert_eq!(severity_of_score(8.9), Severity::High);
        assert_eq!(severity_of_score(4.0), Severity::Medium);
        assert_eq!(severity_of_score(0.1), Severity::Low);
        assert_eq!(severity_of_score(0.0), Severity::Info);
    }

    #[test]
    fn the_embedded_list_is_the_lock_files_registry_packages() {
        let lock = include_str!("../../Cargo.lock");
        let registry = lock.matches("source = \"registry+").count();
        assert_eq!(DEPENDENCIES.len(), registry);
        let semver = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"semver\"\n"))
            .expect("semver is locked");
        let version = semver
            .lines()
            .find_map(|l| l.strip_prefix("version = \""))
            .unwrap()
            .trim_end_matches('"');
        assert!(DEPENDENCIES.contains(&("semver", version)));
        assert!(!DEPENDENCIES.iter().any(|(name, _)| *name == "sluice"));
    }

    #[test]
    fn an_affected_version_is_reported_with_its_severity_and_fix() {
        let deps = [("tokio", "1.54.1"), ("semver", "1.0.28")];
        let cvss = "cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H\"";
        let hit = found(
            &advisory(
                "tokio",
                cvss,
                "patched = [\">= 1.54.2\"]\nunaffected = [\"< 1.0.0\"]",
            ),
            &deps,
        );
        assert_eq!(hit.len(), 1, "{hit:?}");
        assert_eq!((hit[0].0.as_str(), hit[0].1), ("SLU-P001", Severity::High));
        assert!(hit[0].2.contains("RUSTSEC-2099-0001"), "{}", hit[0].2);
        assert!(hit[0].2.contains("CVSS 7.5"), "{}", hit[0].2);
        assert!(hit[0].2.contains("fixed in >=1.54.2"), "{}", hit[0].2);
        assert!(hit[0].2.contains("A flaw in tokio"), "{}", hit[0].2);

        // Unscored: high. No patched version: said so.
        let hit = found(&advisory("tokio", "", "patched = []"), &deps);
        assert_eq!(hit[0].1, Severity::High);
        assert!(hit[0].2.contains("no fixed version"), "{}", hit[0].2);
        // A critical score.
        let critical = "cvss = \"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H\"";
        let hit = found(
            &advisory("semver", critical, "patched = [\"^1.0.29\"]"),
            &deps,
        );
        assert_eq!(hit[0].1, Severity::Critical);
    }

    #[test]
    fn patched_unaffected_other_crates_and_withdrawn_advisories_are_not_reported() {
        let deps = [("tokio", "1.54.1")];
        for (package, extra, versions) in [
            ("tokio", "", "patched = [\">= 1.54.1\"]"),
            ("tokio", "", "patched = [\"^1.54.1\", \">= 2\"]"),
            (
                "tokio",
                "",
                "patched = [\">= 2.0.0\"]\nunaffected = [\"< 1.60\"]",
            ),
            ("tokio-util", "", "patched = [\">= 9.0.0\"]"),
            (
                "tokio",
                "withdrawn = \"2099-02-01\"",
                "patched = [\">= 9.0.0\"]",
            ),
        ] {
            let text = advisory(package, extra, versions);
            assert_eq!(found(&text, &deps), vec![], "{text}");
        }
    }

    #[test]
    fn informational_advisories_are_info_findings_of_their_own_rule() {
        let deps = [("tokio", "1.54.1")];
        let hit = found(
            &advisory("tokio", "informational = \"unmaintained\"", "patched = []"),
            &deps,
        );
        assert_eq!(hit.len(), 1);
        assert_eq!((hit[0].0.as_str(), hit[0].1), ("SLU-P002", Severity::Info));
        assert!(hit[0].2.contains("unmaintained"), "{}", hit[0].2);
    }

    #[test]
    fn malformed_advisories_are_errors() {
        assert_eq!(
            Advisory::parse("# no front block").unwrap_err(),
            AdvisoryError::NoFrontBlock
        );
        assert!(matches!(
            Advisory::parse("```toml\n[advisory\n```\n"),
            Err(AdvisoryError::Toml(_))
        ));
        assert_eq!(
            Advisory::parse("```toml\n[advisory]\nid = \"X\"\n```\n").unwrap_err(),
            AdvisoryError::Missing("advisory.package")
        );
        let bad = advisory("tokio", "", "patched = [\"not a version\"]");
        assert!(matches!(
            Advisory::parse(&bad),
            Err(AdvisoryError::Requirement {
                field: "patched",
                ..
            })
        ));
    }
}
