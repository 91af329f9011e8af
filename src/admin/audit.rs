//! `GET /v1/admin/audit`: the audit log, newest first, with filters and an opaque cursor.
//!
//! Query parameters: `event`, `user_id`, `actor` (exact matches), `since` and `until` (RFC
//! 3339 times, inclusive), `limit` (1 to 1000, default 100), and `cursor` (the previous
//! page's `next_cursor`; send the same filters with it). `before` (an entry id) is still
//! read, for clients of the first version. A parameter that is unknown, repeated or
//! malformed is a 400 naming it. The answer: `{"events": [...], "next_cursor": "..."}` where
//! `next_cursor` is `null` on the last page; each event carries its `prev_hash` and `hash`.
//!
//! The cursor is `base64url("v1.<id>.<filters>")`: the last id returned and a short hash of
//! the filters it was made for, so a cursor sent with other filters is refused instead of
//! silently skipping entries. It carries nothing secret and nothing a client could use to
//! reach entries it could not list anyway.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::AdminState;
use crate::http::{ApiError, json_response as json};
use crate::store::audit::AuditFilter;

/// Most entries one page returns.
const MAX_LIMIT: u32 = 1000;
const DEFAULT_LIMIT: u32 = 100;

const PARAMS: &str = "event, user_id, actor, since, until, limit, cursor";

pub fn router() -> Router<Arc<AdminState>> {
    Router::new().route("/audit", get(audit))
}

/// One page's request, read from the query string.
#[derive(Debug, Default, PartialEq, Eq)]
struct PageRequest {
    filter: AuditFilter,
    limit: u32,
    /// Only entries below this id.
    before: Option<i64>,
}

fn bad(param: &str, message: String) -> ApiError {
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message);
    error.param = Some(param.to_string());
    error
}

fn parse_request(query: Option<&str>) -> Result<PageRequest, ApiError> {
    let mut request = PageRequest {
        limit: DEFAULT_LIMIT,
        ..PageRequest::default()
    };
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = None;
    let mut before = None;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if seen.iter().any(|s| *s == name) {
            return Err(bad(&name, format!("`{name}` is given twice; give it once")));
        }
        seen.push(name.to_string());
        let text = || -> Result<String, ApiError> {
            if value.is_empty() || value.len() > 256 {
                return Err(bad(&name, format!("`{name}` must be 1 to 256 characters")));
            }
            Ok(value.to_string())
        };
        match name.as_ref() {
            "event" => request.filter.event = Some(text()?),
            "user_id" => request.filter.user_id = Some(text()?),
            "actor" => request.filter.actor = Some(text()?),
            "since" => request.filter.since = Some(time(&name, &value)?),
            "until" => request.filter.until = Some(time(&name, &value)?),
            "limit" => {
                request.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                    })?;
            }
            "cursor" => cursor = Some(value.to_string()),
            "before" => {
                before = Some(value.parse::<i64>().map_err(|_| {
                    bad(
                        "before",
                        "`before` must be a whole number (an entry id)".into(),
                    )
                })?);
            }
            _ => {
                return Err(bad(
                    &name,
                    format!("unknown parameter `{name}`; the audit log takes {PARAMS}"),
                ));
            }
        }
    }
    if let (Some(since), Some(until)) = (request.filter.since, request.filter.until)
        && since > until
    {
        return Err(bad("since", "`since` is after `until`".into()));
    }
    request.before = match (cursor, before) {
        (Some(_), Some(_)) => {
            return Err(bad("cursor", "give `cursor` or `before`, not both".into()));
        }
        (Some(cursor), None) => Some(read_cursor(&cursor, &request.filter)?),
        (None, before) => before,
    };
    Ok(request)
}

fn time(name: &str, value: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|time| time.timestamp())
        .map_err(|_| {
            bad(
                name,
                format!("`{name}` must be an RFC 3339 time such as 2026-01-31T09:00:00Z"),
            )
        })
}

/// A short hash of the filters, so a cursor is only used with the filters it was made for.
fn fingerprint(filter: &AuditFilter) -> String {
    let mut hasher = Sha256::new();
    for part in [&filter.event, &filter.user_id, &filter.actor] {
        match part {
            Some(value) => {
                hasher.update([1]);
                hasher.update((value.len() as u64).to_be_bytes());
                hasher.update(value.as_bytes());
            }
            None => hasher.update([0]),
        }
    }
    for part in [filter.since, filter.until] {
        match part {
            Some(value) => {
                hasher.update([1]);
                hasher.update(value.to_be_bytes());
            }
            None => hasher.update([0]),
        }
    }
    URL_SAFE_NO_PAD.encode(&hasher.finalize()[..9])
}

fn make_cursor(last_id: i64, filter: &AuditFilter) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1.{last_id}.{}", fingerprint(filter)))
}

fn read_cursor(cursor: &str, filter: &AuditFilter) -> Result<i64, ApiError> {
    let invalid = || bad("cursor", "`cursor` is not one this API returned".into());
    let decoded = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '.');
    let (Some("v1"), Some(id), Some(print)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let id: i64 = id.parse().map_err(|_| invalid())?;
    if print != fingerprint(filter) {
        return Err(bad(
            "cursor",
            "`cursor` was made for other filters; send the same filters with it".into(),
        ));
    }
    Ok(id)
}

async fn audit(
    State(state): State<Arc<AdminState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let request = parse_request(query.as_deref())?;
    // One more than asked, to know whether a next page exists.
    let mut events = state
        .gateway
        .audit
        .search(request.filter.clone(), request.limit + 1, request.before)
        .await
        .map_err(|error| {
            tracing::error!(error = %error, "Audit log not read");
            ApiError::internal()
        })?;
    let more = events.len() > request.limit as usize;
    events.truncate(request.limit as usize);
    let next_cursor = match events.last() {
        Some(last) if more => Some(make_cursor(last.event.id, &request.filter)),
        _ => None,
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "events": events, "next_cursor": next_cursor }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(query: &str) -> (String, String) {
        let error = parse_request(Some(query)).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{query}");
        (error.param.unwrap_or_default(), error.message)
    }

    #[test]
    fn filters_and_cursors_are_read_and_bad_ones_named() {
        let request = parse_request(Some(
            "event=login_failed&user_id=u1&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00%2B01:00&limit=5",
        ))
        .unwrap();
        assert_eq!(request.filter.event.as_deref(), Some("login_failed"));
        assert_eq!(request.filter.since, Some(1_767_225_600));
        assert_eq!(request.filter.until, Some(1_767_225_600 + 86_400 - 3_600));
        assert_eq!(request.limit, 5);

        let cursor = make_cursor(42, &request.filter);
        let query = format!(
            "event=login_failed&user_id=u1&since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00%2B01:00&cursor={cursor}"
        );
        assert_eq!(parse_request(Some(&query)).unwrap().before, Some(42));
        assert_eq!(parse_request(None).unwrap().limit, DEFAULT_LIMIT);

        for (query, param) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("since=yesterday", "since"),
            ("until=2026-13-01T00:00:00Z", "until"),
            (
                "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
                "since",
            ),
            ("evnt=x", "evnt"),
            ("event=", "event"),
            ("event=a&event=b", "event"),
            ("cursor=not-a-cursor", "cursor"),
            ("before=x", "before"),
        ] {
            assert_eq!(refused(query).0, param, "{query}");
        }
        // A cursor made for other filters.
        let (param, message) = refused(&format!("event=login_failed&cursor={cursor}"));
        assert_eq!(param, "cursor");
        assert!(message.contains("other filters"), "{message}");
        let (param, _) = refused(&format!("cursor={cursor}&before=3"));
        assert_eq!(param, "cursor");
    }
}
