//! Field guards: the one place a GraphQL field says what it requires.
use async_graphql::{Context, ErrorExtensions, Guard, Result};
use std::sync::Arc;

use crate::auth::{AuthState, Principal};
use crate::domain::Resource;
use crate::error::AppError;
use crate::service::events::audit::Ctx;
use crate::service::events::audit::RequestMeta;

/// The authenticated caller, or the authentication error this request earned.
pub fn principal<'c>(ctx: &Context<'c>) -> Result<&'c Principal> {
    match ctx.data::<Arc<AuthState>>().map(|state| state.as_ref()) {
        Ok(Ok(Some(principal))) => Ok(principal.as_ref()),
        Ok(Err(error)) => Err(error.extend()),
        Ok(Ok(None)) | Err(_) => Err(AppError::Unauthenticated.extend()),
    }
}

/// The principal and request metadata a mutation hands to a service.
pub fn service_ctx<'c>(ctx: &Context<'c>) -> Result<Ctx<'c>> {
    let principal = principal(ctx)?;
    let meta = ctx.data::<RequestMeta>()?;
    Ok(Ctx { principal, meta })
}

/// Requires an authenticated caller holding at least one of the listed resources in the request's account.
pub struct PermissionGuard {
    any_of: Vec<Resource>,
}

impl PermissionGuard {
    pub fn new(resource: Resource) -> Self {
        Self { any_of: vec![resource] }
    }

    /// Any one of these resources will do.
    pub fn any_of(resources: &[Resource]) -> Self {
        Self { any_of: resources.to_vec() }
    }

    /// Also accept `resource` (e.g. read-only operations accept `ApiKeys.View`).
    pub fn or(mut self, resource: Resource) -> Self {
        self.any_of.push(resource);
        self
    }
}

impl Guard for PermissionGuard {
    /// A key's request is counted in its usage: the resource that let it through is marked as used,
    /// a refusal is counted as forbidden.
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let principal = principal(ctx)?;
        let checked = require_any(principal, &self.any_of);
        if principal.app_key_id().is_some() {
            if let Ok(state) = ctx.data::<crate::state::AppState>() {
                match &checked {
                    Ok(()) => {
                        let used = self.any_of.iter().find(|r| principal.holds(**r)).map(|r| r.id());
                        state.auth.used_resources(principal, used);
                    }
                    Err(_) => state.auth.refused_resources(principal),
                }
            }
        }
        checked.map_err(|e| e.extend())
    }
}

/// Access is granted by holding any one of the accepted resources; else FORBIDDEN, naming them.
pub fn require_any(principal: &Principal, any_of: &[Resource]) -> Result<(), AppError> {
    if any_of.iter().any(|r| principal.holds(*r)) {
        Ok(())
    } else {
        Err(AppError::forbidden(any_of.iter().map(|r| r.id())))
    }
}

/// Requires any authenticated caller.
pub struct Authenticated;

impl Guard for Authenticated {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        principal(ctx).map(|_| ())
    }
}
