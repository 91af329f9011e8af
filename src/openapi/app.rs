//! The per-app OpenAPI document: one `POST` operation per query the caller may run, with
//! its declared params (types, bounds, closed lists, defaults, required) as the request
//! body, and the view endpoint's answer with the query's result columns (names, database
//! types and the JSON each is written as: docs/API.md, "Result types") as the response.
//!
//! Which queries are listed is the plane's decision (the same authorisation as running
//! them); this module only writes what it is handed. It is handed names, declared params,
//! descriptions and described columns: never SQL text, a template, a datasource's name or
//! kind, or anything else internal.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::catalog::params::{DEFAULT_MAX_ITEMS, DEFAULT_MAX_LENGTH, KEYWORDS};
use crate::spec::{ParamSpec, ParamType, ScalarType};
use crate::statement::{ColumnJson, Described, ResultColumn};

/// One query the caller may run.
pub struct QueryEntry<'a> {
    pub name: &'a str,
    /// The catalog's description of the query, written for its callers.
    pub description: Option<&'a str>,
    pub params: &'a BTreeMap<String, ParamSpec>,
    pub result: &'a Described,
    /// At most this many rows come back (`truncated: true` past it).
    pub max_rows: u64,
    /// Whether a caller that is not signed in may run it.
    pub anonymous: bool,
}

/// What the document says about the instance, besides the queries.
pub struct AppInfo<'a> {
    pub app: &'a str,
    /// The catalog revision the document describes (its `info.version`).
    pub revision: i64,
    /// The session cookie's name on this instance.
    pub cookie_name: &'a str,
}

/// Pattern of a string of decimal digits (64-bit integers written as strings).
const INTEGER_STRING: &str = "^-?[0-9]+$";
/// Pattern of an exact decimal written as a string.
const DECIMAL_STRING: &str = "^(-?[0-9]+(\\.[0-9]+)?|NaN|-?Infinity)$";

/// The document for `info` listing `queries` (in the order given).
pub fn document(info: &AppInfo<'_>, queries: &[QueryEntry<'_>]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    for query in queries {
        let result_name = format!("{}.Result", query.name);
        schemas.insert(result_name.clone(), result_schema(query));
        paths.insert(
            format!("/v1/apps/{}/queries/{}", info.app, query.name),
            json!({ "post": operation(query, &result_name) }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": format!("Sluice app {}", info.app),
            "version": info.revision.to_string(),
            "description": "The queries of this app you may run, as the gateway sees you now \
                (visibility, membership, API key scope and grants). Params are sent as \
                {\"params\": {...}}; rows come back as arrays in column order.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": info.cookie_name,
                    "description": "The session cookie set by POST /v1/auth/login.",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A workspace API key (`slk_...`).",
                },
            },
        },
    })
}

fn operation(query: &QueryEntry<'_>, result_name: &str) -> Value {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        })
    };
    let mut security = vec![json!({"session": []}), json!({"apiKey": []})];
    if query.anonymous {
        security.insert(0, json!({}));
    }
    let mut op = json!({
        "operationId": query.name,
        "security": security,
        "requestBody": {
            "required": query.params.values().any(|p| p.required),
            "content": {"application/json": {"schema": request_schema(query.params)}},
        },
        "responses": {
            "200": {
                "description": "The result. A result with an `error` member was cut short by a \
                    failure after rows had started.",
                "content": {"application/json": {
                    "schema": {"$ref": format!("#/components/schemas/{result_name}")},
                }},
            },
            "400": error("Invalid JSON or params (`param` names the one at fault)."),
            "401": error("Not signed in, or an API key that is not live."),
            "403": error("Not granted, outside the API key's scope, or refused by the app's policy."),
            "404": error("No such app or query."),
            "413": error("The body is too large."),
            "415": error("A Content-Type other than JSON."),
            "429": error("Over a rate limit or the query's concurrency cap (see Retry-After)."),
            "default": error("A datasource or gateway failure (502, 503, 504, 500)."),
        },
    });
    if let Some(description) = query.description {
        op["summary"] = Value::from(description);
    }
    op
}

fn request_schema(params: &BTreeMap<String, ParamSpec>) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|(name, spec)| (name.clone(), param_schema(spec)))
        .collect();
    let required: Vec<&String> = params
        .iter()
        .filter(|(_, spec)| spec.required)
        .map(|(name, _)| name)
        .collect();
    let mut params_schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        params_schema["required"] = json!(required);
    }
    let mut body = json!({
        "type": "object",
        "properties": {"params": params_schema},
        "additionalProperties": false,
    });
    if !required.is_empty() {
        body["required"] = json!(["params"]);
    }
    body
}

/// The schema of one declared param, as `catalog::params` checks it.
pub fn param_schema(spec: &ParamSpec) -> Value {
    let mut schema = match spec.ty {
        ParamType::Scalar(ty) => scalar_schema(ty, spec),
        ParamType::Array(ty) => json!({
            "type": "array",
            "items": scalar_schema(ty, spec),
            "minItems": spec.min_items.unwrap_or(0),
            "maxItems": spec.max_items.unwrap_or(DEFAULT_MAX_ITEMS),
        }),
    };
    if spec.nullable {
        schema = json!({"anyOf": [schema, {"type": "null"}]});
    }
    let object = schema.as_object_mut().expect("schemas are objects");
    if let Some(default) = &spec.default {
        object.insert("default".into(), default.clone());
    }
    let mut notes = Vec::new();
    if let Some(description) = &spec.description {
        notes.push(description.clone());
    }
    notes.push(format!("Declared type `{}`.", spec.ty.name()));
    if matches!(
        spec.ty,
        ParamType::Scalar(ScalarType::Date | ScalarType::Timestamp)
    ) {
        if let Some(min) = spec.min.as_ref().and_then(Value::as_str) {
            notes.push(format!("At the earliest {min}."));
        }
        if let Some(max) = spec.max.as_ref().and_then(Value::as_str) {
            notes.push(format!("At the latest {max}."));
        }
    }
    object.insert("description".into(), Value::from(notes.join(" ")));
    schema
}

fn scalar_schema(ty: ScalarType, spec: &ParamSpec) -> Value {
    let mut schema = match ty {
        ScalarType::Text => {
            let mut text = json!({
                "type": "string",
                "maxLength": spec.max_length.unwrap_or(DEFAULT_MAX_LENGTH),
            });
            if let Some(pattern) = &spec.pattern {
                // The catalog's pattern must match the whole value.
                text["pattern"] = Value::from(format!("^(?:{pattern})$"));
            }
            text
        }
        ScalarType::Int => json!({
            "type": "integer",
            "minimum": bound(spec.min.as_ref()).unwrap_or(json!(i32::MIN)),
            "maximum": bound(spec.max.as_ref()).unwrap_or(json!(i32::MAX)),
        }),
        ScalarType::Bigint => json!({"anyOf": [
            numeric_bounds(json!({"type": "integer"}), spec),
            {"type": "string", "pattern": INTEGER_STRING},
        ]}),
        ScalarType::Float => numeric_bounds(json!({"type": "number"}), spec),
        ScalarType::Numeric => json!({"anyOf": [
            numeric_bounds(json!({"type": "number"}), spec),
            {"type": "string", "pattern": "^[-+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?$"},
        ]}),
        ScalarType::Bool => json!({"type": "boolean"}),
        ScalarType::Uuid => json!({"type": "string", "format": "uuid"}),
        ScalarType::Date => json!({"type": "string", "format": "date"}),
        // RFC 3339, or without an offset (then UTC), which `format: date-time` would refuse.
        ScalarType::Timestamp => json!({"type": "string"}),
        ScalarType::Json => json!({}),
        ScalarType::Identifier => json!({"type": "string"}),
        ScalarType::Keyword => json!({"type": "string", "enum": KEYWORDS}),
    };
    if let Some(allowed) = &spec.allowed {
        schema["enum"] = Value::from(allowed.clone());
    }
    schema
}

/// A numeric bound as declared (a number; strings are for dates and timestamps).
fn bound(value: Option<&Value>) -> Option<Value> {
    value.filter(|v| v.is_number()).cloned()
}

fn numeric_bounds(mut schema: Value, spec: &ParamSpec) -> Value {
    if let Some(min) = bound(spec.min.as_ref()) {
        schema["minimum"] = min;
    }
    if let Some(max) = bound(spec.max.as_ref()) {
        schema["maximum"] = max;
    }
    schema
}

/// The view endpoint's 200 answer for this query.
fn result_schema(query: &QueryEntry<'_>) -> Value {
    let error = json!({"$ref": "#/components/schemas/Error/properties/error"});
    match query.result {
        Described::Columns(columns) => {
            let names: Vec<Value> = columns.iter().map(column_header).collect();
            let cells: Vec<Value> = columns.iter().map(column_schema).collect();
            let width = columns.len();
            // An empty `prefixItems` is not allowed: a statement without columns has
            // neither columns nor rows.
            let fixed = |items: Vec<Value>| {
                if items.is_empty() {
                    json!({"type": "array", "maxItems": 0})
                } else {
                    json!({"type": "array", "prefixItems": items, "items": false, "minItems": width})
                }
            };
            let mut rows = json!({"type": "array", "items": fixed(cells)});
            rows["maxItems"] = json!(if width == 0 { 0 } else { query.max_rows });
            let mut properties = json!({
                "columns": fixed(names),
                "rows": rows,
                "row_count": {"type": "integer", "minimum": 0},
                "truncated": {"const": true},
                "error": error,
            });
            let mut required = vec!["columns", "rows", "row_count"];
            if width == 0 {
                properties["rows_affected"] = json!({"type": "integer", "minimum": 0});
                required.push("rows_affected");
            }
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        Described::Http => json!({
            "type": "object",
            "description": "The upstream API's reply in an envelope. The shape of its body is \
                not known to the gateway.",
            "properties": {
                "status": {"type": "integer", "description": "The upstream's status code."},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "body": {"description": "JSON embedded as JSON; other text as a string; \
                    binary as base64; an empty body as null."},
            },
            "required": ["status", "headers", "body"],
        }),
        Described::Unknown => json!({
            "type": "object",
            "description": "The result columns are not known: they could not be described \
                when the catalog was loaded. `columns` names them and their types at run time.",
            "properties": {
                "columns": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "type": {"type": "string"}},
                    "required": ["name", "type"],
                }},
                "rows": {"type": "array", "items": {"type": "array"}},
                "row_count": {"type": "integer", "minimum": 0},
                "rows_affected": {"type": "integer", "minimum": 0},
                "truncated": {"const": true},
                "error": error,
            },
            "required": ["columns", "rows", "row_count"],
        }),
    }
}

/// The `columns` entry of one column: its name and database type, as the view endpoint
/// writes them.
fn column_header(column: &ResultColumn) -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"const": column.name},
            "type": {"const": column.db_type},
        },
        "required": ["name", "type"],
        "additionalProperties": false,
    })
}

/// The schema of one cell of a column: its JSON, or `null`.
fn column_schema(column: &ResultColumn) -> Value {
    let mut schema = cell_schema(&column.json);
    let object = schema.as_object_mut().expect("schemas are objects");
    object.insert("title".into(), Value::from(column.name.as_str()));
    let note = match column.json {
        ColumnJson::Unsupported => format!(
            "Database type `{}` has no JSON mapping: running the query answers 500 \
             unsupported_column_type (cast the column in the query).",
            column.db_type
        ),
        ColumnJson::Dynamic => format!(
            "Database type `{}` is an affinity: a value comes back as the row stores it.",
            column.db_type
        ),
        _ => format!("Database type `{}`.", column.db_type),
    };
    object.insert("description".into(), Value::from(note));
    schema
}

fn cell_schema(json: &ColumnJson) -> Value {
    let special = json!({"enum": ["NaN", "Infinity", "-Infinity"]});
    match json {
        ColumnJson::Boolean => json!({"type": ["boolean", "null"]}),
        ColumnJson::Integer => json!({"type": ["integer", "null"]}),
        ColumnJson::Float => json!({"anyOf": [{"type": ["number", "null"]}, special]}),
        ColumnJson::IntegerString => json!({"type": ["string", "null"], "pattern": INTEGER_STRING}),
        ColumnJson::DecimalString => json!({"type": ["string", "null"], "pattern": DECIMAL_STRING}),
        ColumnJson::Text => json!({"type": ["string", "null"]}),
        ColumnJson::Uuid => json!({"type": ["string", "null"], "format": "uuid"}),
        ColumnJson::Base64 => json!({"type": ["string", "null"], "contentEncoding": "base64"}),
        ColumnJson::AnyJson => json!({}),
        ColumnJson::Null => json!({"type": "null"}),
        // Multi-dimensional arrays nest: an item is a value or an array of them.
        ColumnJson::Array(member) => json!({
            "type": ["array", "null"],
            "items": {"anyOf": [cell_schema(member), {"type": "array"}]},
        }),
        ColumnJson::Dynamic => json!({"type": ["integer", "number", "string", "null"]}),
        ColumnJson::Unsupported => json!({}),
    }
}

/// The JSON error shape every failure answers with.
fn error_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                    "param": {"type": "string"},
                },
                "required": ["code", "message", "request_id"],
            },
        },
        "required": ["error"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ParamSpec {
        serde_norway::from_str(yaml).expect("param spec")
    }

    #[test]
    fn params_carry_their_declared_types_bounds_enums_and_defaults() {
        let check = |yaml: &str, expected: Value| {
            let mut schema = param_schema(&spec(yaml));
            schema.as_object_mut().unwrap().remove("description");
            assert_eq!(schema, expected, "{yaml}");
        };
        check(
            "{type: int, min: 1, max: 50, default: 10}",
            json!({"type": "integer", "minimum": 1, "maximum": 50, "default": 10}),
        );
        check(
            "{type: text, enum: [new, paid], required: true}",
            json!({"type": "string", "maxLength": 4096, "enum": ["new", "paid"]}),
        );
        check(
            "{type: text, max_length: 8, pattern: '[a-z]+', nullable: true}",
            json!({"anyOf": [
                {"type": "string", "maxLength": 8, "pattern": "^(?:[a-z]+)$"},
                {"type": "null"}
            ]}),
        );
        check(
            "{type: 'array<int>', max_items: 5}",
            json!({"type": "array", "minItems": 0, "maxItems": 5,
                   "items": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX}}),
        );
        check(
            "{type: identifier, enum: [name, created_at], default: name}",
            json!({"type": "string", "enum": ["name", "created_at"], "default": "name"}),
        );
    }

    #[test]
    fn result_rows_are_typed_by_column() {
        let described = Described::Columns(vec![
            ResultColumn {
                name: "id".into(),
                db_type: "int8".into(),
                json: ColumnJson::IntegerString,
            },
            ResultColumn {
                name: "total".into(),
                db_type: "float8".into(),
                json: ColumnJson::Float,
            },
        ]);
        let params = BTreeMap::new();
        let entry = QueryEntry {
            name: "orders",
            description: None,
            params: &params,
            result: &described,
            max_rows: 100,
            anonymous: false,
        };
        let schema = result_schema(&entry);
        let cells = &schema["properties"]["rows"]["items"]["prefixItems"];
        assert_eq!(cells[0]["type"], json!(["string", "null"]));
        assert_eq!(cells[0]["pattern"], INTEGER_STRING);
        assert_eq!(cells[1]["anyOf"][0]["type"], json!(["number", "null"]));
        assert_eq!(
            schema["properties"]["columns"]["prefixItems"][1]["properties"]["type"]["const"],
            "float8"
        );
        assert_eq!(schema["properties"]["rows"]["maxItems"], 100);
    }
}
