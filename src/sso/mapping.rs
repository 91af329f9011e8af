//! From a federated identity's claims to who it is here: its role and groups
//! ([`ClaimMapping`]), and the declared claims templates may read.
//!
//! The role is the `role_claim`'s value when it names a role, else the highest role whose
//! `role_groups` share a group with the identity, else the default role. Groups come from
//! the `groups_claim` (a list of strings, or one string), trimmed and de-duplicated; other
//! shapes count as no groups.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::settings::ClaimMapping;
use crate::auth::Role;

/// Groups longer than this, or more of them than [`MAX_GROUPS`], are dropped.
const MAX_GROUP_LEN: usize = 200;
const MAX_GROUPS: usize = 200;

/// Who the claims make the identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub role: Role,
    pub groups: Vec<String>,
}

fn rank(role: Role) -> u8 {
    match role {
        Role::Viewer => 0,
        Role::Developer => 1,
        Role::Admin => 2,
    }
}

/// The identity's groups, from the groups claim.
pub fn groups(mapping: &ClaimMapping, claims: &Map<String, Value>) -> Vec<String> {
    let Some(claim) = &mapping.groups_claim else {
        return Vec::new();
    };
    let values: Vec<&str> = match claims.get(claim) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    let mut groups: Vec<String> = Vec::new();
    for value in values {
        let value = value.trim();
        if !value.is_empty()
            && value.len() <= MAX_GROUP_LEN
            && !value.chars().any(char::is_control)
            && !groups.iter().any(|g| g == value)
            && groups.len() < MAX_GROUPS
        {
            groups.push(value.to_owned());
        }
    }
    groups
}

/// The role and groups the claims map to.
pub fn map(mapping: &ClaimMapping, claims: &Map<String, Value>) -> Mapped {
    let groups = groups(mapping, claims);
    let from_claim = mapping
        .role_claim
        .as_ref()
        .and_then(|claim| claims.get(claim))
        .and_then(Value::as_str)
        .and_then(Role::parse);
    let from_groups = mapping
        .role_groups
        .iter()
        .filter(|(_, granting)| granting.iter().any(|g| groups.contains(g)))
        .map(|(role, _)| *role)
        .max_by_key(|role| rank(*role));
    Mapped {
        role: from_claim.or(from_groups).unwrap_or(mapping.default_role),
        groups,
    }
}

/// The declared claims a token carries, for `{{ user.claims.NAME }}`: strings, numbers and
/// booleans; anything else (lists, objects, nulls) is left out.
pub fn declared_claims(
    declared: &[String],
    claims: &Map<String, Value>,
) -> BTreeMap<String, Value> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    declared
        .iter()
        .filter_map(|name| {
            let value = claims.get(name)?;
            scalar(value).then(|| (name.clone(), value.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            default_role: Role::Viewer,
            role_claim: Some("sluice_role".into()),
            role_groups: vec![
                (Role::Developer, vec!["devs".into()]),
                (Role::Admin, vec!["ops".into()]),
            ],
            groups_claim: Some("groups".into()),
        }
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_come_from_the_claim_then_the_highest_group_then_the_default() {
        let m = mapping();
        let mapped = map(
            &m,
            &claims(json!({"groups": ["devs", "ops", "devs", " x "]})),
        );
        assert_eq!(mapped.role, Role::Admin);
        assert_eq!(mapped.groups, ["devs", "ops", "x"]);
        let mapped = map(&m, &claims(json!({"groups": "devs"})));
        assert_eq!(mapped.role, Role::Developer);
        let mapped = map(
            &m,
            &claims(json!({"groups": ["ops"], "sluice_role": "viewer"})),
        );
        assert_eq!(mapped.role, Role::Viewer);
        let mapped = map(
            &m,
            &claims(json!({"groups": {"ops": true}, "sluice_role": "root"})),
        );
        assert_eq!(
            mapped,
            Mapped {
                role: Role::Viewer,
                groups: vec![]
            }
        );
    }

    #[test]
    fn only_declared_scalar_claims_are_kept() {
        let declared = ["tenant".to_owned(), "tags".to_owned(), "nested".to_owned()];
        let kept = declared_claims(
            &declared,
            &claims(json!({"tenant": "t1", "tags": ["a", 1], "nested": {"a": 1}, "secret": "s"})),
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept["tenant"], "t1");
        assert!(!kept.contains_key("tags"));
        assert!(!kept.contains_key("secret"));
    }
}
