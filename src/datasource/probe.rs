//! The datasource test (`sluice datasource test NAME`, `POST
//! /v1/admin/datasources/{name}/test`): a datasource's connection tried one step at a time
//! (DNS, the egress decision, TCP, TLS, authentication, `SELECT 1`; for HTTP APIs a request
//! to the base URL; for SQLite the file, opening it, `SELECT 1`), each reported as ok,
//! failed or skipped with its time and, on failure, a hint that says what to change.
//!
//! It uses the datasource as built for serving (the same egress policy, source address, TLS
//! configuration and opened secrets) but none of its pooled connections: every step opens
//! what it needs and closes it. Reports are for admins, so they may name hosts and
//! addresses; like every other output of this module they never carry a password, a key, a
//! driver's own error text (which may quote values) or anything else secret: details and
//! hints are written here from error classes and codes.

mod http;
mod mysql;
mod network;
mod postgres;
mod sqlite;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Datasource;
use crate::spec::DatasourceSpec;

/// What the test of one datasource found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub datasource: String,
    /// `postgres`, `mysql`, `sqlite` or `http`.
    pub kind: &'static str,
    /// Whether every step passed.
    pub ok: bool,
    pub steps: Vec<ProbeStep>,
}

impl ProbeReport {
    /// The first step that failed.
    pub fn failed_step(&self) -> Option<&ProbeStep> {
        self.steps
            .iter()
            .find(|step| step.status == StepStatus::Failed)
    }
}

/// One step of a test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeStep {
    /// `dns`, `egress`, `tcp`, `tls`, `authentication`, `select_1`, `request`, `file`, `open`.
    pub step: &'static str,
    pub status: StepStatus,
    pub elapsed_ms: u64,
    /// What was found (an address, a TLS version, an HTTP status, a SQLSTATE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// What to change, on failure (and on a pass that deserves a warning).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ok,
    Failed,
    /// Not run: an earlier step failed, or it does not apply (TLS when `tls: disable`).
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// A step that passed: its detail, and a hint when it passed with a caveat.
pub(crate) struct Passed<T> {
    pub value: T,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl<T> Passed<T> {
    pub fn new(value: T, detail: impl Into<String>) -> Passed<T> {
        Passed {
            value,
            detail: Some(detail.into()),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Passed<T> {
        self.hint = Some(hint.into());
        self
    }
}

/// A step that failed: what was found and what to change.
#[derive(Debug)]
pub(crate) struct Failure {
    pub detail: Option<String>,
    pub hint: String,
}

impl Failure {
    pub fn new(detail: impl Into<String>, hint: impl Into<String>) -> Failure {
        Failure {
            detail: Some(detail.into()),
            hint: hint.into(),
        }
    }
}

/// Collects the steps of one test, in order. Once a step fails, the steps after it are
/// skipped; planned steps never reached are reported skipped at the end.
pub(crate) struct Recorder {
    datasource: String,
    kind: &'static str,
    planned: &'static [&'static str],
    steps: Vec<ProbeStep>,
    failed: bool,
}

impl Recorder {
    pub fn new(datasource: &str, kind: &'static str, planned: &'static [&'static str]) -> Self {
        Recorder {
            datasource: datasource.to_string(),
            kind,
            planned,
            steps: Vec::new(),
            failed: false,
        }
    }

    /// Runs `run` as step `name`, timed, unless an earlier step failed; `None` when it did
    /// not pass.
    pub async fn step<T>(
        &mut self,
        name: &'static str,
        run: impl Future<Output = Result<Passed<T>, Failure>>,
    ) -> Option<T> {
        if self.failed {
            self.skip(name, None);
            return None;
        }
        let started = Instant::now();
        let outcome = run.await;
        self.record(name, started.elapsed(), outcome)
    }

    /// Records a step whose work was done elsewhere, and took `elapsed`.
    pub fn record<T>(
        &mut self,
        name: &'static str,
        elapsed: Duration,
        outcome: Result<Passed<T>, Failure>,
    ) -> Option<T> {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match outcome {
            Ok(passed) => {
                self.steps.push(ProbeStep {
                    step: name,
                    status: StepStatus::Ok,
                    elapsed_ms,
                    detail: passed.detail,
                    hint: passed.hint,
                });
                Some(passed.value)
            }
            Err(failure) => {
                self.failed = true;
                self.steps.push(ProbeStep {
                    step: name,
                    status: StepStatus::Failed,
                    elapsed_ms,
                    detail: failure.detail,
                    hint: Some(failure.hint),
                });
                None
            }
        }
    }

    /// Records step `name` as skipped, with why (when it is not just an earlier failure).
    pub fn skip(&mut self, name: &'static str, detail: Option<String>) {
        self.steps.push(ProbeStep {
            step: name,
            status: StepStatus::Skipped,
            elapsed_ms: 0,
            detail,
            hint: None,
        });
    }

    pub fn finish(mut self) -> ProbeReport {
        for name in self.planned {
            if !self.steps.iter().any(|step| step.step == *name) {
                self.steps.push(ProbeStep {
                    step: name,
                    status: StepStatus::Skipped,
                    elapsed_ms: 0,
                    detail: None,
                    hint: None,
                });
            }
        }
        // Planned order, whatever order the steps were recorded in.
        let planned = self.planned;
        self.steps.sort_by_key(|step| {
            planned
                .iter()
                .position(|name| *name == step.step)
                .unwrap_or(usize::MAX)
        });
        ProbeReport {
            datasource: self.datasource,
            kind: self.kind,
            ok: !self.failed,
            steps: self.steps,
        }
    }
}

impl Datasource {
    /// Tests this datasource step by step (see the module docs). `spec` is the datasource as
    /// written in the catalog, for the hints (its `egress_allow`, database name, `tls`).
    pub async fn probe(&self, name: &str, spec: &DatasourceSpec) -> ProbeReport {
        match (self, spec) {
            (Datasource::Postgres(source), DatasourceSpec::Postgres(net)) => {
                postgres::probe(source, name, net).await
            }
            (Datasource::MySql(source), DatasourceSpec::Mysql(net)) => {
                mysql::probe(source, name, net).await
            }
            (Datasource::Http(source), DatasourceSpec::Http(http)) => {
                http::probe(source, name, http).await
            }
            (Datasource::Sqlite(source), DatasourceSpec::Sqlite(_)) => {
                sqlite::probe(source, name).await
            }
            _ => {
                let mut recorder = Recorder::new(name, "unknown", &[]);
                recorder.record::<()>(
                    "configuration",
                    Duration::ZERO,
                    Err(Failure::new(
                        "the served datasource and the catalog disagree on its kind",
                        "reload the gateway (SIGHUP) and test again",
                    )),
                );
                recorder.finish()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn steps_after_a_failure_are_skipped_and_unreached_ones_listed() {
        let mut recorder = Recorder::new("db", "postgres", &["dns", "egress", "tcp", "tls"]);
        let first = recorder
            .step("dns", async { Ok(Passed::new(7, "resolved")) })
            .await;
        assert_eq!(first, Some(7));
        let second: Option<()> = recorder
            .step("egress", async { Err(Failure::new("blocked", "allow it")) })
            .await;
        assert_eq!(second, None);
        let third: Option<()> = recorder
            .step("tcp", async {
                panic!("a step after a failure must not run")
            })
            .await;
        assert_eq!(third, None);
        let report = recorder.finish();
        assert!(!report.ok);
        let summary: Vec<(&str, StepStatus)> =
            report.steps.iter().map(|s| (s.step, s.status)).collect();
        assert_eq!(
            summary,
            [
                ("dns", StepStatus::Ok),
                ("egress", StepStatus::Failed),
                ("tcp", StepStatus::Skipped),
                ("tls", StepStatus::Skipped),
            ]
        );
        assert_eq!(report.failed_step().unwrap().step, "egress");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["steps"][1]["status"], "failed");
        assert_eq!(json["steps"][1]["hint"], "allow it");
        assert!(json["steps"][2].get("hint").is_none());
    }
}
