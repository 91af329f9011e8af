//! `/healthz` (liveness) and `/readyz` (readiness).
//!
//! `/healthz` answers 200 while the process serves HTTP; it touches nothing else, so a slow
//! store or datasource never gets a live process restarted. `/readyz` answers 200 when the
//! instance can serve: not draining, and the metadata store reachable
//! ([`HealthStore::check_reachable`](crate::store::health::HealthStore)). Otherwise 503: a
//! draining instance answers `{"status": "draining"}`, an unreachable store the error
//! `store_unavailable`, naming what failed; the server log has it too, once per change.
//!
//! A store check runs on a blocking thread, at most once per [`CHECK_EVERY`] however often
//! `/readyz` is asked (probes and load balancers share the answer), and is given
//! [`CHECK_TIMEOUT`]. A check that never returns (a hung network file system) leaves its
//! thread behind once, not once per probe: until it returns, probes answer 503 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::GatewayState;
use crate::http::ApiError;
use crate::store::Store;

/// How long a store check's answer is reused.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a store check may take before the store counts as unreachable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The readiness of the metadata store, checked on demand.
pub struct Readiness {
    store: Arc<dyn Store>,
    /// The last answer and when it was taken; one check runs at a time (the others wait
    /// for its answer).
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
    /// Set while a check's thread runs, past its timeout too.
    running: Arc<AtomicBool>,
}

impl Readiness {
    pub fn new(store: Arc<dyn Store>) -> Readiness {
        Readiness {
            store,
            last: tokio::sync::Mutex::new(None),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `Ok` when the store is reachable; otherwise why not (no value, no path).
    pub async fn store_reachable(&self) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = &*last
            && at.elapsed() < CHECK_EVERY
        {
            return answer.clone();
        }
        let answer = self.check().await;
        let was_ok = last.as_ref().is_none_or(|(_, previous)| previous.is_ok());
        match (&answer, was_ok) {
            (Err(reason), true) => {
                tracing::error!(reason = %reason, "Not ready: the metadata store is unreachable")
            }
            (Ok(()), false) => tracing::info!("Ready: the metadata store is reachable again"),
            _ => {}
        }
        *last = Some((Instant::now(), answer.clone()));
        answer
    }

    async fn check(&self) -> Result<(), String> {
        if self.running.swap(true, Ordering::AcqRel) {
            return Err(format!(
                "metadata store: a check has not answered for over {} s",
                CHECK_TIMEOUT.as_secs()
            ));
        }
        let (store, running) = (self.store.clone(), self.running.clone());
        let check = tokio::task::spawn_blocking(move || {
            let answer = store.check_reachable();
            running.store(false, Ordering::Release);
            answer
        });
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(answer)) => answer.map_err(|error| error.to_string()),
            Ok(Err(_)) => Err("metadata store: the check failed".into()),
            Err(_) => Err(format!(
                "metadata store: no answer within {} s",
                CHECK_TIMEOUT.as_secs()
            )),
        }
    }
}

pub(super) async fn healthz() -> Response {
    json_status(StatusCode::OK, "ok")
}

pub(super) async fn readyz(State(state): State<Arc<GatewayState>>) -> Response {
    if state.is_draining() {
        return json_status(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.readiness.store_reachable().await {
        Ok(()) => json_status(StatusCode::OK, "ready"),
        Err(reason) => ApiError {
            retry_after: Some(CHECK_EVERY.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("not ready: {reason}"),
            )
        }
        .into_response(),
    }
}

fn json_status(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"{text}\"}}"),
    )
        .into_response()
}
