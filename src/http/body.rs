//! Reading JSON request bodies: content type, size limit, and parse errors that name the
//! position or the field but never quote a value (bodies hold passwords and params).

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use super::ApiError;

/// Reads the whole body, refusing a non-JSON content type (415) and more than `limit`
/// bytes (413, before reading when Content-Length says so).
pub async fn read_json_bytes(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let is_json = content_type
            .to_str()
            .map(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
            }
        })
}

/// Parses a JSON body into `T`. The message names a missing or unknown field, or the
/// position of a syntax or type error, never the offending value.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        let text = error.to_string();
        let message = if error.is_data()
            && (text.starts_with("missing field") || text.starts_with("unknown field"))
        {
            // These quote field names only (declared by us, or sent as a key).
            let field_part = text.split(" at line").next().unwrap_or(&text);
            format!("{field_part} (line {line}, column {column})")
        } else if error.is_data() {
            format!("a member has the wrong type (line {line}, column {column})")
        } else {
            format!("the body is not valid JSON (line {line}, column {column})")
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })
}

/// [`read_json_bytes`] then [`parse_json`].
pub async fn read_json<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read_json_bytes(headers, body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return parse_json(b"{}");
    }
    parse_json(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    #[test]
    fn parse_errors_never_quote_values() {
        let cases = [
            (r#"{"email":"a@b.c"}"#, "missing field `password`"),
            (
                r#"{"email":"a@b.c","password":"x","pin":"0000"}"#,
                "unknown field `pin`",
            ),
            (r#"{"email":"a@b.c","password":12345678}"#, "wrong type"),
            (r#"{"email":"a@b.c","password":"hunter2"#, "not valid JSON"),
        ];
        for (body, expected) in cases {
            let error = parse_json::<Login>(body.as_bytes()).unwrap_err();
            assert!(
                error.message.contains(expected),
                "{body}: {}",
                error.message
            );
            for secret in ["hunter2", "12345678", "0000", "a@b.c"] {
                assert!(!error.message.contains(secret), "{body}: {}", error.message);
            }
        }
    }
}
