//! HTTP API datasources end to end (issue 3, first "tests that must exist" bullet): a real
//! HTTP upstream started by each test on 127.0.0.1 records exactly what it receives (the raw
//! request target, headers, body and peer address), and the tests check that
//!
//! - hostile values are encoded for where they stand (docs/CATALOG.md, HTTP templates):
//!   one percent-encoded path segment (`../admin`, `%2e%2e`, `a/b` cannot change the path; a
//!   whole `..` or `.` segment is a 400), form-encoded query and form values, CR/LF and other
//!   control characters refused in headers before anything is sent, typed JSON values in a
//!   JSON body (`"}` stays inside its string), unicode everywhere;
//! - the sealed credential (bearer, basic, API key in the query) reaches the upstream and
//!   never the browser, nor does the upstream's address or base path;
//! - replies come back in the documented envelope `{"status", "headers", "body"}` with only
//!   the safe headers; oversize, slow and unreachable upstreams map to 502/504/503 codes;
//! - redirects are off by default and, when enabled, followed only within the same origin,
//!   so the credential never travels to another host.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use sluice::spec::yaml;
use sluice::spec::{CatalogSpec, DatasourceSpec, HttpBodySpec};

use upstream::Upstream;

const TOKEN: &str = "tok-3f9a1c77e5b24d0c8a61";
const BASIC_PASSWORD: &str = "pw-b7d1e8c2a9f04c55";
const API_KEY: &str = "key-5e2c9b7a1d3f4e60";
/// A query-string key whose characters all change when percent-encoded.
const ODD_KEY: &str = "k+y/5e=2c 9b&7a~Ö-31d";

/// A recording HTTP server for the tests (axum on a loopback address, port 0).
mod upstream {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{ConnectInfo, Request, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::Response;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// One request as the upstream received it.
    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        /// The request target exactly as received: path and query, still percent-encoded.
        pub target: String,
        pub headers: HeaderMap,
        pub body: Bytes,
        pub peer: SocketAddr,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers.get(name).map(|v| v.as_bytes())
        }

        pub fn path(&self) -> &str {
            self.target.split('?').next().unwrap_or("")
        }
    }

    struct Shared {
        addr: SocketAddr,
        seen: Mutex<Vec<Seen>>,
    }

    pub struct Upstream {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        task: JoinHandle<()>,
    }

    impl Upstream {
        /// Listens on `ip`:0 (an address of the loopback interface).
        pub async fn start(ip: &str) -> Upstream {
            let listener = TcpListener::bind((ip, 0))
                .await
                .unwrap_or_else(|e| panic!("test upstream cannot listen on {ip}: {e}"));
            let addr = listener.local_addr().unwrap();
            let shared = Arc::new(Shared {
                addr,
                seen: Mutex::new(Vec::new()),
            });
            let app = Router::new().fallback(handle).with_state(shared.clone());
            let task = tokio::spawn(async move {
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
            Upstream { addr, shared, task }
        }

        pub fn port(&self) -> u16 {
            self.addr.port()
        }

        /// Every request received so far, in order.
        pub fn seen(&self) -> Vec<Seen> {
            self.shared.seen.lock().unwrap().clone()
        }

        /// Forgets what was received so far.
        pub fn clear(&self) {
            self.shared.seen.lock().unwrap().clear();
        }
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn handle(
        State(shared): State<Arc<Shared>>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        request: Request,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let echo = target
            .strip_prefix("/api/echo/")
            .map(|rest| rest.split('?').next().unwrap_or("").to_string());
        let seen = Seen {
            method: parts.method.to_string(),
            target: target.clone(),
            headers: parts.headers,
            body,
            peer,
        };
        shared.seen.lock().unwrap().push(seen.clone());
        match echo {
            Some(kind) => echo_reply(&kind, &seen),
            None => respond(&shared, &target).await,
        }
    }

    /// An upstream that repeats the request it received, as debug endpoints and error pages
    /// do: `json` (written with JSON escapes for `/` and `-`), `html` (an error page, with
    /// the query string and `Authorization` also echoed in forwarded headers) or `bytes`.
    fn echo_reply(kind: &str, seen: &Seen) -> Response {
        let headers: serde_json::Map<String, serde_json::Value> = seen
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.to_string(), serde_json::Value::String(value))
            })
            .collect();
        let lines: String = seen
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
            .collect();
        let body = String::from_utf8_lossy(&seen.body).into_owned();
        match kind {
            "json" => {
                let echoed = serde_json::json!({
                    "url": seen.target,
                    "headers": headers,
                    "body": body,
                    (seen.target.clone()): "the target as a key",
                });
                let escaped = echoed
                    .to_string()
                    .replace('/', "\\/")
                    .replace('-', "\\u002d");
                reply(200, "application/json", escaped)
            }
            "html" => Response::builder()
                .status(404)
                .header(header::CONTENT_TYPE, "text/html")
                .header(header::ETAG, seen.target.clone())
                .header(
                    header::CONTENT_LANGUAGE,
                    seen.headers
                        .get(header::AUTHORIZATION)
                        .cloned()
                        .unwrap_or(header::HeaderValue::from_static("none")),
                )
                .body(Body::from(format!(
                    "<h1>Not found: GET {}</h1><pre>{lines}{body}</pre>",
                    seen.target
                )))
                .unwrap(),
            _ => reply(
                200,
                "application/octet-stream",
                [
                    b"\xff\x00".as_slice(),
                    seen.target.as_bytes(),
                    lines.as_bytes(),
                ]
                .concat(),
            ),
        }
    }

    fn reply(status: u16, content_type: &str, body: impl Into<Body>) -> Response {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .unwrap()
    }

    fn redirect(location: &str) -> Response {
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("moved"))
            .unwrap()
    }

    /// The value of query parameter `name` in `target`, decoded.
    fn query_value(target: &str, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("http://upstream.test{target}")).ok()?;
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    async fn respond(shared: &Shared, target: &str) -> Response {
        let path = target.split('?').next().unwrap_or("");
        match path {
            "/api/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                reply(200, "application/json", r#"{"late":true}"#)
            }
            // 64 KiB with a Content-Length.
            "/api/big" => reply(200, "text/plain", vec![b'x'; 64 * 1024]),
            // 64 KiB streamed in chunks, without a Content-Length.
            "/api/big-stream" => {
                let chunks = (0..16).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 4096])));
                reply(
                    200,
                    "text/plain",
                    Body::from_stream(futures_util::stream::iter(chunks)),
                )
            }
            "/api/text" => reply(
                200,
                "text/plain; charset=utf-8",
                "plain \"text\" {not json} é日本😀",
            ),
            "/api/bytes" => reply(200, "application/octet-stream", vec![0xff, 0x00, 0x80]),
            "/api/bad-json" => reply(200, "application/json", "{not json"),
            "/api/empty" => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Body::empty())
                .unwrap(),
            "/api/status/404" => reply(404, "application/problem+json", r#"{"error":"no such thing"}"#),
            "/api/status/500" => reply(500, "text/plain", "boom"),
            "/api/final" => reply(200, "application/json", r#"{"final":true}"#),
            "/api/redirect/same" => redirect("/api/final"),
            "/api/redirect/absolute" => redirect(&format!("http://{}/api/final", shared.addr)),
            "/api/redirect/to" => redirect(&query_value(target, "to").unwrap_or_default()),
            "/api/loop" => redirect("/api/loop"),
            _ => Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(header::ETAG, "\"v1\"")
                .header(header::CACHE_CONTROL, "no-store")
                .header("x-ratelimit-remaining", "41")
                // Unsafe headers: none of these may reach the browser.
                .header(header::SET_COOKIE, "upstream_session=cookie-9d8c7b6a; HttpOnly")
                .header(header::SERVER, "internal-nginx/1.2.3")
                .header("x-internal", "backend-7.corp.example:8443")
                .header("x-powered-by", "upstream-framework")
                .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
                .body(Body::from(
                    r#"{"ok":true,"items":[1,2.5,"three",null],"name":"é日本😀","nested":{"a":{"b":[]}}}"#,
                ))
                .unwrap(),
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

const CATALOG: &str = r#"
datasources:
  api:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    headers:
      X-Client: sluice-test
    auth:
      bearer:
        token: "SEALED_API"
  keyed:
    kind: http
    base_url: "http://127.0.0.1:PORT/api/"
    egress_allow: [127.0.0.1/32]
    auth:
      api_key:
        query: api_key
        value: "SEALED_KEYED"
  basic:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    auth:
      basic:
        user: svc
        password: "SEALED_BASIC"
  odd_key:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    auth:
      api_key:
        query: key
        value: "SEALED_ODD_KEY"
  header_key:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    auth:
      api_key:
        header: X-Api-Key
        value: "SEALED_HEADER_KEY"
  limited:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    timeout_ms: 300
    max_response_bytes: 4096
    auth:
      bearer:
        token: "SEALED_LIMITED"
  follow:
    kind: http
    base_url: "http://127.0.0.1:PORT/api"
    egress_allow: [127.0.0.1/32]
    max_redirects: 3
    auth:
      bearer:
        token: "SEALED_FOLLOW"
  down:
    kind: http
    base_url: "http://127.0.0.1:CLOSED/api"
    egress_allow: [127.0.0.1/32]
    timeout_ms: 3000
    auth:
      bearer:
        token: "SEALED_DOWN"
apps:
  t:
    visibility: public
    grants: { anonymous: true }
    queries:
      item:
        datasource: api
        http:
          path: "/items/{{ params.id }}/detail"
        params:
          id: { type: text, required: true }
      dotted:
        datasource: api
        http:
          path: "/files/.{{ params.ext }}"
        params:
          ext: { type: text, required: true }
      search:
        datasource: keyed
        http:
          path: /search
          query:
            q: "{{ params.q }}"
            tag: "{{ params.tags }}"
            fixed: "a b"
            opt: "{{ params.opt }}"
            limit: "{{ params.limit }}"
        params:
          q: { type: text, required: true }
          tags: { type: "array<text>", default: [] }
          opt: { type: text }
          limit: { type: int, default: 10 }
      traced:
        datasource: api
        http:
          path: /traced
          headers:
            X-Trace: "{{ params.trace }}"
            X-Note: "note: {{ params.note }}"
        params:
          trace: { type: text, required: true }
          note: { type: text, default: "none" }
      create:
        datasource: api
        http:
          method: POST
          path: /things
        params:
          name: { type: text, required: true }
          count: { type: int, required: true }
          price: { type: numeric, required: true }
          flag: { type: bool, required: true }
          tags: { type: "array<text>", required: true }
          meta: { type: json, required: true }
      form:
        datasource: api
        http:
          method: POST
          path: /form
        params:
          a: { type: text, required: true }
          b: { type: text, required: true }
          tags: { type: "array<text>", required: true }
      note:
        datasource: api
        http:
          method: POST
          path: /note
        params:
          name: { type: text, required: true }
      whoami:
        datasource: basic
        http:
          path: /whoami
      header_keyed: { datasource: header_key, http: { path: /whoami } }
      echo_bearer_json: { datasource: api, http: { path: /echo/json } }
      echo_bearer_html: { datasource: api, http: { path: /echo/html } }
      echo_key_json: { datasource: keyed, http: { path: /echo/json } }
      echo_key_html: { datasource: keyed, http: { path: /echo/html } }
      echo_odd_json: { datasource: odd_key, http: { path: /echo/json } }
      echo_odd_html: { datasource: odd_key, http: { path: /echo/html } }
      echo_odd_bytes: { datasource: odd_key, http: { path: /echo/bytes } }
      echo_basic_json: { datasource: basic, http: { path: /echo/json } }
      echo_basic_html: { datasource: basic, http: { path: /echo/html } }
      echo_basic_bytes: { datasource: basic, http: { path: /echo/bytes } }
      echo_header_json: { datasource: header_key, http: { path: /echo/json } }
      echo_header_html: { datasource: header_key, http: { path: /echo/html } }
      ok: { datasource: api, http: { path: /ok } }
      text: { datasource: api, http: { path: /text } }
      bytes: { datasource: api, http: { path: /bytes } }
      bad_json: { datasource: api, http: { path: /bad-json } }
      empty: { datasource: api, http: { path: /empty } }
      missing: { datasource: api, http: { path: /status/404 } }
      broken: { datasource: api, http: { path: /status/500 } }
      small: { datasource: limited, http: { path: /ok } }
      big: { datasource: limited, http: { path: /big } }
      big_stream: { datasource: limited, http: { path: /big-stream } }
      slow: { datasource: limited, http: { path: /slow } }
      unreachable: { datasource: down, http: { path: /ok } }
      no_follow: { datasource: api, http: { path: /redirect/same } }
      follow_same: { datasource: follow, http: { path: /redirect/same } }
      follow_absolute: { datasource: follow, http: { path: /redirect/absolute } }
      follow_loop: { datasource: follow, http: { path: /loop } }
      follow_other:
        datasource: follow
        http:
          path: /redirect/to
          query: { to: "OTHER_ORIGIN/steal" }
      follow_localhost:
        datasource: follow
        http:
          path: /redirect/to
          query: { to: "http://localhost:PORT/api/final" }
      follow_metadata:
        datasource: follow
        http:
          path: /redirect/to
          query: { to: "http://169.254.169.254/latest/meta-data/" }
"#;

/// The request bodies of `create`, `form` and `note`. They are set on the parsed spec rather
/// than written in the YAML above so that these tests do not depend on how the YAML spells a
/// body (see `request_bodies_read_from_yaml_as_documented`, which does).
fn bodies() -> [(&'static str, HttpBodySpec); 3] {
    [
        (
            "create",
            HttpBodySpec::Json(json!({
                "name": "{{ params.name }}",
                "count": "{{ params.count }}",
                "price": "{{ params.price }}",
                "flag": "{{ params.flag }}",
                "tags": "{{ params.tags }}",
                "meta": "{{ params.meta }}",
                "greeting": "Hello {{ params.name }}!",
                "fixed": [1, "two", null, { "k": "v" }]
            })),
        ),
        (
            "form",
            HttpBodySpec::Form(BTreeMap::from([
                ("a".to_string(), "{{ params.a }}".to_string()),
                ("b".to_string(), "x {{ params.b }}".to_string()),
                ("many".to_string(), "{{ params.tags }}".to_string()),
            ])),
        ),
        (
            "note",
            HttpBodySpec::Text("Dear {{ params.name }}, thanks.".to_string()),
        ),
    ]
}

fn set_bodies(spec: &mut CatalogSpec) {
    let queries = &mut spec.apps.get_mut("t").expect("app t").queries;
    for (query, body) in bodies() {
        let http = queries
            .get_mut(query)
            .and_then(|q| q.http.as_mut())
            .expect("an HTTP query");
        http.body = Some(body);
    }
}

/// The main upstream (127.0.0.1), a second one on another origin (127.0.0.2) and a gateway.
struct Setup {
    upstream: Upstream,
    other: Upstream,
    gateway: TestGateway,
    /// Every gateway response seen by the test, for the leak checks.
    replies: Vec<Reply>,
}

async fn setup() -> Setup {
    let upstream = Upstream::start("127.0.0.1").await;
    let other = Upstream::start("127.0.0.2").await;
    let catalog = CATALOG
        .replace("OTHER_ORIGIN", &format!("http://{}", other.addr))
        .replace("CLOSED", &closed_port().await.to_string())
        .replace("PORT", &upstream.port().to_string())
        .replace("SEALED_API", &seal("api", "bearer", TOKEN))
        .replace("SEALED_KEYED", &seal("keyed", "api_key", API_KEY))
        .replace("SEALED_HEADER_KEY", &seal("header_key", "api_key", API_KEY))
        .replace("SEALED_ODD_KEY", &seal("odd_key", "api_key", ODD_KEY))
        .replace(
            "SEALED_BASIC",
            &seal("basic", "basic_password", BASIC_PASSWORD),
        )
        .replace("SEALED_LIMITED", &seal("limited", "bearer", TOKEN))
        .replace("SEALED_FOLLOW", &seal("follow", "bearer", TOKEN))
        .replace("SEALED_DOWN", &seal("down", "bearer", TOKEN));
    let mut spec = yaml::parse(&catalog).unwrap_or_else(|e| panic!("test catalog: {e}"));
    set_bodies(&mut spec);
    let gateway = TestGateway::start_spec(spec, &[]).await;
    Setup {
        upstream,
        other,
        gateway,
        replies: Vec::new(),
    }
}

/// A gateway response.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    elapsed: Duration,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("gateway response is not JSON ({e}): {}", self.text))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.text))
            .to_string()
    }

    /// Asserts a 200 carrying an envelope and returns it.
    fn envelope(&self) -> Value {
        assert_eq!(self.status, 200, "expected an envelope, got {}", self.text);
        let body = self.json();
        let keys: Vec<&str> = body
            .as_object()
            .expect("the envelope is an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["body", "headers", "status"],
            "envelope members: {}",
            self.text
        );
        assert!(body["status"].is_u64(), "{}", self.text);
        assert!(body["headers"].is_object(), "{}", self.text);
        body
    }

    /// Asserts a gateway error with this status and code.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.code(), code, "{}", self.text);
    }
}

impl Setup {
    async fn call(&mut self, query: &str, params: Value) -> Reply {
        let started = Instant::now();
        let body = json!({ "params": params }).to_string();
        let (status, headers, text) = self.gateway.post_raw("t", query, &body).await;
        let reply = Reply {
            status,
            headers,
            text,
            elapsed: started.elapsed(),
        };
        self.replies.push(reply.clone());
        reply
    }

    /// Asserts that no response the browser got carries a credential, the upstream's address
    /// or its base path, or anything from the unsafe upstream headers.
    fn assert_nothing_leaked(&self) {
        let port = self.upstream.port();
        let other = self.other.port();
        let forbidden = [
            TOKEN.to_string(),
            BASIC_PASSWORD.to_string(),
            API_KEY.to_string(),
            base64::engine::general_purpose::STANDARD.encode(format!("svc:{BASIC_PASSWORD}")),
            "enc:v1".to_string(),
            "127.0.0.1".to_string(),
            "127.0.0.2".to_string(),
            "localhost".to_string(),
            format!(":{port}"),
            format!(":{other}"),
            "/api".to_string(),
            "cookie-9d8c7b6a".to_string(),
            "internal-nginx".to_string(),
            "backend-7.corp".to_string(),
            "upstream-framework".to_string(),
        ];
        assert!(!self.replies.is_empty());
        for reply in &self.replies {
            let mut everything = reply.text.clone();
            for (name, value) in &reply.headers {
                everything.push_str(&format!(
                    "\n{name}: {}",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            for needle in &forbidden {
                assert!(
                    !everything.contains(needle.as_str()),
                    "a browser-facing response contains `{needle}`:\n{everything}"
                );
            }
        }
    }
}

fn bearer() -> Vec<u8> {
    format!("Bearer {TOKEN}").into_bytes()
}

#[tokio::test]
async fn path_bindings_are_one_encoded_segment() {
    let mut s = setup().await;
    let cases = [
        ("../admin", "..%2Fadmin"),
        ("%2e%2e", "%252e%252e"),
        ("%2E%2E%2F", "%252E%252E%252F"),
        ("a/b", "a%2Fb"),
        ("..\\..\\etc", "..%5C..%5Cetc"),
        ("é", "%C3%A9"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("😀", "%F0%9F%98%80"),
        ("\"quoted\" 'x'", "%22quoted%22%20%27x%27"),
        ("a?b=1#c", "a%3Fb%3D1%23c"),
        ("line\r\nbreak", "line%0D%0Abreak"),
        ("...", "..."),
        ("~user-1_x.y", "~user-1_x.y"),
    ];
    for (value, encoded) in cases {
        s.upstream.clear();
        let reply = s.call("item", json!({ "id": value })).await;
        reply.envelope();
        let seen = s.upstream.seen();
        assert_eq!(seen.len(), 1, "value {value:?}");
        assert_eq!(seen[0].method, "GET");
        assert_eq!(
            seen[0].target,
            format!("/api/items/{encoded}/detail"),
            "value {value:?}"
        );
        assert_eq!(seen[0].header("authorization"), Some(&bearer()[..]));
        assert_eq!(seen[0].header("x-client"), Some(&b"sluice-test"[..]));
    }

    // A value that would make the whole segment `.`, `..` or empty is refused before sending.
    s.upstream.clear();
    for value in ["..", ".", ""] {
        let reply = s.call("item", json!({ "id": value })).await;
        reply.assert_error(400, "invalid_params");
        assert_eq!(reply.json()["error"]["param"], "id", "{}", reply.text);
    }
    // The same when literal text and the value together form `..`.
    let reply = s.call("dotted", json!({ "ext": "." })).await;
    reply.assert_error(400, "invalid_params");
    assert_eq!(reply.json()["error"]["param"], "ext", "{}", reply.text);
    assert!(s.upstream.seen().is_empty(), "{:?}", s.upstream.seen());

    s.call("dotted", json!({ "ext": "txt" })).await.envelope();
    assert_eq!(s.upstream.seen()[0].target, "/api/files/.txt");
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn query_values_are_form_encoded_and_the_api_key_is_added_at_send_time() {
    let mut s = setup().await;
    let hostile = "../admin&api_key=evil#frag \"x\" 'y' é日本😀+~";
    let reply = s
        .call(
            "search",
            json!({ "q": hostile, "tags": ["a", "b/c", "%2e%2e"] }),
        )
        .await;
    reply.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    // Pairs in template order (by name), a list as one pair per item, the absent optional
    // param left out, and the credential last.
    assert_eq!(
        seen[0].target,
        format!(
            "/api/search?fixed=a+b&limit=10\
             &q=..%2Fadmin%26api_key%3Devil%23frag+%22x%22+%27y%27+%C3%A9%E6%97%A5%E6%9C%AC%F0%9F%98%80%2B%7E\
             &tag=a&tag=b%2Fc&tag=%252e%252e&api_key={API_KEY}"
        )
    );
    // No credential header for a query-string key.
    assert_eq!(seen[0].header("authorization"), None);

    // An empty list leaves the pair out entirely.
    s.upstream.clear();
    s.call("search", json!({ "q": "x", "opt": "" }))
        .await
        .envelope();
    assert_eq!(
        s.upstream.seen()[0].target,
        format!("/api/search?fixed=a+b&limit=10&opt=&q=x&api_key={API_KEY}")
    );
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn header_bindings_refuse_control_characters_and_send_nothing() {
    let mut s = setup().await;
    let refused = [
        ("trace", "abc\r\nX-Injected: 1"),
        ("trace", "abc\nX-Injected: 1"),
        ("trace", "abc\rX-Injected: 1"),
        ("trace", "bell\u{7}"),
        ("trace", "del\u{7f}"),
        ("trace", "nel\u{85}"),
    ];
    for (param, value) in refused {
        let reply = s.call("traced", json!({ param: value })).await;
        reply.assert_error(400, "invalid_params");
        assert_eq!(reply.json()["error"]["param"], param, "{}", reply.text);
        assert!(
            !reply.text.contains("X-Injected"),
            "the error echoes the value: {}",
            reply.text
        );
    }
    let reply = s
        .call("traced", json!({ "trace": "ok", "note": "two\r\nlines" }))
        .await;
    reply.assert_error(400, "invalid_params");
    assert_eq!(reply.json()["error"]["param"], "note", "{}", reply.text);
    assert!(
        s.upstream.seen().is_empty(),
        "the upstream received a request: {:?}",
        s.upstream.seen()
    );

    // Clean values (quotes, tab, unicode) arrive byte for byte.
    let reply = s
        .call(
            "traced",
            json!({ "trace": "abc-123\t\"q\" 'x'", "note": "é日本😀 {\"}" }),
        )
        .await;
    reply.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("x-trace"),
        Some("abc-123\t\"q\" 'x'".as_bytes())
    );
    assert_eq!(
        seen[0].header("x-note"),
        Some("note: é日本😀 {\"}".as_bytes())
    );
    assert_eq!(seen[0].header("authorization"), Some(&bearer()[..]));
    assert!(seen[0].header("x-injected").is_none());
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn json_body_values_are_typed_and_strings_stay_strings() {
    let mut s = setup().await;
    let name = "\"}], \"admin\": true, \"x\": {\"y\": \"{{ params.count }}\\ é日本😀";
    let reply = s
        .call(
            "create",
            json!({
                "name": name,
                "count": 5,
                "price": "12.50",
                "flag": true,
                "tags": ["a\"b", "}"],
                "meta": { "nested": [1, { "k": "\"}" }] }
            }),
        )
        .await;
    reply.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/api/things");
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"application/json"[..])
    );
    assert_eq!(seen[0].header("authorization"), Some(&bearer()[..]));
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap_or_else(|e| {
        panic!(
            "the upstream got invalid JSON ({e}): {}",
            String::from_utf8_lossy(&seen[0].body)
        )
    });
    let object = body.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "count", "fixed", "flag", "greeting", "meta", "name", "price", "tags"
        ],
        "{body}"
    );
    assert_eq!(body["name"], name);
    assert_eq!(body["count"], 5);
    assert!(body["count"].is_i64());
    // Numeric goes out as its exact decimal text.
    assert!(body["price"].is_number(), "{body}");
    assert_eq!(body["price"].to_string(), "12.50");
    assert_eq!(body["flag"], true);
    assert_eq!(body["tags"], json!(["a\"b", "}"]));
    assert_eq!(body["meta"], json!({ "nested": [1, { "k": "\"}" }] }));
    assert_eq!(body["greeting"], format!("Hello {name}!"));
    assert_eq!(body["fixed"], json!([1, "two", null, { "k": "v" }]));
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn form_and_text_bodies_are_encoded_for_their_type() {
    let mut s = setup().await;
    s.call(
        "form",
        json!({ "a": "1&b=2=3 é+%", "b": "\"q\"\r\n", "tags": ["p", "q/r"] }),
    )
    .await
    .envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/api/form");
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"application/x-www-form-urlencoded"[..])
    );
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        "a=1%26b%3D2%3D3+%C3%A9%2B%25&b=x+%22q%22%0D%0A&many=p&many=q%2Fr"
    );

    s.upstream.clear();
    let name = "\"}\r\n{{ params.name }} é😀";
    s.call("note", json!({ "name": name })).await.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"text/plain; charset=utf-8"[..])
    );
    assert_eq!(
        String::from_utf8_lossy(&seen[0].body),
        format!("Dear {name}, thanks.")
    );
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn basic_and_header_key_credentials_reach_the_upstream_only() {
    let mut s = setup().await;
    s.call("whoami", json!({})).await.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/whoami");
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("svc:{BASIC_PASSWORD}"))
    );
    assert_eq!(seen[0].header("authorization"), Some(expected.as_bytes()));

    s.upstream.clear();
    s.call("header_keyed", json!({})).await.envelope();
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/whoami");
    assert_eq!(seen[0].header("x-api-key"), Some(API_KEY.as_bytes()));
    assert_eq!(seen[0].header("authorization"), None);
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn replies_come_back_in_the_envelope_with_safe_headers_only() {
    let mut s = setup().await;

    let reply = s.call("ok", json!({})).await;
    let envelope = reply.envelope();
    assert_eq!(envelope["status"], 200);
    assert_eq!(
        envelope["headers"],
        json!({
            "content-type": "application/json; charset=utf-8",
            "etag": "\"v1\"",
            "cache-control": "no-store",
            "x-ratelimit-remaining": "41"
        })
    );
    assert_eq!(
        envelope["body"],
        json!({"ok": true, "items": [1, 2.5, "three", null], "name": "é日本😀", "nested": {"a": {"b": []}}})
    );
    // Nor do unsafe upstream headers appear on the gateway's own response.
    for name in ["set-cookie", "server", "x-internal", "x-powered-by", "etag"] {
        assert!(
            reply.headers.get(name).is_none(),
            "the gateway response carries the upstream's `{name}`"
        );
    }
    assert_ne!(
        reply
            .headers
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(&b"*"[..]),
        "the upstream's CORS header reached the browser"
    );

    let envelope = s.call("text", json!({})).await.envelope();
    assert_eq!(envelope["status"], 200);
    assert_eq!(envelope["body"], "plain \"text\" {not json} é日本😀");
    assert_eq!(
        envelope["headers"],
        json!({ "content-type": "text/plain; charset=utf-8" })
    );

    let envelope = s.call("bytes", json!({})).await.envelope();
    assert_eq!(
        envelope["body"], "/wCA",
        "binary bodies come back as base64"
    );

    let envelope = s.call("bad_json", json!({})).await.envelope();
    assert_eq!(
        envelope["body"], "{not json",
        "invalid JSON comes back as text"
    );

    let envelope = s.call("empty", json!({})).await.envelope();
    assert_eq!(envelope["status"], 204);
    assert_eq!(envelope["body"], Value::Null);

    let envelope = s.call("missing", json!({})).await.envelope();
    assert_eq!(envelope["status"], 404);
    assert_eq!(envelope["body"], json!({ "error": "no such thing" }));

    let envelope = s.call("broken", json!({})).await.envelope();
    assert_eq!(envelope["status"], 500);
    assert_eq!(envelope["body"], "boom");
    assert_eq!(envelope["headers"], json!({ "content-type": "text/plain" }));
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn oversize_slow_and_unreachable_upstreams_map_to_gateway_errors() {
    let mut s = setup().await;

    // Under the cap: served.
    s.call("small", json!({})).await.envelope();

    let reply = s.call("big", json!({})).await;
    reply.assert_error(502, "upstream_too_large");
    let reply = s.call("big_stream", json!({})).await;
    reply.assert_error(502, "upstream_too_large");

    let reply = s.call("slow", json!({})).await;
    reply.assert_error(504, "query_timeout");
    assert!(
        reply.elapsed < Duration::from_secs(2),
        "a 300 ms timeout took {:?}",
        reply.elapsed
    );

    let reply = s.call("unreachable", json!({})).await;
    reply.assert_error(503, "datasource_unavailable");
    assert!(
        reply.elapsed < Duration::from_secs(2),
        "{:?}",
        reply.elapsed
    );
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn redirects_are_not_followed_by_default() {
    let mut s = setup().await;
    let envelope = s.call("no_follow", json!({})).await.envelope();
    assert_eq!(envelope["status"], 302);
    // `Location` names the upstream: it is not a safe header.
    assert_eq!(envelope["headers"], json!({ "content-type": "text/plain" }));
    assert_eq!(envelope["body"], "moved");
    let seen = s.upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path(), "/api/redirect/same");
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn same_origin_redirects_are_followed_with_the_credential() {
    let mut s = setup().await;
    for query in ["follow_same", "follow_absolute"] {
        s.upstream.clear();
        let envelope = s.call(query, json!({})).await.envelope();
        assert_eq!(envelope["status"], 200, "{query}");
        assert_eq!(envelope["body"], json!({ "final": true }), "{query}");
        let seen = s.upstream.seen();
        let paths: Vec<&str> = seen.iter().map(|r| r.path()).collect();
        assert_eq!(paths[1], "/api/final", "{query}: {paths:?}");
        assert_eq!(paths.len(), 2, "{query}: {paths:?}");
        for request in &seen {
            assert_eq!(request.header("authorization"), Some(&bearer()[..]));
        }
    }

    // At most `max_redirects` hops (3): the original request and three follows.
    s.upstream.clear();
    let reply = s.call("follow_loop", json!({})).await;
    reply.assert_error(503, "datasource_unavailable");
    assert_eq!(s.upstream.seen().len(), 4, "{:?}", s.upstream.seen());
    s.assert_nothing_leaked();
}

#[tokio::test]
async fn redirects_to_another_origin_are_refused_and_get_no_credential() {
    let mut s = setup().await;
    for query in ["follow_other", "follow_localhost", "follow_metadata"] {
        s.upstream.clear();
        let reply = s.call(query, json!({})).await;
        // docs/API.md: a refused redirect is `503 datasource_unavailable`.
        reply.assert_error(503, "datasource_unavailable");
        assert!(
            reply.elapsed < Duration::from_secs(2),
            "{query}: {:?}",
            reply.elapsed
        );
        // Only the redirecting request reached the main upstream.
        let seen = s.upstream.seen();
        let paths: Vec<&str> = seen.iter().map(|r| r.path()).collect();
        assert_eq!(paths, ["/api/redirect/to"], "{query}");
    }
    assert!(
        s.other.seen().is_empty(),
        "the other origin received requests: {:?}",
        s.other.seen()
    );
    s.assert_nothing_leaked();
}

/// The upstream sees connections from 127.0.0.1 when no source address is configured (the
/// bound case is in tests/it/egress.rs).
#[tokio::test]
async fn upstream_sees_the_default_loopback_source() {
    let mut s = setup().await;
    s.call("ok", json!({})).await.envelope();
    let peer: SocketAddr = s.upstream.seen()[0].peer;
    assert_eq!(peer.ip().to_string(), "127.0.0.1");
}

/// The catalog YAML (applied from git and written by `sluice export`) spells an HTTP
/// datasource's credentials and request bodies as docs/CATALOG.md shows them: one-key maps
/// (`auth: {bearer: ...}`, `body: {json: ...}`), and what is exported reads back the same.
#[tokio::test]
async fn request_bodies_read_from_yaml_as_documented() {
    let text = r#"
datasources:
  api:
    kind: http
    base_url: "https://api.example.com/v1"
    auth:
      bearer:
        token: "enc:v1:k:AAAA"
apps:
  t:
    queries:
      create:
        datasource: api
        http:
          method: POST
          body:
            json:
              name: "{{ params.name }}"
              count: "{{ params.count }}"
              price: "{{ params.price }}"
              flag: "{{ params.flag }}"
              tags: "{{ params.tags }}"
              meta: "{{ params.meta }}"
              greeting: "Hello {{ params.name }}!"
              fixed: [1, "two", null, { "k": "v" }]
      form:
        datasource: api
        http:
          method: POST
          body:
            form:
              a: "{{ params.a }}"
              b: "x {{ params.b }}"
              many: "{{ params.tags }}"
      note:
        datasource: api
        http:
          method: POST
          body:
            text: "Dear {{ params.name }}, thanks."
"#;
    let spec = yaml::parse(text)
        .unwrap_or_else(|e| panic!("a request body written as a one-key map does not parse: {e}"));
    let queries = &spec.apps["t"].queries;
    for (query, body) in bodies() {
        assert_eq!(
            queries[query].http.as_ref().and_then(|h| h.body.as_ref()),
            Some(&body),
            "{query}"
        );
    }
    assert!(matches!(spec.datasources["api"], DatasourceSpec::Http(_)));
    let exported = yaml::to_string(&spec);
    let again = yaml::parse(&exported)
        .unwrap_or_else(|e| panic!("the exported catalog does not parse ({e}):\n{exported}"));
    assert_eq!(again, spec, "{exported}");
}

/// Every form a credential takes on the wire: as sent, percent-encoded (strict and form
/// encoding), and base64 (of the secret and of basic auth's `user:password`).
fn credential_forms() -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut forms = Vec::new();
    for secret in [TOKEN, BASIC_PASSWORD, API_KEY, ODD_KEY] {
        forms.push(secret.to_string());
        forms.push(url::form_urlencoded::byte_serialize(secret.as_bytes()).collect());
        forms.push(
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
        forms.push(STANDARD.encode(secret));
        forms.push(URL_SAFE_NO_PAD.encode(secret));
    }
    forms.push(STANDARD.encode(format!("svc:{BASIC_PASSWORD}")));
    forms
}

/// An upstream that echoes the request it got (URL, headers, body; as JSON with escapes, as
/// an HTML error page with the URL and `Authorization` in forwarded headers, as bytes)
/// sends the credential back; none of its forms reaches the client, whichever way the
/// datasource sends it.
#[tokio::test]
async fn an_upstream_that_echoes_its_request_never_echoes_the_credential() {
    let mut s = setup().await;
    for query in [
        "echo_bearer_json",
        "echo_bearer_html",
        "echo_key_json",
        "echo_key_html",
        "echo_odd_json",
        "echo_odd_html",
        "echo_odd_bytes",
        "echo_basic_json",
        "echo_basic_html",
        "echo_basic_bytes",
        "echo_header_json",
        "echo_header_html",
    ] {
        s.upstream.clear();
        let reply = s.call(query, json!({})).await;
        let envelope = reply.envelope();
        // The upstream did receive (and echo) the credential.
        assert_eq!(s.upstream.seen().len(), 1, "{query}");
        let mut text = envelope.to_string();
        if query.ends_with("_bytes") {
            // Binary bodies come back as base64: look inside.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(envelope["body"].as_str().expect("base64 text"))
                .expect("base64");
            text.push_str(&String::from_utf8_lossy(&decoded));
        }
        assert!(
            text.contains("[redacted]"),
            "{query}: the echo was not redacted: {text}"
        );
        for form in credential_forms() {
            assert!(
                !reply.text.contains(&form) && !text.contains(&form),
                "{query}: the reply carries `{form}`: {text}"
            );
        }
        if query.ends_with("_json") {
            assert!(envelope["body"].is_object(), "{query}: still JSON: {text}");
        }
    }
}

#[tokio::test]
async fn an_ndjson_request_for_an_http_query_is_refused_with_406_before_any_call() {
    let s = setup().await;
    s.upstream.clear();
    let response = s
        .gateway
        .client
        .post(s.gateway.url("/v1/apps/t/queries/ok"))
        .header("accept", "application/x-ndjson")
        .header("content-type", "application/json")
        .body(json!({ "params": {} }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_acceptable");
    assert_eq!(
        body["error"]["message"],
        "an HTTP datasource's answer is one JSON envelope, not rows: accept application/json"
    );
    assert!(s.upstream.seen().is_empty(), "the upstream was called");
    // The same query with the default Accept answers its envelope.
    let mut s = s;
    assert_eq!(s.call("ok", json!({})).await.envelope()["status"], 200);
}
