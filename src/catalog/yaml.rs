//! Reading and writing the catalog as YAML (`serde_norway`).
//!
//! Parse errors name the path of the offending key (`apps.shop.queries.orders.parms`) and,
//! where the parser knows it, the line.

use crate::catalog::spec::CatalogSpec;

/// A catalog file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}{line}: {message}", line = .line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct YamlError {
    pub location: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Parses a catalog; unknown keys are errors naming their path.
pub fn parse(text: &str) -> Result<CatalogSpec, YamlError> {
    if text.trim().is_empty() {
        return Ok(CatalogSpec::default());
    }
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let location = match error.path().to_string() {
            path if path == "." => "catalog".to_string(),
            path => path,
        };
        let inner = error.into_inner();
        let line = inner.location().map(|l| l.line());
        // serde_norway appends " at line L column C"; the line is reported separately.
        let message = inner.to_string();
        let message = match message.find(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        YamlError {
            location,
            line,
            message,
        }
    })
}

/// Serialises a catalog. Secret fields are written exactly as stored: sealed.
pub fn to_string(spec: &CatalogSpec) -> String {
    serde_norway::to_string(spec).expect("a catalog always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_their_path() {
        let text = "apps:\n  shop:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n        parms: {}\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.location, "apps.shop.queries.q.parms");
        assert!(error.message.contains("unknown field `parms`"), "{error}");
        assert_eq!(error.line, Some(8));
    }

    #[test]
    fn bad_param_type_is_named() {
        let text = "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n        params:\n          x: { type: integer }\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.location, "apps.a.queries.q.params.x.type");
        assert!(
            error.message.contains("unknown param type `integer`"),
            "{error}"
        );
    }

    #[test]
    fn round_trips() {
        let text = "datasources:\n  db:\n    kind: sqlite\n    path: demo.db\napps:\n  a:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: 'array<int>', max_items: 5 }\n";
        let spec = parse(text).unwrap();
        assert_eq!(parse(&to_string(&spec)).unwrap(), spec);
    }
}
