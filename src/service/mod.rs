//! The business rules, over SeaORM, in rooms: `identity` (accounts, users, roles, sessions,
//! passwords), `keys` (a key's rules, listings, changes, renewal, last use, settings, export),
//! `events` (audit, the outbox, webhooks, the change feed) and `store` (the database and how it is
//! used: transactions, versions, paging, read paths). Services never see async-graphql, axum or
//! `auth`; entities and the connection never leave `service` (services return their own views).
//!
//! Every mutation validates first, then writes in one transaction from `Store::begin_write`, together
//! with its audit event, so a refused request leaves the database as it was.
pub mod events;
pub mod identity;
pub mod keys;
pub mod store;

use anyhow::Context as _;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::error::AppError;
pub use events::audit::{Ctx, RequestMeta};
use identity::accounts::CreatedAccount;
pub use store::Store;

/// Opens the store and installs what the rooms make from the settings (the password hasher's
/// bounded working memory).
pub async fn open(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(settings).await?;
    store.install(identity::passwords::Passwords::new(settings.max_concurrent_logins));
    Ok(store)
}

/// Runs pending migrations, seeds the resource catalogue, loads the key that seals webhook secrets
/// and, on an empty database, bootstraps the first account. On PostgreSQL this happens under an
/// advisory lock, so replicas starting together do it once, never twice and never half.
pub async fn prepare(store: &Store, settings: &Settings) -> anyhow::Result<Option<CreatedAccount>> {
    let lock = store.startup_lock(settings.database_url.expose_secret()).await?;
    let result = async {
        store.migrate(&lock).await?;
        identity::roles::seed_catalogue(store)
            .await
            .map_err(AppError::into_anyhow)
            .context("seeding the resource catalogue")?;
        events::webhooks::load_secret_box(store, settings.secrets_key.as_ref())
            .await
            .map_err(AppError::into_anyhow)
            .context("loading the key that protects webhook secrets")?;
        identity::accounts::bootstrap(store, settings)
            .await
            .map_err(AppError::into_anyhow)
            .context("bootstrapping the first account")
    }
    .await;
    lock.release().await?;
    result
}
