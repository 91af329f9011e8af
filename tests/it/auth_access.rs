//! Who may run what, end to end: workspace API keys (shown once, scoped, revocable,
//! expiring), `{{ user.id }}` row rules on real PostgreSQL, and app visibility (public,
//! workspace, private with members).

use crate::auth_common;
use crate::common;

use std::sync::Arc;

use auth_common::*;
use common::*;
use serde_json::json;
use sluice::auth::Role;
use sluice::clock::Clock;

#[tokio::test]
async fn api_keys_are_shown_once_scoped_revocable_and_expire() {
    let (gateway, clock) = gateway(&[]).await;
    let dev = user(&gateway, "ada@example.com", Role::Developer).await;
    user(&gateway, "ben@example.com", Role::Viewer).await;
    let mut viewer = Browser::new(&gateway);
    viewer.login_ok("ben@example.com").await;
    viewer
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "mine", "scope": { "apps": ["ws"] } }),
        )
        .await
        .expect_error(403, "forbidden");

    let mut browser = Browser::new(&gateway);
    browser.login_ok("ada@example.com").await;
    // Scope: every query of `ws`, and `tools/q` alone.
    let created = browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "reporting", "scope": { "apps": ["ws"], "queries": ["tools/q"] } }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("slk_{id}_")), "{key}");
    let hash = sluice::auth::token::hash_token(&key);

    let listed = browser.get("/v1/auth/api-keys").await.expect_ok();
    assert_eq!(listed["api_keys"][0]["id"], id.as_str());
    assert_eq!(listed["api_keys"][0]["last_used_at"], json!(null));
    let secret_part = key.rsplit('_').next().unwrap();
    for shown in [key.as_str(), hash.as_str(), secret_part] {
        assert!(
            !listed.to_string().contains(shown),
            "listing shows a secret: {listed}"
        );
    }

    let mut client = Browser::with_key(&gateway, &key);
    assert_eq!(
        client.run("ws", "q").await.expect_ok()["rows"],
        json!([["ws"]])
    );
    client.run("ws", "other").await.expect_ok();
    client.run("tools", "q").await.expect_ok();
    // Outside the scope, even where the user could go with a session, and even on a
    // public query anyone may run: a key is refused outside its scope, never run as
    // anonymous.
    client
        .run("pub", "q")
        .await
        .expect_error(403, "outside_key_scope");
    client
        .run("unset", "q")
        .await
        .expect_error(404, "not_found");
    let mut session = Browser::new(&gateway);
    session.login_ok("ada@example.com").await;
    session.run("tools", "q").await.expect_ok();
    // The key runs as its creator.
    let who = client.run("ws", "whoami").await.expect_ok();
    assert_eq!(who["rows"], json!([[dev.id, "developer"]]));

    // A key is not a session: it may say who it is, but not use the admin API or manage
    // the account (new keys, other keys, sessions and their addresses, sign-outs).
    let me = client.get("/v1/auth/me").await.expect_ok();
    assert_eq!(
        (me["id"].as_str(), me["api_key_id"].as_str()),
        (Some(dev.id.as_str()), Some(id.as_str()))
    );
    client
        .get("/v1/admin/users")
        .await
        .expect_error(403, "forbidden");
    client
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "x", "scope": { "apps": ["ws"] } }),
        )
        .await
        .expect_error(403, "forbidden");
    let session_id = session.get("/v1/auth/me").await.json()["session"]["id"].clone();
    for (method, path) in [
        (reqwest::Method::GET, "/v1/auth/api-keys".to_string()),
        (reqwest::Method::DELETE, format!("/v1/auth/api-keys/{id}")),
        (reqwest::Method::GET, "/v1/auth/sessions".to_string()),
        (
            reqwest::Method::DELETE,
            format!("/v1/auth/sessions/{}", session_id.as_str().unwrap()),
        ),
        (
            reqwest::Method::POST,
            "/v1/auth/logout-everywhere".to_string(),
        ),
        (reqwest::Method::POST, "/v1/auth/mfa/enroll".to_string()),
    ] {
        let body = (method == reqwest::Method::POST).then(|| json!({}));
        let reply = client.send(method.clone(), &path, body).await;
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (403, "forbidden"),
            "{method} {path}: {}",
            reply.text
        );
    }
    assert_eq!(session.me().await, 200);

    let used = browser.get("/v1/auth/api-keys").await.expect_ok();
    assert_eq!(used["api_keys"][0]["last_used_at"], clock.now());

    // A narrower key: one query.
    let narrow = browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "one", "scope": { "queries": ["ws/q"] } }),
        )
        .await
        .json();
    let mut narrow = Browser::with_key(&gateway, narrow["key"].as_str().unwrap());
    narrow.run("ws", "q").await.expect_ok();
    narrow
        .run("ws", "other")
        .await
        .expect_error(403, "outside_key_scope");
    narrow
        .run("tools", "q")
        .await
        .expect_error(403, "outside_key_scope");

    // Revoked: 401.
    browser
        .delete(&format!("/v1/auth/api-keys/{id}"))
        .await
        .expect_ok();
    client
        .run("ws", "q")
        .await
        .expect_error(401, "unauthenticated");
    let revoked = browser.get("/v1/auth/api-keys").await.expect_ok();
    assert!(
        revoked["api_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str() && k["revoked_at"].is_number())
    );

    // Expiring: works until `expires_at`, 401 from then on.
    let expiring = browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "temp", "scope": { "apps": ["ws"] }, "expires_at": clock.now() + 600 }),
        )
        .await
        .json();
    let mut temp = Browser::with_key(&gateway, expiring["key"].as_str().unwrap());
    clock.advance_secs(599);
    temp.run("ws", "q").await.expect_ok();
    clock.advance_secs(1);
    temp.run("ws", "q")
        .await
        .expect_error(401, "unauthenticated");

    // Garbage and near-misses of the key are 401 too.
    let mut tampered_key = key.clone();
    tampered_key.pop();
    tampered_key.push(if key.ends_with('A') { 'B' } else { 'A' });
    for bad in ["slk_nonsense", tampered_key.as_str(), "not-a-key"] {
        Browser::with_key(&gateway, bad)
            .run("ws", "q")
            .await
            .expect_error(401, "unauthenticated");
    }
}

#[tokio::test]
async fn a_disabled_users_api_keys_stop_working() {
    let (gateway, _clock) = gateway(&[]).await;
    let dev = user(&gateway, "cy@example.com", Role::Developer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("cy@example.com").await;
    let created = browser
        .post(
            "/v1/auth/api-keys",
            json!({ "name": "ci", "scope": { "apps": ["ws"] } }),
        )
        .await
        .json();
    let mut client = Browser::with_key(&gateway, created["key"].as_str().unwrap());
    client.run("ws", "q").await.expect_ok();

    gateway
        .auth
        .set_disabled(&dev.id, true, "test", &Default::default())
        .await
        .unwrap();
    client
        .run("ws", "q")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(browser.me().await, 401);
    gateway
        .auth
        .set_disabled(&dev.id, false, "test", &Default::default())
        .await
        .unwrap();
    client.run("ws", "q").await.expect_ok();
}

#[tokio::test]
async fn user_id_rules_show_each_person_only_their_own_rows() {
    let admin = pg_admin().await;
    let schema = PgSchema::create(&admin).await;
    let s = &schema.name;
    let catalog = format!(
        r#"
datasources:
{}apps:
  shop:
    visibility: workspace
    grants: {{ roles: [viewer] }}
    queries:
      my_orders:
        datasource: pg
        sql: SELECT item FROM {s}.orders WHERE owner = {{{{ user.id }}}} ORDER BY item
"#,
        pg_datasource_yaml("pg")
    );
    let (gateway, _clock) = gateway_with(&catalog, &[]).await;
    let alice = user(&gateway, "alice@example.com", Role::Viewer).await;
    let bob = user(&gateway, "bob@example.com", Role::Viewer).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {s}.orders (owner text NOT NULL, item text NOT NULL);
             INSERT INTO {s}.orders VALUES ('{a}', 'apples'), ('{a}', 'avocados'),
               ('{b}', 'bananas'), ('someone-else', 'cherries');",
            a = alice.id,
            b = bob.id
        ))
        .await
        .unwrap();

    let mut as_alice = Browser::new(&gateway);
    let mut as_bob = Browser::new(&gateway);
    as_alice.login_ok("alice@example.com").await;
    as_bob.login_ok("bob@example.com").await;
    let rows = |reply: Reply| reply.expect_ok()["rows"].clone();
    assert_eq!(
        rows(as_alice.run("shop", "my_orders").await),
        json!([["apples"], ["avocados"]])
    );
    assert_eq!(
        rows(as_bob.run("shop", "my_orders").await),
        json!([["bananas"]])
    );

    // The caller cannot set the user: no param of that name exists, and none is accepted.
    for params in [
        json!({ "user": { "id": bob.id } }),
        json!({ "user.id": bob.id }),
    ] {
        as_alice
            .post(
                "/v1/apps/shop/queries/my_orders",
                json!({ "params": params }),
            )
            .await
            .expect_error(400, "invalid_params");
    }
    Browser::new(&gateway)
        .run("shop", "my_orders")
        .await
        .expect_error(401, "unauthenticated");
    schema.drop(&admin).await;
}

#[tokio::test]
async fn visibility_public_workspace_and_private_with_members() {
    let (gateway, clock) = gateway(&[("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)]).await;
    let member = user(&gateway, "dee@example.com", Role::Viewer).await;
    user(&gateway, "eli@example.com", Role::Viewer).await;
    let mut anonymous = Browser::new(&gateway);
    let mut dee = Browser::new(&gateway);
    let mut eli = Browser::new(&gateway);
    dee.login_ok("dee@example.com").await;
    eli.login_ok("eli@example.com").await;

    // Public: anyone.
    for browser in [&mut anonymous, &mut dee] {
        assert_eq!(
            browser.run("pub", "q").await.expect_ok()["rows"],
            json!([["pub"]])
        );
    }
    // A public query that binds the caller still needs one.
    anonymous
        .run("pub", "mine")
        .await
        .expect_error(401, "unauthenticated");
    assert_eq!(
        dee.run("pub", "mine").await.expect_ok()["rows"],
        json!([[member.id]])
    );
    // Workspace: signed in only.
    anonymous
        .run("ws", "q")
        .await
        .expect_error(401, "unauthenticated");
    dee.run("ws", "q").await.expect_ok();
    // Private (explicit or unset): as if it did not exist, for anonymous and non-members.
    let missing = anonymous.run("no_such_app", "q").await;
    missing.expect_error(404, "not_found");
    for app in ["priv", "unset"] {
        for browser in [&mut anonymous, &mut dee, &mut eli] {
            let reply = browser.run(app, "q").await;
            reply.expect_error(404, "not_found");
            assert_eq!(
                reply.json()["error"]["message"],
                format!("no query `q` in app `{app}`")
            );
        }
    }

    let mut automation = Browser::with_key(&gateway, ADMIN_TOKEN);
    let member_path = format!("/v1/admin/apps/priv/members/{}", member.id);
    automation.put(&member_path, json!({})).await.expect_ok();
    assert_eq!(
        dee.run("priv", "q").await.expect_ok()["rows"],
        json!([["priv"]])
    );
    eli.run("priv", "q").await.expect_error(404, "not_found");
    anonymous
        .run("priv", "q")
        .await
        .expect_error(404, "not_found");
    dee.run("unset", "q").await.expect_error(404, "not_found");
    let members = automation
        .get("/v1/admin/apps/priv/members")
        .await
        .expect_ok();
    assert_eq!(members["members"], json!([member.id]));
    automation
        .put("/v1/admin/apps/priv/members/no-such-user", json!({}))
        .await
        .expect_error(404, "not_found");
    // Admin routes refuse anyone else.
    dee.put(&member_path, json!({}))
        .await
        .expect_error(403, "forbidden");
    Browser::with_key(&gateway, "wrong-token-0123456789abcdef0123456789")
        .put(&member_path, json!({}))
        .await
        .expect_error(401, "unauthenticated");

    automation.delete(&member_path).await.expect_ok();
    dee.run("priv", "q").await.expect_error(404, "not_found");
    automation
        .delete(&member_path)
        .await
        .expect_error(404, "not_found");

    // Admins are not implicitly members.
    let (_, mut admin, _) = enrolled_admin(&gateway, &clock, "gus@example.com").await;
    admin.run("ws", "q").await.expect_ok();
    admin.run("priv", "q").await.expect_error(404, "not_found");
}

#[tokio::test]
async fn members_survive_a_catalog_apply_and_restart() {
    let store = Arc::new(sluice::store::SqliteStore::in_memory().unwrap());
    let spec = sluice::spec::yaml::parse(&catalog()).unwrap();
    let env = [("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)];
    let gateway = TestGateway::start_on_store(store.clone(), spec.clone(), &env).await;
    let member = user(&gateway, "fay@example.com", Role::Viewer).await;
    Browser::with_key(&gateway, ADMIN_TOKEN)
        .put(
            &format!("/v1/admin/apps/priv/members/{}", member.id),
            json!({}),
        )
        .await
        .expect_ok();
    gateway.stop().await;

    // The catalog is applied again (as `sluice apply` does) and the instance restarts.
    let gateway = TestGateway::start_on_store(store, spec, &env).await;
    let mut fay = Browser::new(&gateway);
    fay.login_ok("fay@example.com").await;
    fay.run("priv", "q").await.expect_ok();
}
