//! `/scim/v2/...`: the SCIM 2.0 endpoints, mounted only when `SLUICE_SCIM_TOKEN` is set
//! (without it they are unknown paths, 404).
//!
//! Every route is behind the SCIM bearer token, compared in constant time; a missing or
//! wrong token is 401 with the same body either way. Bodies are `application/scim+json`
//! (plain `application/json` is accepted too), answers are `application/scim+json`, and
//! every refusal is a SCIM error (`schemas: [...:Error]`, `status`, `scimType`, `detail`)
//! naming what was wrong, never quoting a value. `POST .../.search` (RFC 7644 3.4.3) takes
//! a `SearchRequest` body and answers exactly as the `GET` list with the same parameters.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use super::resource::{self, render_group, render_user};
use super::service::{Found, Page, ScimService};
use super::{ERROR_SCHEMA, LIST_SCHEMA, SEARCH_SCHEMA, ScimError};
use crate::auth::ClientInfo;
use crate::auth::routes::client_info;
use crate::policy::client_ip::ClientIp;
use crate::vault::SecretString;

const USERS: &str = "/scim/v2/Users";
const USER: &str = "/scim/v2/Users/{id}";
const GROUPS: &str = "/scim/v2/Groups";
const GROUP: &str = "/scim/v2/Groups/{id}";
const USERS_SEARCH: &str = "/scim/v2/Users/.search";
const GROUPS_SEARCH: &str = "/scim/v2/Groups/.search";
const SEARCH: &str = "/scim/v2/.search";
const SERVICE_PROVIDER_CONFIG: &str = "/scim/v2/ServiceProviderConfig";
const SCHEMAS: &str = "/scim/v2/Schemas";
const SCHEMA: &str = "/scim/v2/Schemas/{id}";
const RESOURCE_TYPES: &str = "/scim/v2/ResourceTypes";
const RESOURCE_TYPE: &str = "/scim/v2/ResourceTypes/{id}";
/// Any other endpoint under the root (`/Bulk`, `/Me`): a SCIM 404.
const OTHER: &str = "/scim/v2/{endpoint}";

/// The media type of every SCIM answer.
pub const CONTENT_TYPE: &str = "application/scim+json";

/// What the SCIM routes share.
pub struct ScimState {
    pub service: ScimService,
    pub token: SecretString,
    /// `SLUICE_PUBLIC_URL`, for `meta.location`; else the request's `Host`.
    pub public_url: Option<String>,
    pub max_body_bytes: usize,
}

/// The SCIM routes behind the token check.
pub fn router(state: Arc<ScimState>) -> Router {
    Router::new()
        .route(USERS, get(list_users).post(create_user))
        .route(
            USER,
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(GROUPS, get(list_groups).post(create_group))
        .route(
            GROUP,
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route(USERS_SEARCH, post(search_users))
        .route(GROUPS_SEARCH, post(search_groups))
        .route(SEARCH, post(search_all))
        .route(SERVICE_PROVIDER_CONFIG, get(service_provider_config))
        .route(SCHEMAS, get(schemas))
        .route(SCHEMA, get(schema))
        .route(RESOURCE_TYPES, get(resource_types))
        .route(RESOURCE_TYPE, get(resource_type))
        .route(OTHER, any(unknown_endpoint))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// A SCIM answer: the status and the JSON body, as `application/scim+json`.
fn scim(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// A SCIM error body.
fn error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": status.as_u16().to_string(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = Value::String(scim_type.to_string());
    }
    scim(status, &body)
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = match &self {
            ScimError::NotFound(_) => StatusCode::NOT_FOUND,
            ScimError::Uniqueness(_) => StatusCode::CONFLICT,
            ScimError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        error(status, self.scim_type(), &self.to_string())
    }
}

async fn require_token(
    State(state): State<Arc<ScimState>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if !presented.is_some_and(|presented| state.token.matches(presented.trim())) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            None,
            "authentication required: send the SCIM token as a bearer token",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// The SCIM root URL for `meta.location`.
fn base(state: &ScimState, headers: &HeaderMap) -> String {
    match &state.public_url {
        Some(url) => format!("{}/scim/v2", url.trim_end_matches('/')),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| {
                    h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                })
                .unwrap_or("localhost");
            format!("http://{host}/scim/v2")
        }
    }
}

/// Reads a SCIM JSON body (`application/scim+json` or `application/json`).
async fn body(state: &ScimState, headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    let mut headers = headers.clone();
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == CONTENT_TYPE {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    let bytes = crate::http::body::read_json_bytes(&headers, body, state.max_body_bytes)
        .await
        .map_err(|e| error(e.status, Some("invalidSyntax"), &e.message))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        // serde_json's message can quote the value; only the position is shown.
        error(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            &format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// `filter`, `startIndex`, `count`, `attributes` and `excludedAttributes` of a request.
#[derive(Default)]
struct ListQuery {
    filter: Option<String>,
    start: Option<i64>,
    count: Option<i64>,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

impl ListQuery {
    /// Keeps only `attributes` (when given) and drops `excludedAttributes`, top-level names
    /// compared without case; `id` and `schemas` always stay (RFC 7644 3.4.2.5).
    fn project(&self, mut resource: Value) -> Value {
        if let Value::Object(object) = &mut resource {
            let named = |list: &[String], key: &str| {
                list.iter().any(|name| {
                    let name = name.rsplit(':').next().unwrap_or(name);
                    let top = name.split('.').next().unwrap_or(name);
                    top.eq_ignore_ascii_case(key)
                })
            };
            object.retain(|key, _| {
                key == "id"
                    || key == "schemas"
                    || ((self.attributes.is_empty() || named(&self.attributes, key))
                        && !named(&self.excluded, key))
            });
        }
        resource
    }
}

fn list_query(raw: Option<String>) -> Result<ListQuery, ScimError> {
    let mut query = ListQuery::default();
    let names = |value: &str| -> Vec<String> {
        value
            .split(',')
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .collect()
    };
    let number = |name: &str, value: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| ScimError::InvalidValue(format!("`{name}` must be an integer")))
    };
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match name.as_ref() {
            "filter" => query.filter = Some(value.into_owned()),
            "startIndex" => query.start = Some(number("startIndex", &value)?),
            "count" => query.count = Some(number("count", &value)?),
            "attributes" => query.attributes = names(&value),
            "excludedAttributes" => query.excluded = names(&value),
            // sortBy, sortOrder: unsorted (ServiceProviderConfig says sort is unsupported).
            _ => {}
        }
    }
    Ok(query)
}

/// A `SearchRequest` body (RFC 7644 3.4.3) read as the query of a `GET` list: `filter`
/// (a string), `startIndex` and `count` (integers), `attributes` and `excludedAttributes`
/// (lists of names). `sortBy` and `sortOrder` are ignored, as on `GET` (sorting is not
/// offered). Member names are case-insensitive; `null` reads as absent.
fn search_query(body: &Value) -> Result<ListQuery, ScimError> {
    let body = body.as_object().ok_or_else(|| {
        ScimError::InvalidSyntax("the body must be a SearchRequest object".into())
    })?;
    let mut query = ListQuery::default();
    let integer = |name: &str, value: &Value| {
        value
            .as_i64()
            .ok_or_else(|| ScimError::InvalidValue(format!("`{name}` must be an integer")))
    };
    let names = |name: &str, value: &Value| -> Result<Vec<String>, ScimError> {
        let invalid = || ScimError::InvalidValue(format!("`{name}` must be a list of names"));
        value
            .as_array()
            .ok_or_else(invalid)?
            .iter()
            .map(|item| {
                item.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(invalid)
            })
            .filter(|name| name.as_ref().map_or(true, |n| !n.is_empty()))
            .collect()
    };
    for (key, value) in body {
        if value.is_null() {
            continue;
        }
        match key.to_ascii_lowercase().as_str() {
            "schemas" => {
                let named = value
                    .as_array()
                    .is_some_and(|list| list.iter().any(|s| s == SEARCH_SCHEMA));
                if !named {
                    return Err(ScimError::InvalidSyntax(format!(
                        "`schemas` must name {SEARCH_SCHEMA}"
                    )));
                }
            }
            "filter" => {
                let filter = value
                    .as_str()
                    .ok_or_else(|| ScimError::InvalidValue("`filter` must be a string".into()))?;
                query.filter = Some(filter.to_string());
            }
            "startindex" => query.start = Some(integer("startIndex", value)?),
            "count" => query.count = Some(integer("count", value)?),
            "attributes" => query.attributes = names("attributes", value)?,
            "excludedattributes" => query.excluded = names("excludedAttributes", value)?,
            _ => {}
        }
    }
    Ok(query)
}

fn list(page: Page<Value>) -> Response {
    scim(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": page.total_results,
            "startIndex": page.start_index,
            "itemsPerPage": page.resources.len(),
            "Resources": page.resources,
        }),
    )
}

fn client(ip: Option<axum::Extension<ClientIp>>, headers: &HeaderMap) -> ClientInfo {
    client_info(ip.as_ref().map(|axum::Extension(ip)| ip), headers)
}

fn created(location_base: &str, kind: &str, id: &str, body: &Value) -> Response {
    let mut response = scim(StatusCode::CREATED, body);
    if let Ok(location) = HeaderValue::from_str(&format!("{location_base}/{kind}/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

type Ip = Option<axum::Extension<ClientIp>>;

// ----- Users ---------------------------------------------------------------------------

async fn list_users(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ScimError> {
    users_page(&state, &headers, &list_query(raw)?).await
}

async fn search_users(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let query = search_query(&body).map_err(IntoResponse::into_response)?;
    users_page(&state, &headers, &query)
        .await
        .map_err(IntoResponse::into_response)
}

async fn users_page(
    state: &ScimState,
    headers: &HeaderMap,
    query: &ListQuery,
) -> Result<Response, ScimError> {
    let page = state
        .service
        .list_users(query.filter.as_deref(), query.start, query.count)
        .await?;
    let base = base(state, headers);
    Ok(list(Page {
        total_results: page.total_results,
        start_index: page.start_index,
        resources: page
            .resources
            .iter()
            .map(|u| query.project(render_user(u, &base)))
            .collect(),
    }))
}

async fn get_user(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ScimError> {
    let query = list_query(raw)?;
    let user = state.service.user(&id).await?;
    let rendered = query.project(render_user(&user, &base(&state, &headers)));
    Ok(scim(StatusCode::OK, &rendered))
}

async fn create_user(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let user = state
        .service
        .create_user(&body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    let base = base(&state, &headers);
    Ok(created(
        &base,
        "Users",
        &user.user.id,
        &render_user(&user, &base),
    ))
}

async fn replace_user(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let user = state
        .service
        .replace_user(&id, &body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(scim(
        StatusCode::OK,
        &render_user(&user, &base(&state, &headers)),
    ))
}

async fn patch_user(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let user = state
        .service
        .patch_user(&id, &body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(scim(
        StatusCode::OK,
        &render_user(&user, &base(&state, &headers)),
    ))
}

async fn delete_user(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    state
        .service
        .delete_user(&id, &client(ip, &headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- Groups --------------------------------------------------------------------------

async fn list_groups(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ScimError> {
    groups_page(&state, &headers, &list_query(raw)?).await
}

async fn search_groups(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let query = search_query(&body).map_err(IntoResponse::into_response)?;
    groups_page(&state, &headers, &query)
        .await
        .map_err(IntoResponse::into_response)
}

async fn groups_page(
    state: &ScimState,
    headers: &HeaderMap,
    query: &ListQuery,
) -> Result<Response, ScimError> {
    let page = state
        .service
        .list_groups(query.filter.as_deref(), query.start, query.count)
        .await?;
    let base = base(state, headers);
    Ok(list(Page {
        total_results: page.total_results,
        start_index: page.start_index,
        resources: page
            .resources
            .iter()
            .map(|g| query.project(render_group(g, &base)))
            .collect(),
    }))
}

async fn get_group(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ScimError> {
    let query = list_query(raw)?;
    let group = state.service.group(&id).await?;
    let rendered = query.project(render_group(&group, &base(&state, &headers)));
    Ok(scim(StatusCode::OK, &rendered))
}

async fn create_group(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let group = state
        .service
        .create_group(&body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    let base = base(&state, &headers);
    Ok(created(
        &base,
        "Groups",
        &group.id,
        &render_group(&group, &base),
    ))
}

async fn replace_group(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let group = state
        .service
        .replace_group(&id, &body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(scim(
        StatusCode::OK,
        &render_group(&group, &base(&state, &headers)),
    ))
}

async fn patch_group(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let group = state
        .service
        .patch_group(&id, &body, &client(ip, &headers))
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(scim(
        StatusCode::OK,
        &render_group(&group, &base(&state, &headers)),
    ))
}

async fn delete_group(
    State(state): State<Arc<ScimState>>,
    ip: Ip,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ScimError> {
    state
        .service
        .delete_group(&id, &client(ip, &headers))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /.search`: Users and Groups, with one filter over both.
async fn search_all(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    request: Body,
) -> Result<Response, Response> {
    let body = body(&state, &headers, request).await?;
    let query = search_query(&body).map_err(IntoResponse::into_response)?;
    let page = state
        .service
        .search(query.filter.as_deref(), query.start, query.count)
        .await
        .map_err(IntoResponse::into_response)?;
    let base = base(&state, &headers);
    Ok(list(Page {
        total_results: page.total_results,
        start_index: page.start_index,
        resources: page
            .resources
            .iter()
            .map(|found| {
                query.project(match found {
                    Found::User(user) => render_user(user, &base),
                    Found::Group(group) => render_group(group, &base),
                })
            })
            .collect(),
    }))
}

// ----- Discovery -----------------------------------------------------------------------

/// An endpoint this server does not have (bulk, `/Me`), answered as SCIM.
async fn unknown_endpoint() -> ScimError {
    ScimError::NotFound("no such SCIM endpoint (bulk and /Me are not supported)".into())
}

async fn service_provider_config(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
) -> Response {
    scim(
        StatusCode::OK,
        &resource::service_provider_config(&base(&state, &headers)),
    )
}

fn listed(resources: Vec<Value>) -> Response {
    list(Page {
        total_results: resources.len(),
        start_index: 1,
        resources,
    })
}

async fn schemas(State(state): State<Arc<ScimState>>, headers: HeaderMap) -> Response {
    listed(resource::schemas(&base(&state, &headers)))
}

async fn schema(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    resource::schemas(&base(&state, &headers))
        .into_iter()
        .find(|schema| schema["id"] == id.as_str())
        .map(|schema| scim(StatusCode::OK, &schema))
        .ok_or_else(|| ScimError::NotFound("no such schema".into()))
}

async fn resource_types(State(state): State<Arc<ScimState>>, headers: HeaderMap) -> Response {
    listed(resource::resource_types(&base(&state, &headers)))
}

async fn resource_type(
    State(state): State<Arc<ScimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    resource::resource_types(&base(&state, &headers))
        .into_iter()
        .find(|kind| kind["id"] == id.as_str())
        .map(|kind| scim(StatusCode::OK, &kind))
        .ok_or_else(|| ScimError::NotFound("no such resource type".into()))
}
