//! The streamed result body:
//! `{"columns": [...], "rows": [[...], ...], "row_count": n}` plus `"rows_affected"` for
//! statements without columns and `"truncated": true` when `max_rows` cut the result.
//!
//! A result that fits in the first frame (32 KiB of rows) is sent in one piece. A longer one
//! streams: rows are written as the datasource produces them, and nothing buffers the whole
//! result. If the datasource fails after streaming started, the status line is already
//! sent, so the body ends with an `"error"` member and still parses: a client can tell a
//! complete result (no `error`) from a cut one.
//!
//! Frames are read with [`Execution::next_frame`], which also drives a PostgreSQL producer
//! that is still inline in this request's task. A result that streams first hands its
//! producer to its own task ([`Execution::spawn_producer`]): the body is polled at the
//! client's pace, and the rest of the result is produced meanwhile, as before.
//!
//! While frames are awaited, the client's [`ClientReset`] watch is too: a reset drops the
//! execution (the statement is cancelled) and ends the answer (a streaming body with an
//! error, which aborts the connection).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream;

use crate::audit::{QueryRun, QueryRuns};
use crate::datasource::{DatasourceError, Execution, FRAME_BYTES, Frame, Summary};
use crate::http::{ApiError, ClientReset, RequestId};

/// The status a request whose client reset its connection is logged with (nginx's
/// "client closed request"); no client ever receives it.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the completion log line says about a query run. Names and counts only.
pub struct LogContext {
    pub request_id: RequestId,
    pub app: String,
    pub query: String,
    pub datasource: String,
    /// The caller's user id (never their email or anything they sent).
    pub user_id: Option<String>,
    pub started: Instant,
    /// The query's concurrency slot, held (never read) until the response is complete.
    #[allow(dead_code)]
    pub running: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Where the run is recorded in the audit log, when `SLUICE_AUDIT_QUERY_RUNS` is on
    /// (`None` costs nothing).
    pub audit: Option<RunAudit>,
}

/// What the audit log's record of a run needs beyond the log line's fields.
pub struct RunAudit {
    pub runs: Arc<QueryRuns>,
    /// The API key the caller used, by id.
    pub api_key: Option<String>,
    pub ip: Option<std::net::IpAddr>,
}

impl LogContext {
    /// Records the finished run in the audit log, when that is on: names, status, time and
    /// row count only.
    fn audit(&self, status: u16, row_count: Option<u64>, error_class: Option<&'static str>) {
        if let Some(audit) = &self.audit {
            audit.runs.record(QueryRun {
                app: self.app.clone(),
                query: self.query.clone(),
                user_id: self.user_id.clone(),
                api_key: audit.api_key.clone(),
                ip: audit.ip.map(|ip| ip.to_string()),
                status,
                duration_us: self.started.elapsed().as_micros() as u64,
                row_count,
                error_class,
            });
        }
    }

    pub fn log_success(&self, summary: &Summary) {
        self.audit(200, Some(summary.row_count), None);
        tracing::info!(
            request_id = %self.request_id.as_str(),
            app = %self.app,
            query = %self.query,
            datasource = %self.datasource,
            user_id = self.user_id.as_deref(),
            status = 200u16,
            duration_us = self.started.elapsed().as_micros() as u64,
            row_count = summary.row_count,
            rows_affected = summary.rows_affected,
            truncated = summary.truncated,
            "Query finished"
        );
    }

    pub fn log_http(&self, upstream_status: u16) {
        self.audit(200, None, None);
        tracing::info!(
            request_id = %self.request_id.as_str(),
            app = %self.app,
            query = %self.query,
            datasource = %self.datasource,
            user_id = self.user_id.as_deref(),
            status = 200u16,
            upstream_status,
            duration_us = self.started.elapsed().as_micros() as u64,
            "HTTP query finished"
        );
    }

    /// A failed query: the error's class and, for an error the database raised, its own
    /// code (SQLSTATE, MySQL error number) and what that code means, on one line with the
    /// request id.
    pub fn log_error(&self, status: StatusCode, error: &DatasourceError) {
        let (code, meaning) = match error {
            DatasourceError::Query { code, meaning, .. } => (
                Some(code.as_str()),
                Some(*meaning).filter(|m| !m.is_empty()),
            ),
            DatasourceError::Retryable { code } => (Some(code.as_str()), None),
            _ => (None, None),
        };
        self.log_failed(status, error.class(), code, meaning);
    }

    /// Logs a run ended by the client resetting its connection, and returns the error it
    /// ends with (never delivered: the connection is gone).
    pub fn client_reset(&self) -> ApiError {
        let status = self.log_client_reset();
        ApiError::new(
            status,
            "client_reset",
            "the client reset the connection; the query was cancelled",
        )
    }

    pub(super) fn log_client_reset(&self) -> StatusCode {
        let status = StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST);
        self.log_failure(status, "client_reset");
        status
    }

    pub fn log_failure(&self, status: StatusCode, error_class: &'static str) {
        self.log_failed(status, error_class, None, None);
    }

    /// The one "Query failed" line; `db_code` and `meaning` are left out when `None`.
    fn log_failed(
        &self,
        status: StatusCode,
        error_class: &'static str,
        db_code: Option<&str>,
        meaning: Option<&str>,
    ) {
        self.audit(status.as_u16(), None, Some(error_class));
        tracing::warn!(
            request_id = %self.request_id.as_str(),
            app = %self.app,
            query = %self.query,
            datasource = %self.datasource,
            user_id = self.user_id.as_deref(),
            status = status.as_u16(),
            duration_us = self.started.elapsed().as_micros() as u64,
            error_class,
            db_code,
            meaning,
            "Query failed"
        );
    }
}

/// Room in a one-piece answer for all but its columns and rows: `{"columns":`,
/// `,"rows":[` and the tail (`],"row_count":n` and the rest).
const BODY_ROOM: usize = 128;

enum Phase {
    Rows,
    Finished,
}

struct BodyState {
    execution: Execution,
    context: LogContext,
    reset: ClientReset,
    phase: Phase,
}

/// What ends a streaming body early: the client reset its connection.
#[derive(Debug, thiserror::Error)]
#[error("the client reset the connection")]
struct ClientWentAway;

/// Builds the response for `execution`. A result that ends within the first frame (every
/// point query) is answered in one piece with a `Content-Length`: one write, and a failure is
/// still a proper error status. A longer result streams, starting with what was gathered.
pub async fn respond_rows(
    mut execution: Execution,
    context: LogContext,
    reset: ClientReset,
) -> Response {
    // Allocated once the first frame is here, to its size: a point query's rows (a
    // kilobyte or two) then never outgrow the buffer and get copied into a larger one.
    let mut body = Vec::new();
    let columns_json = std::mem::take(&mut execution.columns_json);
    let start = |body: &mut Vec<u8>, rows: usize| {
        if body.is_empty() {
            body.reserve_exact(BODY_ROOM + columns_json.len() + rows);
            body.extend_from_slice(b"{\"columns\":");
            body.extend_from_slice(&columns_json);
            body.extend_from_slice(b",\"rows\":[");
        }
    };
    loop {
        let frame = tokio::select! {
            biased;
            frame = execution.next_frame() => frame,
            // Returning drops the execution: the statement is cancelled.
            () = reset.happened() => return context.client_reset().into_response(),
        };
        match frame {
            Some(Frame::Rows(bytes)) => {
                start(&mut body, bytes.len());
                body.extend_from_slice(&bytes);
                // Producers send a short frame only as their last one, with the end right
                // behind it; a full frame means more rows are coming.
                if bytes.len() >= FRAME_BYTES {
                    break;
                }
            }
            Some(Frame::Done(summary)) => {
                start(&mut body, 0);
                context.log_success(&summary);
                body.extend_from_slice(&tail(&summary, None));
                return json_response(Body::from(body));
            }
            Some(Frame::Failed(error)) => {
                let api_error = ApiError::from(&error);
                context.log_error(api_error.status, &error);
                return api_error.into_response();
            }
            None => {
                let api_error = ApiError::internal();
                context.log_failure(api_error.status, "producer_vanished");
                return api_error.into_response();
            }
        }
    }
    // The rest streams: produce it on its own task, not only when the body is polled.
    execution.spawn_producer();
    let state = BodyState {
        execution,
        context,
        reset,
        phase: Phase::Rows,
    };
    let first = Bytes::from(body);
    let stream = stream::once(async move { Ok::<_, ClientWentAway>(first) })
        .chain(stream::unfold(state, next_chunk));
    json_response(Body::from_stream(stream))
}

fn json_response(body: Body) -> Response {
    let mut response = Response::new(body);
    // Room for the security headers, the request id and CORS added on the way out: one
    // allocation instead of a grow and a rehash per response.
    response.headers_mut().reserve(16);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

use futures_util::StreamExt;

async fn next_chunk(mut state: BodyState) -> Option<(Result<Bytes, ClientWentAway>, BodyState)> {
    if matches!(state.phase, Phase::Finished) {
        return None;
    }
    let frame = tokio::select! {
        biased;
        frame = state.execution.next_frame() => frame,
        () = state.reset.happened() => {
            // The error aborts the connection; the body, and with it the execution, is
            // dropped, which cancels the statement.
            state.phase = Phase::Finished;
            state.context.log_client_reset();
            return Some((Err(ClientWentAway), state));
        }
    };
    let chunk = match frame {
        Some(Frame::Rows(bytes)) => bytes,
        Some(Frame::Done(summary)) => {
            state.phase = Phase::Finished;
            state.context.log_success(&summary);
            Bytes::from(tail(&summary, None))
        }
        Some(Frame::Failed(error)) => {
            state.phase = Phase::Finished;
            let api_error = ApiError::from(&error);
            state.context.log_error(api_error.status, &error);
            Bytes::from(tail(
                &Summary::default(),
                Some((&api_error, &state.context)),
            ))
        }
        None => {
            // The producer ended without saying how: report it rather than close silently.
            state.phase = Phase::Finished;
            let api_error = ApiError::internal();
            state
                .context
                .log_failure(api_error.status, "producer_vanished");
            Bytes::from(tail(
                &Summary::default(),
                Some((&api_error, &state.context)),
            ))
        }
    };
    Some((Ok(chunk), state))
}

fn tail(summary: &Summary, error: Option<(&ApiError, &LogContext)>) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"]");
    if let Some((error, context)) = error {
        out.extend_from_slice(b",\"error\":");
        out.extend_from_slice(&error.body_json(context.request_id.as_str()));
        out.push(b'}');
        return out;
    }
    write!(out, ",\"row_count\":{}", summary.row_count).expect("Vec write");
    if let Some(affected) = summary.rows_affected {
        write!(out, ",\"rows_affected\":{affected}").expect("Vec write");
    }
    if summary.truncated {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.push(b'}');
    out
}
