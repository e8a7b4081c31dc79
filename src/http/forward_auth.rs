//! `GET /auth`: forward-auth for gateways (nginx `auth_request`, Traefik ForwardAuth).
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{error_response, ClientAddr};
use crate::auth::{Principal, PrincipalKind, ACCOUNT_HEADER};
use crate::error::AppError;
use crate::service::identity::roles;
use crate::state::AppState;

const X_RESOURCES: HeaderName = HeaderName::from_static("x-resources");
const X_APPKEY: HeaderName = HeaderName::from_static("x-appkey");
const X_USER: HeaderName = HeaderName::from_static("x-user");

/// 200 with `X-Account`, `X-AppKey` (or `X-User`) and `X-Resources` when the credentials are good and
/// hold every `?resource=` asked for; 401 or 403 otherwise.
pub async fn check(State(state): State<AppState>, peer: ClientAddr, request: Request) -> Response {
    // The request is taken whole, so its headers are moved here rather than copied.
    let (parts, _) = request.into_parts();
    let required: Vec<String> = match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
        Ok(Query(params)) => params.into_iter().filter(|(k, _)| k == "resource").map(|(_, v)| v).collect(),
        Err(rejection) => return rejection.into_response(),
    };
    let headers = account_from(parts.headers, &state.settings.auth_account_header);
    let principal = match state.auth.resolve(&headers, peer.0).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return error_response(&AppError::Unauthenticated),
        Err(error) => return error_response(&error),
    };
    if matches!(principal.kind, PrincipalKind::User { .. }) && !state.settings.auth_allow_sessions {
        return error_response(&AppError::Unauthenticated);
    }
    let missing: Vec<String> = required.into_iter().filter(|r| !principal.resources.contains(r)).collect();
    if !missing.is_empty() {
        // Held resources exist; only on this failure path is the catalogue read, to tell a typo in
        // the gateway's configuration (400, named) from a missing permission (403).
        let known = match roles::cached_catalogue(&state.store).await {
            Ok(catalogue) => catalogue,
            Err(error) => return error_response(&error),
        };
        let mut unknown: Vec<&str> =
            missing.iter().filter(|id| !known.iter().any(|r| &r.id == *id)).map(String::as_str).collect();
        if !unknown.is_empty() {
            // Registered on another replica a moment ago? Ask the database before calling it a typo.
            let fresh = match roles::catalogue(&state.store).await {
                Ok(catalogue) => catalogue,
                Err(error) => return error_response(&error),
            };
            unknown.retain(|id| !fresh.iter().any(|r| &r.id == id));
        }
        if !unknown.is_empty() {
            return error_response(&AppError::bad_input(
                "resource",
                format!("unknown resource {}: register it first (appkeys resource register)", unknown.join(", ")),
            ));
        }
        return error_response(&AppError::forbidden(missing));
    }
    let mut response = StatusCode::OK.into_response();
    let answer = principal.forward_headers.get_or_init(|| forward_headers(&principal));
    response.headers_mut().extend(answer.iter().cloned());
    response
}

/// `X-Account`, `X-Resources` and `X-AppKey` or `X-User` for a principal (a value that is not a
/// valid header value, which names and emails checked on the way in never are, is left out).
fn forward_headers(principal: &Principal) -> Vec<(HeaderName, HeaderValue)> {
    let resources = principal.resources.iter().map(String::as_str).collect::<Vec<_>>().join(",");
    let who = match &principal.kind {
        PrincipalKind::AppKey { key, .. } => (X_APPKEY, key.as_str()),
        PrincipalKind::User { email, .. } => (X_USER, email.as_str()),
    };
    [(ACCOUNT_HEADER, principal.account_name.as_str()), (X_RESOURCES, &resources), who]
        .into_iter()
        .filter_map(|(name, value)| Some((name, HeaderValue::from_str(value).ok()?)))
        .collect()
}

/// Reads the account from the configured header, when a gateway names it other than `X-Account`.
fn account_from(mut headers: HeaderMap, header: &str) -> HeaderMap {
    if header.eq_ignore_ascii_case("x-account") {
        return headers;
    }
    if let Some(value) = headers.get(header).cloned() {
        headers.insert(ACCOUNT_HEADER, value);
    }
    headers
}
