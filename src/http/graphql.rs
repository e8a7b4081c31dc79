//! GraphQL over HTTP: `POST /graphql` (JSON bodies only, batches of at most 10), `GET /graphql`
//! (queries only, never mutations), and GraphiQL at `/`.
use async_graphql::parser::types::OperationType;
use async_graphql::{BatchRequest, BatchResponse};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::{request_meta, ClientAddr};
use crate::AppState;

pub const MAX_BATCH: usize = 10;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub async fn graphiql() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(include_str!("graphiql.html")),
    )
}

/// A request-level failure (before execution), in the GraphQL error shape.
fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

pub async fn graphql_post(
    State(state): State<AppState>,
    peer: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only JSON: form and text/plain bodies are what a cross-site form can send without a preflight.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "BAD_REQUEST",
            "POST /graphql takes Content-Type: application/json",
        );
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(_) => {
            return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the body is not a GraphQL request in JSON")
        }
    };
    if let BatchRequest::Batch(requests) = &batch {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return request_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("a batch holds 1 to {MAX_BATCH} operations"),
            );
        }
    }
    execute(&state, peer, &headers, batch).await
}

/// GraphQL-over-HTTP GET parameters (`operationName`, as the spec spells it).
#[derive(Deserialize)]
pub struct GetParams {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl GetParams {
    fn into_request(self) -> Result<async_graphql::Request, serde_json::Error> {
        let mut request = async_graphql::Request::new(self.query);
        request.operation_name = self.operation_name.filter(|name| !name.is_empty());
        if let Some(variables) = self.variables.filter(|v| !v.is_empty()) {
            request.variables = serde_json::from_str(&variables)?;
        }
        if let Some(extensions) = self.extensions.filter(|e| !e.is_empty()) {
            request.extensions = serde_json::from_str(&extensions)?;
        }
        Ok(request)
    }
}

pub async fn graphql_get(
    State(state): State<AppState>,
    peer: ClientAddr,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Response {
    let request = match params.map_err(|_| ()).and_then(|Query(p)| p.into_request().map_err(|_| ())) {
        Ok(request) => request,
        Err(()) => {
            return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the query string is not a GraphQL request")
        }
    };
    if is_mutation(&request) {
        let mut response = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BAD_REQUEST",
            "mutations are not allowed over GET; use POST",
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(&state, peer, &headers, BatchRequest::Single(request)).await
}

/// Whether the operation a request would run is a mutation (or subscription).
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return false; // execution reports the syntax error
    };
    let selected = match request.operation_name.as_deref() {
        Some(name) => document.operations.iter().find(|(n, _)| n.is_some_and(|n| n.as_str() == name)).map(|(_, op)| op),
        // Several operations and no name: execution refuses to pick one, so nothing runs.
        None => document.operations.iter().next().filter(|_| document.operations.iter().count() == 1).map(|(_, op)| op),
    };
    selected.is_some_and(|op| op.node.ty != OperationType::Query)
}

async fn execute(state: &AppState, peer: ClientAddr, headers: &HeaderMap, batch: BatchRequest) -> Response {
    let auth_state = Arc::new(state.auth.resolve(headers).await);
    let meta = request_meta(headers, &peer);
    let batch = batch.data(auth_state).data(meta);
    let response = state.schema.execute_batch(batch).await;
    respond(headers, response)
}

/// Content negotiation (GraphQL over HTTP): `application/graphql-response+json` when the client
/// accepts it, where a request that failed before execution gets 400; otherwise `application/json`
/// with 200.
fn respond(headers: &HeaderMap, response: BatchResponse) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let graphql_response = accept.contains(GRAPHQL_RESPONSE);
    let failed_before_execution = match &response {
        BatchResponse::Single(r) => {
            r.data == async_graphql::Value::Null && !r.errors.is_empty() && r.errors.iter().all(|e| e.path.is_empty())
        }
        BatchResponse::Batch(_) => false,
    };
    let status = if graphql_response && failed_before_execution { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let content_type = if graphql_response { GRAPHQL_RESPONSE } else { "application/json" };
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}
