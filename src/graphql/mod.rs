//! The GraphQL schema (SPEC §6): query and mutation objects per area, merged here.
mod access;
mod audit;
pub mod guard;
mod keys;
pub mod types;

use async_graphql::{EmptySubscription, MergedObject, Schema};

use crate::AppState;

/// Reads: who am I, keys, roles, resources, users and the audit log.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(access::AccessQuery, keys::KeyQuery, audit::AuditQuery);

/// Changes: sessions, keys, roles and users. Each validates first and writes in one transaction.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(access::AccessMutation, keys::KeyMutation);

pub type AppSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Limits that refuse abusive queries yet leave room for GraphiQL's own introspection query.
pub const MAX_DEPTH: usize = 15;
pub const MAX_COMPLEXITY: usize = 2_000;

pub fn build(state: Option<AppState>) -> AppSchema {
    let mut builder = Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    build(None).sdl()
}
