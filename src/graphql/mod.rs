//! The GraphQL schema (README: "The GraphQL API"): query and mutation objects per area, merged here.
mod access;
mod audit;
pub mod events;
pub mod guard;
mod keys;
mod node;
pub mod types;

use async_graphql::{MergedObject, Schema};

pub use events::{SocketCredential, SubscriptionRoot};

use crate::state::AppState;

/// Reads: who am I, keys, roles, resources, users, the audit log, webhooks, and any object by global id.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(access::AccessQuery, keys::KeyQuery, audit::AuditQuery, events::EventQuery, node::NodeQuery);

/// Changes: sessions, keys, roles, users and webhooks. Each validates first and writes in one transaction.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(access::AccessMutation, keys::KeyMutation, events::EventMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// A page costs its size times what one item costs, so `first: 100` is priced as 100 items.
pub(crate) fn page_complexity(size: Option<i32>, child_complexity: usize) -> usize {
    let size = size.unwrap_or(crate::service::page::DEFAULT_PAGE_SIZE as i32);
    let items = usize::try_from(size.clamp(1, crate::service::page::MAX_PAGE_SIZE as i32)).unwrap_or(1);
    items.saturating_mul(child_complexity)
}

fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
}

/// Builds the schema over the application state, with the limits that refuse abusive queries (the
/// defaults leave room for GraphiQL's own introspection query). Aliases and batches are counted in
/// `http::graphql`.
pub fn build(state: AppState) -> AppSchema {
    let settings = state.settings.clone();
    let mut builder = builder()
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity)
        .limit_directives(settings.max_directives)
        .limit_recursive_depth(64);
    if settings.no_introspection {
        builder = builder.disable_introspection();
    }
    builder.data(state).finish()
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl()
}
