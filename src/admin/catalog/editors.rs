//! Who may edit what on the catalog API: admins everything ([`require_admin`] for what is
//! theirs alone); a developer the apps they are an editor of ([`require_editor`], with the
//! missing app's 404 for a private app they may not see), inside the limits an editor keeps
//! to ([`editor_limits`]: no perimeter settings, no query grants, only datasources the app
//! already uses).

use axum::http::StatusCode;

use super::no_app;
use crate::admin::{AdminActor, AdminState};
use crate::http::ApiError;
use crate::spec::checks::shown_name;
use crate::spec::{AppSpec, CatalogSpec, QuerySpec, Visibility};

/// Admins only (datasources; creating and deleting apps).
pub(super) fn require_admin(actor: &AdminActor, what: &str) -> Result<(), ApiError> {
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
pub(super) async fn require_editor(
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
/// query grants or a `row_security` of its own, or point a query at a datasource the app's stored queries do not
/// already use (an admin adds the first query on a datasource). Admins pass.
pub(super) fn editor_limits(
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
        // Which PostgreSQL role a query runs as (or running it without row security) is
        // part of the perimeter too.
        let stored_rows = stored
            .queries
            .get(name)
            .and_then(|q| q.row_security.clone());
        if query.row_security != stored_rows {
            return Err(forbidden(
                "a query's `row_security` is for admins to set or change".into(),
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
