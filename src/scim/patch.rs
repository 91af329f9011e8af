//! `PATCH` (RFC 7644 3.5.2) applied to a resource's JSON, as identity providers send it:
//!
//! - Okta: `{"op": "replace", "value": {"active": false}}` (no path), group members as
//!   `{"op": "add", "path": "members", "value": [{"value": "<id>"}]}` and
//!   `{"op": "remove", "path": "members[value eq \"<id>\"]"}`;
//! - Entra ID: `{"op": "Replace", "path": "active", "value": "False"}`,
//!   `name.givenName`, `emails[type eq "work"].value`, `externalId`, and for groups
//!   `{"op": "Remove", "path": "members", "value": [{"value": "<id>"}]}`.
//!
//! Operation names and attribute names are case-insensitive; a path may carry the core
//! schema's URN. The patched JSON is then read like a `PUT` body, so a patch can do
//! nothing a replacement could not. Pure.

use serde_json::{Map, Value};

use super::ScimError;

/// One operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// A parsed path: `attribute`, `attribute.sub`, `attribute[filter]` or
/// `attribute[filter].sub`, with the filter an equality on a sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path {
    attribute: String,
    filter: Option<(String, Value)>,
    sub: Option<String>,
}

fn parse_path(text: &str) -> Result<Path, ScimError> {
    let invalid = || {
        ScimError::InvalidPath(
            "a path is `attribute`, `attribute.sub`, or `attribute[sub eq \"value\"]` with an \
             optional `.sub` after it"
                .into(),
        )
    };
    let mut text = text.trim();
    for urn in [super::USER_SCHEMA, super::GROUP_SCHEMA] {
        if let Some(rest) = text.strip_prefix(urn) {
            text = rest.trim_start_matches(':');
        }
    }
    // An extension's attribute (`urn:...:enterprise:2.0:User:department`): the schema URN
    // is the member of the resource that holds it.
    if text.starts_with("urn:") {
        let (schema, sub) = text.rsplit_once(':').ok_or_else(invalid)?;
        if sub.is_empty() || !sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid());
        }
        return Ok(Path {
            attribute: schema.to_string(),
            filter: None,
            sub: Some(sub.to_string()),
        });
    }
    let (head, filter, tail) = match text.split_once('[') {
        Some((head, rest)) => {
            let (filter, tail) = rest.split_once(']').ok_or_else(invalid)?;
            (head, Some(filter), tail)
        }
        None => (text, None, ""),
    };
    let (attribute, mut sub) = match head.split_once('.') {
        Some((attribute, sub)) => (attribute, Some(sub.to_string())),
        None => (head, None),
    };
    if let Some(rest) = tail.strip_prefix('.') {
        if sub.is_some() || rest.is_empty() {
            return Err(invalid());
        }
        sub = Some(rest.to_string());
    } else if !tail.is_empty() {
        return Err(invalid());
    }
    let valid = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    if !valid(attribute) || sub.as_deref().is_some_and(|s| !valid(s)) {
        return Err(invalid());
    }
    let filter = match filter {
        None => None,
        Some(filter) => {
            let mut words = filter.trim().splitn(3, char::is_whitespace);
            let (Some(name), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                return Err(invalid());
            };
            if !op.eq_ignore_ascii_case("eq") || !valid(name) {
                return Err(ScimError::InvalidFilter(
                    "a value filter in a path must be `sub eq \"value\"`".into(),
                ));
            }
            let value: Value = serde_json::from_str(value.trim()).map_err(|_| {
                ScimError::InvalidFilter(
                    "a value filter's value must be a JSON string, number or boolean".into(),
                )
            })?;
            Some((name.to_string(), value))
        }
    };
    Ok(Path {
        attribute: attribute.to_string(),
        filter,
        sub,
    })
}

/// The key of `object` that names `name` case-insensitively, or `name` itself.
fn key_for(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Whether a multi-valued attribute's item matches a path filter (`value eq "x"`,
/// `type eq "work"`); strings compare without case, as RFC 7643 says for `type` and
/// e-mail values, except member ids.
fn item_matches(item: &Value, (name, expected): &(String, Value)) -> bool {
    let Some(object) = item.as_object() else {
        return false;
    };
    let found = object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value);
    match (found, expected) {
        (Some(Value::String(a)), Value::String(b)) if name.eq_ignore_ascii_case("value") => a == b,
        (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

/// Applies a `PatchOp` message's operations to `resource`, in order.
pub fn apply(resource: &mut Value, message: &Value) -> Result<(), ScimError> {
    let message = message
        .as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("the body must be a PatchOp object".into()))?;
    let operations = message
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, value)| value.as_array())
        .ok_or_else(|| ScimError::InvalidSyntax("a PatchOp needs an `Operations` list".into()))?;
    let target = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::InvalidSyntax("the resource is not an object".into()))?;
    for operation in operations {
        let operation = operation
            .as_object()
            .ok_or_else(|| ScimError::InvalidSyntax("each operation must be an object".into()))?;
        let field = |name: &str| {
            operation
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        let op = match field("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(op) if op == "add" => Op::Add,
            Some(op) if op == "replace" => Op::Replace,
            Some(op) if op == "remove" => Op::Remove,
            _ => {
                return Err(ScimError::InvalidSyntax(
                    "each operation's `op` must be `add`, `replace` or `remove`".into(),
                ));
            }
        };
        let value = field("value").cloned();
        match field("path").and_then(Value::as_str) {
            None => {
                let Some(Value::Object(values)) = value else {
                    return Err(ScimError::InvalidValue(
                        "an operation without a path needs an object `value`".into(),
                    ));
                };
                if op == Op::Remove {
                    return Err(ScimError::NoTarget("`remove` needs a path".into()));
                }
                for (name, value) in values {
                    // Okta renames a group with `{"id": ..., "displayName": ...}`: the
                    // read-only members are skipped here (a path naming them is refused).
                    if ["id", "meta", "schemas"]
                        .iter()
                        .any(|skip| name.eq_ignore_ascii_case(skip))
                    {
                        continue;
                    }
                    // `{"name.givenName": "x"}` (some IdPs) reads as a path of its own.
                    let path = parse_path(&name)?;
                    apply_at(target, op, &path, Some(value))?;
                }
            }
            Some(path) => apply_at(target, op, &parse_path(path)?, value)?,
        }
    }
    Ok(())
}

fn apply_at(
    target: &mut Map<String, Value>,
    op: Op,
    path: &Path,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = key_for(target, &path.attribute);
    if matches!(key.to_ascii_lowercase().as_str(), "id" | "meta" | "schemas") {
        return Err(ScimError::Mutability(format!(
            "`{}` cannot be changed",
            path.attribute
        )));
    }
    let needs_value = || {
        value
            .clone()
            .ok_or_else(|| ScimError::InvalidValue("`add` and `replace` need a `value`".into()))
    };
    match (&path.filter, &path.sub) {
        // `attribute`
        (None, None) => match op {
            Op::Remove => {
                match (target.get_mut(&key), &value) {
                    // Entra: remove the listed items of a multi-valued attribute.
                    (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                        items.retain(|item| {
                            !gone.iter().any(|g| {
                                g.get("value").is_some_and(|v| {
                                    item_matches(item, &("value".to_string(), v.clone()))
                                })
                            })
                        });
                    }
                    _ => {
                        target.remove(&key);
                    }
                }
                Ok(())
            }
            Op::Replace => {
                target.insert(key, needs_value()?);
                Ok(())
            }
            Op::Add => {
                let value = needs_value()?;
                match (target.get_mut(&key), value) {
                    (Some(Value::Array(items)), Value::Array(more)) => {
                        for item in more {
                            if !items.contains(&item) {
                                items.push(item);
                            }
                        }
                    }
                    (Some(Value::Object(object)), Value::Object(more)) => object.extend(more),
                    (_, value) => {
                        target.insert(key, value);
                    }
                }
                Ok(())
            }
        },
        // `attribute.sub`
        (None, Some(sub)) => {
            let entry = target
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(object) = entry else {
                return Err(ScimError::InvalidPath(format!(
                    "`{}` has no sub-attributes",
                    path.attribute
                )));
            };
            let sub_key = key_for(object, sub);
            match op {
                Op::Remove => {
                    object.remove(&sub_key);
                }
                Op::Add | Op::Replace => {
                    object.insert(sub_key, needs_value()?);
                }
            }
            Ok(())
        }
        // `attribute[filter]` and `attribute[filter].sub`
        (Some(filter), sub) => {
            let entry = target
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            let Value::Array(items) = entry else {
                return Err(ScimError::InvalidPath(format!(
                    "`{}` is not multi-valued",
                    path.attribute
                )));
            };
            let matched = items.iter().any(|item| item_matches(item, filter));
            match (op, sub) {
                (Op::Remove, None) => items.retain(|item| !item_matches(item, filter)),
                (Op::Remove, Some(sub)) => {
                    for item in items.iter_mut().filter(|item| item_matches(item, filter)) {
                        if let Value::Object(object) = item {
                            let sub_key = key_for(object, sub);
                            object.remove(&sub_key);
                        }
                    }
                }
                (Op::Add | Op::Replace, sub) => {
                    let value = needs_value()?;
                    if !matched {
                        // `emails[type eq "work"].value` on a user with no work email adds
                        // one (what Entra expects); a filter on anything else must match.
                        if op == Op::Replace && sub.is_none() {
                            return Err(ScimError::NoTarget(format!(
                                "no item of `{}` matches the path's filter",
                                path.attribute
                            )));
                        }
                        let mut item = Map::new();
                        item.insert(filter.0.clone(), filter.1.clone());
                        items.push(Value::Object(item));
                    }
                    for item in items.iter_mut().filter(|item| item_matches(item, filter)) {
                        match (sub, item) {
                            (Some(sub), Value::Object(object)) => {
                                let sub_key = key_for(object, sub);
                                object.insert(sub_key, value.clone());
                            }
                            (None, item) => *item = value.clone(),
                            (Some(_), _) => {}
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(resource: Value, operations: Value) -> Result<Value, ScimError> {
        let mut resource = resource;
        apply(&mut resource, &json!({ "Operations": operations }))?;
        Ok(resource)
    }

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("emails[type eq \"work\"].value").unwrap(),
            Path {
                attribute: "emails".into(),
                filter: Some(("type".into(), json!("work"))),
                sub: Some("value".into()),
            }
        );
        assert_eq!(
            parse_path("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName")
                .unwrap()
                .sub
                .as_deref(),
            Some("givenName")
        );
        assert_eq!(
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
                .unwrap(),
            Path {
                attribute: "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".into(),
                filter: None,
                sub: Some("department".into()),
            }
        );
        for bad in ["", "a[b eq \"c\"", "a[b eq \"c\"]x", "a.b.c[", "a b"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_path("members[value sw \"a\"]"),
            Err(ScimError::InvalidFilter(_))
        ));
    }

    #[test]
    fn okta_and_entra_user_operations() {
        let user = json!({"userName": "a@x.io", "active": true, "name": {"givenName": "A"}});
        let okta = patched(
            user.clone(),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(okta["active"], json!(false));
        let entra = patched(
            user.clone(),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "name.familyName", "value": "Lee"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.io"},
                {"op": "Replace", "path": "userName", "value": "b@x.io"},
            ]),
        )
        .unwrap();
        assert_eq!(entra["active"], json!("False"));
        assert_eq!(
            entra["name"],
            json!({"givenName": "A", "familyName": "Lee"})
        );
        assert_eq!(
            entra["emails"],
            json!([{"type": "work", "value": "b@x.io"}])
        );
        assert_eq!(entra["userName"], json!("b@x.io"));
        let refused = patched(user, json!([{"op": "replace", "path": "id", "value": "x"}]));
        assert!(matches!(refused, Err(ScimError::Mutability(_))));
    }

    #[test]
    fn member_operations() {
        let group = json!({"displayName": "g", "members": [{"value": "a"}, {"value": "b"}]});
        let added = patched(
            group.clone(),
            json!([{"op": "add", "path": "members", "value": [{"value": "c"}, {"value": "a"}]}]),
        )
        .unwrap();
        assert_eq!(
            added["members"],
            json!([{"value": "a"}, {"value": "b"}, {"value": "c"}])
        );
        let okta = patched(
            group.clone(),
            json!([{"op": "remove", "path": "members[value eq \"a\"]"}]),
        )
        .unwrap();
        assert_eq!(okta["members"], json!([{"value": "b"}]));
        let entra = patched(
            group.clone(),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "b"}]}]),
        )
        .unwrap();
        assert_eq!(entra["members"], json!([{"value": "a"}]));
        let all = patched(group.clone(), json!([{"op": "remove", "path": "members"}])).unwrap();
        assert!(all.get("members").is_none());
        let replaced = patched(
            group,
            json!([{"op": "replace", "path": "members", "value": [{"value": "z"}]}]),
        )
        .unwrap();
        assert_eq!(replaced["members"], json!([{"value": "z"}]));
        assert!(patched(json!({}), json!([{"op": "move", "path": "a"}])).is_err());
        assert!(patched(json!({}), json!([{"op": "add", "path": "a"}])).is_err());
    }
}
