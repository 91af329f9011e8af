//! SCIM `User` and `Group` resources as JSON: read into what Sluice keeps
//! ([`UserInput`], [`GroupInput`]) and rendered back from the store's records, plus the
//! discovery documents. Pure.
//!
//! Mapping (docs/SCIM.md): a User is an account. `userName` is kept as sent; the account's
//! email (its only login and mail address) is `userName` when it is an address, else the
//! primary (or first) `emails` value; every email is kept and returned as sent.
//! `displayName` (else `name.formatted`, else given and family name) is the account's
//! display name, and the SCIM `displayName` is returned only when the IdP set one.
//! `active: false` disables the account, `true` enables it; a User without `active` leaves
//! the account as it is. A Group's `displayName` becomes a group name in its members'
//! `groups` (characters outside `A-Z a-z 0-9 _ . -` become `_`); members are Users (no
//! nested groups). Attributes Sluice does not keep (phone numbers, addresses, enterprise
//! extension) are accepted and ignored.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{GROUP_SCHEMA, ScimError, USER_SCHEMA};
use crate::store::scim::{ScimEmail, ScimGroup, ScimProfile, ScimUser};

/// The most `emails` one User may have.
pub const MAX_EMAILS: usize = 20;

/// A User as a POST, PUT or patched resource gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInput {
    /// The account's email (normalised); `None` when the User has none (the account then
    /// gets [`placeholder_email`]).
    pub email: Option<String>,
    /// The account's display name (the SCIM `displayName`, else one derived from the
    /// other attributes).
    pub display_name: String,
    pub profile: ScimProfile,
    /// `active` as given; `None` when the User has none.
    pub active: Option<bool>,
}

/// A Group as a POST, PUT or patched resource gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub display_name: String,
    pub group_name: String,
    pub external_id: Option<String>,
    /// Member account ids, sorted, without duplicates.
    pub members: Vec<String>,
}

/// Finds a member case-insensitively (RFC 7643: attribute names are case-insensitive).
fn get<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .filter(|value| !value.is_null())
}

fn string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match get(object, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ScimError::InvalidValue(format!(
            "`{name}` must be a string"
        ))),
    }
}

/// A text attribute: at most `max` characters, no control characters.
fn text(object: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, ScimError> {
    let value = string(object, name)?;
    if let Some(value) = &value
        && (value.chars().count() > max || value.chars().any(char::is_control))
    {
        return Err(ScimError::InvalidValue(format!(
            "`{name}` must be at most {max} characters without control characters"
        )));
    }
    Ok(value)
}

/// `active`: a boolean, or the strings `"true"`/`"false"` some IdPs send (Entra ID).
pub(crate) fn boolean(value: &Value, name: &str) -> Result<bool, ScimError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimError::InvalidValue(format!(
            "`{name}` must be a boolean"
        ))),
    }
}

fn object(body: &Value) -> Result<&Map<String, Value>, ScimError> {
    body.as_object()
        .ok_or_else(|| ScimError::InvalidSyntax("the body must be a JSON object".into()))
}

/// Reads a User.
pub fn read_user(body: &Value) -> Result<UserInput, ScimError> {
    let body = object(body)?;
    let user_name = text(body, "userName", 256)?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::InvalidValue("`userName` is required".into()))?;
    let name = match get(body, "name") {
        None => None,
        Some(Value::Object(name)) => Some(name),
        Some(_) => return Err(ScimError::InvalidValue("`name` must be an object".into())),
    };
    let part = |field: &str| match name {
        Some(name) => text(name, field, 200),
        None => Ok(None),
    };
    let (given_name, family_name, formatted) =
        (part("givenName")?, part("familyName")?, part("formatted")?);
    let emails = read_emails(body)?;
    let primary = emails.iter().find(|e| e.primary == Some(true));
    let email = crate::auth::normalize_email(&user_name).or_else(|| {
        primary
            .or(emails.first())
            .and_then(|e| crate::auth::normalize_email(&e.value))
    });
    let active = get(body, "active")
        .map(|flag| boolean(flag, "active"))
        .transpose()?;
    let scim_display_name = text(body, "displayName", 200)?.filter(|name| !name.trim().is_empty());
    let joined = match (&given_name, &family_name) {
        (Some(given), Some(family)) => Some(format!("{given} {family}")),
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (None, None) => None,
    };
    let display_name = scim_display_name
        .clone()
        .or_else(|| formatted.clone())
        .or(joined)
        .filter(|name| !name.trim().is_empty())
        .or_else(|| email.clone())
        .unwrap_or_else(|| user_name.clone());
    Ok(UserInput {
        email,
        display_name,
        profile: ScimProfile {
            external_id: text(body, "externalId", 256)?,
            user_name,
            given_name,
            family_name,
            formatted,
            display_name: scim_display_name,
            emails: Some(emails),
            active_removed: active.is_none(),
        },
        active,
    })
}

/// A User's `emails`, as sent: each with a `value` (an item without one says nothing and
/// is dropped), an optional `type`, `primary` and `display`; at most [`MAX_EMAILS`].
fn read_emails(body: &Map<String, Value>) -> Result<Vec<ScimEmail>, ScimError> {
    let list = match get(body, "emails") {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ScimError::InvalidValue("`emails` must be a list".into())),
    };
    if list.len() > MAX_EMAILS {
        return Err(ScimError::InvalidValue(format!(
            "a User has at most {MAX_EMAILS} `emails`"
        )));
    }
    let mut emails = Vec::with_capacity(list.len());
    for email in list {
        let email = email
            .as_object()
            .ok_or_else(|| ScimError::InvalidValue("each of `emails` must be an object".into()))?;
        let Some(value) = text(email, "value", 256)? else {
            continue;
        };
        emails.push(ScimEmail {
            value,
            kind: text(email, "type", 64)?,
            primary: get(email, "primary")
                .map(|flag| boolean(flag, "emails.primary"))
                .transpose()?,
            display: text(email, "display", 256)?,
        });
    }
    if emails.iter().filter(|e| e.primary == Some(true)).count() > 1 {
        return Err(ScimError::InvalidValue(
            "at most one of `emails` may be `primary`".into(),
        ));
    }
    Ok(emails)
}

/// The domain of the address an account without an email gets (RFC 2606 reserves
/// `.invalid`: nothing is ever delivered there).
pub const PLACEHOLDER_DOMAIN: &str = "scim.invalid";

/// The email of an account whose User has no address: `<id>@scim.invalid`, unique and
/// never delivered (such an account cannot receive mailed links).
pub fn placeholder_email(id: &str) -> String {
    format!("{id}@{PLACEHOLDER_DOMAIN}")
}

/// The group name a `displayName` gives: characters outside `A-Z a-z 0-9 _ . -` become
/// `_`, at most 64 characters.
pub fn group_name(display_name: &str) -> Result<String, ScimError> {
    let name: String = display_name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        return Err(ScimError::InvalidValue("`displayName` is required".into()));
    }
    Ok(name)
}

/// Reads a Group.
pub fn read_group(body: &Value) -> Result<GroupInput, ScimError> {
    let body = object(body)?;
    let display_name = text(body, "displayName", 200)?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::InvalidValue("`displayName` is required".into()))?;
    let mut members = Vec::new();
    match get(body, "members") {
        None => {}
        Some(Value::Array(list)) => {
            for member in list {
                let member = member.as_object().ok_or_else(|| {
                    ScimError::InvalidValue("each of `members` must be an object".into())
                })?;
                let value = string(member, "value")?.ok_or_else(|| {
                    ScimError::InvalidValue("each of `members` needs a `value` (a User id)".into())
                })?;
                // RFC 7643 4.2 lets a server support nested groups; this one does not.
                if let Some(kind) = string(member, "type")?
                    && !kind.eq_ignore_ascii_case("User")
                {
                    return Err(ScimError::InvalidValue(
                        "each of `members` must be a User (nested groups are not supported)".into(),
                    ));
                }
                members.push(value);
            }
        }
        Some(_) => return Err(ScimError::InvalidValue("`members` must be a list".into())),
    }
    members.sort();
    members.dedup();
    Ok(GroupInput {
        group_name: group_name(&display_name)?,
        display_name,
        external_id: text(body, "externalId", 256)?,
        members,
    })
}

fn time(at: i64) -> String {
    DateTime::<Utc>::from_timestamp(at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A User as SCIM answers it; `base` is the SCIM root URL (`https://host/scim/v2`).
pub fn render_user(user: &ScimUser, base: &str) -> Value {
    let record = &user.user;
    let profile = user.profile.clone().unwrap_or_else(|| ScimProfile {
        user_name: record.email.clone(),
        ..ScimProfile::default()
    });
    // What the IdP set, where the profile records it; an account made outside SCIM shows
    // its own display name and state.
    let (display_name, active) = match &user.profile {
        Some(p) => (
            p.display_name.clone(),
            (!p.active_removed).then_some(!record.disabled),
        ),
        None => (Some(record.display_name.clone()), Some(!record.disabled)),
    };
    let mut out = json!({
        "schemas": [USER_SCHEMA],
        "id": record.id,
        "userName": profile.user_name,
        "meta": {
            "resourceType": "User",
            "created": time(record.created_at),
            "lastModified": time(user.updated_at.max(record.created_at)),
            "location": format!("{base}/Users/{}", record.id),
            "version": format!("W/\"{}\"", user.updated_at),
        },
    });
    let mut name = Map::new();
    for (key, value) in [
        ("givenName", &profile.given_name),
        ("familyName", &profile.family_name),
        ("formatted", &profile.formatted),
    ] {
        if let Some(value) = value {
            name.insert(key.into(), Value::String(value.clone()));
        }
    }
    if !name.is_empty() {
        out["name"] = Value::Object(name);
    }
    if let Some(external_id) = profile.external_id {
        out["externalId"] = Value::String(external_id);
    }
    if let Some(display_name) = display_name {
        out["displayName"] = Value::String(display_name);
    }
    if let Some(active) = active {
        out["active"] = Value::Bool(active);
    }
    match profile.emails {
        Some(emails) if emails.is_empty() => {}
        Some(emails) => out["emails"] = json!(emails),
        // A profile from before emails were kept, or an account made outside SCIM.
        None if record.email.ends_with(&format!("@{PLACEHOLDER_DOMAIN}")) => {}
        None => {
            out["emails"] = json!([{ "value": record.email, "type": "work", "primary": true }]);
        }
    }
    out
}

/// A Group as SCIM answers it.
pub fn render_group(group: &ScimGroup, base: &str) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "members": group.members.iter().map(|id| json!({
            "value": id,
            "type": "User",
            "$ref": format!("{base}/Users/{id}"),
        })).collect::<Vec<_>>(),
        "meta": {
            "resourceType": "Group",
            "created": time(group.created_at),
            "lastModified": time(group.updated_at),
            "location": format!("{base}/Groups/{}", group.id),
            "version": format!("W/\"{}\"", group.updated_at),
        },
    });
    if let Some(external_id) = &group.external_id {
        out["externalId"] = Value::String(external_id.clone());
    }
    out
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/sluice/sluice/blob/main/docs/SCIM.md",
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": super::MAX_COUNT },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The SCIM token (SLUICE_SCIM_TOKEN) as `Authorization: Bearer <token>`",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

/// `GET /ResourceTypes`: User and Group.
pub fn resource_types(base: &str) -> Vec<Value> {
    [
        ("User", "/Users", USER_SCHEMA),
        ("Group", "/Groups", GROUP_SCHEMA),
    ]
    .into_iter()
    .map(|(name, endpoint, schema)| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": name,
            "name": name,
            "endpoint": endpoint,
            "description": format!("Sluice {}s", name.to_lowercase()),
            "schema": schema,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{name}"),
            },
        })
    })
    .collect()
}

fn attribute(name: &str, kind: &str, required: bool, mutability: &str, uniqueness: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "description": name,
        "required": required,
        "caseExact": false,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    })
}

fn multi(name: &str, sub: Vec<Value>, mutability: &str) -> Value {
    json!({
        "name": name,
        "type": "complex",
        "multiValued": true,
        "description": name,
        "required": false,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": "none",
        "subAttributes": sub,
    })
}

/// `GET /Schemas`: the attributes this server keeps of a User and a Group.
pub fn schemas(base: &str) -> Vec<Value> {
    let rw = "readWrite";
    let mut name = attribute("name", "complex", false, rw, "none");
    name["subAttributes"] = json!([
        attribute("formatted", "string", false, rw, "none"),
        attribute("familyName", "string", false, rw, "none"),
        attribute("givenName", "string", false, rw, "none"),
    ]);
    let mut email_type = attribute("type", "string", false, rw, "none");
    email_type["canonicalValues"] = json!(["work", "home", "other"]);
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A Sluice account",
        "attributes": [
            attribute("userName", "string", true, rw, "server"),
            name,
            attribute("displayName", "string", false, rw, "none"),
            attribute("active", "boolean", false, rw, "none"),
            multi("emails", vec![
                attribute("value", "string", false, rw, "none"),
                attribute("display", "string", false, rw, "none"),
                email_type,
                attribute("primary", "boolean", false, rw, "none"),
            ], rw),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}") },
    });
    // RFC 7643 8.7.1's members, restricted to Users: `$ref` names the User (the checkers
    // create the User first), `type` is "User".
    let mut value = attribute("value", "string", false, "immutable", "none");
    value["caseExact"] = json!(true);
    let mut reference = attribute("$ref", "reference", false, "immutable", "none");
    reference["referenceTypes"] = json!(["User"]);
    reference["caseExact"] = json!(true);
    let mut kind = attribute("type", "string", false, "immutable", "none");
    kind["canonicalValues"] = json!(["User"]);
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "A group, mirrored into its members' Sluice groups",
        "attributes": [
            attribute("displayName", "string", true, rw, "server"),
            multi("members", vec![value, reference, kind], rw),
        ],
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_SCHEMA}") },
    });
    vec![user, group]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_reads_its_email_from_user_name_or_emails() {
        let user = read_user(&json!({
            "schemas": [USER_SCHEMA],
            "userName": "Ann@Example.com",
            "name": {"givenName": "Ann", "familyName": "Lee"},
            "externalId": "00u1",
            "active": "False",
        }))
        .unwrap();
        assert_eq!(user.email.as_deref(), Some("ann@example.com"));
        assert_eq!(user.display_name, "Ann Lee");
        assert_eq!(user.profile.user_name, "Ann@Example.com");
        assert_eq!(user.active, Some(false));
        assert_eq!(
            user.profile.display_name, None,
            "no SCIM displayName was sent"
        );
        let user = read_user(&json!({
            "userName": "ann.lee",
            "emails": [{"value": "other@example.com"}, {"value": "ann@example.com", "primary": true}],
        }))
        .unwrap();
        assert_eq!(user.email.as_deref(), Some("ann@example.com"));
        assert_eq!(user.active, None);
        assert!(user.profile.active_removed);
        // Every email is kept as sent; only the primary one is the account's.
        let emails = user.profile.emails.unwrap();
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0].value, "other@example.com");
        assert_eq!(emails[0].primary, None);
        // No address anywhere: the account gets a placeholder (see `placeholder_email`).
        let user = read_user(&json!({"userName": "no-address"})).unwrap();
        assert_eq!(
            (user.email, user.display_name.as_str()),
            (None, "no-address")
        );
        for bad in [
            json!({}),
            json!({"userName": 5}),
            json!({"userName": "a@example.com", "active": "maybe"}),
            json!({"userName": "a", "emails": [{"value": "a@x.io", "primary": true}, {"value": "b@x.io", "primary": true}]}),
            json!({"userName": "a", "emails": vec![json!({"value": "a@x.io"}); MAX_EMAILS + 1]}),
            json!({"userName": "a", "emails": [{"value": "a\u{0}@x.io"}]}),
            json!([]),
        ] {
            assert!(read_user(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn group_names_are_valid_sluice_group_names() {
        assert_eq!(
            group_name("Engineering Team (EU)").unwrap(),
            "Engineering_Team__EU_"
        );
        assert_eq!(group_name("sales.eu-1").unwrap(), "sales.eu-1");
        assert_eq!(group_name(&"x".repeat(80)).unwrap().len(), 64);
        assert!(group_name("  ").is_err());
        let group = read_group(&json!({
            "displayName": "Sales",
            "members": [{"value": "b"}, {"value": "a"}, {"value": "b"}],
        }))
        .unwrap();
        assert_eq!(group.members, vec!["a", "b"]);
        assert!(read_group(&json!({"displayName": "S", "members": [{"display": "x"}]})).is_err());
        let nested = json!({"displayName": "S", "members": [{"value": "g", "type": "Group"}]});
        assert!(matches!(
            read_group(&nested),
            Err(ScimError::InvalidValue(_))
        ));
        let user =
            json!({"displayName": "S", "members": [{"value": "u", "type": "user", "$ref": "x"}]});
        assert_eq!(read_group(&user).unwrap().members, vec!["u"]);
    }
}
