//! `POST /v1/admin/apps/{app}/queries/{query}/preview`: runs a query, or a draft of it, as a
//! named user, for debugging.
//!
//! Body: `{"as": "<user id or email>", "params": {...}, "query": {<draft, optional>}}`. An
//! editor (a developer) previews as themselves or as a member of the app (anyone else is
//! answered as an unknown user), and a draft of theirs keeps to the editor limits.
//! Without `query` the stored query runs; with it, the draft is compiled inside the current
//! catalog (so it is checked exactly as a save would check it) and runs on the served
//! pools: its datasource must already serve. It runs with that user's real grants, app
//! membership and `{{ user.* }}` values, as if they had signed in with a session; a user who
//! may not run it gets 403 `preview_refused` naming the refusal. Nothing is stored. Each
//! preview is audited (`query_previewed`: who, as whom, which query, draft or not; never
//! the params or the rows).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Peer, current, editor_limits, no_app, require_editor, verify_error};
use crate::admin::{AdminActor, AdminState};
use crate::auth::routes::client_info;
use crate::auth::{Caller, CallerVia};
use crate::http::body::read_json;
use crate::http::{ApiError, RequestId};
use crate::policy::Target;
use crate::spec::QuerySpec;
use crate::spec::checks::shown_name;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewInput {
    /// The user to run as: an id or an email address.
    #[serde(rename = "as")]
    as_user: String,
    #[serde(default)]
    params: Map<String, Value>,
    /// A draft of the query; the stored query when absent.
    #[serde(default)]
    query: Option<QuerySpec>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn preview(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    Extension(request_id): Extension<RequestId>,
    peer: Peer,
    headers: HeaderMap,
    Path((app, query_name)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, spec) = current(&state).await?;
    require_editor(&state, &actor, &app, &spec).await?;
    let input: PreviewInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    let service = &state.auth.service;
    let unknown = || ApiError {
        param: Some("as".into()),
        ..ApiError::not_found("no such user to preview as")
    };
    let user = if input.as_user.contains('@') {
        service.user_by_email(&input.as_user).await
    } else {
        service.user_by_id(&input.as_user).await
    }
    .map_err(|_| unknown())?;
    // An editor previews as themselves or as a member of the app, and learns nothing about
    // other accounts: anyone else is answered as an unknown user.
    if !actor.admin
        && actor.caller.as_ref().is_none_or(|c| c.user.id != user.id)
        && !service.is_member(&app, &user.id).await?
    {
        return Err(unknown());
    }
    if user.disabled {
        return Err(ApiError {
            param: Some("as".into()),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "user_disabled",
                "this user is disabled and could not run any query",
            )
        });
    }
    let draft = input.query.is_some();
    let mut draft_spec = spec.clone();
    let Some(app_spec) = draft_spec.apps.get_mut(&app) else {
        return Err(no_app(&app));
    };
    if let Some(draft) = &input.query {
        editor_limits(&actor, &spec, &app, None, Some((&query_name, draft)))?;
    }
    match input.query {
        Some(query) => {
            app_spec.queries.insert(query_name.clone(), query);
        }
        None if !app_spec.queries.contains_key(&query_name) => {
            return Err(ApiError::not_found(format!(
                "no query `{}` in app `{}`",
                shown_name(&query_name),
                shown_name(&app)
            )));
        }
        None => {}
    }
    let visibility = app_spec.visibility;
    let compiled = crate::snapshot::verify(&draft_spec, &state.config, &state.keys)
        .map_err(|error| verify_error(&error, (!actor.admin).then_some(app.as_str())))?;
    let (_, query) = compiled
        .query(&app, &query_name)
        .expect("the query was just put into the catalog");
    let is_member = service.is_member(&app, &user.id).await?;
    let caller = Caller {
        user: crate::auth::service::identity(&user),
        via: CallerVia::Session {
            token_hash: String::new(),
            public_id: "preview".into(),
            created_at: 0,
            authenticated_at: 0,
        },
    };
    let client = client_info(peer.as_deref(), &headers);
    let mut event = state.gateway.audit.event("query_previewed", &client);
    event.actor = Some(actor.id.clone());
    event.user_id = Some(user.id.clone());
    event.details = Some(json!({ "app": app, "query": query_name, "draft": draft }).to_string());
    state.gateway.audit.append(event).await;
    let target = Target {
        app: &app,
        query: &query_name,
        visibility,
        grant: &query.policy.grant,
    };
    crate::gateway::preview(
        &state.gateway,
        request_id,
        &target,
        query,
        caller,
        is_member,
        input.params,
    )
    .await
}
