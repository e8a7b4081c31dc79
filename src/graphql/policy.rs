//! A key's policy in the request's account: `AppKey.policy` and `setAppKeyPolicy` (the types, and
//! the input `generateAppKey` takes, are in `types`).
use async_graphql::{ComplexObject, Context, Object, Result};

use super::guard::{principal, service_ctx, PermissionGuard};
use super::types::{AppKey, AppKeyPolicy, AppKeyPolicyInput};
use crate::domain::Resource as R;
use crate::service::keys::policy;
use crate::state::AppState;

#[ComplexObject]
impl AppKey {
    /// The key's policy in the request's account (an external key's is this account's to set).
    async fn policy(&self, ctx: &Context<'_>) -> Result<AppKeyPolicy> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        Ok(policy::of_access(&state.store, &principal.account_id, &self.access_id).await?.into())
    }
}

#[derive(Default)]
pub struct PolicyMutation;

#[Object]
impl PolicyMutation {
    /// Replaces the key's whole policy in this account (audited as `key.policy`, with the old and
    /// the new policy). It applies from the next request on every replica. Invalid input:
    /// BAD_USER_INPUT with `extensions.field` (`input.allowedIps[2]`, `input.rateLimits[0].limit`).
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn set_app_key_policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
        #[graphql(desc = "The whole new policy.")] input: AppKeyPolicyInput,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(policy::set(&state.store, &sctx, &key, &input.into()).await?.into())
    }
}
