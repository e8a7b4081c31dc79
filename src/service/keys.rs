//! Application keys (SPEC §5): generate, add external, roles, activate/deactivate, the two listings,
//! lookup, and authentication of a key for an account (SPEC §3).
//!
//! A key is owned by one account (`app_keys`); each account it may act on has one `key_access` row
//! (internal for the owner, external elsewhere) holding its roles there. Effective status in an
//! account: active at the owner and, for an external key, not removed there.
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, JoinType, QueryFilter,
    QuerySelect, RelationTrait, Select, Set,
};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

use super::audit::{self, AuditEntry};
use super::page::{self, PageRequest, Paged};
use super::roles::{self, RoleView};
use super::{accounts, new_id, now, query_text, Ctx, Store};
use crate::auth::{Principal, PrincipalKind};
use crate::domain::{AccountName, AppKeyValue, AppToken, KeyLabel, KeyPrefix};
use crate::entity::{account, app_key, key_access, key_access_role, role};
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Internal,
    External,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Inactive,
}

/// A key as seen from one account.
#[derive(Debug, Clone)]
pub struct AppKeyView {
    pub id: String,
    pub key: String,
    pub key_type: KeyType,
    /// The managing (owner) account's name.
    pub account: String,
    /// Only for the account's own keys: another account's label is never shown.
    pub label: Option<String>,
    pub status: KeyStatus,
    pub roles: Vec<RoleView>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub has_access: bool,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub search: Option<String>,
    pub status: Option<KeyStatus>,
    pub key_type: Option<KeyType>,
}

/// Builds views of keys as seen from `account_id`, loading owners' names and roles in bulk.
async fn views<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    keys: Vec<app_key::Model>,
    accesses: Vec<key_access::Model>,
) -> AppResult<Vec<AppKeyView>> {
    let owner_ids: BTreeSet<&str> = keys.iter().map(|k| k.account_id.as_str()).collect();
    let owners: HashMap<String, String> = if owner_ids.is_empty() {
        HashMap::new()
    } else {
        account::Entity::find()
            .filter(account::Column::Id.is_in(owner_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect()
    };
    let roles_by_access = roles_of_accesses(db, &accesses).await?;
    let access_by_key: HashMap<&str, &key_access::Model> =
        accesses.iter().map(|a| (a.app_key_id.as_str(), a)).collect();
    Ok(keys
        .into_iter()
        .map(|k| {
            let access = access_by_key.get(k.id.as_str()).copied();
            let internal = k.account_id == account_id;
            let removed = access.is_none_or(|a| a.removed);
            let active = k.active && !removed;
            let roles = access.and_then(|a| roles_by_access.get(&a.id)).cloned().unwrap_or_default();
            AppKeyView {
                id: k.id,
                account: owners.get(&k.account_id).cloned().unwrap_or_default(),
                label: internal.then_some(k.label),
                key: k.key,
                key_type: if internal { KeyType::Internal } else { KeyType::External },
                status: if active { KeyStatus::Active } else { KeyStatus::Inactive },
                has_access: active && !roles.is_empty(),
                roles,
                created_at: k.created_at,
            }
        })
        .collect())
}

async fn roles_of_accesses<C: ConnectionTrait>(
    db: &C,
    accesses: &[key_access::Model],
) -> AppResult<HashMap<String, Vec<RoleView>>> {
    let ids: Vec<&str> = accesses.iter().map(|a| a.id.as_str()).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let links = key_access_role::Entity::find().filter(key_access_role::Column::KeyAccessId.is_in(ids)).all(db).await?;
    let role_ids: BTreeSet<&str> = links.iter().map(|l| l.role_id.as_str()).collect();
    let rows = if role_ids.is_empty() {
        Vec::new()
    } else {
        role::Entity::find().filter(role::Column::Id.is_in(role_ids)).all(db).await?
    };
    let by_id: HashMap<String, RoleView> =
        roles::views(db, rows).await?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut out: HashMap<String, Vec<RoleView>> = HashMap::new();
    for link in links {
        if let Some(view) = by_id.get(&link.role_id) {
            out.entry(link.key_access_id).or_default().push(view.clone());
        }
    }
    for roles in out.values_mut() {
        roles.sort_by(|a, b| (!a.predefined, &a.name).cmp(&(!b.predefined, &b.name)));
    }
    Ok(out)
}

fn like_pattern(search: &str) -> LikeExpr {
    let escaped: String = search
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// Case-insensitive substring of the key value (ASCII by construction, so `lower()` is the same on
/// every backend) or of the label (through `label_search`, lower-cased by appkeys itself).
fn key_contains(search: &str) -> Expr {
    Expr::expr(Func::lower(Expr::col((app_key::Entity, app_key::Column::Key)))).like(like_pattern(search))
}

fn label_contains(search: &str) -> Expr {
    Expr::col((app_key::Entity, app_key::Column::LabelSearch)).like(like_pattern(search))
}

fn status_condition(status: KeyStatus) -> Condition {
    let live = Condition::all()
        .add(app_key::Column::Active.eq(true))
        .add(Expr::col((key_access::Entity, key_access::Column::Removed)).eq(false));
    match status {
        KeyStatus::Active => live,
        KeyStatus::Inactive => live.not(),
    }
}

/// The "Application Keys" page: every internal and external key holding roles in this account.
pub async fn list_with_access(
    db: &DatabaseConnection,
    account_id: &str,
    filter: &KeyFilter,
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let mut paged =
        page::fetch(db, access_select(account_id, filter)?, key_access::Column::Id, page, |m| m.id.as_str()).await?;
    let key_ids: Vec<&str> = paged.items.iter().map(|a| a.app_key_id.as_str()).collect();
    let mut keys: HashMap<String, app_key::Model> = if key_ids.is_empty() {
        HashMap::new()
    } else {
        app_key::Entity::find()
            .filter(app_key::Column::Id.is_in(key_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|k| (k.id.clone(), k))
            .collect()
    };
    let ordered: Vec<app_key::Model> = paged.items.iter().filter_map(|a| keys.remove(&a.app_key_id)).collect();
    let accesses = std::mem::take(&mut paged.items);
    let items = views(db, account_id, ordered, accesses).await?;
    Ok(paged.with_items(items))
}

/// The access holds at least one role: a correlated EXISTS, answered from the primary key's index.
pub(crate) fn has_roles() -> Expr {
    Expr::exists(
        Query::select()
            .expr(Expr::val(1))
            .from(key_access_role::Entity)
            .and_where(
                Expr::col((key_access_role::Entity, key_access_role::Column::KeyAccessId))
                    .equals((key_access::Entity, key_access::Column::Id)),
            )
            .to_owned(),
    )
}

fn access_select(account_id: &str, filter: &KeyFilter) -> AppResult<Select<key_access::Entity>> {
    let mut select = key_access::Entity::find()
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .filter(key_access::Column::AccountId.eq(account_id))
        .filter(has_roles());
    if let Some(key_type) = filter.key_type {
        select = select.filter(key_access::Column::External.eq(key_type == KeyType::External));
    }
    if let Some(status) = filter.status {
        select = select.filter(status_condition(status));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search)?;
        // Another account's label is never shown, so it is never searched either.
        select = select.filter(
            Condition::any()
                .add(key_contains(search))
                .add(Condition::all().add(key_access::Column::External.eq(false)).add(label_contains(search))),
        );
    }
    Ok(select)
}

/// The "My Keys" page: every internal key, with or without roles.
pub async fn list_internal(
    db: &DatabaseConnection,
    account_id: &str,
    filter: &KeyFilter,
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let mut select = app_key::Entity::find().filter(app_key::Column::AccountId.eq(account_id));
    if filter.key_type == Some(KeyType::External) {
        select = select.filter(Expr::val(1).eq(0));
    }
    if let Some(status) = filter.status {
        select = select.filter(app_key::Column::Active.eq(status == KeyStatus::Active));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search)?;
        select = select.filter(Condition::any().add(key_contains(search)).add(label_contains(search)));
    }
    let mut paged = page::fetch(db, select, app_key::Column::Id, page, |m| m.id.as_str()).await?;
    let key_ids: Vec<&str> = paged.items.iter().map(|k| k.id.as_str()).collect();
    let accesses = if key_ids.is_empty() {
        Vec::new()
    } else {
        key_access::Entity::find()
            .filter(key_access::Column::AccountId.eq(account_id))
            .filter(key_access::Column::AppKeyId.is_in(key_ids))
            .all(db)
            .await?
    };
    let keys = std::mem::take(&mut paged.items);
    let items = views(db, account_id, keys, accesses).await?;
    Ok(paged.with_items(items))
}

/// A key and its access in this account, as a mutation needs them.
struct Located {
    key: app_key::Model,
    access: key_access::Model,
}

impl Located {
    fn internal(&self) -> bool {
        !self.access.external
    }
}

async fn find_key<C: ConnectionTrait>(db: &C, key: &AppKeyValue) -> AppResult<Option<app_key::Model>> {
    Ok(app_key::Entity::find().filter(app_key::Column::Key.eq(key.as_str())).one(db).await?)
}

async fn find_access<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
    account_id: &str,
) -> AppResult<Option<key_access::Model>> {
    Ok(key_access::Entity::find()
        .filter(key_access::Column::AppKeyId.eq(key_id))
        .filter(key_access::Column::AccountId.eq(account_id))
        .one(db)
        .await?)
}

/// The key as known to this account: its own key, or an external key it has added (even if removed).
async fn locate<C: ConnectionTrait>(db: &C, account_id: &str, raw_key: &str) -> AppResult<Located> {
    let not_found = || AppError::NotFound(format!("no application key {raw_key:?} in this account"));
    let value = AppKeyValue::parse(raw_key)?;
    let key = find_key(db, &value).await?.ok_or_else(not_found)?;
    let access = find_access(db, &key.id, account_id).await?.ok_or_else(not_found)?;
    Ok(Located { key, access })
}

async fn view_of<C: ConnectionTrait>(db: &C, account_id: &str, located: Located) -> AppResult<AppKeyView> {
    Ok(views(db, account_id, vec![located.key], vec![located.access]).await?.remove(0))
}

/// `appKey(key)`: the key as this account sees it, or `None` when this account has never known it.
pub async fn get<C: ConnectionTrait>(db: &C, account_id: &str, raw_key: &str) -> AppResult<Option<AppKeyView>> {
    match locate(db, account_id, raw_key).await {
        Ok(located) => Ok(Some(view_of(db, account_id, located).await?)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

async fn replace_roles<C: ConnectionTrait>(db: &C, access_id: &str, role_ids: &[String]) -> AppResult<()> {
    key_access_role::Entity::delete_many().filter(key_access_role::Column::KeyAccessId.eq(access_id)).exec(db).await?;
    if !role_ids.is_empty() {
        key_access_role::Entity::insert_many(role_ids.iter().map(|role_id| key_access_role::ActiveModel {
            key_access_id: Set(access_id.to_owned()),
            role_id: Set(role_id.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

fn role_ids(roles: &[RoleView]) -> Vec<String> {
    roles.iter().map(|r| r.id.clone()).collect()
}

fn state_json(view: &AppKeyView) -> serde_json::Value {
    let status = match view.status {
        KeyStatus::Active => "ACTIVE",
        KeyStatus::Inactive => "INACTIVE",
    };
    json!({ "status": status, "roles": role_ids(&view.roles) })
}

async fn audit_key<C: ConnectionTrait>(
    db: &C,
    ctx: &Ctx<'_>,
    action: &'static str,
    key: &str,
    before: Option<&AppKeyView>,
    after: Option<&AppKeyView>,
) -> AppResult<()> {
    audit::record(
        db,
        ctx.meta,
        AuditEntry {
            account_id: &ctx.principal.account_id,
            actor: &ctx.principal.actor(),
            action,
            target: key,
            before: before.map(state_json),
            after: after.map(state_json),
        },
    )
    .await
}

/// A generated key and its token, revealed this once.
pub struct GeneratedKey {
    pub key: AppKeyView,
    pub token: AppToken,
}

pub async fn generate(
    store: &Store,
    ctx: &Ctx<'_>,
    prefix: &KeyPrefix,
    label: Option<&str>,
    role_ids_raw: &[String],
) -> AppResult<GeneratedKey> {
    let label = KeyLabel::parse(label)?;
    let account_id = &ctx.principal.account_id;
    let account = AccountName::parse(&ctx.principal.account_name)?;
    let token = AppToken::generate();
    let txn = store.begin_account_write(account_id).await?;
    let granted = roles::by_ids(&*txn, account_id, role_ids_raw).await?;
    roles::ensure_can_grant(&ctx.principal.resources, &granted)?;
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
    let label_text = label.map_or_else(|| value.to_string(), KeyLabel::into_inner);
    let key = app_key::ActiveModel {
        id: Set(new_id()),
        key: Set(value.to_string()),
        account_id: Set(account_id.clone()),
        label_search: Set(label_text.to_lowercase()),
        label: Set(label_text),
        token_digest: Set(token.digest().as_str().to_owned()),
        active: Set(true),
        created_at: Set(now()),
        created_by: Set(actor.clone()),
    }
    .insert(&*txn)
    .await?;
    let access = key_access::ActiveModel {
        id: Set(new_id()),
        app_key_id: Set(key.id.clone()),
        account_id: Set(account_id.clone()),
        external: Set(false),
        removed: Set(false),
        added_at: Set(now()),
        added_by: Set(actor),
    }
    .insert(&*txn)
    .await?;
    replace_roles(&*txn, &access.id, &role_ids(&granted)).await?;
    let view = view_of(&*txn, account_id, Located { key, access }).await?;
    audit_key(&*txn, ctx, "key.generate", &view.key, None, Some(&view)).await?;
    txn.commit().await?;
    Ok(GeneratedKey { key: view, token })
}

pub async fn add_external(
    store: &Store,
    ctx: &Ctx<'_>,
    raw_key: &str,
    role_ids_raw: &[String],
) -> AppResult<AppKeyView> {
    let value = AppKeyValue::parse(raw_key)?;
    if role_ids_raw.is_empty() {
        return Err(AppError::BadUserInput("an external key needs at least one role".into()));
    }
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let granted = roles::by_ids(&*txn, account_id, role_ids_raw).await?;
    roles::ensure_can_grant(&ctx.principal.resources, &granted)?;
    let key =
        find_key(&*txn, &value).await?.ok_or_else(|| AppError::NotFound(format!("no application key {raw_key:?}")))?;
    if &key.account_id == account_id {
        return Err(AppError::BadUserInput(format!(
            "{} is this account's own key; manage it on My Keys instead of adding it as external",
            key.key
        )));
    }
    let actor = ctx.principal.actor();
    let existing = find_access(&*txn, &key.id, account_id).await?;
    let (action, before, access) = match existing {
        Some(access) if !access.removed => {
            let before = view_of(&*txn, account_id, Located { key: key.clone(), access: access.clone() }).await?;
            if !before.roles.is_empty() {
                return Err(AppError::Conflict(format!(
                    "{} already has access to this account; change its roles instead",
                    key.key
                )));
            }
            ("key.add_external", Some(before), access)
        }
        Some(access) => {
            let before = view_of(&*txn, account_id, Located { key: key.clone(), access: access.clone() }).await?;
            let mut active: key_access::ActiveModel = access.into();
            active.removed = Set(false);
            active.added_at = Set(now());
            active.added_by = Set(actor);
            ("key.readd_external", Some(before), active.update(&*txn).await?)
        }
        None => {
            let access = key_access::ActiveModel {
                id: Set(new_id()),
                app_key_id: Set(key.id.clone()),
                account_id: Set(account_id.clone()),
                external: Set(true),
                removed: Set(false),
                added_at: Set(now()),
                added_by: Set(actor),
            }
            .insert(&*txn)
            .await?;
            ("key.add_external", None, access)
        }
    };
    replace_roles(&*txn, &access.id, &role_ids(&granted)).await?;
    let view = view_of(&*txn, account_id, Located { key, access }).await?;
    audit_key(&*txn, ctx, action, &view.key, before.as_ref(), Some(&view)).await?;
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
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let given = roles::by_ids(&*txn, account_id, role_ids_raw).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if located.access.removed {
        return Err(AppError::RemovedExternalKey);
    }
    let access = located.access.clone();
    let before = view_of(&*txn, account_id, located).await?;
    let current: BTreeSet<String> = role_ids(&before.roles).into_iter().collect();
    let given_ids: BTreeSet<String> = role_ids(&given).into_iter().collect();
    let wanted: BTreeSet<String> = match change {
        RolesChange::Set => given_ids,
        RolesChange::Add => current.union(&given_ids).cloned().collect(),
        RolesChange::Remove => current.difference(&given_ids).cloned().collect(),
    };
    // What is added and what is taken away must both be within the caller's own resources.
    let changed: Vec<RoleView> = given
        .iter()
        .chain(before.roles.iter())
        .filter(|r| current.contains(&r.id) != wanted.contains(&r.id))
        .cloned()
        .collect();
    roles::ensure_can_grant(&ctx.principal.resources, &changed)?;
    let wanted: Vec<String> = wanted.into_iter().collect();
    replace_roles(&*txn, &access.id, &wanted).await?;
    let key = app_key::Entity::find_by_id(access.app_key_id.as_str())
        .one(&*txn)
        .await?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("key vanished inside its transaction")))?;
    let after = view_of(&*txn, account_id, Located { key, access }).await?;
    let action = match change {
        RolesChange::Set => "key.set_roles",
        RolesChange::Add => "key.add_roles",
        RolesChange::Remove => "key.remove_roles",
    };
    audit_key(&*txn, ctx, action, &after.key, Some(&before), Some(&after)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Internal key: deactivated everywhere, roles kept. External key: removed from this account, its
/// roles here cleared. Revoking is always allowed to a key manager: a compromised key must be cut off.
pub async fn deactivate(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    let before =
        view_of(&*txn, account_id, Located { key: located.key.clone(), access: located.access.clone() }).await?;
    let (action, key, access) = if located.internal() {
        let mut active: app_key::ActiveModel = located.key.into();
        active.active = Set(false);
        ("key.deactivate", active.update(&*txn).await?, located.access)
    } else {
        replace_roles(&*txn, &located.access.id, &[]).await?;
        let mut active: key_access::ActiveModel = located.access.into();
        active.removed = Set(true);
        ("key.remove_external", located.key, active.update(&*txn).await?)
    };
    let after = view_of(&*txn, account_id, Located { key, access }).await?;
    audit_key(&*txn, ctx, action, &after.key, Some(&before), Some(&after)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Internal key: active again, with the roles it kept (so the caller must be able to grant them).
/// A removed external key cannot be activated: it must be added again.
pub async fn activate(store: &Store, ctx: &Ctx<'_>, raw_key: &str) -> AppResult<AppKeyView> {
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let located = locate(&*txn, account_id, raw_key).await?;
    if located.access.removed {
        return Err(AppError::RemovedExternalKey);
    }
    let before =
        view_of(&*txn, account_id, Located { key: located.key.clone(), access: located.access.clone() }).await?;
    if !located.internal() {
        // Not removed here: nothing for this account to switch on (only the owner can reactivate it).
        return Ok(before);
    }
    roles::ensure_can_grant(&ctx.principal.resources, &before.roles)?;
    let mut active: app_key::ActiveModel = located.key.into();
    active.active = Set(true);
    let key = active.update(&*txn).await?;
    let after = view_of(&*txn, account_id, Located { key, access: located.access }).await?;
    audit_key(&*txn, ctx, "key.activate", &after.key, Some(&before), Some(&after)).await?;
    txn.commit().await?;
    Ok(after)
}

/// Authenticates a key for an account (its own by default). `None` for every kind of failure.
pub async fn authenticate<C: ConnectionTrait>(
    db: &C,
    value: &AppKeyValue,
    token: &AppToken,
    account: Option<&AccountName>,
) -> AppResult<Option<Principal>> {
    let Some(key) = find_key(db, value).await? else {
        return Ok(None);
    };
    if !token.digest().matches(&key.token_digest) || !key.active {
        return Ok(None);
    }
    let target = match account {
        Some(name) => accounts::find_by_name(db, name.as_str()).await?,
        None => account::Entity::find_by_id(key.account_id.as_str()).one(db).await?,
    };
    let Some(target) = target else {
        return Ok(None);
    };
    let Some(access) = find_access(db, &key.id, &target.id).await? else {
        return Ok(None);
    };
    if access.removed {
        return Ok(None);
    }
    let roles = roles_of_accesses(db, std::slice::from_ref(&access)).await?.remove(&access.id).unwrap_or_default();
    if roles.is_empty() {
        return Ok(None);
    }
    Ok(Some(Principal {
        kind: PrincipalKind::AppKey { key_id: key.id, key: key.key },
        account_id: target.id,
        account_name: target.name,
        resources: roles::union_resources(&roles),
    }))
}
