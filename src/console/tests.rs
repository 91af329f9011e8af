use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;

async fn get(path: &str, if_none_match: Option<&str>) -> Response {
    let mut request = Request::get(path);
    if let Some(tag) = if_none_match {
        request = request.header(header::IF_NONE_MATCH, tag);
    }
    router::<()>()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_the_strict_headers() {
    for (path, content_type) in [
        ("/console", HTML),
        ("/console/console.js", JAVASCRIPT),
        ("/console/console.css", CSS),
    ] {
        let response = get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONSOLE_CSP,
            "{path}"
        );
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
        let etag = headers[header::ETAG].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.len() == 26, "{path}: {etag}");

        // Revalidation: the same tag is 304 without a body, another is the asset again.
        let again = get(path, Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        let body = axum::body::to_bytes(again.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(body.is_empty());
        let other = get(path, Some("\"0000\"")).await;
        assert_eq!(other.status(), StatusCode::OK, "{path}");
    }
}

#[test]
fn the_policy_allows_no_inline_code_no_eval_and_no_framing() {
    for forbidden in ["unsafe-inline", "unsafe-eval", "*", "http:", "https:"] {
        assert!(!CONSOLE_CSP.contains(forbidden), "{forbidden}");
    }
    for required in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ] {
        assert!(CONSOLE_CSP.contains(required), "{required}");
    }
}

#[test]
fn the_assets_hold_no_inline_script_style_or_handler_and_no_eval() {
    let html = INDEX.body;
    // The one script tag loads the module; there is no other, and no inline style.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains(r#"<script type="module" src="/console/console.js"></script>"#));
    assert!(!html.contains("<style"));
    assert!(!html.contains("style="));
    let handler = html.split(|c: char| c.is_whitespace()).any(|word| {
        word.strip_prefix("on").is_some_and(|rest| {
            rest.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
            })
        })
    });
    assert!(!handler, "no inline event handler attribute");
    assert!(!html.contains("//"), "nothing from another origin");
    let script = SCRIPT.body;
    for forbidden in [
        "eval(",
        "new Function",
        "innerHTML",
        "outerHTML",
        "document.write",
        "setTimeout(\"",
    ] {
        assert!(!script.contains(forbidden), "{forbidden}");
    }
    assert!(!STYLE.body.contains("@import") && !STYLE.body.contains("url("));
}
