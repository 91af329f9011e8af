//! Datasource failures answer alike on every driver: a database account that is dropped
//! while the gateway uses it (the pool's connections killed, new ones refused by the server)
//! is 503 `datasource_unavailable` with `Retry-After` on PostgreSQL and on MariaDB, never a
//! 502 `query_failed` on one of them.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::common::*;

const PASSWORD: &str = "gone-user-pw-8c1e";

fn catalog(pg_user: &str, my_user: &str) -> String {
    format!(
        "datasources:\n\
         \x20 pg:\n    kind: postgres\n    host: {PG_HOST}\n    port: {PG_PORT}\n    database: test\n    user: {pg_user}\n    password: {pg_password}\n    pool_size: 2\n    egress_allow: [127.0.0.1/32]\n\
         \x20 my:\n    kind: mysql\n    host: 127.0.0.1\n    port: 3306\n    database: test\n    user: {my_user}\n    password: {my_password}\n    pool_size: 2\n    egress_allow: [127.0.0.1/32]\n\
         apps:\n  t:\n    visibility: public\n    grants: {{ anonymous: true }}\n    queries:\n\
         \x20     pg_one: {{ datasource: pg, sql: \"SELECT 1 AS one\" }}\n\
         \x20     my_one: {{ datasource: my, sql: \"SELECT 1 AS one\" }}\n",
        pg_password = seal("pg", "password", PASSWORD),
        my_password = seal("my", "password", PASSWORD),
    )
}

#[tokio::test]
async fn a_dropped_database_user_is_unavailable_on_every_driver() {
    let pg = pg_admin().await;
    let mut my = mysql_admin().await;
    let pg_user = unique_name("gone");
    let my_user = unique_name("gone");
    pg.batch_execute(&format!(
        "CREATE ROLE {pg_user} LOGIN PASSWORD '{PASSWORD}'"
    ))
    .await
    .expect("create role");
    my.query_drop(format!(
        "CREATE USER '{my_user}'@'%' IDENTIFIED BY '{PASSWORD}'"
    ))
    .await
    .expect("create user");
    my.query_drop(format!("GRANT SELECT ON test.* TO '{my_user}'@'%'"))
        .await
        .expect("grant");
    let gateway = TestGateway::start(&catalog(&pg_user, &my_user)).await;
    for query in ["pg_one", "my_one"] {
        let (status, body) = gateway.call("t", query, json!({})).await;
        assert_eq!(status, 200, "{query} before the drop: {body}");
    }

    // The account's sessions end (first: once the role is gone PostgreSQL no longer names
    // them), then the account goes.
    pg.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        &[&pg_user],
    )
    .await
    .expect("terminate");
    pg.batch_execute(&format!("DROP ROLE {pg_user}"))
        .await
        .expect("drop role");
    let ids: Vec<u64> = my
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
            (my_user.as_str(),),
        )
        .await
        .expect("processlist");
    for id in ids {
        let _ = my.query_drop(format!("KILL {id}")).await;
    }
    my.query_drop(format!("DROP USER '{my_user}'@'%'"))
        .await
        .expect("drop user");

    // Every answer until the account is back: 503 with a retry hint, on both drivers; at
    // least the answers after the pool has found its connections gone are the server's
    // refusal of the account itself.
    for query in ["pg_one", "my_one"] {
        for attempt in 0..4 {
            let (status, _, text) = gateway.post_raw("t", query, "{}").await;
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (503, Some("datasource_unavailable")),
                "{query} attempt {attempt}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
