//! Cross-origin access (CORS) per app, and the CSRF check on cookie-authenticated writes.
//!
//! CORS answers only ever name an origin from the app's list (never a reflected arbitrary
//! origin, never `null`), add `Vary: Origin`, and allow credentials only for exact origins;
//! `*` is for public apps called without cookies and is answered without credentials.
//!
//! CSRF: a state-changing request that carries the session cookie must come from an allowed
//! page: an `Origin` that is the instance itself or in the app's list, or, without `Origin`,
//! `Sec-Fetch-Site: same-origin`. Anything else is refused before any datasource is touched.

use std::collections::BTreeSet;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::spec::CorsSpec;

/// Request headers every app allows cross-origin.
const BASE_HEADERS: &[&str] = &["content-type", "authorization"];
const DEFAULT_MAX_AGE: u32 = 600;

/// An app's compiled CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    /// Normalised exact origins; empty with `any` for `*`.
    pub origins: BTreeSet<String>,
    pub any: bool,
    /// Lower-case header names allowed in requests.
    pub allow_headers: Vec<String>,
    pub max_age_secs: u32,
}

impl CorsPolicy {
    /// Compiles `spec`; `public` says whether the app is public (required for `*`).
    pub fn compile(spec: &CorsSpec, public: bool) -> Result<CorsPolicy, String> {
        let mut origins = BTreeSet::new();
        let mut any = false;
        for origin in &spec.origins {
            if origin == "*" {
                any = true;
                continue;
            }
            let normal = normalize_origin(origin).ok_or_else(|| {
                format!(
                    "`{origin}` is not an origin: write scheme://host[:port] with no path, \
                     such as https://shop.example.com (`null` is never allowed)"
                )
            })?;
            origins.insert(normal);
        }
        if any && !origins.is_empty() {
            return Err("`*` cannot be combined with exact origins".into());
        }
        if any && !public {
            return Err(
                "`*` is only allowed for public apps (it is answered without credentials, so \
                 signed-in callers could not use it); list exact origins instead"
                    .into(),
            );
        }
        if origins.is_empty() && !any {
            return Err("`origins` must list at least one origin".into());
        }
        let mut allow_headers: Vec<String> = BASE_HEADERS.iter().map(|h| h.to_string()).collect();
        for name in &spec.allow_headers {
            let lower = name.to_ascii_lowercase();
            if HeaderName::from_bytes(lower.as_bytes()).is_err() {
                return Err(format!("`{name}` is not a header name"));
            }
            if !allow_headers.contains(&lower) {
                allow_headers.push(lower);
            }
        }
        Ok(CorsPolicy {
            origins,
            any,
            allow_headers,
            max_age_secs: spec.max_age_secs.unwrap_or(DEFAULT_MAX_AGE),
        })
    }

    /// Whether `origin` (as sent) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        if origin == "null" {
            return false;
        }
        self.any || normalize_origin(origin).is_some_and(|o| self.origins.contains(&o))
    }

    /// The headers of an actual (non-preflight) response to a request from `origin`.
    pub fn response_headers(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin.filter(|o| self.allows(o)) else {
            return;
        };
        if self.any {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if let Ok(value) = HeaderValue::from_str(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id, retry-after"),
        );
    }

    /// Answers a preflight: the headers to send, or why it is refused.
    pub fn preflight(
        &self,
        request: &HeaderMap,
        allowed_method: &Method,
    ) -> Result<HeaderMap, &'static str> {
        let origin = request
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .ok_or("a preflight needs an Origin header")?;
        if !self.allows(origin) {
            return Err("this origin is not allowed to call this app");
        }
        let method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !method.eq_ignore_ascii_case(allowed_method.as_str()) {
            return Err("this method is not allowed cross-origin");
        }
        let asked = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for name in asked.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !self
                .allow_headers
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            {
                return Err("a requested header is not allowed cross-origin");
            }
        }
        let mut headers = HeaderMap::new();
        self.response_headers(Some(origin), &mut headers);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_str(allowed_method.as_str()).expect("method names are valid"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_str(&self.allow_headers.join(", ")).expect("validated names"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.max_age_secs),
        );
        Ok(headers)
    }
}

/// `scheme://host[:port]` lower-cased, default ports dropped; `None` for anything else
/// (paths, user info, `null`, other schemes).
pub fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (rest, None),
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(port) if port.parse::<u16>().is_err() => None,
        Some(port) if port == default_port => Some(format!("{scheme}://{host}")),
        Some(port) => Some(format!("{scheme}://{host}:{port}")),
        None => Some(format!("{scheme}://{host}")),
    }
}

/// Whether the request is state-changing (anything but GET, HEAD, OPTIONS).
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF check for a request that carries the session cookie. The instance's own origins
/// are `public_origin` and `scheme://<Host>` (`scheme` as this instance serves: `https` with
/// TLS); `cors` is the app's policy, if any.
pub fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    scheme: &str,
    public_origin: Option<&str>,
    cors: Option<&CorsPolicy>,
) -> Result<(), &'static str> {
    if !is_write(method) {
        return Ok(());
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let normal = normalize_origin(origin);
            // This instance as the browser addressed it: the scheme it is served with and
            // the Host it was sent to.
            let host_origin = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .and_then(|host| normalize_origin(&format!("{scheme}://{host}")));
            let same = normal.as_deref().is_some_and(|o| {
                public_origin.is_some_and(|p| p == o) || host_origin.as_deref() == Some(o)
            });
            let listed = cors.is_some_and(|c| !c.any && c.allows(origin));
            if same || listed {
                Ok(())
            } else {
                Err("a signed-in write must come from this instance or an origin the app allows")
            }
        }
        None => match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            Some("same-origin") => Ok(()),
            _ => Err(
                "a signed-in write must carry an Origin header (browsers send one); \
                 scripts should not send a session cookie: use an API key (Authorization: \
                 Bearer slk_...) for queries, or SLUICE_ADMIN_TOKEN as a bearer for the \
                 admin API",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(origins: &[&str]) -> CorsSpec {
        CorsSpec {
            origins: origins.iter().map(|o| o.to_string()).collect(),
            ..CorsSpec::default()
        }
    }

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn origins_normalise() {
        let cases = [
            ("https://Shop.Example.com", Some("https://shop.example.com")),
            (
                "https://shop.example.com:443",
                Some("https://shop.example.com"),
            ),
            ("http://localhost:5173", Some("http://localhost:5173")),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("https://shop.example.com/", None),
            ("https://user@shop.example.com", None),
            ("null", None),
            ("file://x", None),
            ("https://", None),
            ("https://shop.example.com:99999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_origin(input).as_deref(), expected, "{input}");
        }
    }

    #[test]
    fn compile_refuses_unsafe_lists() {
        assert!(CorsPolicy::compile(&spec(&["*"]), false).is_err());
        assert!(CorsPolicy::compile(&spec(&["*", "https://a.example"]), true).is_err());
        assert!(CorsPolicy::compile(&spec(&["null"]), true).is_err());
        assert!(CorsPolicy::compile(&spec(&[]), true).is_err());
        assert!(CorsPolicy::compile(&spec(&["https://a.example/path"]), true).is_err());
        assert!(CorsPolicy::compile(&spec(&["*"]), true).is_ok());
    }

    #[test]
    fn responses_name_only_listed_origins() {
        let policy = CorsPolicy::compile(&spec(&["https://shop.example.com"]), false).unwrap();
        let mut headers = HeaderMap::new();
        policy.response_headers(Some("https://shop.example.com"), &mut headers);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://shop.example.com"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["vary"], "Origin");
        for other in [
            "https://evil.example",
            "null",
            "https://shop.example.com.evil.example",
        ] {
            let mut headers = HeaderMap::new();
            policy.response_headers(Some(other), &mut headers);
            assert!(
                headers.get("access-control-allow-origin").is_none(),
                "{other}"
            );
            assert_eq!(headers["vary"], "Origin");
        }
        let any = CorsPolicy::compile(&spec(&["*"]), true).unwrap();
        let mut headers = HeaderMap::new();
        any.response_headers(Some("https://anyone.example"), &mut headers);
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert!(headers.get("access-control-allow-credentials").is_none());
    }

    #[test]
    fn preflights_check_origin_method_and_headers() {
        let mut cors = spec(&["https://shop.example.com"]);
        cors.allow_headers = vec!["X-Trace".into()];
        let policy = CorsPolicy::compile(&cors, false).unwrap();
        let ok = request(&[
            ("origin", "https://shop.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, x-trace"),
        ]);
        let headers = policy.preflight(&ok, &Method::POST).unwrap();
        assert_eq!(headers["access-control-allow-methods"], "POST");
        assert_eq!(
            headers["access-control-allow-headers"],
            "content-type, authorization, x-trace"
        );
        assert_eq!(headers["access-control-max-age"], "600");
        let refusals = [
            request(&[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ]),
            request(&[
                ("origin", "null"),
                ("access-control-request-method", "POST"),
            ]),
            request(&[
                ("origin", "https://shop.example.com"),
                ("access-control-request-method", "DELETE"),
            ]),
            request(&[
                ("origin", "https://shop.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-other"),
            ]),
            request(&[("access-control-request-method", "POST")]),
        ];
        for refused in refusals {
            assert!(
                policy.preflight(&refused, &Method::POST).is_err(),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn csrf_allows_only_known_pages() {
        let cors = CorsPolicy::compile(&spec(&["https://shop.example.com"]), false).unwrap();
        let public = Some("https://sluice.example.com");
        let host = ("host", "sluice.internal:8080");
        let allowed = [
            request(&[("origin", "https://sluice.example.com"), host]),
            request(&[("origin", "http://sluice.internal:8080"), host]),
            request(&[("origin", "https://shop.example.com"), host]),
            request(&[("sec-fetch-site", "same-origin"), host]),
        ];
        for headers in allowed {
            assert!(
                check_csrf(&Method::POST, &headers, "http", public, Some(&cors)).is_ok(),
                "{headers:?}"
            );
        }
        let refused = [
            request(&[("origin", "https://evil.example"), host]),
            request(&[("origin", "null"), host]),
            request(&[("sec-fetch-site", "cross-site"), host]),
            request(&[("sec-fetch-site", "same-site"), host]),
            request(&[host]),
        ];
        for headers in refused {
            assert!(
                check_csrf(&Method::POST, &headers, "http", public, Some(&cors)).is_err(),
                "{headers:?}"
            );
        }
        // The scheme counts: http://host is not the same origin as an https instance.
        let plain = request(&[("origin", "http://sluice.internal:8080"), host]);
        assert!(check_csrf(&Method::POST, &plain, "https", public, Some(&cors)).is_err());
        let tls = request(&[("origin", "https://sluice.internal:8080"), host]);
        assert!(check_csrf(&Method::POST, &tls, "https", public, Some(&cors)).is_ok());
        // Reads are never refused; `*` never vouches for a cookie.
        assert!(check_csrf(&Method::GET, &request(&[host]), "http", public, None).is_ok());
        let any = CorsPolicy::compile(&spec(&["*"]), true).unwrap();
        let evil = request(&[("origin", "https://evil.example"), host]);
        assert!(check_csrf(&Method::POST, &evil, "http", public, Some(&any)).is_err());
        // A script (no Origin, no Sec-Fetch-Site) is told what to send instead of a cookie,
        // for queries and for the admin API.
        let hint = check_csrf(&Method::POST, &request(&[host]), "http", public, None)
            .expect_err("a cookie write without an Origin is refused");
        assert!(
            hint.contains("API key") && hint.contains("SLUICE_ADMIN_TOKEN"),
            "{hint}"
        );
    }
}
