//! Admin routes for accounts: users (create, role, groups, disable) and private-app members
//! (the audit log is in `audit`). Role changes need fresh auth when made from a session.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

use super::{AdminActor, AdminState};
use crate::auth::Role;
use crate::auth::routes::client_info;
use crate::http::body::read_json;
use crate::http::{ApiError, json_response as json};
use crate::policy::client_ip::ClientIp;
use crate::store::users::UserRecord;

pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}/role", put(set_role))
        .route("/users/{id}/groups", put(set_groups))
        .route("/users/{id}/disabled", put(set_disabled))
        .route("/users/{id}/unlock", post(unlock))
        .route("/apps/{app}/members", get(list_members))
        .route(
            "/apps/{app}/members/{user_id}",
            put(add_member).delete(remove_member),
        )
}

type Shared = State<Arc<AdminState>>;
type Peer = Option<Extension<ClientIp>>;

/// A user as the admin API shows it: never a password hash, TOTP secret or code.
#[derive(Serialize)]
struct UserView<'a> {
    id: &'a str,
    email: &'a str,
    display_name: &'a str,
    role: Role,
    groups: &'a [String],
    disabled: bool,
    mfa_enabled: bool,
    locked_until: Option<i64>,
    failed_logins: u32,
    created_at: i64,
    last_login_at: Option<i64>,
}

fn view(user: &UserRecord) -> UserView<'_> {
    UserView {
        id: &user.id,
        email: &user.email,
        display_name: &user.display_name,
        role: user.role,
        groups: &user.groups,
        disabled: user.disabled,
        mfa_enabled: user.mfa_enabled,
        locked_until: user.locked_until,
        failed_logins: user.failed_logins,
        created_at: user.created_at,
        last_login_at: user.last_login_at,
    }
}

async fn list_users(State(state): Shared) -> Result<Response, ApiError> {
    let users = state.auth.service.list_users().await?;
    let views: Vec<UserView> = users.iter().map(view).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "users": views })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserInput {
    email: String,
    #[serde(default)]
    display_name: String,
    role: Role,
    #[serde(default)]
    groups: Vec<String>,
    /// Optional: without one, the user sets it through a password reset.
    #[serde(default)]
    password: Option<String>,
}

async fn create_user(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let input: NewUserInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    let user = state
        .auth
        .service
        .create_user(
            &input.email,
            &input.display_name,
            input.role,
            input.groups,
            input.password,
            &actor.id,
        )
        .await?;
    Ok(json(StatusCode::CREATED, &view(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleInput {
    role: Role,
}

async fn set_role(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let input: RoleInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    let client = client_info(peer.as_deref(), &headers);
    let user = state
        .auth
        .service
        .set_role(&id, input.role, &actor.id, actor.caller.is_some(), &client)
        .await?;
    Ok(json(StatusCode::OK, &view(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsInput {
    groups: Vec<String>,
}

async fn set_groups(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let input: GroupsInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    let client = client_info(peer.as_deref(), &headers);
    let user = state
        .auth
        .service
        .set_groups(&id, input.groups, &actor.id, &client)
        .await?;
    Ok(json(StatusCode::OK, &view(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisabledInput {
    disabled: bool,
}

async fn set_disabled(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let input: DisabledInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    let client = client_info(peer.as_deref(), &headers);
    let user = state
        .auth
        .service
        .set_disabled(&id, input.disabled, &actor.id, &client)
        .await?;
    Ok(json(StatusCode::OK, &view(&user)))
}

/// `members` lists every member's id; `editors` those of them who may edit the app
/// through the catalog API.
async fn list_members(State(state): Shared, Path(app): Path<String>) -> Result<Response, ApiError> {
    let members = state.auth.service.member_list(&app).await?;
    let editors: Vec<&str> = members
        .iter()
        .filter(|m| m.editor)
        .map(|m| m.user_id.as_str())
        .collect();
    let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "app": app, "members": ids, "editors": editors }),
    ))
}

/// The optional body of `PUT /apps/{app}/members/{user_id}`; an empty body is a plain member.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberInput {
    #[serde(default)]
    editor: bool,
}

async fn add_member(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path((app, user_id)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let input: MemberInput = read_json(&headers, body, state.auth.max_body_bytes).await?;
    if state.auth.service.user_by_id(&user_id).await.is_err() {
        return Err(ApiError::not_found("no such user"));
    }
    let client = client_info(peer.as_deref(), &headers);
    state
        .auth
        .service
        .add_member(&app, &user_id, input.editor, &actor.id, &client)
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "app": app, "user_id": user_id, "member": true, "editor": input.editor }),
    ))
}

async fn remove_member(
    State(state): Shared,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path((app, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if let Some(caller) = &actor.caller {
        state.auth.service.require_fresh(caller)?;
    }
    let client = client_info(peer.as_deref(), &headers);
    state
        .auth
        .service
        .remove_member(&app, &user_id, &actor.id, &client)
        .await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "app": app, "user_id": user_id, "member": false }),
    ))
}

async fn unlock(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<AdminActor>,
    peer: Peer,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = client_info(peer.as_deref(), &headers);
    let user = state.auth.service.unlock(&id, &actor.id, &client).await?;
    Ok(json(StatusCode::OK, &view(&user)))
}
