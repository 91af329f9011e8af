use chrono::NaiveDateTime;
use serde_json::json;

use std::cmp::Ordering;

use chrono::{NaiveDate, TimeDelta};
use serde_json::Value;

use super::*;

/// Compiles the declarations of a JSON object (the JSON form of the YAML).
fn compile(specs: Value) -> Result<ParamSchema, SpecError> {
    let specs: BTreeMap<String, ParamSpec> =
        serde_json::from_value(specs).expect("specs deserialise");
    ParamSchema::compile(&specs)
}

/// Validates `{"p": input}` against the one param `p` declared as `spec`.
fn run(spec: &Value, input: &Value) -> Result<ParamValue, String> {
    let schema = compile(json!({ "p": spec })).expect("spec compiles");
    let mut out = schema
        .validate(json!({ "p": input }).as_object().unwrap().clone())
        .map_err(|e| {
            assert_eq!(e.param, "p");
            e.message
        })?;
    Ok(out.remove(0))
}

/// `input` is accepted as `expected`.
fn ok(spec: &Value, input: Value, expected: ParamValue) {
    let got = run(spec, &input);
    assert_eq!(got, Ok(expected), "spec {spec}, input {input}");
}

/// `input` is refused with a message that contains `fragment`.
fn err(spec: &Value, input: Value, fragment: &str) {
    match run(spec, &input) {
        Ok(value) => panic!("spec {spec}, input {input}: accepted as {value:?}"),
        Err(message) => assert!(
            message.contains(fragment),
            "spec {spec}, input {input}: `{message}` lacks `{fragment}`"
        ),
    }
}

/// Declaring `p` as `spec` fails with a message that contains `fragment`.
fn bad(spec: Value, fragment: &str) {
    let e = compile(json!({ "p": spec })).expect_err(&spec.to_string());
    assert_eq!(e.param, "p");
    let message = e.message;
    assert!(
        message.contains(fragment),
        "spec {spec}: `{message}` lacks `{fragment}`"
    );
}

fn text(s: &str) -> ParamValue {
    ParamValue::Text(s.to_string())
}

fn numeric(s: &str) -> ParamValue {
    ParamValue::Numeric(s.to_string())
}

fn date(y: i32, m: u32, d: u32) -> ParamValue {
    ParamValue::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap())
}

/// A UTC timestamp from "YYYY-MM-DD HH:MM:SS" plus nanoseconds.
fn ts(at: &str, nanos: i64) -> ParamValue {
    let at = NaiveDateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S").unwrap();
    ParamValue::Timestamp(at.and_utc() + TimeDelta::nanoseconds(nanos))
}

/// A JSON number as written (`1e3` stays a float, as a caller would send it).
fn number(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn text_values() {
    let plain = json!({ "type": "text" });
    ok(&plain, json!("hello"), text("hello"));
    ok(&plain, json!(""), text(""));
    ok(&plain, json!("x".repeat(4096)), text(&"x".repeat(4096)));
    err(&plain, json!(1), "must be a string");
    err(&plain, json!(true), "must be a string");
    err(&plain, json!(["a"]), "must be a string");
    err(&plain, json!(null), "must not be null");
    err(
        &plain,
        json!("a\u{0}b"),
        "must not contain the NUL character (U+0000)",
    );
    err(
        &plain,
        json!("x".repeat(4097)),
        "must be at most 4096 characters",
    );

    // Length counts characters: three characters of nine bytes fit in three.
    let short = json!({ "type": "text", "max_length": 3 });
    ok(&short, json!("日本語"), text("日本語"));
    ok(&short, json!("a😀b"), text("a😀b"));
    err(
        &short,
        json!("日本語x"),
        "must be at most 3 characters long",
    );
}

#[test]
fn text_pattern_matches_the_whole_value() {
    let code = json!({ "type": "text", "pattern": "[A-Z]{3}" });
    ok(&code, json!("ABC"), text("ABC"));
    err(&code, json!("ABCD"), "does not match the declared pattern");
    err(&code, json!("xABC"), "does not match the declared pattern");
    err(&code, json!("ABC\n"), "does not match the declared pattern");

    let alternation = json!({ "type": "text", "pattern": "a|b" });
    ok(&alternation, json!("b"), text("b"));
    err(&alternation, json!("ab"), "does not match");
}

#[test]
fn int_values() {
    let int = json!({ "type": "int" });
    ok(&int, json!(0), ParamValue::Int(0));
    ok(&int, json!(-7), ParamValue::Int(-7));
    ok(&int, json!(i32::MAX), ParamValue::Int(i32::MAX));
    ok(&int, json!(i32::MIN), ParamValue::Int(i32::MIN));
    // Integral values written with a fraction or an exponent are integers.
    ok(&int, number("3.0"), ParamValue::Int(3));
    ok(&int, number("1e3"), ParamValue::Int(1000));

    let range = "must be an integer between -2147483648 and 2147483647";
    err(&int, json!(i64::from(i32::MAX) + 1), range);
    err(&int, json!(i64::from(i32::MIN) - 1), range);
    err(&int, json!(u64::MAX), range);
    err(&int, number("1e18"), range);
    err(&int, json!(1.5), "must be an integer");
    err(&int, json!("1"), "must be an integer");
    err(&int, json!(true), "must be an integer");
}

#[test]
fn bigint_values() {
    let big = json!({ "type": "bigint" });
    ok(&big, json!(i64::MAX), ParamValue::Bigint(i64::MAX));
    ok(&big, json!(i64::MIN), ParamValue::Bigint(i64::MIN));
    // 2^53 + 1, which a browser cannot hold in a number, sent as a string.
    ok(
        &big,
        json!("9007199254740993"),
        ParamValue::Bigint(9_007_199_254_740_993),
    );
    ok(
        &big,
        json!("9223372036854775807"),
        ParamValue::Bigint(i64::MAX),
    );
    ok(
        &big,
        json!("-9223372036854775808"),
        ParamValue::Bigint(i64::MIN),
    );
    ok(&big, json!("-0"), ParamValue::Bigint(0));
    ok(&big, json!("007"), ParamValue::Bigint(7));

    let range = "must be an integer between -9223372036854775808 and 9223372036854775807";
    err(&big, json!("9223372036854775808"), range);
    err(&big, json!(u64::MAX), range);
    err(&big, json!("1".repeat(60)), range);
    err(
        &big,
        number("1e18"),
        "send integers beyond 2^53 as a string",
    );
    for input in ["+5", "1.0", "", "-", " 5", "1e3", "٣"] {
        err(&big, json!(input), "must be an integer");
    }
    err(&big, json!(1.5), "must be an integer");
    err(&big, json!(false), "must be an integer");
}

#[test]
fn float_values() {
    let float = json!({ "type": "float" });
    ok(&float, json!(1.5), ParamValue::Float(1.5));
    ok(&float, json!(-2), ParamValue::Float(-2.0));
    ok(&float, json!(1e300), ParamValue::Float(1e300));
    err(&float, json!("1.5"), "must be a number");
    err(&float, json!(null), "must not be null");
}

#[test]
fn numeric_values_are_canonical() {
    let cases = [
        ("0", "0"),
        ("-0", "0"),
        ("-0.00", "0.00"),
        ("007.50", "7.50"),
        ("-12.340", "-12.340"),
        ("1e-3", "0.001"),
        ("1.0e-3", "0.0010"),
        ("2.5E+10", "25000000000"),
        ("1.50e1", "15.0"),
        ("123.456e2", "12345.6"),
        ("-5e0", "-5"),
        ("0e5", "0"),
        (
            "12345678901234567890.123456789",
            "12345678901234567890.123456789",
        ),
    ];
    let exact = json!({ "type": "numeric" });
    for (input, canonical) in cases {
        ok(&exact, json!(input), numeric(canonical));
    }
    ok(&exact, json!(42), numeric("42"));
    ok(&exact, json!(-42), numeric("-42"));
    ok(&exact, json!(0.1), numeric("0.1"));
    ok(&exact, number("1e20"), numeric("100000000000000000000"));
    ok(&exact, json!("1".repeat(1000)), numeric(&"1".repeat(1000)));
    ok(
        &exact,
        json!("1e999"),
        numeric(&format!("1{}", "0".repeat(999))),
    );
    ok(
        &exact,
        json!("-1e-1000"),
        numeric(&format!("-0.{}1", "0".repeat(999))),
    );

    let digits = "must have at most 1000 digits";
    err(&exact, json!("1".repeat(1001)), digits);
    err(&exact, json!("1e1000"), digits);
    err(&exact, json!("1e-1001"), digits);
    err(&exact, json!("1e99999999999999999999"), digits);
    for input in ["+1", ".5", "5.", "1e", "1e+-2", "1.2.3", "NaN", "١٢", ""] {
        err(&exact, json!(input), "must be a decimal number");
    }
    err(&exact, json!(true), "must be a decimal number");
}

#[test]
fn decimal_comparison_is_exact() {
    let cases = [
        ("0", "0.00", Ordering::Equal),
        ("1.10", "1.1", Ordering::Equal),
        ("10", "9.999", Ordering::Greater),
        ("-10", "-9.999", Ordering::Less),
        ("-0.5", "0", Ordering::Less),
        ("0.30000000000000000001", "0.3", Ordering::Greater),
        (
            "123456789012345678901",
            "123456789012345678900",
            Ordering::Greater,
        ),
    ];
    for (a, b, expected) in cases {
        assert_eq!(cmp_decimal(a, b), expected, "{a} vs {b}");
        assert_eq!(cmp_decimal(b, a), expected.reverse(), "{b} vs {a}");
    }
}

#[test]
fn bool_uuid_json_values() {
    let boolean = json!({ "type": "bool" });
    ok(&boolean, json!(true), ParamValue::Bool(true));
    ok(&boolean, json!(false), ParamValue::Bool(false));
    err(&boolean, json!("true"), "must be a boolean");
    err(&boolean, json!(1), "must be a boolean");

    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let uuid = json!({ "type": "uuid" });
    ok(
        &uuid,
        json!(id),
        ParamValue::Uuid(uuid::Uuid::parse_str(id).unwrap()),
    );
    err(&uuid, json!("67e55044-10b1-426f-9247"), "must be a UUID");
    err(&uuid, json!(5), "must be a UUID");

    let any = json!({ "type": "json" });
    let doc = json!({ "a": [1, null] });
    ok(&any, doc.clone(), ParamValue::Json(doc));
    ok(&any, json!("s"), ParamValue::Json(json!("s")));
    err(&any, json!(null), "must not be null");
}

#[test]
fn date_values() {
    let day = json!({ "type": "date" });
    ok(&day, json!("2024-02-29"), date(2024, 2, 29));
    ok(&day, json!("0001-01-01"), date(1, 1, 1));
    ok(&day, json!("9999-12-31"), date(9999, 12, 31));
    let bad_dates = [
        "2023-02-29",
        "2024-13-01",
        "2024-1-01",
        "2024-01-01T00:00:00Z",
        "0000-01-01",
        "+2024-01-01",
        "2024-01-0é",
    ];
    for input in bad_dates {
        err(&day, json!(input), "must be a date (YYYY-MM-DD)");
    }
    err(&day, json!(20240101), "must be a date (YYYY-MM-DD)");
}

#[test]
fn timestamp_values() {
    let at = json!({ "type": "timestamp" });
    ok(
        &at,
        json!("2024-01-31T12:00:00Z"),
        ts("2024-01-31 12:00:00", 0),
    );
    // Offsets are converted to UTC, here back across a leap day.
    ok(
        &at,
        json!("2024-03-01T01:30:00+02:00"),
        ts("2024-02-29 23:30:00", 0),
    );
    ok(
        &at,
        json!("2024-01-31T22:00:00-05:30"),
        ts("2024-02-01 03:30:00", 0),
    );
    // Without an offset the time is taken as UTC.
    ok(
        &at,
        json!("2024-01-31T12:00:00"),
        ts("2024-01-31 12:00:00", 0),
    );
    ok(
        &at,
        json!("2024-01-31 12:00:00"),
        ts("2024-01-31 12:00:00", 0),
    );
    ok(
        &at,
        json!("2024-01-31t12:00:00z"),
        ts("2024-01-31 12:00:00", 0),
    );
    ok(
        &at,
        json!("2024-01-31T12:00:00.5Z"),
        ts("2024-01-31 12:00:00", 500_000_000),
    );
    let nanos = json!("2024-01-31 12:00:00.123456789");
    ok(&at, nanos, ts("2024-01-31 12:00:00", 123_456_789));

    let bad_timestamps = [
        "2024-01-31",
        "2024-01-31T25:00:00Z",
        "2024-01-31T12:00:60Z",
        "2024-01-31T12:00Z",
        "2024-01-31T12:00:00.",
        "2024-01-31T12:00:00.1234567890",
        "2024-01-31T12:00:00+0200",
        "2024-01-31T12:00:00+24:00",
        "2024-01-31T12:00:00Z ",
        "2023-02-29T12:00:00Z",
    ];
    for input in bad_timestamps {
        err(&at, json!(input), "must be a timestamp (RFC 3339");
    }
    err(&at, json!(1706702400), "must be a timestamp (RFC 3339");
}

#[test]
fn identifier_values_come_from_the_enum() {
    let column = json!({
        "type": "identifier", "required": true, "enum": ["created_at", "orders.total"]
    });
    ok(&column, json!("created_at"), text("created_at"));
    ok(&column, json!("orders.total"), text("orders.total"));
    err(
        &column,
        json!("CREATED_AT"),
        "must be one of: created_at, orders.total",
    );
    err(&column, json!("created_at; drop table x"), "must be one of");
    err(&column, json!(1), "must be a string");
    err(&column, json!(null), "must not be null");
}

#[test]
fn keyword_values_are_canonical() {
    let direction = json!({
        "type": "keyword", "default": "asc", "enum": ["asc", "Desc", "nulls last"]
    });
    ok(&direction, json!("ASC"), text("ASC"));
    ok(&direction, json!("desc"), text("DESC"));
    ok(&direction, json!("Nulls Last"), text("NULLS LAST"));
    err(
        &direction,
        json!("nulls first"),
        "must be one of: ASC, DESC, NULLS LAST",
    );
    err(&direction, json!("asc "), "must be one of");

    // Left out, the param takes its default in canonical form.
    let schema = compile(json!({ "p": direction })).unwrap();
    let out = schema.validate(serde_json::Map::new()).unwrap();
    assert_eq!(out[schema.slot("p").unwrap()], text("ASC"));
}

#[test]
fn enums_compare_typed_values() {
    let status = json!({ "type": "text", "enum": ["open", "closed"] });
    ok(&status, json!("open"), text("open"));
    err(&status, json!("Open"), "must be one of: open, closed");

    let small = json!({ "type": "int", "enum": [1, 2, 3] });
    ok(&small, json!(2), ParamValue::Int(2));
    ok(&small, json!(2.0), ParamValue::Int(2));
    err(&small, json!(4), "must be one of: 1, 2, 3");

    // Numerics compare by value; the caller's scale is kept.
    let rate = json!({ "type": "numeric", "enum": ["0.5", 1] });
    ok(&rate, json!("0.50"), numeric("0.50"));
    ok(&rate, json!("1.0"), numeric("1.0"));
    ok(&rate, json!(0.5), numeric("0.5"));
    err(&rate, json!("0.51"), "must be one of: 0.5, 1");

    let day = json!({ "type": "date", "enum": ["2024-01-01"] });
    ok(&day, json!("2024-01-01"), date(2024, 1, 1));
    err(&day, json!("2024-01-02"), "must be one of: 2024-01-01");

    // A long list is not spelled out.
    let many: Vec<String> = (0..100).map(|i| format!("value_{i}")).collect();
    let many = json!({ "type": "text", "enum": many });
    err(
        &many,
        json!("other"),
        "must be one of the 100 allowed values",
    );
}

#[test]
fn bounds_are_inclusive() {
    let int = json!({ "type": "int", "min": 1, "max": 10 });
    ok(&int, json!(1), ParamValue::Int(1));
    ok(&int, json!(10), ParamValue::Int(10));
    err(&int, json!(0), "must be at least 1");
    err(&int, json!(11), "must be at most 10");

    let big = json!({ "type": "bigint", "min": "-9007199254740993" });
    ok(
        &big,
        json!("-9007199254740993"),
        ParamValue::Bigint(-9_007_199_254_740_993),
    );
    err(
        &big,
        json!("-9007199254740994"),
        "must be at least -9007199254740993",
    );

    let float = json!({ "type": "float", "min": 0.5, "max": 1.5 });
    ok(&float, json!(1.5), ParamValue::Float(1.5));
    err(&float, json!(0.49), "must be at least 0.5");

    // Compared exactly: no detour through f64.
    let fine = "0.30000000000000000001";
    let exact = json!({ "type": "numeric", "min": "0.1", "max": fine });
    ok(&exact, json!("0.10"), numeric("0.10"));
    ok(&exact, json!(fine), numeric(fine));
    ok(&exact, json!(0.3), numeric("0.3"));
    err(
        &exact,
        json!("0.0999999999999999999999"),
        "must be at least 0.1",
    );
    err(
        &exact,
        json!("0.30000000000000000002"),
        "must be at most 0.3000000000000000000",
    );

    let day = json!({ "type": "date", "min": "2024-01-01", "max": "2024-12-31" });
    ok(&day, json!("2024-12-31"), date(2024, 12, 31));
    err(&day, json!("2025-01-01"), "must be at most 2024-12-31");

    let later = json!({ "type": "timestamp", "min": "2024-01-01T00:00:00+01:00" });
    ok(
        &later,
        json!("2023-12-31T23:00:00Z"),
        ts("2023-12-31 23:00:00", 0),
    );
    err(
        &later,
        json!("2023-12-31T22:59:59Z"),
        "must be at least 2024-01-01T00:00:00+01:00",
    );
}

#[test]
fn arrays_check_every_item() {
    let ids = json!({ "type": "array<int>", "min_items": 1, "max_items": 3, "min": 0 });
    let ints = |v: &[i32]| ParamValue::Array(v.iter().copied().map(ParamValue::Int).collect());
    ok(&ids, json!([1, 2, 3]), ints(&[1, 2, 3]));
    ok(&ids, json!([0]), ints(&[0]));
    err(&ids, json!([]), "must have at least 1 items");
    err(&ids, json!([1, 2, 3, 4]), "must have at most 3 items");
    err(&ids, json!([1, 2, 1.5]), "item 2: must be an integer");
    err(&ids, json!([1, -1]), "item 1: must be at least 0");
    err(&ids, json!([null]), "item 0: must not be null");
    err(&ids, json!(1), "must be an array (of int)");
    err(&ids, json!("1,2"), "must be an array (of int)");

    let tags = json!({ "type": "array<text>", "max_length": 2, "enum": ["a", "bb"] });
    ok(&tags, json!([]), ParamValue::Array(vec![]));
    ok(
        &tags,
        json!(["bb", "a"]),
        ParamValue::Array(vec![text("bb"), text("a")]),
    );
    err(
        &tags,
        json!(["a", "ccc"]),
        "item 1: must be at most 2 characters",
    );
    err(&tags, json!(["a", "b"]), "item 1: must be one of: a, bb");

    let big = json!({ "type": "array<bigint>" });
    let values = vec![
        ParamValue::Bigint(9_007_199_254_740_993),
        ParamValue::Bigint(1),
    ];
    ok(
        &big,
        json!(["9007199254740993", 1]),
        ParamValue::Array(values),
    );
    let too_many: Vec<i64> = (0..101).collect();
    err(&big, json!(too_many), "must have at most 100 items");
}

#[test]
fn presence_required_default_nullable() {
    let schema = compile(json!({
        "needed": { "type": "int", "required": true },
        "limit": { "type": "int", "default": 50 },
        "note": { "type": "text" },
        "maybe": { "type": "date", "nullable": true },
        "present": { "type": "text", "required": true, "nullable": true },
    }))
    .unwrap();
    let names: Vec<_> = schema.names().collect();
    assert_eq!(names, ["limit", "maybe", "needed", "note", "present"]);
    let validate = |input: Value| schema.validate(input.as_object().unwrap().clone());
    let slot = |name: &str| schema.slot(name).unwrap();

    let out = validate(json!({ "needed": 1, "maybe": null, "present": null })).unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[slot("needed")], ParamValue::Int(1));
    assert_eq!(out[slot("limit")], ParamValue::Int(50));
    assert_eq!(out[slot("note")], ParamValue::Null);
    assert_eq!(out[slot("maybe")], ParamValue::Null);
    assert_eq!(out[slot("present")], ParamValue::Null);
    let out = validate(json!({ "needed": 1, "limit": 5, "present": "x" })).unwrap();
    assert_eq!(out[slot("limit")], ParamValue::Int(5));

    let refused = |input: Value, param: &str, message: &str| {
        let e = validate(input.clone()).unwrap_err();
        assert_eq!(
            (e.param.as_str(), e.message.as_str()),
            (param, message),
            "{input}"
        );
    };
    refused(json!({ "present": "x" }), "needed", "is required");
    refused(json!({ "needed": 1 }), "present", "is required");
    let null_limit = json!({ "needed": 1, "present": "x", "limit": null });
    refused(null_limit, "limit", "must not be null");

    // Unknown keys come first, even when declared params are also wrong; a long key is
    // cut short.
    let unknown = "is not a declared param of this query";
    refused(json!({ "needed": "x", "limti": 5 }), "limti", unknown);
    let long_key = format!("{}...", "k".repeat(64));
    refused(json!({ "k".repeat(1000): 1 }), &long_key, unknown);
}

#[test]
fn messages_never_echo_the_value() {
    let secret = "s3cr3t-VALUE";
    let specs = [
        json!({ "type": "int" }),
        json!({ "type": "bigint" }),
        json!({ "type": "numeric" }),
        json!({ "type": "uuid" }),
        json!({ "type": "date" }),
        json!({ "type": "timestamp" }),
        json!({ "type": "text", "pattern": "[0-9]+" }),
        json!({ "type": "text", "enum": ["a"] }),
        json!({ "type": "text", "max_length": 3 }),
        json!({ "type": "identifier", "required": true, "enum": ["a"] }),
        json!({ "type": "array<int>" }),
    ];
    for spec in specs {
        for input in [json!(secret), json!([secret])] {
            let message = run(&spec, &input).unwrap_err();
            assert!(!message.contains(secret), "{spec}: `{message}`");
        }
    }
}

#[test]
fn bad_param_names() {
    for name in ["1abc", "a-b", "", "é", "a.b", &"a".repeat(65)] {
        let e = compile(json!({ name: { "type": "int" } })).unwrap_err();
        assert_eq!(e.param, name);
        assert!(e.message.contains("invalid param name"), "{e}");
    }
    assert!(compile(json!({ "a".repeat(64): { "type": "int" } })).is_ok());
    assert!(compile(json!({ "_Ab9": { "type": "int" } })).is_ok());
}

#[test]
fn bad_presence_and_defaults() {
    bad(
        json!({ "type": "int", "required": true, "default": 1 }),
        "both required and",
    );
    bad(
        json!({ "type": "int", "default": "1" }),
        "default: must be an integer",
    );
    bad(
        json!({ "type": "int", "default": 0, "min": 1 }),
        "default: must be at least 1",
    );
    bad(
        json!({ "type": "text", "default": "xyz", "enum": ["a"] }),
        "default: must be one",
    );
    let array = json!({ "type": "array<int>", "default": [1, 2], "max_items": 1 });
    bad(array, "default: must have at most 1 items");
}

#[test]
fn bad_bounds() {
    bad(
        json!({ "type": "int", "min": 1.5 }),
        "min: must be an integer",
    );
    bad(
        json!({ "type": "int", "max": 3_000_000_000_i64 }),
        "max: must be an integer between",
    );
    bad(
        json!({ "type": "int", "min": 5, "max": 4 }),
        "min must not be greater than max",
    );
    bad(
        json!({ "type": "numeric", "min": "0.2", "max": "0.10" }),
        "min must not be greater",
    );
    bad(
        json!({ "type": "date", "min": "2024-02-30" }),
        "min: must be a date",
    );
    let days = json!({ "type": "date", "min": "2024-02-02", "max": "2024-02-01" });
    bad(days, "min must not be greater than max");
    bad(
        json!({ "type": "text", "min": 1 }),
        "min does not apply to text",
    );
    bad(
        json!({ "type": "bool", "max": 1 }),
        "max does not apply to bool",
    );
}

#[test]
fn bad_text_and_array_options() {
    bad(
        json!({ "type": "int", "max_length": 3 }),
        "max_length applies only to text",
    );
    bad(
        json!({ "type": "text", "max_length": 0 }),
        "max_length must be at least 1",
    );
    bad(
        json!({ "type": "text", "max_length": 1_048_577 }),
        "must be at most 1048576",
    );
    bad(
        json!({ "type": "int", "pattern": "[0-9]" }),
        "pattern applies only to text",
    );
    bad(
        json!({ "type": "text", "pattern": "(" }),
        "pattern does not compile",
    );
    // Would escape the anchors if it were only wrapped in a group.
    bad(
        json!({ "type": "text", "pattern": "a)|(b" }),
        "pattern does not compile",
    );
    bad(
        json!({ "type": "int", "max_items": 3 }),
        "apply only to arrays",
    );
    bad(
        json!({ "type": "array<int>", "max_items": 10_001 }),
        "must be at most 10000",
    );
    bad(
        json!({ "type": "array<int>", "max_items": 0 }),
        "max_items must be at least 1",
    );
    let items = json!({ "type": "array<int>", "min_items": 5, "max_items": 4 });
    bad(
        items,
        "min_items (5) must not be greater than max_items (4)",
    );
    bad(
        json!({ "type": "array<int>", "min_items": 101 }),
        "max_items (100)",
    );
}

#[test]
fn bad_enums() {
    bad(
        json!({ "type": "text", "enum": [] }),
        "enum must not be empty",
    );
    bad(
        json!({ "type": "int", "enum": [1, "2"] }),
        "enum item 1: must be an integer",
    );
    bad(
        json!({ "type": "int", "enum": [null] }),
        "enum item 0: must not be null",
    );
    bad(
        json!({ "type": "int", "min": 0, "enum": [-1] }),
        "enum item 0: must be at least 0",
    );
    let pattern = json!({ "type": "text", "pattern": "[a-z]+", "enum": ["A"] });
    bad(pattern, "enum item 0: does not match");
}

#[test]
fn bad_identifiers_and_keywords() {
    let column =
        |allowed: Value| json!({ "type": "identifier", "required": true, "enum": allowed });
    bad(
        json!({ "type": "identifier", "required": true }),
        "need a non-empty enum",
    );
    bad(column(json!([])), "enum must not be empty");
    bad(column(json!(["a b"])), "enum item 0: not an identifier");
    bad(
        column(json!(["a", "a..b"])),
        "enum item 1: not an identifier",
    );
    for name in ["a.", ".a", "1a", "a-b", "", &"a".repeat(64)] {
        bad(column(json!([name])), "not an identifier");
    }
    bad(column(json!([1])), "not an identifier");
    let nullable = json!({ "type": "identifier", "nullable": true, "enum": ["a"] });
    bad(nullable, "cannot be nullable");
    bad(
        json!({ "type": "identifier", "enum": ["a"] }),
        "must be required or have a default",
    );
    let default = json!({ "type": "identifier", "default": "b", "enum": ["a"] });
    bad(default, "default: must be one of: a");
    let length = json!({ "type": "identifier", "default": "a", "enum": ["a"], "max_length": 3 });
    bad(length, "max_length applies only to text");

    let order = |allowed: Value| json!({ "type": "keyword", "required": true, "enum": allowed });
    bad(
        json!({ "type": "keyword", "required": true }),
        "need a non-empty enum",
    );
    bad(order(json!(["UP"])), "enum item 0: not a keyword");
    bad(order(json!(["nulls  first"])), "not a keyword");
    let nullable =
        json!({ "type": "keyword", "default": "asc", "nullable": true, "enum": ["asc"] });
    bad(nullable, "cannot be nullable");

    // YAML cannot spell an array of identifiers, but code can build one.
    let mut spec: ParamSpec = serde_json::from_value(column(json!(["a"]))).unwrap();
    spec.ty = ParamType::Array(ScalarType::Identifier);
    let e = ParamSchema::compile(&BTreeMap::from([("p".to_string(), spec)])).unwrap_err();
    assert!(
        e.message.contains("array<identifier> is not supported"),
        "{e}"
    );
}

#[test]
fn good_declarations() {
    let specs = [
        json!({ "type": "text", "max_length": 1_048_576, "pattern": "[a-z]*" }),
        json!({ "type": "array<int>", "max_items": 10_000, "min_items": 10_000 }),
        json!({ "type": "numeric", "min": 0, "max": "1e3", "default": "5.5" }),
        json!({
            "type": "timestamp", "min": "2024-01-01T00:00:00Z", "max": "2024-01-01 00:00:00"
        }),
        json!({ "type": "int", "nullable": true, "default": null }),
        json!({ "type": "json", "default": { "a": 1 } }),
        json!({ "type": "keyword", "required": true, "enum": KEYWORDS }),
        json!({ "type": "identifier", "default": "public.t", "enum": ["public.t", "_x9"] }),
    ];
    for spec in specs {
        let compiled = compile(json!({ "p": spec }));
        assert!(compiled.is_ok(), "{spec}: {:?}", compiled.err());
    }
}
