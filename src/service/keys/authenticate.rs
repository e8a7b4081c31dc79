//! Whether a key and token may act on an account (ARCHITECTURE.md: "Reading"). The
//! answer is a plain `KeyGrant`; the `auth` layer turns it into a principal.
use sea_orm::EntityTrait;
use std::collections::BTreeSet;

use super::meter::Outcome;
use super::{effective_status, find_access, find_key, has_access, pending_renewal, roles_of_accesses, KeyStatus};
use crate::domain::{AccountName, AppKeyValue, AppToken};
use crate::entity::account;
use crate::error::AppResult;
use crate::service::identity::accounts;
use crate::service::identity::roles;
use crate::service::store::Store;

/// What a key may do in the account it authenticated for.
#[derive(Debug, Clone)]
pub struct KeyGrant {
    pub key_id: String,
    pub key: String,
    /// The key's access row in that account (where its last use is kept).
    pub access_id: String,
    pub account_id: String,
    pub account_name: String,
    pub resources: BTreeSet<String>,
    /// When this grant stops by itself (a previous token whose renewal overlap runs out), so a cache
    /// of it must not outlive it.
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The key's policy in that account; `None` for the empty policy (nothing to decide).
    pub policy: Option<std::sync::Arc<crate::domain::KeyPolicy>>,
}

/// Why a known key was refused, for its usage: the access row (key in account) it is counted
/// under, that account, and the outcome.
#[derive(Debug, Clone)]
pub struct Refused {
    pub access_id: String,
    pub account_id: String,
    pub outcome: Outcome,
}

/// Authenticates a key for an account (its own by default). `Err(None)` for an unknown key or
/// account, `Err(Some(refused))` for a known key refused: either way the caller answers one generic
/// refusal, so no client can tell which check failed; the server logs which one at debug (never
/// the token).
pub async fn authenticate(
    store: &Store,
    value: &AppKeyValue,
    token: &AppToken,
    account: Option<&AccountName>,
) -> AppResult<Result<KeyGrant, Option<Refused>>> {
    let db = store.db();
    let now = store.now();
    let refused = |cause: &'static str, counted: Option<Refused>| {
        tracing::debug!(key = %value.as_str(), cause, "key authentication refused");
        Ok(Err(counted))
    };
    let Some(key) = find_key(db, value).await? else {
        return refused("no such key", None);
    };
    // The current token, or, while a renewal is pending, the previous one until its overlap ends.
    let valid_until = if token.digest().matches(&key.token_digest) {
        None
    } else {
        match (pending_renewal(&key, now), key.previous_token_digest.as_deref()) {
            (Some(renewal), Some(previous)) if token.digest().matches(previous) => renewal.old_token_expires_at,
            _ => {
                // Someone holds the key but not its token: its owner learns of it, no one else.
                let own = find_access(db, &key.id, &key.account_id).await?;
                let counted = own.map(|access| Refused {
                    access_id: access.id,
                    account_id: key.account_id.clone(),
                    outcome: Outcome::InvalidToken,
                });
                return refused("wrong token", counted);
            }
        }
    };
    let target = match account {
        Some(name) => accounts::find_by_name(db, name.as_str()).await?,
        None => account::Entity::find_by_id(key.account_id.as_str()).one(db).await?,
    };
    let Some(target) = target else {
        return refused("no such account", None);
    };
    let Some(access) = find_access(db, &key.id, &target.id).await? else {
        return refused("no access to the account", None);
    };
    let roles =
        roles_of_accesses(db, std::slice::from_ref(&access), None).await?.remove(&access.id).unwrap_or_default();
    let status = effective_status(key.active, access.removed, key.expires_at, now);
    if !has_access(status, roles.len()) {
        let (cause, outcome) = if status == KeyStatus::Active {
            ("no role in the account", Outcome::Forbidden)
        } else {
            (status.cause(), Outcome::Disabled)
        };
        let counted = Refused { access_id: access.id, account_id: target.id, outcome };
        return refused(cause, Some(counted));
    }
    // Whichever ends first: the key's expiry or the previous token's overlap.
    let valid_until = match (valid_until, key.expires_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let policy = super::policy::stored_policy(access.policy.as_deref());
    Ok(Ok(KeyGrant {
        policy: (!policy.is_empty()).then(|| std::sync::Arc::new(policy)),
        key_id: key.id,
        key: key.key,
        access_id: access.id,
        account_id: target.id,
        account_name: target.name,
        resources: roles::union_resources(&roles),
        valid_until,
    }))
}
