//! Application keys: the "Application Keys" and "My Keys" pages, lookups, every key mutation, and
//! the export download link.
use async_graphql::{Context, Object, Result, ID};

use super::guard::{principal, service_ctx, PermissionGuard};
use super::page_complexity;
use super::types::{
    connection, local_ids, AddExternalAppKeyInput, AppKey, AppKeyFilter, AppKeyOrder, AppKeySettings,
    AppKeySettingsInput, ExportDownload, ExportFormat, GenerateAppKeyInput, GeneratedAppKey, NodeKind, Page,
    RenewAppKeyTokenInput, RenewedAppKeyToken, UsageRead,
};
use crate::domain::Resource as R;
use crate::service::keys::export;
use crate::service::keys::settings;
use crate::service::keys::{self, KeyFilter, KeyOrder, Listing, RolesChange};
use crate::service::store::page::{Direction, PageRequest};
use crate::state::AppState;

/// A page request of either listing, as GraphQL receives it.
struct KeyPage {
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    filter: Option<AppKeyFilter>,
    order_by: Option<AppKeyOrder>,
}

/// Both listings: one page of keys as a Relay connection.
async fn list_keys(ctx: &Context<'_>, listing: Listing, request: KeyPage) -> Result<Page<AppKey>> {
    let state = ctx.data::<AppState>()?;
    let principal = principal(ctx)?;
    let page = PageRequest::parse(request.first, request.after.as_deref(), request.last, request.before.as_deref())?;
    let filter = request.filter.unwrap_or_default();
    let filter = KeyFilter {
        key: None,
        search: filter.search,
        status: filter.status.map(Into::into),
        key_type: filter.key_type.map(Into::into),
        renewal_alert: filter.renewal_alert.map(Into::into),
        unused_since: filter.unused_since,
        unused_permission_days: filter.unused_permission_days,
    };
    let order = request.order_by.unwrap_or_default();
    let (field, direction): (KeyOrder, Direction) = (order.field.into(), order.direction.into());
    let who = keys::Lister {
        account_id: &principal.account_id,
        account_name: &principal.account_name,
        now: state.store.now(),
    };
    let paged = keys::list(&state.store, &who, listing, &filter, (field, direction), &page).await?;
    Ok(connection(paged, |k| keys::cursor_of(k, field), AppKey::from))
}

#[derive(Default)]
pub struct KeyQuery;

#[Object]
impl KeyQuery {
    /// The "Application Keys" page: every internal and external key holding roles in this account,
    /// newest first unless `orderBy` says otherwise.
    #[graphql(
        guard = "PermissionGuard::any_of(R::READ_KEYS)",
        complexity = "page_complexity(first.or(last), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn app_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size forwards (default 20), at most 100.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue after (`pageInfo.endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards, at most 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue before (`pageInfo.startCursor`).")] before: Option<String>,
        #[graphql(desc = "Search, status, type, renewal and use filters.")] filter: Option<AppKeyFilter>,
        #[graphql(desc = "Sort order; default CREATED_AT DESC.")] order_by: Option<AppKeyOrder>,
    ) -> Result<Page<AppKey>> {
        list_keys(ctx, Listing::WithAccess, KeyPage { first, after, last, before, filter, order_by }).await
    }

    /// The "My Keys" page: every key generated in this account, with or without roles, newest first
    /// unless `orderBy` says otherwise.
    #[graphql(
        guard = "PermissionGuard::any_of(R::READ_KEYS)",
        complexity = "page_complexity(first.or(last), child_complexity)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn my_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size forwards (default 20), at most 100.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue after (`pageInfo.endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards, at most 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue before (`pageInfo.startCursor`).")] before: Option<String>,
        #[graphql(desc = "Search, status, type, renewal and use filters.")] filter: Option<AppKeyFilter>,
        #[graphql(desc = "Sort order; default CREATED_AT DESC.")] order_by: Option<AppKeyOrder>,
    ) -> Result<Page<AppKey>> {
        list_keys(ctx, Listing::Internal, KeyPage { first, after, last, before, filter, order_by }).await
    }

    /// The account's key settings.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_SETTINGS)")]
    async fn app_key_settings(&self, ctx: &Context<'_>) -> Result<AppKeySettings> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        Ok(settings::get(&state.store, &principal.account_id).await?.into())
    }

    /// One key by its value, as this account sees it; null when this account does not know it.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
    ) -> Result<Option<AppKey>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        if let Some(range) = super::gate::usage_alone(ctx) {
            let value = crate::domain::AppKeyValue::parse(&key).map_err(|e| e.at("key"))?;
            let found = keys::meter::series_of_key(&state.store, &principal.account_id, value.as_str(), range).await?;
            return Ok(found.map(|(access_id, points)| {
                AppKey::usage_alone(access_id, value.as_str().to_owned(), UsageRead { range, points })
            }));
        }
        let who = keys::Lister {
            account_id: &principal.account_id,
            account_name: &principal.account_name,
            now: state.store.now(),
        };
        Ok(keys::get(&state.store, &who, &key).await?.map(Into::into))
    }
}

#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Generates an internal key. The token in the response is shown once and never again.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn generate_app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new key's label, roles, expiry and policy.")] input: GenerateAppKeyInput,
    ) -> Result<GeneratedAppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let new = keys::NewKey {
            label: input.label,
            role_ids: local_ids(NodeKind::Role, input.role_ids.unwrap_or_default()),
            expires_at: input.expires_at,
            policy: input.policy.map(Into::into),
        };
        let generated = keys::generate(&state.store, &sctx, &state.key_prefix, &new).await?;
        Ok(GeneratedAppKey { app_key: generated.key.into(), app_token: generated.token.expose_secret().to_owned() })
    }

    /// Grants roles in this account to another account's key (or re-adds a removed one).
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn add_external_app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Another account's key and the roles it gets here.")] input: AddExternalAppKeyInput,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let role_ids = local_ids(NodeKind::Role, input.role_ids);
        Ok(keys::add_external(&state.store, &sctx, &input.key, &role_ids).await?.into())
    }

    /// Replaces the key's roles in this account. An empty list removes its access.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn set_app_key_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
        #[graphql(desc = "The roles the key holds here afterwards (ids from `roles`).")] role_ids: Vec<ID>,
    ) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Set, role_ids).await
    }

    /// Adds roles to the key in this account.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn add_app_key_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
        #[graphql(desc = "The roles to add (ids from `roles`).")] role_ids: Vec<ID>,
    ) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Add, role_ids).await
    }

    /// Removes roles from the key in this account.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn remove_app_key_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
        #[graphql(desc = "The roles to remove (ids from `roles`).")] role_ids: Vec<ID>,
    ) -> Result<AppKey> {
        change_roles(ctx, &key, RolesChange::Remove, role_ids).await
    }

    /// Reactivates an internal key, with the roles it kept. A removed external key fails with
    /// REMOVED_EXTERNAL_KEY: add it again instead.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn activate_app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::activate(&state.store, &sctx, &key).await?.into())
    }

    /// Internal key: deactivates it everywhere (roles kept). External key: removes its access to
    /// this account and clears its roles here.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn deactivate_app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::deactivate(&state.store, &sctx, &key).await?.into())
    }

    /// Deletes an internal key: irreversible. It stops working at once everywhere and leaves every
    /// listing of every account; the audit log keeps its history. Another account's key cannot be
    /// deleted here (BAD_USER_INPUT): deactivate it to remove it from this account.
    #[graphql(guard = "PermissionGuard::any_of(R::EDIT_KEYS)")]
    async fn delete_app_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value, e.g. `appkey-main-ORYNWX`.")] key: String,
    ) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        keys::delete(&state.store, &sctx, &key).await?;
        Ok(true)
    }

    /// Renews an internal key's token without downtime: a new token is made and shown once, and the
    /// previous one keeps working until `oldTokenValidFor` runs out or the renewal is finished or
    /// undone. A renewal already pending: CONFLICT. A key cannot renew itself (FORBIDDEN).
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysRenewToken)")]
    async fn renew_app_key_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
        #[graphql(desc = "How long the previous token keeps working.")] input: Option<RenewAppKeyTokenInput>,
    ) -> Result<RenewedAppKeyToken> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let input = input.unwrap_or_default();
        let request = keys::Renew { old_token_valid_for_secs: input.old_token_valid_for, expires_at: input.expires_at };
        let renewed = keys::renew(&state.store, &sctx, &key, &request).await?;
        Ok(RenewedAppKeyToken { app_key: renewed.key.into(), app_token: renewed.token.expose_secret().to_owned() })
    }

    /// Finishes a pending renewal: the previous token stops at once. None pending: CONFLICT.
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysRenewToken)")]
    async fn finish_app_key_renewal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::finish_renewal(&state.store, &sctx, &key).await?.into())
    }

    /// Undoes a pending renewal: the new token stops at once, the previous one stays. None pending:
    /// CONFLICT.
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysRenewToken)")]
    async fn undo_app_key_renewal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key value.")] key: String,
    ) -> Result<AppKey> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(keys::undo_renewal(&state.store, &sctx, &key).await?.into())
    }

    /// Changes the account's key settings.
    #[graphql(guard = "PermissionGuard::new(R::ApiKeysEditSettings)")]
    async fn update_app_key_settings(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The settings to change; those left out keep their value.")] input: AppKeySettingsInput,
    ) -> Result<AppKeySettings> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let change = settings::SettingsChange {
            renewal_period_days: input.renewal_period_days,
            max_lifetime_days: input.max_lifetime_days.into(),
            deactivate_unused_after_days: input.deactivate_unused_after_days.into(),
            expiry_warning_days: input.expiry_warning_days,
        };
        Ok(settings::update(&state.store, &sctx, &change).await?.into())
    }

    /// A single-use link, valid 60 seconds, to download the export (for browsers, which cannot
    /// send auth headers on a plain download).
    #[graphql(guard = "PermissionGuard::any_of(R::READ_KEYS)")]
    async fn create_app_keys_export(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "CSV (the default) or XLSX.", default_with = "ExportFormat::Csv")] format: ExportFormat,
    ) -> Result<ExportDownload> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let (ticket, expires_at) = export::issue_ticket(&state.store, &sctx).await?;
        let extension = match format {
            ExportFormat::Csv => "csv",
            ExportFormat::Xlsx => "xlsx",
        };
        Ok(ExportDownload {
            url: format!("/export/app-keys.{extension}?ticket={}", ticket.expose_secret()),
            expires_at,
        })
    }
}

async fn change_roles(ctx: &Context<'_>, key: &str, change: RolesChange, role_ids: Vec<ID>) -> Result<AppKey> {
    let state = ctx.data::<AppState>()?;
    let sctx = service_ctx(ctx)?;
    Ok(keys::change_roles(&state.store, &sctx, key, change, &local_ids(NodeKind::Role, role_ids)).await?.into())
}
