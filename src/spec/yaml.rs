//! Reading and writing the catalog as YAML (`serde_norway`).
//!
//! Parse errors name the path of the offending key (`apps.shop.queries.orders.parms`) and,
//! where the parser knows it, the line.

use crate::spec::CatalogSpec;

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
    // serde_json keeps numbers as exact text (`arbitrary_precision`), which other
    // serialisers would write as an internal map; go through plain YAML values instead.
    let json = serde_json::to_value(spec).expect("a catalog always serialises");
    serde_norway::to_string(&to_yaml_value(json)).expect("YAML values always serialise")
}

fn to_yaml_value(value: serde_json::Value) -> serde_norway::Value {
    use serde_json::Value as J;
    use serde_norway::Value as Y;
    match value {
        J::Null => Y::Null,
        J::Bool(b) => Y::Bool(b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Y::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Y::Number(u.into())
            } else {
                // A float is written as a float only if that loses no digit; an exact
                // decimal beyond f64 stays exact as a string (numeric params accept both).
                let text = n.to_string();
                match text.parse::<f64>() {
                    Ok(f) if f.is_finite() && f.to_string() == text => Y::Number(f.into()),
                    _ => Y::String(text),
                }
            }
        }
        J::String(s) => Y::String(s),
        J::Array(items) => Y::Sequence(items.into_iter().map(to_yaml_value).collect()),
        J::Object(map) => Y::Mapping(
            map.into_iter()
                .map(|(k, v)| (Y::String(k), to_yaml_value(v)))
                .collect(),
        ),
    }
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
    fn numbers_export_as_plain_yaml() {
        let text = "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: numeric, min: 0.5, max: 10, default: 2 }\n";
        let spec = parse(text).unwrap();
        let exported = to_string(&spec);
        assert!(!exported.contains("serde_json"), "{exported}");
        assert!(exported.contains("min: 0.5"), "{exported}");
        assert_eq!(parse(&exported).unwrap(), spec);
    }

    #[test]
    fn http_auth_and_bodies_round_trip_as_one_key_maps() {
        let text = "datasources:\n  api:\n    kind: http\n    base_url: https://api.example.com\n    auth:\n      bearer: { token: 'enc:v1:0011223344556677:AAAA' }\napps:\n  a:\n    queries:\n      q:\n        datasource: api\n        http:\n          method: POST\n          body:\n            json: { n: '{{ params.n }}' }\n        params:\n          n: { type: int }\n";
        let spec = parse(text).unwrap();
        let exported = to_string(&spec);
        assert!(exported.contains("bearer:"), "{exported}");
        assert!(exported.contains("json:"), "{exported}");
        assert_eq!(parse(&exported).unwrap(), spec);
    }

    #[test]
    fn round_trips() {
        let text = "datasources:\n  db:\n    kind: sqlite\n    path: demo.db\napps:\n  a:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: 'array<int>', max_items: 5 }\n";
        let spec = parse(text).unwrap();
        assert_eq!(parse(&to_string(&spec)).unwrap(), spec);
    }
}
