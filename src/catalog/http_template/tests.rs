use std::collections::HashMap;

use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::auth::Identity;
use crate::catalog::binding::slots;

const ALL_METHODS: [Method; 5] = METHODS;

/// Hostile text values, each with its expected percent-encoding as a path segment.
const HOSTILE: [(&str, &str); 16] = [
    ("../admin", "..%2Fadmin"),
    ("%2e%2e", "%252e%252e"),
    ("%2E.", "%252E."),
    ("a/b", "a%2Fb"),
    ("a?b#c", "a%3Fb%23c"),
    ("\r\nX-Injected: 1", "%0D%0AX-Injected%3A%201"),
    ("\"quoted\"", "%22quoted%22"),
    ("}", "%7D"),
    ("{{ params.n }}", "%7B%7B%20params.n%20%7D%7D"),
    ("é", "%C3%A9"),
    ("日本", "%E6%97%A5%E6%9C%AC"),
    ("🦀", "%F0%9F%A6%80"),
    ("a\0b", "a%00b"),
    ("a\\b", "a%5Cb"),
    ("a b+c&d=e;f", "a%20b%2Bc%26d%3De%3Bf"),
    ("...", "..."),
];

fn declared() -> BTreeMap<String, ParamSpec> {
    let types = [
        ("q", "text"),
        ("n", "int"),
        ("big", "bigint"),
        ("f", "float"),
        ("amount", "numeric"),
        ("flag", "bool"),
        ("id", "uuid"),
        ("day", "date"),
        ("at", "timestamp"),
        ("doc", "json"),
        ("ids", "array<int>"),
        ("tags", "array<text>"),
    ];
    let mut params: BTreeMap<String, ParamSpec> = types
        .into_iter()
        .map(|(name, ty)| {
            let spec = serde_json::from_value(json!({ "type": ty })).unwrap();
            (name.to_string(), spec)
        })
        .collect();
    params.insert(
        "sort".into(),
        serde_json::from_value(json!({ "type": "identifier", "enum": ["name"] })).unwrap(),
    );
    params.insert(
        "dir".into(),
        serde_json::from_value(json!({ "type": "keyword", "enum": ["ASC"] })).unwrap(),
    );
    params
}

fn values() -> HashMap<String, ParamValue> {
    let uuid = uuid::Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
    let at =
        Utc.with_ymd_and_hms(2024, 2, 29, 13, 5, 9).unwrap() + chrono::TimeDelta::milliseconds(250);
    HashMap::from([
        ("q".into(), ParamValue::Text("x".into())),
        ("n".into(), ParamValue::Int(5)),
        ("big".into(), ParamValue::Bigint(-9_007_199_254_740_993)),
        ("f".into(), ParamValue::Float(0.1)),
        (
            "amount".into(),
            ParamValue::Numeric("12345678901234567890.123".into()),
        ),
        ("flag".into(), ParamValue::Bool(true)),
        ("id".into(), ParamValue::Uuid(uuid)),
        (
            "day".into(),
            ParamValue::Date(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
        ),
        ("at".into(), ParamValue::Timestamp(at)),
        ("doc".into(), ParamValue::Json(json!({ "k": [1, "two"] }))),
        (
            "ids".into(),
            ParamValue::Array(vec![ParamValue::Int(1), ParamValue::Int(2)]),
        ),
        (
            "tags".into(),
            ParamValue::Array(vec![
                ParamValue::Text("a b".into()),
                ParamValue::Text("c&d".into()),
            ]),
        ),
        ("sort".into(), ParamValue::Text("name".into())),
        ("dir".into(), ParamValue::Text("ASC".into())),
    ])
}

fn alice() -> Identity {
    Identity {
        id: "u1".into(),
        email: "alice@example.com".into(),
        role: crate::auth::Role::Admin,
        groups: vec!["sales".into(), "ops".into()],
        mfa_enabled: true,
        claims: Default::default(),
    }
}

fn request(template: Value) -> HttpRequestSpec {
    serde_json::from_value(template).expect("a valid request spec")
}

fn compile(template: Value) -> CompiledHttp {
    let spec = request(template.clone());
    compile_http(&spec, &declared(), &ALL_METHODS)
        .unwrap_or_else(|e| panic!("{template} should compile: {e}"))
}

fn compile_err(template: Value) -> HttpTemplateError {
    compile_http(&request(template.clone()), &declared(), &ALL_METHODS)
        .err()
        .unwrap_or_else(|| panic!("{template} should not compile"))
}

/// Renders with the standard values, `overrides` replacing some, and Alice signed in.
fn render_with(
    compiled: &CompiledHttp,
    overrides: &[(&str, ParamValue)],
) -> Result<RenderedHttp, RenderError> {
    let mut params = values();
    for (name, value) in overrides {
        params.insert(name.to_string(), value.clone());
    }
    let user = alice();
    compiled.render(&BindValues {
        params: &mut slots(&declared(), &params),
        user: Some(&user),
    })
}

fn render(template: Value) -> RenderedHttp {
    render_with(&compile(template), &[]).expect("renders")
}

fn text(s: &str) -> ParamValue {
    ParamValue::Text(s.into())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn json_body(rendered: &RenderedHttp) -> &[u8] {
    match &rendered.body {
        Some(RenderedBody::Json(bytes)) => bytes,
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

#[test]
fn path_values_are_percent_encoded_as_one_segment() {
    let compiled = compile(json!({ "path": "/items/{{ params.q }}/detail" }));
    for (value, encoded) in HOSTILE {
        let rendered = render_with(&compiled, &[("q", text(value))]).unwrap();
        assert_eq!(
            rendered.path,
            format!("/items/{encoded}/detail"),
            "{value:?}"
        );
    }
}

#[test]
fn path_values_of_every_type() {
    let cases = [
        ("n", "5"),
        ("big", "-9007199254740993"),
        ("f", "0.1"),
        ("amount", "12345678901234567890.123"),
        ("flag", "true"),
        ("id", "67e55044-10b1-426f-9247-bb680e5fe0c8"),
        ("day", "2024-02-29"),
        ("at", "2024-02-29T13%3A05%3A09.250Z"),
        ("doc", "%7B%22k%22%3A%5B1%2C%22two%22%5D%7D"),
    ];
    for (param, want) in cases {
        let rendered = render(json!({ "path": format!("/v/{{{{ params.{param} }}}}") }));
        assert_eq!(rendered.path, format!("/v/{want}"), "{param}");
    }
    let rendered = render(json!({ "path": "/u/{{ user.id }}-{{ user.email }}" }));
    assert_eq!(rendered.path, "/u/u1-alice%40example.com");
}

#[test]
fn path_literals_are_kept_as_written() {
    let cases = [
        ("", ""),
        ("/", "/"),
        ("/a%20b/c:d@e;f=g/", "/a%20b/c:d@e;f=g/"),
        ("/items/{{ params.n }}/", "/items/5/"),
        ("/{{ params.q }}.json", "/x.json"),
        ("/v1/{{ params.q }}-{{ params.n }}~", "/v1/x-5~"),
    ];
    for (template, want) in cases {
        assert_eq!(render(json!({ "path": template })).path, want, "{template}");
    }
}

#[test]
fn path_segments_that_parsers_resolve_are_refused() {
    const DOTS: &str = "must not make a path segment `.` or `..`";
    const EMPTY: &str = "must not be empty";
    let cases = [
        ("/items/{{ params.q }}", "..", DOTS),
        ("/items/{{ params.q }}", ".", DOTS),
        ("/items/{{ params.q }}/x", "..", DOTS),
        ("/items/.{{ params.q }}", ".", DOTS),
        ("/items/{{ params.q }}%2e", ".", DOTS),
        ("/items/{{ params.q }}%2E", "", DOTS),
        ("/items/%2e{{ params.q }}%2E", "", DOTS),
        ("/items/{{ params.q }}", "", EMPTY),
        ("/items/{{ params.q }}/x", "", EMPTY),
    ];
    for (template, value, want) in cases {
        let compiled = compile(json!({ "path": template }));
        let e = render_with(&compiled, &[("q", text(value))]).unwrap_err();
        assert_eq!(e.param, "q", "{template} {value:?}");
        assert!(e.message.contains(want), "{template} {value:?}: {e}");
    }
    // `%2e%2e` from a value is encoded, so it stays an ordinary segment.
    let compiled = compile(json!({ "path": "/items/{{ params.q }}" }));
    let rendered = render_with(&compiled, &[("q", text("..."))]).unwrap();
    assert_eq!(rendered.path, "/items/...");
}

#[test]
fn path_needs_a_value_for_each_binding() {
    let compiled = compile(json!({ "path": "/items/{{ params.q }}" }));
    let e = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap_err();
    assert_eq!(e.param, "q");
    assert!(e.message.starts_with("is required here"), "{e}");
    let e = render_with(&compiled, &[("q", text(""))]).unwrap_err();
    assert!(e.message.contains("must not be empty"), "{e}");

    // Without a caller, `user.id` is NULL.
    let compiled = compile(json!({ "path": "/users/{{ user.id }}" }));
    let params = values();
    let e = compiled
        .render(&BindValues {
            params: &mut slots(&declared(), &params),
            user: None,
        })
        .unwrap_err();
    assert_eq!(e.param, "user.id");

    let compiled = compile(json!({ "path": "/f/{{ params.f }}" }));
    for bad in [f64::NAN, f64::INFINITY] {
        let e = render_with(&compiled, &[("f", ParamValue::Float(bad))]).unwrap_err();
        assert!(e.message.contains("finite"), "{e}");
    }
}

#[test]
fn path_compile_errors() {
    let cases = [
        ("items", "must be empty or start with `/`"),
        ("{{ params.q }}", "must be empty or start with `/`"),
        ("/a?b=1", "put query parameters under `query`"),
        ("/a#top", "fragment"),
        ("/a b", "' ' is not allowed"),
        ("/a\tb", "'\\t' is not allowed"),
        ("/é", "'é' is not allowed"),
        ("/a\\b", "'\\\\' is not allowed"),
        ("/a%zz", "percent-encoded byte"),
        ("/a%2", "percent-encoded byte"),
        ("/a/../b", "segment `..`"),
        ("/a/./b", "segment `.`"),
        ("/a/%2E%2e/b", "segment `%2E%2e`"),
        ("/a//b", "empty segment"),
        ("//evil.example/x", "empty segment"),
        ("/{{ params.ids }}", "is a list"),
        ("/{{ user.groups }}", "is a list"),
        ("/{{ params.nope }}", "unknown param `nope`"),
    ];
    for (template, fragment) in cases {
        let e = compile_err(json!({ "path": template }));
        assert_eq!(e.location, "path", "{template}");
        assert!(e.message.contains(fragment), "{template}: {e}");
    }
}

#[test]
fn query_values_are_raw_pairs() {
    let compiled = compile(json!({
        "path": "/search",
        "query": { "q": "{{ params.q }}", "fixed": "a b", "both": "{{ params.n }}:{{ params.q }}" }
    }));
    for (value, _) in HOSTILE {
        let rendered = render_with(&compiled, &[("q", text(value))]).unwrap();
        assert_eq!(
            rendered.query,
            pairs(&[
                ("both", &format!("5:{value}")),
                ("fixed", "a b"),
                ("q", value)
            ]),
            "{value:?}"
        );
    }
}

#[test]
fn query_nulls_are_left_out_and_lists_repeat() {
    let compiled = compile(json!({
        "query": {
            "q": "{{ params.q }}",
            "id": "{{ params.ids }}",
            "tag": "{{ params.tags }}",
            "g": "{{ user.groups }}",
            "at": "{{ params.at }}",
            "doc": "{{ params.doc }}",
        }
    }));
    let rendered = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap();
    assert_eq!(
        rendered.query,
        pairs(&[
            ("at", "2024-02-29T13:05:09.250Z"),
            ("doc", r#"{"k":[1,"two"]}"#),
            ("g", "sales"),
            ("g", "ops"),
            ("id", "1"),
            ("id", "2"),
            ("tag", "a b"),
            ("tag", "c&d"),
        ])
    );
    let rendered = render_with(
        &compiled,
        &[
            ("ids", ParamValue::Array(Vec::new())),
            ("tags", ParamValue::Null),
        ],
    )
    .unwrap();
    assert!(rendered.query.iter().all(|(k, _)| k != "id" && k != "tag"));

    // Mixed with text, a NULL cannot be left out.
    let compiled = compile(json!({ "query": { "q": "prefix-{{ params.q }}" } }));
    let e = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap_err();
    assert_eq!(e.param, "q");
    assert!(e.message.starts_with("is required here"), "{e}");
}

#[test]
fn query_compile_errors() {
    let cases = [
        (json!({ "": "x" }), "query.", "must not be empty"),
        (
            json!({ "{{ params.q }}": "x" }),
            "query.{{ params.q }}",
            "names are literal",
        ),
        (
            json!({ "id": "in:{{ params.ids }}" }),
            "query.id",
            "is a list",
        ),
        (
            json!({ "q": "{{ params.q }" }),
            "query.q",
            "unterminated binding",
        ),
    ];
    for (query, location, fragment) in cases {
        let e = compile_err(json!({ "query": query }));
        assert_eq!(e.location, location);
        assert!(e.message.contains(fragment), "{e}");
    }
}

#[test]
fn header_values_refuse_control_characters() {
    let compiled = compile(json!({
        "headers": { "X-Trace": "{{ params.q }}", "X-Mixed": "id={{ params.q }}" }
    }));
    for (value, _) in HOSTILE {
        let result = render_with(&compiled, &[("q", text(value))]);
        if value.contains(['\r', '\n', '\0']) {
            let e = result.unwrap_err();
            assert_eq!(e.param, "q", "{value:?}");
            assert!(e.message.contains("control characters"), "{e}");
        } else {
            let rendered = result.unwrap();
            let got: Vec<(&str, &[u8])> = rendered
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect();
            let mixed = format!("id={value}");
            assert_eq!(
                got,
                [("x-mixed", mixed.as_bytes()), ("x-trace", value.as_bytes())],
                "{value:?}"
            );
        }
    }
    for value in ["a\x0bb", "a\x7fb", "a\u{85}b", "\n"] {
        let e = render_with(&compiled, &[("q", text(value))]).unwrap_err();
        assert_eq!(e.param, "q", "{value:?}");
    }
    let rendered = render_with(&compiled, &[("q", text("a\tb"))]).unwrap();
    assert_eq!(rendered.headers[1].1.as_bytes(), b"a\tb");
}

#[test]
fn header_nulls_and_users() {
    let compiled = compile(json!({
        "headers": {
            "X-Q": "{{ params.q }}",
            "X-User": "{{ user.email }}",
            "Accept": "application/json",
        }
    }));
    assert!(compiled.uses_user());
    let rendered = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap();
    let names: Vec<&str> = rendered.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["accept", "x-user"]);
    assert_eq!(rendered.headers[1].1, "alice@example.com");

    let params = values();
    let anonymous = compiled
        .render(&BindValues {
            params: &mut slots(&declared(), &params),
            user: None,
        })
        .unwrap();
    let names: Vec<&str> = anonymous.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["accept", "x-q"]);
}

#[test]
fn header_compile_errors() {
    let cases = [
        ("Host", "x", "set by the HTTP client"),
        ("content-length", "1", "set by the HTTP client"),
        ("Transfer-Encoding", "chunked", "set by the HTTP client"),
        ("Connection", "close", "set by the HTTP client"),
        ("Keep-Alive", "1", "set by the HTTP client"),
        ("Upgrade", "h2c", "set by the HTTP client"),
        ("TE", "trailers", "set by the HTTP client"),
        ("Trailer", "x", "set by the HTTP client"),
        ("Proxy-Authorization", "x", "`Proxy-*`"),
        ("proxy-connection", "x", "`Proxy-*`"),
        (
            "Authorization",
            "Bearer {{ params.q }}",
            "datasource's credentials",
        ),
        ("Bad Name", "x", "not a valid header name"),
        ("X-Bad:", "x", "not a valid header name"),
        ("X-Ids", "{{ params.ids }}", "is a list"),
        ("X-Groups", "g={{ user.groups }}", "is a list"),
        ("X-Line", "a\r\nX-Injected: 1", "control character"),
        ("X-Line", "a\n{{ params.q }}", "control character"),
        ("X-Sort", "{{ params.sort }}", "for SQL templates only"),
    ];
    for (name, value, fragment) in cases {
        let e = compile_err(json!({ "headers": { name: value } }));
        assert_eq!(e.location, format!("headers.{name}"));
        assert!(e.message.contains(fragment), "{name}: {e}");
    }
    let e = compile_err(json!({ "headers": { "X-A": "1", "x-a": "2" } }));
    assert!(e.message.contains("given twice"), "{e}");
}

#[test]
fn json_body_binds_typed_values() {
    let template = json!({
        "method": "POST",
        "body": { "json": {
            "n": "{{ params.n }}",
            "big": "{{ params.big }}",
            "f": "{{ params.f }}",
            "amount": "{{ params.amount }}",
            "flag": "{{ params.flag }}",
            "id": "{{ params.id }}",
            "day": "{{ params.day }}",
            "at": "{{ params.at }}",
            "doc": "{{ params.doc }}",
            "ids": "{{ params.ids }}",
            "groups": "{{ user.groups }}",
            "who": "{{ user.id }}",
            "q": "{{ params.q }}",
            "literal": [1, 2.5, null, true, "{not a binding}", { "k": "v" }],
        } }
    });
    let rendered = render_with(&compile(template), &[("q", ParamValue::Null)]).unwrap();
    assert_eq!(
        String::from_utf8(json_body(&rendered).to_vec()).unwrap(),
        concat!(
            r#"{"amount":12345678901234567890.123,"at":"2024-02-29T13:05:09.250Z","#,
            r#""big":-9007199254740993,"day":"2024-02-29","doc":{"k":[1,"two"]},"f":0.1,"#,
            r#""flag":true,"groups":["sales","ops"],"id":"67e55044-10b1-426f-9247-bb680e5fe0c8","#,
            r#""ids":[1,2],"literal":[1,2.5,null,true,"{not a binding}",{"k":"v"}],"n":5,"#,
            r#""q":null,"who":"u1"}"#
        )
    );
}

#[test]
fn json_body_strings_stay_strings() {
    let compiled = compile(json!({
        "method": "POST",
        "body": { "json": { "s": "{{ params.q }}", "m": "<{{ params.q }}|{{ params.n }}>" } }
    }));
    let mut cases: Vec<&str> = HOSTILE.iter().map(|(v, _)| *v).collect();
    cases.extend(["a\"}", "\",\"admin\":true,\"x\":\"", "\\", "5"]);
    for value in cases {
        let rendered = render_with(&compiled, &[("q", text(value))]).unwrap();
        let parsed: Value = serde_json::from_slice(json_body(&rendered)).unwrap();
        assert_eq!(
            parsed,
            json!({ "s": value, "m": format!("<{value}|5>") }),
            "{value:?}"
        );
    }
    let rendered = render_with(&compiled, &[("q", text("a\"}"))]).unwrap();
    assert_eq!(
        json_body(&rendered),
        br#"{"m":"<a\"}|5>","s":"a\"}"}"#.as_slice()
    );
}

#[test]
fn json_body_render_errors() {
    let compiled = compile(json!({
        "method": "PUT",
        "body": { "json": { "f": "{{ params.f }}" } }
    }));
    let e = render_with(&compiled, &[("f", ParamValue::Float(f64::NAN))]).unwrap_err();
    assert_eq!(e.param, "f");
    let compiled = compile(json!({
        "method": "PUT",
        "body": { "json": { "m": "q={{ params.q }}" } }
    }));
    let e = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap_err();
    assert!(e.message.starts_with("is required here"), "{e}");
}

#[test]
fn json_body_compile_errors() {
    let cases = [
        (
            json!({ "{{ params.q }}": 1 }),
            "body.{{ params.q }}",
            "object keys are literal",
        ),
        (
            json!({ "a": [{ "k-{{ user.id }}": 1 }] }),
            "body.a[0].k-{{ user.id }}",
            "object keys are literal",
        ),
        (
            json!({ "a": ["x", "{{ params.nope }}"] }),
            "body.a[1]",
            "unknown param",
        ),
        (
            json!({ "a": "ids: {{ params.ids }}" }),
            "body.a",
            "is a list",
        ),
        (json!("{{ params.dir }}"), "body", "for SQL templates only"),
    ];
    for (document, location, fragment) in cases {
        let e = compile_err(json!({ "method": "POST", "body": { "json": document } }));
        assert_eq!(e.location, location);
        assert!(e.message.contains(fragment), "{e}");
    }
}

#[test]
fn form_and_text_bodies() {
    let rendered = render(json!({
        "method": "POST",
        "body": { "form": {
            "q": "{{ params.q }}",
            "tag": "{{ params.tags }}",
            "none": "{{ params.q }}",
            "note": "n={{ params.n }} & more",
        } }
    }));
    assert_eq!(
        rendered.body,
        Some(RenderedBody::Form(pairs(&[
            ("none", "x"),
            ("note", "n=5 & more"),
            ("q", "x"),
            ("tag", "a b"),
            ("tag", "c&d"),
        ])))
    );
    let compiled = compile(json!({
        "method": "PATCH",
        "body": { "form": { "q": "{{ params.q }}", "n": "{{ params.n }}" } }
    }));
    let rendered = render_with(&compiled, &[("q", ParamValue::Null)]).unwrap();
    assert_eq!(
        rendered.body,
        Some(RenderedBody::Form(pairs(&[("n", "5")])))
    );

    let compiled = compile(json!({
        "method": "POST",
        "body": { "text": "Hello {{ user.email }}, q=\"{{ params.q }}\" {{ params.flag }}" }
    }));
    let rendered = render_with(&compiled, &[("q", text("a\"}\r\n"))]).unwrap();
    assert_eq!(
        rendered.body,
        Some(RenderedBody::Text(
            "Hello alice@example.com, q=\"a\"}\r\n\" true".into()
        ))
    );
    let e = compile_err(json!({ "method": "POST", "body": { "text": "{{ params.ids }}" } }));
    assert_eq!(e.location, "body");
    let e = compile_err(json!({ "method": "POST", "body": { "form": { "{{ params.q }}": "" } } }));
    assert!(e.message.contains("names are literal"), "{e}");
}

#[test]
fn methods() {
    for (written, want) in [
        ("get", Method::GET),
        ("Post", Method::POST),
        ("PUT", Method::PUT),
        ("patch", Method::PATCH),
        ("DELETE", Method::DELETE),
    ] {
        let compiled = compile(json!({ "method": written }));
        assert_eq!(compiled.method(), &want);
        assert_eq!(render_with(&compiled, &[]).unwrap().method, want);
    }
    assert_eq!(compile(json!({})).method(), &Method::GET);

    let spec = request(json!({ "method": "PUT" }));
    let e = compile_http(&spec, &declared(), &[Method::GET, Method::POST]).unwrap_err();
    assert_eq!(e.location, "method");
    assert!(
        e.message
            .contains("not allowed for this datasource (allowed: GET, POST)"),
        "{e}"
    );

    for method in ["HEAD", "OPTIONS", "CONNECT", "TRACE", "G ET", ""] {
        let e = compile_err(json!({ "method": method }));
        assert_eq!(e.location, "method");
        assert!(e.message.contains("is not supported"), "{e}");
    }
    for method in ["GET", "delete"] {
        let e = compile_err(json!({ "method": method, "body": { "text": "x" } }));
        assert_eq!(e.location, "body");
        assert!(e.message.contains("cannot have a body"), "{e}");
    }
}

#[test]
fn binding_errors_match_the_sql_compiler() {
    let cases = [
        (
            "{{ params.nope }}",
            "unknown param `nope` (declared: amount, at, big,",
        ),
        (
            "{{ user.password }}",
            "unknown user field `password` (available: id, email, role, groups, claims.NAME)",
        ),
        (
            "{{ params.q | upper }}",
            "is not a binding: a binding is a path",
        ),
        ("{{ params.q + 1 }}", "is not a binding"),
        ("{{ q }}", "is not a binding"),
        ("{{ env.HOME }}", "is not a binding"),
        ("{{}}", "is not a binding"),
        ("x {{ params.q", "unterminated binding"),
        (
            "{{ params.sort }}",
            "param `sort`: type `identifier` is for SQL templates only",
        ),
        (
            "{{ params.dir }}",
            "param `dir`: type `keyword` is for SQL templates only",
        ),
    ];
    for (template, fragment) in cases {
        let e = compile_err(json!({ "query": { "v": template } }));
        assert_eq!(e.location, "query.v");
        assert!(e.message.contains(fragment), "{template}: {e}");
    }
    let e = compile_http(
        &request(json!({ "query": { "v": "{{ params.q }}" } })),
        &BTreeMap::new(),
        &ALL_METHODS,
    )
    .unwrap_err();
    assert!(e.message.contains("(none are declared)"), "{e}");
    assert_eq!(e.to_string(), format!("query.v: {}", e.message));
}

#[test]
fn uses_user_and_missing_values() {
    assert!(!compile(json!({ "path": "/a/{{ params.q }}" })).uses_user());
    assert!(compile(json!({ "query": { "g": "{{ user.groups }}" } })).uses_user());
    assert!(
        compile(json!({ "method": "POST", "body": { "json": { "o": ["{{ user.role }}"] } } }))
            .uses_user()
    );

    let compiled = compile(json!({ "query": { "q": "{{ params.q }}" } }));
    // A value vector shorter than the declared params (never built by validation).
    let e = compiled
        .render(&BindValues {
            params: &mut [],
            user: None,
        })
        .unwrap_err();
    assert_eq!(e.param, "q");
}

#[test]
fn static_parts_need_no_values() {
    let compiled = compile(json!({
        "method": "post",
        "path": "/v1/things",
        "query": { "limit": "10" },
        "headers": { "Accept": "application/json" },
        "body": { "json": { "a": [1, { "b": "c" }] } }
    }));
    assert!(matches!(compiled.path, Path::Static(_)));
    assert!(matches!(compiled.body, Some(Body::Json(ref parts)) if parts.len() == 1));
    let empty = HashMap::new();
    let rendered = compiled
        .render(&BindValues {
            params: &mut slots(&declared(), &empty),
            user: None,
        })
        .unwrap();
    assert_eq!(
        rendered,
        RenderedHttp {
            method: Method::POST,
            path: "/v1/things".into(),
            query: pairs(&[("limit", "10")]),
            headers: vec![(
                http::header::ACCEPT,
                HeaderValue::from_static("application/json")
            )],
            body: Some(RenderedBody::Json(br#"{"a":[1,{"b":"c"}]}"#.to_vec())),
        }
    );
}
