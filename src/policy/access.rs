//! Who may run a query: the view plane's authorisation as one pure function of the app's
//! visibility, the caller, the caller's membership, the API key's scope and the query's
//! grant. No IO: the gateway looks up membership first (for private and missing apps) and
//! passes the answer in.

use super::Grant;
use super::refusal::Refusal;
use crate::auth::Caller;
use crate::spec::Visibility;

/// The query being asked for, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub app: &'a str,
    pub query: &'a str,
    pub visibility: Visibility,
    pub grant: &'a Grant,
}

/// Whether the gateway must look up if `caller` is a member of the app before
/// [`authorize`]: for signed-in callers (but admins who must enrol MFA, who are refused
/// first) of a private app, and of an app that does not exist (`None`), so that a missing
/// app costs the same lookup as a private one and the two cannot be told apart by timing.
pub fn needs_membership(visibility: Option<Visibility>, caller: Option<&Caller>) -> bool {
    caller.is_some_and(|c| !c.must_enrol_mfa())
        && visibility.is_none_or(|v| v == Visibility::Private)
}

/// Whether `caller` may see an app of `visibility` at all (its OpenAPI document; the first
/// checks of [`authorize`]): an admin who has not enrolled in MFA is refused first; a
/// private app is [`Refusal::Hidden`] (with no query named) to anyone but its members.
pub fn may_see_app(
    app: &str,
    visibility: Visibility,
    caller: Option<&Caller>,
    is_member: bool,
) -> Result<(), Refusal> {
    if caller.is_some_and(Caller::must_enrol_mfa) {
        return Err(Refusal::MfaEnrolmentRequired);
    }
    match (visibility, caller) {
        (Visibility::Public, _) | (Visibility::Workspace, Some(_)) => Ok(()),
        (Visibility::Workspace, None) => {
            Err(Refusal::SignInRequired("this app needs a signed-in user"))
        }
        (Visibility::Private, None) => Err(Refusal::hidden_app(app)),
        (Visibility::Private, Some(_)) if !is_member => Err(Refusal::hidden_app(app)),
        (Visibility::Private, Some(_)) => Ok(()),
    }
}

/// Decides whether `caller` (`None`: anonymous) may run `target`. `is_member` matters only
/// where [`needs_membership`] says so.
///
/// The order of the checks is part of the contract: an admin who has not enrolled in MFA is
/// refused first; visibility comes before the key scope and the grant, so that nobody can
/// tell a private app they may not see from a missing one (both answer
/// [`Refusal::Hidden`]).
pub fn authorize(
    target: &Target<'_>,
    caller: Option<&Caller>,
    is_member: bool,
) -> Result<(), Refusal> {
    may_see_app(target.app, target.visibility, caller, is_member).map_err(
        |refusal| match refusal {
            Refusal::Hidden { .. } => Refusal::hidden(target.app, target.query),
            other => other,
        },
    )?;
    if let Some(scope) = caller.and_then(Caller::api_key_scope)
        && !scope.allows(target.app, target.query)
    {
        return Err(Refusal::OutsideKeyScope);
    }
    if !target.grant.allows(caller) {
        return Err(match caller {
            None => Refusal::SignInRequired("this query is only granted to signed-in users"),
            Some(_) => Refusal::NotGranted,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ApiKeyScope, CallerVia, Identity, Role};
    use crate::policy::refusal::RefusalKind;

    fn person(role: Role, mfa_enabled: bool, via: CallerVia) -> Caller {
        Caller {
            user: Identity {
                id: "u1".into(),
                email: "u1@example.com".into(),
                role,
                groups: vec!["sales".into()],
                mfa_enabled,
                claims: Default::default(),
            },
            via,
        }
    }

    fn session() -> CallerVia {
        CallerVia::Session {
            token_hash: "h".into(),
            public_id: "p".into(),
            created_at: 0,
            authenticated_at: 0,
        }
    }

    fn key(queries: &[&str]) -> CallerVia {
        CallerVia::ApiKey {
            id: "k".into(),
            scope: ApiKeyScope {
                apps: Vec::new(),
                queries: queries.iter().map(|q| q.to_string()).collect(),
            },
        }
    }

    /// The result as a short code: "ok" or the refusal's code.
    fn decide(
        visibility: Visibility,
        grant: &Grant,
        caller: Option<&Caller>,
        is_member: bool,
    ) -> &'static str {
        let target = Target {
            app: "shop",
            query: "orders",
            visibility,
            grant,
        };
        match authorize(&target, caller, is_member) {
            Ok(()) => "ok",
            Err(refusal) => refusal.code(),
        }
    }

    #[test]
    fn authorisation_follows_the_table() {
        use Visibility::{Private, Public, Workspace};
        let anyone = Grant {
            anonymous: true,
            ..Grant::default()
        };
        let viewers = Grant {
            roles: vec![Role::Viewer],
            ..Grant::default()
        };
        let sales = Grant {
            groups: vec!["sales".into()],
            ..Grant::default()
        };
        let nobody = Grant::default();
        let viewer = person(Role::Viewer, false, session());
        let developer = person(Role::Developer, false, session());
        let admin_without_mfa = person(Role::Admin, false, session());
        let admin = person(Role::Admin, true, session());
        let key_in_scope = person(Role::Developer, false, key(&["shop/orders"]));
        let key_elsewhere = person(Role::Developer, false, key(&["shop/other"]));

        // (visibility, grant, caller, member, expected)
        let cases: Vec<(Visibility, &Grant, Option<&Caller>, bool, &str)> = vec![
            // Public apps.
            (Public, &anyone, None, false, "ok"),
            (Public, &viewers, None, false, "unauthenticated"),
            (Public, &viewers, Some(&viewer), false, "ok"),
            (Public, &viewers, Some(&developer), false, "not_granted"),
            (Public, &sales, Some(&developer), false, "ok"),
            (Public, &nobody, Some(&admin), false, "not_granted"),
            (
                Public,
                &anyone,
                Some(&admin_without_mfa),
                false,
                "mfa_enrolment_required",
            ),
            // Workspace apps: any signed-in caller, then the grant.
            (Workspace, &viewers, None, false, "unauthenticated"),
            (Workspace, &viewers, Some(&viewer), false, "ok"),
            (Workspace, &viewers, Some(&developer), false, "not_granted"),
            // Private apps: members only; everyone else as if the app did not exist.
            (Private, &viewers, None, false, "not_found"),
            (Private, &viewers, Some(&viewer), false, "not_found"),
            (Private, &viewers, Some(&viewer), true, "ok"),
            (Private, &nobody, Some(&viewer), true, "not_granted"),
            (Private, &viewers, Some(&admin), false, "not_found"),
            (
                Private,
                &sales,
                Some(&admin_without_mfa),
                true,
                "mfa_enrolment_required",
            ),
            // API keys: visibility first (a key cannot tell hidden from missing), then scope.
            (Private, &sales, Some(&key_elsewhere), false, "not_found"),
            (
                Private,
                &sales,
                Some(&key_elsewhere),
                true,
                "outside_key_scope",
            ),
            (Private, &sales, Some(&key_in_scope), true, "ok"),
            (
                Workspace,
                &sales,
                Some(&key_elsewhere),
                false,
                "outside_key_scope",
            ),
            (
                Public,
                &anyone,
                Some(&key_elsewhere),
                false,
                "outside_key_scope",
            ),
        ];
        for (visibility, grant, caller, member, expected) in cases {
            assert_eq!(
                decide(visibility, grant, caller, member),
                expected,
                "{visibility:?} {grant:?} {caller:?} member={member}"
            );
        }
    }

    #[test]
    fn membership_is_needed_for_signed_in_callers_of_private_and_missing_apps() {
        let viewer = person(Role::Viewer, true, session());
        let unenrolled_admin = person(Role::Admin, false, session());
        for (visibility, caller, needed) in [
            (Some(Visibility::Private), Some(&viewer), true),
            (None, Some(&viewer), true),
            (Some(Visibility::Private), None, false),
            (None, None, false),
            (Some(Visibility::Private), Some(&unenrolled_admin), false),
            (Some(Visibility::Workspace), Some(&viewer), false),
            (Some(Visibility::Public), Some(&viewer), false),
        ] {
            assert_eq!(
                needs_membership(visibility, caller),
                needed,
                "{visibility:?} {caller:?}"
            );
        }
    }

    #[test]
    fn hidden_apps_and_missing_ones_refuse_alike() {
        let grant = Grant::default();
        let target = Target {
            app: "shop",
            query: "orders",
            visibility: Visibility::Private,
            grant: &grant,
        };
        let refusal = authorize(&target, None, false).unwrap_err();
        assert_eq!(refusal.kind(), RefusalKind::NotFound);
        assert_eq!(refusal.to_string(), "no query `orders` in app `shop`");
    }
}
