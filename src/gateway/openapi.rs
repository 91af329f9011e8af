//! The OpenAPI documents (docs/API.md, "OpenAPI"): `GET /v1/openapi.json`, the instance's
//! own API (public, the same for everyone), and `GET /v1/apps/{app}/openapi.json`, the
//! queries of one app the caller may run.
//!
//! The app document is authorised as running its queries is: the app's IP allowlist, then
//! who is asking (a bearer that is not a live key is 401 whatever the name), membership,
//! visibility (a private app the caller may not see answers exactly as a missing one), and
//! per query the API key's scope and the grant. A query the caller may not run is left out.
//! Both answers carry an ETag and are revalidated (`If-None-Match` gets 304).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use crate::http::ApiError;
use crate::openapi::{app, instance};
use crate::policy::client_ip::ClientIp;
use crate::policy::{self, Refusal, Target};
use crate::snapshot::Snapshot;
use crate::spec::Visibility;

/// `GET /v1/openapi.json`.
pub async fn instance_document(headers: HeaderMap) -> Result<Response, ApiError> {
    let document = instance::document().map_err(|error| {
        tracing::error!(error = %error, "The instance's OpenAPI document is broken");
        ApiError::internal()
    })?;
    Ok(answer(
        &headers,
        document.json.clone(),
        &document.etag,
        "no-cache",
    ))
}

/// `GET /v1/apps/{app}/openapi.json`.
pub async fn app_document(
    State(state): State<Arc<GatewayState>>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let app_name = path.map(|Path(app)| app).unwrap_or_default();
    let headers = request.headers();
    let snapshot = state.snapshot();
    let compiled = snapshot.catalog.apps.get(&app_name);
    // Unknown apps get the default policy, as on the query route.
    let app_policy = compiled.map(|app| app.policy.clone()).unwrap_or_default();
    let ip = ClientIp::of(&request);
    let mut response = match ip_then_document(&state, &snapshot, &app_name, ip, headers).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    app_policy.headers.apply(response.headers_mut());
    if let Some(cors) = &app_policy.cors {
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        cors.response_headers(origin, response.headers_mut());
    }
    Ok(response)
}

async fn ip_then_document(
    state: &GatewayState,
    snapshot: &Snapshot,
    app_name: &str,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let compiled = snapshot.catalog.apps.get(app_name);
    let app_policy = compiled.map(|app| app.policy.clone()).unwrap_or_default();
    if let Some(refused) =
        super::edge_policy::ip_refused(state, &app_policy, app_name, ip, headers).await
    {
        return Ok(refused);
    }
    // Credentials first, then the name: a dead key is 401 for every app name.
    let caller = crate::auth::routes::caller(&state.auth, headers).await?;
    let visibility = compiled.map(|app| app.visibility);
    // A signed-in caller's membership is looked up for a missing app as for a private one.
    let is_member = match &caller {
        Some(caller) if policy::needs_membership(visibility, Some(caller)) => {
            state
                .auth
                .service
                .is_member(app_name, &caller.user.id)
                .await?
        }
        _ => false,
    };
    let (Some(compiled), Some(visibility), Some(spec)) =
        (compiled, visibility, snapshot.spec.apps.get(app_name))
    else {
        return Err(Refusal::hidden_app(app_name).into());
    };
    policy::access::may_see_app(app_name, visibility, caller.as_ref(), is_member)?;
    let mut names: Vec<&String> = compiled.queries.keys().collect();
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let query = &compiled.queries[name];
        let target = Target {
            app: app_name,
            query: name,
            visibility,
            grant: &query.policy.grant,
        };
        if policy::authorize(&target, caller.as_ref(), is_member).is_err() {
            continue;
        }
        let Some(query_spec) = spec.queries.get(name) else {
            continue;
        };
        entries.push(app::QueryEntry {
            name,
            description: query_spec.description.as_deref(),
            params: &query_spec.params,
            result: snapshot.described(query.index),
            max_rows: query.max_rows,
            anonymous: visibility == Visibility::Public
                && query.policy.grant.anonymous
                && !query.template.uses_user(),
        });
    }
    let info = app::AppInfo {
        app: app_name,
        revision: snapshot.revision,
        cookie_name: state.auth.cookie.name(),
    };
    let document = app::document(&info, &entries);
    let json = serde_json::to_vec(&document).map_err(|error| {
        tracing::error!(error = %error, "An app's OpenAPI document did not serialise");
        ApiError::internal()
    })?;
    let etag = instance::etag_of(&json);
    let mut response = answer(headers, json, &etag, "private, no-cache");
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Cookie, Authorization"),
    );
    Ok(response)
}

/// 200 with the document and its ETag, or 304 when `If-None-Match` already names it.
fn answer(headers: &HeaderMap, json: Vec<u8>, etag: &str, cache: &'static str) -> Response {
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
