//! HTTP routes (README: "HTTP routes") and the layers around them: request ids, tracing without
//! secrets, body limit.
mod export;
mod forward_auth;
mod graphql;
mod health;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::error::AppError;
use crate::graphql::AppSchema;
use crate::service::RequestMeta;
use crate::state::AppState;

/// What the routes share: the application state, and the schema built over it.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: AppSchema,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

impl FromRef<HttpState> for AppSchema {
    fn from_ref(state: &HttpState) -> Self {
        state.schema.clone()
    }
}

pub fn router(app: AppState, schema: AppSchema) -> Router {
    let settings = app.settings.clone();
    let state = HttpState { app, schema };
    let mut router = Router::new();
    if !settings.no_graphiql {
        router = router.route("/", get(graphql::graphiql));
    }
    let router = router
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql_post))
        .route("/export/app-keys.csv", get(export::app_keys_csv))
        .route("/auth", get(forward_auth::check))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: a query string may carry a download ticket, and headers carry tokens.
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state);
    match cors(&settings.cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// CORS is off unless origins are configured: then exactly those origins may call, with the auth
/// headers appkeys reads.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> =
        origins.iter().filter(|o| !o.trim().is_empty()).filter_map(|o| HeaderValue::from_str(o.trim()).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    let headers = [
        header::CONTENT_TYPE,
        header::AUTHORIZATION,
        header::ACCEPT,
        HeaderName::from_static("x-api-appkey"),
        HeaderName::from_static("x-api-apptoken"),
        HeaderName::from_static("x-vtex-api-appkey"),
        HeaderName::from_static("x-vtex-api-apptoken"),
        HeaderName::from_static("x-account"),
    ];
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(headers)
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The peer address when the server runs with connect info (it always does; embedders may not).
pub(crate) struct ClientAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| *addr)))
    }
}

impl ClientAddr {
    /// The peer's IP address as text (audit events, throttling).
    pub(crate) fn ip(&self) -> Option<String> {
        self.0.map(|addr| addr.ip().to_string())
    }
}

/// Request id and client address, for audit events.
pub(crate) fn request_meta(headers: &HeaderMap, peer: &ClientAddr) -> RequestMeta {
    RequestMeta {
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
        client_ip: peer.ip(),
    }
}

/// A plain-HTTP error: status from the error's code, a JSON body with the same message and code as
/// GraphQL would give.
pub(crate) fn error_response(error: &AppError) -> Response {
    error.log_if_internal();
    let status = match error {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } | AppError::NotAllowed(_) => StatusCode::FORBIDDEN,
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
