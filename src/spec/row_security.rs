//! Row security inside PostgreSQL, as the catalog writes it: which PostgreSQL role each
//! Sluice role runs as (`RowSecuritySpec`, on a datasource or a query), and a query's
//! override (`QueryRowSecurity`: its own mapping, or `false` for none).
//!
//! Plain data and the role name rule ([`check_role_name`]); `catalog::row_security` compiles
//! a mapping into the statements a connection runs, and never from anything a caller sent.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The PostgreSQL role of each kind of caller. A signed-in caller whose Sluice role has no
/// entry runs as `role`; an anonymous caller runs as `anonymous`, and is refused (401) when
/// it is unset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowSecuritySpec {
    /// The default role of signed-in callers.
    pub role: String,
    /// The role of callers who are not signed in (public apps); unset: they are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub developer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

impl RowSecuritySpec {
    /// Every role the mapping names, with its field.
    pub fn roles(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("role", Some(&self.role)),
            ("anonymous", self.anonymous.as_ref()),
            ("viewer", self.viewer.as_ref()),
            ("developer", self.developer.as_ref()),
            ("admin", self.admin.as_ref()),
        ]
        .into_iter()
        .filter_map(|(field, role)| role.map(|role| (field, role.as_str())))
    }
}

/// A query's `row_security`: its own mapping, or `false` to run without row security on a
/// datasource that has it. (`true` is refused: leave the key out to use the datasource's.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryRowSecurity {
    Off,
    Mapped(RowSecuritySpec),
}

impl Serialize for QueryRowSecurity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            QueryRowSecurity::Off => serializer.serialize_bool(false),
            QueryRowSecurity::Mapped(spec) => spec.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for QueryRowSecurity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choice;

        impl<'de> Visitor<'de> for Choice {
            type Value = QueryRowSecurity;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`false` or a role mapping (`role`, `anonymous`, `viewer`, ...)")
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<QueryRowSecurity, E> {
                if value {
                    Err(E::custom(
                        "`row_security: true` means nothing on a query: leave it out to use the \
                         datasource's mapping, write a mapping, or `false` to turn it off",
                    ))
                } else {
                    Ok(QueryRowSecurity::Off)
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<QueryRowSecurity, A::Error> {
                RowSecuritySpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(QueryRowSecurity::Mapped)
            }
        }

        deserializer.deserialize_any(Choice)
    }
}

/// Names PostgreSQL reserves or reads as something else than a role.
const RESERVED: [&str; 6] = [
    "public",
    "none",
    "current_user",
    "current_role",
    "session_user",
    "all",
];

/// Checks a role name: 1-63 characters of lower-case ASCII letters, digits and `_`,
/// starting with a letter or `_`, not reserved and not `pg_*`. Lower case only, so the
/// quoted name Sluice sends is the role an unquoted `CREATE ROLE` made.
pub fn check_role_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > 63 {
        return Err(format!(
            "`{}` is not a role name Sluice accepts: 1-63 characters of a-z, 0-9 and _, \
             starting with a letter or _ (lower case, as an unquoted CREATE ROLE makes it)",
            name.escape_debug()
        ));
    }
    if RESERVED.contains(&name) || name.starts_with("pg_") {
        return Err(format!(
            "`{name}` is reserved by PostgreSQL; name a role of your own"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for good in ["web_user", "_anon", "app1", "a", &"r".repeat(63)] {
            assert_eq!(check_role_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "Web_User",
            "1role",
            "web-user",
            "web user",
            "x\"; DROP TABLE t; --",
            "rôle",
            "pg_read_all_data",
            "public",
            "none",
            "current_user",
            &"r".repeat(64),
        ] {
            assert!(check_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn query_override_reads_false_or_a_mapping() {
        let off: QueryRowSecurity = serde_norway::from_str("false").unwrap();
        assert_eq!(off, QueryRowSecurity::Off);
        let mapped: QueryRowSecurity =
            serde_norway::from_str("{role: web_user, anonymous: web_anon}").unwrap();
        let QueryRowSecurity::Mapped(spec) = &mapped else {
            panic!("a mapping")
        };
        assert_eq!(spec.anonymous.as_deref(), Some("web_anon"));
        assert!(serde_norway::from_str::<QueryRowSecurity>("true").is_err());
        assert!(serde_norway::from_str::<QueryRowSecurity>("{role: a, rol: b}").is_err());
        // Both forms write back as they were read.
        assert_eq!(
            serde_json::to_value(&off).unwrap(),
            serde_json::json!(false)
        );
        let again: QueryRowSecurity =
            serde_json::from_value(serde_json::to_value(&mapped).unwrap()).unwrap();
        assert_eq!(again, mapped);
    }
}
