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

mod editors;
mod preview;
mod read;
mod secrets;
mod write;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::editors::{editor_limits, require_admin, require_editor};
use self::read::{
    current, get_app, get_datasource, get_query, list_apps, list_datasources, list_queries,
    query_history,
};
use self::write::{Change, Write, from_body, verify_error};
use super::{AdminActor, AdminState};
use crate::auth::routes::client_info;
use crate::http::ApiError;
use crate::http::body::read_json;
use crate::policy::client_ip::ClientIp;
use crate::spec::checks::{NAME_RULE, is_valid_name, shown_name};
use crate::spec::{AppSpec, CatalogSpec, QuerySpec};

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
        .route("/apps/{app}/queries/{query}/history", get(query_history))
        .route(
            "/apps/{app}/queries/{query}/preview",
            post(preview::preview),
        )
}

type Shared = State<Arc<AdminState>>;
type Peer = Option<Extension<ClientIp>>;

/// `?dry_run=true`, `?force=true` (publish an app despite critical scan findings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteOptions {
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
}

fn options(
    query: Result<Query<WriteOptions>, axum::extract::rejection::QueryRejection>,
) -> Result<WriteOptions, ApiError> {
    query.map(|Query(o)| o).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the only query parameters are `dry_run=true|false` and `force=true|false`",
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
        force: options.force,
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
        force: options.force,
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
        force: options.force,
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
        force: options.force,
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
        force: options.force,
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
        force: options.force,
    };
    write.run(|_| Ok(Change::Delete)).await
}
