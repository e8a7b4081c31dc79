//! HTTP routes (SPEC §7) and the layers around them: request ids, tracing without secrets, body limit.
mod export;
mod forward_auth;
mod graphql;
mod health;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::service::RequestMeta;
use crate::AppState;

/// Request bodies above this size get 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(graphql::graphiql))
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql_post))
        .route("/export/app-keys.csv", get(export::app_keys_csv))
        .route("/auth", get(forward_auth::check))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: a query string may carry a download ticket, and headers carry tokens.
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// The peer address when the server runs with connect info (it always does; embedders may not).
pub(crate) struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)))
    }
}

/// Request id and client address, for audit events.
pub(crate) fn request_meta(headers: &HeaderMap, peer: &ClientAddr) -> RequestMeta {
    RequestMeta {
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
        client_ip: peer.0.map(|addr| addr.ip().to_string()),
    }
}

/// A plain-HTTP error: status from the error's code, a JSON body with the same message and code as
/// GraphQL would give.
pub(crate) fn error_response(error: &AppError) -> Response {
    error.log_if_internal();
    let status = match error {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } => StatusCode::FORBIDDEN,
        AppError::BadUserInput(_) => StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::RemovedExternalKey => StatusCode::CONFLICT,
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response =
        (status, Json(serde_json::json!({ "error": error.message(), "code": error.code() }))).into_response();
    if let AppError::RateLimited { retry_after_secs } = error {
        if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
    }
    response
}
