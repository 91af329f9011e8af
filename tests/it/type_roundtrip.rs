//! Type round-trips through the gateway on real PostgreSQL, MariaDB and SQLite.
//!
//! Params: every declared param type (`text`, `int`, `bigint`, `float`, `numeric`, `bool`,
//! `uuid`, `date`, `timestamp`, `json`, `array<T>`, `identifier`, `keyword`) is bound into
//! columns of its natural types with boundary values, read back through the gateway and with
//! the admin client, and the exact JSON and stored text are asserted; values that do not fit
//! are refused as documented. Columns: every common column type is read with known values
//! (and as NULL) and compared with the lossless JSON mapping and the `columns` type names of
//! `docs/API.md` ("Result types", "Params").
//!
//! Each test gathers every mismatch (database, type, input, what came back, what was wanted)
//! and fails once at the end listing them all, so one run shows every broken mapping.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};
use sluice::spec::CatalogSpec;

/// The one app of every test catalog.
const APP: &str = "types";

const EMOJI: &str = "😀👍🏽 family 👨\u{200d}👩\u{200d}👧";
const RTL: &str = "שלום مرحبا \u{202b}embedded\u{202c}";
const COMBINING: &str = "e\u{301}a\u{308}\u{332} Z\u{335}";
const QUOTES: &str = "it's \"quoted\" \\ back\\slash\nnew line\ttab";
const UUID_UPPER: &str = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
const UUID_LOWER: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const BIG_DECIMAL: &str = "123456789012345678901234567890.1234567890";
/// Differs from [`BIG_DECIMAL`] only in the 40th digit: equal as doubles, not as decimals.
const BIG_DECIMAL_NEAR: &str = "123456789012345678901234567890.1234567891";
/// An offset timestamp with microseconds, and the same instant in UTC.
const TS_OFFSET: &str = "2024-02-29T23:30:00.123456+05:30";
const TS_OFFSET_UTC: &str = "2024-02-29T18:00:00.123456";

/// A nested JSON document with unicode and numbers of every shape.
fn json_doc() -> Value {
    json!({
        "name": "Zoë 😀 שלום",
        "nums": [0, -1, 2.5, 1e-7, 9007199254740993u64, -9223372036854775808i64],
        "nested": {"deep": [{"x": null, "t": true, "f": false}], "empty": {}},
        "list": [],
        "escapes": "quote \" backslash \\ newline \n tab \t"
    })
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// Mismatches gathered across one test, reported together at the end.
struct Report {
    database: &'static str,
    checks: usize,
    failures: Vec<String>,
}

/// JSON equality with numbers compared as exact decimals.
fn same_value(a: &Value, b: &Value) -> bool {
    use sluice::catalog::params::{cmp_decimal, normalize_decimal};
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (
                normalize_decimal(&x.to_string()),
                normalize_decimal(&y.to_string()),
            ) {
                (Ok(x), Ok(y)) => cmp_decimal(&x, &y) == std::cmp::Ordering::Equal,
                _ => x == y,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => a == b,
    }
}

impl Report {
    fn new(database: &'static str) -> Report {
        Report {
            database,
            checks: 0,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, what: &str, detail: String) {
        self.failures.push(format!("{what}: {detail}"));
    }

    /// `got` must equal `want`; numbers compare by exact decimal value (serde_json keeps
    /// their digits, so `2.50` and `2.5`, or `1e-7` and `0.0000001`, are the same number).
    fn same(&mut self, what: &str, got: &Value, want: &Value) {
        self.checks += 1;
        if !same_value(got, want) {
            self.fail(what, format!("got {}, want {}", shown(got), shown(want)));
        }
    }

    fn same_text(&mut self, what: &str, got: Option<&str>, want: Option<&str>) {
        self.checks += 1;
        if got != want {
            let show = |text: Option<&str>| shown(&json!(text));
            self.fail(what, format!("got {}, want {}", show(got), show(want)));
        }
    }

    /// Panics listing every mismatch, if there was any.
    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} type round-trip checks failed on {}:\n- {}",
            self.failures.len(),
            self.checks,
            self.database,
            self.failures.join("\n- ")
        );
    }
}

/// A value as JSON text, cut short when long so that a failure list stays readable.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}... ({} characters)", &text[..cut], text.chars().count()),
        None => text,
    }
}

/// Calls a query that must succeed; records the failure and returns `None` otherwise.
async fn call_ok(
    gateway: &TestGateway,
    report: &mut Report,
    what: &str,
    query: &str,
    params: Value,
) -> Option<Value> {
    let (status, body) = gateway.call(APP, query, params).await;
    report.checks += 1;
    if status != 200 || body.get("error").is_some() {
        report.fail(what, format!("status {status}, body {}", shown(&body)));
        return None;
    }
    Some(body)
}

/// Calls a query that must be refused with `status` and `code`, with a message containing
/// every fragment of `fragments` and not the value sent; an `invalid_params` refusal must name
/// the param `v`.
#[allow(clippy::too_many_arguments)]
async fn call_refused(
    gateway: &TestGateway,
    report: &mut Report,
    what: &str,
    query: &str,
    params: Value,
    status: u16,
    code: &str,
    fragments: &[&str],
) {
    let (got, body) = gateway.call(APP, query, params.clone()).await;
    report.checks += 1;
    if got != status || body["error"]["code"] != code {
        report.fail(
            what,
            format!("got status {got}, body {body}; want status {status}, code {code}"),
        );
        return;
    }
    // An invalid_params error names the param at fault (docs/API.md, "Errors").
    if code == "invalid_params" && body["error"]["param"] != "v" {
        report.fail(what, format!("`param` is not \"v\": {}", shown(&body)));
    }
    let message = body["error"]["message"].as_str().unwrap_or_default();
    for fragment in fragments {
        if !message.contains(fragment) {
            report.fail(what, format!("message {message:?} lacks {fragment:?}"));
        }
    }
    if let Some(Value::String(sent)) = params.get("v")
        && sent.len() > 3
        && message.contains(sent.as_str())
    {
        report.fail(what, format!("message {message:?} repeats the value sent"));
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogs

/// A catalog with the datasource of `datasource_yaml` and one public app holding `queries`.
fn catalog(datasource_yaml: &str, queries: BTreeMap<String, Value>) -> CatalogSpec {
    let mut spec = sluice::spec::yaml::parse(&format!("datasources:\n{datasource_yaml}"))
        .unwrap_or_else(|e| panic!("datasource YAML: {e}"));
    spec.apps = serde_json::from_value(json!({
        "types": {"visibility": "public", "grants": {"anonymous": true}, "queries": queries}
    }))
    .unwrap_or_else(|e| panic!("test queries: {e}"));
    spec
}

fn query(datasource: &str, sql: String, params: Value) -> Value {
    json!({"datasource": datasource, "sql": sql, "params": params})
}

fn sanitize(ty: &str) -> String {
    ty.replace(['<', '>'], "_")
}

fn put_name(column: &str, ty: &str) -> String {
    format!("put_{column}_{}", sanitize(ty))
}

fn get_name(column: &str) -> String {
    format!("get_{column}")
}

fn find_name(column: &str, ty: &str) -> String {
    format!("find_{column}_{}", sanitize(ty))
}

/// A column of the params table `p`: name, DDL type, and the `columns` type name the gateway
/// must report for it (`None`: not asserted).
struct Column {
    name: &'static str,
    ddl: &'static str,
    label: Option<&'static str>,
}

const fn column(name: &'static str, ddl: &'static str, label: Option<&'static str>) -> Column {
    Column { name, ddl, label }
}

fn ddl_of<'a>(columns: &'a [Column], name: &str) -> &'a Column {
    columns
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name} in the params table"))
}

/// One value bound through a declared param, stored, and read back.
struct Case {
    column: &'static str,
    ty: &'static str,
    input: Value,
    /// The column's JSON through the gateway.
    want: Value,
    stored: Stored,
}

/// The stored value as the admin client reads it.
enum Stored {
    /// The database's own text: `col::text` (PostgreSQL, TimeZone UTC), `CAST(col AS CHAR)`
    /// (MariaDB, time_zone +00:00), `quote(col)` (SQLite).
    Text(String),
    /// Read as JSON text and compared as a JSON value.
    Json(Value),
}

fn case(column: &'static str, ty: &'static str, input: Value, want: Value, stored: &str) -> Case {
    Case {
        column,
        ty,
        input,
        want,
        stored: Stored::Text(stored.to_string()),
    }
}

/// A JSON value stored in a JSON column and read back as itself.
fn json_case(column: &'static str, ty: &'static str, input: Value) -> Case {
    Case {
        column,
        ty,
        want: input.clone(),
        stored: Stored::Json(input.clone()),
        input,
    }
}

/// A value the gateway must refuse when binding it into `column`.
struct Refusal {
    column: &'static str,
    ty: &'static str,
    input: Value,
    status: u16,
    code: &'static str,
    fragments: &'static [&'static str],
}

fn refusal(
    column: &'static str,
    ty: &'static str,
    input: Value,
    code: &'static str,
    fragments: &'static [&'static str],
) -> Refusal {
    Refusal {
        column,
        ty,
        input,
        status: 400,
        code,
        fragments,
    }
}

/// An `array<T>` param used to select rows of `p` whose `column` is among the items.
struct Find {
    column: &'static str,
    /// The scalar param type whose cases supply the items.
    item: &'static str,
}

/// The put/get/find queries of a params table, SQL per dialect.
fn param_queries(
    datasource: &str,
    cases: &[Case],
    refusals: &[Refusal],
    finds: &[Find],
    put_sql: &dyn Fn(&str) -> String,
    get_sql: &dyn Fn(&str) -> String,
    find_sql: &dyn Fn(&str) -> String,
) -> BTreeMap<String, Value> {
    let mut queries = BTreeMap::new();
    let puts = cases
        .iter()
        .map(|c| (c.column, c.ty))
        .chain(refusals.iter().map(|r| (r.column, r.ty)));
    for (column, ty) in puts {
        queries.insert(
            put_name(column, ty),
            query(
                datasource,
                put_sql(column),
                json!({"id": {"type": "int", "required": true},
                       "v": {"type": ty, "required": true}}),
            ),
        );
        queries.insert(
            get_name(column),
            query(
                datasource,
                get_sql(column),
                json!({"id": {"type": "int", "required": true}}),
            ),
        );
    }
    for find in finds {
        let ty = format!("array<{}>", find.item);
        queries.insert(
            find_name(find.column, &ty),
            query(
                datasource,
                find_sql(find.column),
                json!({"v": {"type": ty, "required": true}}),
            ),
        );
    }
    queries
}

// ---------------------------------------------------------------------------------------------
// Admin clients

/// The admin client of one database, reading table `p` directly.
enum Admin<'a> {
    Pg {
        client: &'a tokio_postgres::Client,
        schema: &'a str,
    },
    My {
        conn: &'a mut mysql_async::Conn,
        database: &'a str,
    },
    Lite {
        path: &'a Path,
    },
}

impl Admin<'_> {
    /// The stored value of `column` in row `id` of `p`, in the database's own text form.
    async fn stored_text(&mut self, column: &str, id: i32) -> Option<String> {
        match self {
            Admin::Pg { client, schema } => client
                .query_one(
                    &format!("SELECT {column}::text FROM {schema}.p WHERE id = $1"),
                    &[&id],
                )
                .await
                .unwrap_or_else(|e| panic!("admin read of {column}: {e}"))
                .get(0),
            Admin::My { conn, database } => conn
                .exec_first::<Option<String>, _, _>(
                    format!("SELECT CAST({column} AS CHAR) FROM {database}.p WHERE id = ?"),
                    (id,),
                )
                .await
                .unwrap_or_else(|e| panic!("admin read of {column}: {e}"))
                .flatten(),
            Admin::Lite { path } => rusqlite::Connection::open(path)
                .expect("open the SQLite file")
                .query_row(
                    &format!("SELECT quote({column}) FROM p WHERE id = ?1"),
                    [id],
                    |row| row.get(0),
                )
                .unwrap_or_else(|e| panic!("admin read of {column}: {e}")),
        }
    }

    /// The stored value of `column` in row `id` of `p`, read as JSON text.
    async fn stored_json(&mut self, column: &str, id: i32) -> Option<Value> {
        let text = match self {
            Admin::Pg { .. } | Admin::My { .. } => {
                let expression = match self {
                    Admin::Pg { .. } => format!("to_json({column})"),
                    _ => column.to_string(),
                };
                self.stored_text(&expression, id).await
            }
            Admin::Lite { path } => rusqlite::Connection::open(path)
                .expect("open the SQLite file")
                .query_row(
                    &format!("SELECT {column} FROM p WHERE id = ?1"),
                    [id],
                    |row| row.get(0),
                )
                .unwrap_or_else(|e| panic!("admin read of {column}: {e}")),
        };
        text.map(|text| {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("stored {column} is not JSON ({e}): {text}"))
        })
    }
}

/// Binds every case through `put_*`, reads it back through `get_*` and with the admin client.
/// With `returning`, the put statement returns the stored column too (PostgreSQL). Returns
/// which cases were stored.
async fn check_param_cases(
    gateway: &TestGateway,
    admin: &mut Admin<'_>,
    columns: &[Column],
    cases: &[Case],
    returning: bool,
    report: &mut Report,
) -> Vec<bool> {
    let db = report.database;
    let mut stored = Vec::with_capacity(cases.len());
    for (index, case) in cases.iter().enumerate() {
        let id = i32::try_from(index + 1).expect("few cases");
        let column = ddl_of(columns, case.column);
        let what = format!(
            "{db} param `{}` {} into {} {}",
            case.ty,
            shown(&case.input),
            column.ddl,
            column.name
        );
        let put = call_ok(
            gateway,
            report,
            &format!("{what} (insert)"),
            &put_name(case.column, case.ty),
            json!({"id": id, "v": case.input}),
        )
        .await;
        let Some(put) = put else {
            stored.push(false);
            continue;
        };
        stored.push(true);
        if returning {
            report.same(
                &format!("{what} (RETURNING)"),
                &put["rows"],
                &json!([[case.want]]),
            );
        } else {
            report.same(
                &format!("{what} (rows_affected)"),
                &put["rows_affected"],
                &json!(1),
            );
        }
        if let Some(got) = call_ok(
            gateway,
            report,
            &format!("{what} (select)"),
            &get_name(case.column),
            json!({"id": id}),
        )
        .await
        {
            report.same(
                &format!("{what} (select)"),
                &got["rows"],
                &json!([[case.want]]),
            );
            if let Some(label) = column.label {
                report.same(
                    &format!("{what} (columns)"),
                    &got["columns"],
                    &json!([{"name": column.name, "type": label}]),
                );
            }
        }
        match &case.stored {
            Stored::Text(want) => {
                let got = admin.stored_text(case.column, id).await;
                report.same_text(
                    &format!("{what} (admin read)"),
                    got.as_deref(),
                    Some(want.as_str()),
                );
            }
            Stored::Json(want) => {
                let got = admin.stored_json(case.column, id).await;
                report.same(
                    &format!("{what} (admin read as JSON)"),
                    &got.unwrap_or(Value::Null),
                    want,
                );
            }
        }
    }
    stored
}

async fn check_refusals(gateway: &TestGateway, refusals: &[Refusal], report: &mut Report) {
    let db = report.database;
    for (index, refused) in refusals.iter().enumerate() {
        // Ids past the cases': a wrongly accepted value must not collide with a stored row.
        let id = 10_000 + i32::try_from(index).expect("few refusals");
        call_refused(
            gateway,
            report,
            &format!(
                "{db} param `{}` {} into column {} must be refused",
                refused.ty,
                shown(&refused.input),
                refused.column
            ),
            &put_name(refused.column, refused.ty),
            json!({"id": id, "v": refused.input}),
            refused.status,
            refused.code,
            refused.fragments,
        )
        .await;
    }
}

/// Each `find` selects by an array of the inputs of its cases; the rows are the stored cases
/// of that column with one of those values.
async fn check_finds(
    gateway: &TestGateway,
    cases: &[Case],
    stored: &[bool],
    finds: &[Find],
    report: &mut Report,
) {
    let db = report.database;
    for find in finds {
        let ty = format!("array<{}>", find.item);
        let chosen: Vec<&Case> = cases
            .iter()
            .filter(|c| c.column == find.column && c.ty == find.item)
            .collect();
        let items: Vec<Value> = chosen.iter().map(|c| c.input.clone()).collect();
        let wants: Vec<&Value> = chosen.iter().map(|c| &c.want).collect();
        let ids: Vec<Value> = cases
            .iter()
            .zip(stored)
            .enumerate()
            .filter(|(_, (c, stored))| {
                **stored && c.column == find.column && wants.contains(&&c.want)
            })
            .map(|(index, _)| json!([index + 1]))
            .collect();
        let what = format!(
            "{db} param `{ty}` {} selecting {}",
            json!(items),
            find.column
        );
        if let Some(body) = call_ok(
            gateway,
            report,
            &what,
            &find_name(find.column, &ty),
            json!({"v": items}),
        )
        .await
        {
            report.same(&what, &body["rows"], &Value::Array(ids));
        }
    }
}

/// Values that differ from stored ones only past a double's precision must not match.
async fn check_near_misses(
    gateway: &TestGateway,
    near: &[(&'static str, &'static str, Value)],
    report: &mut Report,
) {
    let db = report.database;
    for (column, item, value) in near {
        let ty = format!("array<{item}>");
        let what = format!("{db} param `{ty}` [{value}] (a near miss) selecting {column}");
        if let Some(body) = call_ok(
            gateway,
            report,
            &what,
            &find_name(column, &ty),
            json!({"v": [value]}),
        )
        .await
        {
            report.same(&what, &body["rows"], &json!([]));
        }
    }
}

/// A result column read with known values: (name, the SQL producing it, type name, JSON).
struct Cell {
    name: &'static str,
    sql: String,
    label: String,
    want: Value,
}

fn cell(name: &'static str, sql: impl Into<String>, label: &str, want: Value) -> Cell {
    Cell {
        name,
        sql: sql.into(),
        label: label.to_string(),
        want,
    }
}

/// Checks one row of `body` against `cells` (values, or `null` for each with `nulls`), and
/// the `columns` names and types.
fn check_cells(report: &mut Report, what: &str, body: &Value, cells: &[Cell], nulls: bool) {
    let db = report.database;
    let row = &body["rows"][0];
    report.same(&format!("{what}: row_count"), &body["row_count"], &json!(1));
    for (index, cell) in cells.iter().enumerate() {
        let want = if nulls {
            Value::Null
        } else {
            cell.want.clone()
        };
        report.same(
            &format!("{db} {} column `{}` = {}", cell.label, cell.name, cell.sql),
            &row[index],
            &want,
        );
        report.same(
            &format!("{db} `columns` entry of `{}` ({})", cell.name, cell.sql),
            &body["columns"][index],
            &json!({"name": cell.name, "type": cell.label}),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const PG_COLUMNS: &[Column] = &[
    column("t", "text", Some("text")),
    column("vc", "varchar(20)", Some("varchar")),
    column("m", "mood", Some("mood")),
    column("i2", "int2", Some("int2")),
    column("i4", "int4", Some("int4")),
    column("i8", "int8", Some("int8")),
    column("f4", "float4", Some("float4")),
    column("f8", "float8", Some("float8")),
    column("n", "numeric(40,10)", Some("numeric")),
    column("nu", "numeric", Some("numeric")),
    column("b", "bool", Some("bool")),
    column("u", "uuid", Some("uuid")),
    column("d", "date", Some("date")),
    column("tstz", "timestamptz", Some("timestamptz")),
    column("ts", "timestamp", Some("timestamp")),
    column("jb", "jsonb", Some("jsonb")),
    column("j", "json", Some("json")),
    column("a_i4", "int4[]", Some("int4[]")),
    column("a_i8", "int8[]", Some("int8[]")),
    column("a_t", "text[]", Some("text[]")),
    column("a_n", "numeric[]", Some("numeric[]")),
    column("a_f8", "float8[]", Some("float8[]")),
    column("a_b", "bool[]", Some("bool[]")),
    column("a_u", "uuid[]", Some("uuid[]")),
    column("a_d", "date[]", Some("date[]")),
    column("a_tstz", "timestamptz[]", Some("timestamptz[]")),
    column("a_jb", "jsonb[]", Some("jsonb[]")),
];

#[rustfmt::skip]
fn pg_cases() -> Vec<Case> {
    let text_cases = ["", "plain ascii", EMOJI, RTL, COMBINING, QUOTES]
        .into_iter()
        .map(|s| case("t", "text", json!(s), json!(s), s));
    let mut cases: Vec<Case> = text_cases.collect();
    cases.extend([
        case("t", "uuid", json!(UUID_UPPER), json!(UUID_LOWER), UUID_LOWER),
        case("vc", "text", json!("vär"), json!("vär"), "vär"),
        case("m", "text", json!("sad"), json!("sad"), "sad"),
        // int
        case("i4", "int", json!(i32::MIN), json!(i32::MIN), "-2147483648"),
        case("i4", "int", json!(i32::MAX), json!(i32::MAX), "2147483647"),
        case("i4", "int", json!(0), json!(0), "0"),
        case("i2", "int", json!(32767), json!(32767), "32767"),
        case("i2", "int", json!(-32768), json!(-32768), "-32768"),
        // An int param into int8 widens.
        case("i8", "int", json!(i32::MAX), json!("2147483647"), "2147483647"),
        case("i8", "int", json!(i32::MIN), json!("-2147483648"), "-2147483648"),
        // bigint: strings past 2^53, and JSON integers that serde reads exactly.
        case("i8", "bigint", json!("9223372036854775807"), json!("9223372036854775807"), "9223372036854775807"),
        case("i8", "bigint", json!("-9223372036854775808"), json!("-9223372036854775808"), "-9223372036854775808"),
        case("i8", "bigint", json!("9007199254740993"), json!("9007199254740993"), "9007199254740993"),
        case("i8", "bigint", json!(i64::MAX), json!("9223372036854775807"), "9223372036854775807"),
        case("i8", "bigint", json!(-1), json!("-1"), "-1"),
        // A bigint param into int4 narrows when the value fits.
        case("i4", "bigint", json!("2147483647"), json!(2147483647), "2147483647"),
        // A bigint into float8 is exact up to 2^53.
        case("f8", "bigint", json!("9007199254740992"), json!(9007199254740992.0), "9.007199254740992e+15"),
        // float
        case("f8", "float", json!(0.1), json!(0.1), "0.1"),
        case("f8", "float", json!(1e300), json!(1e300), "1e+300"),
        case("f8", "float", json!(-2.5), json!(-2.5), "-2.5"),
        case("f8", "float", json!(5e-324), json!(5e-324), "5e-324"),
        case("f8", "float", json!(3), json!(3.0), "3"),
        case("f4", "float", json!(0.1), json!(0.1), "0.1"),
        case("n", "float", json!(0.1), json!("0.1000000000"), "0.1000000000"),
        // numeric: exact, with the column's scale.
        case("n", "numeric", json!(BIG_DECIMAL), json!(BIG_DECIMAL), BIG_DECIMAL),
        case("n", "numeric", json!("1.50"), json!("1.5000000000"), "1.5000000000"),
        case("n", "numeric", json!("-0.0000000001"), json!("-0.0000000001"), "-0.0000000001"),
        case("n", "numeric", json!(12.5), json!("12.5000000000"), "12.5000000000"),
        case("n", "numeric", json!("1e-3"), json!("0.0010000000"), "0.0010000000"),
        case("n", "numeric", json!("-999999999999999999999999999999.9999999999"), json!("-999999999999999999999999999999.9999999999"), "-999999999999999999999999999999.9999999999"),
        case("n", "numeric", json!("0"), json!("0.0000000000"), "0.0000000000"),
        // Unconstrained numeric keeps the scale sent, trailing zeros included.
        case("nu", "numeric", json!("12.500"), json!("12.500"), "12.500"),
        case("nu", "numeric", json!("-123456789012345678901234567890123.000100"), json!("-123456789012345678901234567890123.000100"), "-123456789012345678901234567890123.000100"),
        case("nu", "numeric", json!("0.000000000000000000001"), json!("0.000000000000000000001"), "0.000000000000000000001"),
        case("nu", "numeric", json!("1E+5"), json!("100000"), "100000"),
        case("f8", "numeric", json!("0.1"), json!(0.1), "0.1"),
        case("i8", "numeric", json!("9223372036854775806"), json!("9223372036854775806"), "9223372036854775806"),
        // bool, uuid, date
        case("b", "bool", json!(true), json!(true), "true"),
        case("b", "bool", json!(false), json!(false), "false"),
        case("u", "uuid", json!(UUID_UPPER), json!(UUID_LOWER), UUID_LOWER),
        case("u", "uuid", json!("00000000-0000-0000-0000-000000000000"), json!("00000000-0000-0000-0000-000000000000"), "00000000-0000-0000-0000-000000000000"),
        case("u", "uuid", json!("a0eebc999c0b4ef8bb6d6bb9bd380a12"), json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"),
        case("d", "date", json!("2024-02-29"), json!("2024-02-29"), "2024-02-29"),
        case("d", "date", json!("0001-01-01"), json!("0001-01-01"), "0001-01-01"),
        case("d", "date", json!("9999-12-31"), json!("9999-12-31"), "9999-12-31"),
        case("d", "date", json!("1970-01-01"), json!("1970-01-01"), "1970-01-01"),
        // timestamp into timestamptz: converted to UTC, shown with Z.
        case("tstz", "timestamp", json!(TS_OFFSET), json!(format!("{TS_OFFSET_UTC}Z")), "2024-02-29 18:00:00.123456+00"),
        case("tstz", "timestamp", json!("2024-01-01T00:00:00-08:00"), json!("2024-01-01T08:00:00Z"), "2024-01-01 08:00:00+00"),
        case("tstz", "timestamp", json!("2024-06-01 12:00:00"), json!("2024-06-01T12:00:00Z"), "2024-06-01 12:00:00+00"),
        case("tstz", "timestamp", json!("1999-12-31T23:59:59.000001Z"), json!("1999-12-31T23:59:59.000001Z"), "1999-12-31 23:59:59.000001+00"),
        // docs/API.md: "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", six fraction digits.
        case("tstz", "timestamp", json!("2024-03-10T02:30:00.5Z"), json!("2024-03-10T02:30:00.500000Z"), "2024-03-10 02:30:00.5+00"),
        // timestamp into timestamp (no zone): the UTC wall clock.
        case("ts", "timestamp", json!(TS_OFFSET), json!(TS_OFFSET_UTC), "2024-02-29 18:00:00.123456"),
        case("ts", "timestamp", json!("0001-01-01T00:00:00Z"), json!("0001-01-01T00:00:00"), "0001-01-01 00:00:00"),
        case("ts", "timestamp", json!("9999-12-31T23:59:59.999999Z"), json!("9999-12-31T23:59:59.999999"), "9999-12-31 23:59:59.999999"),
        // json into jsonb and json
        json_case("jb", "json", json_doc()),
        json_case("jb", "json", json!("just a string")),
        json_case("jb", "json", json!(12345)),
        json_case("jb", "json", json!([1, "two", null, {"three": [3]}])),
        json_case("j", "json", json_doc()),
        json_case("j", "json", json!(true)),
        // arrays
        case("a_i4", "array<int>", json!([i32::MIN, 0, i32::MAX]), json!([i32::MIN, 0, i32::MAX]), "{-2147483648,0,2147483647}"),
        case("a_i4", "array<int>", json!([]), json!([]), "{}"),
        case("a_i8", "array<bigint>", json!(["9223372036854775807", -5, "9007199254740993"]), json!(["9223372036854775807", "-5", "9007199254740993"]), "{9223372036854775807,-5,9007199254740993}"),
        case("a_t", "array<text>", json!(["a", "", "😀", "with,comma", "quote\"", "NULL", "e\u{301}"]), json!(["a", "", "😀", "with,comma", "quote\"", "NULL", "e\u{301}"]), "{a,\"\",😀,\"with,comma\",\"quote\\\"\",\"NULL\",e\u{301}}"),
        case("a_n", "array<numeric>", json!(["1.50", -2, "1e-3"]), json!(["1.50", "-2", "0.001"]), "{1.50,-2,0.001}"),
        case("a_f8", "array<float>", json!([0.1, 1e300, -2.5]), json!([0.1, 1e300, -2.5]), "{0.1,1e+300,-2.5}"),
        case("a_b", "array<bool>", json!([true, false]), json!([true, false]), "{t,f}"),
        case("a_u", "array<uuid>", json!([UUID_UPPER]), json!([UUID_LOWER]), "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"),
        case("a_d", "array<date>", json!(["2024-02-29", "0001-01-01"]), json!(["2024-02-29", "0001-01-01"]), "{2024-02-29,0001-01-01}"),
        case("a_tstz", "array<timestamp>", json!([TS_OFFSET, "1999-12-31T23:59:59Z"]), json!([format!("{TS_OFFSET_UTC}Z"), "1999-12-31T23:59:59Z"]), "{\"2024-02-29 18:00:00.123456+00\",\"1999-12-31 23:59:59+00\"}"),
        json_case("a_jb", "array<json>", json!([{"a": 1}, [1, 2], "s", {"ü": 2.5}])),
    ]);
    cases
}

#[rustfmt::skip]
fn pg_refusals() -> Vec<Refusal> {
    vec![
        // docs/API.md: "a value the database's parameter type cannot take" is invalid_params,
        // naming the param and the database type (never the value).
        refusal("i4", "bigint", json!("2147483648"), "invalid_params", &["param `v`", "int4"]),
        refusal("i4", "bigint", json!("-2147483649"), "invalid_params", &["param `v`", "int4"]),
        refusal("i2", "int", json!(32768), "invalid_params", &["param `v`", "int2"]),
        refusal("f8", "bigint", json!("9007199254740993"), "invalid_params", &["param `v`", "float8"]),
        refusal("i8", "float", json!(1.5), "invalid_params", &["param `v`", "int8"]),
        refusal("i8", "numeric", json!("1.5"), "invalid_params", &["param `v`", "int8"]),
        refusal("i4", "text", json!("abc"), "invalid_params", &["param `v`", "int4"]),
        refusal("t", "json", json!({"a": 1}), "invalid_params", &["param `v`", "text"]),
        // The database itself refuses a value too large for numeric(40,10).
        refusal("n", "numeric", json!("123456789012345678901234567890123.5"), "invalid_data", &[]),
    ]
}

const PG_FINDS: &[Find] = &[
    Find {
        column: "t",
        item: "text",
    },
    Find {
        column: "i4",
        item: "int",
    },
    Find {
        column: "i8",
        item: "bigint",
    },
    Find {
        column: "f8",
        item: "float",
    },
    Find {
        column: "n",
        item: "numeric",
    },
    Find {
        column: "u",
        item: "uuid",
    },
    Find {
        column: "d",
        item: "date",
    },
    Find {
        column: "tstz",
        item: "timestamp",
    },
    Find {
        column: "b",
        item: "bool",
    },
];

/// The column-type cells of the PostgreSQL `SELECT`; `schema` holds the `mood` enum and
/// `citext` names the schema of the citext extension, when it exists.
#[rustfmt::skip]
fn pg_cells(schema: &str, citext: Option<&str>) -> Vec<Cell> {
    let mut cells = vec![
        cell("bool_t", "true", "bool", json!(true)),
        cell("bool_f", "false", "bool", json!(false)),
        cell("int2_min", "(-32768)::int2", "int2", json!(-32768)),
        cell("int2_max", "32767::int2", "int2", json!(32767)),
        cell("int4_min", "(-2147483648)::int4", "int4", json!(i32::MIN)),
        cell("int4_max", "2147483647::int4", "int4", json!(i32::MAX)),
        cell("int8_max", "9223372036854775807::int8", "int8", json!("9223372036854775807")),
        cell("int8_min", "(-9223372036854775808)::int8", "int8", json!("-9223372036854775808")),
        cell("int8_2p53", "9007199254740993::int8", "int8", json!("9007199254740993")),
        cell("oid_max", "4294967295::oid", "oid", json!(4294967295u32)),
        cell("float4_tenth", "0.1::float4", "float4", json!(0.1)),
        cell("float4_nan", "'NaN'::float4", "float4", json!("NaN")),
        cell("float4_neg_inf", "'-Infinity'::float4", "float4", json!("-Infinity")),
        cell("float8_tenth", "0.1::float8", "float8", json!(0.1)),
        cell("float8_big", "1e300::float8", "float8", json!(1e300)),
        cell("float8_tiny", "'5e-324'::float8", "float8", json!(5e-324)),
        cell("float8_nan", "'NaN'::float8", "float8", json!("NaN")),
        cell("float8_inf", "'Infinity'::float8", "float8", json!("Infinity")),
        cell("float8_neg_inf", "'-Infinity'::float8", "float8", json!("-Infinity")),
        cell("numeric_scale", "12.50::numeric", "numeric", json!("12.50")),
        cell("numeric_typmod", "0::numeric(10,3)", "numeric", json!("0.000")),
        cell("numeric_long", "(-123456789012345678901234567890.000100)::numeric", "numeric", json!("-123456789012345678901234567890.000100")),
        cell("numeric_small", "0.0001::numeric", "numeric", json!("0.0001")),
        cell("numeric_group", "10000::numeric", "numeric", json!("10000")),
        cell("numeric_tiny", "1e-20::numeric", "numeric", json!("0.00000000000000000001")),
        cell("numeric_huge", "1e100::numeric", "numeric", json!(format!("1{}", "0".repeat(100)))),
        cell("numeric_neg_half", "(-0.5)::numeric", "numeric", json!("-0.5")),
        cell("numeric_nan", "'NaN'::numeric", "numeric", json!("NaN")),
        cell("numeric_inf", "'Infinity'::numeric", "numeric", json!("Infinity")),
        cell("numeric_neg_inf", "'-Infinity'::numeric", "numeric", json!("-Infinity")),
        cell("text_unicode", format!("'{EMOJI} {RTL} {COMBINING}'::text"), "text", json!(format!("{EMOJI} {RTL} {COMBINING}"))),
        cell("text_empty", "''::text", "text", json!("")),
        cell("varchar", "'vär'::varchar(10)", "varchar", json!("vär")),
        cell("bpchar", "'ab'::char(4)", "bpchar", json!("ab  ")),
        cell("name", "'pg_class'::name", "name", json!("pg_class")),
        cell("enum", format!("'sad'::{schema}.mood"), "mood", json!("sad")),
        cell("enum_array", format!("ARRAY['happy','sad']::{schema}.mood[]"), "mood[]", json!(["happy", "sad"])),
        cell("uuid", format!("'{UUID_UPPER}'::uuid"), "uuid", json!(UUID_LOWER)),
        cell("json", r#"'{"b": [1, 2.50, "x"], "a": null, "u": "\u00fc"}'::json"#, "json", json!({"b": [1, 2.5, "x"], "a": null, "u": "ü"})),
        cell("jsonb", r#"'{"deep": {"a": [true, null]}, "k": "ünï 😀", "n": 1e2}'::jsonb"#, "jsonb", json!({"deep": {"a": [true, null]}, "k": "ünï 😀", "n": 100})),
        cell("jsonb_scalar", r#"'"str"'::jsonb"#, "jsonb", json!("str")),
        cell("date", "'2024-02-29'::date", "date", json!("2024-02-29")),
        cell("date_min", "'0001-01-01'::date", "date", json!("0001-01-01")),
        cell("date_inf", "'infinity'::date", "date", json!("infinity")),
        cell("date_neg_inf", "'-infinity'::date", "date", json!("-infinity")),
        cell("time_micros", "'23:59:59.999999'::time", "time", json!("23:59:59.999999")),
        cell("time_whole", "'00:00:00'::time", "time", json!("00:00:00")),
        // docs/API.md: `time` is "HH:MM:SS[.ffffff]", six fraction digits.
        cell("time_half", "'13:45:06.5'::time", "time", json!("13:45:06.500000")),
        cell("timestamp_micros", "'2024-02-29 23:59:59.123456'::timestamp", "timestamp", json!("2024-02-29T23:59:59.123456")),
        cell("timestamp_whole", "'1999-12-31 23:59:59'::timestamp", "timestamp", json!("1999-12-31T23:59:59")),
        cell("timestamp_old", "'0001-01-01 00:00:00'::timestamp", "timestamp", json!("0001-01-01T00:00:00")),
        cell("timestamptz_offset", "'2024-02-29 23:30:00.123456+05:30'::timestamptz", "timestamptz", json!(format!("{TS_OFFSET_UTC}Z"))),
        cell("timestamptz_half", "'2024-03-10 02:30:00.5-08:00'::timestamptz", "timestamptz", json!("2024-03-10T10:30:00.500000Z")),
        cell("interval_full", "'1 year 2 months 3 days 4 hours 5 minutes 6.5 seconds'::interval", "interval", json!("P1Y2M3DT4H5M6.5S")),
        cell("interval_zero", "'0'::interval", "interval", json!("PT0S")),
        cell("interval_negative", "'-1 day -00:00:01'::interval", "interval", json!("P-1DT-1S")),
        cell("interval_mixed", "'1 mon -1 day 01:00:00.000001'::interval", "interval", json!("P1M-1DT1H0.000001S")),
        cell("interval_hours", "'100 hours'::interval", "interval", json!("PT100H")),
        cell("interval_neg_years", "'-1 year -2 months'::interval", "interval", json!("P-1Y-2M")),
        cell("bytea", r"'\x00ff6869'::bytea", "bytea", json!("AP9oaQ==")),
        cell("bytea_empty", "''::bytea", "bytea", json!("")),
        cell("inet_host", "'10.0.0.1'::inet", "inet", json!("10.0.0.1")),
        cell("inet_prefix", "'10.0.0.1/8'::inet", "inet", json!("10.0.0.1/8")),
        cell("inet_v6", "'::1'::inet", "inet", json!("::1")),
        cell("cidr", "'10.0.0.0/8'::cidr", "cidr", json!("10.0.0.0/8")),
        cell("cidr_host", "'192.168.1.5/32'::cidr", "cidr", json!("192.168.1.5/32")),
        cell("cidr_v6", "'2001:db8::/32'::cidr", "cidr", json!("2001:db8::/32")),
        cell("xml", "'<a>1</a>'::xml", "xml", json!("<a>1</a>")),
        cell("int4_array", "ARRAY[1,2,3]::int4[]", "int4[]", json!([1, 2, 3])),
        cell("int4_array_nulls", "ARRAY[1,NULL,3]::int4[]", "int4[]", json!([1, null, 3])),
        cell("int4_array_2d", "ARRAY[[1,2],[3,4]]::int4[]", "int4[]", json!([[1, 2], [3, 4]])),
        cell("int4_array_3d", "ARRAY[[[1],[2]],[[3],[4]]]::int4[]", "int4[]", json!([[[1], [2]], [[3], [4]]])),
        cell("int4_array_empty", "'{}'::int4[]", "int4[]", json!([])),
        cell("int4_array_lower_bound", "'[0:1]={7,8}'::int4[]", "int4[]", json!([7, 8])),
        cell("text_array", "ARRAY['a','b c','😀','',NULL]::text[]", "text[]", json!(["a", "b c", "😀", "", null])),
        cell("text_array_2d", "ARRAY[['a',NULL],['','d']]::text[]", "text[]", json!([["a", null], ["", "d"]])),
        cell("int8_array", "ARRAY[9223372036854775807, NULL]::int8[]", "int8[]", json!(["9223372036854775807", null])),
        cell("numeric_array", "ARRAY[1.50, NULL, 'NaN']::numeric[]", "numeric[]", json!(["1.50", null, "NaN"])),
        cell("float8_array", "ARRAY[0.1, 'Infinity']::float8[]", "float8[]", json!([0.1, "Infinity"])),
        cell("bool_array", "ARRAY[true, NULL, false]", "bool[]", json!([true, null, false])),
        cell("uuid_array", format!("ARRAY['{UUID_UPPER}']::uuid[]"), "uuid[]", json!([UUID_LOWER])),
        cell("date_array", "ARRAY['2024-02-29', 'infinity']::date[]", "date[]", json!(["2024-02-29", "infinity"])),
        cell("timestamptz_array", "ARRAY['2024-02-29 23:30:00+05:30']::timestamptz[]", "timestamptz[]", json!(["2024-02-29T18:00:00Z"])),
        cell("jsonb_array", r#"ARRAY['{"a": 1}', '[1]']::jsonb[]"#, "jsonb[]", json!([{"a": 1}, [1]])),
        cell("bytea_array", r"ARRAY['\x00ff'::bytea]", "bytea[]", json!(["AP8="])),
        cell("inet_array", "ARRAY['10.0.0.1'::inet, '10.0.0.0/8']", "inet[]", json!(["10.0.0.1", "10.0.0.0/8"])),
    ];
    if let Some(namespace) = citext {
        cells.push(cell(
            "citext",
            format!("'MiXeD'::{namespace}.citext"),
            "citext",
            json!("MiXeD"),
        ));
    }
    cells
}

/// Creates the citext extension if the server has it; returns its schema.
async fn pg_citext(admin: &tokio_postgres::Client) -> Option<String> {
    admin
        .batch_execute("CREATE EXTENSION IF NOT EXISTS citext")
        .await
        .ok()?;
    let row = admin
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n \
             ON n.oid = e.extnamespace WHERE e.extname = 'citext'",
            &[],
        )
        .await
        .ok()?;
    Some(row.get(0))
}

#[tokio::test]
async fn postgres_type_round_trips() {
    let admin = pg_admin().await;
    admin
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("set the admin time zone");
    let schema = PgSchema::create(&admin).await;
    let s = schema.name.clone();
    let table_columns: Vec<String> = PG_COLUMNS
        .iter()
        .map(|c| {
            let ddl = if c.name == "m" {
                format!("{s}.mood")
            } else {
                c.ddl.to_string()
            };
            format!("{} {ddl}", c.name)
        })
        .collect();
    admin
        .batch_execute(&format!(
            "CREATE TYPE {s}.mood AS ENUM ('happy', 'sad', 'ok');
             CREATE TABLE {s}.p (id int PRIMARY KEY, {});
             CREATE TABLE {s}.ident (id int PRIMARY KEY, \"MixedCase\" text, plain int8);
             INSERT INTO {s}.ident VALUES (1, 'one', 10), (2, 'two', NULL), (3, 'three', 30);",
            table_columns.join(", ")
        ))
        .await
        .expect("create the PostgreSQL tables");
    let citext = pg_citext(&admin).await;

    let cases = pg_cases();
    let refusals = pg_refusals();
    let cells = pg_cells(&s, citext.as_deref());
    let mut queries = param_queries(
        "pg",
        &cases,
        &refusals,
        PG_FINDS,
        &|c| {
            format!(
                "INSERT INTO {s}.p (id, {c}) VALUES ({{{{ params.id }}}}, {{{{ params.v }}}}) \
                 RETURNING {c}"
            )
        },
        &|c| format!("SELECT {c} FROM {s}.p WHERE id = {{{{ params.id }}}}"),
        &|c| format!("SELECT id FROM {s}.p WHERE {c} = ANY({{{{ params.v }}}}) ORDER BY id"),
    );
    let select: Vec<String> = cells
        .iter()
        .map(|c| format!("{} AS {}", c.sql, c.name))
        .collect();
    let select_nulls: Vec<String> = cells
        .iter()
        .map(|c| format!("(CASE WHEN false THEN {} END) AS {}", c.sql, c.name))
        .collect();
    queries.insert(
        "cells".into(),
        query("pg", format!("SELECT {}", select.join(", ")), json!({})),
    );
    queries.insert(
        "cells_null".into(),
        query(
            "pg",
            format!("SELECT {}", select_nulls.join(", ")),
            json!({}),
        ),
    );
    queries.insert(
        "time_24".into(),
        query("pg", "SELECT '24:00:00'::time AS t".into(), json!({})),
    );
    let choose = json!({
        "col": {"type": "identifier", "enum": ["MixedCase", "plain", "ident.plain"], "required": true},
        "dir": {"type": "keyword", "enum": ["ASC", "DESC NULLS LAST", "NULLS FIRST"], "default": "ASC"}
    });
    queries.insert(
        "pick".into(),
        query(
            "pg",
            format!(
                "SELECT id, {{{{ params.col }}}} AS v FROM {s}.ident AS ident \
                 ORDER BY {{{{ params.col }}}} {{{{ params.dir }}}}, id"
            ),
            choose,
        ),
    );
    queries.insert(
        "pick_lower".into(),
        query(
            "pg",
            format!("SELECT id FROM {s}.ident ORDER BY id {{{{ params.dir }}}}"),
            json!({"dir": {"type": "keyword", "enum": ["asc", "desc"], "required": true}}),
        ),
    );
    let gateway = TestGateway::start_spec(catalog(&pg_datasource_yaml("pg"), queries), &[]).await;
    let mut report = Report::new("PostgreSQL");

    // 1. Params into columns of their natural types.
    let stored = check_param_cases(
        &gateway,
        &mut Admin::Pg {
            client: &admin,
            schema: &s,
        },
        PG_COLUMNS,
        &cases,
        true,
        &mut report,
    )
    .await;
    check_refusals(&gateway, &refusals, &mut report).await;
    check_finds(&gateway, &cases, &stored, PG_FINDS, &mut report).await;
    check_near_misses(
        &gateway,
        &[
            ("n", "numeric", json!(BIG_DECIMAL_NEAR)),
            ("i8", "bigint", json!("9007199254740992")),
        ],
        &mut report,
    )
    .await;
    pg_exactness_beyond_doubles(&gateway, &admin, &s, cases.len(), &mut report).await;

    // identifier and keyword params: substituted from their closed lists.
    let pick = |col: &str, dir: &str| json!({"col": col, "dir": dir});
    for (params, columns, rows) in [
        (
            pick("plain", "DESC NULLS LAST"),
            json!([{"name": "id", "type": "int4"}, {"name": "v", "type": "int8"}]),
            json!([[3, "30"], [1, "10"], [2, null]]),
        ),
        (
            pick("MixedCase", "asc"),
            json!([{"name": "id", "type": "int4"}, {"name": "v", "type": "text"}]),
            json!([[1, "one"], [3, "three"], [2, "two"]]),
        ),
        (
            pick("ident.plain", "nulls first"),
            json!([{"name": "id", "type": "int4"}, {"name": "v", "type": "int8"}]),
            json!([[2, null], [1, "10"], [3, "30"]]),
        ),
    ] {
        let what = format!("PostgreSQL identifier/keyword params {params}");
        if let Some(body) = call_ok(&gateway, &mut report, &what, "pick", params).await {
            report.same(&format!("{what} (columns)"), &body["columns"], &columns);
            report.same(&format!("{what} (rows)"), &body["rows"], &rows);
        }
    }
    for (params, param) in [
        (pick("mixedcase", "ASC"), "col"),
        (pick("plain; DROP TABLE x", "ASC"), "col"),
        (pick("plain", "DESC; --"), "dir"),
    ] {
        let what = format!("PostgreSQL identifier/keyword params {params} must be refused");
        let (status, body) = gateway.call(APP, "pick", params).await;
        report.same(
            &what,
            &json!([status, &body["error"]["code"], &body["error"]["param"]]),
            &json!([400, "invalid_params", param]),
        );
    }
    // A keyword enum declared in lower case is still a keyword enum.
    for dir in ["desc", "DESC"] {
        let what = format!("PostgreSQL keyword param declared as `desc`, sent as {dir:?}");
        if let Some(body) = call_ok(
            &gateway,
            &mut report,
            &what,
            "pick_lower",
            json!({"dir": dir}),
        )
        .await
        {
            report.same(&what, &body["rows"], &json!([[3], [2], [1]]));
        }
    }

    // 2. Every common column type, with values and as NULL.
    if let Some(body) = call_ok(
        &gateway,
        &mut report,
        "PostgreSQL column cells",
        "cells",
        json!({}),
    )
    .await
    {
        check_cells(&mut report, "PostgreSQL column cells", &body, &cells, false);
    }
    if let Some(body) = call_ok(
        &gateway,
        &mut report,
        "PostgreSQL NULL cells",
        "cells_null",
        json!({}),
    )
    .await
    {
        check_cells(&mut report, "PostgreSQL NULL cells", &body, &cells, true);
    }
    // PostgreSQL's `time` goes up to 24:00:00 inclusive.
    if let Some(body) = call_ok(
        &gateway,
        &mut report,
        "PostgreSQL time '24:00:00'",
        "time_24",
        json!({}),
    )
    .await
    {
        report.same(
            "PostgreSQL time '24:00:00'",
            &body["rows"],
            &json!([["24:00:00"]]),
        );
    }

    gateway.stop().await;
    schema.drop(&admin).await;
    report.finish();
}

/// Params sent as JSON numbers with more digits than a double holds: `numeric` is documented
/// as "compared and bound exactly", and a `json` param as "any JSON value".
async fn pg_exactness_beyond_doubles(
    gateway: &TestGateway,
    admin: &tokio_postgres::Client,
    s: &str,
    first_free_id: usize,
    report: &mut Report,
) {
    let base = i32::try_from(first_free_id).expect("few cases") + 1000;
    for (offset, query, number, column, admin_sql) in [
        (
            0,
            "put_nu_numeric",
            "123456789.123456789123",
            "nu",
            "nu::text",
        ),
        (
            1,
            "put_nu_numeric",
            "12345678901234567890123",
            "nu",
            "nu::text",
        ),
        (
            2,
            "put_jb_json",
            "123456789012345678901234567890",
            "jb",
            "jb::text",
        ),
    ] {
        let id = base + offset;
        let body = format!(r#"{{"params": {{"id": {id}, "v": {number}}}}}"#);
        let what = format!("PostgreSQL {column} param sent as the JSON number {number}");
        let (status, _, text) = gateway.post_raw(APP, query, &body).await;
        report.checks += 1;
        if status != 200 {
            report.fail(&what, format!("status {status}, body {text}"));
            continue;
        }
        let stored: Option<String> = admin
            .query_one(
                &format!("SELECT {admin_sql} FROM {s}.p WHERE id = $1"),
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("admin read: {e}"))
            .get(0);
        report.same_text(
            &format!("{what} (admin read)"),
            stored.as_deref(),
            Some(number),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// MariaDB

const MY_COLUMNS: &[Column] = &[
    column("t", "VARCHAR(255)", Some("varchar")),
    column("tx", "TEXT", Some("text")),
    column("i", "INT", Some("int")),
    column("bi", "BIGINT", Some("bigint")),
    column("dbl", "DOUBLE", Some("double")),
    column("n", "DECIMAL(40,10)", Some("decimal")),
    column("b", "BOOLEAN", Some("tinyint")),
    column("u", "CHAR(36)", Some("char")),
    column("d", "DATE", Some("date")),
    column("dt", "DATETIME(6)", Some("datetime")),
    column("ts", "TIMESTAMP(6) NULL DEFAULT NULL", Some("timestamp")),
    // MariaDB's JSON is LONGTEXT: its type name is not asserted, its value is a string.
    column("j", "JSON", None),
];

/// A MariaDB `JSON` column returns the stored text as a string (docs/API.md); the gateway
/// stores the param's compact JSON.
fn my_json_case(input: Value) -> Case {
    Case {
        column: "j",
        ty: "json",
        want: json!(input.to_string()),
        stored: Stored::Json(input.clone()),
        input,
    }
}

#[rustfmt::skip]
fn my_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        "",
        "plain ascii",
        EMOJI,
        RTL,
        COMBINING,
        QUOTES,
        "trailing  ",
    ]
    .into_iter()
    .map(|s| case("t", "text", json!(s), json!(s), s))
    .collect();
    // Within the default `max_length` of 4096 characters.
    let long = format!("{EMOJI} {}", "x".repeat(4000));
    cases.extend([
        case("tx", "text", json!(long), json!(long), &long),
        case("t", "uuid", json!(UUID_UPPER), json!(UUID_LOWER), UUID_LOWER),
        case("i", "int", json!(i32::MIN), json!(i32::MIN), "-2147483648"),
        case("i", "int", json!(i32::MAX), json!(i32::MAX), "2147483647"),
        case("i", "int", json!(0), json!(0), "0"),
        case("i", "bigint", json!("2147483646"), json!(2147483646), "2147483646"),
        case("bi", "int", json!(i32::MAX), json!("2147483647"), "2147483647"),
        case("bi", "bigint", json!("9223372036854775807"), json!("9223372036854775807"), "9223372036854775807"),
        case("bi", "bigint", json!("-9223372036854775808"), json!("-9223372036854775808"), "-9223372036854775808"),
        case("bi", "bigint", json!("9007199254740993"), json!("9007199254740993"), "9007199254740993"),
        case("bi", "bigint", json!(i64::MIN), json!("-9223372036854775808"), "-9223372036854775808"),
        case("dbl", "float", json!(0.1), json!(0.1), "0.1"),
        case("dbl", "float", json!(1e300), json!(1e300), "1e300"),
        case("dbl", "float", json!(-2.5), json!(-2.5), "-2.5"),
        case("dbl", "float", json!(3), json!(3.0), "3"),
        case("n", "numeric", json!(BIG_DECIMAL), json!(BIG_DECIMAL), BIG_DECIMAL),
        case("n", "numeric", json!("1.50"), json!("1.5000000000"), "1.5000000000"),
        case("n", "numeric", json!("-0.0000000001"), json!("-0.0000000001"), "-0.0000000001"),
        case("n", "numeric", json!(12.5), json!("12.5000000000"), "12.5000000000"),
        case("n", "numeric", json!("1e-3"), json!("0.0010000000"), "0.0010000000"),
        case("n", "numeric", json!("-999999999999999999999999999999.9999999999"), json!("-999999999999999999999999999999.9999999999"), "-999999999999999999999999999999.9999999999"),
        // MySQL's BOOLEAN is TINYINT(1): a number, like every tinyint.
        case("b", "bool", json!(true), json!(1), "1"),
        case("b", "bool", json!(false), json!(0), "0"),
        case("u", "uuid", json!(UUID_UPPER), json!(UUID_LOWER), UUID_LOWER),
        case("u", "uuid", json!("a0eebc999c0b4ef8bb6d6bb9bd380a12"), json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"),
        case("d", "date", json!("2024-02-29"), json!("2024-02-29"), "2024-02-29"),
        case("d", "date", json!("9999-12-31"), json!("9999-12-31"), "9999-12-31"),
        case("d", "date", json!("1970-01-01"), json!("1970-01-01"), "1970-01-01"),
        case("dt", "timestamp", json!(TS_OFFSET), json!(TS_OFFSET_UTC), "2024-02-29 18:00:00.123456"),
        case("dt", "timestamp", json!("2024-01-01T00:00:00-08:00"), json!("2024-01-01T08:00:00"), "2024-01-01 08:00:00.000000"),
        case("dt", "timestamp", json!("2024-03-10T02:30:00.5Z"), json!("2024-03-10T02:30:00.500000"), "2024-03-10 02:30:00.500000"),
        case("ts", "timestamp", json!(TS_OFFSET), json!(TS_OFFSET_UTC), "2024-02-29 18:00:00.123456"),
        case("ts", "timestamp", json!("2038-01-19T03:14:07.999999Z"), json!("2038-01-19T03:14:07.999999"), "2038-01-19 03:14:07.999999"),
        case("ts", "timestamp", json!("1970-01-01T05:30:01+05:30"), json!("1970-01-01T00:00:01"), "1970-01-01 00:00:01.000000"),
        my_json_case(json_doc()),
        my_json_case(json!("just a string")),
        my_json_case(json!([1, "two", null])),
    ]);
    cases
}

#[rustfmt::skip]
fn my_refusals() -> Vec<Refusal> {
    vec![
        // Strict mode: values out of range for the column are the database's refusal.
        refusal("i", "bigint", json!("2147483648"), "invalid_data", &[]),
        refusal("n", "numeric", json!("1234567890123456789012345678901.5"), "invalid_data", &[]),
        refusal("t", "text", json!("x".repeat(300)), "invalid_data", &[]),
    ]
}

const MY_FINDS: &[Find] = &[
    Find {
        column: "t",
        item: "text",
    },
    Find {
        column: "i",
        item: "int",
    },
    Find {
        column: "bi",
        item: "bigint",
    },
    Find {
        column: "dbl",
        item: "float",
    },
    Find {
        column: "n",
        item: "numeric",
    },
    Find {
        column: "u",
        item: "uuid",
    },
    Find {
        column: "d",
        item: "date",
    },
    Find {
        column: "dt",
        item: "timestamp",
    },
    Find {
        column: "ts",
        item: "timestamp",
    },
];

/// A column of the MariaDB column-type table: name, DDL, type name (`None`: not asserted) and
/// two rows of (SQL literal, JSON); a third row holds NULL.
struct MyCell {
    name: &'static str,
    ddl: &'static str,
    label: Option<&'static str>,
    rows: [(&'static str, Value); 2],
}

fn my_cell(
    name: &'static str,
    ddl: &'static str,
    label: Option<&'static str>,
    first: (&'static str, Value),
    second: (&'static str, Value),
) -> MyCell {
    MyCell {
        name,
        ddl,
        label,
        rows: [first, second],
    }
}

#[rustfmt::skip]
fn my_cells() -> Vec<MyCell> {
    vec![
        my_cell("ti", "TINYINT", Some("tinyint"), ("-128", json!(-128)), ("127", json!(127))),
        my_cell("bo", "BOOLEAN", Some("tinyint"), ("TRUE", json!(1)), ("FALSE", json!(0))),
        my_cell("si", "SMALLINT", Some("smallint"), ("-32768", json!(-32768)), ("32767", json!(32767))),
        my_cell("mi", "MEDIUMINT", Some("mediumint"), ("-8388608", json!(-8388608)), ("8388607", json!(8388607))),
        my_cell("i", "INT", Some("int"), ("-2147483648", json!(i32::MIN)), ("2147483647", json!(i32::MAX))),
        my_cell("iu", "INT UNSIGNED", Some("int unsigned"), ("4294967295", json!(4294967295u32)), ("0", json!(0))),
        my_cell("bi", "BIGINT", Some("bigint"), ("-9223372036854775808", json!("-9223372036854775808")), ("9223372036854775807", json!("9223372036854775807"))),
        my_cell("bu", "BIGINT UNSIGNED", Some("bigint unsigned"), ("18446744073709551615", json!("18446744073709551615")), ("0", json!("0"))),
        my_cell("de", "DECIMAL(40,10)", Some("decimal"), ("-123456789012345678901234567890.1234567890", json!("-123456789012345678901234567890.1234567890")), ("12.5", json!("12.5000000000"))),
        my_cell("d0", "DECIMAL(5,0)", Some("decimal"), ("-12345", json!("-12345")), ("0", json!("0"))),
        my_cell("fl", "FLOAT", Some("float"), ("0.1", json!(0.1)), ("-1.5", json!(-1.5))),
        my_cell("db", "DOUBLE", Some("double"), ("0.1", json!(0.1)), ("1e300", json!(1e300))),
        my_cell("ch", "CHAR(5)", Some("char"), ("'ab'", json!("ab")), ("''", json!(""))),
        my_cell("vc", "VARCHAR(50)", Some("varchar"), ("'Zoë 😀 שלום'", json!("Zoë 😀 שלום")), ("'trailing  '", json!("trailing  "))),
        my_cell("tx", "TEXT", Some("text"), ("'e\u{301} combining'", json!("e\u{301} combining")), ("''", json!(""))),
        my_cell("bl", "BLOB", Some("blob"), ("x'00FF6869'", json!("AP9oaQ==")), ("x''", json!(""))),
        my_cell("vb", "VARBINARY(10)", Some("varbinary"), ("x'DEADBEEF'", json!("3q2+7w==")), ("'hi'", json!("aGk="))),
        my_cell("bn", "BINARY(4)", Some("binary"), ("x'01020304'", json!("AQIDBA==")), ("x'FFFFFFFF'", json!("/////w=="))),
        my_cell("bt", "BIT(8)", Some("bit"), ("b'10100101'", json!(165)), ("b'0'", json!(0))),
        my_cell("da", "DATE", Some("date"), ("'2024-02-29'", json!("2024-02-29")), ("'1000-01-01'", json!("1000-01-01"))),
        my_cell("dt", "DATETIME(6)", Some("datetime"), ("'2024-02-29 23:59:59.123456'", json!("2024-02-29T23:59:59.123456")), ("'2024-03-10 02:30:00.5'", json!("2024-03-10T02:30:00.500000"))),
        my_cell("dt0", "DATETIME", Some("datetime"), ("'9999-12-31 23:59:59'", json!("9999-12-31T23:59:59")), ("'2024-01-01 00:00:00'", json!("2024-01-01T00:00:00"))),
        // Inserted in a +05:30 session: read back in UTC.
        my_cell("ts", "TIMESTAMP(6) NULL DEFAULT NULL", Some("timestamp"), ("'2024-02-29 23:30:00.123456'", json!("2024-02-29T18:00:00.123456")), ("'1970-01-01 05:30:01'", json!("1970-01-01T00:00:01"))),
        my_cell("tm", "TIME(6)", Some("time"), ("'-838:59:59'", json!("-838:59:59")), ("'12:34:56.5'", json!("12:34:56.500000"))),
        my_cell("tm0", "TIME", Some("time"), ("'838:59:59'", json!("838:59:59")), ("'-00:00:01'", json!("-00:00:01"))),
        my_cell("yr", "YEAR", Some("year"), ("2024", json!(2024)), ("1901", json!(1901))),
        my_cell("en", "ENUM('small','large')", Some("enum"), ("'large'", json!("large")), ("'small'", json!("small"))),
        my_cell("st", "SET('x','y','z')", Some("set"), ("'x,z'", json!("x,z")), ("''", json!(""))),
        my_cell("js", "JSON", None, (r#"'{"a": [1, 2.5], "ü": null}'"#, json!(r#"{"a": [1, 2.5], "ü": null}"#)), ("'[]'", json!("[]"))),
    ]
}

#[tokio::test]
async fn mariadb_type_round_trips() {
    let mut admin = mysql_admin().await;
    let db = MyDatabase::create(&mut admin).await;
    let d = db.name.clone();
    let cells = my_cells();
    let table_columns: Vec<String> = MY_COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, c.ddl))
        .collect();
    let cell_columns: Vec<String> = cells
        .iter()
        .map(|c| format!("{} {}", c.name, c.ddl))
        .collect();
    let names: Vec<&str> = cells.iter().map(|c| c.name).collect();
    let literals = |row: usize| -> String {
        let values: Vec<&str> = cells.iter().map(|c| c.rows[row].0).collect();
        values.join(", ")
    };
    let nulls = vec!["NULL"; cells.len()].join(", ");
    for statement in [
        format!(
            "CREATE TABLE {d}.p (id INT PRIMARY KEY, {}) \
             DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
            table_columns.join(", ")
        ),
        format!(
            "CREATE TABLE {d}.ident (id INT PRIMARY KEY, `MixedCase` VARCHAR(10), plain BIGINT) \
             DEFAULT CHARSET = utf8mb4"
        ),
        format!("INSERT INTO {d}.ident VALUES (1, 'one', 10), (2, 'two', NULL), (3, 'three', 30)"),
        format!(
            "CREATE TABLE {d}.c (id INT PRIMARY KEY, {}) DEFAULT CHARSET = utf8mb4",
            cell_columns.join(", ")
        ),
        "SET time_zone = '+05:30'".to_string(),
        format!(
            "INSERT INTO {d}.c (id, {}) VALUES (1, {}), (2, {}), (3, {nulls})",
            names.join(", "),
            literals(0),
            literals(1)
        ),
        "SET time_zone = '+00:00'".to_string(),
    ] {
        admin
            .query_drop(statement.as_str())
            .await
            .unwrap_or_else(|e| panic!("MariaDB setup `{statement}`: {e}"));
    }

    let cases = my_cases();
    let refusals = my_refusals();
    let mut queries = param_queries(
        "my",
        &cases,
        &refusals,
        MY_FINDS,
        &|c| format!("INSERT INTO p (id, {c}) VALUES ({{{{ params.id }}}}, {{{{ params.v }}}})"),
        &|c| format!("SELECT {c} FROM p WHERE id = {{{{ params.id }}}}"),
        &|c| format!("SELECT id FROM p WHERE {c} IN ({{{{ params.v }}}}) ORDER BY id"),
    );
    queries.insert(
        "cells".into(),
        query(
            "my",
            format!("SELECT id, {} FROM c ORDER BY id", names.join(", ")),
            json!({}),
        ),
    );
    queries.insert(
        "pick".into(),
        query(
            "my",
            "SELECT id, {{ params.col }} AS v FROM ident ORDER BY {{ params.col }} {{ params.dir }}, id"
                .into(),
            json!({
                "col": {"type": "identifier", "enum": ["MixedCase", "plain", "ident.plain"], "required": true},
                "dir": {"type": "keyword", "enum": ["ASC", "DESC"], "default": "ASC"}
            }),
        ),
    );
    queries.insert(
        "pick_lower".into(),
        query(
            "my",
            "SELECT id FROM ident ORDER BY id {{ params.dir }}".into(),
            json!({"dir": {"type": "keyword", "enum": ["asc", "desc"], "required": true}}),
        ),
    );
    let gateway =
        TestGateway::start_spec(catalog(&mysql_datasource_yaml("my", &d), queries), &[]).await;
    let mut report = Report::new("MariaDB");

    // 1. Params into columns of their natural types.
    let stored = check_param_cases(
        &gateway,
        &mut Admin::My {
            conn: &mut admin,
            database: &d,
        },
        MY_COLUMNS,
        &cases,
        false,
        &mut report,
    )
    .await;
    check_refusals(&gateway, &refusals, &mut report).await;
    check_finds(&gateway, &cases, &stored, MY_FINDS, &mut report).await;
    check_near_misses(
        &gateway,
        &[
            ("n", "numeric", json!(BIG_DECIMAL_NEAR)),
            ("bi", "bigint", json!("9007199254740992")),
        ],
        &mut report,
    )
    .await;
    // TIMESTAMP holds an instant: another session zone sees the same instant in its zone.
    let ts_index = cases
        .iter()
        .position(|c| c.column == "ts" && c.input == json!(TS_OFFSET))
        .expect("a TIMESTAMP case");
    let ts_id = i32::try_from(ts_index + 1).expect("few cases");
    admin.query_drop("SET time_zone = '+05:30'").await.unwrap();
    let local: Option<Option<String>> = admin
        .exec_first(
            format!("SELECT CAST(ts AS CHAR) FROM {d}.p WHERE id = ?"),
            (ts_id,),
        )
        .await
        .unwrap();
    admin.query_drop("SET time_zone = '+00:00'").await.unwrap();
    report.same_text(
        "MariaDB TIMESTAMP param read in a +05:30 session",
        local.flatten().as_deref(),
        Some("2024-02-29 23:30:00.123456"),
    );

    // identifier and keyword params.
    let pick = |col: &str, dir: &str| json!({"col": col, "dir": dir});
    for (params, label, rows) in [
        (
            pick("plain", "DESC"),
            "bigint",
            json!([[3, "30"], [1, "10"], [2, null]]),
        ),
        (
            pick("MixedCase", "asc"),
            "varchar",
            json!([[1, "one"], [3, "three"], [2, "two"]]),
        ),
        (
            pick("ident.plain", "ASC"),
            "bigint",
            json!([[2, null], [1, "10"], [3, "30"]]),
        ),
    ] {
        let what = format!("MariaDB identifier/keyword params {params}");
        if let Some(body) = call_ok(&gateway, &mut report, &what, "pick", params).await {
            report.same(
                &format!("{what} (columns)"),
                &body["columns"],
                &json!([{"name": "id", "type": "int"}, {"name": "v", "type": label}]),
            );
            report.same(&format!("{what} (rows)"), &body["rows"], &rows);
        }
    }
    for (params, param) in [
        (pick("Mixed`Case", "ASC"), "col"),
        (pick("plain", "DESC; --"), "dir"),
    ] {
        let what = format!("MariaDB identifier/keyword params {params} must be refused");
        let (status, body) = gateway.call(APP, "pick", params).await;
        report.same(
            &what,
            &json!([status, &body["error"]["code"], &body["error"]["param"]]),
            &json!([400, "invalid_params", param]),
        );
    }
    for dir in ["desc", "DESC"] {
        let what = format!("MariaDB keyword param declared as `desc`, sent as {dir:?}");
        if let Some(body) = call_ok(
            &gateway,
            &mut report,
            &what,
            "pick_lower",
            json!({"dir": dir}),
        )
        .await
        {
            report.same(&what, &body["rows"], &json!([[3], [2], [1]]));
        }
    }

    // 2. Every common column type: two rows of values, one of NULLs.
    if let Some(body) = call_ok(
        &gateway,
        &mut report,
        "MariaDB column cells",
        "cells",
        json!({}),
    )
    .await
    {
        report.same(
            "MariaDB column cells: row_count",
            &body["row_count"],
            &json!(3),
        );
        report.same(
            "MariaDB `columns` entry of `id`",
            &body["columns"][0],
            &json!({"name": "id", "type": "int"}),
        );
        for (index, cell) in cells.iter().enumerate() {
            if let Some(label) = cell.label {
                report.same(
                    &format!("MariaDB `columns` entry of `{}` ({})", cell.name, cell.ddl),
                    &body["columns"][index + 1],
                    &json!({"name": cell.name, "type": label}),
                );
            }
            for row in 0..3 {
                let (literal, want) = match cell.rows.get(row) {
                    Some((literal, want)) => (*literal, want.clone()),
                    None => ("NULL", Value::Null),
                };
                report.same(
                    &format!("MariaDB {} column `{}` = {literal}", cell.ddl, cell.name),
                    &body["rows"][row][index + 1],
                    &want,
                );
            }
        }
    }

    gateway.stop().await;
    db.drop(&mut admin).await;
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// SQLite

const LITE_COLUMNS: &[Column] = &[
    column("t", "TEXT", Some("text")),
    column("i", "INTEGER", Some("integer")),
    column("b", "BIGINT", Some("bigint")),
    column("r", "REAL", Some("real")),
    column("bo", "BOOLEAN", Some("boolean")),
    column("j", "JSON", Some("json")),
    column("d", "DATE", Some("date")),
    column("ts", "DATETIME", Some("datetime")),
    column("u", "TEXT", Some("text")),
    column("n", "TEXT", Some("text")),
];

/// SQLite's `quote()` of a text value.
fn sql_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[rustfmt::skip]
fn lite_cases() -> Vec<Case> {
    let mut cases: Vec<Case> = ["", EMOJI, RTL, COMBINING, QUOTES]
        .into_iter()
        .map(|s| case("t", "text", json!(s), json!(s), &sql_quoted(s)))
        .collect();
    cases.extend([
        case("i", "int", json!(i32::MIN), json!(i32::MIN), "-2147483648"),
        case("i", "int", json!(i32::MAX), json!(i32::MAX), "2147483647"),
        case("b", "bigint", json!("9223372036854775807"), json!("9223372036854775807"), "9223372036854775807"),
        case("b", "bigint", json!("-9223372036854775808"), json!("-9223372036854775808"), "-9223372036854775808"),
        case("b", "bigint", json!("9007199254740993"), json!("9007199254740993"), "9007199254740993"),
        case("r", "float", json!(0.1), json!(0.1), "0.1"),
        case("r", "float", json!(1e300), json!(1e300), "1.0e+300"),
        case("r", "float", json!(-2.5), json!(-2.5), "-2.5"),
        case("bo", "bool", json!(true), json!(true), "1"),
        case("bo", "bool", json!(false), json!(false), "0"),
        json_case("j", "json", json_doc()),
        json_case("j", "json", json!("s")),
        case("d", "date", json!("2024-02-29"), json!("2024-02-29"), "'2024-02-29'"),
        // Bound in SQLite's own date-time text form, in UTC.
        case("ts", "timestamp", json!(TS_OFFSET), json!("2024-02-29 18:00:00.123456"), "'2024-02-29 18:00:00.123456'"),
        case("ts", "timestamp", json!("2024-01-01T00:00:00-08:00"), json!("2024-01-01 08:00:00"), "'2024-01-01 08:00:00'"),
        case("u", "uuid", json!(UUID_UPPER), json!(UUID_LOWER), &sql_quoted(UUID_LOWER)),
        case("n", "numeric", json!("12.50"), json!("12.50"), "'12.50'"),
        case("n", "numeric", json!("1e-3"), json!("0.001"), "'0.001'"),
    ]);
    cases
}

const LITE_FINDS: &[Find] = &[
    Find {
        column: "t",
        item: "text",
    },
    Find {
        column: "i",
        item: "int",
    },
    Find {
        column: "b",
        item: "bigint",
    },
    Find {
        column: "u",
        item: "uuid",
    },
    Find {
        column: "d",
        item: "date",
    },
];

#[tokio::test]
async fn sqlite_type_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("types.db");
    let table_columns: Vec<String> = LITE_COLUMNS
        .iter()
        .map(|c| format!("{} {}", c.name, c.ddl))
        .collect();
    {
        let conn = rusqlite::Connection::open(&path).expect("create the SQLite file");
        conn.execute_batch(&format!(
            "CREATE TABLE p (id INTEGER PRIMARY KEY, {});
             CREATE TABLE c (id INTEGER PRIMARY KEY, i INTEGER, b BIGINT, r REAL, t TEXT,
                             bl BLOB, bo BOOLEAN, j JSON, nd DECIMAL(10,2), nn NUMERIC);
             INSERT INTO c VALUES
               (1, 42, 9223372036854775807, 0.1, 'Zoë 😀 שלום', x'00FF6869', 1,
                '{{\"a\": [1, 2.5, \"ü\"], \"b\": null}}', '49.90', 12.5),
               (2, -1, -9223372036854775808, 1e300, '', x'', 0, 'not json', -3, 7),
               (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);",
            table_columns.join(", ")
        ))
        .expect("create the SQLite tables");
    }
    let cases = lite_cases();
    let mut queries = param_queries(
        "lite",
        &cases,
        &[],
        LITE_FINDS,
        &|c| format!("INSERT INTO p (id, {c}) VALUES ({{{{ params.id }}}}, {{{{ params.v }}}})"),
        &|c| format!("SELECT {c} FROM p WHERE id = {{{{ params.id }}}}"),
        &|c| format!("SELECT id FROM p WHERE {c} IN ({{{{ params.v }}}}) ORDER BY id"),
    );
    queries.insert(
        "cells".into(),
        query(
            "lite",
            "SELECT id, i, b, r, t, bl, bo, j, nd, nn FROM c ORDER BY id".into(),
            json!({}),
        ),
    );
    let datasource = format!(
        "  lite:\n    kind: sqlite\n    path: {}\n",
        path.to_str().expect("a UTF-8 temp path")
    );
    let gateway = TestGateway::start_spec(catalog(&datasource, queries), &[]).await;
    let mut report = Report::new("SQLite");

    let stored = check_param_cases(
        &gateway,
        &mut Admin::Lite { path: &path },
        LITE_COLUMNS,
        &cases,
        false,
        &mut report,
    )
    .await;
    check_finds(&gateway, &cases, &stored, LITE_FINDS, &mut report).await;
    check_near_misses(
        &gateway,
        &[("b", "bigint", json!("9007199254740992"))],
        &mut report,
    )
    .await;

    if let Some(body) = call_ok(
        &gateway,
        &mut report,
        "SQLite column cells",
        "cells",
        json!({}),
    )
    .await
    {
        report.same(
            "SQLite `columns` (declared types)",
            &body["columns"],
            &json!([
                {"name": "id", "type": "integer"}, {"name": "i", "type": "integer"},
                {"name": "b", "type": "bigint"}, {"name": "r", "type": "real"},
                {"name": "t", "type": "text"}, {"name": "bl", "type": "blob"},
                {"name": "bo", "type": "boolean"}, {"name": "j", "type": "json"},
                {"name": "nd", "type": "decimal(10,2)"}, {"name": "nn", "type": "numeric"}
            ]),
        );
        let rows = [
            // NUMERIC/DECIMAL: exact strings, with the declared scale (`49.90` is kept by
            // SQLite as the float 49.9).
            json!([1, 42, "9223372036854775807", 0.1, "Zoë 😀 שלום", "AP9oaQ==", true, {"a": [1, 2.5, "ü"], "b": null}, "49.90", "12.5"]),
            json!([
                2,
                -1,
                "-9223372036854775808",
                1e300,
                "",
                "",
                false,
                "not json",
                "-3.00",
                "7"
            ]),
            json!([3, null, null, null, null, null, null, null, null, null]),
        ];
        let names = ["id", "i", "b", "r", "t", "bl", "bo", "j", "nd", "nn"];
        for (index, want) in rows.iter().enumerate() {
            for (position, name) in names.iter().enumerate() {
                report.same(
                    &format!("SQLite column `{name}` of row {}", index + 1),
                    &body["rows"][index][position],
                    &want[position],
                );
            }
        }
    }

    gateway.stop().await;
    report.finish();
}
