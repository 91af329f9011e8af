//! The edit plane: `GET /v1/admin/egress` (the addresses a DBA allowlists), `POST
//! /v1/admin/datasources/{name}/test` (a datasource's connection tried step by step), in
//! [`catalog`] the catalog API (datasources, apps, queries, previews), in [`accounts`],
//! users and app members, and in [`audit`] the audit log.
//!
//! Who may call it: a signed-in admin whose session has MFA (an admin still to enrol gets
//! 403 `mfa_enrolment_required`), or automation holding `SLUICE_ADMIN_TOKEN` (compared in
//! constant time; unset means no token is accepted). A developer's session reaches only the
//! catalog API's app and query routes, for the apps it is an editor of ([`catalog`] decides
//! per app); every other route answers it 403. Viewers and API keys get 403 everywhere.
//! Secrets are write-only here too: nothing in this module returns a secret or its
//! ciphertext.

mod accounts;
mod audit;
mod catalog;
mod keys;
mod policy;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::auth::Caller;
use crate::auth::Role;
use crate::auth::routes::AuthState;
use crate::auth::service::AuthError;
use crate::config::Config;
use crate::gateway::GatewayState;
use crate::http::{ApiError, ClientReset, RequestId, json_response};
use crate::policy::Refusal;
use crate::policy::client_ip::ClientIp;
use crate::policy::refusal::IpScope;
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::Store;
use crate::vault::{Keyring, SecretString};

/// What a DBA needs to allowlist Sluice: where its connections come from, and where they go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EgressReport {
    /// Local addresses outbound connections are bound to (`SLUICE_EGRESS_BIND`); empty
    /// means the operating system picks per route.
    pub bind_addresses: Vec<IpAddr>,
    /// Public addresses after NAT, as configured (`SLUICE_EGRESS_PUBLIC_IPS`).
    pub public_ips: Vec<IpAddr>,
    /// Non-public networks every datasource may reach (`SLUICE_EGRESS_ALLOW`).
    pub instance_allow: Vec<String>,
    pub datasources: Vec<DatasourceEgress>,
}

/// One datasource's destination and its own egress allow list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasourceEgress {
    pub name: String,
    pub kind: &'static str,
    /// Host (and port) or base URL; empty for SQLite files.
    pub destination: String,
    pub egress_allow: Vec<String>,
}

/// Builds the report from the configuration and the catalog.
pub fn egress_report(config: &Config, catalog: &CatalogSpec) -> EgressReport {
    let datasources = catalog
        .datasources
        .iter()
        .map(|(name, spec)| {
            let (kind, destination, allow) = match spec {
                DatasourceSpec::Postgres(net) => (
                    "postgres",
                    format!("{}:{}", net.host, net.port.unwrap_or(5432)),
                    net.egress_allow.clone(),
                ),
                DatasourceSpec::Mysql(net) => (
                    "mysql",
                    format!("{}:{}", net.host, net.port.unwrap_or(3306)),
                    net.egress_allow.clone(),
                ),
                DatasourceSpec::Http(http) => {
                    ("http", http.base_url.clone(), http.egress_allow.clone())
                }
                DatasourceSpec::Sqlite(_) => ("sqlite", String::new(), Vec::new()),
            };
            DatasourceEgress {
                name: name.clone(),
                kind,
                destination,
                egress_allow: allow,
            }
        })
        .collect();
    EgressReport {
        bind_addresses: config.egress_bind.clone(),
        public_ips: config.egress_public_ips.clone(),
        instance_allow: config.egress_allow.iter().map(|n| n.to_string()).collect(),
        datasources,
    }
}

/// Where the admin routes read their data.
pub struct AdminState {
    pub auth: Arc<AuthState>,
    pub config: Config,
    /// The view plane's state: the current snapshot, limiter and edge settings.
    pub gateway: Arc<GatewayState>,
    /// The metadata store: catalog revisions for the catalog API, sealed values for key
    /// rotation and status.
    pub store: Arc<dyn Store>,
    /// The instance's keys (current and, during a rotation, old): the catalog API seals
    /// plaintext secrets under the current one and checks that every secret opens before a
    /// revision is stored; key rotation re-seals with them.
    pub keys: Arc<Keyring>,
}

/// The admin router, nested at `/v1/admin`.
pub fn router(state: Arc<AdminState>) -> Router {
    let guard = state.clone();
    let admins_only = Router::new()
        .route("/egress", get(egress))
        .route("/scan", get(scan))
        .route("/datasources/{name}/test", post(test_datasource))
        .route("/apps/{app}/policy", get(app_policy))
        .route("/apps/{app}/queries/{query}/run", post(run_query))
        .route("/key/rotate", post(keys::rotate))
        .route("/key/status", get(keys::status))
        .merge(accounts::router())
        .merge(audit::router())
        .route_layer(axum::middleware::from_fn(admins_only));
    Router::new()
        .merge(admins_only)
        .merge(catalog::router())
        .with_state(state)
        .layer(axum::middleware::from_fn(move |request, next| {
            require_admin(guard.clone(), request, next)
        }))
}

/// Who is acting on the edit plane, for the audit log.
#[derive(Debug, Clone)]
pub struct AdminActor {
    /// The user id, or `admin_token`.
    pub id: String,
    /// The session (absent for the token).
    pub caller: Option<Caller>,
    /// An admin (session or token); false for a developer, who reaches only the catalog
    /// API's app and query routes.
    pub admin: bool,
}

/// Refuses a developer on the routes that are for admins only.
async fn admins_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<AdminActor>() {
        Some(actor) if actor.admin => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin API is for admins signed in with a session",
        )
        .into_response(),
    }
}

async fn egress(State(state): State<Arc<AdminState>>) -> Response {
    let report = egress_report(&state.config, &state.gateway.snapshot().spec);
    json_response(StatusCode::OK, &report)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/admin/scan[?format=sarif]`: the security scan (`crate::scan`) of the served
/// catalog, the settings and the admins' MFA state, as JSON (default) or SARIF 2.1.0.
async fn scan(
    State(state): State<Arc<AdminState>>,
    query: Result<axum::extract::Query<ScanQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let bad = || ApiError {
        param: Some("format".into()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the only query parameter is `format=json|sarif`",
        )
    };
    let axum::extract::Query(query) = query.map_err(|_| bad())?;
    let users = state.auth.service.list_users().await?;
    let admins_without_mfa = users
        .iter()
        .filter(|u| u.role == Role::Admin && !u.mfa_enabled && !u.disabled)
        .map(|u| u.email.clone())
        .collect();
    let keys = state.auth.service.live_api_keys().await?;
    let facts = crate::scan::InstanceFacts::from_config(&state.config, admins_without_mfa)
        .with_api_keys(crate::scan::api_key_facts(keys, &users));
    let spec = &state.gateway.snapshot().spec;
    let mut findings = crate::scan::scan(spec, &facts);
    // Lines in the catalog as `sluice catalog export` writes it.
    crate::scan::locate(&mut findings, &crate::spec::yaml::to_string(spec));
    match query.format.as_deref() {
        None | Some("json") => Ok(json_response(
            StatusCode::OK,
            &crate::scan::report::json(&findings),
        )),
        Some("sarif") => Ok(json_response(
            StatusCode::OK,
            &crate::scan::report::sarif(&findings, None),
        )),
        Some(_) => Err(bad()),
    }
}

/// Tests a served datasource step by step (`datasource::probe`): 200 with the report
/// whether or not it passed (its `ok` says), 404 for a name the catalog does not have.
async fn test_datasource(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.gateway.snapshot();
    let (Some(spec), Some(source)) = (
        snapshot.spec.datasources.get(&name),
        snapshot.pools.get(&name),
    ) else {
        return Err(ApiError::not_found(format!(
            "no datasource `{}`",
            crate::spec::checks::shown_name(&name)
        )));
    };
    let report = source.probe(&name, spec).await;
    Ok(json_response(StatusCode::OK, &report))
}

async fn app_policy(
    State(state): State<Arc<AdminState>>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.gateway.snapshot();
    let compiled = snapshot.catalog.apps.get(&app).ok_or_else(|| {
        ApiError::not_found(format!(
            "no app `{}`",
            crate::spec::checks::shown_name(&app)
        ))
    })?;
    let members = state.auth.service.members(&app).await?;
    let report = policy::report(
        &app,
        compiled,
        &state.config,
        members,
        state.gateway.edge.tls,
    );
    Ok(json_response(StatusCode::OK, &report))
}

async fn run_query(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    Extension(request_id): Extension<RequestId>,
    client_ip: Option<Extension<ClientIp>>,
    Path((app, query)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let ip = client_ip.map(|Extension(ClientIp(ip))| ip);
    let (parts, body) = request.into_parts();
    let reset = parts
        .extensions
        .get::<ClientReset>()
        .cloned()
        .unwrap_or_default();
    crate::gateway::run_as_admin(
        &state.gateway,
        request_id,
        app,
        query,
        actor.caller,
        ip,
        reset,
        &parts.headers,
        body,
    )
    .await
}

async fn require_admin(state: Arc<AdminState>, mut request: Request, next: Next) -> Response {
    let ip = ClientIp::of(&request);
    let allowed = &state.config.edge.admin_allowed_ips;
    if !allowed.is_empty() && !allowed.iter().any(|net| net.contains(&ip)) {
        let client = crate::auth::routes::client_info(Some(&ClientIp(ip)), request.headers());
        state
            .gateway
            .audit
            .ip_refused(&client, serde_json::json!({ "plane": "admin" }))
            .await;
        return ApiError::from(Refusal::IpNotAllowed(IpScope::Admin)).into_response();
    }
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let actor = match bearer {
        Some(presented) if !presented.starts_with(crate::auth::token::API_KEY_PREFIX) => {
            if !token_matches(state.config.admin_token.as_ref(), presented) {
                return ApiError::unauthenticated(
                    "the admin API needs an admin session or `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`",
                )
                .into_response();
            }
            AdminActor {
                id: "admin_token".into(),
                caller: None,
                admin: true,
            }
        }
        _ => match crate::auth::routes::caller(&state.auth, headers).await {
            Err(error) => return error.into_response(),
            Ok(None) => {
                return ApiError::unauthenticated(
                    "the admin API needs an admin session or `Authorization: Bearer <SLUICE_ADMIN_TOKEN>`",
                )
                .into_response();
            }
            Ok(Some(caller)) if caller.must_enrol_mfa() => {
                return ApiError::from(AuthError::MfaEnrolmentRequired).into_response();
            }
            Ok(Some(caller))
                if caller.user.role == Role::Viewer || caller.session_hash().is_none() =>
            {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the admin API is for admins signed in with a session",
                )
                .into_response();
            }
            Ok(Some(caller)) => AdminActor {
                id: caller.user.id.clone(),
                admin: caller.user.role == Role::Admin,
                caller: Some(caller),
            },
        },
    };
    request.extensions_mut().insert(actor);
    next.run(request).await
}

/// Constant-time comparison with the configured token; false when none is configured.
fn token_matches(token: Option<&SecretString>, presented: &str) -> bool {
    token.is_some_and(|token| token.matches(presented))
}
