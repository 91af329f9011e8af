//! Reading request bodies: the body read deadline ([`TimedBody`], which the listener loop
//! puts around every request body), reading a whole body into one bounded buffer, the JSON
//! content type, and parse errors that name the position or the field but never quote a
//! value (bodies hold passwords and params).
//!
//! A body is never kept as the chunks it arrived in: each chunk points into the
//! connection's read buffer, so keeping them would keep one read buffer alive per chunk (a
//! body trickled a byte at a time would pin kilobytes per byte). Chunks are copied into one
//! buffer, no larger than the limit, and dropped at once.
//!
//! Repeated and reserved keys are refused while the JSON is read (`unique`).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

mod unique;

pub use unique::{UniqueObject, UniqueValue, check_unique_keys, refused_key};

use super::ApiError;
use crate::spec::checks::shown_name;

/// A request body that must arrive in full within `timeout` of the request headers. Past
/// the deadline the next read fails with [`BodyTimeout`]; until the body is read, nothing is
/// timed (a handler that never reads the body never starts the timer).
pub struct TimedBody<B> {
    inner: B,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Made the first time the body is not there yet; most bodies arrive with their headers.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    expired: bool,
}

impl<B> TimedBody<B> {
    /// The deadline runs from now: call it when the request headers have been read.
    pub fn new(inner: B, timeout: Duration) -> TimedBody<B> {
        TimedBody {
            inner,
            deadline: tokio::time::Instant::now() + timeout,
            timeout,
            sleep: None,
            expired: false,
        }
    }
}

/// The request body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .timeout.as_millis())]
pub struct BodyTimeout {
    pub timeout: Duration,
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        this.expired = true;
        Poll::Ready(Some(Err(Box::new(BodyTimeout {
            timeout: this.timeout,
        }))))
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads the whole body, refusing a non-JSON content type (415), more than `limit` bytes
/// (413, before reading when Content-Length says so) and a body slower than the body read
/// timeout (408).
pub async fn read_json_bytes(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
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
        return Err(too_large(limit));
    }
    read_bounded(body, limit, declared.unwrap_or(0) as usize).await
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// Reads `body` into one buffer of at most `limit` bytes (sized for `expected` bytes to
/// begin with), copying each chunk and dropping it at once.
async fn read_bounded(mut body: Body, limit: usize, expected: usize) -> Result<Bytes, ApiError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(expected.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| read_failed(&error))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let needed = buffer.len() + chunk.len();
        if needed > limit {
            return Err(too_large(limit));
        }
        if needed > buffer.capacity() {
            // Doubling, but never past the limit.
            let capacity = needed.max(buffer.capacity() * 2).min(limit);
            buffer.reserve_exact(capacity - buffer.len());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// A body that could not be read: 408 past the body read timeout, else 400.
fn read_failed(error: &(dyn StdError + 'static)) -> ApiError {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(timeout) = current.downcast_ref::<BodyTimeout>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                timeout.to_string(),
            );
        }
        cause = current.source();
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "the request body could not be read",
    )
}

/// Parses a JSON body into `T`. The message names a missing or unknown field (cut short:
/// a sent key is caller input), a repeated key, or the position of a syntax or type error,
/// never the offending value. An object that repeats a key, at any depth, is refused
/// ([`check_unique_keys`]).
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    check_unique_keys(bytes)?;
    serde_json::from_slice(bytes).map_err(|error| {
        let (line, column) = (error.line(), error.column());
        let text = error.to_string();
        let message = if error.is_data()
            && (text.starts_with("missing field") || text.starts_with("unknown field"))
        {
            // These quote field names only (declared by us, or sent as a key: cut short).
            // serde words them "unknown field `NAME`, expected ..." and "missing field
            // `NAME`", then " at line L column C".
            let field_part = text
                .rsplit_once(" at line")
                .map_or(&*text, |(head, _)| head);
            let (kind, rest) = field_part.split_once(" `").unwrap_or((field_part, "`"));
            let (name, expected) = match rest.split_once("`, expected") {
                Some((name, expected)) => (name, format!(", expected{expected}")),
                None => (rest.strip_suffix('`').unwrap_or(rest), String::new()),
            };
            format!(
                "{kind} `{}`{expected} (line {line}, column {column})",
                shown_name(name)
            )
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

    /// A body fed through a channel, as a connection feeds one: chunks as they come, then
    /// the end when the sender is dropped.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4096);
        let chunks = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, std::io::Error>(chunk), receiver))
        });
        (sender, Body::from_stream(chunks))
    }

    fn json_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn a_body_in_many_chunks_is_copied_and_no_chunk_is_kept() {
        // Every chunk is a slice of one allocation, as chunks are slices of a connection's
        // read buffer: while the body is read, only copies may be kept.
        let source = Bytes::from(vec![b' '; 1000]);
        let (sender, body) = channel_body();
        let reading =
            tokio::spawn(async move { read_json_bytes(&json_headers(), body, 1024).await });
        for at in 0..999 {
            sender.send(source.slice(at..at + 1)).await.unwrap();
        }
        // Wait until the reader took them all in; the body is not complete yet.
        while sender.capacity() < sender.max_capacity() {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut source = source;
        assert!(
            source.is_unique(),
            "a chunk of the body is still held while the rest is awaited"
        );
        sender.send(source.split_off(999)).await.unwrap();
        drop(sender);
        let read = reading.await.unwrap().unwrap();
        assert_eq!(read.len(), 1000);

        // Over the limit chunk by chunk (no Content-Length to refuse it up front).
        let (sender, body) = channel_body();
        for _ in 0..1025 {
            sender.send(Bytes::from_static(b" ")).await.unwrap();
        }
        drop(sender);
        let error = read_json_bytes(&json_headers(), body, 1024)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE, "{error:?}");
    }

    #[tokio::test]
    async fn a_body_slower_than_its_deadline_is_a_408() {
        let (sender, body) = channel_body();
        sender.send(Bytes::from_static(b"{")).await.unwrap();
        let body = Body::new(TimedBody::new(body, Duration::from_millis(50)));
        let started = std::time::Instant::now();
        let error = read_json_bytes(&json_headers(), body, 1024)
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT, "{error:?}");
        assert_eq!(error.code, "request_timeout");
        assert_eq!(
            error.message,
            "the request body did not arrive within 50 ms"
        );

        // In time, even in pieces: read as usual.
        let (sender, body) = channel_body();
        let body = Body::new(TimedBody::new(body, Duration::from_secs(5)));
        let reading =
            tokio::spawn(async move { read_json_bytes(&json_headers(), body, 1024).await });
        for piece in ["{", "}"] {
            tokio::time::sleep(Duration::from_millis(10)).await;
            sender
                .send(Bytes::from_static(piece.as_bytes()))
                .await
                .unwrap();
        }
        drop(sender);
        assert_eq!(&reading.await.unwrap().unwrap()[..], b"{}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    #[test]
    fn unknown_fields_are_named_but_cut_short() {
        let key = "x".repeat(5000);
        let body = format!(r#"{{"email":"a@b.c","password":"p","{key}":1}}"#);
        let error = parse_json::<Login>(body.as_bytes()).unwrap_err();
        assert!(
            error.message.starts_with("unknown field `xxx"),
            "{}",
            error.message
        );
        assert!(error.message.len() < 200, "{}", error.message);
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
