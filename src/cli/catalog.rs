//! `sluice catalog ...` and `sluice secret seal`: the catalog as YAML (check, apply,
//! export), its revisions (history, diff, rollback) and sealing a secret for its owner.
//! `apply` and `rollback` compile and verify every secret and database TLS file exactly as
//! serving will (`snapshot::verify_secrets`, `verify_tls`) before they store anything, show
//! what changes, and refuse to remove anything without `--prune`; `check` and `apply` run
//! the egress pre-flight.

use std::io::Read;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use sluice::audit::Audit;
use sluice::auth::ClientInfo;
use sluice::catalog::compile;
use sluice::clock::SystemClock;
use sluice::config::{Config, Environment};
use sluice::egress::{self, EgressError, EgressPolicy};
use sluice::spec::diff::CatalogDiff;
use sluice::spec::{CatalogSpec, DatasourceSpec, yaml};
use sluice::store::Store;
use sluice::vault::Owner;

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Seal the secret read from standard input for one owner; prints `enc:v1:...`.
    Seal {
        /// Who the secret belongs to: `datasource/<name>/<field>`.
        #[arg(long)]
        owner: String,
    },
}

#[derive(Subcommand)]
pub enum CatalogCommand {
    /// Replace the stored catalog with FILE (all or nothing; every template must compile and
    /// every secret must open with this instance's key). Prints what changes; a catalog that
    /// is the same as the stored one is not applied again.
    Apply {
        file: PathBuf,
        /// Allow the apply to remove datasources, apps or queries (without it, an apply that
        /// would remove any is refused and lists them).
        #[arg(long)]
        prune: bool,
        /// Refuse the apply when a datasource's address is one the egress policy refuses
        /// (without it, that is a warning).
        #[arg(long)]
        strict: bool,
        /// Make apps public even when the security scan finds critical problems in them
        /// (without it, such an apply is refused; a forced one is audited).
        #[arg(long)]
        force: bool,
    },
    /// Print the stored catalog as YAML (secrets stay sealed).
    Export {
        /// Print this revision instead of the current one.
        #[arg(long, value_name = "REV")]
        revision: Option<i64>,
    },
    /// Check FILE without storing it; secrets are verified too when the key is configured,
    /// and each datasource's address against the egress policy.
    Check {
        file: PathBuf,
        /// Make a datasource address the egress policy refuses an error.
        #[arg(long)]
        strict: bool,
    },
    /// List the applied catalog revisions, newest first.
    History {
        /// How many to list.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show what changed from revision REV to revision TO (default: the current catalog),
    /// or, with --file, from the current catalog to FILE.
    Diff {
        #[arg(required_unless_present = "file")]
        revision: Option<i64>,
        #[arg(conflicts_with = "file")]
        to: Option<i64>,
        #[arg(long, conflicts_with = "revision")]
        file: Option<PathBuf>,
    },
    /// Make revision REV's catalog the current one again (as a new revision, in one
    /// transaction; a running gateway loads it).
    Rollback {
        revision: i64,
        /// Allow the rollback to remove datasources, apps or queries.
        #[arg(long)]
        prune: bool,
    },
}

pub fn seal(env: &Environment, owner: &str) -> anyhow::Result<()> {
    let owner = Owner::parse(owner)?;
    let config = env.config()?;
    let key = config.instance_key()?;
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .context("reading the secret from standard input")?;
    // One trailing newline is what `echo` and here-strings add; it is not part of the secret.
    let secret = secret
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&secret);
    if secret.is_empty() {
        bail!("no secret on standard input");
    }
    println!("{}", key.seal(&owner, secret));
    Ok(())
}

pub async fn catalog(env: &Environment, command: CatalogCommand) -> anyhow::Result<()> {
    let config = env.config()?;
    match command {
        CatalogCommand::Check { file, strict } => {
            let spec = read_catalog(&file)?;
            let secrets = if config.encryption_password.is_some() {
                sluice::snapshot::verify(&spec, &config, &config.keyring()?)?;
                "secrets open"
            } else {
                compile::compile(&spec, config.query_defaults())?;
                sluice::snapshot::verify_references(&spec, &config.secret_references)?;
                sluice::snapshot::verify_tls(&spec, None)?;
                sluice::snapshot::verify_sqlite_paths(&spec, &config)?;
                "secrets not verified: SLUICE_ENCRYPTION_PASSWORD is not set"
            };
            preflight(&config, &spec, strict).await?;
            println!("{}: ok (templates compile, {secrets})", file.display());
            Ok(())
        }
        CatalogCommand::Apply {
            file,
            prune,
            strict,
            force,
        } => {
            let spec = read_catalog(&file)?;
            sluice::snapshot::verify(&spec, &config, &config.keyring()?)?;
            let store = super::open_store(&config)?.shared();
            preflight(&config, &spec, strict).await?;
            let source = file.display().to_string();
            let critical = publish_check(&store.load_catalog()?, &spec, force)?;
            replace(&*store, &spec, &source, prune, &config)?;
            if !critical.is_empty() {
                let audit = Audit::new(store.clone(), Arc::new(SystemClock));
                let mut event = audit.event("app_published_forced", &ClientInfo::default());
                event.actor = Some("cli".into());
                let mut apps: Vec<&str> = critical
                    .iter()
                    .filter_map(|f| f.location.split('.').nth(1))
                    .collect();
                apps.dedup();
                let critical: Vec<serde_json::Value> = critical
                    .iter()
                    .map(|f| serde_json::json!({ "rule": f.rule, "location": f.location }))
                    .collect();
                event.details = Some(
                    serde_json::json!({ "source": source, "critical": critical, "apps": apps })
                        .to_string(),
                );
                audit.append(event).await;
                eprintln!("published despite critical findings (--force); audited");
            }
            Ok(())
        }
        CatalogCommand::Export { revision } => {
            let store = super::open_store(&config)?;
            let spec = match revision {
                Some(id) => revision_spec(&*store, id)?,
                None => store.load_catalog()?,
            };
            print!("{}", yaml::to_string(&spec));
            Ok(())
        }
        CatalogCommand::History { limit } => {
            let store = super::open_store(&config)?;
            let history = store.catalog_history(limit)?;
            if history.is_empty() {
                println!("no catalog applied yet");
            }
            for (index, revision) in history.iter().enumerate() {
                let size = match &revision.spec {
                    Some(spec) => format!(
                        "{} datasources, {} apps, {} queries",
                        spec.datasources.len(),
                        spec.apps.len(),
                        query_count(spec)
                    ),
                    None => "content not kept".to_string(),
                };
                let current = if index == 0 { "  (current)" } else { "" };
                println!(
                    "{}\t{}\t{}\t{size}{current}",
                    revision.id, revision.applied_at, revision.source
                );
            }
            Ok(())
        }
        CatalogCommand::Diff { revision, to, file } => {
            let store = super::open_store(&config)?;
            let (from, from_name, target, target_name) = match (revision, file) {
                (_, Some(file)) => (
                    store.load_catalog()?,
                    "the current catalog".to_string(),
                    read_catalog(&file)?,
                    file.display().to_string(),
                ),
                (Some(id), None) => {
                    let (target, target_name) = match to {
                        Some(to) => (revision_spec(&*store, to)?, format!("revision {to}")),
                        None => (store.load_catalog()?, "the current catalog".to_string()),
                    };
                    (
                        revision_spec(&*store, id)?,
                        format!("revision {id}"),
                        target,
                        target_name,
                    )
                }
                (None, None) => bail!("name a revision (see `catalog history`) or --file FILE"),
            };
            let diff = CatalogDiff::between(&from, &target);
            if diff.is_empty() {
                println!("no difference from {from_name} to {target_name}");
                return Ok(());
            }
            println!("from {from_name} to {target_name}:");
            print!("{diff}");
            println!();
            let (from_text, target_text) = (yaml::to_string(&from), yaml::to_string(&target));
            print!(
                "{}",
                similar::TextDiff::from_lines(&from_text, &target_text)
                    .unified_diff()
                    .context_radius(3)
                    .header(&from_name, &target_name)
            );
            Ok(())
        }
        CatalogCommand::Rollback { revision, prune } => {
            let store = super::open_store(&config)?;
            let spec = revision_spec(&*store, revision)?;
            sluice::snapshot::verify(&spec, &config, &config.keyring()?)
                .with_context(|| format!("revision {revision} cannot serve as it is"))?;
            replace(
                &*store,
                &spec,
                &format!("rollback to revision {revision}"),
                prune,
                &config,
            )
        }
    }
}

/// The security scan of each app `next` makes public, shown on stderr. Critical findings
/// refuse the apply unless `force`; with it, they are returned (to be audited once stored).
fn publish_check(
    current: &CatalogSpec,
    next: &CatalogSpec,
    force: bool,
) -> anyhow::Result<Vec<sluice::scan::Finding>> {
    let mut critical = Vec::new();
    for app in sluice::scan::newly_public(current, next) {
        let findings = sluice::scan::app_findings(next, &app);
        if findings.is_empty() {
            eprintln!("app `{app}` becomes public: the security scan finds nothing");
            continue;
        }
        eprintln!("app `{app}` becomes public; the security scan finds:");
        eprint!("{}", sluice::scan::report::text(&findings));
        critical.extend(
            findings
                .into_iter()
                .filter(|f| f.severity == sluice::scan::Severity::Critical),
        );
    }
    if !critical.is_empty() && !force {
        let listed: Vec<String> = critical
            .iter()
            .map(|f| format!("  {} {}", f.rule, f.location))
            .collect();
        bail!(
            "critical security findings in an app made public:\n{}\n\
             nothing applied: fix them, or pass --force to publish anyway (audited)",
            listed.join("\n")
        );
    }
    Ok(critical)
}

/// Stores `spec` as a new revision after showing what changes; refuses removals without
/// `prune`, and stores nothing when nothing changes.
fn replace(
    store: &dyn Store,
    spec: &CatalogSpec,
    source: &str,
    prune: bool,
    config: &Config,
) -> anyhow::Result<()> {
    let current_revision = store.catalog_revision()?;
    let diff = CatalogDiff::between(&store.load_catalog()?, spec);
    if diff.is_empty() && current_revision > 0 {
        println!("{source}: the same as catalog revision {current_revision}; nothing applied");
        return Ok(());
    }
    if !diff.removed.is_empty() && !prune {
        let removed: Vec<String> = diff
            .removed
            .iter()
            .map(|item| format!("  - {item}"))
            .collect();
        bail!(
            "{source} would remove what the current catalog (revision {current_revision}) serves:\n{}\n\
             nothing applied: pass --prune to remove them",
            removed.join("\n")
        );
    }
    print!("{diff}");
    let revision = store.replace_catalog(spec, source)?;
    let reload = match config.catalog_reload {
        Some(every) => format!(
            "a running gateway loads it within {} s (or at once on SIGHUP)",
            every.as_secs()
        ),
        None => "send SIGHUP to a running gateway to load it".to_string(),
    };
    println!(
        "applied {source} as catalog revision {revision} ({} datasources, {} apps, {} queries); {reload}",
        spec.datasources.len(),
        spec.apps.len(),
        query_count(spec),
    );
    Ok(())
}

fn query_count(spec: &CatalogSpec) -> usize {
    spec.apps.values().map(|app| app.queries.len()).sum()
}

/// The catalog of a stored revision.
fn revision_spec(store: &dyn Store, id: i64) -> anyhow::Result<CatalogSpec> {
    let revision = store
        .catalog_revision_at(id)?
        .with_context(|| format!("there is no catalog revision {id} (see `catalog history`)"))?;
    revision.spec.with_context(|| {
        format!("revision {id} was applied by an older version, which did not keep its content")
    })
}

/// The egress pre-flight: resolves each network datasource's host and reports those the
/// egress policy would refuse, with the `egress_allow` line that admits them. A warning on
/// stderr, or an error with `strict`. A name that does not resolve here is only a warning
/// (the gateway may run where it does).
async fn preflight(config: &Config, spec: &CatalogSpec, strict: bool) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for (name, datasource) in &spec.datasources {
        let (host, port, own) = match datasource {
            DatasourceSpec::Postgres(net) => (
                net.host.clone(),
                net.port.unwrap_or(5432),
                &net.egress_allow,
            ),
            DatasourceSpec::Mysql(net) => (
                net.host.clone(),
                net.port.unwrap_or(3306),
                &net.egress_allow,
            ),
            DatasourceSpec::Http(http) => match http.base_url() {
                Ok(url) => (
                    url.host_str().unwrap_or_default().to_string(),
                    url.port_or_known_default().unwrap_or(443),
                    &http.egress_allow,
                ),
                Err(_) => continue,
            },
            DatasourceSpec::Sqlite(_) => continue,
        };
        let own_list = own.as_slice();
        // The catalog compiled, so the datasource's own list parses.
        let own = egress::parse_cidrs(own.iter().map(String::as_str)).unwrap_or_default();
        let policy = EgressPolicy::new(&config.egress_allow, &own);
        match egress::resolve_checked(&host, port, &policy).await {
            Ok(_) => {}
            Err(EgressError::Blocked { ip, reason, .. }) => {
                let fix = if reason == egress::Blocked::Metadata {
                    "cloud metadata addresses stay refused".to_string()
                } else {
                    format!(
                        "to allow it, set in the datasource: {}",
                        egress::allow_line(own_list, [ip])
                    )
                };
                let what = if host.trim_matches(['[', ']']) == ip.to_string() {
                    format!("{host} is")
                } else {
                    format!("{host} is {ip},")
                };
                refused.push(format!(
                    "datasource {name}: {what} {}; {fix}",
                    reason.describe()
                ));
            }
            Err(error @ (EgressError::Resolve { .. } | EgressError::NoAddress { .. })) => {
                eprintln!("sluice: warning: datasource {name}: {error} from here; not checked");
            }
            Err(error) => refused.push(format!("datasource {name}: {error}")),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    if strict {
        bail!(
            "the egress policy refuses these datasources (docs/EGRESS.md):\n{}",
            refused.join("\n")
        );
    }
    for line in refused {
        eprintln!("sluice: warning: {line} (queries on it will fail until then)");
    }
    Ok(())
}

/// Reads and parses a catalog file. A file with nothing in it (or only comments) is refused:
/// it is far more often a failed edit or redirect than a wish for an empty catalog, which is
/// written `datasources: {}` and `apps: {}`.
fn read_catalog(file: &Path) -> anyhow::Result<CatalogSpec> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let blank = text
        .lines()
        .map(str::trim)
        .all(|line| line.is_empty() || line.starts_with('#'));
    if blank {
        bail!(
            "{} is empty: a catalog names its datasources and apps (write `datasources: {{}}` and \
             `apps: {{}}` for an empty one)",
            file.display()
        );
    }
    yaml::parse(&text).with_context(|| format!("{} does not parse", file.display()))
}
