//! `sluice datasource test NAME`: builds one datasource of the stored catalog exactly as
//! serving does (its secrets opened with the instance key, the instance's egress settings)
//! and tests its connection step by step (`datasource::probe`): a table, or JSON with
//! `--json`. Exits non-zero when a step failed.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Subcommand;
use sluice::config::Environment;
use sluice::datasource::Pools;
use sluice::datasource::probe::{ProbeReport, StepStatus};
use sluice::spec::CatalogSpec;

#[derive(Subcommand)]
pub enum DatasourceCommand {
    /// Test a datasource of the stored catalog step by step: DNS, egress, TCP, TLS,
    /// authentication and `SELECT 1` (an HTTP API: a request to its base URL; SQLite: the
    /// file, opening it, `SELECT 1`). Exits 1 when a step fails.
    Test {
        name: String,
        /// Print the report as JSON (the admin API's shape).
        #[arg(long)]
        json: bool,
    },
}

pub async fn datasource(env: &Environment, command: DatasourceCommand) -> anyhow::Result<()> {
    match command {
        DatasourceCommand::Test { name, json } => test(env, &name, json).await,
    }
}

async fn test(env: &Environment, name: &str, json: bool) -> anyhow::Result<()> {
    let config = env.config()?;
    let store = super::open_store(&config)?;
    let catalog = store.load_catalog()?;
    let Some(spec) = catalog.datasources.get(name) else {
        let names: Vec<&str> = catalog.datasources.keys().map(String::as_str).collect();
        bail!(
            "no datasource `{name}` in the stored catalog (it has: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let key = config.keyring()?;
    // Only this datasource is built: another one's broken file does not stop its test.
    let single = CatalogSpec {
        datasources: BTreeMap::from([(name.to_string(), spec.clone())]),
        apps: BTreeMap::new(),
    };
    let pools = Pools::build(&single, &key, &sluice::snapshot::pool_defaults(&config))?;
    let Some(source) = pools.get(name) else {
        bail!("datasource `{name}` was not built");
    };
    let report = source.probe(name, spec).await;
    pools.close_all();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    match report.failed_step() {
        None => Ok(()),
        Some(step) => bail!("datasource `{name}` failed at step `{}`", step.step),
    }
}

/// The report as a table, one step a line, a failed step's hint under it.
fn table(report: &ProbeReport) -> String {
    let mut out = format!(
        "Datasource `{}` ({}): {}\n\n",
        report.datasource,
        report.kind,
        match report.failed_step() {
            None => "ok".to_string(),
            Some(step) => format!("FAILED at {}", step.step),
        }
    );
    out.push_str(&format!(
        "  {:<16} {:<8} {:>8}  {}\n",
        "STEP", "RESULT", "TIME", "DETAIL"
    ));
    for step in &report.steps {
        let result = match step.status {
            StepStatus::Failed => "FAILED",
            status => status.as_str(),
        };
        let time = match step.status {
            StepStatus::Skipped => String::new(),
            _ => format!("{} ms", step.elapsed_ms),
        };
        let line = format!(
            "  {:<16} {:<8} {:>8}  {}",
            step.step,
            result,
            time,
            step.detail.as_deref().unwrap_or("")
        );
        out.push_str(line.trim_end());
        out.push('\n');
        if let Some(hint) = &step.hint {
            out.push_str(&format!("  {:<16} {:<8} {:>8}  hint: {hint}\n", "", "", ""));
        }
    }
    out
}
