//! Reading and writing the catalog as YAML (`serde_norway`).
//!
//! Parse errors name the path of the offending key (`apps.shop.queries.orders.parms`) and,
//! where the parser knows it, the line.
//!
//! Duplicate keys: serde_norway keeps the last of two equal keys when it fills a map (only
//! its own `Value`/`Mapping` refuses them, without saying where the first one was), and a
//! struct field given twice is refused with the line of its mapping only. So before
//! deserialising, [`duplicate_keys`] walks the events of `saphyr-parser` (pure Rust, no
//! unsafe code of its own, needing only `arraydeque` and `thiserror`), which carry the line of
//! every key, and refuses a key that its mapping already holds, naming both lines.
//! (`serde-saphyr` refuses duplicates too, but would replace the deserialiser, its error
//! messages and paths, with several more crates.) Keys are compared by their text after
//! parsing, as the catalog's string-keyed maps see them (`"a"`, `'a'` and `a` are one key).
//! An alias used as a key counts as the text of its anchored scalar; an alias used as a value
//! is not walked again (its anchor was checked where it was defined). `<<` is an ordinary key
//! here, as in the deserialiser, which applies no merge keys (a `<<` key is refused as
//! unknown). serde_norway still reads the catalog and writes the export.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use saphyr_parser::{Event, Parser};

use crate::spec::CatalogSpec;

/// A catalog file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}{}: {message}", lines(*.first_line, *.line))]
pub struct YamlError {
    pub location: String,
    pub line: Option<usize>,
    /// For a duplicate key, the line of the first one (`line` is the second).
    pub first_line: Option<usize>,
    pub message: String,
}

fn lines(first_line: Option<usize>, line: Option<usize>) -> String {
    match (first_line, line) {
        (Some(first), Some(line)) => format!(" (lines {first} and {line})"),
        (_, Some(line)) => format!(" (line {line})"),
        _ => String::new(),
    }
}

/// Parses a catalog; unknown and duplicate keys are errors naming their path.
pub fn parse(text: &str) -> Result<CatalogSpec, YamlError> {
    if text.trim().is_empty() {
        return Ok(CatalogSpec::default());
    }
    let duplicates = duplicate_keys(text);
    if let Err(KeyCheck::Duplicate(error)) = duplicates {
        return Err(error);
    }
    let spec = deserialize(text)?;
    match duplicates {
        // serde_norway reads what saphyr-parser refuses: whether a key is given twice cannot
        // be told, so the catalog is refused rather than read one way or the other.
        Err(KeyCheck::Unreadable(error)) => Err(error),
        _ => Ok(spec),
    }
}

fn deserialize(text: &str) -> Result<CatalogSpec, YamlError> {
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
            first_line: None,
            message,
        }
    })
}

/// Why [`duplicate_keys`] refused a text.
#[derive(Debug)]
enum KeyCheck {
    /// A mapping holds one key twice.
    Duplicate(YamlError),
    /// saphyr-parser cannot read the text.
    Unreadable(YamlError),
}

/// A mapping or sequence being read, innermost last.
enum Open {
    /// The line of each key seen so far; `value_of` is the key whose value is being read
    /// (`None` while a key is expected).
    Mapping {
        first_lines: HashMap<String, usize>,
        value_of: Option<String>,
    },
    Sequence {
        index: usize,
    },
}

/// Refuses a key given twice in one mapping, at any depth, naming its path and both lines.
fn duplicate_keys(text: &str) -> Result<(), KeyCheck> {
    let mut open: Vec<Open> = Vec::new();
    // The text of each anchored scalar, for an alias used as a key.
    let mut anchors: HashMap<usize, String> = HashMap::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|error| {
            KeyCheck::Unreadable(YamlError {
                location: "catalog".to_string(),
                line: Some(error.marker().line()),
                first_line: None,
                message: format!("unreadable YAML: {}", error.info()),
            })
        })?;
        let line = span.start.line();
        match event {
            Event::Scalar(value, _, anchor, _) => {
                if anchor != 0 {
                    anchors.insert(anchor, value.to_string());
                }
                key_starts(&mut open, Some(&value), line)?;
                node_ends(&mut open, Some(&value));
            }
            Event::Alias(anchor) => {
                let value = anchors.get(&anchor).cloned();
                key_starts(&mut open, value.as_deref(), line)?;
                node_ends(&mut open, value.as_deref());
            }
            Event::MappingStart(..) => {
                key_starts(&mut open, None, line)?;
                open.push(Open::Mapping {
                    first_lines: HashMap::new(),
                    value_of: None,
                });
            }
            Event::SequenceStart(..) => {
                key_starts(&mut open, None, line)?;
                open.push(Open::Sequence { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
                node_ends(&mut open, None);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
    Ok(())
}

/// A node starts at `line`; if it is a key (`text` for a scalar), it must be a new one.
fn key_starts(open: &mut [Open], text: Option<&str>, line: usize) -> Result<(), KeyCheck> {
    let (Some(key), Some((last, outer))) = (text, open.split_last_mut()) else {
        return Ok(());
    };
    let Open::Mapping {
        first_lines,
        value_of: None,
    } = last
    else {
        return Ok(());
    };
    match first_lines.entry(key.to_string()) {
        Entry::Vacant(entry) => {
            entry.insert(line);
            Ok(())
        }
        Entry::Occupied(entry) => {
            let mut location = path(outer);
            if !location.is_empty() {
                location.push('.');
            }
            location.push_str(key);
            Err(KeyCheck::Duplicate(YamlError {
                location,
                line: Some(line),
                first_line: Some(*entry.get()),
                message: "duplicate key".to_string(),
            }))
        }
    }
}

/// A node has ended: its mapping expects a value after a key and a key after a value.
fn node_ends(open: &mut [Open], text: Option<&str>) {
    match open.last_mut() {
        Some(Open::Mapping { value_of, .. }) => {
            *value_of = match value_of.take() {
                // A key that is not a scalar (the catalog refuses those) is shown as `?`.
                None => Some(text.unwrap_or("?").to_string()),
                Some(_) => None,
            }
        }
        Some(Open::Sequence { index }) => *index += 1,
        None => {}
    }
}

/// The path of the node being read, as serde_path_to_error writes it (`apps.a.list[2]`).
fn path(open: &[Open]) -> String {
    let mut path = String::new();
    for node in open {
        match node {
            Open::Mapping {
                value_of: Some(key),
                ..
            } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Open::Mapping { value_of: None, .. } => {}
            Open::Sequence { index } => path.push_str(&format!("[{index}]")),
        }
    }
    path
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

    /// `(case, YAML, Some((path, first line, second line)))` for a duplicate key, `None`
    /// where the YAML is fine.
    type Case = (
        &'static str,
        &'static str,
        Option<(&'static str, usize, usize)>,
    );

    const DUPLICATE_CASES: &[Case] = &[
        (
            "app",
            "apps:\n  a:\n    visibility: public\n  a:\n    visibility: private\n",
            Some(("apps.a", 2, 4)),
        ),
        (
            "query",
            "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n      q:\n        datasource: db\n        sql: SELECT 2\n",
            Some(("apps.a.queries.q", 4, 7)),
        ),
        (
            "datasource",
            "datasources:\n  db:\n    kind: sqlite\n    path: a.db\n  db:\n    kind: sqlite\n    path: b.db\n",
            Some(("datasources.db", 2, 5)),
        ),
        (
            "nested sql",
            "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n        sql: SELECT 2\n",
            Some(("apps.a.queries.q.sql", 6, 7)),
        ),
        (
            "param",
            "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int }\n          x: { type: text }\n",
            Some(("apps.a.queries.q.params.x", 8, 9)),
        ),
        (
            "key inside a flow mapping",
            "apps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int,\n               type: text }\n",
            Some(("apps.a.queries.q.params.x.type", 8, 9)),
        ),
        (
            "top-level section",
            "apps:\n  a:\n    visibility: public\napps:\n  b:\n    visibility: public\n",
            Some(("apps", 1, 4)),
        ),
        (
            "quoted and plain",
            "apps:\n  a:\n    queries:\n      \"q\":\n        datasource: db\n        sql: SELECT 1\n      q:\n        datasource: db\n        sql: SELECT 2\n",
            Some(("apps.a.queries.q", 4, 7)),
        ),
        (
            "single-quoted and double-quoted",
            "apps:\n  'a':\n    visibility: public\n  \"a\":\n    visibility: public\n",
            Some(("apps.a", 2, 4)),
        ),
        (
            "same keys in different mappings",
            "datasources:\n  db:\n    kind: sqlite\n    path: a.db\napps:\n  a:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int }\n      r:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: int }\n  b:\n    queries:\n      q:\n        datasource: db\n        sql: SELECT 1\n",
            None,
        ),
    ];

    #[test]
    fn duplicate_keys_name_their_path_and_both_lines() {
        for &(case, text, expected) in DUPLICATE_CASES {
            match (parse(text), expected) {
                (Ok(_), None) => {}
                (Err(error), Some((location, first, second))) => {
                    assert_eq!(error.location, location, "{case}: {error}");
                    assert_eq!(error.first_line, Some(first), "{case}: {error}");
                    assert_eq!(error.line, Some(second), "{case}: {error}");
                    assert_eq!(
                        error.to_string(),
                        format!("{location} (lines {first} and {second}): duplicate key"),
                        "{case}"
                    );
                }
                (result, _) => panic!("{case}: expected {expected:?}, got {result:?}"),
            }
        }
    }

    /// Shapes the catalog does not use, checked on the key walk alone.
    #[test]
    fn duplicate_keys_in_sequences_and_through_aliases() {
        let cases: &[Case] = &[
            (
                "sequence of mappings",
                "list:\n  - a: 1\n    b: 2\n  - a: 1\n    b: 2\n  - b: 1\n    b: 2\n",
                Some(("list[2].b", 6, 7)),
            ),
            (
                "flow sequence",
                "list: [{a: 1}, {a: 2, a: 3}]\n",
                Some(("list[1].a", 1, 1)),
            ),
            (
                "alias as a key",
                "m:\n  &k a: 1\n  *k : 2\n",
                Some(("m.a", 2, 3)),
            ),
            (
                "alias as a value is not walked again",
                "a: &m { x: 1, y: 2 }\nb: *m\nc: *m\n",
                None,
            ),
            (
                "two merge keys",
                "a:\n  <<: {x: 1}\n  <<: {y: 2}\n",
                Some(("a.<<", 2, 3)),
            ),
            (
                "a merge key and an explicit key",
                "a:\n  <<: {x: 1}\n  x: 2\n",
                None,
            ),
            ("complex keys", "? [a, b]\n: 1\n? [a, b]\n: 2\n", None),
        ];
        for &(case, text, expected) in cases {
            match (duplicate_keys(text), expected) {
                (Ok(()), None) => {}
                (Err(KeyCheck::Duplicate(error)), Some((location, first, second))) => {
                    assert_eq!(error.location, location, "{case}: {error}");
                    assert_eq!(error.first_line, Some(first), "{case}: {error}");
                    assert_eq!(error.line, Some(second), "{case}: {error}");
                }
                (result, _) => panic!("{case}: expected {expected:?}, got {result:?}"),
            }
        }
    }

    #[test]
    fn merge_keys_are_not_applied() {
        let text = "apps:\n  a:\n    queries:\n      q:\n        <<: { datasource: db }\n        sql: SELECT 1\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.location, "apps.a.queries.q.<<", "{error}");
        assert!(error.message.contains("unknown field `<<`"), "{error}");
    }

    #[test]
    fn syntax_errors_are_still_reported_with_their_line() {
        // serde_norway's own message, as before the duplicate check.
        let error = parse("apps:\n  a:\n\tvisibility: public\n").unwrap_err();
        assert_eq!(error.line, Some(3), "{error}");
        assert_eq!(error.first_line, None, "{error}");
        assert!(error.message.contains("cannot start any token"), "{error}");
    }

    #[test]
    fn round_trips() {
        let text = "datasources:\n  db:\n    kind: sqlite\n    path: demo.db\napps:\n  a:\n    visibility: public\n    queries:\n      q:\n        datasource: db\n        sql: SELECT {{ params.x }}\n        params:\n          x: { type: 'array<int>', max_items: 5 }\n";
        let spec = parse(text).unwrap();
        assert_eq!(parse(&to_string(&spec)).unwrap(), spec);
    }
}
