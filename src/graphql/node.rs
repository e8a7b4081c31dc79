//! Relay's object identification: `node(id:)` and `nodes(ids:)` over opaque global ids. An id names
//! an object of the request's account only: another account's id, a garbled one or a deleted object
//! all answer null, and each kind of object needs the permission its own queries need.
use async_graphql::{Context, Guard, Interface, Object, Result, ID};

use super::events::{WebhookDelivery, WebhookEndpoint};
use super::guard::{principal, Authenticated, PermissionGuard};
use super::types::{parse_global_id, AppKey, AuditEvent, NodeKind, Role, User};
use crate::domain::Resource as R;
use crate::error::AppError;
use crate::service::events::audit;
use crate::service::events::webhooks;
use crate::service::identity::roles;
use crate::service::identity::users;
use crate::service::keys;
use crate::state::AppState;

/// The most ids one `nodes` call resolves (like a page).
const MAX_NODES: usize = 100;

/// An object with a global id, which `node(id:)` finds again.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "&ID", desc = "The object's global id: opaque, unique across every kind."))]
pub enum Node {
    AppKey(AppKey),
    Role(Role),
    User(User),
    AuditEvent(AuditEvent),
    WebhookEndpoint(WebhookEndpoint),
    WebhookDelivery(WebhookDelivery),
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this global id, in the request's account; null if there is none.
    #[graphql(guard = "Authenticated")]
    async fn node(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A global id, e.g. an `AppKey.id`.")] id: ID,
    ) -> Result<Option<Node>> {
        resolve(ctx, &id).await
    }

    /// The objects with these global ids (at most 100), in the same order; null where there is none.
    #[graphql(guard = "Authenticated", complexity = "ids.len().saturating_mul(child_complexity)")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Global ids.")] ids: Vec<ID>,
    ) -> Result<Vec<Option<Node>>> {
        if ids.len() > MAX_NODES {
            return Err(AppError::bad_input("ids", format!("at most {MAX_NODES} ids at once")).into());
        }
        let mut found = Vec::with_capacity(ids.len());
        for id in &ids {
            found.push(resolve(ctx, id).await?);
        }
        Ok(found)
    }
}

async fn resolve(ctx: &Context<'_>, id: &ID) -> Result<Option<Node>> {
    let Some((kind, local)) = parse_global_id(id) else {
        return Ok(None);
    };
    let state = ctx.data::<AppState>()?;
    let account_id = principal(ctx)?.account_id.clone();
    let store = &state.store;
    Ok(match kind {
        NodeKind::AppKey => {
            PermissionGuard::any_of(R::READ_KEYS).check(ctx).await?;
            keys::get_by_id(store, &account_id, &local).await?.map(|k| Node::AppKey(k.into()))
        }
        NodeKind::Role => {
            PermissionGuard::any_of(R::READ_ROLES).check(ctx).await?;
            roles::find(store, &account_id, &local).await?.map(|r| Node::Role(r.into()))
        }
        NodeKind::User => {
            PermissionGuard::new(R::SaveUser).check(ctx).await?;
            match users::get(store, &account_id, &local).await {
                Ok(user) => Some(Node::User(user.into())),
                Err(AppError::NotFound(_)) => None,
                Err(other) => return Err(other.into()),
            }
        }
        NodeKind::AuditEvent => {
            PermissionGuard::any_of(R::READ_AUDIT).check(ctx).await?;
            audit::get(store, &account_id, &local).await?.map(|e| Node::AuditEvent(e.into()))
        }
        NodeKind::WebhookEndpoint => {
            PermissionGuard::any_of(R::READ_SETTINGS).check(ctx).await?;
            webhooks::get_endpoint(store, &account_id, &local).await?.map(|e| Node::WebhookEndpoint(e.into()))
        }
        NodeKind::WebhookDelivery => {
            PermissionGuard::any_of(R::READ_SETTINGS).check(ctx).await?;
            webhooks::get_delivery(store, &account_id, &local).await?.map(|d| Node::WebhookDelivery(d.into()))
        }
    })
}
