//! Accounts (tenants): creation with predefined roles and an owner, and the first-run bootstrap.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use secrecy::ExposeSecret;
use serde_json::json;

use crate::config::Settings;
use crate::domain::{AccountName, Email, Password};
use crate::entity::{account, audit_event, session, user};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::RequestMeta;
use crate::service::events::audit::{self, AuditEntry};
use crate::service::identity::passwords;
use crate::service::identity::roles;
use crate::service::identity::users;
use crate::service::store::new_id;
use crate::service::store::Store;

/// A newly created account and its owner. `generated_password` is set only when appkeys chose the
/// password, so it can be shown once.
#[derive(Debug)]
pub struct CreatedAccount {
    pub account: String,
    pub email: String,
    pub generated_password: Option<Password>,
    /// The account existed already: its owner, who never logged in, got a new password.
    pub reissued: bool,
}

pub async fn find_by_name<C: ConnectionTrait>(db: &C, name: &str) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find().filter(account::Column::Name.eq(name)).one(db).await?)
}

/// Creates an account, its predefined roles and its owner, in one transaction.
pub async fn create(
    store: &Store,
    name: &str,
    owner_email: &str,
    owner_password: Option<&str>,
) -> AppResult<CreatedAccount> {
    let name = AccountName::parse(name).map_err(|e| e.at("name"))?;
    let email = Email::parse(owner_email).map_err(|e| e.at("ownerEmail"))?;
    let (password, generated) = match owner_password {
        Some(raw) => (Password::parse(raw).map_err(|e| e.at("ownerPassword"))?, false),
        None => (Password::generate(), true),
    };
    let hash = passwords::hash(store, password.clone()).await?;
    let txn = store.begin_write().await?;
    if find_by_name(&*txn, name.as_str()).await?.is_some() {
        return Err(AppError::Conflict(format!("account {name} already exists")));
    }
    let now = txn.now();
    let account = account::ActiveModel { id: Set(new_id()), name: Set(name.to_string()), created_at: Set(now) }
        .insert(&*txn)
        .await?;
    let owner_role = roles::create_predefined(&*txn, &account.id, now).await?;
    let owner = users::insert(&*txn, &account.id, &email, hash, &[owner_role], now).await?;
    audit::record(
        &txn,
        &RequestMeta::default(),
        AuditEntry {
            account_id: &account.id,
            actor: "system",
            action: "account.create",
            target: &account.name,
            before: None,
            // Whether appkeys chose the owner's password: only such a password, never shown to
            // anyone who then logged in, is replaced at the next start (see `bootstrap`).
            after: Some(json!({ "account": account.name, "owner": owner.email, "passwordGenerated": generated })),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(CreatedAccount {
        account: account.name,
        email: owner.email,
        generated_password: generated.then_some(password),
        reissued: false,
    })
}

/// On an empty database, creates the bootstrap account and its owner. Otherwise, while that owner
/// has never logged in and their password is one appkeys chose (not one the operator gave), gives
/// them a fresh one to print: a first start that failed (or whose output was lost) after creating
/// the owner never locks the operator out. Once the owner has logged in, it does nothing.
pub async fn bootstrap(store: &Store, settings: &Settings) -> AppResult<Option<CreatedAccount>> {
    let chosen = settings.bootstrap_password.as_ref().map(|p| p.expose_secret().to_owned());
    if account::Entity::find().count(store.db()).await? == 0 {
        return create(store, &settings.bootstrap_account, &settings.bootstrap_email, chosen.as_deref())
            .await
            .map(Some);
    }
    if chosen.is_some() {
        return Ok(None);
    }
    let Some(account) = find_by_name(store.db(), &settings.bootstrap_account).await? else {
        return Ok(None);
    };
    let Some(owner) = user::Entity::find()
        .filter(user::Column::AccountId.eq(account.id.as_str()))
        .order_by_asc(user::Column::Id)
        .one(store.db())
        .await?
    else {
        return Ok(None);
    };
    if session::Entity::find().filter(session::Column::UserId.eq(owner.id.as_str())).count(store.db()).await? > 0 {
        return Ok(None);
    }
    let created = audit_event::Entity::find()
        .filter(audit_event::Column::AccountId.eq(account.id.as_str()))
        .filter(audit_event::Column::Action.eq("account.create"))
        .one(store.db())
        .await?;
    let generated = created
        .and_then(|event| event.after)
        .and_then(|after| serde_json::from_str::<serde_json::Value>(&after).ok())
        .is_some_and(|after| after["passwordGenerated"] == true);
    if !generated {
        return Ok(None);
    }
    let password = Password::generate();
    let hash = passwords::hash(store, password.clone()).await?;
    let txn = store.begin_write().await?;
    let mut active: user::ActiveModel = owner.into();
    active.password_hash = Set(hash);
    let owner = active.update(&*txn).await?;
    let entry = AuditEntry {
        account_id: &account.id,
        actor: "system",
        action: "user.bootstrap_password",
        target: &owner.email,
        before: None,
        after: None,
    };
    audit::record(&txn, &RequestMeta::default(), entry).await?;
    txn.commit().await?;
    Ok(Some(CreatedAccount {
        account: account.name,
        email: owner.email,
        generated_password: Some(password),
        reissued: true,
    }))
}
