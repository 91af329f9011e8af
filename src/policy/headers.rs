//! Security headers: the baseline every response carries, and an app's overrides.
//!
//! Baseline: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//! `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'` with
//! `X-Frame-Options: DENY` (JSON is never meant to be rendered or framed),
//! `Cache-Control: no-store`, and `Strict-Transport-Security` when the connection is TLS.
//! Pages Sluice serves set their own, stricter-for-pages CSP first; the baseline only fills
//! what a response did not set.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::spec::HeadersSpec;

pub const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
pub const DEFAULT_REFERRER_POLICY: &str = "no-referrer";
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

const REFERRER_POLICIES: &[&str] = &[
    "no-referrer",
    "no-referrer-when-downgrade",
    "origin",
    "origin-when-cross-origin",
    "same-origin",
    "strict-origin",
    "strict-origin-when-cross-origin",
];

/// An app's compiled header overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPolicy {
    pub content_security_policy: HeaderValue,
    pub referrer_policy: HeaderValue,
    /// `X-Frame-Options: DENY` is sent only while nothing may frame the app.
    pub frame_deny: bool,
}

impl Default for HeaderPolicy {
    fn default() -> Self {
        HeaderPolicy {
            content_security_policy: HeaderValue::from_static(DEFAULT_CSP),
            referrer_policy: HeaderValue::from_static(DEFAULT_REFERRER_POLICY),
            frame_deny: true,
        }
    }
}

impl HeaderPolicy {
    pub fn compile(spec: &HeadersSpec) -> Result<HeaderPolicy, String> {
        let mut policy = HeaderPolicy::default();
        if let Some(sources) = &spec.frame_ancestors {
            if sources.is_empty() {
                return Err(
                    "`frame_ancestors` must list at least one source ('none' to forbid)".into(),
                );
            }
            for source in sources {
                let ok = matches!(source.as_str(), "'none'" | "'self'")
                    || crate::policy::cors::normalize_origin(source).is_some()
                    || source.starts_with("https://*.");
                if !ok || (source == "'none'" && sources.len() > 1) {
                    return Err(format!(
                        "`{source}` is not a frame-ancestors source: use 'none', 'self' or an \
                         origin such as https://portal.example.com"
                    ));
                }
            }
            policy.frame_deny = sources.len() == 1 && sources[0] == "'none'";
            policy.content_security_policy = header_value(&format!(
                "default-src 'none'; frame-ancestors {}",
                sources.join(" ")
            ))?;
        }
        if let Some(csp) = &spec.content_security_policy {
            if spec.frame_ancestors.is_some() {
                return Err(
                    "set either `frame_ancestors` or a whole `content_security_policy`, not both"
                        .into(),
                );
            }
            policy.frame_deny =
                !csp.contains("frame-ancestors") || csp.contains("frame-ancestors 'none'");
            policy.content_security_policy = header_value(csp)?;
        }
        if let Some(referrer) = &spec.referrer_policy {
            if !REFERRER_POLICIES.contains(&referrer.as_str()) {
                return Err(format!(
                    "`{referrer}` is not a Referrer-Policy; use one of {}",
                    REFERRER_POLICIES.join(", ")
                ));
            }
            policy.referrer_policy = header_value(referrer)?;
        }
        Ok(policy)
    }

    /// Sets this policy's headers (overriding the baseline, which comes later and only
    /// fills gaps).
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            self.content_security_policy.clone(),
        );
        headers.insert(header::REFERRER_POLICY, self.referrer_policy.clone());
        if self.frame_deny {
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
    }
}

fn header_value(text: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(text).map_err(|_| "header values must be visible ASCII".to_string())
}

/// Fills the baseline headers a response did not set itself.
pub fn apply_baseline(headers: &mut HeaderMap, tls: bool) {
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static(DEFAULT_REFERRER_POLICY));
    // A response that chose its own CSP chose its framing too (X-Frame-Options with it).
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_fills_gaps_and_hsts_needs_tls() {
        let mut headers = HeaderMap::new();
        apply_baseline(&mut headers, false);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["content-security-policy"], DEFAULT_CSP);
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.get("strict-transport-security").is_none());
        let mut headers = HeaderMap::new();
        apply_baseline(&mut headers, true);
        assert_eq!(headers["strict-transport-security"], HSTS);
    }

    #[test]
    fn app_overrides_win_over_the_baseline() {
        let spec = HeadersSpec {
            frame_ancestors: Some(vec!["'self'".into(), "https://portal.example.com".into()]),
            referrer_policy: Some("strict-origin".into()),
            content_security_policy: None,
        };
        let policy = HeaderPolicy::compile(&spec).unwrap();
        let mut headers = HeaderMap::new();
        policy.apply(&mut headers);
        apply_baseline(&mut headers, false);
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'self' https://portal.example.com"
        );
        assert_eq!(headers["referrer-policy"], "strict-origin");
        assert!(headers.get("x-frame-options").is_none());
    }

    #[test]
    fn bad_overrides_are_refused() {
        let bad = [
            HeadersSpec {
                frame_ancestors: Some(vec![]),
                ..HeadersSpec::default()
            },
            HeadersSpec {
                frame_ancestors: Some(vec!["*".into()]),
                ..HeadersSpec::default()
            },
            HeadersSpec {
                frame_ancestors: Some(vec!["'none'".into(), "'self'".into()]),
                ..HeadersSpec::default()
            },
            HeadersSpec {
                referrer_policy: Some("unsafe-url".into()),
                ..HeadersSpec::default()
            },
            HeadersSpec {
                content_security_policy: Some("default-src 'none'\r\nX-Evil: 1".into()),
                ..HeadersSpec::default()
            },
            HeadersSpec {
                frame_ancestors: Some(vec!["'self'".into()]),
                content_security_policy: Some("default-src 'none'".into()),
                ..HeadersSpec::default()
            },
        ];
        for spec in bad {
            assert!(HeaderPolicy::compile(&spec).is_err(), "{spec:?}");
        }
    }
}
