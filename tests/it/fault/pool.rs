//! Pool reuse.
//!
//! Idle MariaDB connections are kept and reused; mysql_async used to close each one as it
//! came back (its default idle lifetime is zero), so every request paid a new connection.

use mysql_async::prelude::Queryable;
use serde_json::json;

use super::*;

#[tokio::test]
async fn idle_mariadb_connections_are_kept_and_reused() {
    let mut admins = Admins::connect().await;
    let database = MyDatabase::create(&mut admins.my).await;
    let queries = "      my_id: { datasource: my, sql: \"SELECT CONNECTION_ID() AS id\" }\n";
    let gateway = TestGateway::start(&catalog(&database.name, 4, queries)).await;

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, body) = gateway.call("f", "my_id", json!({})).await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["rows"][0][0].clone());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one request after another runs on one kept connection: {ids:?}"
    );
    let idle: Vec<u64> = admins
        .my
        .exec(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND = 'Sleep'",
            (&database.name,),
        )
        .await
        .unwrap();
    assert_eq!(
        idle.len(),
        1,
        "the connection stays open while idle: {idle:?}"
    );
    gateway.stop().await;
    database.drop(&mut admins.my).await;
}
