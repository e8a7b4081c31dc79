//! Users of an account: add (with a one-time password), set roles, remove. An account always keeps
//! at least one Owner, and nobody grants or takes away more than it holds.
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use std::collections::HashMap;

use crate::domain::{Email, Password};
use crate::entity::{role, user, user_role};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::identity::passwords;
use crate::service::identity::roles::{self, RoleView};
use crate::service::store::is_id;
use crate::service::store::links;
use crate::service::store::new_id;
use crate::service::store::page::{self, PageRequest, Paged};
use crate::service::store::Store;

#[derive(Debug, Clone)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub roles: Vec<RoleView>,
}

impl UserView {
    /// The user's roles by name, as the audit log records them.
    fn role_names(&self) -> Vec<&str> {
        self.roles.iter().map(|r| r.name.as_str()).collect()
    }
}

/// Inserts a user with roles; used by account creation and `add`.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    email: &Email,
    password_hash: String,
    role_ids: &[String],
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<user::Model> {
    let model = user::ActiveModel {
        id: Set(new_id()),
        account_id: Set(account_id.to_owned()),
        email: Set(email.to_string()),
        password_hash: Set(password_hash),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    link_roles(db, &model.id, role_ids).await?;
    Ok(model)
}

async fn link_roles<C: ConnectionTrait>(db: &C, user_id: &str, role_ids: &[String]) -> AppResult<()> {
    let rows = role_ids
        .iter()
        .map(|role_id| user_role::ActiveModel { user_id: Set(user_id.to_owned()), role_id: Set(role_id.clone()) })
        .collect();
    links::replace(db, user_role::Column::UserId, user_id, rows).await
}

async fn with_roles<C: ConnectionTrait>(db: &C, users: Vec<user::Model>) -> AppResult<Vec<UserView>> {
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let links = if ids.is_empty() {
        Vec::new()
    } else {
        user_role::Entity::find().filter(user_role::Column::UserId.is_in(ids)).all(db).await?
    };
    let role_ids: Vec<&str> = links.iter().map(|l| l.role_id.as_str()).collect();
    let role_rows = if role_ids.is_empty() {
        Vec::new()
    } else {
        role::Entity::find().filter(role::Column::Id.is_in(role_ids)).all(db).await?
    };
    let role_views: HashMap<String, RoleView> =
        roles::views(db, role_rows).await?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut by_user: HashMap<&str, Vec<RoleView>> = HashMap::new();
    for link in &links {
        if let Some(view) = role_views.get(&link.role_id) {
            by_user.entry(link.user_id.as_str()).or_default().push(view.clone());
        }
    }
    Ok(users
        .iter()
        .map(|u| {
            let mut roles = by_user.remove(u.id.as_str()).unwrap_or_default();
            roles::sort_for_display(&mut roles);
            UserView { id: u.id.clone(), email: u.email.clone(), created_at: u.created_at, roles }
        })
        .collect())
}

/// A user of the account, with roles.
pub async fn get(store: &Store, account_id: &str, user_id: &str) -> AppResult<UserView> {
    get_in(store.db(), account_id, user_id).await
}

pub(in crate::service) async fn get_in<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    user_id: &str,
) -> AppResult<UserView> {
    if !is_id(user_id) {
        return Err(AppError::NotFound(format!("no user {user_id:?} in this account")));
    }
    let model = user::Entity::find_by_id(user_id)
        .filter(user::Column::AccountId.eq(account_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no user {user_id:?} in this account")))?;
    Ok(with_roles(db, vec![model]).await?.remove(0))
}

/// The account's users, newest first; with `search`, those whose email contains it (emails are kept
/// lower-cased, so the search folds case).
pub async fn list(
    store: &Store,
    account_id: &str,
    search: Option<&str>,
    page: &PageRequest,
) -> AppResult<Paged<UserView>> {
    let db = store.db();
    let mut select = user::Entity::find().filter(user::Column::AccountId.eq(account_id));
    if let Some(search) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let search = crate::service::store::query_text(search, "search")?;
        select = select.filter(user::Column::Email.contains(search.to_lowercase()));
    }
    let mut paged = page::fetch(db, select, user::Column::Id, page).await?;
    let items = with_roles(db, std::mem::take(&mut paged.items)).await?;
    Ok(paged.with_items(items))
}

async fn ensure_an_owner_remains<C: ConnectionTrait>(db: &C, account_id: &str) -> AppResult<()> {
    let owner_role = roles::owner_role_id(db, account_id).await?;
    let any_owner = user_role::Entity::find().filter(user_role::Column::RoleId.eq(owner_role)).one(db).await?;
    if any_owner.is_none() {
        return Err(AppError::bad_input("roleIds", "an account must keep at least one user with the Owner role"));
    }
    Ok(())
}

/// Adds a user with a generated one-time password, returned once.
pub async fn add(store: &Store, ctx: &Ctx<'_>, email: &str, role_ids: &[String]) -> AppResult<(UserView, Password)> {
    let email = Email::parse(email).map_err(|e| e.at("input.email"))?;
    let account_id = &ctx.principal.account_id;
    let granted = roles::by_ids(store.db(), account_id, role_ids, "input.roleIds").await?;
    roles::ensure_can_change_roles(&ctx.principal.resources, &[], &granted)?;
    let password = Password::generate();
    let hash = passwords::hash(store, password.clone()).await?;
    let txn = store.begin_account_write(account_id).await?;
    let clash = user::Entity::find()
        .filter(user::Column::AccountId.eq(account_id.as_str()))
        .filter(user::Column::Email.eq(email.as_str()))
        .one(&*txn)
        .await?;
    if clash.is_some() {
        return Err(AppError::Conflict(format!("user {email} already exists in this account")));
    }
    // Re-read inside the transaction: a role may have been deleted since validation.
    let granted = roles::by_ids(&*txn, account_id, role_ids, "input.roleIds").await?;
    let ids: Vec<String> = granted.iter().map(|r| r.id.clone()).collect();
    let model = insert(&*txn, account_id, &email, hash, &ids, txn.now()).await?;
    let view = with_roles(&*txn, vec![model]).await?.remove(0);
    let after = json!({ "email": view.email, "roles": view.role_names() });
    ctx.audit(&txn, "user.add", &view.email, None, Some(after)).await?;
    txn.commit().await?;
    Ok((view, password))
}

pub async fn set_roles(store: &Store, ctx: &Ctx<'_>, user_id: &str, role_ids: &[String]) -> AppResult<UserView> {
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let before = get_in(&*txn, account_id, user_id).await?;
    let wanted = roles::by_ids(&*txn, account_id, role_ids, "roleIds").await?;
    roles::ensure_can_change_roles(&ctx.principal.resources, &before.roles, &wanted)?;
    let ids: Vec<String> = wanted.iter().map(|r| r.id.clone()).collect();
    link_roles(&*txn, user_id, &ids).await?;
    ensure_an_owner_remains(&*txn, account_id).await?;
    let after = get_in(&*txn, account_id, user_id).await?;
    let states = (json!({ "roles": before.role_names() }), json!({ "roles": after.role_names() }));
    ctx.audit(&txn, "user.set_roles", &after.email, Some(states.0), Some(states.1)).await?;
    txn.commit().await?;
    Ok(after)
}

pub async fn remove(store: &Store, ctx: &Ctx<'_>, user_id: &str) -> AppResult<()> {
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let before = get_in(&*txn, account_id, user_id).await?;
    roles::ensure_can_change_roles(&ctx.principal.resources, &before.roles, &[])?;
    user::Entity::delete_by_id(user_id).exec(&*txn).await?;
    ensure_an_owner_remains(&*txn, account_id).await?;
    let state = json!({ "email": before.email, "roles": before.role_names() });
    ctx.audit(&txn, "user.remove", &before.email, Some(state), None).await?;
    txn.commit().await?;
    Ok(())
}
