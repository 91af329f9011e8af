//! Helpers shared by the `tests/auth_*.rs` suites: a gateway on a [`ManualClock`] with a
//! small catalog on the local PostgreSQL, and a [`Browser`] that keeps its session cookie the
//! way a browser does (reqwest's cookie store is not enabled, and reading `Set-Cookie` by hand
//! lets the tests assert its attributes).
//!
//! Suites use it as `crate::auth_common`.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sluice::auth::Role;
use sluice::clock::{Clock, ManualClock};
use sluice::spec::yaml;
use sluice::store::users::UserRecord;

use crate::common::{TestGateway, pg_datasource_yaml};

/// The password every test account gets (12+ characters, not on the common list, and not
/// containing any local part the suites use).
pub const PASSWORD: &str = "Tq7-vault-Lantern-93";
/// A different valid password (for "wrong password" and password changes).
pub const OTHER_PASSWORD: &str = "Mq4-harbour-Quill-58";
/// `SLUICE_ADMIN_TOKEN` for the gateways that enable the token.
pub const ADMIN_TOKEN: &str = "test-admin-token-0f1e2d3c4b5a69788796a5b4";

/// Apps of every visibility over the local PostgreSQL (no table needed).
pub fn catalog() -> String {
    format!(
        r#"
datasources:
{}apps:
  pub:
    visibility: public
    grants: {{ anonymous: true }}
    queries:
      q:
        datasource: pg
        sql: SELECT 'pub' AS app
      mine:
        datasource: pg
        sql: SELECT {{{{ user.id }}}}::text AS id
  ws:
    visibility: workspace
    grants: {{ roles: [admin, developer, viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 'ws' AS app
      other:
        datasource: pg
        sql: SELECT 'ws-other' AS app
      whoami:
        datasource: pg
        sql: SELECT {{{{ user.id }}}}::text AS id, {{{{ user.role }}}}::text AS role
  tools:
    visibility: workspace
    grants: {{ roles: [admin, developer, viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 'tools' AS app
  priv:
    visibility: private
    grants: {{ roles: [admin, developer, viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 'priv' AS app
  unset:
    grants: {{ roles: [admin, developer, viewer] }}
    queries:
      q:
        datasource: pg
        sql: SELECT 'unset' AS app
"#,
        pg_datasource_yaml("pg")
    )
}

/// A gateway serving [`catalog`] whose time is the returned clock. Unless `env` says
/// otherwise, the per-IP sign-in limit is raised so that suites doing many sign-ins from
/// 127.0.0.1 are not throttled (the throttling test sets its own).
pub async fn gateway(env: &[(&str, &str)]) -> (TestGateway, ManualClock) {
    gateway_with(&catalog(), env).await
}

pub async fn gateway_with(catalog: &str, env: &[(&str, &str)]) -> (TestGateway, ManualClock) {
    let clock = ManualClock::new();
    let mut vars: Vec<(&str, &str)> = vec![("SLUICE_AUTH_RATE_PER_MINUTE", "1000")];
    vars.extend_from_slice(env);
    let spec = yaml::parse(catalog).unwrap_or_else(|e| panic!("test catalog: {e}"));
    let gateway = TestGateway::start_clocked(spec, &vars, Arc::new(clock.clone())).await;
    (gateway, clock)
}

/// Creates an account with [`PASSWORD`].
pub async fn user(gateway: &TestGateway, email: &str, role: Role) -> UserRecord {
    gateway
        .auth
        .create_user(email, "", role, Vec::new(), Some(PASSWORD.into()), "test")
        .await
        .unwrap_or_else(|e| panic!("create {email}: {e}"))
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// `error.code` of a JSON error body ("" when there is none).
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Every `Set-Cookie` header, as sent.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ASCII cookie").to_string())
            .collect()
    }

    /// Asserts the status and the error code, with the body in the message.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_str()),
            (status, code),
            "{}",
            self.text
        );
    }

    #[track_caller]
    pub fn expect_ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        self.json()
    }
}

/// A simulated browser: its own connection pool and the session cookie it was last given.
pub struct Browser {
    client: reqwest::Client,
    base: String,
    /// `name=value` of the session cookie, as the browser would send it back.
    pub cookie: Option<String>,
    /// Sent as `Authorization: Bearer ...` instead of a cookie, when set.
    pub bearer: Option<String>,
}

impl Browser {
    pub fn new(gateway: &TestGateway) -> Browser {
        Browser {
            client: reqwest::Client::new(),
            base: gateway.url(""),
            cookie: None,
            bearer: None,
        }
    }

    /// A browser that presents `cookie` (for replaying an old one).
    pub fn with_cookie(gateway: &TestGateway, cookie: Option<String>) -> Browser {
        Browser {
            cookie,
            ..Browser::new(gateway)
        }
    }

    /// A client that presents an API key.
    pub fn with_key(gateway: &TestGateway, key: &str) -> Browser {
        Browser {
            bearer: Some(key.to_string()),
            ..Browser::new(gateway)
        }
    }

    pub async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        // What a browser sends on a same-origin fetch (the CSRF check wants it or an Origin).
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("sec-fetch-site", "same-origin");
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", cookie);
        }
        if let Some(key) = &self.bearer {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let reply = Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        };
        // Keep the cookie the way a browser does: a new value replaces it, an empty one with
        // Max-Age=0 removes it.
        for set in reply.set_cookies() {
            let pair = set.split(';').next().unwrap_or("").trim().to_string();
            if let Some((name, value)) = pair.split_once('=')
                && name.ends_with("sluice_session")
            {
                self.cookie = (!value.is_empty()).then_some(pair.clone());
            }
        }
        reply
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&mut self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Signs in and asserts it worked.
    pub async fn login_ok(&mut self, email: &str) -> Value {
        self.login(email, PASSWORD).await.expect_ok()
    }

    pub async fn login_totp(&mut self, email: &str, code: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            json!({ "email": email, "password": PASSWORD, "totp_code": code }),
        )
        .await
    }

    /// The status of `GET /v1/auth/me`: 200 while the session lives, 401 after.
    pub async fn me(&mut self) -> u16 {
        self.get("/v1/auth/me").await.status
    }

    /// Runs `app/query` with no params.
    pub async fn run(&mut self, app: &str, query: &str) -> Reply {
        self.post(
            &format!("/v1/apps/{app}/queries/{query}"),
            json!({ "params": {} }),
        )
        .await
    }

    pub async fn reauth(&mut self, extra: Value) -> Reply {
        let mut body = json!({ "password": PASSWORD });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.post("/v1/auth/reauth", body).await
    }
}

/// The TOTP code for `secret` (base32, as enrolment shows it) at the clock's time.
pub fn totp(secret: &str, clock: &ManualClock) -> String {
    let bytes = sluice::auth::totp::decode_secret(secret).expect("base32 secret");
    sluice::auth::totp::code_at(&bytes, clock.now())
}

/// A six-digit code that is none of the codes valid around the clock's time.
pub fn wrong_totp(secret: &str, clock: &ManualClock) -> String {
    let bytes = sluice::auth::totp::decode_secret(secret).expect("base32 secret");
    let valid: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|d| sluice::auth::totp::code_at(&bytes, clock.now() + d))
        .collect();
    (0..4)
        .map(|n| format!("{:06}", 123_456 + n))
        .find(|c| !valid.contains(c))
        .expect("a code that is not valid")
}

/// Enrols the signed-in `browser` in TOTP; returns the secret and the recovery codes. The
/// confirmation spends the current 30 s step, so the caller advances the clock before the
/// next code.
pub async fn enrol_totp(browser: &mut Browser, clock: &ManualClock) -> (String, Vec<String>) {
    let enrolment = browser
        .post("/v1/auth/mfa/enroll", json!({}))
        .await
        .expect_ok();
    let secret = enrolment["secret"].as_str().expect("secret").to_string();
    let confirmed = browser
        .post(
            "/v1/auth/mfa/confirm",
            json!({ "code": totp(&secret, clock) }),
        )
        .await
        .expect_ok();
    let codes = confirmed["recovery_codes"]
        .as_array()
        .expect("recovery codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    (secret, codes)
}

/// An admin account with TOTP, signed in on the returned browser; also its secret.
pub async fn enrolled_admin(
    gateway: &TestGateway,
    clock: &ManualClock,
    email: &str,
) -> (UserRecord, Browser, String) {
    let admin = user(gateway, email, Role::Admin).await;
    let mut browser = Browser::new(gateway);
    browser.login_ok(email).await;
    let (secret, _) = enrol_totp(&mut browser, clock).await;
    // The next code must come from a later step than the one the confirmation spent.
    clock.advance_secs(30);
    (admin, browser, secret)
}
