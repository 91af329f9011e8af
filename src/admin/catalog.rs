//! The catalog API: datasources, apps and queries as JSON resources under `/v1/admin`,
//! mirroring the YAML catalog.
//!
//! - `GET/PUT/DELETE /datasources/{name}` and `GET /datasources` (admins only);
//! - `GET/PUT/DELETE /apps/{app}` and `GET /apps` (an app's settings; its queries are listed
//!   by name and edited one by one);
//! - `GET/PUT/DELETE /apps/{app}/queries/{query}` and `GET /apps/{app}/queries`;
//! - `POST /apps/{app}/queries/{query}/preview` (in [`preview`]).
//!
//! Every write is one new catalog revision (the history `catalog apply` writes), made only
//! after the whole resulting catalog passed [`snapshot::verify`] and its snapshot was built:
//! a write that fails changes nothing, and one that succeeds is serving when it answers (no
//! signal needed). Writes are conditional: every resource has an `ETag`; replacing or
//! deleting one needs `If-Match` with it (428 without, 412 when stale); creating needs no
//! header, or `If-None-Match: *`, and never overwrites. The stored revision is checked in
//! the same transaction as the write, so two writers never both win. `?dry_run=true` runs
//! every check and reports what would change, storing nothing.
//!
//! Who may edit: admins (sessions with MFA, or the admin token) everything; a developer the
//! settings and queries of apps they are an editor member of (not datasources, not creating
//! or deleting apps). A developer asking about an app they may not edit gets the same 404
//! as for a missing app when the app is private to them, else 403. Secrets are write-only
//! ([`secrets`]). Each change is audited (`catalog_changed`: who, what, which fields; never
//! a value).

mod preview;
mod secrets;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AdminActor, AdminState};
use crate::auth::routes::client_info;
use crate::http::body::read_json;
use crate::http::{ApiError, Problem, json_response};
use crate::policy::client_ip::ClientIp;
use crate::snapshot::{self, VerifyError};
use crate::spec::checks::{NAME_RULE, is_valid_name, shown_name};
use crate::spec::diff::CatalogDiff;
use crate::spec::{AppSpec, CatalogSpec, DatasourceSpec, QuerySpec, Visibility};
use crate::store::StoreError;
use crate::store::audit::AuditEvent;
use crate::store::catalog::CatalogRevision;

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
/// How many revisions are searched for when a secret was last written.
const SECRET_HISTORY: u32 = 200;

pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/datasources", get(list_datasources))
        .route(
            "/datasources/{name}",
            get(get_datasource)
                .put(put_datasource)
                .delete(delete_datasource),
        )
        .route("/apps", get(list_apps))
        .route("/apps/{app}", get(get_app).put(put_app).delete(delete_app))
        .route("/apps/{app}/queries", get(list_queries))
        .route(
            "/apps/{app}/queries/{query}",
            get(get_query).put(put_query).delete(delete_query),
        )
        .route(
            "/apps/{app}/queries/{query}/preview",
            post(preview::preview),
        )
}

type Shared = State<Arc<AdminState>>;
type Peer = Option<Extension<ClientIp>>;

/// `?dry_run=true`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteOptions {
    #[serde(default)]
    dry_run: bool,
}

fn options(
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<WriteOptions, ApiError> {
    query.map(|Query(o)| o).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the only query parameter is `dry_run=true|false`",
        )
    })
}

// ----- Resources ------------------------------------------------------------------------

/// One addressable part of the catalog.
#[derive(Debug, Clone, Copy)]
enum Resource<'a> {
    Datasource(&'a str),
    App(&'a str),
    Query(&'a str, &'a str),
}

impl Resource<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Resource::Datasource(_) => "datasource",
            Resource::App(_) => "app",
            Resource::Query(..) => "query",
        }
    }

    /// `datasource `main``, `query `shop/recent`` (names shown safely).
    fn describe(&self) -> String {
        match self {
            Resource::Datasource(name) => format!("datasource `{}`", shown_name(name)),
            Resource::App(app) => format!("app `{}`", shown_name(app)),
            Resource::Query(app, query) => {
                format!("query `{}/{}`", shown_name(app), shown_name(query))
            }
        }
    }

    /// The resource as stored (secrets sealed), or `None` when the catalog lacks it.
    fn stored(&self, spec: &CatalogSpec) -> Option<Value> {
        match *self {
            Resource::Datasource(name) => spec
                .datasources
                .get(name)
                .map(|d| serde_json::to_value(d).expect("specs serialise")),
            Resource::App(app) => spec.apps.get(app).map(app_stored),
            Resource::Query(app, query) => spec
                .apps
                .get(app)
                .and_then(|a| a.queries.get(query))
                .map(|q| serde_json::to_value(q).expect("specs serialise")),
        }
    }

    /// Its entity tag: a hash of the stored form (so a new secret changes it, without
    /// showing anything of the secret).
    fn etag(&self, spec: &CatalogSpec) -> Option<String> {
        match *self {
            // An app's own settings: adding a query does not make a settings edit stale.
            Resource::App(app) => spec.apps.get(app).map(|a| {
                etag_of(
                    &serde_json::to_value(AppSpec {
                        queries: Default::default(),
                        ..a.clone()
                    })
                    .expect("specs serialise"),
                )
            }),
            _ => self.stored(spec).map(|value| etag_of(&value)),
        }
    }

    /// 404 in the same words for a missing resource whatever the caller.
    fn not_found(&self) -> ApiError {
        match *self {
            Resource::App(app) | Resource::Query(app, _) if !is_valid_name(app) => no_app(app),
            Resource::Query(app, query) => ApiError::not_found(format!(
                "no query `{}` in app `{}`",
                shown_name(query),
                shown_name(app)
            )),
            _ => ApiError::not_found(format!("no {}", self.describe())),
        }
    }
}

/// An app's settings as stored, with its queries as a list of names.
fn app_stored(app: &AppSpec) -> Value {
    let names: Vec<&String> = app.queries.keys().collect();
    let mut value = serde_json::to_value(AppSpec {
        queries: Default::default(),
        ..app.clone()
    })
    .expect("specs serialise");
    value["queries"] = json!(names);
    value
}

fn etag_of(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn no_app(app: &str) -> ApiError {
    ApiError::not_found(format!("no app `{}`", shown_name(app)))
}

// ----- Who may edit ---------------------------------------------------------------------

/// Admins only (datasources; creating and deleting apps).
fn require_admin(actor: &AdminActor, what: &str) -> Result<(), ApiError> {
    if actor.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{what} is for admins"),
        ))
    }
}

/// Admins, or a developer who is an editor of `app`. A developer who may not edit it gets
/// the missing app's 404 when the app is private to them (or missing), else 403, after the
/// same store lookups either way.
async fn require_editor(
    state: &AdminState,
    actor: &AdminActor,
    app: &str,
    spec: &CatalogSpec,
) -> Result<(), ApiError> {
    let Some(caller) = actor.caller.as_ref().filter(|_| !actor.admin) else {
        return Ok(());
    };
    let service = &state.auth.service;
    let editor = service.is_editor(app, &caller.user.id).await?;
    let member = service.is_member(app, &caller.user.id).await?;
    if editor {
        return Ok(());
    }
    match spec.apps.get(app).map(|a| a.visibility) {
        Some(Visibility::Public | Visibility::Workspace) => {}
        Some(Visibility::Private) if member => {}
        _ => return Err(no_app(app)),
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "you are not an editor of app `{}`; an admin makes you one",
            shown_name(app)
        ),
    ))
}

/// What an editor (a developer, not an admin) may not do to an app: change who reaches it
/// (`visibility`, `grants`, `allowed_ips`, `cors`, `headers`: only `limits` is theirs), give a
/// query grants of its own, or point a query at a datasource the app's stored queries do not
/// already use (an admin adds the first query on a datasource). Admins pass.
fn editor_limits(
    actor: &AdminActor,
    spec: &CatalogSpec,
    app: &str,
    settings: Option<&AppSpec>,
    query: Option<(&str, &QuerySpec)>,
) -> Result<(), ApiError> {
    if actor.admin {
        return Ok(());
    }
    let forbidden = |message: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", message);
    let Some(stored) = spec.apps.get(app) else {
        return Ok(());
    };
    if let Some(new) = settings {
        let perimeter = |a: &AppSpec| {
            (
                a.visibility,
                a.grants.clone(),
                a.allowed_ips.clone(),
                a.cors.clone(),
                a.headers.clone(),
            )
        };
        if perimeter(new) != perimeter(stored) {
            return Err(forbidden(
                "editors change an app's `limits`; who reaches it (visibility, grants, allowed_ips, cors, headers) is for admins"
                    .into(),
            ));
        }
    }
    if let Some((name, query)) = query {
        let stored_grants = stored.queries.get(name).and_then(|q| q.grants.clone());
        if query.grants != stored_grants {
            return Err(forbidden(
                "a query's own `grants` are for admins to set or change".into(),
            ));
        }
        let used = stored
            .queries
            .values()
            .any(|q| q.datasource == query.datasource);
        if !used {
            return Err(forbidden(format!(
                "app `{}` has no query on datasource `{}` yet: an admin adds the first one",
                shown_name(app),
                shown_name(&query.datasource)
            )));
        }
    }
    Ok(())
}

// ----- Reads ----------------------------------------------------------------------------

async fn current(state: &AdminState) -> Result<(i64, CatalogSpec), ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.current_catalog())
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(store_error)
}

fn store_error(error: StoreError) -> ApiError {
    tracing::error!(error = %error, "Catalog API: the metadata store failed");
    ApiError::internal()
}

/// The resource's JSON with its `ETag` header (and `revision`, the catalog's).
fn resource_response(status: StatusCode, mut body: Value, etag: &str, revision: i64) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("revision".into(), json!(revision));
    }
    let mut response = json_response(status, &body);
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// When each secret field of datasource `name` was last written: the time of the oldest
/// revision, going back from the newest, that still holds the same sealed value.
fn secret_times(
    history: &[CatalogRevision],
    name: &str,
    datasource: &DatasourceSpec,
) -> Vec<(&'static str, String)> {
    let sealed = secrets::sealed_values(datasource);
    let mut times = Vec::new();
    for (field, value) in sealed {
        let mut since = None;
        for revision in history {
            let same = revision
                .spec
                .as_ref()
                .and_then(|spec| spec.datasources.get(name))
                .is_some_and(|d| {
                    d.secret_fields()
                        .iter()
                        .any(|(f, v)| *f == field && *v == Some(value.as_str()))
                });
            if !same {
                break;
            }
            since = Some(revision.applied_at.clone());
        }
        if let Some(at) = since {
            times.push((field, at));
        }
    }
    times
}

/// The recent revisions, read once per request that shows secrets' `updated_at`.
async fn recent_history(state: &AdminState) -> Result<Vec<CatalogRevision>, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.catalog_history(SECRET_HISTORY))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(store_error)
}

fn datasource_view(
    history: &[CatalogRevision],
    name: &str,
    datasource: &DatasourceSpec,
) -> Result<Value, ApiError> {
    let times = secret_times(history, name, datasource);
    let mut view = secrets::view(datasource, |field| {
        times
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, at)| at.clone())
    });
    view["name"] = json!(name);
    Ok(view)
}

async fn list_datasources(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
) -> Result<Response, ApiError> {
    require_admin(&actor, "the datasource list")?;
    let (revision, spec) = current(&state).await?;
    let history = recent_history(&state).await?;
    let mut items = Vec::new();
    for (name, datasource) in &spec.datasources {
        let mut view = datasource_view(&history, name, datasource)?;
        view["etag"] = json!(Resource::Datasource(name).etag(&spec));
        items.push(view);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "revision": revision, "datasources": items }),
    ))
}

async fn get_datasource(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&actor, "reading a datasource")?;
    let (revision, spec) = current(&state).await?;
    let resource = Resource::Datasource(&name);
    let (Some(datasource), Some(etag)) = (spec.datasources.get(&name), resource.etag(&spec)) else {
        return Err(resource.not_found());
    };
    let history = recent_history(&state).await?;
    let view = datasource_view(&history, &name, datasource)?;
    Ok(resource_response(StatusCode::OK, view, &etag, revision))
}

async fn list_apps(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
) -> Result<Response, ApiError> {
    let (revision, spec) = current(&state).await?;
    let mut items = Vec::new();
    for (name, app) in &spec.apps {
        if let Some(caller) = actor.caller.as_ref().filter(|_| !actor.admin)
            && !state.auth.service.is_editor(name, &caller.user.id).await?
        {
            continue;
        }
        let mut view = app_stored(app);
        view["name"] = json!(name);
        view["etag"] = json!(Resource::App(name).etag(&spec));
        items.push(view);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "revision": revision, "apps": items }),
    ))
}

async fn get_app(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let (revision, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    let resource = Resource::App(&app);
    let (Some(mut view), Some(etag)) = (resource.stored(&spec), resource.etag(&spec)) else {
        return Err(resource.not_found());
    };
    view["name"] = json!(app);
    Ok(resource_response(StatusCode::OK, view, &etag, revision))
}

async fn list_queries(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let (revision, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    let Some(app_spec) = spec.apps.get(&app) else {
        return Err(no_app(&app));
    };
    let items: Vec<Value> = app_spec
        .queries
        .iter()
        .map(|(name, query)| {
            let mut view = serde_json::to_value(query).expect("specs serialise");
            view["etag"] = json!(etag_of(
                &serde_json::to_value(query).expect("specs serialise")
            ));
            view["name"] = json!(name);
            view
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "revision": revision, "app": app, "queries": items }),
    ))
}

async fn get_query(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    Path((app, query)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (revision, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    let resource = Resource::Query(&app, &query);
    let (Some(mut view), Some(etag)) = (resource.stored(&spec), resource.etag(&spec)) else {
        return Err(resource.not_found());
    };
    view["name"] = json!(query);
    Ok(resource_response(StatusCode::OK, view, &etag, revision))
}

// ----- Writes ---------------------------------------------------------------------------

/// What a write asks for, judged against the catalog it is based on.
enum Change {
    /// Put this resource value (create or replace).
    Put(Value),
    Delete,
}

/// A write in progress: who, which resource, how, with which precondition headers.
struct Write<'a> {
    state: &'a AdminState,
    actor: &'a AdminActor,
    resource: Resource<'a>,
    headers: &'a HeaderMap,
    client: crate::auth::ClientInfo,
    dry_run: bool,
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
    async fn run(
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
            if self.dry_run {
                compiled?;
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "dry_run": true,
                        "valid": true,
                        "based_on_revision": revision,
                        "changes": changes,
                        "fields": changed_fields,
                        "etag": self.resource.etag(&next),
                    }),
                ));
            }
            compiled?;
            if diff.is_empty() {
                // Nothing changes: answer with the resource as it is, storing nothing.
                return self.answer(&spec, revision, StatusCode::OK).await;
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
            return self.answer(&next, new_revision, status).await;
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

    async fn answer(
        &self,
        spec: &CatalogSpec,
        revision: i64,
        status: StatusCode,
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
fn from_body<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
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
fn verify_error(error: &VerifyError, editing_app: Option<&str>) -> ApiError {
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

fn invalid_name(what: &str, name: &str) -> Result<(), ApiError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!(
                "`{}` is not a valid {what} name: {NAME_RULE}",
                shown_name(name)
            ),
        ))
    }
}

/// Reads a JSON object body, refusing members that name the resource (the path does).
async fn read_object(
    state: &AdminState,
    headers: &HeaderMap,
    body: Body,
    refused: &[(&str, &str)],
) -> Result<Value, ApiError> {
    let value: Value = read_json(headers, body, state.auth.max_body_bytes).await?;
    let Value::Object(map) = &value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            "the body must be a JSON object",
        ));
    };
    for (member, why) in refused {
        if map.contains_key(*member) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_resource",
                format!("`{member}` is not part of this resource: {why}"),
            ));
        }
    }
    Ok(value)
}

/// Fields the read views add, which a client may send back unchanged (they are dropped).
fn drop_view_members(value: &mut Value, members: &[&str]) {
    if let Value::Object(map) = value {
        for member in members {
            map.remove(*member);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn put_datasource(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    require_admin(&actor, "editing datasources")?;
    let options = options(query)?;
    invalid_name("datasource", &name)?;
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let mut input = read_object(&state, &headers, body, &[]).await?;
    drop_view_members(&mut input, &["name", "revision", "etag"]);
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::Datasource(&name),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    let sqlite_dirs_set = !state.config.sqlite_dirs.is_empty();
    write
        .run(|spec| {
            let current = spec
                .datasources
                .get(&name)
                .map(|d| serde_json::to_value(d).expect("specs serialise"));
            let mut value = input.clone();
            secrets::seal_input(&mut value, &name, current.as_ref(), &state.keys).map_err(
                |problems| {
                    let mut error = ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_secret",
                        "secrets are write-only: see `problems`",
                    );
                    error.problems = problems;
                    error
                },
            )?;
            // The API never points a SQLite datasource at a new file unless the admin set
            // the directories such files must lie under.
            if value.get("kind") == Some(&json!("sqlite")) && !sqlite_dirs_set {
                let same_path = current
                    .as_ref()
                    .is_some_and(|c| c.get("path").is_some() && c.get("path") == value.get("path"));
                if !same_path {
                    return Err(ApiError {
                        param: Some("path".into()),
                        ..ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "datasource_path_refused",
                            "the catalog API creates or moves SQLite datasources only when SLUICE_SQLITE_DIRS names the directories their files may lie under",
                        )
                    });
                }
            }
            Ok(Change::Put(value))
        })
        .await
}

async fn delete_datasource(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_admin(&actor, "deleting datasources")?;
    let options = options(query)?;
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::Datasource(&name),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    write
        .run(|spec| {
            let users: Vec<String> = spec
                .apps
                .iter()
                .flat_map(|(app, a)| {
                    a.queries
                        .iter()
                        .filter(|(_, q)| q.datasource == name)
                        .map(move |(q, _)| format!("{app}/{q}"))
                })
                .collect();
            if !users.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "datasource_in_use",
                    format!(
                        "datasource `{}` is used by {}: change or delete those queries first",
                        shown_name(&name),
                        users.join(", ")
                    ),
                ));
            }
            Ok(Change::Delete)
        })
        .await
}

#[allow(clippy::too_many_arguments)]
async fn put_app(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(app): Path<String>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let options = options(query)?;
    let (_, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    invalid_name("app", &app)?;
    let mut input = read_object(&state, &headers, body, &[]).await?;
    drop_view_members(&mut input, &["name", "revision", "etag"]);
    // A read view lists the queries by name; sending that list back unchanged is fine,
    // anything else is an edit of the queries, which have their own resources.
    let queries = input.as_object_mut().and_then(|m| m.remove("queries"));
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::App(&app),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    write
        .run(|spec| {
            let existing = spec.apps.get(&app);
            if existing.is_none() {
                require_admin(&actor, "creating apps")?;
            }
            let settings: AppSpec = from_body(input.clone())?;
            editor_limits(&actor, spec, &app, Some(&settings), None)?;
            if let Some(sent) = &queries {
                let names: Vec<&String> = existing.map(|a| a.queries.keys().collect()).unwrap_or_default();
                if *sent != json!(names) {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_resource",
                        format!(
                            "`queries` is read-only here: edit them at /v1/admin/apps/{}/queries/{{name}}",
                            shown_name(&app)
                        ),
                    ));
                }
            }
            Ok(Change::Put(input.clone()))
        })
        .await
}

async fn delete_app(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(app): Path<String>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let options = options(query)?;
    let (_, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    require_admin(&actor, "deleting apps")?;
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::App(&app),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    write.run(|_| Ok(Change::Delete)).await
}

#[allow(clippy::too_many_arguments)]
async fn put_query(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path((app, query_name)): Path<(String, String)>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let options = options(query)?;
    let (_, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    invalid_name("query", &query_name)?;
    let mut input = read_object(&state, &headers, body, &[]).await?;
    drop_view_members(&mut input, &["name", "revision", "etag"]);
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::Query(&app, &query_name),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    write
        .run(|spec| {
            let query: QuerySpec = from_body(input.clone())?;
            editor_limits(&actor, spec, &app, None, Some((&query_name, &query)))?;
            Ok(Change::Put(input.clone()))
        })
        .await
}

async fn delete_query(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path((app, query_name)): Path<(String, String)>,
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let options = options(query)?;
    let (_, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    let write = Write {
        state: &state,
        actor: &actor,
        resource: Resource::Query(&app, &query_name),
        headers: &headers,
        client: client_info(peer.as_deref(), &headers),
        dry_run: options.dry_run,
    };
    write.run(|_| Ok(Change::Delete)).await
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
