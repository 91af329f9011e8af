//! Who may run a query: the view plane's authorisation as one pure function of the app's
//! visibility, the caller, the caller's membership, the API key's scope and the query's
//! grant. No IO: the gateway looks up membership first (only for private apps) and passes
//! the answer in.

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

impl Target<'_> {
    /// Whether `authorize` needs to know if the caller is a member (private apps only).
    pub fn needs_membership(&self, caller: Option<&Caller>) -> bool {
        self.visibility == Visibility::Private && caller.is_some()
    }

    fn hidden(&self) -> Refusal {
        Refusal::Hidden {
            app: self.app.to_string(),
            query: self.query.to_string(),
        }
    }
}

/// Decides whether `caller` (`None`: anonymous) may run `target`. `is_member` matters only
/// where [`Target::needs_membership`] says so.
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
    if caller.is_some_and(Caller::must_enrol_mfa) {
        return Err(Refusal::MfaEnrolmentRequired);
    }
    match (target.visibility, caller) {
        (Visibility::Public, _) | (Visibility::Workspace, Some(_)) => {}
        (Visibility::Workspace, None) => {
            return Err(Refusal::SignInRequired("this app needs a signed-in user"));
        }
        (Visibility::Private, None) => return Err(target.hidden()),
        (Visibility::Private, Some(_)) if !is_member => return Err(target.hidden()),
        (Visibility::Private, Some(_)) => {}
    }
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
