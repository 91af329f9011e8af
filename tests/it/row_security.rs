//! Row security inside PostgreSQL (`row_security`), against the real server and real RLS
//! policies: each caller sees only their own rows through the same query; the role and
//! claims never reach the next request on the same pooled connection (a pool of one);
//! a failed statement and a failed COMMIT roll back and leave the connection clean; the
//! catalog compiler refuses bad role names and non-PostgreSQL datasources.

use serde_json::{Value, json};
use sluice::auth::Role;
use sluice::config::QueryDefaults;

use crate::auth_common::{Browser, PASSWORD, gateway_with, user};
use crate::common::{PG_HOST, PG_PORT, PgSchema, pg_admin, seal, unique_name};

/// The roles one test creates (cluster-wide, so uniquely named and dropped at the end).
struct Roles {
    login: String,
    member: String,
    anon: String,
}

impl Roles {
    async fn create(admin: &tokio_postgres::Client, schema: &str) -> Roles {
        let base = unique_name("rls");
        let roles = Roles {
            login: format!("{base}_login"),
            member: format!("{base}_member"),
            anon: format!("{base}_anon"),
        };
        let Roles {
            login,
            member,
            anon,
        } = &roles;
        // The PostgREST pattern: a login role that holds nothing itself (NOINHERIT) and may
        // only switch to the roles it was granted.
        admin
            .batch_execute(&format!(
                "CREATE ROLE {member} NOLOGIN; CREATE ROLE {anon} NOLOGIN;
                 CREATE ROLE {login} LOGIN NOINHERIT; GRANT {member}, {anon} TO {login};
                 CREATE TABLE {schema}.notes (owner text NOT NULL, body text NOT NULL);
                 ALTER TABLE {schema}.notes ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {schema}.notes FORCE ROW LEVEL SECURITY;
                 CREATE POLICY own ON {schema}.notes
                   USING (owner = current_setting('request.jwt.claim.sub', true))
                   WITH CHECK (owner = current_setting('request.jwt.claim.sub', true));
                 CREATE TABLE {schema}.parents (id int PRIMARY KEY);
                 CREATE TABLE {schema}.children (
                   parent int REFERENCES {schema}.parents (id) DEFERRABLE INITIALLY DEFERRED,
                   owner text NOT NULL);
                 GRANT USAGE ON SCHEMA {schema} TO {member}, {anon};
                 GRANT SELECT, INSERT ON {schema}.notes TO {member}, {anon};
                 GRANT SELECT, INSERT ON {schema}.children TO {member};"
            ))
            .await
            .expect("create the roles and the RLS table");
        roles
    }

    async fn drop(&self, admin: &tokio_postgres::Client) {
        for role in [&self.login, &self.member, &self.anon] {
            let _ = admin
                .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
                .await;
        }
    }
}

fn catalog(schema: &str, roles: &Roles) -> String {
    let Roles {
        login,
        member,
        anon,
    } = roles;
    let password = seal("rls", "password", "unused-with-trust-auth");
    format!(
        r#"
datasources:
  rls:
    kind: postgres
    host: {PG_HOST}
    port: {PG_PORT}
    database: test
    user: {login}
    password: {password}
    pool_size: 1
    egress_allow: [127.0.0.1/32]
    row_security:
      role: {member}
      anonymous: {anon}
apps:
  notes:
    visibility: public
    grants: {{ roles: [viewer, developer], anonymous: true }}
    queries:
      mine:
        datasource: rls
        sql: SELECT body FROM {schema}.notes ORDER BY body
      whoami:
        datasource: rls
        sql: >-
          SELECT current_user::text AS role, pg_backend_pid() AS pid,
          current_setting('request.jwt.claims', true) AS claims,
          current_setting('request.jwt.claim.sub', true) AS sub,
          current_setting('request.jwt.claim.role', true) AS sluice_role,
          current_setting('request.jwt.claim.email', true) AS email
      bare:
        datasource: rls
        row_security: false
        sql: >-
          SELECT current_user::text AS role, pg_backend_pid() AS pid,
          coalesce(current_setting('request.jwt.claims', true), '') AS claims,
          coalesce(current_setting('request.jwt.claim.sub', true), '') AS sub,
          coalesce(current_setting('request.jwt.claim.email', true), '') AS email
      members_only:
        datasource: rls
        row_security: {{ role: {member} }}
        sql: SELECT body FROM {schema}.notes
      divide:
        datasource: rls
        sql: SELECT 1 / (count(*) - count(*)) AS boom FROM {schema}.notes
      orphan:
        datasource: rls
        sql: >-
          INSERT INTO {schema}.children (parent, owner)
          VALUES (42, current_setting('request.jwt.claim.sub', true))
      write_note:
        datasource: rls
        sql: >-
          INSERT INTO {schema}.notes (owner, body)
          VALUES (current_setting('request.jwt.claim.sub', true), {{{{ params.body }}}})
        params:
          body: {{ type: text, required: true }}
"#
    )
}

fn rows(reply: &crate::auth_common::Reply) -> Vec<Value> {
    reply.expect_ok()["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The one row of a `whoami`/`bare` answer as a map of column name to value.
fn one_row(reply: &crate::auth_common::Reply) -> serde_json::Map<String, Value> {
    let body = reply.expect_ok();
    let columns: Vec<String> = body["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    let row = body["rows"][0].as_array().expect("one row").clone();
    columns.into_iter().zip(row).collect()
}

#[tokio::test]
async fn each_caller_sees_only_their_rows_and_nothing_leaks_on_the_pooled_connection() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    let roles = Roles::create(&admin, s).await;
    let (gateway, _clock) = gateway_with(&catalog(s, &roles), &[]).await;
    let ann = gateway
        .auth
        .create_user(
            "ann@rls.example",
            "",
            Role::Viewer,
            vec!["field".into()],
            Some(PASSWORD.into()),
            "test",
        )
        .await
        .expect("create ann");
    let bob = user(&gateway, "bob@rls.example", Role::Developer).await;
    admin
        .execute(
            &format!(
                "INSERT INTO {s}.notes (owner, body) VALUES ($1, 'ann-1'), ($1, 'ann-2'), \
                 ($2, 'bob-1')"
            ),
            &[&ann.id, &bob.id],
        )
        .await
        .unwrap();

    let mut ann_browser = Browser::new(&gateway);
    ann_browser.login_ok("ann@rls.example").await;
    let mut bob_browser = Browser::new(&gateway);
    bob_browser.login_ok("bob@rls.example").await;
    let mut anonymous = Browser::new(&gateway);

    // The same query, three callers, three answers.
    let mine = rows(&ann_browser.run("notes", "mine").await);
    assert_eq!(mine, vec![json!(["ann-1"]), json!(["ann-2"])]);
    assert_eq!(
        rows(&bob_browser.run("notes", "mine").await),
        vec![json!(["bob-1"])]
    );
    // Anonymous runs as the anonymous role with no sub: it owns nothing.
    assert_eq!(
        rows(&anonymous.run("notes", "mine").await),
        Vec::<Value>::new()
    );

    // What the connection is set up with, seen from inside the query.
    let seen = one_row(&ann_browser.run("notes", "whoami").await);
    assert_eq!(seen["role"], json!(roles.member));
    assert_eq!(seen["sub"], json!(ann.id));
    assert_eq!(seen["sluice_role"], json!("viewer"));
    assert_eq!(seen["email"], json!("ann@rls.example"));
    let claims: Value = serde_json::from_str(seen["claims"].as_str().unwrap()).unwrap();
    assert_eq!(
        claims,
        json!({"sub": ann.id, "email": "ann@rls.example", "role": "viewer", "groups": ["field"]})
    );
    let pid = seen["pid"].clone();
    let anon_seen = one_row(&anonymous.run("notes", "whoami").await);
    assert_eq!(anon_seen["role"], json!(roles.anon));
    assert_eq!(anon_seen["sluice_role"], json!("anonymous"));
    assert_eq!(anon_seen["pid"], pid, "a pool of one connection");

    // Straight after a caller's run, on the same connection, a query without row security
    // runs as the login role with no claims.
    ann_browser.run("notes", "whoami").await.expect_ok();
    let after = one_row(&bob_browser.run("notes", "bare").await);
    assert_eq!(after["pid"], pid, "the same pooled connection");
    assert_eq!(after["role"], json!(roles.login));
    assert_eq!(after["claims"], json!(""));
    assert_eq!(after["sub"], json!(""));
    assert_eq!(after["email"], json!(""));

    // Writes go through the policy's WITH CHECK as the caller.
    ann_browser
        .post(
            "/v1/apps/notes/queries/write_note",
            json!({"params": {"body": "ann-3"}}),
        )
        .await
        .expect_ok();
    assert_eq!(rows(&ann_browser.run("notes", "mine").await).len(), 3);
    assert_eq!(rows(&bob_browser.run("notes", "mine").await).len(), 1);

    // A query's own mapping without an anonymous role: anonymous callers are refused
    // before the database is reached; signed-in ones run.
    anonymous
        .run("notes", "members_only")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(
        rows(&bob_browser.run("notes", "members_only").await),
        vec![json!(["bob-1"])]
    );

    gateway.stop().await;
    roles.drop(&admin).await;
    schema.drop(&admin).await;
}

#[tokio::test]
async fn a_failed_statement_or_commit_rolls_back_and_leaves_the_connection_clean() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    let roles = Roles::create(&admin, s).await;
    let (gateway, _clock) = gateway_with(&catalog(s, &roles), &[]).await;
    let ann = user(&gateway, "ann@rls-fail.example", Role::Viewer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("ann@rls-fail.example").await;
    let clean = |reply: &crate::auth_common::Reply| {
        let row = one_row(reply);
        assert_eq!(row["role"], json!(roles.login), "{row:?}");
        assert_eq!(row["claims"], json!(""), "{row:?}");
        assert_eq!(row["sub"], json!(""), "{row:?}");
    };

    // An error in the statement: the transaction is rolled back.
    browser
        .run("notes", "divide")
        .await
        .expect_error(400, "invalid_data");
    clean(&browser.run("notes", "bare").await);

    // An error at COMMIT (a deferred foreign key): nothing is kept, and the connection
    // is clean afterwards.
    let failed = browser.run("notes", "orphan").await;
    assert!(
        failed.status >= 400 && failed.status < 500,
        "{}: {}",
        failed.status,
        failed.text
    );
    clean(&browser.run("notes", "bare").await);
    let kept: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {s}.children"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0, "the failed COMMIT kept nothing");

    // Once the parent exists the same write commits, and the connection is clean again.
    admin
        .execute(&format!("INSERT INTO {s}.parents VALUES (42)"), &[])
        .await
        .unwrap();
    browser.run("notes", "orphan").await.expect_ok();
    let kept: Vec<String> = admin
        .query(&format!("SELECT owner FROM {s}.children"), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kept, vec![ann.id.clone()], "a committed write is kept");
    clean(&browser.run("notes", "bare").await);

    gateway.stop().await;
    roles.drop(&admin).await;
    schema.drop(&admin).await;
}

#[test]
fn the_compiler_refuses_bad_role_names_and_other_databases() {
    let compile = |yaml: &str| {
        let spec = sluice::spec::yaml::parse(yaml).unwrap_or_else(|e| panic!("{e}"));
        sluice::catalog::compile::compile(&spec, QueryDefaults::default())
            .err()
            .map(|errors| errors.to_string())
    };
    let pg = |extra: &str| {
        format!(
            "datasources:\n  db:\n    kind: postgres\n    host: 127.0.0.1\n    database: d\n    \
             user: u\n    row_security:\n{extra}apps:\n  a:\n    queries:\n      q: {{ datasource: db, sql: SELECT 1 }}\n"
        )
    };
    assert_eq!(compile(&pg("      role: web_user\n")), None);
    let refused = compile(&pg("      role: 'web_user\"; RESET ROLE; --'\n")).unwrap();
    assert!(
        refused.contains("datasources.db.row_security.role") && refused.contains("not a role name"),
        "{refused}"
    );
    let refused = compile(&pg("      role: web_user\n      admin: Admin\n")).unwrap();
    assert!(
        refused.contains("datasources.db.row_security.admin"),
        "{refused}"
    );
    let refused = compile(&pg("      role: pg_read_all_data\n")).unwrap();
    assert!(refused.contains("reserved"), "{refused}");

    // MySQL/MariaDB and SQLite have no SET LOCAL ROLE: refused on the datasource and on a
    // query.
    let refused = compile(
        "datasources:\n  my:\n    kind: mysql\n    host: 127.0.0.1\n    database: d\n    user: u\n    \
         row_security: { role: web_user }\n",
    )
    .unwrap();
    assert!(
        refused.contains("datasources.my.row_security") && refused.contains("PostgreSQL"),
        "{refused}"
    );
    let refused = compile(
        "datasources:\n  lite:\n    kind: sqlite\n    path: /tmp/unused.db\n\
         apps:\n  a:\n    queries:\n      q:\n        datasource: lite\n        sql: SELECT 1\n        \
         row_security: { role: web_user }\n",
    )
    .unwrap();
    assert!(
        refused.contains("apps.a.queries.q.row_security") && refused.contains("not PostgreSQL"),
        "{refused}"
    );
    // `false` turns it off anywhere; an unknown key is a parse error naming it.
    let off = "datasources:\n  lite:\n    kind: sqlite\n    path: /tmp/unused.db\n\
         apps:\n  a:\n    queries:\n      q:\n        datasource: lite\n        sql: SELECT 1\n        \
         row_security: false\n";
    assert_eq!(compile(off), None);
    let typo = sluice::spec::yaml::parse(&pg("      role: web_user\n      viewers: x\n"))
        .unwrap_err()
        .to_string();
    assert!(typo.contains("viewers"), "{typo}");
}
