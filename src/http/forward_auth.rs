//! `GET /auth`: forward-auth for gateways (nginx `auth_request`, Traefik ForwardAuth).
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{error_response, ClientAddr};
use crate::auth::{Admission, Principal, PrincipalKind, ACCOUNT_HEADER};
use crate::domain::policy::MAX_COST;
use crate::error::AppError;
use crate::service::identity::roles;
use crate::state::AppState;

const X_RESOURCES: HeaderName = HeaderName::from_static("x-resources");
const X_APPKEY: HeaderName = HeaderName::from_static("x-appkey");
const X_USER: HeaderName = HeaderName::from_static("x-user");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_CREDITS_REMAINING: HeaderName = HeaderName::from_static("x-credits-remaining");
const X_APPKEYS_CODE: HeaderName = HeaderName::from_static("x-appkeys-code");

/// 200 with `X-Account`, `X-AppKey` (or `X-User`) and `X-Resources` when the credentials are good,
/// hold every `?resource=` asked for and the key's policy admits the request (its address, rate
/// limits and credits, charged `?cost=`); 401, 403 or 429 otherwise.
pub async fn check(State(state): State<AppState>, peer: ClientAddr, request: Request) -> Response {
    // The request is taken whole, so its headers are moved here rather than copied.
    let (parts, _) = request.into_parts();
    let params = match parts.uri.query() {
        None => Vec::new(),
        Some(_) => match Query::<Vec<(String, String)>>::try_from_uri(&parts.uri) {
            Ok(Query(params)) => params,
            Err(rejection) => return rejection.into_response(),
        },
    };
    let cost = match cost_of(&params) {
        Ok(cost) => cost,
        Err(error) => return error_response(&error),
    };
    let required: Vec<String> = params.into_iter().filter(|(k, _)| k == "resource").map(|(_, v)| v).collect();
    let headers = account_from(parts.headers, &state.settings.auth_account_header);
    let principal = match state.auth.resolve(&headers, peer.0).await {
        Ok(Some(principal)) => principal,
        Ok(None) => return error_response(&AppError::Unauthenticated),
        Err(error) => return error_response(&error),
    };
    if matches!(principal.kind, PrincipalKind::User { .. }) && !state.settings.auth_allow_sessions {
        return error_response(&AppError::Unauthenticated);
    }
    let missing: Vec<String> = required.iter().filter(|r| !principal.resources.contains(*r)).cloned().collect();
    if !missing.is_empty() {
        // Boxed: the catalogue's reads are built only on this path, and every granted request's
        // future (moved as it is awaited) stays small.
        return Box::pin(refused(&state, &principal, missing)).await;
    }
    state.auth.used_resources(&principal, required.iter().map(String::as_str));
    let admission = state.auth.admit(&principal, peer.0, crate::auth::user_agent(&headers), cost).await;
    let mut response = match &admission.refused {
        Some(error) => {
            // A gateway's error page cannot read the body of an `auth_request` answer: the code
            // goes in a header too (`RATE_LIMITED`, `USAGE_EXCEEDED`, …).
            let mut response = error_response(error);
            response.headers_mut().insert(X_APPKEYS_CODE, HeaderValue::from_static(error.code()));
            response
        }
        None => {
            let answer = principal.forward_headers.get_or_init(|| forward_headers(&principal));
            // Room for the layers' headers too (request id, nosniff, length, rate limits), so the
            // map is allocated once rather than grown on the way out.
            let mut headers = HeaderMap::with_capacity(answer.len() + 6);
            headers.extend(answer.iter().cloned());
            let mut response = Response::new(axum::body::Body::empty());
            *response.headers_mut() = headers;
            response
        }
    };
    limit_headers(&admission, response.headers_mut());
    response
}

/// 403 naming the resources the principal lacks, or 400 naming the ones no role grants (a typo in
/// the gateway's configuration).
async fn refused(state: &AppState, principal: &Principal, missing: Vec<String>) -> Response {
    state.auth.refused_resources(principal);
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
    error_response(&AppError::forbidden(missing))
}

/// `?cost=N`: the credits and rate-limit units a request costs (0–1000, default 1).
fn cost_of(params: &[(String, String)]) -> Result<u32, AppError> {
    let Some((_, raw)) = params.iter().rev().find(|(k, _)| k == "cost") else {
        return Ok(1);
    };
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|cost| *cost <= MAX_COST)
        .ok_or_else(|| AppError::bad_input("cost", format!("cost is a whole number from 0 to {MAX_COST}")))
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields of the tightest limit, and
/// `X-Credits-Remaining` when the key has credits.
fn limit_headers(admission: &Admission, headers: &mut HeaderMap) {
    if let Some(limit) = &admission.tightest {
        let policy = format!("\"{}\";q={};w={}", limit.name, limit.limit, limit.period_secs);
        let state = format!("\"{}\";r={};t={}", limit.name, limit.remaining, limit.reset_secs);
        if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
            headers.insert(RATELIMIT_POLICY, policy);
            headers.insert(RATELIMIT, state);
        }
    }
    if let Some(credits) = admission.credits {
        headers.insert(X_CREDITS_REMAINING, HeaderValue::from(credits));
    }
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
