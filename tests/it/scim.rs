//! SCIM 2.0 provisioning (docs/SCIM.md) through a real socket: the token, the 404 when SCIM
//! is off, the operations Okta and Entra ID send (their sample payloads), filters,
//! pagination, groups mirrored into `groups`, and a deactivation that ends a live session
//! and an API key at once. `scim2-cli`'s conformance run is in `scripts/scim-check`.

use serde_json::{Value, json};
use sluice::auth::{ApiKeyScope, ClientInfo, Role};

use crate::auth_common::{Browser, Reply, gateway_with, user};

const TOKEN: &str = "scim-test-token-5b1f0c9e7a2d4c6b8e0f1a3c";

async fn scim_gateway() -> crate::common::TestGateway {
    gateway_with(
        &crate::auth_common::catalog(),
        &[("SLUICE_SCIM_TOKEN", TOKEN)],
    )
    .await
    .0
}

/// One SCIM request with the token (or `token`), `application/scim+json` bodies.
async fn scim(
    gateway: &crate::common::TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> Reply {
    let mut request = gateway
        .client
        .request(method, gateway.url(&format!("/scim/v2{path}")));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.expect("body"),
    }
}

async fn get(gateway: &crate::common::TestGateway, path: &str) -> Reply {
    scim(gateway, reqwest::Method::GET, path, None, Some(TOKEN)).await
}

async fn send(
    gateway: &crate::common::TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Reply {
    scim(gateway, method, path, Some(body), Some(TOKEN)).await
}

#[track_caller]
fn expect(reply: &Reply, status: u16) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text);
    if reply.text.is_empty() {
        return Value::Null;
    }
    assert_eq!(
        reply.headers["content-type"], "application/scim+json",
        "{}",
        reply.text
    );
    reply.json()
}

#[track_caller]
fn expect_scim_error(reply: &Reply, status: u16, scim_type: Option<&str>) {
    let body = expect(reply, status);
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"])
    );
    assert_eq!(body["status"], json!(status.to_string()));
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

/// Okta's "create user" request (its SCIM 2.0 test app's sample).
fn okta_user(email: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": { "givenName": "Ann", "familyName": "Lee" },
        "emails": [{ "primary": true, "value": email, "type": "work" }],
        "displayName": "Ann Lee",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

/// Entra ID's "create user" request (its provisioning sample).
fn entra_user(user_name: &str) -> Value {
    json!({
        "schemas": [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": user_name,
        "active": true,
        "emails": [{ "primary": true, "type": "work", "value": user_name }],
        "meta": { "resourceType": "User" },
        "name": { "formatted": "Bob Ray", "familyName": "Ray", "givenName": "Bob" },
        "roles": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984", "department": "Sales"
        }
    })
}

#[tokio::test]
async fn scim_is_an_unknown_path_without_its_token_setting() {
    let (gateway, _clock) = gateway_with(&crate::auth_common::catalog(), &[]).await;
    for path in ["/Users", "/Groups", "/ServiceProviderConfig"] {
        let reply = get(&gateway, path).await;
        reply.expect_error(404, "not_found");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_alike() {
    let gateway = scim_gateway().await;
    let missing = scim(&gateway, reqwest::Method::GET, "/Users", None, None).await;
    let wrong = scim(
        &gateway,
        reqwest::Method::GET,
        "/Users",
        None,
        Some("scim-test-token-5b1f0c9e7a2d4c6b8e0f1a3d"),
    )
    .await;
    let basic = gateway
        .client
        .get(gateway.url("/scim/v2/Users"))
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    expect_scim_error(&missing, 401, None);
    expect_scim_error(&wrong, 401, None);
    assert_eq!(missing.text, wrong.text, "no hint which it was");
    // The write routes too, before their body is read.
    let refused = scim(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        Some(okta_user("x@scim.example")),
        Some("wrong"),
    )
    .await;
    expect_scim_error(&refused, 401, None);
    assert!(gateway.auth.user_by_email("x@scim.example").await.is_err());
    let config = expect(&get(&gateway, "/ServiceProviderConfig").await, 200);
    assert_eq!(config["patch"]["supported"], json!(true));
    let types = expect(&get(&gateway, "/ResourceTypes").await, 200);
    assert_eq!(types["totalResults"], json!(2));
    let schemas = expect(&get(&gateway, "/Schemas").await, 200);
    assert_eq!(
        schemas["Resources"][0]["id"],
        json!("urn:ietf:params:scim:schemas:core:2.0:User")
    );
}

#[tokio::test]
async fn okta_provisions_filters_updates_and_deactivates_a_user() {
    let gateway = scim_gateway().await;
    // Okta looks the user up first, finds nothing, creates it.
    let none = expect(
        &get(
            &gateway,
            "/Users?filter=userName%20eq%20%22ann%40okta.example%22&startIndex=1&count=100",
        )
        .await,
        200,
    );
    assert_eq!(none["totalResults"], json!(0));
    assert_eq!(none["Resources"], json!([]));
    let created = send(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        okta_user("Ann@Okta.example"),
    )
    .await;
    let body = expect(&created, 201);
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.headers["location"],
        gateway.url(&format!("/scim/v2/Users/{id}")).as_str()
    );
    assert_eq!(body["userName"], json!("Ann@Okta.example"));
    assert_eq!(body["externalId"], json!("00ujl29u0le5T6Aj10h7"));
    assert_eq!(body["active"], json!(true));
    assert_eq!(body["name"]["familyName"], json!("Lee"));
    assert!(body.get("password").is_none());
    // It is a Sluice account, by its normalised email, with no password.
    let account = gateway.auth.user_by_id(&id).await.unwrap();
    assert_eq!(account.email, "ann@okta.example");
    assert_eq!(account.display_name, "Ann Lee");
    assert_eq!(account.role, Role::Viewer);
    assert!(account.password_hash.is_none());
    // Found by userName (any case) and by externalId; the same userName again conflicts.
    let found = expect(
        &get(
            &gateway,
            "/Users?filter=userName+eq+%22ann%40okta.example%22",
        )
        .await,
        200,
    );
    assert_eq!(found["totalResults"], json!(1));
    assert_eq!(found["Resources"][0]["id"], json!(id));
    let found = expect(
        &get(
            &gateway,
            "/Users?filter=externalId%20eq%20%2200ujl29u0le5T6Aj10h7%22",
        )
        .await,
        200,
    );
    assert_eq!(found["Resources"][0]["id"], json!(id));
    let again = send(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        okta_user("ann@okta.example"),
    )
    .await;
    expect_scim_error(&again, 409, Some("uniqueness"));
    // Filters this server does not evaluate are refused, not answered wrongly.
    for filter in [
        "userName%20sw%20%22ann%22",
        "userName%20eq%20%22a%22%20and%20active%20eq%20true",
        "emails.value%20eq%20%22ann%40okta.example%22",
    ] {
        let reply = get(&gateway, &format!("/Users?filter={filter}")).await;
        expect_scim_error(&reply, 400, Some("invalidFilter"));
    }
    expect_scim_error(
        &get(&gateway, "/Users?count=ten").await,
        400,
        Some("invalidValue"),
    );
    // Okta's profile push: a PUT of the whole user.
    let mut changed = okta_user("ann.lee@okta.example");
    changed["name"]["givenName"] = json!("Annie");
    changed["displayName"] = json!("Annie Lee");
    let put = expect(
        &send(
            &gateway,
            reqwest::Method::PUT,
            &format!("/Users/{id}"),
            changed,
        )
        .await,
        200,
    );
    assert_eq!(put["userName"], json!("ann.lee@okta.example"));
    assert_eq!(
        gateway.auth.user_by_id(&id).await.unwrap().email,
        "ann.lee@okta.example"
    );
    // Okta's deactivation: replace without a path.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "value": { "active": false } }]
    });
    let off = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            patch,
        )
        .await,
        200,
    );
    assert_eq!(off["active"], json!(false));
    assert!(gateway.auth.user_by_id(&id).await.unwrap().disabled);
    let reactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "value": { "active": true } }]
    });
    let on = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            reactivate,
        )
        .await,
        200,
    );
    assert_eq!(on["active"], json!(true));
    // Bad input is a SCIM 4xx naming the problem.
    let bad = send(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        json!({"userName": "x@y.example", "active": "maybe"}),
    )
    .await;
    expect_scim_error(&bad, 400, Some("invalidValue"));
    let bad = send(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        json!({"displayName": "x"}),
    )
    .await;
    expect_scim_error(&bad, 400, Some("invalidValue"));
    // A User without any address is an account that cannot receive mail.
    let plain = send(
        &gateway,
        reqwest::Method::POST,
        "/Users",
        json!({"userName": "svc-robot"}),
    )
    .await;
    let plain = expect(&plain, 201);
    assert!(plain.get("emails").is_none(), "{plain}");
    let robot = gateway
        .auth
        .user_by_id(plain["id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(robot.email.ends_with("@scim.invalid"), "{}", robot.email);
    // Projection, and unknown endpoints answered as SCIM.
    let slim = expect(
        &get(
            &gateway,
            &format!("/Users/{id}?excludedAttributes=name,emails"),
        )
        .await,
        200,
    );
    assert!(slim.get("name").is_none() && slim.get("emails").is_none() && slim["id"] == json!(id));
    let only = expect(
        &get(&gateway, &format!("/Users/{id}?attributes=userName")).await,
        200,
    );
    assert!(only.get("displayName").is_none() && only["userName"].is_string());
    expect_scim_error(&get(&gateway, "/Bulk").await, 404, None);
    let bad = scim(&gateway, reqwest::Method::POST, "/Users", None, Some(TOKEN)).await;
    assert!((400..500).contains(&bad.status), "{}", bad.text);
    let bad = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        json!({"Operations": [{"op": "replace", "path": "id", "value": "x"}]}),
    )
    .await;
    expect_scim_error(&bad, 400, Some("mutability"));
    let bad = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        json!({"Operations": [{"op": "jump", "path": "active"}]}),
    )
    .await;
    expect_scim_error(&bad, 400, Some("invalidSyntax"));
    expect_scim_error(&get(&gateway, "/Users/no-such-id").await, 404, None);
    // Every change is in the audit log, by `scim`.
    let events: Vec<String> = gateway
        .audit
        .list(1000, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor.as_deref() == Some("scim"))
        .map(|e| e.event)
        .collect();
    for event in [
        "scim_user_created",
        "scim_user_updated",
        "scim_user_deactivated",
        "scim_user_reactivated",
    ] {
        assert!(events.iter().any(|e| e == event), "{event} in {events:?}");
    }
}

#[tokio::test]
async fn entra_patch_operations_apply() {
    let gateway = scim_gateway().await;
    let created = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Users",
            entra_user("bob@entra.example"),
        )
        .await,
        201,
    );
    let id = created["id"].as_str().unwrap().to_string();
    // No SCIM displayName was sent, so none is returned; the account's display name comes
    // from `name.formatted`.
    assert!(created.get("displayName").is_none(), "{created}");
    assert_eq!(
        gateway.auth.user_by_id(&id).await.unwrap().display_name,
        "Bob Ray"
    );
    // Entra's update: capitalised ops, paths with filters, booleans as strings.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            { "op": "Replace", "path": "displayName", "value": "Robert Ray" },
            { "op": "Replace", "path": "name.givenName", "value": "Robert" },
            { "op": "Add", "path": "name.familyName", "value": "Rayner" },
            { "op": "Replace", "path": "emails[type eq \"work\"].value", "value": "robert@entra.example" },
            { "op": "Replace", "path": "userName", "value": "robert@entra.example" },
            { "op": "Replace", "path": "externalId", "value": "ext-2" },
            { "op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops" }
        ]
    });
    let patched = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            patch,
        )
        .await,
        200,
    );
    assert_eq!(patched["displayName"], json!("Robert Ray"));
    assert_eq!(patched["name"]["givenName"], json!("Robert"));
    assert_eq!(patched["name"]["familyName"], json!("Rayner"));
    assert_eq!(patched["userName"], json!("robert@entra.example"));
    assert_eq!(patched["externalId"], json!("ext-2"));
    let account = gateway.auth.user_by_id(&id).await.unwrap();
    assert_eq!(account.email, "robert@entra.example");
    assert_eq!(account.display_name, "Robert Ray");
    // Entra's deactivation: `"False"` as a string.
    let off = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "Replace", "path": "active", "value": "False" }]
    });
    let off = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            off,
        )
        .await,
        200,
    );
    assert_eq!(off["active"], json!(false));
    // Entra's "does it exist" probe for a user it does not know.
    let probe = expect(
        &get(
            &gateway,
            "/Users?filter=userName+eq+%22nobody%40entra.example%22",
        )
        .await,
        200,
    );
    assert_eq!(probe["totalResults"], json!(0));
}

#[tokio::test]
async fn deactivation_ends_a_live_session_and_an_api_key_at_once() {
    let gateway = scim_gateway().await;
    // An account made locally, signed in, with an API key: both work.
    let account = user(&gateway, "dev@scim-live.example", Role::Developer).await;
    let mut browser = Browser::new(&gateway);
    browser.login_ok("dev@scim-live.example").await;
    assert_eq!(browser.me().await, 200);
    let token = browser
        .cookie
        .clone()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let caller = gateway.auth.authenticate_session(&token).await.unwrap();
    let scope = ApiKeyScope {
        apps: vec!["ws".into()],
        queries: Vec::new(),
    };
    let key = gateway
        .auth
        .create_api_key(&caller, "ci".into(), scope, None, &ClientInfo::default())
        .await
        .unwrap();
    let mut keyed = Browser::with_key(&gateway, &key.key);
    keyed.run("ws", "q").await.expect_ok();
    // The IdP finds the account by its email and deactivates it.
    let found = expect(
        &get(
            &gateway,
            "/Users?filter=userName%20eq%20%22dev%40scim-live.example%22",
        )
        .await,
        200,
    );
    assert_eq!(found["Resources"][0]["id"], json!(account.id));
    // It may not move the email of an account with a password (a reset would follow it).
    let steal = json!({
        "Operations": [{ "op": "replace", "path": "userName", "value": "thief@elsewhere.example" }]
    });
    let refused = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Users/{}", account.id),
        steal,
    )
    .await;
    expect_scim_error(&refused, 400, Some("mutability"));
    assert_eq!(
        gateway.auth.user_by_id(&account.id).await.unwrap().email,
        "dev@scim-live.example"
    );
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "path": "active", "value": false }]
    });
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{}", account.id),
            patch,
        )
        .await,
        200,
    );
    // The very next requests: the session is gone, the key is revoked.
    assert_eq!(browser.me().await, 401);
    let refused = keyed.run("ws", "q").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    let keys = gateway.auth.api_keys(&caller, false).await.unwrap();
    assert!(keys.iter().all(|k| k.revoked_at.is_some()), "{keys:?}");
    // A SCIM delete: the account is disabled and SCIM no longer knows it.
    let deleted = scim(
        &gateway,
        reqwest::Method::DELETE,
        &format!("/Users/{}", account.id),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    expect_scim_error(
        &get(&gateway, &format!("/Users/{}", account.id)).await,
        404,
        None,
    );
    let listed = expect(&get(&gateway, "/Users").await, 200);
    assert!(
        listed["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != json!(account.id))
    );
    assert!(gateway.auth.user_by_id(&account.id).await.unwrap().disabled);
}

#[tokio::test]
async fn groups_are_mirrored_into_the_members_groups() {
    let gateway = scim_gateway().await;
    let mut ids = Vec::new();
    for (n, email) in ["g1@scim-groups.example", "g2@scim-groups.example"]
        .iter()
        .enumerate()
    {
        let mut body = okta_user(email);
        body["externalId"] = json!(format!("group-test-{n}"));
        let body = expect(
            &send(&gateway, reqwest::Method::POST, "/Users", body).await,
            201,
        );
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let created = send(
        &gateway,
        reqwest::Method::POST,
        "/Groups",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Sales Team",
            "members": [{ "value": ids[0], "display": "g1" }]
        }),
    )
    .await;
    let group = expect(&created, 201);
    let group_id = group["id"].as_str().unwrap().to_string();
    assert_eq!(group["members"][0]["value"], json!(ids[0]));
    let groups = |id: &str| {
        let auth = gateway.auth.clone();
        let id = id.to_string();
        async move { auth.user_by_id(&id).await.unwrap().groups }
    };
    assert_eq!(groups(&ids[0]).await, vec!["Sales_Team"]);
    assert!(groups(&ids[1]).await.is_empty());
    // Okta: add a member, remove one by filter.
    let add = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "add", "path": "members", "value": [{ "value": ids[1], "display": "g2" }] }]
    });
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            add,
        )
        .await,
        200,
    );
    assert_eq!(groups(&ids[1]).await, vec!["Sales_Team"]);
    let remove = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "remove", "path": format!("members[value eq \"{}\"]", ids[0]) }]
    });
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            remove,
        )
        .await,
        200,
    );
    assert!(groups(&ids[0]).await.is_empty());
    // Okta renames with `{"id", "displayName"}`; the new name replaces the old one.
    let rename = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "replace", "value": { "id": group_id, "displayName": "EMEA Sales" } }]
    });
    let renamed = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            rename,
        )
        .await,
        200,
    );
    assert_eq!(renamed["displayName"], json!("EMEA Sales"));
    assert_eq!(groups(&ids[1]).await, vec!["EMEA_Sales"]);
    // Entra: remove members listed in `value`.
    let entra_remove = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "Remove", "path": "members", "value": [{ "value": ids[1] }] }]
    });
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            entra_remove,
        )
        .await,
        200,
    );
    assert!(groups(&ids[1]).await.is_empty());
    // A group set by an admin stays beside the SCIM ones.
    gateway
        .auth
        .set_groups(
            &ids[0],
            vec!["manual".into()],
            "test",
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let entra_add = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{ "op": "Add", "path": "members", "value": [{ "value": ids[0] }] }]
    });
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            entra_add,
        )
        .await,
        200,
    );
    assert_eq!(groups(&ids[0]).await, vec!["manual", "EMEA_Sales"]);
    // Filters and errors.
    let found = expect(
        &get(
            &gateway,
            "/Groups?filter=displayName%20eq%20%22EMEA%20Sales%22",
        )
        .await,
        200,
    );
    assert_eq!(found["totalResults"], json!(1));
    let unknown_member = json!({
        "Operations": [{ "op": "add", "path": "members", "value": [{ "value": "no-such-user" }] }]
    });
    let refused = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Groups/{group_id}"),
        unknown_member,
    )
    .await;
    expect_scim_error(&refused, 400, Some("invalidValue"));
    let twin = send(
        &gateway,
        reqwest::Method::POST,
        "/Groups",
        json!({"displayName": "EMEA Sales"}),
    )
    .await;
    expect_scim_error(&twin, 409, Some("uniqueness"));
    // Deleting the group takes its name out of the members' groups.
    let deleted = scim(
        &gateway,
        reqwest::Method::DELETE,
        &format!("/Groups/{group_id}"),
        None,
        Some(TOKEN),
    )
    .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(groups(&ids[0]).await, vec!["manual"]);
    expect_scim_error(
        &get(&gateway, &format!("/Groups/{group_id}")).await,
        404,
        None,
    );
}

#[tokio::test]
async fn lists_are_paginated() {
    let gateway = scim_gateway().await;
    for n in 0..5 {
        let mut body = okta_user(&format!("p{n}@scim-pages.example"));
        body["externalId"] = json!(format!("ext-{n}"));
        expect(
            &send(&gateway, reqwest::Method::POST, "/Users", body).await,
            201,
        );
    }
    let page = expect(&get(&gateway, "/Users?startIndex=2&count=2").await, 200);
    assert_eq!(page["totalResults"], json!(5));
    assert_eq!(page["startIndex"], json!(2));
    assert_eq!(page["itemsPerPage"], json!(2));
    let names: Vec<&str> = page["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["p1@scim-pages.example", "p2@scim-pages.example"]
    );
    let count_only = expect(&get(&gateway, "/Users?count=0").await, 200);
    assert_eq!(count_only["totalResults"], json!(5));
    assert_eq!(count_only["Resources"], json!([]));
    let past = expect(&get(&gateway, "/Users?startIndex=10").await, 200);
    assert_eq!(past["Resources"], json!([]));
}

/// A PatchOp message of `operations`.
fn patch_op(operations: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations
    })
}

#[tokio::test]
async fn emails_are_kept_as_sent_and_only_the_account_email_signs_in() {
    let gateway = scim_gateway().await;
    let emails = json!([
        { "value": "Carol@Work.example", "type": "work", "primary": true },
        { "value": "carol@home.example", "type": "home", "primary": false, "display": "Home" }
    ]);
    let created = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "carol.multi",
                "displayName": "Carol",
                "emails": emails,
                "active": true
            }),
        )
        .await,
        201,
    );
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["emails"], emails, "returned as sent");
    assert_eq!(get_user(&gateway, &id).await["emails"], emails);
    // The primary one, lower-cased, is the account's only address.
    let account = gateway.auth.user_by_id(&id).await.unwrap();
    assert_eq!(account.email, "carol@work.example");
    assert!(
        gateway
            .auth
            .user_by_email("carol@home.example")
            .await
            .is_err()
    );
    // With a password, the account email signs in; the secondary one does not.
    gateway
        .auth
        .set_password(
            &id,
            crate::auth_common::PASSWORD.into(),
            "test",
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    let mut browser = Browser::new(&gateway);
    browser.login_ok("carol@work.example").await;
    let refused = Browser::new(&gateway)
        .login("carol@home.example", crate::auth_common::PASSWORD)
        .await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    // Entra adds an address and changes the home one by filter: the login email stays.
    let patched = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Users/{id}"),
            patch_op(json!([
                { "op": "Add", "path": "emails", "value": [{ "value": "carol@other.example", "type": "other" }] },
                { "op": "Replace", "path": "emails[type eq \"home\"].value", "value": "carol@new-home.example" }
            ])),
        )
        .await,
        200,
    );
    assert_eq!(
        patched["emails"],
        json!([
            { "value": "Carol@Work.example", "type": "work", "primary": true },
            { "value": "carol@new-home.example", "type": "home", "primary": false, "display": "Home" },
            { "value": "carol@other.example", "type": "other" }
        ])
    );
    assert_eq!(
        gateway.auth.user_by_id(&id).await.unwrap().email,
        "carol@work.example"
    );
    // Making a secondary address the primary one would move the login (and reset) address
    // of an account with a password: refused, and nothing changes.
    let promote = send(
        &gateway,
        reqwest::Method::PUT,
        &format!("/Users/{id}"),
        json!({
            "userName": "carol.multi",
            "emails": [
                { "value": "carol@work.example", "type": "work", "primary": false },
                { "value": "carol@new-home.example", "type": "home", "primary": true }
            ],
            "active": true
        }),
    )
    .await;
    expect_scim_error(&promote, 400, Some("mutability"));
    assert_eq!(get_user(&gateway, &id).await["emails"], patched["emails"]);
    assert_eq!(browser.me().await, 200, "the session is untouched");
    // Two primaries, or a list too long, are refused.
    let two = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        patch_op(json!([{ "op": "add", "path": "emails", "value": [{ "value": "x@y.example", "primary": true }] }])),
    )
    .await;
    expect_scim_error(&two, 400, Some("invalidValue"));
    let many: Vec<Value> = (0..21)
        .map(|n| json!({ "value": format!("c{n}@many.example") }))
        .collect();
    let long = send(
        &gateway,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        patch_op(json!([{ "op": "replace", "path": "emails", "value": many }])),
    )
    .await;
    expect_scim_error(&long, 400, Some("invalidValue"));
    // A User whose userName is no address and whose only email is secondary-looking (no
    // `primary`) gets that one as its account email: the first is the fallback.
    let first = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Users",
            json!({ "userName": "dora.first", "emails": [{ "value": "Dora@First.example" }, { "value": "dora@second.example" }] }),
        )
        .await,
        201,
    );
    let dora = gateway
        .auth
        .user_by_id(first["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(dora.email, "dora@first.example");
    assert!(
        gateway
            .auth
            .user_by_email("dora@second.example")
            .await
            .is_err()
    );
}

async fn get_user(gateway: &crate::common::TestGateway, id: &str) -> Value {
    expect(&get(gateway, &format!("/Users/{id}")).await, 200)
}

#[tokio::test]
async fn removing_display_name_or_active_keeps_the_account_as_it_was() {
    let gateway = scim_gateway().await;
    let created = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Users",
            json!({
                "userName": "dan@scim-remove.example",
                "displayName": "Dan Display",
                "name": { "givenName": "Dan", "familyName": "Dee" },
                "active": true
            }),
        )
        .await,
        201,
    );
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    // Entra's shape: a capitalised Remove with a path. The SCIM displayName is gone; the
    // account falls back to the name it can derive.
    let removed = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "Remove", "path": "displayName" }])),
        )
        .await,
        200,
    );
    assert!(removed.get("displayName").is_none(), "{removed}");
    assert!(get_user(&gateway, &id).await.get("displayName").is_none());
    assert_eq!(
        gateway.auth.user_by_id(&id).await.unwrap().display_name,
        "Dan Dee"
    );
    // Set again, it is back.
    let set = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "replace", "value": { "displayName": "Daniel" } }])),
        )
        .await,
        200,
    );
    assert_eq!(set["displayName"], json!("Daniel"));
    // Deactivated, then `active` removed: no `active` is returned and the account stays
    // disabled; removing it never enables anything.
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "replace", "path": "active", "value": false }])),
        )
        .await,
        200,
    );
    let removed = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "remove", "path": "active" }])),
        )
        .await,
        200,
    );
    assert!(removed.get("active").is_none(), "{removed}");
    assert!(get_user(&gateway, &id).await.get("active").is_none());
    assert!(gateway.auth.user_by_id(&id).await.unwrap().disabled);
    // Nor does a replacement without `active` (before, it read as `true`).
    let put = expect(
        &send(
            &gateway,
            reqwest::Method::PUT,
            &path,
            json!({ "userName": "dan@scim-remove.example", "displayName": "Daniel" }),
        )
        .await,
        200,
    );
    assert!(put.get("active").is_none(), "{put}");
    assert!(gateway.auth.user_by_id(&id).await.unwrap().disabled);
    // Only `active: true` enables it, and then `active` is shown again.
    let on = expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "Add", "path": "active", "value": "True" }])),
        )
        .await,
        200,
    );
    assert_eq!(on["active"], json!(true));
    assert!(!gateway.auth.user_by_id(&id).await.unwrap().disabled);
    // Removing `active` from an enabled account leaves it enabled.
    expect(
        &send(
            &gateway,
            reqwest::Method::PATCH,
            &path,
            patch_op(json!([{ "op": "remove", "path": "active" }])),
        )
        .await,
        200,
    );
    assert!(!gateway.auth.user_by_id(&id).await.unwrap().disabled);
}

#[tokio::test]
async fn post_search_answers_as_the_list_and_needs_the_token() {
    let gateway = scim_gateway().await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let mut body = okta_user(&format!("s{n}@scim-search.example"));
        body["externalId"] = json!(format!("search-{n}"));
        let body = expect(
            &send(&gateway, reqwest::Method::POST, "/Users", body).await,
            201,
        );
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let group = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Groups",
            json!({ "displayName": "Searchers", "members": [{ "value": ids[0] }] }),
        )
        .await,
        201,
    );
    let search = |path: &'static str, body: Value| {
        let gateway = &gateway;
        async move { send(gateway, reqwest::Method::POST, path, body).await }
    };
    const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
    let found = expect(
        &search(
            "/Users/.search",
            json!({
                "schemas": [SEARCH],
                "filter": "userName eq \"S1@scim-search.example\"",
                "attributes": ["userName"],
                "startIndex": 1,
                "count": 10
            }),
        )
        .await,
        200,
    );
    assert_eq!(found["totalResults"], json!(1));
    let only = &found["Resources"][0];
    assert_eq!(only["id"], json!(ids[1]));
    let mut keys: Vec<&str> = only
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["id", "schemas", "userName"]);
    let groups = expect(
        &search(
            "/Groups/.search",
            json!({ "schemas": [SEARCH], "excludedAttributes": ["members"] }),
        )
        .await,
        200,
    );
    assert_eq!(groups["totalResults"], json!(1));
    assert_eq!(groups["Resources"][0]["displayName"], json!("Searchers"));
    assert!(groups["Resources"][0].get("members").is_none());
    // At the root: Users then Groups, one filter over both, paginated.
    let all = expect(
        &search(
            "/.search",
            json!({ "schemas": [SEARCH], "startIndex": 3, "count": 1 }),
        )
        .await,
        200,
    );
    assert_eq!(all["totalResults"], json!(3));
    assert_eq!(all["itemsPerPage"], json!(1));
    assert_eq!(all["Resources"][0]["id"], group["id"]);
    let by_name = expect(
        &search(
            "/.search",
            json!({ "schemas": [SEARCH], "filter": "displayName eq \"Searchers\"" }),
        )
        .await,
        200,
    );
    assert_eq!(by_name["totalResults"], json!(1));
    assert_eq!(by_name["Resources"][0]["id"], group["id"]);
    // Without the token: the same 401 as every SCIM route, before the body is read.
    for path in ["/Users/.search", "/Groups/.search", "/.search"] {
        let refused = scim(
            &gateway,
            reqwest::Method::POST,
            path,
            Some(json!({ "schemas": [SEARCH] })),
            None,
        )
        .await;
        expect_scim_error(&refused, 401, None);
        assert!(!refused.text.contains("Searchers") && !refused.text.contains("scim-search"));
    }
    // Bad bodies are SCIM 400s naming the problem.
    for (body, scim_type) in [
        (
            json!({ "schemas": [SEARCH], "count": "ten" }),
            "invalidValue",
        ),
        (
            json!({ "schemas": [SEARCH], "attributes": "userName" }),
            "invalidValue",
        ),
        (json!({ "schemas": [SEARCH], "filter": 5 }), "invalidValue"),
        (json!({ "schemas": ["urn:x"] }), "invalidSyntax"),
        (json!([SEARCH]), "invalidSyntax"),
        (
            json!({ "schemas": [SEARCH], "filter": "userName sw \"s\"" }),
            "invalidFilter",
        ),
    ] {
        let reply = search("/Users/.search", body.clone()).await;
        expect_scim_error(&reply, 400, Some(scim_type));
        let reply = search("/.search", body).await;
        expect_scim_error(&reply, 400, Some(scim_type));
    }
}

#[tokio::test]
async fn group_members_are_users_given_by_id_and_ref() {
    let gateway = scim_gateway().await;
    let user = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Users",
            okta_user("m@scim-members.example"),
        )
        .await,
        201,
    );
    let user_id = user["id"].as_str().unwrap().to_string();
    // What scim2-tester (and RFC 7643 8.7.1) sends: value, $ref and type.
    let member = json!({
        "value": user_id,
        "$ref": user["meta"]["location"],
        "type": "User"
    });
    let group = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Groups",
            json!({ "displayName": "Members", "members": [member] }),
        )
        .await,
        201,
    );
    assert_eq!(group["members"], json!([member]));
    let group_id = group["id"].as_str().unwrap().to_string();
    assert_eq!(
        gateway.auth.user_by_id(&user_id).await.unwrap().groups,
        vec!["Members"]
    );
    // A Group as a member (nested groups) and an id of nothing are refused; the group and
    // its member's groups stay as they were.
    let other = expect(
        &send(
            &gateway,
            reqwest::Method::POST,
            "/Groups",
            json!({ "displayName": "Other" }),
        )
        .await,
        201,
    );
    for member in [
        json!({ "value": other["id"], "type": "Group" }),
        json!({ "value": other["id"] }),
        json!({ "value": "2f7c5d0e-0000-4000-8000-000000000000", "type": "User" }),
    ] {
        let refused = send(
            &gateway,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            patch_op(json!([{ "op": "add", "path": "members", "value": [member] }])),
        )
        .await;
        expect_scim_error(&refused, 400, Some("invalidValue"));
    }
    let after = expect(&get(&gateway, &format!("/Groups/{group_id}")).await, 200);
    assert_eq!(after["members"], json!([member]));
    assert_eq!(
        gateway.auth.user_by_id(&user_id).await.unwrap().groups,
        vec!["Members"]
    );
    // The schema says so: members' `$ref` names Users only.
    let schema = expect(
        &get(
            &gateway,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group",
        )
        .await,
        200,
    );
    let members = schema["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "members")
        .unwrap();
    let reference = members["subAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "$ref")
        .unwrap();
    assert_eq!(reference["referenceTypes"], json!(["User"]));
}
