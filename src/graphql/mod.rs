//! The GraphQL schema (schema.graphql; docs/walkthrough.md): query and mutation objects per area, merged here.
mod access;
mod audit;
pub mod events;
mod gate;
pub mod guard;
mod keys;
mod listed;
mod node;
pub mod types;
mod written;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema, ValidationMode};

pub use events::{SocketCredential, SubscriptionRoot};

use crate::state::AppState;

/// Reads: who am I, keys, roles, resources, users, the audit log, webhooks, and any object by global id.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    access::AccessQuery,
    keys::KeyQuery,
    gate::GateQuery,
    audit::AuditQuery,
    events::EventQuery,
    node::NodeQuery,
);

/// Changes: sessions, keys, roles, users and webhooks. Each validates first and writes in one transaction.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(access::AccessMutation, keys::KeyMutation, gate::GateMutation, events::EventMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// A page costs its size times what one item costs, so `first: 100` is priced as 100 items.
pub(crate) fn page_complexity(size: Option<i32>, child_complexity: usize) -> usize {
    let size = size.unwrap_or(crate::service::store::page::DEFAULT_PAGE_SIZE as i32);
    let items = usize::try_from(size.clamp(1, crate::service::store::page::MAX_PAGE_SIZE as i32)).unwrap_or(1);
    items.saturating_mul(child_complexity)
}

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
}

/// Builds the schema over the application state, with the limits that refuse abusive queries (the
/// defaults leave room for GraphiQL's own introspection query). Aliases and batches are counted in
/// `http::graphql`.
fn build(state: AppState, mode: ValidationMode) -> AppSchema {
    let settings = state.settings.clone();
    let mut builder = builder()
        .validation_mode(mode)
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .limit_directives(settings.max_directives)
        .limit_recursive_depth(64);
    if settings.no_introspection {
        builder = builder.disable_introspection();
    }
    builder.data(state).finish()
}

/// The schema twice over, and what has passed full validation. Every rule of validation depends
/// only on the schema, the document, the operation chosen and the variables' values, so a request
/// that repeats one that passed (same text, same operation name, same variables) need not be
/// validated again: it runs on `checked`, which keeps only the limits (depth, complexity,
/// directives, fragment cycles). Clients send the same few documents again and again; validating
/// one in full cost about as much as running a small query.
#[derive(Clone)]
pub struct Schemas(Arc<SchemasInner>);

struct SchemasInner {
    strict: AppSchema,
    checked: AppSchema,
    /// Requests that passed `strict` without an error, by `validation_key`. Bounded by their size,
    /// 4 MiB (eviction by TinyLFU, so one-off requests cannot push out the ones in use).
    validated: moka::sync::Cache<String, ()>,
}

impl Schemas {
    pub fn build(state: AppState) -> Self {
        Self(Arc::new(SchemasInner {
            strict: build(state.clone(), ValidationMode::Strict),
            checked: build(state, ValidationMode::Fast),
            validated: moka::sync::Cache::builder()
                .weigher(|key: &String, _| u32::try_from(key.len()).unwrap_or(u32::MAX))
                .max_capacity(4 << 20)
                .build(),
        }))
    }

    /// The schema with every validation rule (subscriptions, and any first run of a request).
    pub fn strict(&self) -> &AppSchema {
        &self.0.strict
    }

    /// Runs one request: on `checked` when the same request passed full validation before, else on
    /// `strict`, remembering it when it runs without an error (an error with no path may be a
    /// validation failure; any error at all is simply run in full next time).
    pub async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let key = validation_key(&request);
        if key.as_ref().is_some_and(|key| self.0.validated.contains_key(key)) {
            return self.0.checked.execute(request).await;
        }
        let response = self.0.strict.execute(request).await;
        if let Some(key) = key.filter(|_| response.errors.is_empty()) {
            self.0.validated.insert(key, ());
        }
        response
    }

    /// Runs a batch's requests concurrently, answering in their order (as `Schema::execute_batch`).
    pub async fn execute_batch(&self, batch: async_graphql::BatchRequest) -> async_graphql::BatchResponse {
        use futures::stream::{FuturesOrdered, StreamExt};
        match batch {
            async_graphql::BatchRequest::Single(request) => {
                async_graphql::BatchResponse::Single(self.execute(request).await)
            }
            async_graphql::BatchRequest::Batch(requests) => async_graphql::BatchResponse::Batch(
                requests
                    .into_iter()
                    .map(|request| self.execute(request))
                    .collect::<FuturesOrdered<_>>()
                    .collect()
                    .await,
            ),
        }
    }
}

/// What validation depends on besides the schema: the operation name, the variables' values and the
/// document's text, each but the last behind its length (no two requests share a key). `None` when
/// the variables cannot be written out.
fn validation_key(request: &async_graphql::Request) -> Option<String> {
    use std::fmt::Write as _;
    let variables = serde_json::to_string(&request.variables).ok()?;
    let mut key = String::with_capacity(variables.len() + request.query.len() + 48);
    match request.operation_name.as_deref() {
        Some(name) => write!(key, "{}:{name}", name.len()).ok()?,
        None => key.push('-'),
    }
    write!(key, "{}:{variables}", variables.len()).ok()?;
    key.push_str(&request.query);
    Some(key)
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl()
}
