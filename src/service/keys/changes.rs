//! Every change to a key: generate, add external, roles, activate and deactivate. Each validates
//! first and writes in one account-write transaction with its audit event.
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};
use std::collections::BTreeSet;

use super::{
    expiry_for, find_access, find_key, holds_leaked_token, locate, AppKeyView, DeactivationReason, Located, Viewpoint,
};
use crate::domain::{AccountName, AppKeyValue, AppToken, KeyLabel, KeyPrefix};
use crate::entity::{app_key, key_access, key_access_role};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::identity::roles::{self, RoleView};
use crate::service::store::links;
use crate::service::store::new_id;
use crate::service::store::Store;

async fn replace_roles<C: ConnectionTrait>(db: &C, access_id: &str, role_ids: &[String]) -> AppResult<()> {
    let rows = role_ids
        .iter()
        .map(|role_id| key_access_role::ActiveModel {
            key_access_id: Set(access_id.to_owned()),
            role_id: Set(role_id.clone()),
        })
        .collect();
    links::replace(db, key_access_role::Column::KeyAccessId, access_id, rows).await
}

fn role_ids(roles: &[RoleView]) -> Vec<String> {
    roles.iter().map(|r| r.id.clone()).collect()
}

/// A generated key and its token, revealed this once.
pub struct GeneratedKey {
    pub key: AppKeyView,
    pub token: AppToken,
}

/// What `generateAppKey` asks for.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub label: Option<String>,
    pub role_ids: Vec<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The key's policy in its own account (`None`: the empty policy).
    pub policy: Option<crate::domain::PolicyInput>,
}

pub async fn generate(store: &Store, ctx: &Ctx<'_>, prefix: &KeyPrefix, new: &NewKey) -> AppResult<GeneratedKey> {
    let label = KeyLabel::parse(new.label.as_deref()).map_err(|e| e.at("input.label"))?;
    let (policy, credits) = match &new.policy {
        Some(input) => super::policy::parse(input, "input.policy")?,
        None => Default::default(),
    };
    let role_ids_raw = &new.role_ids;
    let account_id = &ctx.principal.account_id;
    let account = AccountName::parse(&ctx.principal.account_name)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("the account's own name is invalid: {e}")))?;
    let token = AppToken::generate();
    let txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let granted = roles::by_ids(&*txn, account_id, role_ids_raw, "input.roleIds").await?;
    roles::ensure_can_change_roles(&ctx.principal.resources, &[], &granted)?;
    let mut value = AppKeyValue::generate(prefix, &account);
    let mut attempts = 1;
    while find_key(&*txn, &value).await?.is_some() {
        if attempts == 10 {
            return Err(AppError::Internal(anyhow::anyhow!("no free key value after 10 attempts")));
        }
        attempts += 1;
        value = AppKeyValue::generate(prefix, &account);
    }
    let actor = ctx.principal.actor();
    let now = txn.now();
    let expires_at = expiry_for(new.expires_at, None, now, at.settings.max_lifetime_days, "input.expiresAt")?;
    let label_text = label.map_or_else(|| value.to_string(), KeyLabel::into_inner);
    let key = app_key::ActiveModel {
        id: Set(new_id()),
        key: Set(value.to_string()),
        account_id: Set(account_id.clone()),
        label_search: Set(label_text.to_lowercase()),
        label: Set(label_text),
        token_digest: Set(token.digest().as_str().to_owned()),
        active: Set(true),
        created_at: Set(now),
        created_by: Set(actor.clone()),
        token_created_at: Set(now),
        previous_token_digest: Set(None),
        previous_token_created_at: Set(None),
        previous_token_expires_at: Set(None),
        renewal_started_at: Set(None),
        expires_at: Set(expires_at),
        updated_at: Set(now),
        expiring_announced_for: Set(None),
        expired_announced_for: Set(None),
        renewal_due_announced_for: Set(None),
        deactivation_reason: Set(None),
        leaked_at: Set(None),
        leak_url: Set(None),
        leak_source: Set(None),
    }
    .insert(&*txn)
    .await?;
    let mut access = key_access::ActiveModel {
        id: Set(new_id()),
        app_key_id: Set(key.id.clone()),
        account_id: Set(account_id.clone()),
        external: Set(false),
        removed: Set(false),
        added_at: Set(now),
        added_by: Set(actor),
        updated_at: Set(now),
        last_used_at: Set(None),
        last_used_ip: Set(None),
        last_used_user_agent: Set(None),
        ..Default::default()
    };
    super::policy::apply(&mut access, &policy, credits, now);
    let access = access.insert(&*txn).await?;
    replace_roles(&*txn, &access.id, &role_ids(&granted)).await?;
    let view = Located { key, access }.view(&*txn, &at).await?;
    ctx.audit(&txn, "key.generate", &view.key, None, Some(view.audit_state())).await?;
    txn.commit().await?;
    Ok(GeneratedKey { key: view, token })
}

pub async fn add_external(
    store: &Store,
    ctx: &Ctx<'_>,
    raw_key: &str,
    role_ids_raw: &[String],
) -> AppResult<AppKeyView> {
    let value = AppKeyValue::parse(raw_key).map_err(|e| e.at("input.key"))?;
    if role_ids_raw.is_empty() {
        return Err(AppError::bad_input("input.roleIds", "an external key needs at least one role"));
    }
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let granted = roles::by_ids(&*txn, account_id, role_ids_raw, "input.roleIds").await?;
    roles::ensure_can_change_roles(&ctx.principal.resources, &[], &granted)?;
    let key =
        find_key(&*txn, &value).await?.ok_or_else(|| AppError::NotFound(format!("no application key {raw_key:?}")))?;
    if &key.account_id == account_id {
        return Err(AppError::bad_input(
            "input.key",
            format!("{} is this account's own key; manage it on My Keys instead of adding it as external", key.key),
        ));
    }
    let actor = ctx.principal.actor();
    let existing = find_access(&*txn, &key.id, account_id).await?;
    let (action, before, access) = match existing {
        Some(access) if !access.removed => {
            let before = Located { key: key.clone(), access: access.clone() }.view(&*txn, &at).await?;
            if !before.roles.is_empty() {
                return Err(AppError::Conflict(format!(
                    "{} already has access to this account; change its roles instead",
                    key.key
                )));
            }
            ("key.add_external", Some(before), access)
        }
        Some(access) => {
            let before = Located { key: key.clone(), access: access.clone() }.view(&*txn, &at).await?;
            let mut active: key_access::ActiveModel = access.into();
            active.removed = Set(false);
            active.added_at = Set(txn.now());
            active.added_by = Set(actor);
            active.updated_at = Set(txn.now());
            ("key.readd_external", Some(before), active.update(&*txn).await?)
        }
        None => {
            let access = key_access::ActiveModel {
                id: Set(new_id()),
                app_key_id: Set(key.id.clone()),
                account_id: Set(account_id.clone()),
                external: Set(true),
                removed: Set(false),
                added_at: Set(txn.now()),
                added_by: Set(actor),
                updated_at: Set(txn.now()),
                last_used_at: Set(None),
                last_used_ip: Set(None),
                last_used_user_agent: Set(None),
                policy: Set(None),
                credits_remaining: Set(None),
                credits_reset_at: Set(None),
                credits_low_announced_for: Set(None),
                credits_exhausted_announced_for: Set(None),
            }
            .insert(&*txn)
            .await?;
            ("key.add_external", None, access)
        }
    };
    replace_roles(&*txn, &access.id, &role_ids(&granted)).await?;
    let view = Located { key, access }.view(&*txn, &at).await?;
    ctx.audit(&txn, action, &view.key, before.map(|b| b.audit_state()), Some(view.audit_state())).await?;
    txn.commit().await?;
    Ok(view)
}

/// How a roles mutation combines the given roles with the current ones.
#[derive(Debug, Clone, Copy)]
pub enum RolesChange {
    Set,
    Add,
    Remove,
}

pub async fn change_roles(
    store: &Store,
    ctx: &Ctx<'_>,
    raw_key: &str,
    change: RolesChange,
    role_ids_raw: &[String],
) -> AppResult<AppKeyView> {
    if role_ids_raw.is_empty() && !matches!(change, RolesChange::Set) {
        return Err(AppError::bad_input("roleIds", "give at least one role to add or remove"));
    }
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let given = roles::by_ids(&*txn, account_id, role_ids_raw, "roleIds").await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if located.access.removed {
        return Err(AppError::RemovedExternalKey);
    }
    let before = located.clone().view(&*txn, &at).await?;
    let given_ids: BTreeSet<&str> = given.iter().map(|r| r.id.as_str()).collect();
    let wanted: Vec<RoleView> = match change {
        RolesChange::Set => given.clone(),
        RolesChange::Add => {
            let kept = before.roles.iter().filter(|r| !given_ids.contains(r.id.as_str()));
            kept.chain(given.iter()).cloned().collect()
        }
        RolesChange::Remove => before.roles.iter().filter(|r| !given_ids.contains(r.id.as_str())).cloned().collect(),
    };
    roles::ensure_can_change_roles(&ctx.principal.resources, &before.roles, &wanted)?;
    let unchanged: BTreeSet<&str> = before.roles.iter().map(|r| r.id.as_str()).collect();
    if unchanged == wanted.iter().map(|r| r.id.as_str()).collect::<BTreeSet<_>>() {
        // Nothing changes: nothing is written, nothing audited.
        return Ok(before);
    }
    replace_roles(&*txn, &located.access.id, &role_ids(&wanted)).await?;
    let Located { key, access } = located;
    let mut touched: key_access::ActiveModel = access.into();
    touched.updated_at = Set(txn.now());
    let after = Located { key, access: touched.update(&*txn).await? }.view(&*txn, &at).await?;
    let action = match change {
        RolesChange::Set => "key.set_roles",
        RolesChange::Add => "key.add_roles",
        RolesChange::Remove => "key.remove_roles",
    };
    ctx.audit(&txn, action, &after.key, Some(before.audit_state()), Some(after.audit_state())).await?;
    txn.commit().await?;
    Ok(after)
}

/// Internal key: deactivated everywhere, roles kept. External key: removed from this account, its
/// roles here cleared. Revoking is always allowed to a key manager: a compromised key must be cut off.
pub async fn deactivate(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    let account_id = &ctx.principal.account_id;
    let mut txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    let before = located.clone().view(&*txn, &at).await?;
    let internal = located.internal();
    if internal {
        txn.affects_key(&located.key.id);
    }
    if (internal && !located.key.active) || (!internal && located.access.removed) {
        return Ok(before); // already off here: nothing to write or audit
    }
    let Located { key, access } = located;
    let (action, after) = if internal {
        let mut active: app_key::ActiveModel = key.into();
        active.active = Set(false);
        active.deactivation_reason = Set(Some(DeactivationReason::Manual.as_str().to_owned()));
        active.updated_at = Set(txn.now());
        ("key.deactivate", Located { key: active.update(&*txn).await?, access })
    } else {
        replace_roles(&*txn, &access.id, &[]).await?;
        let mut active: key_access::ActiveModel = access.into();
        active.removed = Set(true);
        active.updated_at = Set(txn.now());
        ("key.remove_external", Located { key, access: active.update(&*txn).await? })
    };
    let after = after.view(&*txn, &at).await?;
    ctx.audit(&txn, action, &after.key, Some(before.audit_state()), Some(after.audit_state())).await?;
    txn.commit().await?;
    Ok(after)
}

/// Internal key: active again, with the roles it kept (so the caller must be able to grant them).
/// A removed external key cannot be activated: it must be added again.
pub async fn activate(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    let account_id = &ctx.principal.account_id;
    let mut txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if located.access.removed {
        return Err(AppError::RemovedExternalKey);
    }
    let before = located.clone().view(&*txn, &at).await?;
    if !located.internal() {
        // Not removed here: nothing for this account to switch on (only the owner can reactivate it).
        return Ok(before);
    }
    if located.key.active {
        return Ok(before); // already on: nothing to write or audit
    }
    if holds_leaked_token(&located.key) {
        return Err(AppError::Conflict(format!(
            "{}'s token was reported leaked; renew its token first (renewAppKeyToken), then activate it",
            located.key.key
        )));
    }
    txn.affects_key(&located.key.id);
    roles::ensure_can_change_roles(&ctx.principal.resources, &[], &before.roles)?;
    let Located { key, access } = located;
    let mut active: app_key::ActiveModel = key.into();
    active.active = Set(true);
    active.deactivation_reason = Set(None);
    active.updated_at = Set(txn.now());
    let after = Located { key: active.update(&*txn).await?, access }.view(&*txn, &at).await?;
    ctx.audit(&txn, "key.activate", &after.key, Some(before.audit_state()), Some(after.audit_state())).await?;
    txn.commit().await?;
    Ok(after)
}

/// Deletes an internal key: irreversible, it stops at once everywhere and leaves every listing of
/// every account (its access rows go with it). The audit log keeps its history. Like deactivating,
/// deleting is never blocked by the key's roles.
pub async fn delete(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<()> {
    let account_id = &ctx.principal.account_id;
    let mut txn = store.begin_account_write(account_id).await?;
    let at = Viewpoint::of(&*txn, account_id, txn.now()).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if !located.internal() {
        return Err(AppError::bad_input(
            "key",
            format!(
                "{} is another account's key; only its owner can delete it (deactivate it to remove it from this account)",
                located.key.key
            ),
        ));
    }
    let before = located.clone().view(&*txn, &at).await?;
    txn.affects_key(&located.key.id);
    app_key::Entity::delete_by_id(located.key.id.as_str()).exec(&*txn).await?;
    ctx.audit(&txn, "key.delete", &before.key, Some(before.audit_state()), None).await?;
    txn.commit().await?;
    Ok(())
}
