//! HTTP routes (docs/reference.md: "HTTP routes") and the layers around them: request ids, tracing without
//! secrets, body limit.
mod assets;
mod export;
mod forward_auth;
mod graphql;
mod health;
mod leaks;
mod unsent;
mod ws;

use axum::extract::MatchedPath;
use axum::middleware::{self, Next};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{ACCOUNT_HEADER, APP_KEY_HEADERS, APP_TOKEN_HEADERS};
use crate::error::AppError;
use crate::graphql::Schemas;
use crate::service::events::audit::RequestMeta;
use crate::state::AppState;

/// What the routes share: the application state, and the schema built over it.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: Schemas,
    /// GitHub's secret-scanning keys, when `--github-scanning-keys` is set.
    scanning: Option<std::sync::Arc<leaks::GithubKeys>>,
}

impl FromRef<HttpState> for AppState {
    fn from_ref(state: &HttpState) -> Self {
        state.app.clone()
    }
}

impl FromRef<HttpState> for Schemas {
    fn from_ref(state: &HttpState) -> Self {
        state.schema.clone()
    }
}

pub fn router(app: AppState, schema: Schemas) -> Router {
    let settings = app.settings.clone();
    let scanning =
        settings.github_scanning_keys.clone().map(|source| std::sync::Arc::new(leaks::GithubKeys::new(source)));
    let state = HttpState { app, schema, scanning };
    let mut router = Router::new();
    if !settings.no_graphiql {
        router = router.route("/", get(assets::graphiql)).route("/assets/graphiql/{name}", get(assets::graphiql_asset));
    }
    let router = router
        .route("/graphql", get(graphql::graphql_get).post(graphql::graphql_post))
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/console", get(assets::console))
        .route("/assets/console/{name}", get(assets::console_asset))
        .route("/export/app-keys.csv", get(export::app_keys_csv))
        .route("/export/app-keys.xlsx", get(export::app_keys_xlsx))
        .route("/auth", get(forward_auth::check))
        .route("/revoke", post(leaks::revoke))
        .route("/secret-scanning/github", post(leaks::github))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    let router = if settings.metrics_bind.is_none() { router.route("/metrics", get(metrics)) } else { router };
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(settings.request_deadline(), within_deadline))
        .layer(middleware::from_fn(count_requests))
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
    // The credential headers `auth` reads, under every name it reads them by.
    let headers: Vec<HeaderName> = [header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT, ACCOUNT_HEADER]
        .into_iter()
        .chain(APP_KEY_HEADERS)
        .chain(APP_TOKEN_HEADERS)
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(headers)
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER, header::CONTENT_DISPOSITION])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The client's address: the peer's, or, when the peer is a trusted proxy (`--trusted-proxies`),
/// the nearest address in `X-Forwarded-For` that is not itself a trusted proxy.
pub(crate) struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<HttpState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &HttpState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let trusted = &state.app.settings.trusted_proxies;
        Ok(Self(peer.map(|peer| client_behind(peer, &parts.headers, trusted))))
    }
}

/// Walks `X-Forwarded-For` from the nearest hop outwards while the hops are trusted proxies.
fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

impl ClientAddr {
    /// The client's IP address as text (audit events, throttling, last use).
    pub(crate) fn ip(&self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

/// Request id and client address, for audit events.
pub(crate) fn request_meta(headers: &HeaderMap, peer: &ClientAddr) -> RequestMeta {
    RequestMeta {
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned),
        client_ip: peer.ip(),
    }
}

/// The one error body of every route, GraphQL or not: `{"errors":[{"message","extensions":{"code"}}]}`.
pub(crate) fn error_body(message: &str, extensions: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "errors": [{ "message": message, "extensions": extensions }] })
}

/// A refusal before any GraphQL (body, method, media type): `BAD_REQUEST`, in the one error shape.
pub(crate) fn request_error(status: StatusCode, message: &str) -> Response {
    let body = error_body(message, serde_json::json!({ "code": "BAD_REQUEST" }));
    (status, Json(body)).into_response()
}

/// `GET /metrics` in the Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let body = render_metrics(&state);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], body).into_response()
}

/// The metrics page: the recorded series plus gauges read now.
fn render_metrics(state: &AppState) -> String {
    let stats = state.auth.cache().stats();
    metrics::counter!("appkeys_credential_cache_hits_total")
        .absolute(stats.hits.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("appkeys_credential_cache_misses_total")
        .absolute(stats.misses.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("appkeys_credential_cache_shared_total")
        .absolute(stats.shared.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("appkeys_credential_cache_refreshes_total")
        .absolute(stats.refreshed.load(std::sync::atomic::Ordering::Relaxed));
    metrics::counter!("appkeys_credential_cache_invalidations_total")
        .absolute(stats.invalidated.load(std::sync::atomic::Ordering::Relaxed));
    let (hits, misses) = state.store.part::<crate::service::keys::meter::UsageAnswers>().counts();
    metrics::counter!("appkeys_usage_read_cache_hits_total").absolute(hits);
    metrics::counter!("appkeys_usage_read_cache_misses_total").absolute(misses);
    let (size, idle) = state.store.pool_use();
    metrics::gauge!("appkeys_db_pool_connections").set(f64::from(size));
    metrics::gauge!("appkeys_db_pool_idle_connections").set(f64::from(idle));
    metrics::gauge!("appkeys_logins_in_progress")
        .set(crate::service::identity::passwords::in_progress(&state.store) as f64);
    metrics::gauge!("appkeys_last_use_pending").set(state.auth.last_use().pending() as f64);
    metrics::gauge!("appkeys_usage_pending").set(state.auth.usage().pending() as f64);
    if state.settings.redis_url.is_some() {
        metrics::gauge!("appkeys_rate_limit_shared").set(if state.auth.gate().sharing() { 1.0 } else { 0.0 });
    }
    crate::telemetry::render()
}

/// The router of `--metrics-bind`: `/metrics` alone.
pub fn metrics_router(state: AppState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

/// Answers `UNAVAILABLE` when a handler has not answered within `deadline` (`Settings::
/// request_deadline`): the database's timeouts bound every wait it knows of, this one the rest (a
/// connection whose packets go nowhere). A response already begun (an export's stream) is not cut.
async fn within_deadline(State(deadline): State<std::time::Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error_response(&AppError::Unavailable(anyhow::anyhow!(
            "the request was not answered within {} ms",
            deadline.as_millis()
        ))),
    }
}

/// Counts every request and its latency by route (the matched pattern, never the raw path) and status.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    crate::telemetry::record_request(route, response.status().as_u16(), started.elapsed());
    response
}

async fn not_found() -> Response {
    let body = error_body("no such route", serde_json::json!({ "code": "NOT_FOUND" }));
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed() -> Response {
    request_error(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
}

/// A plain-HTTP error: status from the error's code, the body GraphQL would give (the same message,
/// code and extensions).
pub(crate) fn error_response(error: &AppError) -> Response {
    let status = match error {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::Forbidden { .. } | AppError::NotAllowed(_) | AppError::IpNotAllowed => StatusCode::FORBIDDEN,
        AppError::BadUserInput { .. } => StatusCode::BAD_REQUEST,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::RemovedExternalKey => StatusCode::CONFLICT,
        AppError::RateLimited { .. } | AppError::UsageExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let graphql = async_graphql::ErrorExtensions::extend(error);
    let extensions = serde_json::to_value(&graphql.extensions).unwrap_or_default();
    let mut response = (status, Json(error_body(&graphql.message, extensions))).into_response();
    if let Some(seconds) = error.retry_after_secs() {
        set_retry_after(&mut response, seconds);
    }
    response
}

/// Sets `Retry-After` (seconds).
pub(crate) fn set_retry_after(response: &mut Response, seconds: u64) {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        headers
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an address")
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net"), "127.0.0.1/32".parse().expect("net")];
        let headers = forwarded("203.0.113.9, 10.1.2.3");
        assert_eq!(client_behind(ip("127.0.0.1"), &headers, &trusted), ip("203.0.113.9"));
        assert_eq!(client_behind(ip("198.51.100.7"), &headers, &trusted), ip("198.51.100.7"), "untrusted peer");
        assert_eq!(client_behind(ip("127.0.0.1"), &headers, &[]), ip("127.0.0.1"), "no trusted proxies");
        // A client cannot hide behind a forged entry further out.
        let spoofed = forwarded("1.2.3.4, 203.0.113.9");
        assert_eq!(client_behind(ip("127.0.0.1"), &spoofed, &trusted), ip("203.0.113.9"));
        assert_eq!(client_behind(ip("127.0.0.1"), &forwarded("garbage"), &trusted), ip("127.0.0.1"));
    }
}
