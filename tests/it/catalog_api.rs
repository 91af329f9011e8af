//! The catalog API (`/v1/admin/datasources`, `/apps`, `/apps/{app}/queries`, previews):
//! conditional writes (ETag / If-Match, 412 and 428, concurrent writers), every write a
//! revision that serves at once, failed writes changing nothing, dry runs, write-only
//! secrets (plaintext sealed for its owner, never shown, a swapped ciphertext refused),
//! SQLite paths that could reach Sluice's own store, who may edit what (every admin route
//! against a viewer, an out-of-scope developer and an API key), and previews as a user.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use sluice::auth::Role;

use crate::auth_common::{self, ADMIN_TOKEN, Browser, PASSWORD};
use crate::common::{self, TestGateway};

/// One answer.
struct Answer {
    status: u16,
    etag: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The body with the request id blanked (for byte-for-byte comparisons).
    fn without_request_id(&self) -> String {
        let mut value = self.json();
        if let Some(error) = value.get_mut("error") {
            error["request_id"] = json!("");
        }
        value.to_string()
    }
}

/// A client of the admin API: the admin token, or a session cookie, or an API key.
struct Admin {
    client: reqwest::Client,
    base: String,
    bearer: Option<String>,
    cookie: Option<String>,
}

impl Admin {
    fn token(gateway: &TestGateway) -> Admin {
        Admin {
            client: reqwest::Client::new(),
            base: gateway.url(""),
            bearer: Some(ADMIN_TOKEN.into()),
            cookie: None,
        }
    }

    fn session(gateway: &TestGateway, browser: &Browser) -> Admin {
        Admin {
            cookie: browser.cookie.clone(),
            bearer: browser.bearer.clone(),
            ..Admin::token(gateway)
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin");
        if let Some(bearer) = &self.bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        Answer {
            status: response.status().as_u16(),
            etag: response
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_string()),
            text: response.text().await.expect("body"),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn put(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::PUT, path, Some(body), headers).await
    }

    async fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(Method::DELETE, path, None, headers).await
    }
}

fn if_match(etag: &Option<String>) -> [(&'static str, &str); 1] {
    [("if-match", etag.as_deref().expect("an ETag"))]
}

async fn gateway(env: &[(&str, &str)]) -> TestGateway {
    let mut vars = vec![("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)];
    vars.extend_from_slice(env);
    auth_common::gateway(&vars).await.0
}

#[tokio::test]
async fn writes_are_conditional_serve_at_once_and_failures_change_nothing() {
    let gateway = gateway(&[]).await;
    let admin = Admin::token(&gateway);
    let path = "/v1/admin/apps/pub/queries/added";
    // Create: no precondition needed; 201 with an ETag; it serves at once (no signal).
    let draft = json!({ "datasource": "pg", "sql": "SELECT {{ params.n }}::int + 1 AS n",
        "params": { "n": { "type": "int", "required": true } } });
    let created = admin.put(path, &draft, &[]).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let first_revision = created.json()["revision"].as_i64().unwrap();
    let (status, rows) = gateway.call("pub", "added", json!({ "n": 41 })).await;
    assert_eq!(
        (status, rows["rows"][0][0].clone()),
        (200, json!(42)),
        "{rows}"
    );
    let read = admin.get(path).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.etag, created.etag);
    assert_eq!(read.json()["sql"], draft["sql"]);
    // Creating again never overwrites: 428 without a precondition, 412 with If-None-Match.
    let again = admin.put(path, &draft, &[]).await;
    assert_eq!(
        (again.status, again.code()),
        (428, "precondition_required".into())
    );
    let again = admin.put(path, &draft, &[("if-none-match", "*")]).await;
    assert_eq!(
        (again.status, again.code()),
        (412, "precondition_failed".into())
    );

    // Replace with the right ETag: a new revision, a new ETag, served at once.
    let mut changed = draft.clone();
    changed["sql"] = json!("SELECT {{ params.n }}::int + 2 AS n");
    let replaced = admin.put(path, &changed, &if_match(&created.etag)).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_ne!(replaced.etag, created.etag);
    assert_eq!(
        replaced.json()["revision"].as_i64().unwrap(),
        first_revision + 1
    );
    let (_, rows) = gateway.call("pub", "added", json!({ "n": 41 })).await;
    assert_eq!(rows["rows"][0][0], json!(43));
    // A stale ETag: 412, nothing stored.
    let mut lost = draft.clone();
    lost["sql"] = json!("SELECT 0 AS n");
    let stale = admin.put(path, &lost, &if_match(&created.etag)).await;
    assert_eq!(
        (stale.status, stale.code()),
        (412, "precondition_failed".into())
    );
    // A template that does not compile: 422 listing the problem at its location; nothing
    // stored, the previous version still serves.
    let mut broken = changed.clone();
    broken["sql"] = json!("SELECT {{ params.missing }} AS n");
    let refused = admin.put(path, &broken, &if_match(&replaced.etag)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "invalid_catalog".into()),
        "{}",
        refused.text
    );
    let problems = refused.json()["error"]["problems"].clone();
    assert_eq!(
        problems[0]["location"], "apps.pub.queries.added.sql",
        "{problems}"
    );
    // Unknown members, a wrong type, a bad name: 400 naming them.
    let mut unknown = changed.clone();
    unknown["sqll"] = json!("x");
    let answer = admin.put(path, &unknown, &if_match(&replaced.etag)).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert!(answer.text.contains("sqll"), "{}", answer.text);
    let answer = admin
        .put("/v1/admin/apps/pub/queries/bad%20name", &draft, &[])
        .await;
    assert_eq!((answer.status, answer.code()), (400, "invalid_name".into()));
    let answer = admin
        .send(Method::PUT, path, None, &if_match(&replaced.etag))
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    // A dry run checks and reports, storing nothing.
    let mut dry = changed.clone();
    dry["sql"] = json!("SELECT {{ params.n }}::int + 3 AS n");
    let report = admin
        .put(
            &format!("{path}?dry_run=true"),
            &dry,
            &if_match(&replaced.etag),
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.text);
    assert_eq!(report.json()["dry_run"], true);
    assert_eq!(report.json()["changes"], json!(["~ query pub/added"]));
    assert_eq!(report.json()["fields"], json!(["sql"]));
    let dry_broken = admin
        .put(
            &format!("{path}?dry_run=true"),
            &broken,
            &if_match(&replaced.etag),
        )
        .await;
    assert_eq!(dry_broken.status, 422);
    let (_, rows) = gateway.call("pub", "added", json!({ "n": 41 })).await;
    assert_eq!(rows["rows"][0][0], json!(43));
    let now = admin.get(path).await;
    assert_eq!(now.etag, replaced.etag);
    assert_eq!(now.json()["revision"].as_i64().unwrap(), first_revision + 1);

    // Two writers with the same ETag at once: exactly one wins.
    let mut a = changed.clone();
    a["sql"] = json!("SELECT {{ params.n }}::int + 4 AS n");
    let b = dry.clone();
    let precondition = if_match(&replaced.etag);
    let (one, two) = tokio::join!(
        admin.put(path, &a, &precondition),
        admin.put(path, &b, &precondition),
    );
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [200, 412], "{} / {}", one.text, two.text);

    // Delete: If-Match required; then the query is gone from the view plane.
    let current = admin.get(path).await;
    let answer = admin.delete(path, &[]).await;
    assert_eq!(answer.status, 428);
    let deleted = admin.delete(path, &if_match(&current.etag)).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let (status, _) = gateway.call("pub", "added", json!({ "n": 1 })).await;
    assert_eq!(status, 404);
    let answer = admin.get(path).await;
    assert_eq!((answer.status, answer.code()), (404, "not_found".into()));
    let answer = admin.delete(path, &if_match(&current.etag)).await;
    assert_eq!(answer.status, 412);
    // A datasource in use cannot be deleted; the audit log names the changes, field names only.
    let pg = admin.get("/v1/admin/datasources/pg").await;
    let answer = admin
        .delete("/v1/admin/datasources/pg", &if_match(&pg.etag))
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (409, "datasource_in_use".into())
    );
    let audit = admin.get("/v1/admin/audit?limit=100").await.text;
    assert!(audit.contains("catalog_changed"), "{audit}");
    assert!(audit.contains(r#"\"fields\":[\"sql\"]"#), "{audit}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_querys_history_lists_its_versions_and_a_rollback_is_a_conditional_write() {
    let gateway = gateway(&[]).await;
    let admin = Admin::token(&gateway);
    let path = "/v1/admin/apps/pub/queries/versioned";
    let history = format!("{path}/history");
    let version = |n: i32| json!({ "datasource": "pg", "sql": format!("SELECT {n} AS n") });
    let first = admin.put(path, &version(1), &[]).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = admin.put(path, &version(2), &if_match(&first.etag)).await;
    assert_eq!(second.status, 200, "{}", second.text);
    // A write elsewhere in the catalog is a revision that leaves this query as it was.
    let other = admin
        .put("/v1/admin/apps/pub/queries/other", &version(9), &[])
        .await;
    assert_eq!(other.status, 201, "{}", other.text);

    let listed = admin.get(&history).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let body = listed.json();
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{body}");
    assert_eq!(versions[0]["query"]["sql"], "SELECT 2 AS n");
    assert_eq!(versions[0]["etag"].as_str(), second.etag.as_deref());
    assert_eq!(versions[1]["query"]["sql"], "SELECT 1 AS n");
    assert_eq!(versions[1]["etag"].as_str(), first.etag.as_deref());
    assert_eq!(
        versions[0]["revision"].as_i64().unwrap(),
        versions[1]["revision"].as_i64().unwrap() + 1
    );
    assert!(versions[0]["source"].as_str().unwrap().starts_with("api: "));

    // Rolling back: the old version written over the current one, with its ETag.
    let rolled = admin
        .put(path, &versions[1]["query"], &if_match(&second.etag))
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text);
    let (_, rows) = gateway.call("pub", "versioned", json!({})).await;
    assert_eq!(rows["rows"][0][0], json!(1), "{rows}");
    let after = admin.get(&history).await.json();
    assert_eq!(after["versions"].as_array().unwrap().len(), 3, "{after}");
    assert_eq!(after["versions"][0]["query"]["sql"], "SELECT 1 AS n");

    // Deleted: the newest version is `null`; an unknown app is the usual 404.
    let deleted = admin.delete(path, &if_match(&rolled.etag)).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    let after = admin.get(&history).await.json();
    assert_eq!(after["versions"][0]["query"], Value::Null, "{after}");
    let missing = admin.get("/v1/admin/apps/nope/queries/q/history").await;
    assert_eq!((missing.status, missing.code()), (404, "not_found".into()));
    gateway.stop().await;
}

#[tokio::test]
async fn app_settings_are_edited_apart_from_their_queries() {
    let gateway = gateway(&[]).await;
    let admin = Admin::token(&gateway);
    let app = admin.get("/v1/admin/apps/ws").await;
    assert_eq!(app.status, 200);
    let mut view = app.json();
    assert_eq!(view["queries"], json!(["other", "q", "whoami"]));
    // Sending the read view back with one change keeps the queries.
    view["visibility"] = json!("private");
    let saved = admin
        .put("/v1/admin/apps/ws", &view, &if_match(&app.etag))
        .await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    assert_eq!(saved.json()["visibility"], "private");
    assert_eq!(saved.json()["queries"], json!(["other", "q", "whoami"]));
    // Queries cannot be changed through the app resource.
    view["queries"] = json!(["q"]);
    let refused = admin
        .put("/v1/admin/apps/ws", &view, &if_match(&saved.etag))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    // A new app, then a query in it; deleting the app needs its ETag and removes both.
    let created = admin
        .put(
            "/v1/admin/apps/fresh",
            &json!({ "visibility": "public", "grants": { "anonymous": true } }),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let query = admin
        .put(
            "/v1/admin/apps/fresh/queries/one",
            &json!({ "datasource": "pg", "sql": "SELECT 1 AS one" }),
            &[],
        )
        .await;
    assert_eq!(query.status, 201, "{}", query.text);
    assert_eq!(gateway.call("fresh", "one", json!({})).await.0, 200);
    let listing = admin.get("/v1/admin/apps/fresh/queries").await.json();
    assert_eq!(listing["queries"][0]["name"], "one");
    let app = admin.get("/v1/admin/apps/fresh").await;
    let deleted = admin
        .delete("/v1/admin/apps/fresh", &if_match(&app.etag))
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(gateway.call("fresh", "one", json!({})).await.0, 404);
    // A query in a missing app: 404 for the app.
    let answer = admin
        .put(
            "/v1/admin/apps/nowhere/queries/one",
            &json!({ "datasource": "pg", "sql": "SELECT 1" }),
            &[],
        )
        .await;
    assert_eq!((answer.status, answer.code()), (404, "not_found".into()));
    gateway.stop().await;
}

/// A MariaDB account with a password: a datasource whose secret is sent in plaintext can
/// only connect if the gateway sealed and opened it right.
async fn mariadb_account() -> (String, String, common::MyDatabase) {
    let mut conn = common::mysql_admin().await;
    let database = common::MyDatabase::create(&mut conn).await;
    let user = common::unique_name("api_user");
    let password = format!("canary-secret-{}", common::unique_name("pw"));
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"
    ))
    .await
    .unwrap();
    conn.query_drop(format!(
        "GRANT SELECT ON `{}`.* TO '{user}'@'%'",
        database.name
    ))
    .await
    .unwrap();
    (user, password, database)
}

#[tokio::test]
async fn secrets_are_write_only_and_bound_to_their_datasource() {
    let gateway = gateway(&[]).await;
    let admin = Admin::token(&gateway);
    let (user, password, database) = mariadb_account().await;
    let datasource = json!({
        "kind": "mysql", "host": "127.0.0.1", "port": 3306, "database": database.name,
        "user": user, "password": { "plaintext": password }, "egress_allow": ["127.0.0.1/32"],
    });
    let created = admin
        .put("/v1/admin/datasources/maria", &datasource, &[])
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let shown = created.json();
    assert_eq!(shown["password"]["set"], true, "{shown}");
    assert!(shown["password"]["updated_at"].is_string(), "{shown}");
    // A query through it works: the plaintext was sealed for this datasource and opened.
    let query = json!({ "datasource": "maria", "sql": "SELECT CURRENT_USER() AS who" });
    let answer = admin
        .put("/v1/admin/apps/pub/queries/who", &query, &[])
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let (status, rows) = gateway.call("pub", "who", json!({})).await;
    assert_eq!(status, 200, "{rows}");
    assert!(
        rows["rows"][0][0].as_str().unwrap().starts_with(&user),
        "{rows}"
    );
    // The read view sent back as it is keeps the secret ({"set": true}).
    let read = admin.get("/v1/admin/datasources/maria").await;
    let mut view = read.json();
    view["pool_size"] = json!(2);
    let kept = admin
        .put("/v1/admin/datasources/maria", &view, &if_match(&read.etag))
        .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(gateway.call("pub", "who", json!({})).await.0, 200);
    // Nothing the API answers carries the secret or its ciphertext.
    let mut everything = String::new();
    for path in [
        "/v1/admin/datasources",
        "/v1/admin/datasources/maria",
        "/v1/admin/apps/pub/queries",
        "/v1/admin/audit?limit=200",
        "/v1/admin/egress",
    ] {
        everything.push_str(&admin.get(path).await.text);
    }
    everything.push_str(&created.text);
    everything.push_str(&kept.text);
    assert!(!everything.contains(&password), "the secret was shown");
    let sealed = regex::Regex::new(r"enc:v1:[0-9a-f]{16}:").unwrap();
    assert!(!sealed.is_match(&everything), "a ciphertext was shown");
    // A bare string is refused (it would store a plaintext), without echoing it.
    let latest = admin.get("/v1/admin/datasources/maria").await;
    let mut bare = datasource.clone();
    bare["password"] = json!(password);
    let refused = admin
        .put(
            "/v1/admin/datasources/maria",
            &bare,
            &if_match(&latest.etag),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (400, "invalid_secret".into())
    );
    assert!(!refused.text.contains(&password));
    // A sealed value made for another datasource does not open here: 422, nothing stored.
    let mut swapped = datasource.clone();
    swapped["password"] = json!({ "sealed": common::seal("pg", "password", &password) });
    let refused = admin
        .put(
            "/v1/admin/datasources/maria",
            &swapped,
            &if_match(&latest.etag),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "invalid_secret".into()),
        "{}",
        refused.text
    );
    assert_eq!(
        admin.get("/v1/admin/datasources/maria").await.etag,
        latest.etag
    );
    // One sealed for this datasource and field is accepted as it is.
    let mut sealed = datasource.clone();
    sealed["password"] = json!({ "sealed": common::seal("maria", "password", &password) });
    let accepted = admin
        .put(
            "/v1/admin/datasources/maria",
            &sealed,
            &if_match(&latest.etag),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(gateway.call("pub", "who", json!({})).await.0, 200);
    gateway.stop().await;
    let mut conn = common::mysql_admin().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    database.drop(&mut conn).await;
}

#[tokio::test]
async fn secret_references_are_accepted_only_where_the_allowlist_says() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = format!("file:{}/*", dir.path().display());
    let gateway = gateway(&[("SLUICE_SECRET_REFERENCES", allowed.as_str())]).await;
    let admin = Admin::token(&gateway);
    let (user, password, database) = mariadb_account().await;
    let file = dir.path().join("maria-password");
    std::fs::write(&file, &password).unwrap();
    let reference = format!("file:{}", file.display());
    let mut datasource = json!({
        "kind": "mysql", "host": "127.0.0.1", "port": 3306, "database": database.name,
        "user": user, "password": { "reference": reference }, "egress_allow": ["127.0.0.1/32"],
    });
    let created = admin
        .put("/v1/admin/datasources/byref", &datasource, &[])
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    // A reference names where the secret is, so it is shown; the secret never is.
    assert_eq!(
        created.json()["password"],
        json!({ "set": true, "reference": reference, "updated_at": created.json()["password"]["updated_at"] })
    );
    assert!(!created.text.contains(&password));
    let query = json!({ "datasource": "byref", "sql": "SELECT CURRENT_USER() AS who" });
    assert_eq!(
        admin
            .put("/v1/admin/apps/pub/queries/byref", &query, &[])
            .await
            .status,
        201
    );
    let (status, rows) = gateway.call("pub", "byref", json!({})).await;
    assert_eq!(status, 200, "{rows}");
    // Outside the allowlist (another directory, an instance variable): refused, nothing stored.
    for outside in ["file:/etc/hostname", "env:SLUICE_ENCRYPTION_PASSWORD"] {
        datasource["password"] = json!({ "reference": outside });
        let current = admin.get("/v1/admin/datasources/byref").await;
        let refused = admin
            .put(
                "/v1/admin/datasources/byref",
                &datasource,
                &if_match(&current.etag),
            )
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (422, "invalid_secret".into()),
            "{outside}: {}",
            refused.text
        );
        assert_eq!(
            admin.get("/v1/admin/datasources/byref").await.etag,
            current.etag
        );
    }
    gateway.stop().await;
    let mut conn = common::mysql_admin().await;
    use mysql_async::prelude::Queryable;
    conn.query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
    database.drop(&mut conn).await;
}

#[tokio::test]
async fn sqlite_datasources_never_reach_the_gateways_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let allowed = dir.path().join("sqlite");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::write(data.join("sluice.db"), b"").unwrap();
    let sqlite =
        |path: &std::path::Path| json!({ "kind": "sqlite", "path": path.display().to_string() });
    // Without SLUICE_SQLITE_DIRS the API makes no SQLite datasource at all.
    let gateway_unset = gateway(&[("SLUICE_DATA_DIR", data.to_str().unwrap())]).await;
    let answer = Admin::token(&gateway_unset)
        .put(
            "/v1/admin/datasources/lite",
            &sqlite(&allowed.join("a.db")),
            &[],
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (422, "datasource_path_refused".into())
    );
    gateway_unset.stop().await;

    let gateway = gateway(&[
        ("SLUICE_DATA_DIR", data.to_str().unwrap()),
        ("SLUICE_SQLITE_DIRS", dir.path().to_str().unwrap()),
    ])
    .await;
    let admin = Admin::token(&gateway);
    let created = admin
        .put(
            "/v1/admin/datasources/lite",
            &sqlite(&allowed.join("a.db")),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    for own in [
        data.join("sluice.db"),
        data.join("sluice.db-wal"),
        allowed.join("../data/sluice.db"),
        data.join("acme/account.key"),
    ] {
        let answer = admin
            .put("/v1/admin/datasources/own", &sqlite(&own), &[])
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (422, "datasource_path_refused".into()),
            "{}: {}",
            own.display(),
            answer.text
        );
        assert_eq!(admin.get("/v1/admin/datasources/own").await.status, 404);
    }
    let outside = admin
        .put(
            "/v1/admin/datasources/own",
            &sqlite(std::path::Path::new("/etc/passwd")),
            &[],
        )
        .await;
    assert_eq!(outside.status, 422, "{}", outside.text);
    let uri = admin
        .put(
            "/v1/admin/datasources/own",
            &json!({ "kind": "sqlite", "path": "file:x.db?vfs=unix" }),
            &[],
        )
        .await;
    assert_eq!(uri.status, 422, "{}", uri.text);
    gateway.stop().await;
}

#[tokio::test]
async fn a_sqlite_query_cannot_attach_another_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let files = dir.path().join("sqlite");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    // Another database the process can read (as the metadata store would be).
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE secrets (v TEXT); INSERT INTO secrets VALUES ('x');")
        .unwrap();
    let gateway = gateway(&[
        ("SLUICE_DATA_DIR", data.to_str().unwrap()),
        ("SLUICE_SQLITE_DIRS", files.to_str().unwrap()),
    ])
    .await;
    let admin = Admin::token(&gateway);
    let lite = json!({ "kind": "sqlite", "path": files.join("app.db").display().to_string() });
    assert_eq!(
        admin
            .put("/v1/admin/datasources/lite", &lite, &[])
            .await
            .status,
        201
    );
    for (name, sql) in [
        (
            "attach",
            format!("ATTACH DATABASE '{}' AS m", other.display()),
        ),
        (
            "vacuum",
            format!("VACUUM INTO '{}'", files.join("copy.db").display()),
        ),
    ] {
        let query = json!({ "datasource": "lite", "sql": sql });
        let saved = admin
            .put(&format!("/v1/admin/apps/pub/queries/{name}"), &query, &[])
            .await;
        assert_eq!(saved.status, 201, "{}", saved.text);
        let (status, body) = gateway.call("pub", name, json!({})).await;
        assert_ne!(status, 200, "{name} ran: {body}");
    }
    assert!(!files.join("copy.db").exists());
    let read = json!({ "datasource": "lite", "sql": "SELECT v FROM m.secrets" });
    admin
        .put("/v1/admin/apps/pub/queries/read", &read, &[])
        .await;
    let (status, body) = gateway.call("pub", "read", json!({})).await;
    assert_ne!(status, 200, "{body}");
    gateway.stop().await;
}

/// Every admin route as written in the source: (method, path under `/v1/admin`), from the
/// OpenAPI suite's walk of every `.route(` call, so a new route is in this list at once.
fn admin_routes() -> BTreeSet<(String, String)> {
    let walk = crate::openapi::routes::walk_src();
    assert!(walk.unreadable.is_empty(), "{:?}", walk.unreadable);
    walk.routes
        .iter()
        .filter_map(|route| {
            let path = route.path.strip_prefix("/v1/admin")?;
            Some((route.method.to_uppercase(), path.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn every_admin_route_refuses_viewers_outsiders_and_api_keys() {
    let (gateway, clock) = auth_common::gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let routes = admin_routes();
    assert!(routes.len() >= 20, "{routes:?}");
    for expected in [
        ("PUT", "/datasources/{name}"),
        ("POST", "/apps/{app}/queries/{query}/preview"),
        ("GET", "/audit"),
    ] {
        assert!(
            routes.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not found in {routes:?}"
        );
    }
    let viewer = auth_common::user(&gateway, "viewer@example.com", Role::Viewer).await;
    let developer = auth_common::user(&gateway, "dev@example.com", Role::Developer).await;
    let mut viewer_browser = Browser::new(&gateway);
    viewer_browser.login_ok(&viewer.email).await;
    let mut dev_browser = Browser::new(&gateway);
    dev_browser.login_ok(&developer.email).await;
    let key = dev_browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "k", "scope": { "apps": ["ws", "priv"] } }),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.text);
    let key = key.json()["key"].as_str().unwrap().to_string();
    let key_client = Browser::with_key(&gateway, &key);
    let callers = [
        ("viewer", Admin::session(&gateway, &viewer_browser)),
        ("developer", Admin::session(&gateway, &dev_browser)),
        ("api key", Admin::session(&gateway, &key_client)),
    ];
    let missing = Admin::token(&gateway)
        .get("/v1/admin/apps/no-such-app")
        .await;
    for (method, template) in &routes {
        // Each route tried on the private app `priv` (whose 404 must equal a missing app's)
        // and on the workspace app `ws`.
        for app in ["priv", "ws"] {
            let path = format!(
                "/v1/admin{}",
                template
                    .replace("{app}", app)
                    .replace("{query}", "q")
                    .replace("{name}", "pg")
                    .replace("{id}", &viewer.id)
                    .replace("{user_id}", &viewer.id)
            );
            for (who, client) in &callers {
                let answer = client
                    .send(
                        Method::from_bytes(method.as_bytes()).unwrap(),
                        &path,
                        Some(&json!({})),
                        &[("if-match", "*")],
                    )
                    .await;
                if *who == "developer" && *method == "GET" && template == "/apps" {
                    // The list of apps they edit: none.
                    assert_eq!(
                        (answer.status, answer.json()["apps"].clone()),
                        (200, json!([]))
                    );
                    continue;
                }
                // The catalog routes of an app answer a developer who may not see the app
                // (not a member of private `priv`) as for a missing app; the routes that are
                // for admins only answer 403 to every developer.
                let admins_only = [
                    "/apps/{app}/policy",
                    "/apps/{app}/queries/{query}/run",
                    "/apps/{app}/members",
                    "/apps/{app}/members/{user_id}",
                ];
                let hidden = *who == "developer"
                    && app == "priv"
                    && template.starts_with("/apps/{app}")
                    && !admins_only.contains(&template.as_str());
                if hidden {
                    assert_eq!(answer.status, 404, "{who} {method} {path}: {}", answer.text);
                    // The same answer as for an app that does not exist.
                    let body = answer.without_request_id().replace("priv", "no-such-app");
                    assert_eq!(body, missing.without_request_id(), "{who} {method} {path}");
                } else {
                    assert_eq!(answer.status, 403, "{who} {method} {path}: {}", answer.text);
                }
            }
        }
    }
    let _ = clock;
    gateway.stop().await;
}

#[tokio::test]
async fn developers_edit_only_the_apps_they_are_editors_of() {
    let (gateway, _clock) = auth_common::gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let admin = Admin::token(&gateway);
    let developer = auth_common::user(&gateway, "dev@example.com", Role::Developer).await;
    let editor = admin
        .put(
            &format!("/v1/admin/apps/tools/members/{}", developer.id),
            &json!({ "editor": true }),
            &[],
        )
        .await;
    assert_eq!(editor.status, 200, "{}", editor.text);
    let members = admin.get("/v1/admin/apps/tools/members").await.json();
    assert_eq!(members["editors"], json!([developer.id]));
    let mut browser = Browser::new(&gateway);
    browser.login_ok(&developer.email).await;
    let dev = Admin::session(&gateway, &browser);
    // Their app: read, edit a query, edit its settings.
    let listing = dev.get("/v1/admin/apps").await.json();
    let names: Vec<&str> = listing["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tools"]);
    let query = dev.get("/v1/admin/apps/tools/queries/q").await;
    assert_eq!(query.status, 200, "{}", query.text);
    let mut changed = query.json();
    changed["sql"] = json!("SELECT 'tools v2' AS app");
    let saved = dev
        .put(
            "/v1/admin/apps/tools/queries/q",
            &changed,
            &if_match(&query.etag),
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    let added = dev
        .put(
            "/v1/admin/apps/tools/queries/new",
            &json!({ "datasource": "pg", "sql": "SELECT 2 AS two" }),
            &[],
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let app = dev.get("/v1/admin/apps/tools").await;
    let mut settings = app.json();
    settings["limits"] = json!({ "per_user": "100/minute" });
    let saved = dev
        .put("/v1/admin/apps/tools", &settings, &if_match(&app.etag))
        .await;
    assert_eq!(saved.status, 200, "{}", saved.text);
    // Editors stay inside their app: who reaches it, a query's own grants and datasources the
    // app does not use yet are for admins (a second datasource, so the last has one to name).
    let app = dev.get("/v1/admin/apps/tools").await;
    for (member, value) in [
        ("visibility", json!("public")),
        ("grants", json!({ "anonymous": true })),
        ("allowed_ips", json!(["0.0.0.0/0"])),
        ("cors", json!({ "origins": ["https://evil.example"] })),
    ] {
        let mut widened = app.json();
        widened[member] = value;
        let refused = dev
            .put("/v1/admin/apps/tools", &widened, &if_match(&app.etag))
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (403, "forbidden".into()),
            "{member}"
        );
    }
    let mut granted = changed.clone();
    granted["grants"] = json!({ "anonymous": true });
    let refused = dev
        .put("/v1/admin/apps/tools/queries/granted", &granted, &[])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    // Nor may they pick the PostgreSQL role a query runs as, or turn row security off.
    for rows in [json!(false), json!({ "role": "web_admin" })] {
        let mut escalated = changed.clone();
        escalated["row_security"] = rows;
        let refused = dev
            .put("/v1/admin/apps/tools/queries/q", &escalated, &[])
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (403, "forbidden".into()),
            "{}",
            refused.text
        );
    }
    let other_ds = json!({ "kind": "postgres", "host": "127.0.0.1", "port": 5432, "database": "test",
        "user": "postgres", "egress_allow": ["127.0.0.1/32"] });
    let made = admin.put("/v1/admin/datasources/pg2", &other_ds, &[]).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let elsewhere = dev
        .put(
            "/v1/admin/apps/tools/queries/elsewhere",
            &json!({ "datasource": "pg2", "sql": "SELECT 1 AS one" }),
            &[],
        )
        .await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.text);
    let draft = dev
        .send(
            Method::POST,
            "/v1/admin/apps/tools/queries/q/preview",
            Some(&json!({ "as": developer.id, "query": { "datasource": "pg2", "sql": "SELECT 1 AS one" } })),
            &[],
        )
        .await;
    assert_eq!(draft.status, 403, "{}", draft.text);
    // Previews: as themselves yes; as a user who is not a member of the app, the same 404 as
    // for no such user.
    let mine = dev
        .send(
            Method::POST,
            "/v1/admin/apps/tools/queries/q/preview",
            Some(&json!({ "as": developer.email })),
            &[],
        )
        .await;
    assert_eq!(mine.status, 200, "{}", mine.text);
    let stranger = auth_common::user(&gateway, "stranger@example.com", Role::Viewer).await;
    let outsider = dev
        .send(
            Method::POST,
            "/v1/admin/apps/tools/queries/q/preview",
            Some(&json!({ "as": stranger.email })),
            &[],
        )
        .await;
    let nobody = dev
        .send(
            Method::POST,
            "/v1/admin/apps/tools/queries/q/preview",
            Some(&json!({ "as": "nobody-at-all@example.com" })),
            &[],
        )
        .await;
    assert_eq!(outsider.status, 404, "{}", outsider.text);
    assert_eq!(outsider.without_request_id(), nobody.without_request_id());
    // Not: deleting the app, creating apps, datasources, other apps.
    let app = dev.get("/v1/admin/apps/tools").await;
    assert_eq!(
        dev.delete("/v1/admin/apps/tools", &if_match(&app.etag))
            .await
            .status,
        403
    );
    // An app that does not exist is one they may not edit: the missing app's 404.
    assert_eq!(
        dev.put("/v1/admin/apps/mine", &json!({}), &[]).await.status,
        404
    );
    assert_eq!(dev.get("/v1/admin/datasources/pg").await.status, 403);
    assert_eq!(dev.get("/v1/admin/apps/ws/queries/q").await.status, 403);
    let hidden = dev.get("/v1/admin/apps/priv/queries/q").await;
    assert_eq!(hidden.status, 404);
    // Editorship taken away: at once.
    let plain = admin
        .put(
            &format!("/v1/admin/apps/tools/members/{}", developer.id),
            &json!({}),
            &[],
        )
        .await;
    assert_eq!(plain.status, 200);
    assert_eq!(dev.get("/v1/admin/apps/tools/queries/q").await.status, 403);
    // A deleted app takes its memberships with it: an app made later under its name
    // starts with none.
    admin
        .put(
            &format!("/v1/admin/apps/tools/members/{}", developer.id),
            &json!({ "editor": true }),
            &[],
        )
        .await;
    for query in ["q", "new"] {
        let current = admin
            .get(&format!("/v1/admin/apps/tools/queries/{query}"))
            .await;
        let gone = admin
            .delete(
                &format!("/v1/admin/apps/tools/queries/{query}"),
                &if_match(&current.etag),
            )
            .await;
        assert_eq!(gone.status, 200, "{}", gone.text);
    }
    let app = admin.get("/v1/admin/apps/tools").await;
    assert_eq!(
        admin
            .delete("/v1/admin/apps/tools", &if_match(&app.etag))
            .await
            .status,
        200
    );
    let members = admin.get("/v1/admin/apps/tools/members").await.json();
    assert_eq!(members["members"], json!([]), "{members}");
    gateway.stop().await;
}

#[tokio::test]
async fn previews_run_drafts_as_the_named_user() {
    let (gateway, _clock) = auth_common::gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let admin = Admin::token(&gateway);
    let viewer = auth_common::user(&gateway, "viewer@example.com", Role::Viewer).await;
    let _ = PASSWORD;
    // The stored query, as the viewer: their own user values.
    let answer = admin
        .send(
            Method::POST,
            "/v1/admin/apps/ws/queries/whoami/preview",
            Some(&json!({ "as": viewer.email })),
            &[],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["rows"][0], json!([viewer.id, "viewer"]));
    // A draft with a param, not saved: it runs, and the stored query is unchanged.
    let draft = json!({ "datasource": "pg", "grants": { "roles": ["viewer"] },
        "sql": "SELECT {{ user.email }}::text AS email, {{ params.n }}::int * 2 AS twice",
        "params": { "n": { "type": "int", "required": true } } });
    let answer = admin
        .send(
            Method::POST,
            "/v1/admin/apps/ws/queries/whoami/preview",
            Some(&json!({ "as": viewer.id, "params": { "n": 21 }, "query": draft })),
            &[],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json()["rows"][0], json!([viewer.email, 42]));
    let stored = admin.get("/v1/admin/apps/ws/queries/whoami").await.json();
    assert!(stored["sql"].as_str().unwrap().contains("user.role"));
    // Grants are the user's real ones: a draft only admins may run is refused for them.
    let mut admins_only = draft.clone();
    admins_only["grants"] = json!({ "roles": ["admin"] });
    let answer = admin
        .send(
            Method::POST,
            "/v1/admin/apps/ws/queries/whoami/preview",
            Some(&json!({ "as": viewer.id, "params": { "n": 1 }, "query": admins_only })),
            &[],
        )
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (403, "preview_refused".into()),
        "{}",
        answer.text
    );
    // A draft that does not compile: 422 with its location; an unknown user: 404.
    let mut broken = draft.clone();
    broken["sql"] = json!("SELECT {{ params.nope }}");
    let answer = admin
        .send(
            Method::POST,
            "/v1/admin/apps/ws/queries/whoami/preview",
            Some(&json!({ "as": viewer.id, "query": broken })),
            &[],
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    let answer = admin
        .send(
            Method::POST,
            "/v1/admin/apps/ws/queries/whoami/preview",
            Some(&json!({ "as": "nobody@example.com" })),
            &[],
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
    // Audited, without the params.
    let audit = admin.get("/v1/admin/audit?limit=50").await.text;
    assert!(audit.contains("query_previewed"), "{audit}");
    assert!(!audit.contains("\\\"n\\\":21"), "{audit}");
    gateway.stop().await;
}

/// Making an app public runs the security scan on it: critical findings refuse the write
/// (422 `publish_blocked` naming each, dry run included) and store nothing; `?force=true`
/// publishes, answers with the findings and audits `app_published_forced`; a publish with
/// no critical finding answers with its findings and is not a forced one.
#[tokio::test]
async fn publishing_an_app_is_refused_on_critical_findings_unless_forced() {
    let gateway = gateway(&[]).await;
    let admin = Admin::token(&gateway);
    let created = admin
        .put(
            "/v1/admin/apps/draft",
            &json!({ "visibility": "private", "grants": { "roles": ["viewer"] } }),
            &[],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let query = admin
        .put(
            "/v1/admin/apps/draft/queries/wipe",
            &json!({ "datasource": "pg", "sql": "DELETE FROM pg_temp.nothing WHERE 1 = 0" }),
            &[],
        )
        .await;
    assert_eq!(query.status, 201, "{}", query.text);
    let app = admin.get("/v1/admin/apps/draft").await;
    let public = json!({ "visibility": "public", "grants": { "anonymous": true } });
    for path in ["/v1/admin/apps/draft", "/v1/admin/apps/draft?dry_run=true"] {
        let refused = admin.put(path, &public, &if_match(&app.etag)).await;
        assert_eq!(
            (refused.status, refused.code()),
            (422, "publish_blocked".into()),
            "{path}: {}",
            refused.text
        );
        let problems = &refused.json()["error"]["problems"];
        assert_eq!(
            problems[0]["location"], "apps.draft.queries.wipe",
            "{problems}"
        );
        assert!(
            problems[0]["message"]
                .as_str()
                .unwrap()
                .contains("SLU-D002"),
            "{problems}"
        );
    }
    // Nothing was stored: still private, the same ETag.
    let unchanged = admin.get("/v1/admin/apps/draft").await;
    assert_eq!(unchanged.json()["visibility"], "private");
    assert_eq!(unchanged.etag, app.etag);
    let audit = admin.get("/v1/admin/audit?limit=100").await.text;
    assert!(!audit.contains("app_published_forced"), "{audit}");

    let forced = admin
        .put(
            "/v1/admin/apps/draft?force=true",
            &public,
            &if_match(&app.etag),
        )
        .await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    let body = forced.json();
    assert_eq!(body["visibility"], "public");
    let rules: Vec<&str> = body["scan"]["draft"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(rules.contains(&"SLU-D002"), "{body}");
    let audit = admin.get("/v1/admin/audit?limit=100").await.text;
    assert!(audit.contains("app_published_forced"), "{audit}");
    assert!(audit.contains("SLU-D002"), "{audit}");

    // A publish with no critical finding: answered with its findings, not forced.
    admin
        .put(
            "/v1/admin/apps/calm",
            &json!({ "visibility": "private", "grants": { "roles": ["viewer"] } }),
            &[],
        )
        .await;
    let read = admin
        .put(
            "/v1/admin/apps/calm/queries/one",
            &json!({ "datasource": "pg", "sql": "SELECT 1 AS one" }),
            &[],
        )
        .await;
    assert_eq!(read.status, 201, "{}", read.text);
    let calm = admin.get("/v1/admin/apps/calm").await;
    let published = admin
        .put("/v1/admin/apps/calm", &public, &if_match(&calm.etag))
        .await;
    assert_eq!(published.status, 200, "{}", published.text);
    assert!(
        published.json()["scan"]["calm"].is_array(),
        "{}",
        published.text
    );
    let audit = admin.get("/v1/admin/audit?limit=100").await.text;
    assert_eq!(audit.matches("app_published_forced").count(), 1, "{audit}");
    gateway.stop().await;
}
