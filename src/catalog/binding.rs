//! Bindings, shared by the SQL and HTTP template compilers: what `{{ params.NAME }}` and
//! `{{ user.FIELD }}` name ([`BindingSource`], a param resolved to its slot as a
//! [`ParamRef`]), how a path is parsed and checked ([`parse_binding_path`]), and the values a
//! render reads ([`BindValues`]). Pure: no IO. A binding is a path, never an expression.

use std::collections::BTreeMap;

use crate::auth::Identity;
use crate::spec::ParamSpec;
use crate::statement::ParamValue;

/// A field of the authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserField {
    Id,
    Email,
    Role,
    Groups,
}

/// Where a binding takes its value from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindingSource {
    Param(ParamRef),
    User(UserField),
    /// `{{ user.claims.NAME }}`: a claim of an external bearer token, bound as text (NULL
    /// when the caller has none: anonymous, a local user, or an undeclared claim).
    Claim(String),
}

/// A declared param as a binding names it: its name (for messages) and its slot, the
/// position of its value in the validated values (declared params in name order, as
/// `catalog::params` validates them). Resolved when the template compiles, so a render
/// indexes a vector instead of looking a name up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamRef {
    pub name: String,
    pub slot: usize,
}

/// A render-time failure that is the caller's fault (for example an empty list where the
/// dialect needs at least one item).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("param `{param}`: {message}")]
pub struct RenderError {
    pub param: String,
    pub message: String,
}

/// The values a render may use: validated params by slot (every declared param present,
/// absent optional ones as `ParamValue::Null`) and, when someone is signed in, the caller.
/// A SQL render moves each value into the statement at its last use (it takes the values
/// mutably); an HTTP render only reads them.
pub struct BindValues<'a> {
    pub params: &'a mut [ParamValue],
    pub user: Option<&'a Identity>,
}

/// Moves a param's value out of its slot (leaving `Null`).
pub(crate) fn take_slot(
    params: &mut [ParamValue],
    param: &ParamRef,
) -> Result<ParamValue, RenderError> {
    params
        .get_mut(param.slot)
        .map(std::mem::take)
        .ok_or_else(|| missing(param))
}

pub(crate) fn missing(param: &ParamRef) -> RenderError {
    RenderError {
        param: param.name.clone(),
        message: "no value was supplied (absent params must be passed as null)".into(),
    }
}

impl BindingSource {
    /// The name errors report: `customer`, `user.id`.
    pub(crate) fn name(&self) -> String {
        match self {
            BindingSource::Param(param) => param.name.clone(),
            BindingSource::User(field) => format!("user.{}", field.name()),
            BindingSource::Claim(name) => format!("user.claims.{name}"),
        }
    }

    pub(crate) fn value(&self, values: &BindValues<'_>) -> Result<ParamValue, RenderError> {
        match self {
            BindingSource::Param(param) => values
                .params
                .get(param.slot)
                .cloned()
                .ok_or_else(|| missing(param)),
            BindingSource::User(field) => Ok(field.value(values.user)),
            BindingSource::Claim(name) => Ok(claim_value(values.user, name)),
        }
    }
}

impl UserField {
    pub(crate) const ALL: [UserField; 4] = [
        UserField::Id,
        UserField::Email,
        UserField::Role,
        UserField::Groups,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Email => "email",
            UserField::Role => "role",
            UserField::Groups => "groups",
        }
    }

    fn value(self, user: Option<&Identity>) -> ParamValue {
        let text = |s: &String| ParamValue::Text(s.clone());
        match (self, user) {
            (UserField::Groups, None) => ParamValue::Array(Vec::new()),
            (_, None) => ParamValue::Null,
            (UserField::Id, Some(u)) => text(&u.id),
            (UserField::Email, Some(u)) => text(&u.email),
            (UserField::Role, Some(u)) => ParamValue::Text(u.role.as_str().to_string()),
            (UserField::Groups, Some(u)) => ParamValue::Array(u.groups.iter().map(text).collect()),
        }
    }
}

/// A declared claim's value as text: strings as they are, numbers and booleans as written
/// in the token; anything else (and no such claim) is NULL.
fn claim_value(user: Option<&Identity>, name: &str) -> ParamValue {
    match user.and_then(|u| u.claims.get(name)) {
        Some(serde_json::Value::String(text)) => ParamValue::Text(text.clone()),
        Some(value @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
            ParamValue::Text(value.to_string())
        }
        _ => ParamValue::Null,
    }
}

/// Parses the path inside `{{ }}` (`params.NAME` or `user.FIELD`) and checks that it names
/// a declared param or a known user field. Shared with the HTTP template compiler so both
/// accept the same bindings with the same messages.
pub(crate) fn parse_binding_path(
    path: &str,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<BindingSource, String> {
    let not_a_path = || {
        let shown: String = path.chars().take(40).collect();
        let ellipsis = if shown.len() < path.len() { "..." } else { "" };
        format!(
            "`{{{{ {shown}{ellipsis} }}}}` is not a binding: a binding is a path, \
             `{{{{ params.NAME }}}}`, `{{{{ user.id|email|role|groups }}}}` or \
             `{{{{ user.claims.NAME }}}}`, never an \
             expression (no filters, calls, operators or literals)"
        )
    };
    if let Some(claim) = path.strip_prefix("user.claims.") {
        return if is_plain_name(claim) && claim.len() <= 64 {
            Ok(BindingSource::Claim(claim.into()))
        } else {
            Err(not_a_path())
        };
    }
    let Some((root, name)) = path.split_once('.') else {
        return Err(not_a_path());
    };
    if !is_plain_name(name) {
        return Err(not_a_path());
    }
    match root {
        "params" if params.contains_key(name) => Ok(BindingSource::Param(ParamRef {
            name: name.into(),
            // The slot is the name's place among the declared params, in name order.
            slot: params.keys().take_while(|k| k.as_str() < name).count(),
        })),
        "params" => {
            let declared = if params.is_empty() {
                "none are declared".to_string()
            } else {
                let names: Vec<&str> = params.keys().map(String::as_str).collect();
                format!("declared: {}", names.join(", "))
            };
            Err(format!("unknown param `{name}` ({declared})"))
        }
        "user" => UserField::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .map(BindingSource::User)
            .ok_or_else(|| {
                format!(
                    "unknown user field `{name}` (available: id, email, role, groups, claims.NAME)"
                )
            }),
        _ => Err(not_a_path()),
    }
}

pub(crate) fn path_of(source: &BindingSource) -> String {
    match source {
        BindingSource::Param(param) => format!("params.{}", param.name),
        BindingSource::User(field) => format!("user.{}", field.name()),
        BindingSource::Claim(name) => format!("user.claims.{name}"),
    }
}

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Test values by slot: `named`'s value for each of the `declared` params, in name order
/// (absent ones null), as `catalog::params` would validate them.
#[cfg(test)]
pub(crate) fn slots(
    declared: &BTreeMap<String, ParamSpec>,
    named: &std::collections::HashMap<String, ParamValue>,
) -> Vec<ParamValue> {
    declared
        .keys()
        .map(|name| named.get(name).cloned().unwrap_or(ParamValue::Null))
        .collect()
}

#[cfg(test)]
mod claim_tests {
    use super::*;

    #[test]
    fn user_claims_bind_declared_scalars_as_text_and_nothing_else() {
        let params = BTreeMap::new();
        let source = parse_binding_path("user.claims.tenant_id", &params).unwrap();
        assert_eq!(source, BindingSource::Claim("tenant_id".into()));
        for bad in [
            "user.claims.",
            "user.claims.a.b",
            "user.claims.a-b",
            "user.claims.1a",
        ] {
            assert!(parse_binding_path(bad, &params).is_err(), "{bad}");
        }
        let mut user = Identity {
            id: "auth0:u1".into(),
            email: String::new(),
            role: crate::auth::Role::Viewer,
            groups: Vec::new(),
            mfa_enabled: false,
            claims: Default::default(),
        };
        user.claims
            .insert("tenant_id".into(), serde_json::json!("t-1"));
        user.claims.insert("seats".into(), serde_json::json!(12));
        user.claims.insert("tags".into(), serde_json::json!(["a"]));
        let value = |name: &str, user: Option<&Identity>| {
            let mut none: [ParamValue; 0] = [];
            BindingSource::Claim(name.into())
                .value(&BindValues {
                    params: &mut none,
                    user,
                })
                .unwrap()
        };
        assert_eq!(
            value("tenant_id", Some(&user)),
            ParamValue::Text("t-1".into())
        );
        assert_eq!(value("seats", Some(&user)), ParamValue::Text("12".into()));
        assert_eq!(value("tags", Some(&user)), ParamValue::Null);
        assert_eq!(value("missing", Some(&user)), ParamValue::Null);
        assert_eq!(value("tenant_id", None), ParamValue::Null);
    }
}
