//! The `filter` query parameter of a list: one equality on an attribute this server looks
//! resources up by, which is what identity providers send before they create a resource
//! (`userName eq "ann@example.com"`, `externalId eq "00u1..."`, `displayName eq "Sales"`).
//!
//! Attribute names and the operator are case-insensitive (RFC 7644 3.4.2.2); the value is a
//! JSON string. Anything else (other operators, `and`/`or`, other attributes) is refused
//! with `invalidFilter` rather than answered wrongly. Pure.

use super::ScimError;

/// What a filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterAttribute {
    UserName,
    ExternalId,
    DisplayName,
    Id,
}

/// `attribute eq "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub attribute: FilterAttribute,
    pub value: String,
}

impl Filter {
    /// Whether `candidate` (the resource's value of the attribute) matches. `userName` is
    /// compared case-insensitively (RFC 7643 declares it `caseExact: false`), the others
    /// exactly.
    pub fn matches(&self, candidate: Option<&str>) -> bool {
        match (self.attribute, candidate) {
            (_, None) => false,
            (FilterAttribute::UserName, Some(value)) => value.eq_ignore_ascii_case(&self.value),
            (_, Some(value)) => value == self.value,
        }
    }
}

/// Parses a filter for a resource type whose filterable attributes are `allowed`.
pub fn parse(text: &str, allowed: &[FilterAttribute]) -> Result<Filter, ScimError> {
    let unsupported = || {
        ScimError::InvalidFilter(
            "only `<attribute> eq \"<value>\"` filters are supported, on userName, externalId \
             or id (Users) and displayName, externalId or id (Groups)"
                .into(),
        )
    };
    let text = text.trim();
    let (attribute, rest) = text
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (operator, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    if !operator.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    let attribute = attribute
        .strip_prefix(super::USER_SCHEMA)
        .or_else(|| attribute.strip_prefix(super::GROUP_SCHEMA))
        .map(|rest| rest.trim_start_matches(':'))
        .unwrap_or(attribute);
    let attribute = match attribute.to_ascii_lowercase().as_str() {
        "username" => FilterAttribute::UserName,
        "externalid" => FilterAttribute::ExternalId,
        "displayname" => FilterAttribute::DisplayName,
        "id" => FilterAttribute::Id,
        _ => return Err(unsupported()),
    };
    if !allowed.contains(&attribute) {
        return Err(unsupported());
    }
    // The whole rest must be one JSON string: no `and`/`or` after it.
    let value: String = serde_json::from_str(value.trim()).map_err(|_| {
        ScimError::InvalidFilter(
            "the filter's value must be one double-quoted string, with nothing after it".into(),
        )
    })?;
    Ok(Filter { attribute, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use FilterAttribute::*;

    const USERS: &[FilterAttribute] = &[UserName, ExternalId, Id];

    #[test]
    fn equality_filters() {
        let check = |text: &str| parse(text, USERS).map(|f| (f.attribute, f.value));
        assert_eq!(
            check("userName eq \"ann@example.com\""),
            Ok((UserName, "ann@example.com".into()))
        );
        assert_eq!(check("USERNAME EQ \"a\""), Ok((UserName, "a".into())));
        assert_eq!(
            check("externalId eq \"00u1\\\"x\""),
            Ok((ExternalId, "00u1\"x".into()))
        );
        assert_eq!(
            check("urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"a\""),
            Ok((UserName, "a".into()))
        );
        for bad in [
            "userName sw \"a\"",
            "userName eq \"a\" and active eq true",
            "userName eq a",
            "emails.value eq \"a\"",
            "displayName eq \"x\"",
            "userName",
            "",
            "userName pr",
        ] {
            assert!(
                matches!(parse(bad, USERS), Err(ScimError::InvalidFilter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_names_match_without_case() {
        let filter = parse("userName eq \"Ann@Example.com\"", USERS).unwrap();
        assert!(filter.matches(Some("ann@example.com")));
        assert!(!filter.matches(Some("bob@example.com")));
        let filter = parse("externalId eq \"AbC\"", USERS).unwrap();
        assert!(!filter.matches(Some("abc")));
        assert!(!filter.matches(None));
    }
}
