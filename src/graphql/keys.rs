//! Application keys: the "Application Keys" and "My Keys" pages, lookups, every key mutation, and
//! the export download link.
use async_graphql::{Context, Object, Result, ID};

use super::guard::{principal, service_ctx, PermissionGuard};
use super::page_complexity;
use super::types::{
    connection, ids, AddExternalAppKeyInput, AppKey, AppKeyFilter, ExportDownload, GenerateAppKeyInput,
    GeneratedAppKey, Page,
};
use crate::domain::Resource as R;
use crate::service::export;
use crate::service::keys::{self, KeyFilter, Listing, RolesChange};
use crate::service::page::PageRequest;
use crate::state::AppState;

/// Both listings: one page of keys as a Relay connection.
async fn list_keys(
    ctx: &Context<'_>,
    listing: Listing,
    first: i32,
    after: Option<String>,
    filter: Option<AppKeyFilter>,
) -> Result<Page<AppKey>> {
    let state = ctx.data::<AppState>()?;
    let principal = principal(ctx)?;
    let page = PageRequest::parse(Some(first), after.as_deref())?;
    let filter = filter.unwrap_or_default();
    let filter = KeyFilter {
        search: filter.search,
        status: filter.status.map(Into::into),
        key_type: filter.key_type.map(Into::into),
    };
    let paged = keys::list(&state.store.db, &principal.account_id, listing, &filter, &page).await?;
    Ok(connection(paged, page.after.is_some(), |k| k.id.as_str(), AppKey::from))
}

#[derive(Default)]
pub struct KeyQuery;

#[Object]
impl KeyQuery {
    /// The "Application Keys" page: every internal and external key holding roles in this account, newest first.
    #[graphql(
        guard = "PermissionGuard::new(R::SaveUser).or(R::ApiKeysView)",
        complexity = "page_complexity(first, child_complexity)"
    )]
    async fn app_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, at most 100.", default = 20)] first: i32,
        #[graphql(desc = "Cursor from the previous page's `pageInfo.endCursor`.")] after: Option<String>,
        #[graphql(desc = "Search, status and type filters.")] filter: Option<AppKeyFilter>,
    ) -> Result<Page<AppKey>> {
        list_keys(ctx, Listing::WithAccess, first, after, filter).await
    }

    /// The "My Keys" page: every key generated in this account, with or without roles, newest first.
    #[graphql(
        guard = "PermissionGuard::new(R::SaveUser).or(R::ApiKeysView)",
        complexity = "page_complexity(first, child_complexity)"
    )]
    async fn my_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, at most 100.", default = 20)] first: i32,
        #[graphql(desc = "Cursor from the previous page's `pageInfo.endCursor`.")] after: Option<String>,
        #[graphql(desc = "Search, status and type filters.")] filter: Option<AppKeyFilter>,
    ) -> Result<Page<AppKey>> {
        list_keys(ctx, Listing::Internal, first, after, filter).await
    }

    /// One key by its value, as this account sees it; null when this account does not know it.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser).or(R::ApiKeysView)")]
    async fn app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
    ) -> Result<Option<AppKey>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        Ok(keys::get(&state.store.db, &principal.account_id, &key).await?.map(Into::into))
    }
}

#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Generates an internal key. The token in the response is shown once and never again.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn generate_app_key(&self, ctx: &Context<'_>, input: GenerateAppKeyInput) -> Result<GeneratedAppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let role_ids = ids(input.role_ids.unwrap_or_default());
        let generated =
            keys::generate(&state.store, &sctx, &state.key_prefix, input.label.as_deref(), &role_ids).await?;
        Ok(GeneratedAppKey { app_key: generated.key.into(), app_token: generated.token.expose_secret().to_owned() })
    }

    /// Grants roles in this account to another account's key (or re-adds a removed one).
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn add_external_app_key(&self, ctx: &Context<'_>, input: AddExternalAppKeyInput) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::add_external(&state.store, &sctx, &input.key, &ids(input.role_ids)).await?.into())
    }

    /// Replaces the key's roles in this account. An empty list removes its access.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn set_app_key_roles(&self, ctx: &Context<'_>, key: String, role_ids: Vec<ID>) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Set, role_ids).await
    }

    /// Adds roles to the key in this account.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn add_app_key_roles(&self, ctx: &Context<'_>, key: String, role_ids: Vec<ID>) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Add, role_ids).await
    }

    /// Removes roles from the key in this account.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn remove_app_key_roles(&self, ctx: &Context<'_>, key: String, role_ids: Vec<ID>) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Remove, role_ids).await
    }

    /// Reactivates an internal key, with the roles it kept. A removed external key fails with
    /// REMOVED_EXTERNAL_KEY: add it again instead.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn activate_app_key(&self, ctx: &Context<'_>, key: String) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::activate(&state.store, &sctx, &key).await?.into())
    }

    /// Internal key: deactivates it everywhere (roles kept). External key: removes its access to
    /// this account and clears its roles here.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn deactivate_app_key(&self, ctx: &Context<'_>, key: String) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::deactivate(&state.store, &sctx, &key).await?.into())
    }

    /// A single-use link, valid 60 seconds, to download the CSV export (for browsers, which cannot
    /// send auth headers on a plain download).
    #[graphql(guard = "PermissionGuard::new(R::SaveUser).or(R::ApiKeysView)")]
    async fn create_app_keys_export(&self, ctx: &Context<'_>) -> Result<ExportDownload> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let (ticket, expires_at) = export::issue_ticket(&state.store, &sctx).await?;
        Ok(ExportDownload { url: format!("/export/app-keys.csv?ticket={}", ticket.expose_secret()), expires_at })
    }
}

async fn change_roles(ctx: &Context<'_>, key: &str, change: RolesChange, role_ids: Vec<ID>) -> Result<AppKey> {
    let state = ctx.data::<AppState>()?;
    let sctx = service_ctx(ctx)?;
    Ok(keys::change_roles(&state.store, &sctx, key, change, &ids(role_ids)).await?.into())
}
