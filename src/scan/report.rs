//! Findings as a person, a script or a code-scanning tool reads them: text grouped by
//! severity, JSON, and SARIF 2.1.0 (one run, the rules of [`super::RULES`], one result per
//! finding with its logical location).

use serde_json::{Value, json};

use super::{Finding, RULES, Severity};

/// Text grouped by severity, worst first, with a count line.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("No findings.\n");
        return out;
    }
    for severity in [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ] {
        let group: Vec<&Finding> = findings.iter().filter(|f| f.severity == severity).collect();
        if group.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "{} ({})\n",
            severity.as_str().to_uppercase(),
            group.len()
        ));
        for f in group {
            let line = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            out.push_str(&format!(
                "  {} {}{line}: {}\n      fix: {}\n",
                f.rule, f.location, f.message, f.fix
            ));
        }
    }
    out.push_str(&format!("{} findings\n", findings.len()));
    out
}

/// `{"findings": [...], "counts": {"critical": n, ...}}`.
pub fn json(findings: &[Finding]) -> Value {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    json!({
        "findings": findings,
        "counts": {
            "critical": count(Severity::Critical),
            "high": count(Severity::High),
            "medium": count(Severity::Medium),
            "low": count(Severity::Low),
            "info": count(Severity::Info),
        },
    })
}

/// SARIF's level for a severity.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// A SARIF 2.1.0 log with one run. `artifact`: the URI of the catalog file the findings'
/// lines are in; a finding with a line then has a physical location too.
pub fn sarif(findings: &[Finding], artifact: Option<&str>) -> Value {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|(id, severity, text)| {
            json!({
                "id": id,
                "shortDescription": { "text": text },
                "defaultConfiguration": { "level": level(*severity) },
                "properties": { "severity": severity.as_str() },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let mut location = json!({
                "logicalLocations": [{ "fullyQualifiedName": f.location, "kind": "member" }]
            });
            if let (Some(uri), Some(line)) = (artifact, f.line) {
                location["physicalLocation"] = json!({
                    "artifactLocation": { "uri": uri },
                    "region": { "startLine": line },
                });
            }
            json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|(id, _, _)| *id == f.rule).unwrap_or(0),
                "level": level(f.severity),
                "message": { "text": format!("{} Fix: {}", f.message, f.fix) },
                "locations": [location],
                "properties": { "severity": f.severity.as_str() },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "sluice scan",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/sluice/sluice",
                    "rules": rules,
                }
            },
            "results": results,
        }],
    })
}
