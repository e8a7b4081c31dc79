//! Who may do what: viewer, login/logout, roles, resources and users.
use async_graphql::{Context, ErrorExtensions, Object, Result, ID};

use super::guard::{principal, service_ctx, Authenticated, PermissionGuard};
use super::page_complexity;
use super::types::{
    connection, id_cursor, local_id, local_ids, AddUserInput, AddedUser, CreateRoleInput, LoginInput, NodeKind, Page,
    PrincipalType, Resource, Role, Session, UpdateRoleInput, User, Viewer,
};
use crate::auth::{ip_subject, PrincipalKind};
use crate::domain::Resource as R;
use crate::error::AppError;
use crate::service::events::audit::RequestMeta;
use crate::service::identity::roles;
use crate::service::identity::sessions;
use crate::service::identity::users;
use crate::service::store::page::PageRequest;
use crate::state::AppState;

#[derive(Default)]
pub struct AccessQuery;

#[Object]
impl AccessQuery {
    /// Who is calling, which account the request acts on, and the caller's resources there.
    #[graphql(guard = "Authenticated")]
    async fn viewer(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let resources = roles::cached_catalogue(&state.store)
            .await?
            .iter()
            .filter(|r| principal.resources.contains(&r.id))
            .cloned()
            .map(Resource::from)
            .collect();
        let (principal_type, user, app_key) = match &principal.kind {
            PrincipalKind::User { user_id, .. } => {
                // A user removed a moment ago (on another replica, before its notice arrived) is no
                // longer anyone.
                let user = match users::get(&state.store, &principal.account_id, user_id).await {
                    Err(AppError::NotFound(_)) => return Err(AppError::Unauthenticated.extend()),
                    other => other?,
                };
                (PrincipalType::User, Some(User::from(user)), None)
            }
            PrincipalKind::AppKey { key, .. } => (PrincipalType::AppKey, None, Some(key.clone())),
        };
        Ok(Viewer { principal_type, account: principal.account_name.clone(), user, app_key, resources })
    }

    /// The account's roles: predefined first, then custom roles by name.
    #[graphql(guard = "PermissionGuard::any_of(R::READ_ROLES)")]
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        Ok(roles::list(&state.store, &principal.account_id).await?.into_iter().map(Into::into).collect())
    }

    /// The resource catalogue: built-in resources and those registered by operators.
    #[graphql(guard = "Authenticated")]
    async fn resources(&self, ctx: &Context<'_>) -> Result<Vec<Resource>> {
        let state = ctx.data::<AppState>()?;
        Ok(roles::catalogue(&state.store).await?.into_iter().map(Into::into).collect())
    }

    /// The account's users, newest first.
    #[graphql(
        guard = "PermissionGuard::new(R::SaveUser)",
        complexity = "page_complexity(first.or(last), child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size forwards (default 20), at most 100.")] first: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue after (`pageInfo.endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size backwards, at most 100.")] last: Option<i32>,
        #[graphql(desc = "Cursor of the row to continue before (`pageInfo.startCursor`).")] before: Option<String>,
        #[graphql(desc = "Only users whose email contains this text (case-insensitive).")] search: Option<String>,
    ) -> Result<Page<User>> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        let page = PageRequest::parse(first, after.as_deref(), last, before.as_deref())?;
        let paged = users::list(&state.store, &principal.account_id, search.as_deref(), &page).await?;
        Ok(connection(paged, |u| id_cursor(&u.id), User::from))
    }
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Logs a user in to an account and returns a 24-hour bearer token, shown once.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account, the user's email and password.")] input: LoginInput,
    ) -> Result<Session> {
        let state = ctx.data::<AppState>()?;
        let meta = ctx.data::<RequestMeta>()?;
        // Throttled per account+email and per client IP, before any argon2 work.
        let identity = format!("login:{}/{}", input.account.trim(), input.email.trim().to_lowercase());
        let ip = meta.client_ip.as_deref().map(ip_subject);
        let subjects: Vec<&str> = std::iter::once(identity.as_str()).chain(ip.as_deref()).collect();
        let throttle = state.auth.throttle();
        throttle.check(&subjects)?;
        let outcome =
            match sessions::login(&state.store, meta, state.session_ttl, &input.account, &input.email, &input.password)
                .await
            {
                Ok(outcome) => outcome,
                Err(error) => {
                    if matches!(error, AppError::Unauthenticated) {
                        throttle.record_failure(Some(&identity), meta.client_ip.as_deref());
                    }
                    return Err(error.into());
                }
            };
        Ok(Session {
            token: outcome.token.expose_secret().to_owned(),
            expires_at: outcome.expires_at,
            user: outcome.user.into(),
            account: outcome.account,
        })
    }

    /// Ends the calling user's session; its token stops working at once.
    #[graphql(guard = "Authenticated")]
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let PrincipalKind::User { session_id, .. } = &sctx.principal.kind else {
            return Err(AppError::NotAllowed("logout ends a user session; an app key has none".into()).extend());
        };
        sessions::logout(&state.store, &sctx, session_id).await?;
        Ok(true)
    }

    /// Creates a custom role with resources the caller holds itself.
    #[graphql(guard = "PermissionGuard::new(R::SaveAccessProfile)")]
    async fn create_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role's name and resources.")] input: CreateRoleInput,
    ) -> Result<Role> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        Ok(roles::create(&state.store, &sctx, &input.name, &input.resource_ids).await?.into())
    }

    /// Renames a custom role or replaces its resources. Predefined roles refuse changes.
    #[graphql(guard = "PermissionGuard::new(R::SaveAccessProfile)")]
    async fn update_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The custom role's id.")] id: ID,
        #[graphql(desc = "Its new name or resources; what is left out stays.")] input: UpdateRoleInput,
    ) -> Result<Role> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let view = roles::update(
            &state.store,
            &sctx,
            &local_id(NodeKind::Role, &id),
            input.name.as_deref(),
            input.resource_ids.as_deref(),
        )
        .await?;
        Ok(view.into())
    }

    /// Registers a resource (e.g. `Orders.Read`) for your own APIs to require through `/auth`. The
    /// catalogue is shared by every account, so only the operator account (the bootstrap account)
    /// may extend it, with Save access profile.
    #[graphql(guard = "PermissionGuard::new(R::SaveAccessProfile)")]
    async fn register_resource(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Dot-separated id, e.g. `Orders.Read`.")] id: String,
        #[graphql(desc = "Human-readable name, e.g. `Read orders`.")] name: String,
    ) -> Result<Resource> {
        let state = ctx.data::<AppState>()?;
        let principal = principal(ctx)?;
        if principal.account_name != state.settings.bootstrap_account {
            return Err(
                AppError::forbidden([format!("operator account ({})", state.settings.bootstrap_account)]).extend()
            );
        }
        Ok(roles::register_resource(&state.store, &id, &name).await?.into())
    }

    /// Deletes a custom role; users and keys holding it lose it. Predefined roles refuse.
    #[graphql(guard = "PermissionGuard::new(R::SaveAccessProfile)")]
    async fn delete_role(&self, ctx: &Context<'_>, #[graphql(desc = "The custom role's id.")] id: ID) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        roles::delete(&state.store, &sctx, &local_id(NodeKind::Role, &id)).await?;
        Ok(true)
    }

    /// Adds a user with roles the caller could hold itself; returns a one-time password, shown once.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn add_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new user's email and roles.")] input: AddUserInput,
    ) -> Result<AddedUser> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let role_ids = local_ids(NodeKind::Role, input.role_ids);
        let (user, password) = users::add(&state.store, &sctx, &input.email, &role_ids).await?;
        Ok(AddedUser { user: user.into(), one_time_password: password.expose_secret().to_owned() })
    }

    /// Replaces a user's roles. The account always keeps at least one Owner.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn set_user_roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] user_id: ID,
        #[graphql(desc = "The roles the user holds afterwards (ids from `roles`).")] role_ids: Vec<ID>,
    ) -> Result<User> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        let user_id = local_id(NodeKind::User, &user_id);
        Ok(users::set_roles(&state.store, &sctx, &user_id, &local_ids(NodeKind::Role, role_ids)).await?.into())
    }

    /// Removes a user and ends their sessions. The account always keeps at least one Owner.
    #[graphql(guard = "PermissionGuard::new(R::SaveUser)")]
    async fn remove_user(&self, ctx: &Context<'_>, #[graphql(desc = "The user's id.")] user_id: ID) -> Result<bool> {
        let state = ctx.data::<AppState>()?;
        let sctx = service_ctx(ctx)?;
        users::remove(&state.store, &sctx, &local_id(NodeKind::User, &user_id)).await?;
        Ok(true)
    }
}
