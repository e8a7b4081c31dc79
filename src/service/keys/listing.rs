//! The two listings ("Application Keys" and "My Keys") and the lookup of one key. Both read the
//! account's `key_access` rows joined with their keys, filtered, sorted and paged by keyset.
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect, RelationTrait, Select,
    SelectTwo,
};

use super::usage::unused_since_condition;
use super::{
    has_roles, locate, renewal_alert_condition, status_condition, views, AppKeyView, KeyStatus, KeyType, RenewalAlert,
    Viewpoint,
};
use crate::entity::{app_key, key_access};
use crate::error::{AppError, AppResult};
use crate::service::page::{self, Cursor, Direction, PageRequest, Paged, SortBy};
use crate::service::{query_text, Store};

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
    pub unused_since: Option<DateTime<Utc>>,
}

/// What a listing is sorted by; the key's access id breaks ties (and is the whole order for
/// `CreatedAt`: ids are time-ordered, so it is the order keys were generated, or added here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyOrder {
    #[default]
    CreatedAt,
    Key,
    /// The label; another account's key, whose label is never shown, sorts as if it had none.
    Label,
    /// The last use here; never-used keys sort as the oldest.
    LastUsedAt,
}

/// Never used sorts as this instant.
fn never() -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH
}

impl KeyOrder {
    fn sort_by(self) -> Option<SortBy> {
        let text = |raw: &str| Some(sea_orm::Value::from(raw.to_owned()));
        let time = |raw: &str| raw.parse::<DateTime<Utc>>().ok().map(sea_orm::Value::from);
        match self {
            KeyOrder::CreatedAt => None,
            KeyOrder::Key => {
                Some(SortBy { name: "key", expr: Expr::col((app_key::Entity, app_key::Column::Key)), value: text })
            }
            KeyOrder::Label => Some(SortBy {
                name: "label",
                expr: Expr::case(Expr::col((key_access::Entity, key_access::Column::External)).eq(true), "")
                    .finally(Expr::col((app_key::Entity, app_key::Column::LabelSearch)))
                    .into(),
                value: text,
            }),
            KeyOrder::LastUsedAt => Some(SortBy {
                name: "used",
                expr: Func::coalesce([
                    Expr::col((key_access::Entity, key_access::Column::LastUsedAt)),
                    Expr::val(never()),
                ])
                .into(),
                value: time,
            }),
        }
    }

    /// A view's sort value, as its cursor carries it (the twin of `sort_by`).
    fn sort_value(self, view: &AppKeyView) -> Option<String> {
        match self {
            KeyOrder::CreatedAt => None,
            KeyOrder::Key => Some(view.key.clone()),
            KeyOrder::Label => Some(view.label.as_deref().map(str::to_lowercase).unwrap_or_default()),
            KeyOrder::LastUsedAt => Some(
                view.last_use
                    .as_ref()
                    .map_or_else(never, |u| u.at)
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        }
    }
}

/// The cursor of a view in a listing in this order.
pub fn cursor_of(view: &AppKeyView, order: KeyOrder) -> Cursor {
    let sort = order.sort_by().zip(order.sort_value(view)).map(|(by, value)| SortBy::cursor_text(by.name, &value));
    Cursor { sort, id: view.access_id.clone() }
}

/// Who lists, and when.
pub struct Lister<'a> {
    pub account_id: &'a str,
    pub account_name: &'a str,
    pub now: DateTime<Utc>,
}

/// Where the listing is seen from, and its rows (access rows with their keys), before paging.
async fn page_query(
    store: &Store,
    who: &Lister<'_>,
    listing: Listing,
    filter: &KeyFilter,
) -> AppResult<(Viewpoint, SelectTwo<key_access::Entity, app_key::Entity>)> {
    let at = Viewpoint::cached(store, who.account_id, who.account_name, who.now).await?;
    let select = access_select(&at, listing, filter)?.select_also(app_key::Entity);
    Ok((at, select))
}

/// The SQL of a listing's page (and of its `totalCount`), as `list` runs it: for checking query
/// plans (`EXPLAIN`).
pub async fn listing_statements(
    store: &Store,
    who: &Lister<'_>,
    listing: Listing,
    filter: &KeyFilter,
    (order, direction): (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<(sea_orm::Statement, sea_orm::Statement)> {
    use sea_orm::QueryTrait;
    let (_, select) = page_query(store, who, listing, filter).await?;
    let backend = store.backend();
    let count = page::count_query(select.clone().into_query());
    let sort = order.sort_by();
    let rows = page::arrange(select, sort.as_ref(), key_access::Column::Id, direction, page)?;
    Ok((rows.build(backend), backend.build(&count)))
}

/// One page of a listing: the page's access rows with their keys in one query, their roles in one
/// more; the account's settings and the resource catalogue from memory when current.
pub async fn list(
    store: &Store,
    who: &Lister<'_>,
    listing: Listing,
    filter: &KeyFilter,
    (order, direction): (KeyOrder, Direction),
    page: &PageRequest,
) -> AppResult<Paged<AppKeyView>> {
    let (at, select) = page_query(store, who, listing, filter).await?;
    let sort = order.sort_by();
    let mut paged =
        page::fetch_sorted(&store.db, select, sort.as_ref(), key_access::Column::Id, direction, page).await?;
    let (accesses, keys): (Vec<key_access::Model>, Vec<Option<app_key::Model>>) =
        std::mem::take(&mut paged.items).into_iter().unzip();
    let keys: Vec<app_key::Model> = keys.into_iter().flatten().collect();
    let items = views(&store.db, &at, keys, accesses).await?;
    Ok(paged.with_items(items))
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

fn access_select(at: &Viewpoint, listing: Listing, filter: &KeyFilter) -> AppResult<Select<key_access::Entity>> {
    let mut select = key_access::Entity::find()
        .join(JoinType::InnerJoin, key_access::Relation::AppKey.def())
        .filter(key_access::Column::AccountId.eq(at.account_id.as_str()));
    select = match listing {
        Listing::WithAccess => select.filter(has_roles()),
        Listing::Internal => select.filter(key_access::Column::External.eq(false)),
    };
    if let Some(key_type) = filter.key_type {
        select = select.filter(key_access::Column::External.eq(key_type == KeyType::External));
    }
    if let Some(status) = filter.status {
        select = select.filter(status_condition(status, at.now, false));
    }
    if let Some(alert) = filter.renewal_alert {
        select = select.filter(renewal_alert_condition(alert, at.now, at.settings.renewal_period_days));
    }
    if let Some(since) = filter.unused_since {
        select = select.filter(unused_since_condition(Some(&at.account_id), since));
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

/// `appKey(key)`: the key as this account sees it, or `None` when this account has never known it.
pub async fn get<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: DateTime<Utc>,
    raw_key: &str,
) -> AppResult<Option<AppKeyView>> {
    match locate(db, account_id, raw_key).await {
        Ok(located) => Ok(Some(located.view(db, &Viewpoint::of(db, account_id, now).await?).await?)),
        Err(AppError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// `node(id)` for a key: the key with this id as this account sees it (its own, or one it added),
/// or `None`.
pub async fn get_by_id<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    now: DateTime<Utc>,
    key_id: &str,
) -> AppResult<Option<AppKeyView>> {
    if !crate::service::is_id(key_id) {
        return Ok(None);
    }
    let Some(key) = app_key::Entity::find_by_id(key_id).one(db).await? else {
        return Ok(None);
    };
    let Some(access) = super::find_access(db, &key.id, account_id).await? else {
        return Ok(None);
    };
    let at = Viewpoint::of(db, account_id, now).await?;
    Ok(Some(super::Located { key, access }.view(db, &at).await?))
}
