//! Catalog API writes: [`Write::run`], which judges a write's precondition (`If-Match` /
//! `If-None-Match`) against the catalog it read, checks the whole resulting catalog
//! (`snapshot::verify`), builds its snapshot, stores the revision only if no other was stored
//! meanwhile (retrying against the newer catalog), and swaps in and audits the change in a
//! task of its own; and [`verify_error`], the 422 that lists the problems (an editor's own
//! only). A write that makes an app public is judged by the security scan first
//! ([`Publish`]): critical findings refuse it (422 `publish_blocked`) unless `?force=true`,
//! and a forced publish is audited (`app_published_forced`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::read::{current, datasource_view, recent_history, resource_response, store_error};
use super::{Resource, no_app};
use crate::admin::{AdminActor, AdminState};
use crate::http::{ApiError, Problem, json_response};
use crate::snapshot::{self, VerifyError};
use crate::spec::diff::CatalogDiff;
use crate::spec::{AppSpec, CatalogSpec, DatasourceSpec, QuerySpec};
use crate::store::StoreError;
use crate::store::audit::AuditEvent;

/// Why storing a checked write failed.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// How many times a write is retried when another writer stored a revision between its
/// read and its write (each retry re-checks the precondition against the newer catalog).
const WRITE_ATTEMPTS: usize = 3;
/// What a write asks for, judged against the catalog it is based on.
pub(super) enum Change {
    /// Put this resource value (create or replace).
    Put(Value),
    Delete,
}

/// A write in progress: who, which resource, how, with which precondition headers.
pub(super) struct Write<'a> {
    pub(super) state: &'a AdminState,
    pub(super) actor: &'a AdminActor,
    pub(super) resource: Resource<'a>,
    pub(super) headers: &'a HeaderMap,
    pub(super) client: crate::auth::ClientInfo,
    pub(super) dry_run: bool,
    /// Publish an app despite critical scan findings.
    pub(super) force: bool,
}

/// The scan of the apps a write makes public: each app with its findings.
struct Publish(Vec<(String, Vec<crate::scan::Finding>)>);

impl Publish {
    fn of(before: &CatalogSpec, after: &CatalogSpec) -> Publish {
        Publish(
            crate::scan::newly_public(before, after)
                .into_iter()
                .map(|app| {
                    let findings = crate::scan::app_findings(after, &app);
                    (app, findings)
                })
                .collect(),
        )
    }

    fn critical(&self) -> impl Iterator<Item = &crate::scan::Finding> {
        self.0
            .iter()
            .flat_map(|(_, findings)| findings)
            .filter(|f| f.severity == crate::scan::Severity::Critical)
    }

    /// 422 `publish_blocked` naming each critical finding, when there is one.
    fn refusal(&self) -> Option<ApiError> {
        let problems: Vec<Problem> = self
            .critical()
            .map(|f| Problem {
                location: f.location.clone(),
                message: format!("{}: {} (fix: {})", f.rule, f.message, f.fix),
            })
            .collect();
        if problems.is_empty() {
            return None;
        }
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "publish_blocked",
            format!(
                "the security scan found {} critical problem(s) in the app made public; fix them, or publish anyway with ?force=true (audited)",
                problems.len()
            ),
        );
        error.problems = problems;
        Some(error)
    }

    /// `{"app": [findings]}` for the answer; `None` when no app is made public.
    fn report(&self) -> Option<Value> {
        if self.0.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, Value> = self
            .0
            .iter()
            .map(|(app, findings)| (app.clone(), json!(findings)))
            .collect();
        Some(Value::Object(map))
    }
}

/// The precondition a request carries.
enum Precondition {
    None,
    /// `If-Match`: one of these tags, or any existing resource for `*`.
    Match(Vec<String>),
    /// `If-None-Match: *`: only if the resource does not exist.
    Absent,
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    let text = |name| {
        headers
            .get(name)
            .map(|v: &HeaderValue| v.to_str().map(str::trim))
            .transpose()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_precondition",
                    "If-Match / If-None-Match must be ASCII entity tags",
                )
            })
    };
    match (text(header::IF_MATCH)?, text(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_precondition",
            "send If-Match (to replace or delete) or If-None-Match: * (to create), not both",
        )),
        (Some(tags), None) => Ok(Precondition::Match(
            tags.split(',').map(|t| t.trim().to_string()).collect(),
        )),
        (None, Some("*")) => Ok(Precondition::Absent),
        (None, Some(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_precondition",
            "the only If-None-Match a write accepts is `*` (create, never overwrite)",
        )),
        (None, None) => Ok(Precondition::None),
    }
}

impl Write<'_> {
    /// Checks the precondition against `spec`; `Ok(existed)`.
    fn check_precondition(&self, spec: &CatalogSpec, deleting: bool) -> Result<bool, ApiError> {
        let etag = self.resource.etag(spec);
        let what = self.resource.describe();
        let stale = |etag: &Option<String>| {
            let mut error = ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                match etag {
                    Some(_) => format!("{what} changed since you read it: GET it again and retry"),
                    None => format!("{what} does not exist (any more)"),
                },
            );
            error.param = Some(header::IF_MATCH.as_str().into());
            error
        };
        match (precondition(self.headers)?, &etag) {
            (Precondition::Match(tags), Some(current)) => {
                if tags.iter().any(|t| t == "*" || t == current) {
                    Ok(true)
                } else {
                    Err(stale(&etag))
                }
            }
            (Precondition::Match(_), None) => Err(stale(&etag)),
            (Precondition::Absent, Some(_)) => Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("{what} already exists (If-None-Match: *)"),
            )),
            (Precondition::Absent, None) => Ok(false),
            (Precondition::None, Some(_)) => Err(ApiError::new(
                StatusCode::PRECONDITION_REQUIRED,
                "precondition_required",
                format!(
                    "{} {what} needs `If-Match: <its ETag>` (GET it first), so a change made meanwhile is never overwritten",
                    if deleting { "deleting" } else { "replacing" }
                ),
            )),
            (Precondition::None, None) if deleting => Err(self.resource.not_found()),
            (Precondition::None, None) => Ok(false),
        }
    }

    /// Reads the catalog, applies `make` (which sees the current catalog and returns the
    /// change), checks everything, builds the snapshot, stores the revision (only if no
    /// other revision was stored meanwhile; else starts over) and swaps the snapshot in.
    pub(super) async fn run(
        &self,
        make: impl Fn(&CatalogSpec) -> Result<Change, ApiError>,
    ) -> Result<Response, ApiError> {
        // One catalog change at a time in this process (other processes are caught by the
        // conditional store write below).
        let _changing = self.state.gateway.catalog_change.lock().await;
        for _ in 0..WRITE_ATTEMPTS {
            let (revision, spec) = current(self.state).await?;
            let change = make(&spec)?;
            let deleting = matches!(change, Change::Delete);
            let existed = self.check_precondition(&spec, deleting)?;
            let mut next = spec.clone();
            self.apply(&mut next, &change)?;
            let changed_fields = changed_fields(
                self.resource.stored(&spec).as_ref(),
                self.resource.stored(&next).as_ref(),
            );
            let compiled = snapshot::verify(&next, &self.state.config, &self.state.keys)
                .map_err(|error| verify_error(&error, editing_app(self.actor, self.resource)));
            let diff = CatalogDiff::between(&spec, &next);
            let changes: Vec<String> = diff_lines(&diff);
            let publish = Publish::of(&spec, &next);
            let refused = if self.force { None } else { publish.refusal() };
            if self.dry_run {
                compiled?;
                if let Some(refusal) = refused {
                    return Err(refusal);
                }
                let mut report = json!({
                    "dry_run": true,
                    "valid": true,
                    "based_on_revision": revision,
                    "changes": changes,
                    "fields": changed_fields,
                    "etag": self.resource.etag(&next),
                });
                if let Some(scan) = publish.report() {
                    report["scan"] = scan;
                }
                return Ok(json_response(StatusCode::OK, &report));
            }
            compiled?;
            if let Some(refusal) = refused {
                return Err(refusal);
            }
            let forced = self.forced_event(&publish);
            if diff.is_empty() {
                // Nothing changes: answer with the resource as it is, storing nothing.
                return self.answer(&spec, revision, StatusCode::OK, None).await;
            }
            let mut built = snapshot::assemble(
                &self.state.config,
                &self.state.keys,
                next.clone(),
                0,
                &self.state.gateway.metrics,
            )
            .await
            .map_err(|error| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_catalog",
                    format!("the catalog would not serve: {error}"),
                )
            })?;
            // Store, swap and audit in a task of its own: a client that goes away now does
            // not leave a stored revision unswapped or unaudited.
            let store = self.state.store.clone();
            let gateway = self.state.gateway.clone();
            let (to_store, source) = (next.clone(), self.source());
            let (mut event, mut details) = self.audit_event(deleting, existed, &changed_fields);
            let committed = tokio::spawn(async move {
                let stored = tokio::task::spawn_blocking(move || {
                    store.replace_catalog_at(&to_store, &source, revision)
                })
                .await??;
                built.revision = stored;
                // Reloads hold the same lock, so this is the newest catalog: it serves now
                // even after a restore made the revisions go back.
                drop(gateway.replace_snapshot(built));
                details["revision"] = json!(stored);
                event.details = Some(details.to_string());
                gateway.audit.append(event).await;
                if let Some((mut forced, mut forced_details)) = forced {
                    forced_details["revision"] = json!(stored);
                    forced.details = Some(forced_details.to_string());
                    gateway.audit.append(forced).await;
                }
                Ok::<i64, CommitError>(stored)
            })
            .await
            .map_err(|_| ApiError::internal())?;
            let new_revision = match committed {
                Ok(new_revision) => new_revision,
                // Another writer stored a revision meanwhile: judge again against it.
                Err(CommitError::Store(StoreError::RevisionMoved { .. })) => continue,
                Err(CommitError::Store(error)) => return Err(store_error(error)),
                Err(CommitError::Task(_)) => return Err(ApiError::internal()),
            };
            if let Resource::App(app) = self.resource
                && deleting
            {
                self.forget_members(app).await;
            }
            let status = if deleting || existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            if deleting {
                return Ok(json_response(
                    status,
                    &json!({ "deleted": true, "revision": new_revision }),
                ));
            }
            return self
                .answer(&next, new_revision, status, publish.report())
                .await;
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "catalog_busy",
            "the catalog kept changing while this write was tried; try again",
        ))
    }

    /// Applies `change` to `spec`.
    fn apply(&self, spec: &mut CatalogSpec, change: &Change) -> Result<(), ApiError> {
        match (self.resource, change) {
            (Resource::Datasource(name), Change::Put(value)) => {
                let datasource: DatasourceSpec = from_body(value.clone())?;
                spec.datasources.insert(name.to_string(), datasource);
            }
            (Resource::Datasource(name), Change::Delete) => {
                spec.datasources.remove(name);
            }
            (Resource::App(app), Change::Put(value)) => {
                let mut settings: AppSpec = from_body(value.clone())?;
                settings.queries = spec
                    .apps
                    .get(app)
                    .map(|a| a.queries.clone())
                    .unwrap_or_default();
                spec.apps.insert(app.to_string(), settings);
            }
            (Resource::App(app), Change::Delete) => {
                spec.apps.remove(app);
            }
            (Resource::Query(app, query), Change::Put(value)) => {
                let parsed: QuerySpec = from_body(value.clone())?;
                let Some(app_spec) = spec.apps.get_mut(app) else {
                    return Err(no_app(app));
                };
                app_spec.queries.insert(query.to_string(), parsed);
            }
            (Resource::Query(app, query), Change::Delete) => {
                if let Some(app_spec) = spec.apps.get_mut(app) {
                    app_spec.queries.remove(query);
                }
            }
        }
        Ok(())
    }

    /// What the revision's history shows as its source.
    fn source(&self) -> String {
        format!("api: {} by {}", self.resource.describe(), self.actor.id)
    }

    /// The answer: the resource as stored, with `scan` (the findings of each app made
    /// public) when the write published one.
    async fn answer(
        &self,
        spec: &CatalogSpec,
        revision: i64,
        status: StatusCode,
        scan: Option<Value>,
    ) -> Result<Response, ApiError> {
        let etag = self.resource.etag(spec).unwrap_or_default();
        let mut view = match self.resource {
            Resource::Datasource(name) => {
                let history = recent_history(self.state).await?;
                datasource_view(&history, name, &spec.datasources[name])?
            }
            _ => self.resource.stored(spec).unwrap_or(Value::Null),
        };
        if let Resource::App(name) | Resource::Query(_, name) = self.resource {
            view["name"] = json!(name);
        }
        if let Some(scan) = scan {
            view["scan"] = scan;
        }
        Ok(resource_response(status, view, &etag, revision))
    }

    /// A deleted app's memberships go with it, so an app made later under the same name
    /// does not inherit its members and editors.
    async fn forget_members(&self, app: &str) {
        let store = self.state.store.clone();
        let app = app.to_string();
        let removed = tokio::task::spawn_blocking(move || store.remove_app_members(&app)).await;
        if !matches!(removed, Ok(Ok(_))) {
            tracing::error!("Catalog API: the deleted app's memberships could not be removed");
        }
    }

    /// The `app_published_forced` event when `?force=true` published an app despite
    /// critical findings (rule ids and locations, never a finding's text), whose
    /// `revision` is filled in once stored.
    fn forced_event(&self, publish: &Publish) -> Option<(AuditEvent, Value)> {
        if !self.force {
            return None;
        }
        let critical: Vec<Value> = publish
            .critical()
            .map(|f| json!({ "rule": f.rule, "location": f.location }))
            .collect();
        if critical.is_empty() {
            return None;
        }
        let apps: Vec<&str> = publish.0.iter().map(|(app, _)| app.as_str()).collect();
        let mut event = self
            .state
            .gateway
            .audit
            .event("app_published_forced", &self.client);
        event.actor = Some(self.actor.id.clone());
        if let Some(caller) = &self.actor.caller {
            event.user_id = Some(caller.user.id.clone());
        }
        Some((event, json!({ "apps": apps, "critical": critical })))
    }

    /// The `catalog_changed` event of this write and its details, whose `revision` is
    /// filled in once stored.
    fn audit_event(&self, deleting: bool, existed: bool, fields: &[String]) -> (AuditEvent, Value) {
        let audit = &self.state.gateway.audit;
        let mut event = audit.event("catalog_changed", &self.client);
        event.actor = Some(self.actor.id.clone());
        if let Some(caller) = &self.actor.caller {
            event.user_id = Some(caller.user.id.clone());
        }
        let action = match (deleting, existed) {
            (true, _) => "delete",
            (false, true) => "update",
            (false, false) => "create",
        };
        let (app, name) = match self.resource {
            Resource::Datasource(name) | Resource::App(name) => (None, name),
            Resource::Query(app, name) => (Some(app), name),
        };
        let details = json!({
            "resource": self.resource.kind(),
            "app": app,
            "name": name,
            "action": action,
            "fields": fields,
        });
        (event, details)
    }
}

/// The top-level fields that differ between two stored forms (names only: a secret's field
/// is named when its sealed value changed, its value never).
fn changed_fields(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let object = |v: Option<&Value>| {
        v.and_then(Value::as_object)
            .cloned()
            .unwrap_or(empty.clone())
    };
    let (before, after) = (object(before), object(after));
    let mut fields: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

fn diff_lines(diff: &CatalogDiff) -> Vec<String> {
    diff.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A spec type from a request body: serde's message names the field (and, for a wrong
/// type, may quote that field's value: the caller's own input, never a secret, which is
/// sealed before this).
pub(super) fn from_body<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            format!("the body does not describe the resource: {error}"),
        )
    })
}

/// 422 listing every problem the checks found, each at its catalog location. An editor
/// (`editing_app`: a developer's app) sees only the problems located in that app; the
/// others (another app's query, a datasource's TLS file) are counted, not shown.
pub(super) fn verify_error(error: &VerifyError, editing_app: Option<&str>) -> ApiError {
    let (code, message) = match error {
        VerifyError::Compile(_) => ("invalid_catalog", "the catalog would not compile"),
        VerifyError::Secrets(_) => (
            "invalid_secret",
            "a secret does not open for its datasource",
        ),
        VerifyError::Tls(_) => ("invalid_tls", "a database TLS file cannot be used"),
        VerifyError::Paths(_) => (
            "datasource_path_refused",
            "a SQLite datasource path is refused",
        ),
    };
    let mut api = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    let prefix = editing_app.map(|app| format!("apps.{app}."));
    let (shown, hidden): (Vec<_>, Vec<_>) = error.problems().iter().partition(|p| {
        prefix
            .as_ref()
            .is_none_or(|prefix| p.location.starts_with(prefix))
    });
    api.problems = shown
        .into_iter()
        .map(|p| Problem {
            location: p.location.clone(),
            message: p.message.clone(),
        })
        .collect();
    if !hidden.is_empty() {
        api.message = format!(
            "{message}; {} more problem(s) lie outside this app (an admin sees them)",
            hidden.len()
        );
    }
    api
}

/// The app whose problems alone a non-admin actor may see.
fn editing_app<'a>(actor: &AdminActor, resource: Resource<'a>) -> Option<&'a str> {
    match resource {
        _ if actor.admin => None,
        Resource::App(app) | Resource::Query(app, _) => Some(app),
        // Developers never write datasources; shown nothing outside an app.
        Resource::Datasource(_) => Some(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::compile::{CatalogErrors, CatalogProblem};

    #[test]
    fn an_editor_sees_only_the_problems_of_their_app() {
        let problem = |location: &str| CatalogProblem {
            location: location.into(),
            message: format!("broken at {location}"),
        };
        let error = VerifyError::Tls(CatalogErrors(vec![
            problem("apps.shop.queries.recent.sql"),
            problem("apps.shopping.queries.other.sql"),
            problem("datasources.main.tls_ca_file"),
        ]));
        let admin = verify_error(&error, None);
        assert_eq!(admin.problems.len(), 3);
        assert!(!admin.message.contains("outside"));
        let editor = verify_error(&error, Some("shop"));
        let locations: Vec<&str> = editor
            .problems
            .iter()
            .map(|p| p.location.as_str())
            .collect();
        assert_eq!(locations, ["apps.shop.queries.recent.sql"]);
        assert!(
            editor.message.contains("2 more problem(s)"),
            "{}",
            editor.message
        );
        let datasource_writer = verify_error(&error, Some(""));
        assert!(datasource_writer.problems.is_empty());
    }
}
