//! Row security inside PostgreSQL: the catalog's role mapping compiled into the statement
//! that opens each run's transaction, and the caller's claims.
//!
//! A run under row security is, on one pooled connection: `BEGIN; SET LOCAL ROLE "<role>"`,
//! `SELECT set_config('request.jwt.claims', $1, true), ...` with the claims as bound
//! values, the query, then `COMMIT` (`ROLLBACK` on any error). The role comes from the
//! catalog, checked against a strict name rule here and quoted; nothing a caller sends
//! becomes SQL text. [`row_security_claims`] is the one place a caller becomes claims.
//!
//! Pure: no IO.

use std::sync::Arc;

use crate::auth::{Identity, Role};
use crate::spec::row_security::check_role_name;
use crate::spec::{DatasourceSpec, QueryRowSecurity, QuerySpec, RowSecuritySpec};
use crate::statement::{RowClaims, RowContext};

/// A query's compiled role mapping: the opening statement of each kind of caller.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRowSecurity {
    anonymous: Option<Arc<str>>,
    viewer: Arc<str>,
    developer: Arc<str>,
    admin: Arc<str>,
}

impl CompiledRowSecurity {
    /// The context a run by `user` (`None`: anonymous) is set up with; `None` when the
    /// mapping has no role for anonymous callers (they are then refused).
    pub fn context(&self, user: Option<&Identity>) -> Option<RowContext> {
        let begin = match user.map(|user| user.role) {
            None => self.anonymous.clone()?,
            Some(Role::Viewer) => self.viewer.clone(),
            Some(Role::Developer) => self.developer.clone(),
            Some(Role::Admin) => self.admin.clone(),
        };
        Some(RowContext {
            begin,
            claims: row_security_claims(user),
        })
    }

    /// Whether an anonymous caller has a role to run as.
    pub fn admits_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }
}

/// The claims of a caller (`None`: anonymous), as PostgREST names them: `sub` (the user
/// id), `email`, `role` (the Sluice role, `anonymous` for callers not signed in) and
/// `groups`. The one place claims are built: claims from other sources join here.
pub fn row_security_claims(user: Option<&Identity>) -> RowClaims {
    match user {
        Some(user) => {
            // An external bearer token's declared claims ride along (as PostgREST passes a
            // JWT's claims); Sluice's own four are set last and always win.
            let mut json = serde_json::Map::new();
            for (name, value) in &user.claims {
                json.insert(name.clone(), value.clone());
            }
            json.insert("sub".into(), user.id.clone().into());
            json.insert("email".into(), user.email.clone().into());
            json.insert("role".into(), user.role.as_str().into());
            json.insert("groups".into(), user.groups.clone().into());
            let json = serde_json::Value::Object(json);
            RowClaims {
                json: json.to_string(),
                sub: Some(user.id.clone()),
                role: user.role.as_str().to_string(),
                email: Some(user.email.clone()),
            }
        }
        None => RowClaims {
            json: serde_json::json!({ "sub": null, "role": "anonymous" }).to_string(),
            sub: None,
            role: "anonymous".to_string(),
            email: None,
        },
    }
}

/// `BEGIN; SET LOCAL ROLE "<role>"` for a role that passed [`check_role_name`] (whose
/// characters need no escaping; the quotes keep it an identifier whatever it spells).
fn begin_as(role: &str) -> Arc<str> {
    debug_assert!(check_role_name(role).is_ok());
    format!("BEGIN; SET LOCAL ROLE \"{role}\"").into()
}

/// The mapping in force for `query` on `datasource`: the query's own, else the
/// datasource's; `None` when neither sets one or the query turns it off. Problems are
/// `(field under the query or datasource, message)`.
pub fn compile_for_query(
    query: &QuerySpec,
    datasource_name: &str,
    datasource: &DatasourceSpec,
) -> Result<Option<CompiledRowSecurity>, (String, String)> {
    let datasource_mapping = match datasource {
        DatasourceSpec::Postgres(net) => net.row_security.as_ref(),
        _ => None,
    };
    let mapping = match &query.row_security {
        Some(QueryRowSecurity::Off) => return Ok(None),
        Some(QueryRowSecurity::Mapped(mapping)) => mapping,
        None => match datasource_mapping {
            Some(mapping) => mapping,
            None => return Ok(None),
        },
    };
    if !matches!(datasource, DatasourceSpec::Postgres(_)) {
        return Err((
            "row_security".into(),
            format!(
                "row security runs inside PostgreSQL (SET LOCAL ROLE, set_config); datasource \
                 `{datasource_name}` is not PostgreSQL"
            ),
        ));
    }
    compile_mapping(mapping).map(Some)
}

/// Checks a datasource's own mapping (refused on anything but PostgreSQL). Problems are
/// `(field under the datasource, message)`.
pub fn check_datasource(datasource: &DatasourceSpec) -> Vec<(String, String)> {
    let mapping = match datasource {
        DatasourceSpec::Postgres(net) => net.row_security.as_ref(),
        DatasourceSpec::Mysql(net) => {
            return match net.row_security {
                Some(_) => vec![(
                    "row_security".into(),
                    "row security runs inside PostgreSQL (SET LOCAL ROLE, set_config); \
                     MySQL/MariaDB has neither: use `{{ user.* }}` bindings in the queries"
                        .into(),
                )],
                None => Vec::new(),
            };
        }
        _ => None,
    };
    match mapping.map(compile_mapping) {
        Some(Err(problem)) => vec![problem],
        _ => Vec::new(),
    }
}

fn compile_mapping(spec: &RowSecuritySpec) -> Result<CompiledRowSecurity, (String, String)> {
    for (field, role) in spec.roles() {
        check_role_name(role).map_err(|message| (format!("row_security.{field}"), message))?;
    }
    let or_default = |role: &Option<String>| begin_as(role.as_deref().unwrap_or(&spec.role));
    Ok(CompiledRowSecurity {
        anonymous: spec.anonymous.as_deref().map(begin_as),
        viewer: or_default(&spec.viewer),
        developer: or_default(&spec.developer),
        admin: or_default(&spec.admin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(role: Role) -> Identity {
        Identity {
            id: "u-1".into(),
            email: "ann@example.com".into(),
            role,
            groups: vec!["sales".into()],
            mfa_enabled: false,
            claims: Default::default(),
        }
    }

    #[test]
    fn a_bearer_tokens_declared_claims_join_the_claims_but_never_replace_sluices() {
        let mut user = identity(Role::Viewer);
        user.claims
            .insert("tenant".into(), serde_json::json!("t-1"));
        user.claims
            .insert("sub".into(), serde_json::json!("forged"));
        let claims: serde_json::Value =
            serde_json::from_str(&row_security_claims(Some(&user)).json).unwrap();
        assert_eq!(claims["tenant"], "t-1");
        assert_eq!(claims["sub"], "u-1");
    }

    fn mapping(yaml: &str) -> Result<CompiledRowSecurity, (String, String)> {
        compile_mapping(&serde_norway::from_str(yaml).unwrap())
    }

    #[test]
    fn each_role_opens_with_its_mapped_role_quoted() {
        let compiled = mapping("{role: web_user, admin: web_admin}").unwrap();
        let begin = |user: Option<&Identity>| compiled.context(user).map(|c| c.begin);
        assert_eq!(
            begin(Some(&identity(Role::Viewer))).as_deref(),
            Some("BEGIN; SET LOCAL ROLE \"web_user\"")
        );
        assert_eq!(
            begin(Some(&identity(Role::Admin))).as_deref(),
            Some("BEGIN; SET LOCAL ROLE \"web_admin\"")
        );
        // No anonymous role: anonymous callers have none to run as.
        assert_eq!(begin(None), None);
        assert!(!compiled.admits_anonymous());
        let with_anon = mapping("{role: web_user, anonymous: web_anon}").unwrap();
        assert_eq!(
            with_anon.context(None).unwrap().begin.as_ref(),
            "BEGIN; SET LOCAL ROLE \"web_anon\""
        );
    }

    #[test]
    fn a_bad_role_is_refused_with_its_field() {
        let (field, message) =
            mapping("{role: web_user, viewer: 'x\"; RESET ROLE; --'}").unwrap_err();
        assert_eq!(field, "row_security.viewer");
        assert!(message.contains("not a role name"), "{message}");
        assert_eq!(
            mapping("{role: pg_monitor}").unwrap_err().0,
            "row_security.role"
        );
    }

    #[test]
    fn claims_name_the_caller() {
        let claims = row_security_claims(Some(&identity(Role::Developer)));
        let json: serde_json::Value = serde_json::from_str(&claims.json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sub": "u-1", "email": "ann@example.com", "role": "developer", "groups": ["sales"]})
        );
        assert_eq!(claims.sub.as_deref(), Some("u-1"));
        assert_eq!(claims.role, "developer");
        let anonymous = row_security_claims(None);
        assert_eq!(anonymous.sub, None);
        assert_eq!(anonymous.role, "anonymous");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&anonymous.json).unwrap(),
            serde_json::json!({"sub": null, "role": "anonymous"})
        );
    }
}
