//! Injection corpus end to end, against real PostgreSQL and MariaDB (security invariants 1
//! and 7 of docs/SECURITY.md).
//!
//! A corpus of hostile strings (quotes, comments, stacked statements, `OR 1=1`, UNION probes
//! for a canary secret, dollar quotes, backslash escapes, placeholders, template bindings,
//! unicode look-alike quotes, NUL, control characters, sleeps, 4,000 and 100,000 character
//! strings) is sent as the value of every param type (text, int, bigint, float, numeric, bool,
//! uuid, date, timestamp, json, identifier, keyword, and arrays of the scalar types), on its
//! own, inside arrays and nested in JSON (as values and as keys). Hostile non-string JSON
//! values, raw hostile bodies and hostile app/query names are sent too.
//!
//! Every response is either `200` with the value coming back as data (a text or JSON echo is
//! exactly the input, a text written to a table reads back byte for byte) or a `4xx` JSON
//! error (`invalid_params` naming the param for a value the param type cannot take). Never a
//! 5xx, never the canary secret, never more rows than legitimately match, never a slow answer
//! (an injected sleep would take 5 s). Afterwards the admin clients check that `victims`,
//! `canary` and `notes` hold exactly what they should, that no table was created, and
//! (PostgreSQL) that the gateway's connections never ran a statement other than the catalog's.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const APP: &str = "inj";
/// `max_length` of the text params that take the 100,000-character payload.
const LONG_MAX: usize = 200_000;
/// The documented default `max_length` of a text param.
const DEFAULT_MAX: usize = 4096;
/// An injected `pg_sleep(5)` / `SLEEP(5)` would make a call at least this slow.
const SLOW: Duration = Duration::from_secs(4);
/// Failures listed in the panic message (each one line, values cut to 80 characters).
const MAX_REPORTED: usize = 40;
/// Request bodies carry the 100k payload up to four times (JSON nesting), escaped.
const BODY_LIMIT: &str = "4194304";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Db {
    Postgres,
    MariaDb,
}

impl Db {
    fn label(self) -> &'static str {
        match self {
            Db::Postgres => "pg",
            Db::MariaDb => "mariadb",
        }
    }
}

/// The hostile strings. `tag` makes the names of tables and files an injected statement would
/// create unique to this run, so their absence can be checked.
fn corpus(tag: &str) -> Vec<String> {
    let fixed = [
        "' OR 1=1 --",
        "' OR '1'='1",
        "' OR ''='",
        "\" OR \"1\"=\"1",
        "\"; DROP TABLE victims; --",
        "'; DROP TABLE victims; --",
        "1; DROP TABLE victims",
        "1); DROP TABLE victims; --",
        "') UNION SELECT secret FROM canary --",
        "' UNION SELECT secret, secret FROM canary #",
        "1 UNION ALL SELECT secret FROM canary",
        "' || (SELECT secret FROM canary) || '",
        "x' AND 1=(SELECT COUNT(*) FROM canary) AND 'a'='a",
        "'; UPDATE victims SET name = 'pwned'; --",
        "'; DELETE FROM notes; --",
        "'; INSERT INTO notes (tag, body) VALUES (-1, 'pwned'); --",
        "'; TRUNCATE canary; --",
        "/* */",
        "*/ OR 1=1 /*",
        "' /*",
        "--",
        "-- ",
        "#",
        "';--",
        "\\'; --",
        "\\' OR 1=1 #",
        "\\",
        "\\\\'",
        "\\x27 OR 1=1",
        "\\0",
        "\\'; DROP TABLE victims; -- \\",
        "$$; DROP TABLE victims; $$",
        "$tag$ ' OR 1=1 $tag$",
        "$1",
        "$1; DROP TABLE victims",
        "?",
        "? OR 1=1",
        ":v",
        "@v",
        "%s",
        "{{ params.v }}",
        "{{ user.id }}",
        "}}{{",
        "＇ OR 1=1 --",
        "ʼ OR ʼ1ʼ=ʼ1",
        "‘ OR ‘1’=‘1",
        "“ OR “1”=“1",
        "﹨＇ OR 1=1",
        "¿' OR 1=1 --",
        "%27 OR 1=1",
        "%00' OR 1=1",
        "&#39; OR 1=1",
        "a\0b",
        "\0",
        "' OR 1=1\0--",
        "' ; SELECT pg_sleep(5); --",
        "'; SELECT pg_sleep(5)::text; --",
        "1; SELECT pg_sleep(5)",
        "'; SELECT SLEEP(5); #",
        "1 AND SLEEP(5)",
        "SLEEP(5)",
        "' OR SLEEP(5) OR '",
        "`",
        "``; DROP TABLE victims; --",
        "` OR 1=1 --",
        "\"victims\"",
        "victims",
        "line1\nline2",
        "\r\n' OR 1=1 --\r\n",
        "\t' OR\t1=1",
        " ",
        "",
        "admin'--",
        "admin' #",
        "admin'/*",
        "1 OR 1=1",
        "1' AND '1'='1",
        "-1 OR 1=1",
        "1e309",
        "NaN",
        "-0",
        "9223372036854775808",
        "NULL",
        "null",
        "true",
        "CHAR(39)",
        "0x27",
        "\u{202e}' OR 1=1",
        "\u{feff}'",
        "\u{2028}' OR 1=1",
        "\u{7f}\u{1b}[31m'",
        "🦀'; DROP TABLE victims; --",
        "e\u{301}' OR 1=1",
    ];
    let mut corpus: Vec<String> = fixed.into_iter().map(String::from).collect();
    corpus.push(format!("'; CREATE TABLE pwned_{tag} (x int); --"));
    corpus.push(format!("'); CREATE TABLE pwned_{tag} (x int); --"));
    corpus.push(format!(
        "'; COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned_{tag}'; --"
    ));
    corpus.push(format!("' INTO OUTFILE '/tmp/pwned_{tag}' --"));
    // Characters, not bytes, are counted: these hold 3-byte characters, so 4000 characters
    // are more than 4096 bytes and still within the default limit.
    corpus.push(long_string(4000));
    corpus.push(long_string(DEFAULT_MAX + 1));
    corpus.push(long_string(100_000));
    for legit in ["alice", "bob", "carol"] {
        assert!(
            !corpus.iter().any(|p| p == legit),
            "the corpus must not hold a real name"
        );
    }
    corpus
}

fn long_string(chars: usize) -> String {
    "＇ OR 1=1 -- '\\\"`; DROP TABLE victims; /* "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

/// A value for messages: debug-escaped, at most 80 characters.
fn short(text: &str) -> String {
    let count = text.chars().count();
    if count <= 80 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(80).collect();
        format!("{head:?}... ({count} chars)")
    }
}

/// The typed columns of `victims`, the param type that filters on each, and values that
/// match exactly one row (bob, id 2).
struct Typed {
    ty: &'static str,
    column: &'static str,
    bob: Vec<Value>,
}

fn typed_columns() -> Vec<Typed> {
    let typed = |ty, column, bob| Typed { ty, column, bob };
    vec![
        typed("int", "id", vec![json!(2), json!(2.0)]),
        typed("bigint", "big", vec![json!(-42), json!("-42")]),
        typed("float", "score", vec![json!(-2.5), json!(-25e-1)]),
        typed(
            "numeric",
            "amount",
            vec![json!("0.0001"), json!("1e-4"), json!(0.0001)],
        ),
        typed("bool", "active", vec![json!(false)]),
        typed(
            "uuid",
            "uid",
            vec![
                json!("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
                json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            ],
        ),
        typed("date", "born", vec![json!("2000-02-29")]),
        typed(
            "timestamp",
            "seen",
            vec![
                json!("2024-02-29T14:34:56.789+02:00"),
                json!("2024-02-29T12:34:56.789Z"),
            ],
        ),
    ]
}

/// Hostile JSON values that are not strings (and a few strings that look like numbers).
fn hostile_values() -> Vec<Value> {
    vec![
        json!(0),
        json!(2),
        json!(-1),
        json!(1.5),
        json!(1e308),
        json!(-0.0),
        json!(2_147_483_648_i64),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(true),
        json!(false),
        json!(null),
        json!([]),
        json!([2]),
        json!([[2]]),
        json!(["' OR 1=1 --"]),
        json!({ "$ne": null }),
        json!({ "$gt": "" }),
        json!({ "v": "' OR 1=1 --" }),
        json!("2"),
        json!(" 2"),
        json!("2 "),
        json!("0x10"),
        json!("1e3"),
        json!("2024-02-29 12:34:56.789' OR '1'='1"),
    ]
}

/// The catalog: every param type, each in a query that echoes it or filters on it.
fn catalog(db: Db, datasource_yaml: &str, prefix: &str, marker: &str) -> String {
    let mut queries = serde_json::Map::new();
    let mut add = |name: &str, sql: String, params: Value| {
        // The marker comment lets the PostgreSQL check find this gateway's statements.
        let sql = format!("{sql} /* {marker} */");
        queries.insert(
            name.to_string(),
            json!({ "datasource": "db", "sql": sql, "params": params }),
        );
    };
    let text = json!({ "v": { "type": "text", "required": true } });
    let long_text = json!({ "v": { "type": "text", "required": true, "max_length": LONG_MAX } });
    let echo = match db {
        Db::Postgres => "SELECT CAST({{ params.v }} AS text) AS v",
        Db::MariaDb => "SELECT {{ params.v }} AS v",
    };
    add("echo", echo.to_string(), text.clone());
    add("echo_long", echo.to_string(), long_text);
    add(
        "match",
        format!("SELECT id FROM {prefix}victims WHERE name = {{{{ params.v }}}} ORDER BY id"),
        text.clone(),
    );
    // A text param where the database expects an integer: a catalog mistake, still never SQL.
    add(
        "text_as_int",
        format!("SELECT id FROM {prefix}victims WHERE id = {{{{ params.v }}}} ORDER BY id"),
        text,
    );
    add(
        "write",
        format!(
            "INSERT INTO {prefix}notes (tag, body) \
             VALUES ({{{{ params.tag }}}}, {{{{ params.v }}}})"
        ),
        json!({
            "tag": { "type": "int", "required": true },
            "v": { "type": "text", "required": true, "max_length": LONG_MAX },
        }),
    );
    add(
        "read",
        format!("SELECT body FROM {prefix}notes WHERE tag = {{{{ params.tag }}}}"),
        json!({ "tag": { "type": "int", "required": true } }),
    );
    let json_param = json!({ "v": { "type": "json", "required": true } });
    let json_echo = match db {
        Db::Postgres => "SELECT CAST({{ params.v }} AS json) AS v",
        Db::MariaDb => "SELECT {{ params.v }} AS v",
    };
    add("json_echo", json_echo.to_string(), json_param.clone());
    add(
        "json_write",
        format!(
            "INSERT INTO {prefix}notes (tag, doc) \
             VALUES ({{{{ params.tag }}}}, {{{{ params.v }}}})"
        ),
        json!({
            "tag": { "type": "int", "required": true },
            "v": { "type": "json", "required": true },
        }),
    );
    add(
        "json_read",
        format!("SELECT doc FROM {prefix}notes WHERE tag = {{{{ params.tag }}}}"),
        json!({ "tag": { "type": "int", "required": true } }),
    );
    let list = |column: &str| match db {
        Db::Postgres => {
            format!(
                "SELECT id FROM {prefix}victims \
                 WHERE {column} = ANY({{{{ params.v }}}}) ORDER BY id"
            )
        }
        Db::MariaDb => {
            format!(
                "SELECT id FROM {prefix}victims \
                 WHERE {column} IN ({{{{ params.v }}}}) ORDER BY id"
            )
        }
    };
    add(
        "a_text",
        list("name"),
        json!({ "v": { "type": "array<text>", "required": true } }),
    );
    if db == Db::Postgres {
        add(
            "a_text_echo",
            "SELECT CAST({{ params.v }} AS text[]) AS v".to_string(),
            json!({ "v": { "type": "array<text>", "required": true } }),
        );
    }
    for typed in typed_columns() {
        let (ty, column) = (typed.ty, typed.column);
        add(
            &format!("f_{ty}"),
            format!(
                "SELECT id FROM {prefix}victims WHERE {column} = {{{{ params.v }}}} ORDER BY id"
            ),
            json!({ "v": { "type": ty, "required": true } }),
        );
        add(
            &format!("a_{ty}"),
            list(column),
            json!({ "v": { "type": format!("array<{ty}>"), "required": true } }),
        );
    }
    add(
        "ident",
        format!("SELECT {{{{ params.col }}}} AS v FROM {prefix}victims WHERE id = 2"),
        json!({ "col": { "type": "identifier", "required": true, "enum": ["id", "name"] } }),
    );
    add(
        "order",
        format!("SELECT id FROM {prefix}victims ORDER BY id {{{{ params.dir }}}}"),
        json!({ "dir": { "type": "keyword", "required": true, "enum": ["ASC", "DESC"] } }),
    );
    let apps = json!({ APP: { "visibility": "public", "grants": { "anonymous": true }, "queries": queries } });
    format!("datasources:\n{datasource_yaml}apps: {apps}\n")
}

/// The read-only queries of the catalog and the param each takes.
fn read_only_queries(db: Db) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = [
        "echo",
        "echo_long",
        "match",
        "text_as_int",
        "read",
        "json_echo",
        "json_read",
        "a_text",
    ]
    .into_iter()
    .map(|q| (q.to_string(), if q.ends_with("read") { "tag" } else { "v" }))
    .collect();
    if db == Db::Postgres {
        out.push(("a_text_echo".into(), "v"));
    }
    for typed in typed_columns() {
        out.push((format!("f_{}", typed.ty), "v"));
        out.push((format!("a_{}", typed.ty), "v"));
    }
    out.push(("ident".into(), "col"));
    out.push(("order".into(), "dir"));
    out
}

/// The most rows `value` may legitimately select through `query` (names, ids and every typed
/// column are unique per row; an `IN` list matches at most one row per item).
fn legit_rows(query: &str, value: &Value) -> usize {
    match query {
        "order" => 3,
        "a_text_echo" => 1,
        q if q.starts_with("a_") => value.as_array().map_or(1, Vec::len),
        _ => 1,
    }
}

/// What one call came back as.
#[derive(Debug)]
enum Outcome {
    Rows(Vec<Value>),
    Affected(u64),
    Refused {
        status: u16,
        code: String,
        param: Option<String>,
    },
    /// Already reported as a failure.
    Broken,
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Rows(rows) => format!(
                "200 with rows {}",
                short(&Value::from(rows.clone()).to_string())
            ),
            Outcome::Affected(n) => format!("200 with rows_affected {n}"),
            Outcome::Refused {
                status,
                code,
                param,
            } => format!("{status} {code} (param {param:?})"),
            Outcome::Broken => "a broken response".to_string(),
        }
    }
}

/// One gateway, the invariants every response must keep, and the failures seen so far.
struct Harness<'a> {
    db: Db,
    gateway: &'a TestGateway,
    canary: String,
    report: Report,
}

/// Counts and failures, kept after the gateway is gone for the checks of the tables.
struct Report {
    db: Db,
    calls: usize,
    data: usize,
    refused: usize,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, case: &str, message: impl AsRef<str>) {
        let message: String = message.as_ref().chars().take(300).collect();
        self.failures
            .push(format!("[{}] {case}: {message}", self.db.label()));
    }

    fn finish(self, started: Instant) {
        let summary = format!(
            "[{}] {} calls: {} data, {} refused (4xx), {} failures, in {:?}",
            self.db.label(),
            self.calls,
            self.data,
            self.refused,
            self.failures.len(),
            started.elapsed()
        );
        eprintln!("{summary}");
        if !self.failures.is_empty() {
            let shown: Vec<&str> = self
                .failures
                .iter()
                .take(MAX_REPORTED)
                .map(String::as_str)
                .collect();
            panic!(
                "{summary}\n{}{}",
                shown.join("\n"),
                if self.failures.len() > MAX_REPORTED {
                    format!("\n... and {} more", self.failures.len() - MAX_REPORTED)
                } else {
                    String::new()
                }
            );
        }
    }
}

impl<'a> Harness<'a> {
    fn new(db: Db, gateway: &'a TestGateway, canary: &str) -> Harness<'a> {
        Harness {
            db,
            gateway,
            canary: canary.to_string(),
            report: Report {
                db,
                calls: 0,
                data: 0,
                refused: 0,
                failures: Vec::new(),
            },
        }
    }

    fn fail(&mut self, case: &str, message: impl AsRef<str>) {
        self.report.fail(case, message);
    }

    /// Runs `query` with `params`. `payload` is the hostile text in play, if any (error
    /// messages must not echo it).
    async fn call(
        &mut self,
        query: &str,
        params: Value,
        case: &str,
        payload: Option<&str>,
    ) -> Outcome {
        let body = json!({ "params": params }).to_string().into_bytes();
        let url = self.gateway.url(&format!("/v1/apps/{APP}/queries/{query}"));
        self.post(url, body, case, payload).await
    }

    async fn post(
        &mut self,
        url: String,
        body: Vec<u8>,
        case: &str,
        payload: Option<&str>,
    ) -> Outcome {
        self.report.calls += 1;
        let started = Instant::now();
        let response = self
            .gateway
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(e) => {
                self.fail(case, format!("request failed: {e}"));
                return Outcome::Broken;
            }
        };
        let status = response.status().as_u16();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) => {
                self.fail(case, format!("body could not be read: {e}"));
                return Outcome::Broken;
            }
        };
        let elapsed = started.elapsed();
        if elapsed >= SLOW {
            self.fail(
                case,
                format!("took {elapsed:?}: did an injected sleep run?"),
            );
        }
        let text = String::from_utf8_lossy(&bytes);
        if text.contains(&self.canary) {
            self.fail(case, "THE CANARY SECRET IS IN THE RESPONSE");
        }
        let body: Value = match serde_json::from_str(&text) {
            Ok(body) => body,
            Err(e) => {
                self.fail(
                    case,
                    format!("status {status}, body is not JSON ({e}): {}", short(&text)),
                );
                return Outcome::Broken;
            }
        };
        match status {
            200 => self.data_outcome(&body, case),
            400..=499 => self.refusal(status, &body, case, payload),
            _ => {
                self.fail(
                    case,
                    format!(
                        "status {status} (only 200 or 4xx allowed): {}",
                        short(&text)
                    ),
                );
                Outcome::Broken
            }
        }
    }

    fn data_outcome(&mut self, body: &Value, case: &str) -> Outcome {
        if body.get("error").is_some() {
            self.fail(
                case,
                format!(
                    "200 carrying an error: {}",
                    short(&body["error"].to_string())
                ),
            );
            return Outcome::Broken;
        }
        let Some(rows) = body["rows"].as_array() else {
            self.fail(case, "200 without a rows array");
            return Outcome::Broken;
        };
        if body["row_count"].as_u64() != Some(rows.len() as u64) {
            self.fail(case, "row_count differs from the number of rows");
        }
        self.report.data += 1;
        match body.get("rows_affected").and_then(Value::as_u64) {
            Some(n) => Outcome::Affected(n),
            None => Outcome::Rows(rows.clone()),
        }
    }

    fn refusal(&mut self, status: u16, body: &Value, case: &str, payload: Option<&str>) -> Outcome {
        let error = &body["error"];
        let Some(code) = error["code"].as_str() else {
            self.fail(
                case,
                format!("{status} without error.code: {}", short(&body.to_string())),
            );
            return Outcome::Broken;
        };
        let message = error["message"].as_str().unwrap_or_default();
        // A number may legitimately appear in a message as a declared bound.
        if let Some(payload) = payload
            && payload.chars().count() >= 6
            && !number_like(payload)
            && message.contains(payload)
        {
            self.fail(
                case,
                format!("the error message echoes the payload: {}", short(message)),
            );
        }
        // `param` is checked where the value is the param type's to refuse (`want_refused`); a
        // value refused by the database's own parameter type is covered by
        // `database_type_refusals_name_the_param`.
        let param = error["param"].as_str().map(String::from);
        self.report.refused += 1;
        Outcome::Refused {
            status,
            code: code.to_string(),
            param,
        }
    }

    fn want_rows(&mut self, out: &Outcome, want: &[Value], case: &str) {
        match out {
            Outcome::Rows(rows) if rows == want => {}
            Outcome::Broken => {}
            other => {
                let want = short(&Value::from(want.to_vec()).to_string());
                self.fail(
                    case,
                    format!("expected rows {want}, got {}", other.describe()),
                );
            }
        }
    }

    fn want_refused(&mut self, out: &Outcome, param: &str, case: &str) {
        match out {
            Outcome::Refused {
                status: 400,
                code,
                param: Some(p),
            } if code == "invalid_params" && p == param => {}
            Outcome::Broken => {}
            other => self.fail(
                case,
                format!(
                    "expected 400 invalid_params naming `{param}`, got {}",
                    other.describe()
                ),
            ),
        }
    }

    fn want_bounded(&mut self, out: &Outcome, max: usize, case: &str) {
        match out {
            Outcome::Rows(rows) if rows.len() > max => self.fail(
                case,
                format!("{} rows where at most {max} can match", rows.len()),
            ),
            Outcome::Affected(_) => self.fail(case, "a read-only query changed rows"),
            _ => {}
        }
    }

    /// A JSON value came back as one cell: embedded on PostgreSQL (`json`), as JSON text on
    /// MariaDB (whose JSON type is text). `may_refuse` allows a 400 instead.
    fn want_json(&mut self, out: &Outcome, want: &Value, case: &str, may_refuse: bool) {
        match out {
            Outcome::Rows(rows)
                if rows.len() == 1 && rows[0].as_array().map(Vec::len) == Some(1) =>
            {
                let cell = &rows[0][0];
                let got = match self.db {
                    Db::Postgres => Some(cell.clone()),
                    Db::MariaDb => cell.as_str().and_then(|s| serde_json::from_str(s).ok()),
                };
                if got.as_ref() != Some(want) {
                    self.fail(
                        case,
                        format!("JSON came back different: {}", short(&cell.to_string())),
                    );
                }
            }
            Outcome::Refused { status: 400, .. } if may_refuse => {}
            Outcome::Broken => {}
            other => self.fail(
                case,
                format!("expected the JSON back, got {}", other.describe()),
            ),
        }
    }
}

/// What `notes` must hold afterwards, by tag: the text body or the JSON document written.
#[derive(Default)]
struct Notes {
    next_tag: i32,
    bodies: BTreeMap<i32, String>,
    docs: BTreeMap<i32, Value>,
}

impl Notes {
    fn tag(&mut self) -> i32 {
        self.next_tag += 1;
        self.next_tag
    }
}

/// `-?digits(.digits)?(e[+-]?digits)?`: a string the `bigint` (digits only) or `numeric`
/// param types accept as a number, so a 200 is legitimate there.
fn number_like(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

fn text_ok(payload: &str, max_length: usize) -> bool {
    !payload.contains('\0') && payload.chars().count() <= max_length
}

/// Sends the corpus through every query of the catalog.
async fn run_corpus(h: &mut Harness<'_>, corpus: &[String], notes: &mut Notes) {
    let db = h.db;
    let typed = typed_columns();

    // Legitimate values first: the queries work, so a refusal below is the value's doing.
    for t in &typed {
        for value in &t.bob {
            let case = format!("f_{} legit {value}", t.ty);
            let out = h
                .call(&format!("f_{}", t.ty), json!({ "v": value }), &case, None)
                .await;
            h.want_rows(&out, &[json!([2])], &case);
            let case = format!("a_{} legit [{value}]", t.ty);
            let out = h
                .call(&format!("a_{}", t.ty), json!({ "v": [value] }), &case, None)
                .await;
            h.want_rows(&out, &[json!([2])], &case);
        }
    }
    let case = "f_bigint legit beyond 2^53";
    let out = h
        .call("f_bigint", json!({ "v": "9007199254740993" }), case, None)
        .await;
    h.want_rows(&out, &[json!([1])], case);
    let out = h
        .call("ident", json!({ "col": "name" }), "ident legit", None)
        .await;
    h.want_rows(&out, &[json!(["bob"])], "ident legit");
    for dir in ["DESC", "desc"] {
        let case = format!("order legit {dir}");
        let out = h.call("order", json!({ "dir": dir }), &case, None).await;
        h.want_rows(&out, &[json!([3]), json!([2]), json!([1])], &case);
    }
    let out = h
        .call(
            "a_text",
            json!({ "v": ["bob", "carol"] }),
            "a_text legit",
            None,
        )
        .await;
    h.want_rows(&out, &[json!([2]), json!([3])], "a_text legit");
    let out = h
        .call("match", json!({ "v": "bob" }), "match legit", None)
        .await;
    h.want_rows(&out, &[json!([2])], "match legit");

    for (index, payload) in corpus.iter().enumerate() {
        let p = payload.as_str();
        let at = |what: &str| format!("{what} payload #{index} {}", short(p));
        let fits = text_ok(p, DEFAULT_MAX);
        let fits_long = text_ok(p, LONG_MAX);
        let has_nul = p.contains('\0');

        // text: echoed exactly, or refused (NUL, too long) with a 400 naming the param.
        let case = at("text echo");
        let out = h.call("echo", json!({ "v": p }), &case, Some(p)).await;
        if fits {
            h.want_rows(&out, &[json!([p])], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }
        let case = at("text echo (max_length 200000)");
        let out = h.call("echo_long", json!({ "v": p }), &case, Some(p)).await;
        if fits_long {
            h.want_rows(&out, &[json!([p])], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }
        let case = at("text filter");
        let out = h.call("match", json!({ "v": p }), &case, Some(p)).await;
        if fits {
            h.want_rows(&out, &[], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }
        let case = at("text in an int context");
        let out = h
            .call("text_as_int", json!({ "v": p }), &case, Some(p))
            .await;
        h.want_bounded(&out, 1, &case);

        // text written and read back byte for byte; a refused write leaves nothing behind.
        let tag = notes.tag();
        let case = at("text write");
        let out = h
            .call("write", json!({ "tag": tag, "v": p }), &case, Some(p))
            .await;
        if fits_long {
            match out {
                Outcome::Affected(1) => {
                    notes.bodies.insert(tag, p.to_string());
                }
                other => h.fail(
                    &case,
                    format!("expected rows_affected 1, got {}", other.describe()),
                ),
            }
            let case = at("text read back");
            let out = h.call("read", json!({ "tag": tag }), &case, None).await;
            h.want_rows(&out, &[json!([p])], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }

        // json: the string, and the string nested as values and as a key.
        let case = at("json string echo");
        let value = json!(p);
        let out = h
            .call("json_echo", json!({ "v": value }), &case, Some(p))
            .await;
        h.want_json(&out, &value, &case, has_nul);
        let nested = json!({ "k": p, p: [p, 1, null, true, { "deep": [p, { "k": p }] }] });
        let case = at("json nested echo");
        let out = h
            .call("json_echo", json!({ "v": nested }), &case, Some(p))
            .await;
        h.want_json(&out, &nested, &case, has_nul);
        let tag = notes.tag();
        let case = at("json write");
        let out = h
            .call(
                "json_write",
                json!({ "tag": tag, "v": nested }),
                &case,
                Some(p),
            )
            .await;
        match out {
            Outcome::Affected(1) => {
                notes.docs.insert(tag, nested.clone());
                let case = at("json read back");
                let out = h
                    .call("json_read", json!({ "tag": tag }), &case, None)
                    .await;
                h.want_json(&out, &nested, &case, false);
            }
            Outcome::Refused { status: 400, .. } if has_nul => {}
            other => h.fail(
                &case,
                format!("expected rows_affected 1, got {}", other.describe()),
            ),
        }

        // array<text>: matches nothing by itself, exactly bob beside "bob".
        let case = at("array<text> [p]");
        let out = h.call("a_text", json!({ "v": [p] }), &case, Some(p)).await;
        if fits {
            h.want_rows(&out, &[], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }
        let case = at("array<text> [p, bob]");
        let out = h
            .call("a_text", json!({ "v": [p, "bob", p] }), &case, Some(p))
            .await;
        if fits {
            h.want_rows(&out, &[json!([2])], &case);
        } else {
            h.want_refused(&out, "v", &case);
        }
        if db == Db::Postgres {
            let case = at("array<text> echo");
            let out = h
                .call("a_text_echo", json!({ "v": [p, "x", p] }), &case, Some(p))
                .await;
            if fits {
                h.want_rows(&out, &[json!([[p, "x", p]])], &case);
            } else {
                h.want_refused(&out, "v", &case);
            }
        }

        // Every other type: a hostile string is never an int, a uuid, a date, a column or a
        // keyword, alone or inside an array.
        // (`bigint` and `numeric` take numbers written as strings: those may match a row.)
        for t in &typed {
            let is_number = number_like(p)
                && (t.ty == "numeric" || (t.ty == "bigint" && !p.contains(['.', 'e', 'E'])));
            let query = format!("f_{}", t.ty);
            let case = at(&format!("{} as a string", t.ty));
            let out = h.call(&query, json!({ "v": p }), &case, Some(p)).await;
            if is_number {
                h.want_bounded(&out, 1, &case);
            } else {
                h.want_refused(&out, "v", &case);
            }
            let query = format!("a_{}", t.ty);
            let case = at(&format!("array<{}> [legit, p]", t.ty));
            let out = h
                .call(&query, json!({ "v": [t.bob[0], p] }), &case, Some(p))
                .await;
            if is_number {
                h.want_bounded(&out, 2, &case);
            } else {
                h.want_refused(&out, "v", &case);
            }
        }
        let case = at("identifier");
        let out = h.call("ident", json!({ "col": p }), &case, Some(p)).await;
        h.want_refused(&out, "col", &case);
        let case = at("keyword");
        let out = h.call("order", json!({ "dir": p }), &case, Some(p)).await;
        h.want_refused(&out, "dir", &case);
        if p.is_empty() {
            continue;
        }
        let case = at("keyword appended to a legit one");
        let out = h
            .call(
                "order",
                json!({ "dir": format!("DESC{p}") }),
                &case,
                Some(p),
            )
            .await;
        h.want_refused(&out, "dir", &case);
    }

    // Hostile non-string values into every read-only query: data or 4xx, never too many rows.
    // For JSON params every one of them is a value, echoed exactly (null is not allowed).
    for (query, param) in read_only_queries(db) {
        for (index, value) in hostile_values().into_iter().enumerate() {
            let case = format!(
                "{query}.{param} hostile value #{index} {}",
                short(&value.to_string())
            );
            let out = h.call(&query, json!({ param: value }), &case, None).await;
            if query == "json_echo" && !value.is_null() {
                h.want_json(&out, &value, &case, false);
            } else {
                h.want_bounded(&out, legit_rows(&query, &value), &case);
            }
        }
    }

    // Arrays past their bound, and an extra undeclared param carrying SQL.
    let many: Vec<&str> = vec!["' OR 1=1 --"; 101];
    let out = h
        .call("a_text", json!({ "v": many }), "array of 101 items", None)
        .await;
    h.want_refused(&out, "v", "array of 101 items");
    let case = "undeclared param carrying SQL";
    let extra = json!({ "v": "bob", "sql": "SELECT secret FROM canary" });
    let out = h.call("match", extra, case, None).await;
    h.want_refused(&out, "sql", case);
}

/// Raw bodies the JSON encoder would never produce, and hostile app/query names.
async fn run_raw(h: &mut Harness<'_>) {
    let raw: Vec<(&str, Vec<u8>)> = vec![
        ("echo", br#"{"params":{"v":"\ud800' OR 1=1 --"}}"#.to_vec()),
        (
            "echo",
            br#"{"params":{"v":"a","v":"' OR 1=1 --"}}"#.to_vec(),
        ),
        (
            "echo",
            br#"{"params":{"v":"a"},"params":{"v":"' OR 1=1 --"}}"#.to_vec(),
        ),
        (
            "echo",
            br#"{"params":{"v":"a"}} ; DROP TABLE victims; --"#.to_vec(),
        ),
        (
            "echo",
            br#"{"params":{"v":"a"},"sql":"SELECT secret FROM canary"}"#.to_vec(),
        ),
        ("echo", br#"{"params":{"v' OR 1=1 --":"a"}}"#.to_vec()),
        (
            "echo",
            br#"{"params":{"v":"a","__proto__":{"v":"' OR 1=1"}}}"#.to_vec(),
        ),
        (
            "echo",
            b"{\"params\":{\"v\":\"\xff\xfe' OR 1=1 --\"}}".to_vec(),
        ),
        (
            "echo",
            b"{\"params\":{\"v\":\"\xc0\xa7 OR 1=1 --\"}}".to_vec(),
        ),
        ("echo", b"{\"params\":{\"v\":\"a\x00b\"}}".to_vec()),
        ("echo", b"{\"params\":{\"v\":\"line\nbreak\"}}".to_vec()),
        ("echo", br#"{"params":{"v":"\u0027 OR 1=1 --"}}"#.to_vec()),
        ("f_float", br#"{"params":{"v":1e400}}"#.to_vec()),
        ("f_int", br#"{"params":{"v":01}}"#.to_vec()),
        ("f_int", br#"{"params":{"v":2 OR 1=1}}"#.to_vec()),
        (
            "f_bigint",
            br#"{"params":{"v":99999999999999999999999}}"#.to_vec(),
        ),
        ("f_numeric", br#"{"params":{"v":NaN}}"#.to_vec()),
        (
            "json_echo",
            format!(r#"{{"params":{{"v":{}}}}}"#, "[".repeat(1000)).into_bytes(),
        ),
    ];
    for (index, (query, body)) in raw.into_iter().enumerate() {
        let case = format!(
            "raw body #{index} to {query}: {}",
            short(&String::from_utf8_lossy(&body))
        );
        let url = h.gateway.url(&format!("/v1/apps/{APP}/queries/{query}"));
        let out = h.post(url, body, &case, None).await;
        h.want_bounded(&out, 1, &case);
    }
    // A valid surrogate pair is one character, echoed as such.
    let case = "escaped surrogate pair";
    let url = h.gateway.url(&format!("/v1/apps/{APP}/queries/echo"));
    let body = br#"{"params":{"v":"\ud83e\udd80' OR 1=1 --"}}"#.to_vec();
    let out = h.post(url, body, case, None).await;
    h.want_rows(&out, &[json!(["🦀' OR 1=1 --"])], case);
    // JSON nested 100 deep is still a value.
    let deep: Value = (0..100).fold(json!("' OR 1=1 --"), |inner, _| json!([inner]));
    let out = h
        .call("json_echo", json!({ "v": deep }), "json 100 deep", None)
        .await;
    h.want_json(&out, &deep, "json 100 deep", false);

    for path in [
        "/v1/apps/inj/queries/echo%27%20OR%201%3D1%20--",
        "/v1/apps/inj%27--/queries/echo",
        "/v1/apps/inj/queries/echo%3B%20DROP%20TABLE%20victims",
        "/v1/apps/inj/queries/echo%00",
        "/v1/apps/inj/queries/%2e%2e%2f%2e%2e%2fadmin",
        "/v1/apps/inj/queries/%7B%7B%20params.v%20%7D%7D",
    ] {
        let case = format!("hostile path {path}");
        let body = br#"{"params":{"v":"a"}}"#.to_vec();
        let out = h.post(h.gateway.url(path), body, &case, None).await;
        match out {
            Outcome::Refused { status: 404, .. } | Outcome::Broken => {}
            other => h.fail(&case, format!("expected 404, got {}", other.describe())),
        }
    }
}

async fn start_gateway(catalog: &str) -> TestGateway {
    TestGateway::start_with(catalog, &[("SLUICE_MAX_BODY_BYTES", BODY_LIMIT)]).await
}

#[tokio::test]
async fn postgres_corpus_is_data_or_400_and_tables_survive() {
    let started = Instant::now();
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = schema.name.clone();
    let tag = unique_name("inj");
    let canary = format!("CANARY-{}", unique_name("secret"));
    admin
        .batch_execute(&format!(
            "CREATE TABLE {s}.victims (id int PRIMARY KEY, name text NOT NULL UNIQUE, \
               big bigint NOT NULL UNIQUE, score float8 NOT NULL UNIQUE, \
               amount numeric(12,4) NOT NULL UNIQUE, active bool UNIQUE, uid uuid NOT NULL UNIQUE, \
               born date NOT NULL UNIQUE, seen timestamptz NOT NULL UNIQUE);
             INSERT INTO {s}.victims VALUES
               (1, 'alice', 9007199254740993, 1.25, 10.5, true,
                '00000000-0000-4000-8000-000000000001', '1990-01-01', '2024-01-01T00:00:00Z'),
               (2, 'bob', -42, -2.5, 0.0001, false,
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2000-02-29', '2024-02-29T12:34:56.789Z'),
               (3, 'carol', 0, 0, -3, NULL,
                '00000000-0000-4000-8000-000000000003', '2024-12-31',
                '1999-12-31T23:59:59.999999Z');
             CREATE TABLE {s}.canary (secret text NOT NULL);
             INSERT INTO {s}.canary VALUES ('{canary}');
             CREATE TABLE {s}.notes (id serial PRIMARY KEY, tag int NOT NULL UNIQUE,
               body text, doc json);"
        ))
        .await
        .unwrap();
    let victims_sql = format!("SELECT row_to_json(v)::text FROM {s}.victims v ORDER BY id");
    let snapshot = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
        rows.iter().map(|row| row.get::<_, String>(0)).collect()
    };
    let victims_before = snapshot(admin.query(&victims_sql, &[]).await.unwrap());

    let catalog = catalog(
        Db::Postgres,
        &pg_datasource_yaml("db"),
        &format!("{s}."),
        &tag,
    );
    let gateway = start_gateway(&catalog).await;
    let mut h = Harness::new(Db::Postgres, &gateway, &canary);
    let mut notes = Notes::default();
    run_corpus(&mut h, &corpus(&tag), &mut notes).await;
    run_raw(&mut h).await;

    // The gateway's connections (found by the marker comment every template carries) only
    // ever ran catalog statements: none mentions the canary or anything from the corpus.
    let activity = admin
        .query(
            "SELECT query, coalesce(wait_event, '') FROM pg_stat_activity \
             WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            &[&tag],
        )
        .await
        .unwrap();
    if activity.is_empty() {
        h.fail(
            "pg_stat_activity",
            "no connection of the gateway found (marker missing?)",
        );
    }
    for row in &activity {
        let query: String = row.get(0);
        let wait: String = row.get(1);
        let foreign = [
            "canary", "pg_sleep", "DROP", "1=1", "UNION", "pwned", "SLEEP",
        ];
        if foreign.iter().any(|f| query.contains(f)) || wait == "PgSleep" {
            h.fail(
                "pg_stat_activity",
                format!("foreign statement ran: {}", short(&query)),
            );
        }
    }
    let sleeping: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(5);%' \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    if sleeping != 0 {
        h.fail(
            "pg_stat_activity",
            format!("{sleeping} sessions ran a corpus pg_sleep"),
        );
    }
    let mut report = h.report;
    gateway.stop().await;

    // Tables intact: same victims, same canary, exactly the notes written, nothing created.
    let victims_after = snapshot(admin.query(&victims_sql, &[]).await.unwrap());
    if victims_after != victims_before {
        report.fail(
            "victims",
            format!("changed: {}", short(&victims_after.join(" | "))),
        );
    }
    let secrets = snapshot(
        admin
            .query(&format!("SELECT secret FROM {s}.canary"), &[])
            .await
            .unwrap(),
    );
    if secrets != [canary.clone()] {
        report.fail("canary", format!("{} rows / changed", secrets.len()));
    }
    let stored = admin
        .query(
            &format!("SELECT tag, body, doc::text FROM {s}.notes ORDER BY tag"),
            &[],
        )
        .await
        .unwrap();
    check_notes(
        &mut report,
        &notes,
        stored
            .iter()
            .map(|row| {
                let body: Option<String> = row.get(1);
                let doc: Option<String> = row.get(2);
                (row.get::<_, i32>(0), body.map(String::into_bytes), doc)
            })
            .collect(),
    );
    let tables: Vec<String> = snapshot(
        admin
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = $1 ORDER BY 1",
                &[&s],
            )
            .await
            .unwrap(),
    );
    if tables != ["canary", "notes", "victims"] {
        report.fail("tables", format!("schema holds {tables:?}"));
    }
    let pwned: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'pwned_' || $1 || '%'",
            &[&tag],
        )
        .await
        .unwrap()
        .get(0);
    if pwned != 0 {
        report.fail("tables", "an injected CREATE TABLE ran");
    }
    if std::path::Path::new(&format!("/tmp/pwned_{tag}")).exists() {
        report.fail("files", "an injected COPY TO PROGRAM / INTO OUTFILE ran");
    }
    schema.drop(&admin).await;
    report.finish(started);
}

#[tokio::test]
async fn mariadb_corpus_is_data_or_400_and_tables_survive() {
    use mysql_async::prelude::Queryable;

    let started = Instant::now();
    let mut admin = mysql_admin().await;
    let db = MyDatabase::create(&mut admin).await;
    let d = db.name.clone();
    let tag = unique_name("inj");
    let canary = format!("CANARY-{}", unique_name("secret"));
    let setup = [
        format!(
            "CREATE TABLE {d}.victims (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL UNIQUE, \
             big BIGINT NOT NULL UNIQUE, score DOUBLE NOT NULL UNIQUE, \
             amount DECIMAL(12,4) NOT NULL UNIQUE, active BOOLEAN NULL UNIQUE, \
             uid CHAR(36) NOT NULL UNIQUE, born DATE NOT NULL UNIQUE, \
             seen DATETIME(6) NOT NULL UNIQUE) \
             DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        ),
        format!(
            "INSERT INTO {d}.victims VALUES \
             (1, 'alice', 9007199254740993, 1.25, 10.5, TRUE, \
              '00000000-0000-4000-8000-000000000001', '1990-01-01', '2024-01-01 00:00:00'), \
             (2, 'bob', -42, -2.5, 0.0001, FALSE, \
              'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2000-02-29', '2024-02-29 12:34:56.789'), \
             (3, 'carol', 0, 0, -3, NULL, \
              '00000000-0000-4000-8000-000000000003', '2024-12-31', '1999-12-31 23:59:59.999999')"
        ),
        format!(
            "CREATE TABLE {d}.canary (secret VARCHAR(128) NOT NULL) \
             DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        ),
        format!("INSERT INTO {d}.canary VALUES ('{canary}')"),
        format!(
            "CREATE TABLE {d}.notes (id INT AUTO_INCREMENT PRIMARY KEY, tag INT NOT NULL UNIQUE, \
             body LONGTEXT NULL, doc JSON NULL) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
        ),
    ];
    for statement in setup {
        admin.query_drop(statement).await.unwrap();
    }
    let victims_sql = format!(
        "SELECT CONCAT_WS('|', id, name, big, score, amount, IFNULL(active, 'null'), uid, born, \
         seen) \
         FROM {d}.victims ORDER BY id"
    );
    let victims_before: Vec<String> = admin.query(&victims_sql).await.unwrap();

    let catalog = catalog(Db::MariaDb, &mysql_datasource_yaml("db", &d), "", &tag);
    let gateway = start_gateway(&catalog).await;
    let mut h = Harness::new(Db::MariaDb, &gateway, &canary);
    let mut notes = Notes::default();
    run_corpus(&mut h, &corpus(&tag), &mut notes).await;
    run_raw(&mut h).await;

    let sleeping: Vec<u64> = admin
        .query(
            "SELECT ID FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%SLEEP(5)%' AND ID <> CONNECTION_ID()",
        )
        .await
        .unwrap();
    if !sleeping.is_empty() {
        h.fail(
            "processlist",
            format!("{} sessions run a corpus SLEEP", sleeping.len()),
        );
    }
    let mut report = h.report;
    gateway.stop().await;

    let victims_after: Vec<String> = admin.query(&victims_sql).await.unwrap();
    if victims_after != victims_before {
        report.fail(
            "victims",
            format!("changed: {}", short(&victims_after.join(" | "))),
        );
    }
    let secrets: Vec<String> = admin
        .query(format!("SELECT secret FROM {d}.canary"))
        .await
        .unwrap();
    if secrets != [canary.clone()] {
        report.fail("canary", format!("{} rows / changed", secrets.len()));
    }
    type Raw = (i32, Option<Vec<u8>>, Option<Vec<u8>>);
    let stored: Vec<Raw> = admin
        .query(format!("SELECT tag, body, doc FROM {d}.notes ORDER BY tag"))
        .await
        .unwrap();
    let stored = stored
        .into_iter()
        .map(|(tag, body, doc)| {
            let doc = doc.map(|doc| String::from_utf8_lossy(&doc).into_owned());
            (tag, body, doc)
        })
        .collect();
    check_notes(&mut report, &notes, stored);
    let tables: Vec<String> = admin
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (d.as_str(),),
        )
        .await
        .unwrap();
    if tables != ["canary", "notes", "victims"] {
        report.fail("tables", format!("database holds {tables:?}"));
    }
    let pwned: Vec<String> = admin
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_NAME LIKE ?",
            (format!("pwned_{tag}%"),),
        )
        .await
        .unwrap();
    if !pwned.is_empty() {
        report.fail("tables", "an injected CREATE TABLE ran");
    }
    if std::path::Path::new(&format!("/tmp/pwned_{tag}")).exists() {
        report.fail("files", "an injected INTO OUTFILE ran");
    }
    db.drop(&mut admin).await;
    report.finish(started);
}

/// A row of `notes` as the admin client read it: tag, body bytes, doc as JSON text.
type StoredNote = (i32, Option<Vec<u8>>, Option<String>);

/// Compares `notes` as stored with what was written through the gateway.
fn check_notes(h: &mut Report, notes: &Notes, stored: Vec<StoredNote>) {
    let want = notes.bodies.len() + notes.docs.len();
    if stored.len() != want {
        h.fail(
            "notes",
            format!(
                "{} rows stored, {want} written through the gateway",
                stored.len()
            ),
        );
    }
    for (tag, body, doc) in stored {
        let case = format!("notes tag {tag}");
        match (notes.bodies.get(&tag), notes.docs.get(&tag)) {
            (Some(want), None) => {
                if body.as_deref() != Some(want.as_bytes()) || doc.is_some() {
                    h.fail(&case, format!("body is not byte-for-byte {}", short(want)));
                }
            }
            (None, Some(want)) => {
                let got: Option<Value> = doc.as_deref().and_then(|d| serde_json::from_str(d).ok());
                if got.as_ref() != Some(want) || body.is_some() {
                    h.fail(
                        &case,
                        format!("doc differs: {}", short(&doc.unwrap_or_default())),
                    );
                }
            }
            _ => h.fail(&case, "a row nobody wrote through the gateway"),
        }
    }
}

/// A `keyword` param whose enum is declared in lower case orders like its upper-case twin.
#[tokio::test]
async fn keyword_enum_declared_in_lower_case_is_usable() {
    let apps = json!({ APP: { "visibility": "public", "grants": { "anonymous": true }, "queries": {
        "order": {
            "datasource": "db",
            "sql": "SELECT x FROM (VALUES (1), (2), (3)) AS t (x) ORDER BY x {{ params.dir }}",
            "params": { "dir": { "type": "keyword", "required": true, "enum": ["asc", "desc"] } },
        },
    } } });
    let catalog = format!("datasources:\n{}apps: {apps}\n", pg_datasource_yaml("db"));
    let gateway = start_gateway(&catalog).await;
    for (dir, want) in [
        ("desc", json!([[3], [2], [1]])),
        ("ASC", json!([[1], [2], [3]])),
    ] {
        let (status, body) = gateway.call(APP, "order", json!({ "dir": dir })).await;
        assert_eq!(status, 200, "dir {dir}: {body}");
        assert_eq!(body["rows"], want, "dir {dir}");
    }
    let (status, body) = gateway
        .call(APP, "order", json!({ "dir": "desc; DROP TABLE victims" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "dir");
    gateway.stop().await;
}

/// A value the database's parameter type cannot take (a `text` param where PostgreSQL infers
/// `int4`) is a 400 `invalid_params` that, like every other one, names the param.
#[tokio::test]
async fn database_type_refusals_name_the_param() {
    let apps = json!({ APP: { "visibility": "public", "grants": { "anonymous": true }, "queries": {
        "q": {
            "datasource": "db",
            "sql": "SELECT x FROM (VALUES (1), (2)) AS t (x) \
                    WHERE x = {{ params.n }} OR x = {{ params.v }}",
            "params": {
                "n": { "type": "int", "required": true },
                "v": { "type": "text", "required": true },
            },
        },
    } } });
    let catalog = format!("datasources:\n{}apps: {apps}\n", pg_datasource_yaml("db"));
    let gateway = start_gateway(&catalog).await;
    let (status, body) = gateway
        .call(APP, "q", json!({ "n": 1, "v": "2 OR 1=1" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_params", "{body}");
    assert!(!body.to_string().contains("OR 1=1"), "{body}");
    assert_eq!(body["error"]["param"], "v", "{body}");
    gateway.stop().await;
}
