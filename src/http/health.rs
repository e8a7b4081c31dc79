use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// How long readiness waits for the database: a load balancer learns within this that a replica
/// cannot serve, and again as soon as it can.
const READY_WITHIN: Duration = Duration::from_secs(1);

/// Readiness: the database answers too, within `READY_WITHIN`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let answered = tokio::time::timeout(READY_WITHIN, state.store.ping()).await;
    match answered {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(error)) => {
            error.log_if_internal();
            unavailable()
        }
        Err(_) => {
            tracing::warn!(within_ms = READY_WITHIN.as_millis(), "the database did not answer the readiness ping");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
    super::set_retry_after(&mut response, crate::error::UNAVAILABLE_RETRY_AFTER_SECS);
    response
}
