//! The checks behind Sluice's fuzz targets, one function per target.
//!
//! Each takes the fuzzer's bytes, feeds them to one of the compilers that read catalog authors'
//! or callers' text (SQL templates, HTTP request templates, param schemas and params, catalog
//! YAML), and checks more than "no panic": values never become SQL text, a rendered HTTP
//! request keeps the caller inside the path and out of the headers, and a catalog that parses
//! writes back to YAML that parses to the same catalog. A failed check panics, which libFuzzer
//! reports as a crash with the input that caused it.
//!
//! Run them with `scripts/fuzz` (docs/SECURITY.md, "Fuzzing").

use std::collections::BTreeMap;

use sluice::auth::{Identity, Role};
use sluice::catalog::binding::BindValues;
use sluice::catalog::compile::compile;
use sluice::catalog::http_template::compile_http;
use sluice::catalog::params::ParamSchema;
use sluice::catalog::template::compile_sql;
use sluice::config::QueryDefaults;
use sluice::spec::{HttpBodySpec, HttpRequestSpec, ParamSpec, yaml};
use sluice::statement::{Dialect, ParamValue, RenderedBody};

/// A marker carried by every caller value below. It must never appear in rendered SQL text
/// (values travel as positional arguments only) unless the template itself spells it.
const CANARY: &str = "qzcanaryqz";

/// The params every template target declares: one of each kind a binding treats
/// differently (scalars, lists, a closed-list identifier and keyword).
const PARAMS: &str = r#"
name: { type: text }
n: { type: int }
amount: { type: numeric }
since: { type: timestamp }
flag: { type: bool }
doc: { type: json }
ids: { type: "array<int>" }
tags: { type: "array<text>" }
col: { type: identifier, enum: [id, created_at], default: id }
dir: { type: keyword, enum: [ASC, DESC], default: ASC }
"#;

/// Hostile caller values for [`PARAMS`], each carrying [`CANARY`]: quotes, comment and
/// statement separators, placeholders, path traversal, header injection.
fn hostile_params() -> serde_json::Map<String, serde_json::Value> {
    let text = format!("'; DROP TABLE t; -- $1 ? \" ` {CANARY} ../..\r\nX-Evil: 1 %2e%2e/#?");
    let serde_json::Value::Object(map) = serde_json::json!({
        "name": text,
        "n": 7,
        "amount": "12.50",
        "since": "2026-01-02T03:04:05Z",
        "flag": true,
        "doc": { "k": text },
        "ids": [1, 2, 3],
        "tags": [text, "..", "."],
        "col": "created_at",
        "dir": "DESC",
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

fn declared() -> (BTreeMap<String, ParamSpec>, ParamSchema) {
    let params: BTreeMap<String, ParamSpec> =
        serde_norway::from_str(PARAMS).expect("the fuzz params parse");
    let schema = ParamSchema::compile(&params).expect("the fuzz params compile");
    (params, schema)
}

fn caller() -> Identity {
    Identity {
        id: format!("u-{CANARY}"),
        email: format!("{CANARY}'--@example.com"),
        role: Role::Viewer,
        groups: vec![format!("g'{CANARY}")],
        mfa_enabled: false,
        claims: BTreeMap::from([(
            "tenant".to_string(),
            serde_json::Value::String(format!("t'{CANARY}")),
        )]),
    }
}

/// SQL templates: the first byte picks the dialect, the rest is the template. A template
/// that compiles is rendered with hostile values; the statement text must not contain them.
pub fn sql_template(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let dialect = match first % 3 {
        0 => Dialect::Postgres,
        1 => Dialect::MySql,
        _ => Dialect::Sqlite,
    };
    let template = String::from_utf8_lossy(rest);
    let (params, schema) = declared();
    let Ok(compiled) = compile_sql(&template, dialect, &params) else {
        return;
    };
    let mut values = schema
        .validate(hostile_params())
        .expect("the hostile values fit the schema");
    let user = caller();
    let rendered = compiled.render(&mut BindValues {
        params: &mut values,
        user: Some(&user),
    });
    if let Ok(rendered) = rendered
        && !template.contains(CANARY)
    {
        assert!(
            !rendered.sql.contains(CANARY),
            "a value became SQL text: {:?}",
            rendered.sql
        );
    }
}

/// HTTP request templates: the input is split on newlines into method, path, a query value,
/// a header value and a body (the first byte picks JSON, form or text). A request that
/// compiles is rendered with hostile values: no path segment made of a value may walk up
/// or stay put (`..`, `.`), the path stays a path (no `?`, `#`, space or control
/// character), and no header value carries a line break.
pub fn http_template(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or_default().to_string();
    let method = next();
    let path = next();
    let query_value = next();
    let header_value = next();
    let body_text = next();
    let body = match first % 4 {
        0 => None,
        1 => serde_json::from_str(&body_text)
            .ok()
            .map(HttpBodySpec::Json),
        2 => Some(HttpBodySpec::Form(BTreeMap::from([(
            "f".into(),
            body_text,
        )]))),
        _ => Some(HttpBodySpec::Text(body_text)),
    };
    let spec = HttpRequestSpec {
        method,
        path: path.clone(),
        query: BTreeMap::from([("q".into(), query_value)]),
        headers: BTreeMap::from([("x-fuzz".into(), header_value)]),
        body,
    };
    let (params, schema) = declared();
    let methods = ["GET", "POST", "PUT", "PATCH", "DELETE"].map(|m| m.parse().unwrap());
    let Ok(compiled) = compile_http(&spec, &params, &methods) else {
        return;
    };
    let mut values = schema
        .validate(hostile_params())
        .expect("the hostile values fit the schema");
    let user = caller();
    let Ok(rendered) = compiled.render(&BindValues {
        params: &mut values,
        user: Some(&user),
    }) else {
        return;
    };
    assert!(
        rendered.path.is_empty() || rendered.path.starts_with('/'),
        "path {:?}",
        rendered.path
    );
    assert!(
        !rendered
            .path
            .chars()
            .any(|c| c == '?' || c == '#' || c == ' ' || c.is_control()),
        "the path left the path: {:?}",
        rendered.path
    );
    // Segments the template wrote itself are the author's; only check when it wrote no dot
    // and no percent sign, so every `.` or `%2e` in the result came from a value.
    if !path.contains('.') && !path.contains('%') {
        for segment in rendered.path.split('/') {
            let decoded = percent_decode(segment);
            assert!(
                decoded != "." && decoded != "..",
                "a value walked the path: {:?}",
                rendered.path
            );
        }
    }
    for (name, value) in &rendered.headers {
        assert!(
            !value.as_bytes().iter().any(|b| *b == b'\r' || *b == b'\n'),
            "a line break in header {name}"
        );
    }
    if let Some(RenderedBody::Json(json)) = &rendered.body {
        serde_json::from_slice::<serde_json::Value>(json).expect("a rendered JSON body is JSON");
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Param schemas and params: the input before the first NUL byte is a YAML map of param
/// declarations, the rest a JSON `params` object. A schema that compiles validates the
/// object; every value it accepts has the declared type and bounds (checked for the text
/// length and the item count, which the schema reports back through the spec).
pub fn param_validate(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (schema_bytes, rest) = data.split_at(split);
    let Ok(schema_text) = std::str::from_utf8(schema_bytes) else {
        return;
    };
    let Ok(specs) = serde_norway::from_str::<BTreeMap<String, ParamSpec>>(schema_text) else {
        return;
    };
    let Ok(schema) = ParamSchema::compile(&specs) else {
        return;
    };
    let input = rest.get(1..).unwrap_or_default();
    let Ok(serde_json::Value::Object(params)) = serde_json::from_slice(input) else {
        return;
    };
    let Ok(values) = schema.validate(params) else {
        return;
    };
    assert_eq!(values.len(), specs.len(), "one value per declared param");
    for ((name, spec), value) in specs.iter().zip(&values) {
        if let ParamValue::Text(text) = value {
            let max = spec.max_length.unwrap_or(4096);
            assert!(
                text.chars().count() <= max,
                "param {name}: text longer than its max_length"
            );
        }
        if let (ParamValue::Array(items), Some(max)) = (value, spec.max_items) {
            assert!(
                items.len() <= max,
                "param {name}: more items than max_items"
            );
        }
    }
}

/// Catalog YAML: a catalog that parses must compile or be refused without a panic, and
/// write back to YAML that parses to the same catalog.
pub fn catalog_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = yaml::parse(text) else {
        return;
    };
    let _ = compile(&spec, QueryDefaults::default());
    let written = yaml::to_string(&spec);
    let again = yaml::parse(&written)
        .unwrap_or_else(|error| panic!("written catalog does not parse: {error}\n{written}"));
    assert!(
        again == spec,
        "the catalog changed on the way back:\n{written}"
    );
}
