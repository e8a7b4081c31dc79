//! The two listings ("Application Keys" and "My Keys") and the lookup of one key.
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, JoinType, QueryFilter, QuerySelect,
    RelationTrait, Select,
};
use std::collections::HashMap;

use super::usage::unused_since_condition;
use super::{
    has_roles, locate, renewal_alert_condition, status_condition, views, AppKeyView, KeyStatus, KeyType, RenewalAlert,
    Viewpoint,
};
use crate::entity::{app_key, key_access};
use crate::error::{AppError, AppResult};
use crate::service::page::{self, PageRequest, Paged};
use crate::service::query_text;

/// Which page of keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// "Application Keys": every internal and external key holding roles in this account.
    WithAccess,
    /// "My Keys": every internal key, with or without roles.
    Internal,
}

#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    pub search: Option<String>,
    pub status: Option<KeyStatus>,
    pub key_type: Option<KeyType>,
    pub renewal_alert: Option<RenewalAlert>,
    /// Keys not used in this account since then (never used: created before then).
    pub unused_since: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn list(
    db: &DatabaseConnection,
    account_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    listing: Listing,
    filter: &KeyFilter,
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let at = Viewpoint::of(db, account_id, now).await?;
    match listing {
        Listing::WithAccess => list_with_access(db, &at, filter, page).await,
        Listing::Internal => list_internal(db, &at, filter, page).await,
    }
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

async fn list_with_access(
    db: &DatabaseConnection,
    at: &Viewpoint,
    filter: &KeyFilter,
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let mut paged =
        page::fetch(db, access_select(at, filter)?, key_access::Column::Id, page, |m| m.id.as_str()).await?;
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
    let items = views(db, at, ordered, accesses).await?;
    Ok(paged.with_items(items))
}

fn access_select(at: &Viewpoint, filter: &KeyFilter) -> AppResult<Select<key_access::Entity>> {
    let mut select = key_access::Entity::find()
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .filter(key_access::Column::AccountId.eq(at.account_id.as_str()))
        .filter(has_roles());
    if let Some(alert) = filter.renewal_alert {
        select = select.filter(renewal_alert_condition(alert, at.now, at.settings.renewal_period_days));
    }
    if let Some(key_type) = filter.key_type {
        select = select.filter(key_access::Column::External.eq(key_type == KeyType::External));
    }
    if let Some(status) = filter.status {
        select = select.filter(status_condition(status, at.now, false));
    }
    if let Some(since) = filter.unused_since {
        select = select.filter(unused_since_condition(&at.account_id, since));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search, "filter.search")?;
        // Another account's label is never shown, so it is never searched either.
        select = select.filter(
            Condition::any()
                .add(key_contains(search))
                .add(Condition::all().add(key_access::Column::External.eq(false)).add(label_contains(search))),
        );
    }
    Ok(select)
}

async fn list_internal(
    db: &DatabaseConnection,
    at: &Viewpoint,
    filter: &KeyFilter,
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let account_id = at.account_id.as_str();
    let mut select = app_key::Entity::find().filter(app_key::Column::AccountId.eq(account_id));
    if let Some(alert) = filter.renewal_alert {
        select = select.filter(renewal_alert_condition(alert, at.now, at.settings.renewal_period_days));
    }
    if filter.key_type == Some(KeyType::External) {
        select = select.filter(Expr::val(1).eq(0));
    }
    if let Some(status) = filter.status {
        // An internal key is never removed from its own account.
        select = select.filter(status_condition(status, at.now, true));
    }
    if let Some(since) = filter.unused_since {
        select = select.filter(unused_since_condition(account_id, since));
    }
    if let Some(search) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let search = query_text(search, "filter.search")?;
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
    let items = views(db, at, keys, accesses).await?;
    Ok(paged.with_items(items))
}

/// `appKey(key)`: the key as this account sees it, or `None` when this account has never known it.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    raw_key: &str,
) -> AppResult<Option<AppKeyView>> {
    match locate(db, account_id, raw_key).await {
        Ok(located) => Ok(Some(located.view(db, &Viewpoint::of(db, account_id, now).await?).await?)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}
