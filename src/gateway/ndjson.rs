//! The NDJSON answer of the view endpoint, for a client that sends
//! `Accept: application/x-ndjson`: one line `{"columns": [...]}`, then one line per row (the
//! same JSON array, and the same lossless type mapping, as in the JSON answer), then one
//! last line `{"row_count": n, "truncated": false}` (plus `rows_affected` for statements
//! without columns, or `error` when the database failed after the first line).
//!
//! Unlike the JSON answer, every row is handed over as it is produced (the producer runs
//! with a one-byte frame) and written as its own chunk, so a browser renders the first rows
//! of a slow query while the rest is still being produced. Errors known before the first
//! line (params, policy, a statement that fails at once) keep their own status and JSON
//! error body, exactly as for the JSON answer.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, stream};

use super::response::LogContext;
use crate::datasource::{Execution, Frame, Summary};
use crate::http::{ApiError, ClientReset};

/// The media type of the streamed answer.
pub const NDJSON: &str = "application/x-ndjson";

/// How a query's rows are written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object (the default).
    Json,
    /// Newline-delimited JSON, a line per row, each flushed as produced.
    Ndjson,
}

impl Format {
    /// NDJSON when `Accept` names `application/x-ndjson` (any case, parameters ignored) with
    /// a non-zero weight; JSON otherwise, whatever else it names.
    pub fn from_headers(headers: &HeaderMap) -> Format {
        let wants = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                media.eq_ignore_ascii_case(NDJSON)
                    && !parts.any(|param| {
                        param
                            .strip_prefix("q=")
                            .and_then(|q| q.parse::<f32>().ok())
                            .is_some_and(|q| q <= 0.0)
                    })
            });
        if wants { Format::Ndjson } else { Format::Json }
    }
}

struct LineState {
    execution: Execution,
    context: LogContext,
    reset: ClientReset,
    /// Rows written so far (the final line's `row_count` when the statement fails).
    rows: u64,
    finished: bool,
}

/// What ends the body early: the client reset its connection (aborts the connection).
#[derive(Debug, thiserror::Error)]
#[error("the client reset the connection")]
struct ClientWentAway;

/// Streams `execution` as NDJSON. The status is 200 from the first line on; a later failure
/// is the final line's `error`.
pub fn respond_lines(
    mut execution: Execution,
    context: LogContext,
    reset: ClientReset,
) -> Response {
    // Produced on its own task from the start: the body is polled at the client's pace.
    execution.spawn_producer();
    let mut first = Vec::with_capacity(execution.columns_json.len() + 16);
    first.extend_from_slice(b"{\"columns\":");
    first.extend_from_slice(&execution.columns_json);
    first.extend_from_slice(b"}\n");
    let state = LineState {
        execution,
        context,
        reset,
        rows: 0,
        finished: false,
    };
    let first = Bytes::from(first);
    let body = stream::once(async move { Ok::<_, ClientWentAway>(first) })
        .chain(stream::unfold(state, next_lines));
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.reserve(16);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    // Reverse proxies that buffer answers (nginx) pass this one through as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

async fn next_lines(mut state: LineState) -> Option<(Result<Bytes, ClientWentAway>, LineState)> {
    if state.finished {
        return None;
    }
    let frame = tokio::select! {
        biased;
        frame = state.execution.next_frame() => frame,
        () = state.reset.happened() => {
            state.finished = true;
            state.context.log_client_reset();
            return Some((Err(ClientWentAway), state));
        }
    };
    let chunk = match frame {
        Some(Frame::Rows(bytes)) => {
            let mut out = Vec::with_capacity(bytes.len() + 8);
            state.rows += rows_to_lines(&bytes, &mut out);
            out
        }
        Some(Frame::Done(summary)) => {
            state.finished = true;
            state.context.log_success(&summary);
            final_line(&summary, None)
        }
        Some(Frame::Failed(error)) => {
            state.finished = true;
            let api_error = ApiError::from(&error);
            state.context.log_error(api_error.status, &error);
            failed_line(&state, &api_error)
        }
        None => {
            state.finished = true;
            let api_error = ApiError::internal();
            state
                .context
                .log_failure(api_error.status, "producer_vanished");
            failed_line(&state, &api_error)
        }
    };
    Some((Ok(Bytes::from(chunk)), state))
}

fn failed_line(state: &LineState, error: &ApiError) -> Vec<u8> {
    let summary = Summary {
        row_count: state.rows,
        ..Summary::default()
    };
    let body = error.body_json(state.context.request_id.as_str());
    final_line(&summary, Some(&body))
}

/// `{"row_count": n, "truncated": b}`, with `rows_affected` when there is one and `error`
/// (an error body, already JSON) when the result is cut.
fn final_line(summary: &Summary, error: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(96);
    write!(
        out,
        "{{\"row_count\":{},\"truncated\":{}",
        summary.row_count, summary.truncated
    )
    .expect("Vec write");
    if let Some(affected) = summary.rows_affected {
        write!(out, ",\"rows_affected\":{affected}").expect("Vec write");
    }
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        out.extend_from_slice(error);
    }
    out.extend_from_slice(b"}\n");
    out
}

/// Rewrites a frame of rows (`[..],[..]`, or `,[..]` after the first frame) as lines: the
/// commas between rows are dropped and each row ends with `\n`. Returns how many rows it
/// wrote. Commas and brackets inside strings are left alone, and JSON strings never hold a
/// raw newline, so each line is exactly one row.
fn rows_to_lines(frame: &[u8], out: &mut Vec<u8>) -> u64 {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut rows = 0;
    for &byte in frame {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b',' if depth == 0 => {}
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b'[' | b'{' => {
                depth += 1;
                out.push(byte);
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                out.push(byte);
                if depth == 0 {
                    out.push(b'\n');
                    rows += 1;
                }
            }
            _ => out.push(byte),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(frame: &str) -> (String, u64) {
        let mut out = Vec::new();
        let rows = rows_to_lines(frame.as_bytes(), &mut out);
        (String::from_utf8(out).unwrap(), rows)
    }

    #[test]
    fn frames_become_one_line_per_row() {
        assert_eq!(lines("[1,\"a\"]"), ("[1,\"a\"]\n".into(), 1));
        assert_eq!(
            lines(",[2,null],[3,true]"),
            ("[2,null]\n[3,true]\n".into(), 2)
        );
        // Separators, brackets, braces and escaped quotes inside strings and embedded JSON
        // values stay as they are.
        assert_eq!(
            lines(r#"["a,]\"[",{"k":[1,2]}],["}\\"]"#),
            ("[\"a,]\\\"[\",{\"k\":[1,2]}]\n[\"}\\\\\"]\n".into(), 2)
        );
        assert_eq!(lines(""), (String::new(), 0));
    }

    #[test]
    fn the_final_line_says_how_the_result_ended() {
        let done = Summary {
            row_count: 3,
            rows_affected: None,
            truncated: true,
        };
        assert_eq!(
            final_line(&done, None),
            b"{\"row_count\":3,\"truncated\":true}\n"
        );
        let changed = Summary {
            row_count: 0,
            rows_affected: Some(2),
            truncated: false,
        };
        assert_eq!(
            final_line(&changed, Some(b"{\"code\":\"x\"}")),
            b"{\"row_count\":0,\"truncated\":false,\"rows_affected\":2,\"error\":{\"code\":\"x\"}}\n"
        );
    }

    #[test]
    fn accept_picks_ndjson_only_when_named_with_weight() {
        let check = |accept: Option<&str>, expected: Format| {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
            }
            assert_eq!(Format::from_headers(&headers), expected, "{accept:?}");
        };
        check(None, Format::Json);
        check(Some("application/json"), Format::Json);
        check(Some("*/*"), Format::Json);
        check(Some("application/x-ndjson"), Format::Ndjson);
        check(Some("Application/X-NDJSON; charset=utf-8"), Format::Ndjson);
        check(
            Some("application/json, application/x-ndjson;q=0.9"),
            Format::Ndjson,
        );
        check(Some("application/x-ndjson;q=0"), Format::Json);
        check(Some("application/x-ndjsonx"), Format::Json);
    }
}
