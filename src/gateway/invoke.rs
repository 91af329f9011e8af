//! Running a stored query: look up, authorise, validate, bind, execute, stream.
//!
//! A client that resets its connection while its query runs (see
//! [`ClientReset`](crate::http::ClientReset)) ends the run: the execution is dropped, which
//! cancels the statement on the server, and the request is logged with status 499
//! (`client_reset`). A client that only closes its side is answered as usual: a half-close
//! looks the same, and its statement is bounded by its timeout.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use tokio::sync::OwnedSemaphorePermit;

use super::GatewayState;
use super::edge_policy::{Found, Resolved};
use super::ndjson::{Format, respond_lines};
use super::response::{LogContext, RunAudit, respond_rows};
use crate::auth::{Caller, CallerVia};
use crate::catalog::binding::BindValues;
use crate::catalog::compile::{CompiledQuery, CompiledTemplate};
use crate::datasource::http::HttpReply;
use crate::datasource::{DatasourceError, ExecOptions};
use crate::http::body::{UniqueObject, refused_key};
use crate::http::{ApiError, ClientReset, RequestId};
use crate::policy::rate_limit::Decision;
use crate::policy::refusal::RateLimited;
use crate::policy::{self, Refusal, ScopedRule, Target};
use crate::snapshot::Snapshot;
use crate::spec::Visibility;

/// `POST /v1/apps/{app}/queries/{query}` with `{"params": {...}}`, once the edge policy
/// ([`serve_query`](super::edge_policy::serve_query), which counts the answer in the
/// query's metric series) let it through with what it found.
pub(super) async fn invoke(
    state: &Arc<GatewayState>,
    resolved: Resolved<'_>,
    request: Request,
) -> Result<Response, ApiError> {
    // The request itself rather than a `HeaderMap` extractor, which would clone the headers.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let reset = parts
        .extensions
        .get::<ClientReset>()
        .cloned()
        .unwrap_or_default();
    let Resolved {
        snapshot,
        found:
            Found {
                names,
                request_id,
                ip,
                started,
            },
        visibility: app_visibility,
        query: query_index,
    } = resolved;
    let (app_name, query_name) =
        names.ok_or_else(|| ApiError::not_found("no such app or query"))?;
    // Unknown apps, unknown queries and private apps answer alike, whatever credentials the
    // caller sends and in the same time class, so names cannot be probed: credentials are
    // checked before the names (a bearer that is not a live key is 401 for every name), and
    // a signed-in caller's membership is looked up for an unknown app as for a private one.
    let unknown = || Refusal::hidden(&app_name, &query_name);
    // The edge looked the names up in this snapshot: the app's visibility, and the query
    // (which exists only in a known app).
    let found = query_index
        .and_then(|index| snapshot.catalog.query_at(index))
        .zip(app_visibility);
    // Queries anyone may run that do not bind the caller skip the session lookup, unless
    // the caller sends an `Authorization` header (a dead key must not pass as anonymous).
    let anonymous_ok = found.is_some_and(|(query, visibility)| {
        visibility == Visibility::Public
            && query.policy.grant.anonymous
            && !query.template.uses_user()
            && query.row_security.is_none()
    }) && !headers.contains_key(header::AUTHORIZATION);
    let caller = if anonymous_ok {
        None
    } else {
        crate::auth::routes::caller(&state.auth, headers).await?
    };
    let is_member = match &caller {
        Some(caller) if policy::needs_membership(app_visibility, Some(caller)) => {
            state
                .auth
                .service
                .is_member(&app_name, &caller.user.id)
                .await?
        }
        _ => false,
    };
    let (query, visibility) = found.ok_or_else(unknown)?;
    let target = Target {
        app: &app_name,
        query: &query_name,
        visibility,
        grant: &query.policy.grant,
    };
    policy::authorize(&target, caller.as_ref(), is_member)?;
    let running = admit(state, query, caller.as_ref(), ip).await?;
    let run = Run {
        request_id,
        app_name,
        query_name,
        caller,
        ip,
        started,
        running,
        reset,
    };
    execute(state, snapshot, query, run, headers, body).await
}

/// `POST /v1/admin/apps/{app}/queries/{query}/run`: an admin tests a query whatever its
/// visibility and grants (limits and concurrency still apply). The admin's own user values
/// are bound; with the admin token there are none.
#[allow(clippy::too_many_arguments)]
pub async fn run_as_admin(
    state: &Arc<GatewayState>,
    request_id: RequestId,
    app_name: String,
    query_name: String,
    caller: Option<Caller>,
    ip: Option<std::net::IpAddr>,
    reset: ClientReset,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let snapshot = state.snapshot();
    let (_, query) = snapshot
        .catalog
        .query(&app_name, &query_name)
        .ok_or_else(|| Refusal::hidden(&app_name, &query_name))?;
    let running = admit(state, query, caller.as_ref(), ip).await?;
    let run = Run {
        request_id,
        app_name,
        query_name,
        caller,
        ip,
        started,
        running,
        reset,
    };
    execute(state, &snapshot, query, run, headers, body).await
}

/// Rate limits (per IP when the app or query sets one, per user, per key) and the
/// concurrency cap; refusals are 429 with `Retry-After`, before any datasource is touched.
async fn admit(
    state: &GatewayState,
    query: &CompiledQuery,
    caller: Option<&Caller>,
    ip: Option<std::net::IpAddr>,
) -> Result<Option<OwnedSemaphorePermit>, Refusal> {
    let limits = &query.policy.limits;
    let limiter = &state.edge.limiter;
    // Each check: the rule, its bucket, who it limits (for the message) and the limit's
    // name in the metrics. At most two, per address first; no allocation when neither is set.
    let per_ip = match (&limits.per_ip, ip) {
        (Some(rule), Some(ip)) => Some((
            rule,
            rule.key("ip", &crate::policy::client_ip::bucket_key(ip)),
            "address",
            "query_address",
        )),
        _ => None,
    };
    let per_caller = match caller.map(|c| &c.via) {
        Some(CallerVia::ApiKey { id, .. }) => limits
            .per_key
            .as_ref()
            .map(|rule| (rule, rule.key("key", id), "API key", "query_api_key")),
        Some(CallerVia::Session { .. } | CallerVia::Token { .. }) => {
            match (&limits.per_user, caller) {
                (Some(rule), Some(caller)) => Some((
                    rule,
                    rule.key("user", &caller.user.id),
                    "user",
                    "query_user",
                )),
                _ => None,
            }
        }
        None => None,
    };
    let checks: [Option<(&ScopedRule, String, &'static str, &'static str)>; 2] =
        [per_ip, per_caller];
    for (rule, key, who, limit) in checks.into_iter().flatten() {
        if let Decision::Deny { retry_after_secs } = limiter.check(&key, rule.rule).await {
            state.metrics.rate_limited(limit);
            return Err(Refusal::RateLimited {
                limit: RateLimited::Query {
                    who,
                    rule: rule.rule,
                },
                retry_after_secs,
            });
        }
    }
    match &limits.running {
        None => Ok(None),
        Some(slots) => slots.clone().try_acquire_owned().map(Some).map_err(|_| {
            state.metrics.rate_limited("query_concurrency");
            Refusal::TooManyConcurrent {
                max: limits.max_concurrency,
            }
        }),
    }
}

/// What an admitted run carries to execution.
struct Run {
    request_id: RequestId,
    app_name: String,
    query_name: String,
    caller: Option<Caller>,
    /// The client's address (for the audit log's record of the run).
    ip: Option<std::net::IpAddr>,
    started: Instant,
    running: Option<OwnedSemaphorePermit>,
    /// Fires if the client resets its connection.
    reset: ClientReset,
}

/// Validates, binds, executes and streams an admitted run.
async fn execute(
    state: &GatewayState,
    snapshot: &Snapshot,
    query: &CompiledQuery,
    run: Run,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let needs_user = query.template.uses_user()
        || query
            .row_security
            .as_ref()
            .is_some_and(|mapping| !mapping.admits_anonymous());
    if needs_user && run.caller.is_none() {
        return Err(ApiError::unauthenticated(
            "this query runs as the signed-in user; sign in first",
        ));
    }
    let format = Format::from_headers(headers);
    if format == Format::Ndjson && matches!(query.template, CompiledTemplate::Http(_)) {
        return Err(ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "an HTTP datasource's answer is one JSON envelope, not rows: accept application/json",
        ));
    }
    let input = read_params(headers, body, state.limits.max_body_bytes).await?;
    execute_params(state, snapshot, query, run, input, format).await
}

/// `POST /v1/admin/apps/{app}/queries/{query}/preview`: runs `query` (a draft compiled by
/// the edit plane, or the stored one) on the served pools as `caller` would run it: the
/// caller's grants (`is_member` for private apps) and `{{ user.* }}` values, without rate
/// limits. A refusal is 403 `preview_refused` naming why, so it cannot be mistaken for the
/// admin's own.
#[allow(clippy::too_many_arguments)]
pub async fn preview(
    state: &Arc<GatewayState>,
    request_id: RequestId,
    target: &Target<'_>,
    query: &CompiledQuery,
    caller: Caller,
    is_member: bool,
    params: serde_json::Map<String, serde_json::Value>,
) -> Result<Response, ApiError> {
    policy::authorize(target, Some(&caller), is_member).map_err(|refusal| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "preview_refused",
            format!(
                "this user may not run the query ({}): {refusal}",
                refusal.code()
            ),
        )
    })?;
    let snapshot = state.snapshot();
    if snapshot.pools.get(&query.datasource).is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "datasource_not_serving",
            "the query's datasource is not serving yet: save the datasource first",
        ));
    }
    let run = Run {
        request_id,
        app_name: target.app.to_string(),
        query_name: target.query.to_string(),
        caller: Some(caller),
        ip: None,
        started: Instant::now(),
        running: None,
        reset: ClientReset::default(),
    };
    execute_params(state, &snapshot, query, run, params, Format::Json).await
}

/// [`execute`] once the params are read.
async fn execute_params(
    state: &GatewayState,
    snapshot: &Snapshot,
    query: &CompiledQuery,
    run: Run,
    input: serde_json::Map<String, serde_json::Value>,
    format: Format,
) -> Result<Response, ApiError> {
    let Run {
        request_id,
        app_name,
        query_name,
        caller,
        ip,
        started,
        running,
        reset,
    } = run;
    let user_values = caller.as_ref().map(|c| &c.user);
    let mut values = query
        .params
        .validate(input)
        .map_err(|e| ApiError::invalid_params(&e.param, e.to_string()))?;
    let mut bound = BindValues {
        params: &mut values,
        user: user_values,
    };
    let Some(source) = snapshot.pools.get(&query.datasource) else {
        tracing::error!(request_id = %request_id.as_str(), datasource = %query.datasource, "Query names a datasource without a pool");
        return Err(ApiError::internal());
    };
    let context = LogContext {
        request_id,
        app: app_name,
        query: query_name,
        datasource: query.datasource.clone(),
        user_id: caller.as_ref().map(|c| c.user.id.clone()),
        started,
        running,
        // Only when query runs are audited: otherwise nothing is cloned or allocated.
        audit: state.audit.query_runs().map(|runs| RunAudit {
            runs: runs.clone(),
            api_key: match caller.as_ref().map(|c| &c.via) {
                Some(CallerVia::ApiKey { id, .. }) => Some(id.clone()),
                _ => None,
            },
            ip,
        }),
    };
    let sql = match &query.template {
        CompiledTemplate::Sql(sql) => sql,
        CompiledTemplate::Http(http) => {
            let request = http
                .render(&bound)
                .map_err(|e| ApiError::invalid_params(&e.param, e.to_string()))?;
            // The call's future (reqwest's) is boxed: held inline it would make this
            // function's future, and every future that holds it up to the connection's, that
            // much larger to move, for every query, SQL ones included.
            let call = Box::pin(source.send_http(request));
            // The query's own timeout bounds the call too; the datasource's `timeout_ms`
            // (enforced by its client) is the other bound.
            let reply = tokio::select! {
                biased;
                reply = tokio::time::timeout(query.timeout, call) => {
                    reply.unwrap_or(Err(DatasourceError::Timeout))
                }
                () = reset.happened() => return Err(context.client_reset()),
            };
            return match reply {
                Ok(reply) => {
                    context.log_http(reply.status);
                    Ok(http_envelope(reply))
                }
                Err(error) => {
                    count_failure(state, &query.datasource, &error);
                    let api_error = ApiError::from(&error);
                    context.log_error(api_error.status, &error);
                    Err(api_error)
                }
            };
        }
    };
    // Row security: the caller's PostgreSQL role and claims, or 401 for an anonymous
    // caller the mapping has no role for.
    let row_security = match &query.row_security {
        None => None,
        Some(mapping) => Some(mapping.context(bound.user).ok_or_else(|| {
            ApiError::unauthenticated("this query runs as the signed-in user; sign in first")
        })?),
    };
    let statement = sql
        .render(&mut bound)
        .map_err(|e| ApiError::invalid_params(&e.param, e.to_string()))?;
    let options = ExecOptions {
        timeout: query.timeout,
        max_rows: query.max_rows,
        row_security,
        frame_bytes: match format {
            Format::Json => crate::datasource::FRAME_BYTES,
            Format::Ndjson => 1,
        },
    };
    // Dropping the execution (the client reset) cancels the statement on the server.
    let executed = tokio::select! {
        biased;
        executed = source.execute(statement, options) => executed,
        () = reset.happened() => return Err(context.client_reset()),
    };
    match executed {
        Ok(execution) => match format {
            Format::Json => Ok(respond_rows(execution, context, reset).await),
            Format::Ndjson => Ok(respond_lines(execution, context, reset)),
        },
        Err(error) => {
            count_failure(state, &query.datasource, &error);
            let mut api_error = ApiError::from(&error);
            if let DatasourceError::Bind { position, .. } = &error
                && let Some(name) = sql.binding_at(*position, &bound)
            {
                api_error.message = format!("param `{name}`: {}", api_error.message);
                api_error.param = Some(name);
            }
            context.log_error(api_error.status, &error);
            Err(api_error)
        }
    }
}

/// Counts a statement refused because its datasource could not be reached or the egress
/// policy refused the connection (the failures that come before a statement runs).
fn count_failure(state: &GatewayState, datasource: &str, error: &DatasourceError) {
    match error {
        DatasourceError::Unavailable { class } => state.metrics.connect_failed(datasource, class),
        DatasourceError::EgressRefused => state.metrics.egress_refused(datasource),
        _ => {}
    }
}

/// The reply of an HTTP datasource: `{"status": n, "headers": {...}, "body": ...}`.
fn http_envelope(reply: HttpReply) -> Response {
    let mut out = Vec::with_capacity(reply.body_json.len() + 128);
    out.extend_from_slice(b"{\"status\":");
    out.extend_from_slice(reply.status.to_string().as_bytes());
    out.extend_from_slice(b",\"headers\":");
    let headers: serde_json::Map<String, serde_json::Value> = reply
        .headers
        .into_iter()
        .map(|(name, value)| (name, serde_json::Value::String(value)))
        .collect();
    serde_json::to_writer(&mut out, &headers).expect("headers serialise");
    out.extend_from_slice(b",\"body\":");
    out.extend_from_slice(&reply.body_json);
    out.push(b'}');
    let mut response = Response::new(Body::from(out));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Reads and parses the body: `{"params": {...}}`, or an empty body for no params.
async fn read_params(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let bytes = crate::http::body::read_json_bytes(headers, body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    // `{"params": {"id": 1, "id": 2}}` is refused, not read as whichever parser's pick: the
    // params are checked for repeated keys, at any depth, in the pass that reads them.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Invocation {
        #[serde(default)]
        params: Option<UniqueObject>,
    }
    let invocation: Invocation = serde_json::from_slice(&bytes).map_err(|error| {
        if let Some(repeated) = refused_key(&error) {
            return repeated;
        }
        // serde_json's own message can quote the offending value; only its position is used.
        let (line, column) = (error.line(), error.column());
        let message = if error.is_data() {
            format!(
                "the body must be an object with one member, `params`, holding an object \
                 (problem at line {line}, column {column})"
            )
        } else {
            format!("the body is not valid JSON (line {line}, column {column})")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })?;
    Ok(invocation
        .params
        .map_or_else(serde_json::Map::new, |UniqueObject(params)| params))
}
