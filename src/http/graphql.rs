//! GraphQL over HTTP (and its GraphQL-over-HTTP specification): `POST /graphql` takes JSON bodies
//! only, in batches of at most `--max-batch`; `GET /graphql` runs queries, never mutations; the
//! response media type follows `Accept`; GraphiQL is at `/`.
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet};
use async_graphql::BatchRequest;
use async_graphql::Positioned;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::{request_error, request_meta, ClientAddr};
use crate::graphql::Schemas;
use crate::state::AppState;

/// Parsed documents by their text. A client sends the same few documents again and again, and
/// parsing one costs more than the rest of a small query; a parse depends on nothing but the text,
/// so one cache serves every schema in the process. Bounded by the texts' size, 4 MiB of text (a
/// parse takes several times its text in memory; eviction by TinyLFU, so a flood of one-off
/// documents cannot push out the ones in use).
static DOCUMENTS: std::sync::LazyLock<moka::sync::Cache<String, ExecutableDocument>> = std::sync::LazyLock::new(|| {
    moka::sync::Cache::builder()
        .weigher(|text: &String, _| u32::try_from(text.len()).unwrap_or(u32::MAX))
        .max_capacity(4 << 20)
        .build()
});

/// Parses `request`'s document once, or takes the parse of the same text from `DOCUMENTS`.
fn parse_once(request: &mut async_graphql::Request) -> Result<&ExecutableDocument, async_graphql::ServerError> {
    if let Some(document) = DOCUMENTS.get(&request.query) {
        request.set_parsed_query(document);
    } else {
        let text = request.query.clone();
        if let Ok(document) = request.parsed_query() {
            DOCUMENTS.insert(text, document.clone());
        }
    }
    request.parsed_query()
}

/// `parse_once`, then the parse as the request's variables make it: a variable declared and not
/// sent leaves its arguments out, so they take the schema's defaults (`unsent`); a non-null one
/// not sent is a refusal.
fn parse_as_sent<'r>(
    request: &'r mut async_graphql::Request,
    operation_name: Option<&str>,
) -> Result<(&'r ExecutableDocument, Option<Refusal>), async_graphql::ServerError> {
    // The variables are held aside while the parse is borrowed from the request.
    let variables = std::mem::take(&mut request.variables);
    let checked = parse_once(request).map(|document| {
        let required = selected(document, operation_name)
            .and_then(|operation| super::unsent::required_unsent(&operation.node, &variables))
            .map(|unsent| Refusal::Unsent {
                variable: unsent.name.node.to_string(),
                ty: unsent.var_type.node.to_string(),
            });
        (super::unsent::without_unsent(document, &variables), required)
    });
    request.variables = variables;
    let (rewritten, refusal) = checked?;
    if let Some(document) = rewritten {
        request.set_parsed_query(document);
    }
    Ok((request.parsed_query()?, refusal))
}

/// Automatic persisted queries (Apollo's protocol): documents by the SHA-256 of their text, as
/// clients registered them. A client sends `extensions.persistedQuery {version: 1, sha256Hash}`
/// alone; a hash not known here answers `PersistedQueryNotFound`, and the client sends the text
/// with its hash once, which registers it. Bounded like `DOCUMENTS` (2 MiB of text, TinyLFU).
static PERSISTED: std::sync::LazyLock<moka::sync::Cache<String, Arc<str>>> = std::sync::LazyLock::new(|| {
    moka::sync::Cache::builder()
        .weigher(|_: &String, text: &Arc<str>| u32::try_from(text.len()).unwrap_or(u32::MAX))
        .max_capacity(2 << 20)
        .build()
});

/// Why a persisted query could not be used.
enum PersistedRefusal {
    /// Unknown hash: the client should send the text with it.
    NotFound,
    /// The text and its hash disagree, or the extension is malformed.
    Invalid(&'static str),
}

/// Applies `extensions.persistedQuery` to `request`: registers the text under its hash, or fills
/// the text in from the hash. Requests without the extension pass unchanged.
fn persisted(request: &mut async_graphql::Request) -> Result<(), PersistedRefusal> {
    let Some(extension) = request.extensions.get("persistedQuery") else {
        return Ok(());
    };
    let extension = serde_json::to_value(extension).unwrap_or_default();
    if extension.get("version").and_then(serde_json::Value::as_i64) != Some(1) {
        return Err(PersistedRefusal::Invalid("persistedQuery.version must be 1"));
    }
    let hash = extension
        .get("sha256Hash")
        .and_then(serde_json::Value::as_str)
        .filter(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(PersistedRefusal::Invalid("persistedQuery.sha256Hash must be 64 hexadecimal characters"))?
        .to_ascii_lowercase();
    let counted = |outcome: &'static str| {
        metrics::counter!("appkeys_graphql_persisted_queries_total", "outcome" => outcome).increment(1);
    };
    if request.query.is_empty() {
        let Some(text) = PERSISTED.get(&hash) else {
            counted("not_found");
            return Err(PersistedRefusal::NotFound);
        };
        counted("hit");
        request.query = text.to_string();
        return Ok(());
    }
    // The SHA-256 of the text, as hexadecimal (token digests are written the same way).
    if crate::domain::TokenDigest::of(&request.query).as_str() != hash {
        return Err(PersistedRefusal::Invalid("provided sha does not match query"));
    }
    PERSISTED.insert(hash, Arc::from(request.query.as_str()));
    counted("registered");
    Ok(())
}

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

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
    State(schema): State<Schemas>,
    peer: ClientAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let limit = state.settings.max_body_bytes;
            let message = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the request body is larger than {limit} bytes")
            } else {
                "the request body could not be read".to_owned()
            };
            return request_error(rejection.status(), &message);
        }
    };
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
    execute(&state, &schema, peer, &headers, batch, false).await
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
    State(schema): State<Schemas>,
    peer: ClientAddr,
    headers: HeaderMap,
    params: Result<Query<GetParams>, QueryRejection>,
) -> Response {
    let request = match params.map_err(|_| ()).and_then(|Query(p)| p.into_request().map_err(|_| ())) {
        Ok(request) => request,
        Err(()) => return request_error(StatusCode::BAD_REQUEST, "the query string is not a GraphQL request"),
    };
    execute(&state, &schema, peer, &headers, BatchRequest::Single(request), true).await
}

/// Why a request is refused before execution.
enum Refusal {
    /// An HTTP-level refusal (`BAD_REQUEST`): a mutation over GET.
    MutationOverGet,
    /// The document is well-formed but not allowed (`GRAPHQL_VALIDATION_FAILED`).
    Invalid(String),
    /// A non-null variable without a default was not sent (`BAD_USER_INPUT`, the variable as
    /// `extensions.field`), a request error as the GraphQL specification has it.
    Unsent { variable: String, ty: String },
}

/// Checks a parsed document before execution: no mutation over GET, at most `--max-aliases`
/// aliases, no introspection when it is off.
fn precheck(
    state: &AppState,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    over_get: bool,
) -> Option<Refusal> {
    if over_get && is_mutation(document, operation_name) {
        return Some(Refusal::MutationOverGet);
    }
    if state.settings.no_introspection && asks_introspection(document) {
        return Some(Refusal::Invalid("introspection is disabled on this server".into()));
    }
    let aliases = count_aliases(document);
    let max = state.settings.max_aliases;
    if aliases > max {
        return Some(Refusal::Invalid(format!("the query has {aliases} aliases; at most {max} are allowed")));
    }
    None
}

/// The operation a request would run.
fn selected<'d>(
    document: &'d ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match operation_name {
        Some(name) => document.operations.iter().find(|(n, _)| n.is_some_and(|n| n.as_str() == name)).map(|(_, op)| op),
        // Several operations and no name: execution refuses to pick one, so nothing runs.
        None => document.operations.iter().next().filter(|_| document.operations.iter().count() == 1).map(|(_, op)| op),
    }
}

/// Whether the operation a request would run is a mutation (or subscription).
fn is_mutation(document: &ExecutableDocument, operation_name: Option<&str>) -> bool {
    selected(document, operation_name).is_some_and(|op| op.node.ty != OperationType::Query)
}

/// Whether the document selects `__schema` or `__type` anywhere (`__typename` is not introspection).
fn asks_introspection(document: &ExecutableDocument) -> bool {
    fn in_set(set: &SelectionSet) -> bool {
        set.items.iter().any(|item| match &item.node {
            Selection::Field(field) => {
                matches!(field.node.name.node.as_str(), "__schema" | "__type") || in_set(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    document.operations.iter().any(|(_, op)| in_set(&op.node.selection_set.node))
        || document.fragments.values().any(|f| in_set(&f.node.selection_set.node))
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
    schema: &Schemas,
    peer: ClientAddr,
    headers: &HeaderMap,
    batch: BatchRequest,
    over_get: bool,
) -> Response {
    let Some(media_type) = negotiate(headers) else {
        return request_error(
            StatusCode::NOT_ACCEPTABLE,
            "accept application/graphql-response+json or application/json",
        );
    };
    let mut batch = batch;
    for request in batch.iter_mut() {
        let (message, code) = match persisted(request) {
            Ok(()) => continue,
            Err(PersistedRefusal::NotFound) => ("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"),
            Err(PersistedRefusal::Invalid(message)) => (message, "BAD_REQUEST"),
        };
        let body = super::error_body(message, serde_json::json!({ "code": code }));
        return respond_json(media_type, true, &body);
    }
    // Each document is parsed once, here (or taken from `DOCUMENTS`); execution reuses the parse.
    let mut parse_errors: Vec<Option<String>> = Vec::new();
    let mut operations: Vec<String> = Vec::new();
    for request in batch.iter_mut() {
        let requested = request.operation_name.clone();
        let (document, unsent) = match parse_as_sent(request, requested.as_deref()) {
            Ok(parsed) => parsed,
            Err(error) => {
                parse_errors.push(Some(parse_error(&error)));
                operations.push(crate::telemetry::operation_label(requested.as_deref()));
                continue;
            }
        };
        let named = requested.clone().or_else(|| single_operation_name(document));
        operations.push(crate::telemetry::operation_label(named.as_deref()));
        parse_errors.push(None);
        match precheck(state, document, requested.as_deref(), over_get).or(unsent) {
            None => {}
            Some(Refusal::MutationOverGet) => {
                let mut response =
                    request_error(StatusCode::METHOD_NOT_ALLOWED, "mutations are not allowed over GET; use POST");
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
                return response;
            }
            Some(Refusal::Invalid(message)) => {
                let body = super::error_body(&message, serde_json::json!({ "code": VALIDATION_FAILED }));
                return respond_json(media_type, true, &body);
            }
            Some(Refusal::Unsent { variable, ty }) => {
                let message = format!("variable ${variable} of required type {ty} was not provided");
                let extensions = serde_json::json!({ "code": "BAD_USER_INPUT", "field": format!("${variable}") });
                return respond_json(media_type, true, &super::error_body(&message, extensions));
            }
        }
    }
    let started = std::time::Instant::now();
    let meta = request_meta(headers, &peer);
    let auth_state = state.auth.resolve(headers, peer.0).await;
    if let Ok(Some(principal)) = &auth_state {
        // A key's rate limits and credits: one unit per operation, before any runs.
        let cost = u32::try_from(operations.len()).unwrap_or(u32::MAX);
        if let Some(refused) = state.auth.admit(principal, peer.0, crate::auth::user_agent(headers), cost).await.refused
        {
            return super::error_response(&refused);
        }
    }
    let auth_state = Arc::new(auth_state);
    // The texts, to name the argument an input error points at (`shape`); the requests go to
    // execution whole.
    let texts: Vec<String> = batch.iter().map(|request| request.query.clone()).collect();
    let batch = batch.data(auth_state).data(meta);
    let response = schema.execute_batch(batch).await;
    for operation in operations {
        metrics::counter!("appkeys_graphql_operations_total", "operation" => operation.clone()).increment(1);
        metrics::histogram!("appkeys_graphql_operation_duration_seconds", "operation" => operation)
            .record(started.elapsed());
    }
    // Only a response with errors may need shaping (see `shape`); the rest is written out as it is.
    let without_errors = match &response {
        async_graphql::BatchResponse::Single(one) => one.errors.is_empty(),
        async_graphql::BatchResponse::Batch(all) => all.iter().all(|one| one.errors.is_empty()),
    };
    if without_errors {
        return match serde_json::to_vec(&Written(&response)) {
            Ok(body) => respond(media_type, false, body),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    }
    let Ok(mut body) = serde_json::to_value(&response) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let failed_before_execution = match &mut body {
        serde_json::Value::Array(items) => {
            for ((item, parse_error), text) in items.iter_mut().zip(&parse_errors).zip(&texts) {
                shape(item, parse_error.as_deref(), text);
            }
            false
        }
        single => {
            shape(single, parse_errors.first().and_then(Option::as_deref), texts.first().map_or("", String::as_str))
        }
    };
    let mut response = respond_json(media_type, failed_before_execution, &body);
    if any_unavailable(&body) {
        // The database was away: the client (or a gateway in front) retries rather than reading
        // an answer that only says "not now".
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        super::set_retry_after(&mut response, crate::error::UNAVAILABLE_RETRY_AFTER_SECS);
    }
    response
}

/// A response without errors, written out as async-graphql writes it, except that a raw value (an
/// object holding only `RAW_VALUE_TOKEN`, see `graphql::written`) is written as its text without being
/// parsed again: async-graphql hands it to serde_json's `RawValue::from_string`, which copies and
/// validates the whole text (a tenth of a 400-point usage request, profiled). The text is ours,
/// written as JSON where it is made; the equivalence test holds the output to field-by-field
/// resolution.
struct Written<'a>(&'a async_graphql::BatchResponse);

impl serde::Serialize for Written<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            async_graphql::BatchResponse::Single(one) => WrittenOne(one).serialize(serializer),
            async_graphql::BatchResponse::Batch(all) => {
                let mut seq = serializer.serialize_seq(Some(all.len()))?;
                for one in all {
                    seq.serialize_element(&WrittenOne(one))?;
                }
                seq.end()
            }
        }
    }
}

/// One response of `Written`: `data`, then `extensions` when there are any (no `errors`).
struct WrittenOne<'a>(&'a async_graphql::Response);

impl serde::Serialize for WrittenOne<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let one = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("data", &WrittenValue(&one.data))?;
        if !one.extensions.is_empty() {
            map.serialize_entry("extensions", &one.extensions)?;
        }
        if !one.errors.is_empty() {
            map.serialize_entry("errors", &one.errors)?;
        }
        map.end()
    }
}

/// A value of `Written`, as `ConstValue` writes itself but for raw values.
struct WrittenValue<'a>(&'a async_graphql::Value);

impl serde::Serialize for WrittenValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use async_graphql::Value;
        use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
        match self.0 {
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&WrittenValue(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                const RAW: &str = async_graphql_value::RAW_VALUE_TOKEN;
                if let (1, Some(Value::String(text))) = (fields.len(), fields.get(RAW)) {
                    // serde_json writes a struct of this name as the text of its one field.
                    let mut raw = serializer.serialize_struct(RAW, 1)?;
                    raw.serialize_field(RAW, text.as_str())?;
                    return raw.end();
                }
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (name, value) in fields {
                    map.serialize_entry(name.as_str(), &WrittenValue(value))?;
                }
                map.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

/// Whether any error of a response (or of any response in a batch) is `UNAVAILABLE`.
fn any_unavailable(body: &serde_json::Value) -> bool {
    let unavailable = |one: &serde_json::Value| {
        one["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|error| error["extensions"]["code"] == crate::error::AppError::UNAVAILABLE)
        })
    };
    match body {
        serde_json::Value::Array(items) => items.iter().any(unavailable),
        single => unavailable(single),
    }
}

const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";

/// The one-line message of a document that does not parse.
fn parse_error(error: &async_graphql::ServerError) -> String {
    // The parser's message is drawn over several lines; its last `= …` line says what it expected.
    let text = &error.message;
    let summary = text.lines().rev().find_map(|line| line.trim().strip_prefix("= ")).unwrap_or(text.trim());
    match error.locations.first() {
        Some(at) => format!("Syntax error at line {}, column {}: {}", at.line, at.column, one_line(summary)),
        None => format!("Syntax error: {}", one_line(summary)),
    }
}

/// The name of a document's only operation, when a request does not name one.
fn single_operation_name(document: &ExecutableDocument) -> Option<String> {
    let mut operations = document.operations.iter();
    let (name, _) = operations.next()?;
    if operations.next().is_some() {
        return None;
    }
    name.map(|n| n.to_string())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Gives a response that failed before execution (no data, errors without a path) the error codes
/// `GRAPHQL_PARSE_FAILED` / `GRAPHQL_VALIDATION_FAILED` and one-line messages, and drops its `data`
/// entry, as the GraphQL-over-HTTP specification asks. Returns whether it was such a failure.
/// Every other error without a code is async-graphql's refusal of an argument's value (every error
/// of appkeys' own has one): `BAD_USER_INPUT`, with the argument as `extensions.field`.
fn shape(response: &mut serde_json::Value, parse_error: Option<&str>, text: &str) -> bool {
    let Some(object) = response.as_object_mut() else {
        return false;
    };
    let errors_only = object.get("data").is_none_or(serde_json::Value::is_null)
        && object.get("errors").and_then(|e| e.as_array()).is_some_and(|errors| {
            !errors.is_empty()
                && errors.iter().all(|e| e.get("path").is_none_or(|p| p.as_array().is_none_or(Vec::is_empty)))
        });
    if !errors_only {
        for error in object.get_mut("errors").and_then(|e| e.as_array_mut()).into_iter().flatten() {
            if error["extensions"]["code"].is_null() {
                bad_input(error, text);
            }
        }
        return false;
    }
    object.remove("data");
    let code = if parse_error.is_some() { PARSE_FAILED } else { VALIDATION_FAILED };
    if let Some(errors) = object.get_mut("errors").and_then(|e| e.as_array_mut()) {
        for error in errors {
            let Some(error) = error.as_object_mut() else { continue };
            let message = match parse_error {
                Some(message) => message.to_owned(),
                None => one_line(error.get("message").and_then(|m| m.as_str()).unwrap_or_default()),
            };
            error.insert("message".into(), serde_json::Value::String(message));
            let extensions = error.entry("extensions").or_insert_with(|| serde_json::json!({}));
            if let Some(extensions) = extensions.as_object_mut() {
                extensions.entry("code").or_insert_with(|| serde_json::Value::String(code.into()));
            }
        }
    }
    true
}

/// Marks an argument's refused value `BAD_USER_INPUT`, naming the argument (found at the error's
/// location in the document) as `extensions.field` when it can.
fn bad_input(error: &mut serde_json::Value, text: &str) {
    let at = &error["locations"][0];
    let field = match (at["line"].as_u64(), at["column"].as_u64()) {
        (Some(line), Some(column)) => {
            DOCUMENTS.get(text).and_then(|document| argument_at(&document, line as usize, column as usize))
        }
        _ => None,
    };
    let Some(error) = error.as_object_mut() else {
        return;
    };
    let extensions = error.entry("extensions").or_insert_with(|| serde_json::json!({}));
    if let Some(extensions) = extensions.as_object_mut() {
        extensions.insert("code".into(), serde_json::Value::String("BAD_USER_INPUT".into()));
        if let Some(field) = field {
            extensions.entry("field").or_insert(serde_json::Value::String(field));
        }
    }
}

/// The name of the argument whose value starts at `line`:`column` of `document`.
fn argument_at(document: &ExecutableDocument, line: usize, column: usize) -> Option<String> {
    fn in_set(set: &SelectionSet, at: async_graphql::Pos) -> Option<String> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(field) => field
                .node
                .arguments
                .iter()
                .find(|(_, value)| value.pos == at)
                .map(|(name, _)| name.node.to_string())
                .or_else(|| in_set(&field.node.selection_set.node, at)),
            Selection::InlineFragment(fragment) => in_set(&fragment.node.selection_set.node, at),
            Selection::FragmentSpread(_) => None,
        })
    }
    let at = async_graphql::Pos { line, column };
    document
        .operations
        .iter()
        .find_map(|(_, operation)| in_set(&operation.node.selection_set.node, at))
        .or_else(|| document.fragments.values().find_map(|fragment| in_set(&fragment.node.selection_set.node, at)))
}

/// With `application/graphql-response+json`, a request that failed before execution (syntax,
/// validation) gets 400, as the GraphQL-over-HTTP specification prescribes; with `application/json`
/// every well-formed request gets 200.
fn respond_json(media_type: &'static str, failed_before_execution: bool, body: &serde_json::Value) -> Response {
    respond(media_type, failed_before_execution, body.to_string().into_bytes())
}

/// `respond_json` with the body already written.
fn respond(media_type: &'static str, failed_before_execution: bool, body: Vec<u8>) -> Response {
    let status = if media_type == GRAPHQL_RESPONSE && failed_before_execution {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))], body).into_response()
}
