use std::collections::HashMap;

use super::*;
use crate::auth::Identity;
use crate::catalog::binding::slots;
use crate::spec::{ParamType, ScalarType};
use serde_json::json;

use Dialect::{MySql, Postgres, Sqlite};

fn spec(ty: ParamType, allowed: Option<serde_json::Value>) -> ParamSpec {
    ParamSpec {
        ty,
        required: false,
        default: None,
        nullable: false,
        min: None,
        max: None,
        max_length: None,
        pattern: None,
        allowed: allowed.map(|v| v.as_array().expect("enum is a list").clone()),
        min_items: None,
        max_items: None,
        description: None,
    }
}

fn declared() -> BTreeMap<String, ParamSpec> {
    use ParamType::{Array, Scalar};
    BTreeMap::from([
        ("id".into(), spec(Scalar(ScalarType::Int), None)),
        ("q".into(), spec(Scalar(ScalarType::Text), None)),
        ("ids".into(), spec(Array(ScalarType::Int), None)),
        (
            "sort".into(),
            spec(
                Scalar(ScalarType::Identifier),
                Some(json!(["name", "t.created_at"])),
            ),
        ),
        (
            "dir".into(),
            spec(
                Scalar(ScalarType::Keyword),
                Some(json!(["ASC", "DESC NULLS LAST"])),
            ),
        ),
    ])
}

fn values() -> HashMap<String, ParamValue> {
    HashMap::from([
        ("id".into(), ParamValue::Int(7)),
        ("q".into(), ParamValue::Text("x".into())),
        (
            "ids".into(),
            ParamValue::Array(vec![ParamValue::Int(1), ParamValue::Int(2)]),
        ),
        ("sort".into(), ParamValue::Text("t.created_at".into())),
        ("dir".into(), ParamValue::Text("DESC NULLS LAST".into())),
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

fn render(template: &str, dialect: Dialect, params: &HashMap<String, ParamValue>) -> RenderedSql {
    let compiled = compile_sql(template, dialect, &declared()).expect("compiles");
    let user = alice();
    let mut slotted = slots(&declared(), params);
    let mut values = BindValues {
        params: &mut slotted,
        user: Some(&user),
    };
    compiled.render(&mut values).expect("renders")
}

/// `Ok(sql)`: the template renders to `sql` with the standard values.
/// `Err((line, column, fragment))`: compiling fails there, with `fragment` in the message.
type Want<'a> = Result<&'a str, (usize, usize, &'a str)>;

fn check(input: &str, dialect: Dialect, want: Want<'_>) {
    let got = compile_sql(input, dialect, &declared());
    match (got, want) {
        (Ok(_), Ok(sql)) => {
            let rendered = render(input, dialect, &values());
            assert_eq!(&*rendered.sql, sql, "{dialect:?}: {input:?}");
        }
        (Err(e), Err((line, column, fragment))) => {
            let at = (e.line, e.column);
            assert_eq!(at, (line, column), "{dialect:?}: {input:?}: {e}");
            assert!(e.message.contains(fragment), "{dialect:?}: {input:?}: {e}");
        }
        (got, want) => panic!("{dialect:?}: {input:?}: got {got:?}, want {want:?}"),
    }
}

fn check_all(dialect: Dialect, cases: &[(&str, Want<'_>)]) {
    for (input, want) in cases {
        check(input, dialect, *want);
    }
}

/// Rules that hold in every dialect; `@` in an expected statement stands for the
/// dialect's first placeholder.
#[test]
fn common_rules() {
    let cases: &[(&str, Want)] = &[
        (
            "SELECT * FROM t WHERE id = {{ params.id }}",
            Ok("SELECT * FROM t WHERE id = @"),
        ),
        ("SELECT {{params.id}}", Ok("SELECT @")),
        ("SELECT {{\n  params.id\n}} + 1", Ok("SELECT @ + 1")),
        ("SELECT ({{ params.id }}) + 0", Ok("SELECT (@) + 0")),
        ("SELECT 'it''s', {{ params.id }}", Ok("SELECT 'it''s', @")),
        (
            "SELECT 1 -- note\n  , {{ params.id }}",
            Ok("SELECT 1 -- note\n  , @"),
        ),
        // One statement; a trailing `;` (and what follows it) is dropped.
        ("SELECT 1;", Ok("SELECT 1")),
        ("SELECT 1 ;  /* done */\n", Ok("SELECT 1")),
        ("SELECT 1; SELECT 2", Err((1, 9, "one statement per query"))),
        ("SELECT 1;;", Err((1, 9, "one statement per query"))),
        (
            "SELECT 1; {{ params.id }}",
            Err((1, 9, "one statement per query")),
        ),
        (
            "SELECT 1; /* {{ params.id }} */",
            Err((1, 14, "inside a comment")),
        ),
        ("  -- nothing\n", Err((2, 1, "no SQL statement"))),
        (";", Err((1, 1, "no SQL statement"))),
        // Literals and comments.
        (
            "SELECT 'a {{ params.id }}'",
            Err((1, 11, "inside a string literal")),
        ),
        ("SELECT '{{'", Err((1, 9, "inside a string literal"))),
        ("SELECT\n  'abc", Err((2, 3, "unterminated string literal"))),
        (
            "SELECT 1 -- {{ params.id }}\n",
            Err((1, 13, "inside a comment")),
        ),
        (
            "SELECT /* a\n b {{ params.id }} */ 1",
            Err((2, 4, "inside a comment")),
        ),
        (
            "SELECT /* never closed",
            Err((1, 8, "unterminated block comment")),
        ),
        // A binding is a path, never an expression, and names something declared.
        (
            "SELECT {{ params.id + 1 }}",
            Err((1, 8, "is not a binding")),
        ),
        ("SELECT {{ 1 }}", Err((1, 8, "never an expression"))),
        (
            "SELECT {{ params.id | upper }}",
            Err((1, 8, "is not a binding")),
        ),
        ("SELECT {{ params['id'] }}", Err((1, 8, "is not a binding"))),
        ("SELECT {{ params.id.x }}", Err((1, 8, "is not a binding"))),
        ("SELECT {{ params.id", Err((1, 8, "unterminated binding"))),
        (
            "SELECT {{ params.nope }}",
            Err((
                1,
                8,
                "unknown param `nope` (declared: dir, id, ids, q, sort)",
            )),
        ),
        (
            "SELECT {{ user.name }}",
            Err((
                1,
                8,
                "unknown user field `name` (available: id, email, role, groups, claims.NAME)",
            )),
        ),
        // A binding must not merge with a neighbouring token.
        (
            "SELECT x{{ params.id }}",
            Err((1, 9, "binding touches `x`")),
        ),
        (
            "SELECT {{ params.id }}0",
            Err((1, 8, "binding touches `0`")),
        ),
        (
            "SELECT {{ params.id }}{{ params.id }}",
            Err((1, 8, "binding touches `{`")),
        ),
    ];
    for (dialect, placeholder) in [(Postgres, "$1"), (MySql, "?"), (Sqlite, "?")] {
        for (input, want) in cases {
            let sql = want.map(|sql| sql.replace('@', placeholder));
            check(input, dialect, sql.as_deref().map_err(|e| *e));
        }
    }
}

#[test]
fn postgres_lexing() {
    check_all(
        Postgres,
        &[
            // Dollar quoting, with and without a tag; `$$` inside a tagged body is text.
            (
                "SELECT $$ it's {x} $$, {{ params.id }}",
                Ok("SELECT $$ it's {x} $$, $1"),
            ),
            (
                "SELECT $fn$ a $$ b $ c $fn$ = {{ params.id }}",
                Ok("SELECT $fn$ a $$ b $ c $fn$ = $1"),
            ),
            (
                "SELECT $$ {{ params.id }} $$",
                Err((1, 11, "inside a dollar-quoted string")),
            ),
            (
                "SELECT $a$ $$ {{ params.id }} $a$",
                Err((1, 15, "dollar-quoted")),
            ),
            (
                "SELECT $a$ body $b$",
                Err((
                    1,
                    8,
                    "unterminated dollar-quoted string: close it with `$a$`",
                )),
            ),
            // `$` inside a name is part of it, not a dollar quote or a placeholder.
            (
                "SELECT a$1, b$$ FROM t WHERE id = {{ params.id }}",
                Ok("SELECT a$1, b$$ FROM t WHERE id = $1"),
            ),
            // Block comments nest: the binding is still inside the outer comment.
            (
                "/* a /* b */ {{ params.id }} */ SELECT 1",
                Err((1, 14, "inside a comment")),
            ),
            (
                "SELECT /* a /* b */ c */ {{ params.id }}",
                Ok("SELECT /* a /* b */ c */ $1"),
            ),
            (
                "SELECT /* a /* b */",
                Err((1, 8, "unterminated block comment")),
            ),
            // Standard strings: backslash is an ordinary character.
            ("SELECT 'a\\', {{ params.id }}", Ok("SELECT 'a\\', $1")),
            // E-strings: backslash escapes, so `\'` does not end the literal.
            (
                "SELECT E'it\\'s {{ params.id }}'",
                Err((1, 16, "inside a string literal")),
            ),
            (
                "SELECT e'it\\'s', {{ params.id }}",
                Ok("SELECT e'it\\'s', $1"),
            ),
            (
                "SELECT E'a\\\\', {{ params.id }}",
                Ok("SELECT E'a\\\\', $1"),
            ),
            (
                "SELECT E'never closed\\'",
                Err((1, 8, "unterminated string literal")),
            ),
            // A name ending in `e` is not an E-string prefix.
            (
                "SELECT type'x\\', {{ params.id }}",
                Ok("SELECT type'x\\', $1"),
            ),
            (
                "SELECT \"a\"\"b\", {{ params.id }}",
                Ok("SELECT \"a\"\"b\", $1"),
            ),
            (
                "SELECT \"col {{ params.id }}\"",
                Err((1, 13, "inside a quoted identifier")),
            ),
            (
                "SELECT \"col",
                Err((1, 8, "unterminated quoted identifier")),
            ),
            // Raw placeholders; `?` is the jsonb key operator and stays.
            (
                "SELECT * FROM t WHERE id = $1",
                Err((1, 28, "raw placeholder `$1`")),
            ),
            (
                "SELECT doc ? 'k', doc ?| {{ params.q }}",
                Ok("SELECT doc ? 'k', doc ?| $1"),
            ),
            // Each occurrence gets its own number.
            (
                "{{ params.id }} {{ user.id }} {{ params.id }}",
                Ok("$1 $2 $3"),
            ),
            // Lists bind as one array.
            ("WHERE id = ANY({{ params.ids }})", Ok("WHERE id = ANY($1)")),
            ("WHERE g = ANY({{ user.groups }})", Ok("WHERE g = ANY($1)")),
            (
                "WHERE id IN ({{ params.ids }})",
                Err((1, 14, "= ANY({{ params.ids }})")),
            ),
            (
                "WHERE id not in\n  (\n {{ params.ids }})",
                Err((3, 2, "<> ALL({{ params.ids }})")),
            ),
            (
                "WHERE g IN /* c */ ( {{ user.groups }} )",
                Err((1, 22, "= ANY({{ user.groups }})")),
            ),
            // A scalar in `IN (...)` is fine.
            (
                "WHERE id IN ({{ params.id }}, 3)",
                Ok("WHERE id IN ($1, 3)"),
            ),
            ("SELECT f(x, {{ params.ids }})", Ok("SELECT f(x, $1)")),
            ("SELECT 1 /* tail */ ;", Ok("SELECT 1 /* tail */")),
            ("SELECT {{ params.id }}::int", Ok("SELECT $1::int")),
            (
                "ORDER BY {{ params.sort }} {{ params.dir }}",
                Ok("ORDER BY \"t\".\"created_at\" DESC NULLS LAST"),
            ),
        ],
    );
}

#[test]
fn mysql_lexing() {
    check_all(
        MySql,
        &[
            // Backslash escapes in both quote styles; `"` is a string, not a name.
            ("SELECT 'it\\'s', {{ params.id }}", Ok("SELECT 'it\\'s', ?")),
            (
                "SELECT 'it\\'s {{ params.id }}'",
                Err((1, 15, "inside a string literal")),
            ),
            (
                "SELECT \"a\\\"b\" , \"c\"\"d\", {{ params.id }}",
                Ok("SELECT \"a\\\"b\" , \"c\"\"d\", ?"),
            ),
            (
                "SELECT \"{{ params.q }}\"",
                Err((1, 9, "CONCAT('%', {{ params.q }}, '%')")),
            ),
            ("SELECT 'a\\\\', {{ params.id }}", Ok("SELECT 'a\\\\', ?")),
            (
                "SELECT 'never closed\\'",
                Err((1, 8, "unterminated string literal")),
            ),
            ("SELECT `a``b`, {{ params.id }}", Ok("SELECT `a``b`, ?")),
            (
                "SELECT `{{ params.id }}`",
                Err((1, 9, "inside a quoted identifier")),
            ),
            // `#` comments, and `--` only before whitespace.
            (
                "SELECT 1 # {{ params.id }}",
                Err((1, 12, "inside a comment")),
            ),
            (
                "SELECT 1 # note\n, {{ params.id }}",
                Ok("SELECT 1 # note\n, ?"),
            ),
            (
                "SELECT 1 --\t{{ params.id }}",
                Err((1, 13, "inside a comment")),
            ),
            ("SELECT 5--{{ params.id }}", Ok("SELECT 5--?")),
            // Block comments do not nest; executable comments are comments too.
            (
                "SELECT /* a /* b */ {{ params.id }}",
                Ok("SELECT /* a /* b */ ?"),
            ),
            (
                "SELECT /*! {{ params.id }} */ 1",
                Err((1, 12, "inside a comment")),
            ),
            (
                "SELECT * FROM t WHERE id = ?",
                Err((1, 28, "raw placeholder `?`")),
            ),
            ("SELECT $a, a$b FROM t", Ok("SELECT $a, a$b FROM t")),
            ("{{ params.id }} {{ params.id }}", Ok("? ?")),
            // Lists expand; `IN (` is the usual way to use them.
            ("WHERE id IN ({{ params.ids }})", Ok("WHERE id IN (?, ?)")),
            (
                "WHERE g IN ({{ user.groups }}) AND id = {{ params.id }}",
                Ok("WHERE g IN (?, ?) AND id = ?"),
            ),
            (
                "ORDER BY {{ params.sort }} {{ params.dir }}",
                Ok("ORDER BY `t`.`created_at` DESC NULLS LAST"),
            ),
        ],
    );
}

#[test]
fn sqlite_lexing() {
    check_all(
        Sqlite,
        &[
            ("SELECT 'a\\', {{ params.id }}", Ok("SELECT 'a\\', ?")),
            ("SELECT [a''b], {{ params.id }}", Ok("SELECT [a''b], ?")),
            (
                "SELECT [col {{ params.id }}]",
                Err((1, 13, "inside a quoted identifier")),
            ),
            (
                "SELECT [col",
                Err((1, 8, "unterminated quoted identifier: close it with `]`")),
            ),
            (
                "SELECT \"{{ params.id }}\"",
                Err((1, 9, "inside a quoted identifier")),
            ),
            (
                "SELECT `{{ params.id }}`",
                Err((1, 9, "inside a quoted identifier")),
            ),
            (
                "SELECT `a``b`, \"c\"\"d\", {{ params.id }}",
                Ok("SELECT `a``b`, \"c\"\"d\", ?"),
            ),
            (
                "SELECT '%{{ params.q }}%'",
                Err((1, 10, "'%' || {{ params.q }} || '%'")),
            ),
            (
                "SELECT /* a /* b */ {{ params.id }}",
                Ok("SELECT /* a /* b */ ?"),
            ),
            ("SELECT ?", Err((1, 8, "raw placeholder `?`"))),
            ("SELECT ?12", Err((1, 8, "raw placeholder `?12`"))),
            ("SELECT :name", Err((1, 8, "raw placeholder `:name`"))),
            ("SELECT @name", Err((1, 8, "raw placeholder `@name`"))),
            ("SELECT $name", Err((1, 8, "raw placeholder `$name`"))),
            ("SELECT a$b FROM t", Ok("SELECT a$b FROM t")),
            ("WHERE id IN ({{ params.ids }})", Ok("WHERE id IN (?, ?)")),
            ("SELECT $$ x $$", Err((1, 8, "raw placeholder"))),
            (
                "ORDER BY {{ params.sort }} {{ params.dir }}",
                Ok("ORDER BY \"t\".\"created_at\" DESC NULLS LAST"),
            ),
        ],
    );
}

#[test]
fn closed_lists_are_checked_when_compiling() {
    use ParamType::{Array, Scalar};
    let cases = [
        (
            spec(Scalar(ScalarType::Identifier), None),
            "needs an `enum` list",
        ),
        (
            spec(Scalar(ScalarType::Identifier), Some(json!([1]))),
            "must be strings",
        ),
        (
            spec(Scalar(ScalarType::Identifier), Some(json!(["t..c"]))),
            "not a valid",
        ),
        (
            spec(Scalar(ScalarType::Keyword), Some(json!(["ASC; DROP"]))),
            "not an ordering keyword",
        ),
        (
            spec(Array(ScalarType::Identifier), Some(json!(["a"]))),
            "cannot be bound",
        ),
    ];
    for (param, fragment) in cases {
        let params = BTreeMap::from([("p".to_string(), param)]);
        let e = compile_sql("SELECT 1 ORDER BY {{ params.p }}", Postgres, &params).unwrap_err();
        assert_eq!((e.line, e.column), (1, 19), "{e}");
        assert!(
            e.message.contains("param `p`") && e.message.contains(fragment),
            "{e}"
        );
    }
}

#[test]
fn identifiers_are_quoted_per_dialect() {
    let params = BTreeMap::from([(
        "c".to_string(),
        spec(
            ParamType::Scalar(ScalarType::Identifier),
            Some(json!(["we\"ird`", "s.t.c"])),
        ),
    )]);
    let cases = [
        (Postgres, "we\"ird`", "\"we\"\"ird`\""),
        (Sqlite, "we\"ird`", "\"we\"\"ird`\""),
        (MySql, "we\"ird`", "`we\"ird```"),
        (Postgres, "s.t.c", "\"s\".\"t\".\"c\""),
        (MySql, "s.t.c", "`s`.`t`.`c`"),
    ];
    for (dialect, value, want) in cases {
        let compiled = compile_sql("ORDER BY {{ params.c }}", dialect, &params).unwrap();
        let values = HashMap::from([("c".to_string(), ParamValue::Text(value.into()))]);
        let mut slotted = slots(&params, &values);
        let mut bind = BindValues {
            params: &mut slotted,
            user: None,
        };
        let rendered = compiled.render(&mut bind).unwrap();
        assert_eq!(&*rendered.sql, format!("ORDER BY {want}"), "{dialect:?}");
        assert!(rendered.args.is_empty());
    }
}

#[test]
fn values_outside_the_closed_list_are_refused_at_render() {
    let compiled = compile_sql(
        "ORDER BY {{ params.sort }} {{ params.dir }}",
        Postgres,
        &declared(),
    )
    .unwrap();
    for (param, value) in [
        ("sort", ParamValue::Text("name; DROP TABLE t".into())),
        ("sort", ParamValue::Null),
        ("dir", ParamValue::Text("desc nulls last".into())),
        ("dir", ParamValue::Int(1)),
    ] {
        let mut params = values();
        params.insert(param.into(), value);
        let mut bind_slots = slots(&declared(), &params);
        let mut bind = BindValues {
            params: &mut bind_slots,
            user: None,
        };
        let e = compiled.render(&mut bind).unwrap_err();
        assert_eq!(e.param, param);
        assert!(e.message.starts_with("must be one of:"), "{e}");
    }
}

#[test]
fn values_move_into_the_statement_at_their_last_use() {
    let compiled = compile_sql(
        "SELECT {{ params.q }} WHERE {{ params.q }} IS NULL OR x = {{ params.q }} AND id = {{ params.id }}",
        Postgres,
        &declared(),
    )
    .unwrap();
    let mut named = values();
    named.insert("q".into(), ParamValue::Text("needle".into()));
    let mut slotted = slots(&declared(), &named);
    let mut bind = BindValues {
        params: &mut slotted,
        user: None,
    };
    let rendered = compiled.render(&mut bind).unwrap();
    let needle = ParamValue::Text("needle".into());
    assert_eq!(
        rendered.args,
        vec![needle.clone(), needle.clone(), needle, ParamValue::Int(7)]
    );
    // Both params were moved out at their last binding, not copied.
    let slot = |name: &str| declared().keys().position(|k| k == name).unwrap();
    assert_eq!(slotted[slot("q")], ParamValue::Null);
    assert_eq!(slotted[slot("id")], ParamValue::Null);
}

#[test]
fn static_sql_is_shared_between_renders() {
    for dialect in [Postgres, MySql, Sqlite] {
        let compiled = compile_sql(
            "SELECT * FROM t WHERE id = {{ params.id }};",
            dialect,
            &declared(),
        )
        .unwrap();
        let params = values();
        let mut bind_slots = slots(&declared(), &params);
        let mut bind = BindValues {
            params: &mut bind_slots,
            user: None,
        };
        let first = compiled.render(&mut bind).unwrap();
        let second = compiled.render(&mut bind).unwrap();
        assert!(Arc::ptr_eq(&first.sql, &second.sql), "{dialect:?}");
        assert_eq!(first.args, vec![ParamValue::Int(7)]);
    }
}

#[test]
fn args_follow_the_placeholders() {
    let template = "WHERE a = {{ params.id }} AND o = {{ user.id }} AND g = ANY({{ user.groups }}) \
                    AND b = {{ params.id }}";
    let rendered = render(template, Postgres, &values());
    assert_eq!(
        &*rendered.sql,
        "WHERE a = $1 AND o = $2 AND g = ANY($3) AND b = $4"
    );
    let text = |s: &str| ParamValue::Text(s.into());
    assert_eq!(
        rendered.args,
        vec![
            ParamValue::Int(7),
            text("u1"),
            ParamValue::Array(vec![text("sales"), text("ops")]),
            ParamValue::Int(7),
        ]
    );

    // Substituted names take no number.
    let template = "WHERE a = {{ params.id }} ORDER BY {{ params.sort }} LIMIT {{ params.id }}";
    let rendered = render(template, Postgres, &values());
    assert_eq!(
        &*rendered.sql,
        "WHERE a = $1 ORDER BY \"t\".\"created_at\" LIMIT $2"
    );
    assert_eq!(rendered.args, vec![ParamValue::Int(7), ParamValue::Int(7)]);

    let template =
        "WHERE id IN ({{ params.ids }}) AND g IN ({{ user.groups }}) AND e = {{ user.email }}";
    let rendered = render(template, MySql, &values());
    assert_eq!(
        &*rendered.sql,
        "WHERE id IN (?, ?) AND g IN (?, ?) AND e = ?"
    );
    assert_eq!(
        rendered.args,
        vec![
            ParamValue::Int(1),
            ParamValue::Int(2),
            text("sales"),
            text("ops"),
            text("alice@example.com"),
        ]
    );
}

#[test]
fn lists_need_an_item_where_they_expand() {
    let mut params = values();
    params.insert("ids".into(), ParamValue::Array(Vec::new()));
    let mut bind_slots = slots(&declared(), &params);
    let mut bind = BindValues {
        params: &mut bind_slots,
        user: None,
    };
    for dialect in [MySql, Sqlite] {
        let compiled = compile_sql("WHERE id IN ({{ params.ids }})", dialect, &declared()).unwrap();
        let e = compiled.render(&mut bind).unwrap_err();
        assert_eq!(e.param, "ids");
        assert!(e.message.contains("at least one item"), "{e}");
        // Without a caller, `user.groups` is empty too.
        let compiled = compile_sql("WHERE g IN ({{ user.groups }})", dialect, &declared()).unwrap();
        assert_eq!(compiled.render(&mut bind).unwrap_err().param, "user.groups");
    }
    // PostgreSQL binds the empty array as it is.
    let compiled = compile_sql("WHERE id = ANY({{ params.ids }})", Postgres, &declared()).unwrap();
    assert_eq!(
        compiled.render(&mut bind).unwrap().args,
        vec![ParamValue::Array(Vec::new())]
    );

    // An absent optional list binds a single NULL, which matches nothing.
    params.insert("ids".into(), ParamValue::Null);
    let mut bind_slots = slots(&declared(), &params);
    let mut bind = BindValues {
        params: &mut bind_slots,
        user: None,
    };
    let compiled = compile_sql("WHERE id IN ({{ params.ids }})", MySql, &declared()).unwrap();
    let rendered = compiled.render(&mut bind).unwrap();
    assert_eq!(
        (&*rendered.sql, rendered.args),
        ("WHERE id IN (?)", vec![ParamValue::Null])
    );
}

#[test]
fn user_bindings() {
    let no_user = compile_sql("SELECT {{ params.id }}", Postgres, &declared()).unwrap();
    assert!(!no_user.uses_user());

    let compiled = compile_sql(
        "SELECT {{ user.id }}, {{ user.email }}, {{ user.role }}, {{ user.groups }}",
        Postgres,
        &declared(),
    )
    .unwrap();
    assert!(compiled.uses_user());
    let params = values();
    let mut anonymous_slots = slots(&declared(), &params);
    let mut anonymous = BindValues {
        params: &mut anonymous_slots,
        user: None,
    };
    assert_eq!(
        compiled.render(&mut anonymous).unwrap().args,
        vec![
            ParamValue::Null,
            ParamValue::Null,
            ParamValue::Null,
            ParamValue::Array(Vec::new())
        ]
    );
    let user = alice();
    let mut signed_in_slots = slots(&declared(), &params);
    let mut signed_in = BindValues {
        params: &mut signed_in_slots,
        user: Some(&user),
    };
    assert_eq!(
        compiled.render(&mut signed_in).unwrap().args[2],
        ParamValue::Text("admin".into())
    );
}

#[test]
fn missing_param_value_is_refused() {
    let compiled = compile_sql("SELECT {{ params.q }}", Sqlite, &declared()).unwrap();
    // A value vector shorter than the declared params (never built by validation).
    let mut bind = BindValues {
        params: &mut [],
        user: None,
    };
    assert_eq!(compiled.render(&mut bind).unwrap_err().param, "q");
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = compile_sql("SELECT 'é', 'ü{{ params.q }}'", Postgres, &declared()).unwrap_err();
    assert_eq!((e.line, e.column), (1, 15));
}

#[test]
fn postgres_statements_carry_each_placeholders_declared_type() {
    use ParamType::{Array, Scalar};
    let template = "SELECT {{ params.q }} IS NULL, {{ params.id }}, {{ params.ids }}, \
                    {{ user.id }}, {{ user.groups }}, {{ params.q }} ORDER BY {{ params.sort }}";
    let rendered = render(template, Postgres, &values());
    assert_eq!(
        rendered.sql.as_ref(),
        "SELECT $1 IS NULL, $2, $3, $4, $5, $6 ORDER BY \"t\".\"created_at\""
    );
    assert_eq!(
        rendered.types.as_ref(),
        [
            Scalar(ScalarType::Text),
            Scalar(ScalarType::Int),
            Array(ScalarType::Int),
            Scalar(ScalarType::Text),
            Array(ScalarType::Text),
            Scalar(ScalarType::Text),
        ]
    );
    // MySQL and SQLite expand lists and type nothing.
    assert!(render(template, MySql, &values()).types.is_empty());
    assert!(render(template, Sqlite, &values()).types.is_empty());
}

#[test]
fn describe_statements_cover_every_closed_list_choice_with_one_placeholder_per_list() {
    let texts = |template: &str, dialect: Dialect| -> Vec<String> {
        compile_sql(template, dialect, &declared())
            .expect("compiles")
            .describe_statements()
            .expect("few enough variants")
            .iter()
            .map(|statement| statement.sql.to_string())
            .collect()
    };
    assert_eq!(
        texts("SELECT 1 WHERE id = {{ params.id }}", Postgres),
        vec!["SELECT 1 WHERE id = $1"]
    );
    let mut sorted = texts(
        "SELECT id FROM t WHERE id IN ({{ params.ids }}) ORDER BY {{ params.sort }} {{ params.dir }}",
        MySql,
    );
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            "SELECT id FROM t WHERE id IN (?) ORDER BY `name` ASC",
            "SELECT id FROM t WHERE id IN (?) ORDER BY `name` DESC NULLS LAST",
            "SELECT id FROM t WHERE id IN (?) ORDER BY `t`.`created_at` ASC",
            "SELECT id FROM t WHERE id IN (?) ORDER BY `t`.`created_at` DESC NULLS LAST",
        ]
    );
}
