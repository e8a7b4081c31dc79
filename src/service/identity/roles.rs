//! Roles and the resource catalogue: predefined roles in every account, custom roles, and the
//! no-escalation rule for every grant.
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select, Set};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::domain::{PredefinedRole, Resource, ResourceId, ResourceName, RoleName};
use crate::entity::{resource, role, role_resource};
use crate::error::{AppError, AppResult};
use crate::service::events::audit::Ctx;
use crate::service::store::is_id;
use crate::service::store::links;
use crate::service::store::new_id;
use crate::service::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct RoleView {
    pub id: String,
    pub name: String,
    pub predefined: bool,
    /// Shared: a page of keys holding one role shows one list, not a copy per key.
    pub resources: Arc<[ResourceView]>,
}

/// Upserts the built-in resources from the `Resource` enum, the catalogue's source of truth.
pub async fn seed_catalogue(store: &Store) -> AppResult<()> {
    let now = store.now();
    let rows = Resource::ALL.into_iter().map(|r| resource::ActiveModel {
        id: Set(r.id().to_owned()),
        name: Set(r.name().to_owned()),
        builtin: Set(true),
        created_at: Set(now),
    });
    resource::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(resource::Column::Id)
                .update_columns([resource::Column::Name, resource::Column::Builtin])
                .to_owned(),
        )
        .exec(store.db())
        .await?;
    Ok(())
}

/// Registers an operator resource (e.g. `Orders.Read`) so roles can hold it and `/auth` can require it.
pub async fn register_resource(store: &Store, id: &str, name: &str) -> AppResult<ResourceView> {
    let id = ResourceId::parse(id).map_err(|e| e.at("id"))?;
    let name = ResourceName::parse(name).map_err(|e| e.at("name"))?;
    let txn = store.begin_write().await?;
    if resource::Entity::find_by_id(id.as_str()).one(&*txn).await?.is_some() {
        return Err(AppError::Conflict(format!("resource {} already exists", id.as_str())));
    }
    let model = resource::ActiveModel {
        id: Set(id.as_str().to_owned()),
        name: Set(name.into_inner()),
        builtin: Set(false),
        created_at: Set(txn.now()),
    }
    .insert(&*txn)
    .await?;
    txn.commit().await?;
    forget_catalogue(store);
    Ok(ResourceView { id: model.id, name: model.name })
}

/// The catalogue as read at an instant.
type CachedCatalogue = (std::time::Instant, std::sync::Arc<Vec<ResourceView>>);

/// The roles room's part of the store: the catalogue as last read, and each account's roles with
/// the change sequence read before them.
struct RoleCaches {
    catalogue: std::sync::RwLock<Option<CachedCatalogue>>,
    facts: moka::sync::Cache<String, (u64, Arc<AccountRoles>)>,
}

impl Default for RoleCaches {
    fn default() -> Self {
        Self { catalogue: std::sync::RwLock::default(), facts: moka::sync::Cache::new(10_000) }
    }
}

/// How long the catalogue is served from memory. It changes only when an operator registers a
/// resource (which refreshes it on that replica at once); names are not what access is decided on.
const CATALOGUE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The catalogue, from memory when read less than `CATALOGUE_TTL` ago: `viewer` and `/auth`'s
/// checks then cost no database work.
pub async fn cached_catalogue(store: &Store) -> AppResult<std::sync::Arc<Vec<ResourceView>>> {
    let caches = store.part::<RoleCaches>();
    if let Ok(cached) = caches.catalogue.read() {
        if let Some((_, catalogue)) = cached
            .as_ref()
            .filter(|(read_at, _)| store.clock().instant().saturating_duration_since(*read_at) < CATALOGUE_TTL)
        {
            return Ok(catalogue.clone());
        }
    }
    let fresh = std::sync::Arc::new(catalogue_in(store.db()).await?);
    if let Ok(mut cached) = caches.catalogue.write() {
        *cached = Some((store.clock().instant(), fresh.clone()));
    }
    Ok(fresh)
}

fn forget_catalogue(store: &Store) {
    if let Ok(mut cached) = store.part::<RoleCaches>().catalogue.write() {
        *cached = None;
    }
}

/// The resource catalogue, read now.
pub async fn catalogue(store: &Store) -> AppResult<Vec<ResourceView>> {
    catalogue_in(store.db()).await
}

async fn catalogue_in<C: ConnectionTrait>(db: &C) -> AppResult<Vec<ResourceView>> {
    let rows = resource::Entity::find().order_by_asc(resource::Column::Id).all(db).await?;
    Ok(rows.into_iter().map(|r| ResourceView { id: r.id, name: r.name }).collect())
}

/// Creates the predefined roles of a new account; returns the Owner role's id.
pub async fn create_predefined<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<String> {
    let mut owner_id = String::new();
    for predefined in PredefinedRole::ALL {
        let id = new_id();
        if predefined == PredefinedRole::Owner {
            owner_id.clone_from(&id);
        }
        role::ActiveModel {
            id: Set(id),
            account_id: Set(account_id.to_owned()),
            name: Set(predefined.name().to_owned()),
            predefined: Set(true),
            created_at: Set(now),
        }
        .insert(db)
        .await?;
    }
    Ok(owner_id)
}

pub async fn owner_role_id<C: ConnectionTrait>(db: &C, account_id: &str) -> AppResult<String> {
    role::Entity::find()
        .filter(role::Column::AccountId.eq(account_id))
        .filter(role::Column::Predefined.eq(true))
        .filter(role::Column::Name.eq(PredefinedRole::Owner.name()))
        .one(db)
        .await?
        .map(|r| r.id)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("account {account_id} has no Owner role")))
}

/// How roles are shown everywhere: predefined first, then by name. The sort key, for lists built in
/// code; `in_display_order` is its SQL twin.
pub fn display_key(predefined: bool, name: &str) -> (bool, &str) {
    (!predefined, name)
}

pub fn sort_for_display(roles: &mut [RoleView]) {
    roles.sort_by(|a, b| display_key(a.predefined, &a.name).cmp(&display_key(b.predefined, &b.name)));
}

/// The SQL twin of `display_key`.
fn in_display_order(select: Select<role::Entity>) -> Select<role::Entity> {
    select.order_by_desc(role::Column::Predefined).order_by_asc(role::Column::Name).order_by_asc(role::Column::Id)
}

/// What a listing shows of a role, by its id: its name, whether it is predefined, and a custom
/// role's resource ids (resolved against the catalogue when shown, by `view_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub predefined: bool,
    pub held: Vec<String>,
}

/// An account's roles by id.
pub type AccountRoles = HashMap<String, RoleFacts>;

/// The account's roles, from memory while no credential change in the account has been committed
/// since they were read (every role change is one, and stamps its account: see `versions`; another
/// replica's change arrives by its notification). A listing page then reads only its keys' role ids.
pub async fn cached_facts(store: &Store, account_id: &str) -> AppResult<std::sync::Arc<AccountRoles>> {
    if let Some((since, roles)) = store.part::<RoleCaches>().facts.get(account_id) {
        if store.versions().unchanged_since(since, account_id, None) {
            return Ok(roles);
        }
    }
    fresh_facts(store, account_id).await
}

/// The account's roles read now (and remembered for `cached_facts`).
pub async fn fresh_facts(store: &Store, account_id: &str) -> AppResult<std::sync::Arc<AccountRoles>> {
    let since = store.versions().snapshot();
    let rows = role::Entity::find().filter(role::Column::AccountId.eq(account_id)).all(store.db()).await?;
    let mut held = custom_resources(store.db(), &rows).await?;
    let roles: AccountRoles = rows
        .into_iter()
        .map(|r| {
            let facts =
                RoleFacts { held: held.remove(&r.id).unwrap_or_default(), name: r.name, predefined: r.predefined };
            (r.id, facts)
        })
        .collect();
    let roles = std::sync::Arc::new(roles);
    store.part::<RoleCaches>().facts.insert(account_id.to_owned(), (since, roles.clone()));
    Ok(roles)
}

/// Every role of the account, in display order.
pub async fn list(store: &Store, account_id: &str) -> AppResult<Vec<RoleView>> {
    let db = store.db();
    let rows = in_display_order(role::Entity::find().filter(role::Column::AccountId.eq(account_id))).all(db).await?;
    views(db, rows).await
}

/// The role `id` of the account, if there is one.
pub async fn find(store: &Store, account_id: &str, id: &str) -> AppResult<Option<RoleView>> {
    match by_ids(store.db(), account_id, &[id.to_owned()], "id").await {
        Ok(mut found) => Ok(found.pop()),
        Err(AppError::BadUserInput { .. }) => Ok(None),
        Err(other) => Err(other),
    }
}

/// The roles with these ids in this account. Unknown ids (including other accounts' roles) are
/// refused together, by name, before anything changes.
pub async fn by_ids<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    ids: &[String],
    field: &str,
) -> AppResult<Vec<RoleView>> {
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let plausible: Vec<&str> = wanted.iter().copied().filter(|id| is_id(id)).collect();
    let rows = if plausible.is_empty() {
        Vec::new()
    } else {
        role::Entity::find()
            .filter(role::Column::AccountId.eq(account_id))
            .filter(role::Column::Id.is_in(plausible))
            .all(db)
            .await?
    };
    let found: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let unknown: Vec<&str> = wanted.difference(&found).copied().collect();
    if !unknown.is_empty() {
        return Err(AppError::bad_input(field, format!("unknown role ids: {}", unknown.join(", "))));
    }
    let mut views = views(db, rows).await?;
    sort_for_display(&mut views);
    Ok(views)
}

/// The resource ids each custom role among `rows` holds, by role id, in one query (predefined
/// roles hold fixed sets, not rows).
async fn custom_resources<C: ConnectionTrait>(db: &C, rows: &[role::Model]) -> AppResult<HashMap<String, Vec<String>>> {
    let custom: Vec<&str> = rows.iter().filter(|r| !r.predefined).map(|r| r.id.as_str()).collect();
    let mut held: HashMap<String, Vec<String>> = HashMap::new();
    if !custom.is_empty() {
        for link in role_resource::Entity::find().filter(role_resource::Column::RoleId.is_in(custom)).all(db).await? {
            held.entry(link.role_id).or_default().push(link.resource_id);
        }
    }
    Ok(held)
}

/// Resolves role rows into views with their resources, in two queries.
pub async fn views<C: ConnectionTrait>(db: &C, rows: Vec<role::Model>) -> AppResult<Vec<RoleView>> {
    views_with(db, rows, None).await
}

/// `views`, with the catalogue from the caller when it has one (from memory).
pub async fn views_with<C: ConnectionTrait>(
    db: &C,
    rows: Vec<role::Model>,
    known_catalogue: Option<&Vec<ResourceView>>,
) -> AppResult<Vec<RoleView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let catalogue = match known_catalogue {
        Some(known) => std::borrow::Cow::Borrowed(known),
        None => std::borrow::Cow::Owned(catalogue_in(db).await?),
    };
    let mut custom = custom_resources(db, &rows).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let held = custom.remove(&r.id).unwrap_or_default();
            view_of(r.id, r.name, r.predefined, &held, &catalogue)
        })
        .collect())
}

/// A role's view: a predefined role's resources are fixed (or the whole catalogue), a custom role's
/// are those it `held`, as the catalogue lists them.
pub fn view_of(id: String, name: String, predefined: bool, held: &[String], catalogue: &[ResourceView]) -> RoleView {
    let resources = if predefined {
        match PredefinedRole::from_name(&name).and_then(PredefinedRole::fixed_resources) {
            Some(fixed) => catalogue.iter().filter(|c| fixed.iter().any(|f| f.id() == c.id)).cloned().collect(),
            None => catalogue.to_vec(),
        }
    } else {
        catalogue.iter().filter(|c| held.contains(&c.id)).cloned().collect()
    };
    RoleView { id, name, predefined, resources: resources.into() }
}

/// The SQL twin of `view_of`'s resources: whether the role (a row of `roles`, as `role`) holds the
/// resource (a row of `resources`, as `resource`). Custom roles through `role_resources`;
/// predefined roles from code: the whole catalogue, or their fixed list.
pub fn holds_condition(role: &'static str, resource: &'static str) -> sea_orm::Condition {
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let predefined = |is: bool| Expr::col((role, role::Column::Predefined)).eq(is);
    let linked = Query::select()
        .expr(Expr::val(1))
        .from_as(role_resource::Entity, "held")
        .and_where(Expr::col(("held", role_resource::Column::RoleId)).equals((role, role::Column::Id)))
        .and_where(Expr::col(("held", role_resource::Column::ResourceId)).equals((resource, resource::Column::Id)))
        .to_owned();
    let mut holds = sea_orm::Condition::any().add(predefined(false).and(Expr::exists(linked)));
    for kind in PredefinedRole::ALL {
        let named = predefined(true).and(Expr::col((role, role::Column::Name)).eq(kind.name()));
        holds = holds.add(match kind.fixed_resources() {
            None => named,
            Some(fixed) => named.and(Expr::col((resource, resource::Column::Id)).is_in(fixed.iter().map(|r| r.id()))),
        });
    }
    holds
}

/// Who holds a role in the account: its users' emails and its keys' values, each sorted (a key
/// removed from the account holds nothing there).
pub async fn holders(store: &Store, account_id: &str, role_id: &str) -> AppResult<(Vec<String>, Vec<String>)> {
    use crate::entity::{app_key, key_access, key_access_role, user, user_role};
    use sea_orm::sea_query::Query;
    use sea_orm::QuerySelect;
    let db = store.db();
    let users_of_role = Query::select()
        .column(user_role::Column::UserId)
        .from(user_role::Entity)
        .and_where(user_role::Column::RoleId.eq(role_id))
        .to_owned();
    let emails: Vec<String> = user::Entity::find()
        .select_only()
        .column(user::Column::Email)
        .filter(user::Column::AccountId.eq(account_id))
        .filter(user::Column::Id.in_subquery(users_of_role))
        .order_by_asc(user::Column::Email)
        .into_tuple()
        .all(db)
        .await?;
    let accesses_of_role = Query::select()
        .column(key_access_role::Column::KeyAccessId)
        .from(key_access_role::Entity)
        .and_where(key_access_role::Column::RoleId.eq(role_id))
        .to_owned();
    let keys_here = Query::select()
        .column(key_access::Column::AppKeyId)
        .from(key_access::Entity)
        .and_where(key_access::Column::AccountId.eq(account_id))
        .and_where(key_access::Column::Removed.eq(false))
        .and_where(key_access::Column::Id.in_subquery(accesses_of_role))
        .to_owned();
    let keys: Vec<String> = app_key::Entity::find()
        .select_only()
        .column(app_key::Column::Key)
        .filter(app_key::Column::Id.in_subquery(keys_here))
        .order_by_asc(app_key::Column::Key)
        .into_tuple()
        .all(db)
        .await?;
    Ok((emails, keys))
}

pub fn union_resources(roles: &[RoleView]) -> BTreeSet<String> {
    roles.iter().flat_map(|r| r.resources.iter().map(|res| res.id.clone())).collect()
}

/// No privilege escalation: a principal may grant or take away only resources it holds itself. The
/// one home of the rule; every grant, role change and role edit comes through here.
pub fn ensure_no_escalation<'a>(held: &BTreeSet<String>, touched: impl IntoIterator<Item = &'a str>) -> AppResult<()> {
    let missing: BTreeSet<&str> = touched.into_iter().filter(|id| !held.contains(*id)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AppError::forbidden(missing))
    }
}

/// A change of someone's roles from `before` to `after` (a grant is a change from none): what is
/// added and what is taken away must both be within the caller's own resources.
pub fn ensure_can_change_roles(held: &BTreeSet<String>, before: &[RoleView], after: &[RoleView]) -> AppResult<()> {
    let added = after.iter().filter(|r| !before.iter().any(|b| b.id == r.id));
    let taken = before.iter().filter(|b| !after.iter().any(|r| r.id == b.id));
    let touched = added.chain(taken).flat_map(|role| role.resources.iter().map(|r| r.id.as_str()));
    ensure_no_escalation(held, touched)
}

fn resource_ids(raw: &[String]) -> AppResult<Vec<String>> {
    let mut ids = BTreeSet::new();
    for id in raw {
        ids.insert(ResourceId::parse(id).map_err(|e| e.at("input.resourceIds"))?.as_str().to_owned());
    }
    Ok(ids.into_iter().collect())
}

async fn ensure_resources_exist<C: ConnectionTrait>(db: &C, ids: &[String]) -> AppResult<()> {
    let known: BTreeSet<String> = catalogue_in(db).await?.into_iter().map(|r| r.id).collect();
    let unknown: Vec<&str> = ids.iter().filter(|id| !known.contains(*id)).map(String::as_str).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(AppError::bad_input("input.resourceIds", format!("unknown resource ids: {}", unknown.join(", "))))
    }
}

async fn ensure_name_free<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    name: &str,
    except: Option<&str>,
) -> AppResult<()> {
    let clash = role::Entity::find()
        .filter(role::Column::AccountId.eq(account_id))
        .filter(role::Column::Name.eq(name))
        .one(db)
        .await?;
    match clash {
        Some(existing) if Some(existing.id.as_str()) != except => {
            Err(AppError::Conflict(format!("a role named {name:?} already exists")))
        }
        _ => Ok(()),
    }
}

async fn replace_resources<C: ConnectionTrait>(db: &C, role_id: &str, ids: &[String]) -> AppResult<()> {
    let rows = ids
        .iter()
        .map(|id| role_resource::ActiveModel { role_id: Set(role_id.to_owned()), resource_id: Set(id.clone()) })
        .collect();
    links::replace(db, role_resource::Column::RoleId, role_id, rows).await
}

fn role_json(role: &RoleView) -> serde_json::Value {
    json!({ "name": role.name, "resources": role.resources.iter().map(|r| &r.id).collect::<Vec<_>>() })
}

pub async fn create(store: &Store, ctx: &Ctx<'_>, name: &str, resource_ids_raw: &[String]) -> AppResult<RoleView> {
    let name = RoleName::parse(name).map_err(|e| e.at("input.name"))?.into_inner();
    let ids = resource_ids(resource_ids_raw)?;
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    ensure_resources_exist(&*txn, &ids).await?;
    ensure_no_escalation(&ctx.principal.resources, ids.iter().map(String::as_str))?;
    ensure_name_free(&*txn, account_id, &name, None).await?;
    let model = role::ActiveModel {
        id: Set(new_id()),
        account_id: Set(account_id.clone()),
        name: Set(name),
        predefined: Set(false),
        created_at: Set(txn.now()),
    }
    .insert(&*txn)
    .await?;
    replace_resources(&*txn, &model.id, &ids).await?;
    let view = views(&*txn, vec![model]).await?.remove(0);
    ctx.audit(&txn, "role.create", &view.id, None, Some(role_json(&view))).await?;
    txn.commit().await?;
    Ok(view)
}

async fn custom_role<C: ConnectionTrait>(db: &C, account_id: &str, id: &str) -> AppResult<role::Model> {
    if !is_id(id) {
        return Err(AppError::NotFound(format!("no role {id:?} in this account")));
    }
    let role = role::Entity::find_by_id(id)
        .filter(role::Column::AccountId.eq(account_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no role {id:?} in this account")))?;
    if role.predefined {
        return Err(AppError::bad_input("id", format!("{:?} is a predefined role and cannot be changed", role.name)));
    }
    Ok(role)
}

pub async fn update(
    store: &Store,
    ctx: &Ctx<'_>,
    id: &str,
    name: Option<&str>,
    resource_ids_raw: Option<&[String]>,
) -> AppResult<RoleView> {
    let name = name.map(RoleName::parse).transpose().map_err(|e| e.at("input.name"))?.map(RoleName::into_inner);
    let ids = resource_ids_raw.map(resource_ids).transpose()?;
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let model = custom_role(&*txn, account_id, id).await?;
    let before = views(&*txn, vec![model.clone()]).await?.remove(0);
    // Changing a role changes what every holder may do: the caller must hold what it had and what it gets.
    let mut touched: BTreeSet<String> = before.resources.iter().map(|r| r.id.clone()).collect();
    if let Some(ids) = &ids {
        ensure_resources_exist(&*txn, ids).await?;
        touched.extend(ids.iter().cloned());
    }
    ensure_no_escalation(&ctx.principal.resources, touched.iter().map(String::as_str))?;
    let mut active: role::ActiveModel = model.into();
    if let Some(name) = name {
        ensure_name_free(&*txn, account_id, &name, Some(id)).await?;
        active.name = Set(name);
    }
    let model = active.update(&*txn).await?;
    if let Some(ids) = &ids {
        replace_resources(&*txn, id, ids).await?;
    }
    let after = views(&*txn, vec![model]).await?.remove(0);
    ctx.audit(&txn, "role.update", id, Some(role_json(&before)), Some(role_json(&after))).await?;
    txn.commit().await?;
    Ok(after)
}

pub async fn delete(store: &Store, ctx: &Ctx<'_>, id: &str) -> AppResult<()> {
    let account_id = &ctx.principal.account_id;
    let txn = store.begin_account_write(account_id).await?;
    let model = custom_role(&*txn, account_id, id).await?;
    let before = views(&*txn, vec![model]).await?.remove(0);
    ensure_can_change_roles(&ctx.principal.resources, std::slice::from_ref(&before), &[])?;
    role::Entity::delete_by_id(id).exec(&*txn).await?;
    ctx.audit(&txn, "role.delete", id, Some(role_json(&before)), None).await?;
    txn.commit().await?;
    Ok(())
}
