//! GraphQL over HTTP (and its GraphQL-over-HTTP specification): `POST /graphql` takes JSON bodies
//! only, in batches of at most `--max-batch`; `GET /graphql` runs queries, never mutations; the
//! response media type follows `Accept`; GraphiQL is at `/`.
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{BatchRequest, BatchResponse};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::{request_meta, ClientAddr};
use crate::graphql::AppSchema;
use crate::state::AppState;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

pub async fn graphiql() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline' https://unpkg.com; \
                 style-src 'self' 'unsafe-inline' https://unpkg.com; img-src 'self' data: https://unpkg.com; \
                 font-src 'self' data: https://unpkg.com; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ],
        Html(include_str!("graphiql.html")),
    )
}

/// A request-level failure (before execution), in the GraphQL error shape.
fn request_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": "BAD_REQUEST" } }] });
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], body.to_string()).into_response()
}

/// The media type to answer with, from `Accept`: `None` when the client accepts neither.
fn negotiate(headers: &HeaderMap) -> Option<&'static str> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(JSON);
    };
    let types: Vec<&str> = accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim()).collect();
    if types.iter().any(|t| t.eq_ignore_ascii_case(GRAPHQL_RESPONSE)) {
        Some(GRAPHQL_RESPONSE)
    } else if types
        .iter()
        .any(|t| t.eq_ignore_ascii_case(JSON) || *t == "*/*" || t.eq_ignore_ascii_case("application/*"))
    {
        Some(JSON)
    } else {
        None
    }
}

pub async fn graphql_post(
    State(state): State<AppState>,
    State(schema): State<AppSchema>,
    peer: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Only JSON: form and text/plain bodies are what a cross-site form can send without a preflight.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(JSON));
    if !json {
        return request_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "POST /graphql takes Content-Type: application/json");
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(_) => return request_error(StatusCode::BAD_REQUEST, "the body is not a GraphQL request in JSON"),
    };
    let max_batch = state.settings.max_batch;
    if let BatchRequest::Batch(requests) = &batch {
        if requests.is_empty() || requests.len() > max_batch {
            return request_error(StatusCode::BAD_REQUEST, &format!("a batch holds 1 to {max_batch} operations"));
        }
    }
    for request in batch.iter() {
        if let Some(response) = precheck(&state, request, false) {
            return response;
        }
    }
    execute(&state, &schema, peer, &headers, batch).await
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
    State(schema): State<AppSchema>,
    peer: ClientAddr,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Response {
    let request = match params.map_err(|_| ()).and_then(|Query(p)| p.into_request().map_err(|_| ())) {
        Ok(request) => request,
        Err(()) => return request_error(StatusCode::BAD_REQUEST, "the query string is not a GraphQL request"),
    };
    if let Some(response) = precheck(&state, &request, true) {
        return response;
    }
    execute(&state, &schema, peer, &headers, BatchRequest::Single(request)).await
}

/// Checks a parsed document before execution (`Some` is the refusal): no mutation over GET, at most
/// `--max-aliases` aliases. A document that does not parse is left to execution to report.
fn precheck(state: &AppState, request: &async_graphql::Request, over_get: bool) -> Option<Response> {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else {
        return None;
    };
    if over_get && is_mutation(&document, request.operation_name.as_deref()) {
        let mut response =
            request_error(StatusCode::METHOD_NOT_ALLOWED, "mutations are not allowed over GET; use POST");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(response);
    }
    let aliases = count_aliases(&document);
    let max = state.settings.max_aliases;
    if aliases > max {
        return Some(request_error(
            StatusCode::BAD_REQUEST,
            &format!("the query has {aliases} aliases; at most {max} are allowed"),
        ));
    }
    None
}

/// Whether the operation a request would run is a mutation (or subscription).
fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    let selected = match operation_name {
        Some(name) => document.operations.iter().find(|(n, _)| n.is_some_and(|n| n.as_str() == name)).map(|(_, op)| op),
        // Several operations and no name: execution refuses to pick one, so nothing runs.
        None => document.operations.iter().next().filter(|_| document.operations.iter().count() == 1).map(|(_, op)| op),
    };
    selected.is_some_and(|op| op.node.ty != OperationType::Query)
}

fn count_aliases(document: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    usize::from(field.node.alias.is_some()) + in_set(&field.node.selection_set.node)
                }
                Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let in_operations: usize = document.operations.iter().map(|(_, op)| in_set(&op.node.selection_set.node)).sum();
    let in_fragments: usize = document.fragments.values().map(|f| in_set(&f.node.selection_set.node)).sum();
    in_operations + in_fragments
}

async fn execute(
    state: &AppState,
    schema: &AppSchema,
    peer: ClientAddr,
    headers: &HeaderMap,
    batch: BatchRequest,
) -> Response {
    let Some(media_type) = negotiate(headers) else {
        return request_error(
            StatusCode::NOT_ACCEPTABLE,
            "accept application/graphql-response+json or application/json",
        );
    };
    let meta = request_meta(headers, &peer);
    let auth_state = Arc::new(state.auth.resolve(headers, meta.client_ip.as_deref()).await);
    let batch = batch.data(auth_state).data(meta);
    let response = schema.execute_batch(batch).await;
    respond(media_type, response)
}

/// With `application/graphql-response+json`, a request that failed before execution (syntax,
/// validation) gets 400, as the GraphQL-over-HTTP specification prescribes; with `application/json`
/// every well-formed request gets 200.
fn respond(media_type: &'static str, response: BatchResponse) -> Response {
    let failed_before_execution = match &response {
        BatchResponse::Single(r) => {
            r.data == async_graphql::Value::Null && !r.errors.is_empty() && r.errors.iter().all(|e| e.path.is_empty())
        }
        BatchResponse::Batch(_) => false,
    };
    let status = if media_type == GRAPHQL_RESPONSE && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = match serde_json::to_vec(&response) {
        Ok(body) => body,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))], body).into_response()
}
