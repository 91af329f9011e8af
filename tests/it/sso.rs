//! OpenID Connect sign-in against a real provider: `oidc-provider` (npm, certified), run by
//! `tests/oidc/provider.mjs` on a local port (installed by scripts/test: `npm ci --prefix
//! tests/oidc`; without it these tests fail with that hint). A browser is simulated with a
//! cookie jar and manual redirects, so every hop (Sluice start, provider authorization and
//! interaction, Sluice callback) is a real HTTP request.
//!
//! Covered: just-in-time accounts with role and groups from claims, the same account on the
//! next sign-in (by `sub`), a replayed callback, a callback carried to another browser, an
//! existing local account never taken over (and linked by its owner with a fresh password
//! check), unverified and outside-domain emails, a provider that never says whether an email
//! is verified, a provider whose published key is not the one it signs with, and a key
//! rotation at the provider.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sluice::auth::Role;

use crate::auth_common::{self, Browser, PASSWORD};
use crate::common::TestGateway;
use crate::common::served::free_port;

const CLIENT_SECRET: &str = "test-client-secret-7c1f";

/// The provider's folder; its `node_modules` comes from `npm ci --prefix tests/oidc`.
fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A running `oidc-provider`, killed on drop.
pub struct Idp {
    pub port: u16,
    child: Child,
}

impl Idp {
    pub fn start(port: u16, redirect_uri: &str, kid: &str, mode: &str) -> Idp {
        Idp::spawn(port, redirect_uri, kid, mode, CLIENT_SECRET)
    }

    fn spawn(port: u16, redirect_uri: &str, kid: &str, mode: &str, secret: &str) -> Idp {
        let dir = provider_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the test OpenID provider is not installed: run `npm ci --prefix tests/oidc` \
             (scripts/test does)"
        );
        let log = std::env::temp_dir().join(format!("sluice-oidc-{port}.log"));
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_SECRET", secret)
            .env("KID", kid)
            .env("MODE", mode)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("provider log"))
            .spawn()
            .expect("node runs (the test OpenID provider)");
        // Read every line the provider prints (a closed pipe would stop it); the first
        // says it is listening.
        let stdout = child.stdout.take().unwrap();
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let _ = ready.send(line);
            }
        });
        let line = listening
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                panic!(
                    "the test OpenID provider did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        assert!(line.starts_with("listening"), "provider said: {line}");
        Idp { port, child }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Idp {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway with one provider, `corp`, at `idp_port`, and the provider itself.
pub struct Setup {
    pub gateway: TestGateway,
    pub clock: sluice::clock::ManualClock,
    pub idp: Idp,
    _dir: tempfile::TempDir,
}

/// The SSO file for provider `corp`; `extra` adds lines to its entry.
pub fn sso_file(dir: &Path, issuer: &str, extra: &str) -> PathBuf {
    let path = dir.join("sso.yaml");
    std::fs::write(
        &path,
        format!(
            "egress_allow: [127.0.0.0/8]
oidc:
  - name: corp
    label: Corp
    issuer: {issuer}
    client_id: sluice
    client_secret: {CLIENT_SECRET}
    scopes: [openid, email, profile, groups]
    allowed_domains: [example.com]
    groups_claim: groups
{extra}"
        ),
    )
    .unwrap();
    path
}

pub async fn setup(mode: &str, extra: &str, env: &[(&str, &str)]) -> Setup {
    let (sluice_port, idp_port) = (free_port(), free_port());
    let public = format!("http://127.0.0.1:{sluice_port}");
    let idp = Idp::start(
        idp_port,
        &format!("{public}/v1/auth/oidc/corp/callback"),
        "key-1",
        mode,
    );
    let dir = tempfile::tempdir().unwrap();
    let file = sso_file(dir.path(), &idp.issuer(), extra);
    let listen = format!("127.0.0.1:{sluice_port}");
    let file = file.to_str().unwrap().to_owned();
    let mut vars: Vec<(&str, &str)> = vec![
        ("SLUICE_LISTEN", &listen),
        ("SLUICE_PUBLIC_URL", &public),
        ("SLUICE_SSO_FILE", &file),
    ];
    vars.extend_from_slice(env);
    let (gateway, clock) = auth_common::gateway(&vars).await;
    Setup {
        gateway,
        clock,
        idp,
        _dir: dir,
    }
}

/// Where a browser signs in: Sluice's base URL and the provider's issuer.
pub struct Sites {
    pub sluice: String,
    pub idp: String,
}

impl Setup {
    pub fn sites(&self) -> Sites {
        Sites {
            sluice: self.gateway.url(""),
            idp: self.idp.issuer(),
        }
    }
}

/// A browser: one cookie jar for 127.0.0.1 (cookies do not depend on the port), redirects
/// followed by hand.
pub struct Jar {
    client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

/// One answer, with where it redirects.
#[derive(Debug)]
pub struct Hop {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Hop {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (
                self.status,
                self.json()["error"]["code"].as_str().unwrap_or("")
            ),
            (status, code),
            "{}",
            self.body
        );
    }
}

impl Jar {
    pub fn new() -> Jar {
        Jar {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn request(&mut self, method: reqwest::Method, url: &str) -> Hop {
        let mut request = self
            .client
            .request(method, url)
            .header("sec-fetch-site", "same-origin");
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        let response = request.send().await.expect("request");
        for set in response.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap().split(';').next().unwrap().trim();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || set.to_str().unwrap().contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.into(), value.into());
                }
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Hop {
            status,
            location,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Hop {
        self.request(reqwest::Method::GET, url).await
    }

    /// The session cookie Sluice set, as a `Browser` sends it.
    pub fn session(&self) -> Option<String> {
        self.cookies
            .get("sluice_session")
            .map(|v| format!("sluice_session={v}"))
    }

    /// Follows redirects from `url` until one leads to Sluice's callback; returns that URL
    /// (not yet visited).
    pub async fn follow_to_callback(&mut self, url: &str, sites: &Sites) -> String {
        let callback = format!("{}/v1/auth/oidc/corp/callback", sites.sluice);
        let mut next = url.to_owned();
        for _ in 0..10 {
            let hop = self.get(&next).await;
            let location = hop
                .location
                .unwrap_or_else(|| panic!("no redirect from {next}: {} {}", hop.status, hop.body));
            let absolute = if location.starts_with('/') {
                let base = url::Url::parse(&next).unwrap();
                base.join(&location).unwrap().to_string()
            } else {
                location
            };
            if absolute.starts_with(&callback) {
                return absolute;
            }
            next = absolute;
        }
        panic!("no callback after 10 redirects");
    }

    /// Starts a sign-in at Sluice as `who` and follows it to the callback URL.
    pub async fn start(&mut self, sites: &Sites, who: &str) -> String {
        let start = format!(
            "{}/v1/auth/oidc/corp/start?login_hint={who}&return_to=/done",
            sites.sluice
        );
        let hop = self.get(&start).await;
        assert_eq!(hop.status, 303, "{}", hop.body);
        let to_provider = hop.location.expect("a redirect to the provider");
        assert!(to_provider.starts_with(&sites.idp), "{to_provider}");
        for needed in [
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
        ] {
            assert!(to_provider.contains(needed), "{to_provider}");
        }
        self.follow_to_callback(&to_provider, sites).await
    }

    /// A whole sign-in as `who`: the callback's answer.
    pub async fn sign_in(&mut self, sites: &Sites, who: &str) -> Hop {
        let callback = self.start(sites, who).await;
        self.get(&callback).await
    }
}

/// `GET /v1/auth/me` with the jar's session.
async fn me(setup: &Setup, jar: &Jar) -> Value {
    let mut browser = Browser::with_cookie(&setup.gateway, jar.session());
    browser.get("/v1/auth/me").await.expect_ok()
}

#[tokio::test]
async fn a_provider_sign_in_opens_a_session_for_a_just_in_time_account() {
    let setup = setup(
        "normal",
        "    create_users: true\n    role_groups: { developer: [devs] }\n",
        &[],
    )
    .await;
    let mut jar = Jar::new();
    let hop = jar.sign_in(&setup.sites(), "alice").await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    assert_eq!(hop.location.as_deref(), Some("/done"));
    assert!(
        !jar.cookies.contains_key("sluice_sso"),
        "the flow cookie is cleared"
    );
    let who = me(&setup, &jar).await;
    assert_eq!(who["email"], "alice@example.com", "{who}");
    assert_eq!(who["role"], "viewer", "{who}");
    assert_eq!(who["groups"], json!(["staff"]), "{who}");
    let alice_id = who["id"].as_str().unwrap().to_owned();

    // The next sign-in is the same account (found by the provider's `sub`), and the
    // session works on a query.
    let mut again = Jar::new();
    assert_eq!(again.sign_in(&setup.sites(), "alice").await.status, 303);
    assert_eq!(me(&setup, &again).await["id"], alice_id.as_str());
    let mut browser = Browser::with_cookie(&setup.gateway, again.session());
    let ran = browser
        .post("/v1/apps/ws/queries/whoami", json!({ "params": {} }))
        .await
        .expect_ok();
    assert_eq!(ran["rows"][0][0], alice_id.as_str(), "{ran}");

    // Groups map to a role: bob is in `devs`.
    let mut bob = Jar::new();
    assert_eq!(bob.sign_in(&setup.sites(), "bob").await.status, 303);
    let who = me(&setup, &bob).await;
    assert_eq!(who["role"], "developer", "{who}");

    // The linked provider shows in the account.
    let mut browser = Browser::with_cookie(&setup.gateway, jar.session());
    let listed = browser.get("/v1/auth/identities").await.expect_ok();
    assert_eq!(listed["identities"][0]["provider"], "corp", "{listed}");

    // The sign-in page's list.
    let offered = browser.get("/v1/auth/sso").await.expect_ok();
    assert_eq!(offered["providers"][0]["name"], "corp", "{offered}");
    assert_eq!(offered["sso_only"], false);
}

#[tokio::test]
async fn a_callback_works_once_and_only_in_the_browser_that_started_it() {
    let setup = setup("normal", "    create_users: true\n", &[]).await;
    let mut jar = Jar::new();
    let callback = jar.start(&setup.sites(), "alice").await;
    // Carried to another browser (no flow cookie): refused, and the flow is spent.
    let mut other = Jar::new();
    other
        .get(&callback)
        .await
        .expect_error(400, "sso_browser_mismatch");
    jar.get(&callback)
        .await
        .expect_error(400, "sso_flow_unknown");

    // Finished once, then replayed (same code, same state, same cookies): refused.
    let callback = jar.start(&setup.sites(), "alice").await;
    let flow_cookie = jar.cookies.clone();
    assert_eq!(jar.get(&callback).await.status, 303);
    jar.cookies.extend(flow_cookie);
    jar.get(&callback)
        .await
        .expect_error(400, "sso_flow_unknown");

    // A made-up state, and none.
    let forged = setup
        .gateway
        .url("/v1/auth/oidc/corp/callback?code=x&state=forged");
    jar.get(&forged).await.expect_error(400, "sso_flow_unknown");
    let bare = setup.gateway.url("/v1/auth/oidc/corp/callback");
    jar.get(&bare).await.expect_error(400, "sso_flow_unknown");

    // An unknown provider, and return_to pointing elsewhere.
    let unknown = setup.gateway.url("/v1/auth/oidc/nope/start");
    assert_eq!(jar.get(&unknown).await.status, 404);
    let away = setup
        .gateway
        .url("/v1/auth/oidc/corp/start?return_to=//evil.example/");
    jar.get(&away).await.expect_error(400, "invalid_input");
}

#[tokio::test]
async fn an_existing_local_account_is_linked_only_by_its_owner() {
    let setup = setup("normal", "    create_users: true\n", &[]).await;
    let owner = auth_common::user(&setup.gateway, "owner@example.com", Role::Developer).await;

    // The provider's verified email matches a local account: no takeover.
    let mut stranger = Jar::new();
    stranger
        .sign_in(&setup.sites(), "owner")
        .await
        .expect_error(403, "sso_link_required");
    assert!(stranger.session().is_none());

    // Linking needs a session with a fresh password check...
    let mut browser = Browser::new(&setup.gateway);
    browser.login_ok("owner@example.com").await;
    let mut jar = Jar::new();
    let session = browser.cookie.clone().unwrap();
    let (name, value) = session.split_once('=').unwrap();
    jar.cookies.insert(name.into(), value.into());
    // (The password sign-in just now is the fresh check.)
    let linked = jar
        .request(
            reqwest::Method::POST,
            &setup.gateway.url("/v1/auth/oidc/corp/link"),
        )
        .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    let to_provider = linked.json()["redirect"].as_str().unwrap().to_owned();
    let callback = jar
        .follow_to_callback(&format!("{to_provider}&login_hint=owner"), &setup.sites())
        .await;
    let done = jar.get(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);

    // ...after which the provider signs in to that very account.
    let mut later = Jar::new();
    assert_eq!(later.sign_in(&setup.sites(), "owner").await.status, 303);
    assert_eq!(me(&setup, &later).await["id"], owner.id.as_str());

    // A link flow finished without the owner's session is refused.
    let linked = jar
        .request(
            reqwest::Method::POST,
            &setup.gateway.url("/v1/auth/oidc/corp/link"),
        )
        .await;
    let to_provider = linked.json()["redirect"].as_str().unwrap().to_owned();
    let callback = jar
        .follow_to_callback(&format!("{to_provider}&login_hint=alice"), &setup.sites())
        .await;
    jar.cookies.remove("sluice_session");
    assert_eq!(jar.get(&callback).await.status, 401);

    // Unlinking needs a fresh check (the sign-in was one: let it age), and keeps the
    // owner's password way in.
    setup.clock.advance_secs(3600);
    let mut owner_browser = Browser::with_cookie(&setup.gateway, later.session());
    let refused = owner_browser.delete("/v1/auth/identities/corp").await;
    refused.expect_error(403, "fresh_auth_required");
    owner_browser
        .post("/v1/auth/reauth", json!({ "password": PASSWORD }))
        .await
        .expect_ok();
    owner_browser
        .delete("/v1/auth/identities/corp")
        .await
        .expect_ok();
    let listed = owner_browser.get("/v1/auth/identities").await.expect_ok();
    assert_eq!(listed["identities"], json!([]), "{listed}");
}

#[tokio::test]
async fn unverified_and_outside_domain_emails_open_nothing() {
    let setup = setup("normal", "    create_users: true\n", &[]).await;
    for who in ["unverified", "outsider"] {
        let mut jar = Jar::new();
        jar.sign_in(&setup.sites(), who)
            .await
            .expect_error(403, "sso_no_account");
        assert!(jar.session().is_none(), "{who}");
    }
    let users = setup.gateway.auth.list_users().await.unwrap();
    assert!(users.is_empty(), "no account was created: {users:?}");

    // Without create_users, a trusted email opens nothing either.
    let closed = self::setup("normal", "", &[]).await;
    let mut jar = Jar::new();
    jar.sign_in(&closed.sites(), "alice")
        .await
        .expect_error(403, "sso_no_account");
}

#[tokio::test]
async fn a_provider_that_omits_email_verified_opens_nothing_by_email() {
    let setup = setup("no-email-verified", "    create_users: true\n", &[]).await;
    auth_common::user(&setup.gateway, "owner@example.com", Role::Viewer).await;
    for who in ["alice", "owner"] {
        let mut jar = Jar::new();
        jar.sign_in(&setup.sites(), who)
            .await
            .expect_error(403, "sso_no_account");
    }
}

#[tokio::test]
async fn a_token_signed_with_a_key_the_provider_does_not_publish_is_refused() {
    let setup = setup("wrong-key", "    create_users: true\n", &[]).await;
    let mut jar = Jar::new();
    jar.sign_in(&setup.sites(), "alice")
        .await
        .expect_error(401, "sso_token_refused");
    assert!(jar.session().is_none());
    assert!(setup.gateway.auth.list_users().await.unwrap().is_empty());
    let events = setup.gateway.audit.list(100, None).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "login_failed" && e.reason.as_deref() == Some("bad_signature")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_picked_up() {
    let mut setup = setup("normal", "    create_users: true\n", &[]).await;
    let mut jar = Jar::new();
    assert_eq!(jar.sign_in(&setup.sites(), "alice").await.status, 303);
    // The provider restarts with a new key (a new kid): Sluice's cached key set does not
    // have it, and is fetched again (at most every 10 s: wait that out).
    let port = setup.idp.port;
    let redirect = setup.gateway.url("/v1/auth/oidc/corp/callback");
    setup.idp.stop();
    setup.idp = Idp::start(port, &redirect, "key-2", "normal");
    tokio::time::sleep(sluice::sso::keys::MIN_REFRESH + Duration::from_millis(500)).await;
    let mut again = Jar::new();
    let hop = again.sign_in(&setup.sites(), "alice").await;
    assert_eq!(hop.status, 303, "{}", hop.body);
}

#[tokio::test]
async fn an_account_with_a_second_factor_needs_the_provider_to_report_one() {
    let setup = setup("normal", "    create_users: true\n", &[]).await;
    for who in ["strong", "weak"] {
        // The account exists through the provider, then enrols TOTP.
        let mut jar = Jar::new();
        assert_eq!(jar.sign_in(&setup.sites(), who).await.status, 303, "{who}");
        let mut browser = Browser::with_cookie(&setup.gateway, jar.session());
        auth_common::enrol_totp(&mut browser, &setup.clock).await;
    }
    // `strong`'s provider sign-in reports a second factor (amr: pwd, otp); `weak`'s does not.
    let mut strong = Jar::new();
    let hop = strong.sign_in(&setup.sites(), "strong").await;
    assert_eq!(hop.status, 303, "{}", hop.body);
    let mut weak = Jar::new();
    weak.sign_in(&setup.sites(), "weak")
        .await
        .expect_error(403, "sso_refused");
    assert!(weak.session().is_none());
    let events = setup.gateway.audit.list(100, None).await.unwrap();
    assert!(
        events.iter().any(|e| e.event == "login_failed"
            && e.reason.as_deref() == Some("sso_without_second_factor")),
        "{events:?}"
    );
}

/// Security invariant 2 (docs/SECURITY.md) for SSO: a `sluice serve` at trace level signs
/// someone in through the provider, refuses a replayed callback and a forged bearer JWT,
/// and its output holds none of the client secret, the `state`, the `code`, the flow or
/// session cookie, nor the token.
#[tokio::test]
async fn sso_secrets_stay_out_of_the_log() {
    use crate::common::served::{Served, init_store, sluice_with_test_key};
    let (sluice_port, idp_port) = (free_port(), free_port());
    let address: std::net::SocketAddr = format!("127.0.0.1:{sluice_port}").parse().unwrap();
    let public = format!("http://{address}");
    let canary = format!("CanarySecret{}", uuid::Uuid::new_v4().simple());
    let idp = Idp::start_with_secret(
        idp_port,
        &format!("{public}/v1/auth/oidc/corp/callback"),
        &canary,
    );
    let dir = tempfile::tempdir().unwrap();
    init_store(dir.path());
    let file = dir.path().join("sso.yaml");
    std::fs::write(
        &file,
        format!(
            "egress_allow: [127.0.0.0/8]
oidc:
  - name: corp
    issuer: {issuer}
    client_id: sluice
    client_secret: {canary}
    scopes: [openid, email, profile, groups]
    allowed_domains: [example.com]
    create_users: true
jwt:
  - name: ext
    issuer: {issuer}
    audience: [api]
",
            issuer = idp.issuer()
        ),
    )
    .unwrap();
    let mut server = Served::start_at(
        sluice_with_test_key(dir.path(), &["serve"])
            .env("SLUICE_SSO_FILE", &file)
            .env("SLUICE_PUBLIC_URL", &public)
            .env("SLUICE_LOG_LEVEL", "trace"),
        address,
    )
    .await;
    let sites = Sites {
        sluice: public.clone(),
        idp: idp.issuer(),
    };
    let mut jar = Jar::new();
    let callback = jar.start(&sites, "alice").await;
    let flow_cookie = jar.cookies.get("sluice_sso").cloned().expect("flow cookie");
    let query: BTreeMap<String, String> = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let done = jar.get(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let session = jar.cookies.get("sluice_session").cloned().expect("session");
    jar.cookies.insert("sluice_sso".into(), flow_cookie.clone());
    jar.get(&callback)
        .await
        .expect_error(400, "sso_flow_unknown");
    // A forged bearer token carrying a canary in its payload.
    let forged = format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImtleS0xIn0.{}.c2ln",
        URL_SAFE_NO_PAD.encode(
            json!({ "iss": idp.issuer(), "aud": "api", "sub": canary, "exp": 4102444800u64 })
                .to_string()
        )
    );
    let refused = reqwest::Client::new()
        .get(format!("{public}/v1/auth/me"))
        .header("authorization", format!("Bearer {forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    server.terminate().await;
    let output = server.output();
    assert!(
        output.contains("/v1/auth/oidc/corp/callback")
            && output.contains("/v1/auth/oidc/corp/start"),
        "the request log has the sign-in's lines: {output}"
    );
    for (what, secret) in [
        ("client secret", canary.as_str()),
        ("state", query["state"].as_str()),
        ("code", query["code"].as_str()),
        ("flow cookie", flow_cookie.as_str()),
        ("session cookie", session.as_str()),
        ("bearer token", forged.as_str()),
    ] {
        assert!(!output.contains(secret), "the {what} is in the log");
    }
}

impl Idp {
    /// A provider whose client `sluice` has `secret`.
    fn start_with_secret(port: u16, redirect_uri: &str, secret: &str) -> Idp {
        Idp::spawn(port, redirect_uri, "key-1", "normal", secret)
    }
}
