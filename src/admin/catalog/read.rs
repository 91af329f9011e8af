//! The catalog API's reads: the datasource, app and query resources and their lists, each
//! with its `ETag` and the catalog's revision, secrets shown only as when they were last
//! written, and a query's history (the revisions at which it changed).

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::editors::{require_admin, require_editor};
use super::{Resource, SECRET_HISTORY, Shared, app_stored, etag_of, no_app, secrets};
use crate::admin::{AdminActor, AdminState};
use crate::http::{ApiError, json_response};
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::StoreError;
use crate::store::catalog::CatalogRevision;

pub(super) async fn current(state: &AdminState) -> Result<(i64, CatalogSpec), ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.current_catalog())
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(store_error)
}

pub(super) fn store_error(error: StoreError) -> ApiError {
    tracing::error!(error = %error, "Catalog API: the metadata store failed");
    ApiError::internal()
}

/// The resource's JSON with its `ETag` header (and `revision`, the catalog's).
pub(super) fn resource_response(
    status: StatusCode,
    mut body: Value,
    etag: &str,
    revision: i64,
) -> Response {
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
pub(super) async fn recent_history(state: &AdminState) -> Result<Vec<CatalogRevision>, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.catalog_history(SECRET_HISTORY))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(store_error)
}

pub(super) fn datasource_view(
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

pub(super) async fn list_datasources(
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

pub(super) async fn get_datasource(
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

pub(super) async fn list_apps(
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

pub(super) async fn get_app(
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

pub(super) async fn list_queries(
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

pub(super) async fn get_query(
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

/// How many recent revisions a query's history looks through.
const QUERY_HISTORY: u32 = 200;

/// `GET /v1/admin/apps/{app}/queries/{query}/history`: the versions of one query, newest
/// first, from the recent catalog revisions: one entry per revision that changed it (created,
/// edited or deleted: `query` is `null` then), each with the query as stored then and its
/// `etag`. A rollback is an ordinary conditional write of an older version (`PUT` with the
/// current `If-Match`), so it is checked, stored as a new revision and audited like any edit.
pub(super) async fn query_history(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    Path((app, query)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (revision, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    if !spec.apps.contains_key(&app) {
        return Err(no_app(&app));
    }
    let resource = Resource::Query(&app, &query);
    let store = state.store.clone();
    let history = tokio::task::spawn_blocking(move || store.catalog_history(QUERY_HISTORY))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(store_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "revision": revision,
            "app": app,
            "query": query,
            "versions": query_versions(&history, resource),
        }),
    ))
}

/// The revisions (newest first) at which `resource` differs from the revision before; a
/// revision stored without its content ends the walk.
fn query_versions(history: &[CatalogRevision], resource: Resource<'_>) -> Vec<Value> {
    let states: Vec<(&CatalogRevision, Option<Value>)> = history
        .iter()
        .map_while(|r| r.spec.as_ref().map(|spec| (r, resource.stored(spec))))
        .collect();
    let mut versions = Vec::new();
    for (i, (revision, stored)) in states.iter().enumerate() {
        let older = states.get(i + 1).map(|(_, s)| s);
        // The oldest revision read counts as a change only when it holds the query.
        let changed = match older {
            Some(older) => older != stored,
            None => stored.is_some(),
        };
        if changed {
            versions.push(json!({
                "revision": revision.id,
                "applied_at": revision.applied_at,
                "source": revision.source,
                "etag": stored.as_ref().map(etag_of),
                "query": stored,
            }));
        }
    }
    versions
}
